//! The Outbox: its entries ([`Pending`]), reading them in order, marking them sent and settling
//! the acknowledged ones.

use super::*;

/// One Outbox entry.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The Client's sequence number (also the Outbox order).
    pub seq: u64,
    /// The Op ID.
    pub op_id: String,
    /// The Collection.
    pub collection: String,
    /// The Record.
    pub record_id: String,
    /// The Mutation's JSON text as stored: its compact serialization, sent as it is.
    pub text: std::sync::Arc<str>,
    /// The Mutation as a tree, parsed from `text` when first asked for ([`Pending::body`]).
    /// Shared, and parsed only on demand: a backlog sync sends texts and reads one field of
    /// each, and parsing, copying and freeing whole trees was a third of its Client's CPU.
    tree: std::sync::Arc<std::sync::OnceLock<Value>>,
    /// Higher goes first, but never ahead of an earlier Mutation of the same Record.
    pub priority: i64,
    /// How many times it was sent (0: never).
    pub attempts: u64,
}

impl Pending {
    /// An entry whose Mutation is the JSON text `text` (checked to be JSON by whoever read it).
    pub fn new(
        seq: u64,
        op_id: String,
        collection: String,
        record_id: String,
        text: std::sync::Arc<str>,
        priority: i64,
        attempts: u64,
    ) -> Self {
        Self {
            seq,
            op_id,
            collection,
            record_id,
            text,
            tree: Default::default(),
            priority,
            attempts,
        }
    }

    /// The Mutation as JSON (`Null` if its stored text is not JSON, which [`Store`] refuses to
    /// read: it checks every text it hands out).
    pub fn body(&self) -> &Value {
        self.tree
            .get_or_init(|| serde_json::from_str(&self.text).unwrap_or(Value::Null))
    }

    /// The Mutation's `hlc` member, read from its text without building its tree.
    pub fn hlc(&self) -> Option<driftless_protocol::hlc::Hlc> {
        #[derive(serde::Deserialize)]
        struct Stamped<'a> {
            #[serde(borrow)]
            hlc: Option<Cow<'a, str>>,
        }
        serde_json::from_str::<Stamped>(&self.text)
            .ok()?
            .hlc?
            .parse()
            .ok()
    }
}

/// Equal when every stored part is: the parsed tree is a cache of `text`.
impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (
            self.seq,
            &self.op_id,
            &self.collection,
            &self.record_id,
            &self.text,
            self.priority,
            self.attempts,
        ) == (
            other.seq,
            &other.op_id,
            &other.collection,
            &other.record_id,
            &other.text,
            other.priority,
            other.attempts,
        )
    }
}

impl Store {
    /// The `seq` of the newest Outbox entry of any Space (`None`: the Outbox is empty). One
    /// B-tree lookup: `seq` is the table's key.
    pub fn newest_seq(&self) -> Result<Option<u64>, ClientError> {
        self.conn
            .prepare_cached("SELECT MAX(seq) FROM outbox")
            .map_err(sql_error)?
            .query_row([], |r| r.get::<_, Option<i64>>(0))
            .map(|s| s.map(|s| s as u64))
            .map_err(sql_error)
    }

    /// The Outbox of a Space in creation order.
    pub fn outbox(&self, space: &str) -> Result<Vec<Pending>, ClientError> {
        Self::pending_in(&self.conn, space, "", [])
    }

    /// Marks the Outbox entries `(seq, op_id)` as sent once more and their receipts `sent`,
    /// except those another handle has settled, re-issued or coalesced away since they were
    /// read; returns the `seq`s marked. Two statements whatever the number of entries (one
    /// statement per entry and receipt was a third of the Client's time in a backlog sync).
    pub fn mark_sent(
        tx: &Connection,
        entries: &[(u64, &str)],
    ) -> Result<std::collections::HashSet<u64>, ClientError> {
        let list = serde_json::to_string(entries).map_err(|e| ClientError::Store(e.to_string()))?;
        let mut marked = std::collections::HashSet::with_capacity(entries.len());
        let mut ops = Vec::with_capacity(entries.len());
        {
            let mut st = tx
                .prepare_cached(
                    "UPDATE outbox SET attempts = attempts + 1
                     FROM (SELECT value ->> 0 AS seq, value ->> 1 AS op_id FROM json_each(?1)) AS e
                     WHERE outbox.seq = e.seq AND outbox.op_id = e.op_id
                     RETURNING outbox.seq, outbox.op_id",
                )
                .map_err(sql_error)?;
            let mut rows = st.query([&list]).map_err(sql_error)?;
            while let Some(row) = rows.next().map_err(sql_error)? {
                marked.insert(row.get::<_, i64>(0).map_err(sql_error)? as u64);
                ops.push(row.get::<_, String>(1).map_err(sql_error)?);
            }
        }
        receipts(tx, &ops, "sent")?;
        Ok(marked)
    }

    /// Moves the Outbox entries `(seq, op_id, change_seq)` the Server applied out of the
    /// Outbox, keeping in the acknowledged list those whose `change_seq` the Mirror's pull
    /// position `through` does not reach yet (`[CLIENT-23]`), and marks their receipts
    /// `acknowledged` unless `receipts_too` is false. Entries another handle changed since
    /// (a different `op_id` at that `seq`) are left alone. Four statements whatever the number.
    pub fn settle_acked(
        tx: &Connection,
        entries: &[(u64, &str, Option<u64>)],
        through: u64,
        receipts_too: bool,
    ) -> Result<(), ClientError> {
        let list = serde_json::to_string(entries).map_err(|e| ClientError::Store(e.to_string()))?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO acked (seq, space, op_id, collection, record_id, body, priority, attempts, change_seq)
             SELECT o.seq, o.space, o.op_id, o.collection, o.record_id, o.body, o.priority, o.attempts, e.change_seq
             FROM (SELECT value ->> 0 AS seq, value ->> 1 AS op_id, value ->> 2 AS change_seq FROM json_each(?1)) AS e
             JOIN outbox AS o ON o.seq = e.seq AND o.op_id = e.op_id
             WHERE e.change_seq > ?2",
        )
        .map_err(sql_error)?
        .execute(params![list, through as i64])
        .map_err(sql_error)?;
        tx.prepare_cached(
            "DELETE FROM outbox WHERE seq IN (
                SELECT o.seq FROM (SELECT value ->> 0 AS seq, value ->> 1 AS op_id FROM json_each(?1)) AS e
                JOIN outbox AS o ON o.seq = e.seq AND o.op_id = e.op_id)",
        )
        .map_err(sql_error)?
        .execute([&list])
        .map_err(sql_error)?;
        if receipts_too {
            let ops: Vec<&str> = entries.iter().map(|(_, op, _)| *op).collect();
            receipts(tx, &ops, "acknowledged")?;
        }
        Ok(())
    }

    /// The Mirror's pull position in a Space (`through:SPACE`; 0 before the first pull).
    pub fn through(&self, space: &str) -> Result<u64, ClientError> {
        Self::through_in(&self.conn, space)
    }

    /// [`Store::through`], read on `tx` (a transaction reads what it has locked).
    pub fn through_in(tx: &Connection, space: &str) -> Result<u64, ClientError> {
        Ok(Self::meta_in(tx, &format!("through:{space}"))?
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0))
    }

    /// Forgets the acknowledged Mutations of a Space whose `change_seq` the Mirror's pull
    /// position `through` reaches: the Mirror reflects them now (`[CLIENT-23]`, `[PULL-11]`).
    pub fn forget_acked(tx: &Connection, space: &str, through: u64) -> Result<(), ClientError> {
        tx.prepare_cached("DELETE FROM acked WHERE space = ?1 AND change_seq <= ?2")
            .map_err(sql_error)?
            .execute(params![space, through as i64])
            .map_err(sql_error)?;
        Ok(())
    }

    /// The Mutations of a Space (of one Record, if `record` is given) that the view applies on
    /// top of the Mirror (`[CLIENT-22]`): the Outbox and the acknowledged Mutations the pull has
    /// not reached yet, in creation order.
    pub fn unreflected(
        &self,
        space: &str,
        record: Option<(&str, &str)>,
    ) -> Result<Vec<Pending>, ClientError> {
        let (mut out, acked) = match record {
            Some((c, id)) => (
                Self::record_outbox_in(&self.conn, space, c, id)?,
                Self::rows_in(
                    &self.conn,
                    "acked",
                    space,
                    "AND collection = ?2 AND record_id = ?3",
                    [c, id],
                )?,
            ),
            None => (
                self.outbox(space)?,
                Self::rows_in(&self.conn, "acked", space, "", [])?,
            ),
        };
        if !acked.is_empty() {
            out.extend(acked);
            out.sort_by_key(|p| p.seq);
        }
        Ok(out)
    }

    /// The Outbox entries of one Record in creation order, read on `conn` (an index lookup, so
    /// a write costs the same however long the Outbox is).
    pub fn record_outbox_in(
        conn: &Connection,
        space: &str,
        collection: &str,
        id: &str,
    ) -> Result<Vec<Pending>, ClientError> {
        Self::pending_in(
            conn,
            space,
            "AND collection = ?2 AND record_id = ?3",
            [collection, id],
        )
    }

    /// The Outbox entries of one Record in creation order.
    pub fn record_outbox(
        &self,
        space: &str,
        collection: &str,
        id: &str,
    ) -> Result<Vec<Pending>, ClientError> {
        Self::record_outbox_in(&self.conn, space, collection, id)
    }

    /// The Outbox entries of a Space sent at least once.
    pub fn sent(&self, space: &str) -> Result<Vec<Pending>, ClientError> {
        Self::pending_in(&self.conn, space, "AND attempts > 0", [])
    }

    /// (entries, entries sent at least once) of a Space's Outbox.
    pub fn outbox_counts(&self, space: &str) -> Result<(usize, usize), ClientError> {
        self.conn
            .prepare_cached(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE attempts > 0) FROM outbox WHERE space = ?1",
            )
            .map_err(sql_error)?
            .query_row([space], |r| {
                Ok((r.get::<_, i64>(0)? as usize, r.get::<_, i64>(1)? as usize))
            })
            .map_err(sql_error)
    }

    /// The Collections with Outbox entries in a Space.
    pub fn outbox_collections(&self, space: &str) -> Result<Vec<String>, ClientError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT DISTINCT collection FROM outbox WHERE space = ?1")
            .map_err(sql_error)?;
        let rows = st
            .query_map([space], |r| r.get::<_, String>(0))
            .map_err(sql_error)?;
        rows.map(|r| r.map_err(sql_error)).collect()
    }

    /// Outbox entries of a Space matching `filter` (more conditions on `?2`, `?3`, ... filled
    /// from `more`), in creation order.
    fn pending_in<const N: usize>(
        conn: &Connection,
        space: &str,
        filter: &str,
        more: [&str; N],
    ) -> Result<Vec<Pending>, ClientError> {
        Self::rows_in(conn, "outbox", space, filter, more)
    }

    /// Rows of `table` (`outbox` or `acked`) as [`Pending`] entries, as [`Store::pending_in`].
    fn rows_in<const N: usize>(
        conn: &Connection,
        table: &str,
        space: &str,
        filter: &str,
        more: [&str; N],
    ) -> Result<Vec<Pending>, ClientError> {
        let mut st = conn
            .prepare_cached(&format!("SELECT seq, op_id, collection, record_id, body, priority, attempts FROM {table} WHERE space = ?1 {filter} ORDER BY seq"))
            .map_err(sql_error)?;
        let params: Vec<&str> = std::iter::once(space).chain(more).collect();
        let rows = st
            .query_map(rusqlite::params_from_iter(params), |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })
            .map_err(sql_error)?;
        rows.map(|r| {
            let (seq, op_id, collection, record_id, body, priority, attempts) =
                r.map_err(sql_error)?;
            // Checked, not parsed: the tree is built only if something asks for it.
            serde_json::from_str::<serde::de::IgnoredAny>(&body)
                .map_err(|e| ClientError::Store(format!("Outbox entry {seq}: {e}")))?;
            Ok(Pending::new(
                seq as u64,
                op_id,
                collection,
                record_id,
                body.into(),
                priority,
                attempts as u64,
            ))
        })
        .collect()
    }
}
