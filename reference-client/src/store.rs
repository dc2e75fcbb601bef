//! The local store: one SQLite file per Client (WAL, `synchronous=FULL`). It holds the Mirror of
//! pulled server state, the Outbox, the dead-letter list, receipts, Cursors, the Client ID, its
//! HLC and sequence counter, retry state and counters. Every write that a caller is told is done
//! has been committed and fsynced first (`[CLIENT-1]`, `[HLC-10]`).

use std::path::Path;
use std::time::Duration;

use std::borrow::Cow;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::ClientError;

/// The tables are created under the write lock: a handle opening a new store at the same
/// moment as another would otherwise read a stale schema and fail instead of waiting.
const SCHEMA: &str = "
PRAGMA synchronous=FULL;
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mirror (
    space TEXT NOT NULL, collection TEXT NOT NULL, id TEXT NOT NULL,
    change_seq INTEGER NOT NULL, deleted INTEGER NOT NULL, value TEXT, conflicts TEXT, digest TEXT,
    bucket INTEGER NOT NULL,
    PRIMARY KEY (space, collection, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY, space TEXT NOT NULL, op_id TEXT NOT NULL UNIQUE,
    collection TEXT NOT NULL, record_id TEXT NOT NULL, body TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS outbox_by_record ON outbox (space, collection, record_id, seq);
CREATE TABLE IF NOT EXISTS acked (
    seq INTEGER PRIMARY KEY, space TEXT NOT NULL, op_id TEXT NOT NULL,
    collection TEXT NOT NULL, record_id TEXT NOT NULL, body TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    change_seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS acked_by_record ON acked (space, collection, record_id, seq);
CREATE TABLE IF NOT EXISTS dead (
    op_id TEXT PRIMARY KEY, space TEXT NOT NULL, body TEXT NOT NULL, problem TEXT NOT NULL,
    at_ms INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS receipts (op_id TEXT PRIMARY KEY, status TEXT NOT NULL, detail TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
COMMIT;
";

/// How long a handle waits for another handle's lock on the same store.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The file name of the store inside its folder.
pub const STORE_FILE: &str = "client.sqlite3";

pub(crate) fn sql_error(e: rusqlite::Error) -> ClientError {
    ClientError::Store(e.to_string())
}

/// A dead-letter row: Op ID, Mutation, Problem, and when it was dead-lettered (ms since the
/// Unix epoch; `None` for rows older than the column).
pub type DeadRow = (String, Value, Value, Option<u64>);

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

/// A mirrored Record.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirrored {
    /// Change Sequence of the pulled state.
    pub change_seq: u64,
    /// Tombstone?
    pub deleted: bool,
    /// The value (None for a tombstone).
    pub value: Option<Value>,
    /// keep_both conflicts.
    pub conflicts: Option<Value>,
    /// The server's digest.
    pub digest: Option<String>,
}

/// The store.
pub struct Store {
    conn: Connection,
    /// Whether a transaction opened by [`Store::begin`] is open: [`Store::tx`] is then a
    /// savepoint inside it.
    in_transaction: bool,
    /// Counter increments not yet written: each is added by the next durable transaction
    /// ([`Store::count_later`]).
    pending_counts: Vec<(&'static str, i64)>,
}

impl Store {
    /// Opens or creates the store in `dir`. A failure names the folder or file it concerns.
    pub fn open(dir: &Path) -> Result<Self, ClientError> {
        if dir.is_file() {
            return Err(ClientError::Store(format!(
                "{} is a file, not a store folder",
                dir.display()
            )));
        }
        Self::open_in(dir).map_err(|e| match e {
            ClientError::Store(m) if !m.starts_with("cannot create") => {
                ClientError::Store(format!("{}: {m}", dir.join(STORE_FILE).display()))
            }
            other => other,
        })
    }

    fn open_in(dir: &Path) -> Result<Self, ClientError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| ClientError::Store(format!("cannot create {}: {e}", dir.display())))?;
        let conn = Connection::open(dir.join(STORE_FILE)).map_err(sql_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_error)?;
        // Switching a new file to WAL needs every other connection gone, and SQLite reports
        // busy at once instead of calling the busy handler; so wait here as the handler would.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        let mut pause = Duration::from_millis(1);
        loop {
            match conn.execute_batch("PRAGMA journal_mode=WAL") {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                other => break other.map_err(sql_error)?,
            }
        }
        conn.execute_batch(SCHEMA).map_err(sql_error)?;
        // Stores made before dead letters carried their time get the column, empty for old rows.
        // Checked and added under the write lock: handles opening one old store together would
        // otherwise both add it.
        conn.execute_batch("BEGIN IMMEDIATE").map_err(sql_error)?;
        let has_at = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('dead') WHERE name = 'at_ms'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(sql_error);
        let added = match has_at {
            Ok(0) => conn
                .execute_batch("ALTER TABLE dead ADD COLUMN at_ms INTEGER")
                .map_err(sql_error),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        let end = if added.is_ok() { "COMMIT" } else { "ROLLBACK" };
        conn.execute_batch(end).map_err(sql_error)?;
        added?;
        Ok(Self {
            conn,
            in_transaction: false,
            pending_counts: Vec::new(),
        })
    }

    /// Runs `f` in one durable transaction, or inside [`Store::begin`] as part of the
    /// enclosing one (no savepoint: see there what a failure inside it means).
    pub fn tx<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        if self.in_transaction {
            return f(&self.conn);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_error)?;
        let out = f(&tx)?;
        for (name, by) in &self.pending_counts {
            Self::count(&tx, name, *by)?;
        }
        tx.commit().map_err(sql_error)?;
        self.pending_counts.clear();
        Ok(out)
    }

    /// Adds to a counter with the next durable transaction [`Store::tx`] commits, so that a
    /// statistic costs no commit (no fsync) of its own. Increments not yet written when the
    /// process ends are lost: counters are statistics, never protocol state.
    pub fn count_later(&mut self, name: &'static str, by: i64) {
        match self.pending_counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += by,
            None => self.pending_counts.push((name, by)),
        }
    }

    /// Opens one durable transaction that every [`Store::tx`] until [`Store::finish`] joins, so
    /// that many small changes cost one commit (one fsync).
    ///
    /// The joined changes get no savepoint each (its journal copied every page a settled
    /// Mutation touched, measured as most of the client's SQLite time in `bench backlog`): a
    /// `tx` that fails inside may leave part of its change in the transaction, so the caller
    /// must end a transaction in which anything failed with `finish(false)`, never commit it.
    pub fn begin(&mut self) -> Result<(), ClientError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(sql_error)?;
        self.in_transaction = true;
        Ok(())
    }

    /// Commits the transaction of [`Store::begin`] if `ok`, else rolls it back.
    pub fn finish(&mut self, ok: bool) -> Result<(), ClientError> {
        self.in_transaction = false;
        let sql = if ok { "COMMIT" } else { "ROLLBACK" };
        self.conn.execute_batch(sql).map_err(sql_error)
    }

    /// A meta value.
    pub fn meta(&self, key: &str) -> Result<Option<String>, ClientError> {
        Self::meta_in(&self.conn, key)
    }

    /// A meta value, read on `conn` (a transaction reads what it has locked).
    pub fn meta_in(conn: &Connection, key: &str) -> Result<Option<String>, ClientError> {
        conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")
            .and_then(|mut st| st.query_row([key], |r| r.get(0)).optional())
            .map_err(sql_error)
    }

    /// The meta value under `key`, set to `make()` first if there is none. Two handles that
    /// open a new store at the same moment get the same value: the first insert wins.
    pub fn meta_or_init(
        &mut self,
        key: &str,
        make: impl FnOnce() -> String,
    ) -> Result<String, ClientError> {
        self.tx(|tx| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                params![key, make()],
            )
            .map_err(sql_error)?;
            Ok(Self::meta_in(tx, key)?.unwrap_or_default())
        })
    }

    /// Sets a meta value in a transaction.
    pub fn set_meta(tx: &Connection, key: &str, value: &str) -> Result<(), ClientError> {
        tx.prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2")
            .and_then(|mut st| st.execute(params![key, value]))
            .map_err(sql_error)?;
        Ok(())
    }

    /// Adds to a counter in a transaction.
    pub fn count(tx: &Connection, name: &str, by: i64) -> Result<(), ClientError> {
        tx.prepare_cached("INSERT INTO counters (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = value + ?2")
            .and_then(|mut st| st.execute(params![name, by]))
            .map_err(sql_error)?;
        Ok(())
    }

    /// All counters.
    pub fn counters(&self) -> Result<Vec<(String, i64)>, ClientError> {
        let mut st = self
            .conn
            .prepare("SELECT name, value FROM counters ORDER BY name")
            .map_err(sql_error)?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql_error)?;
        rows.map(|r| r.map_err(sql_error)).collect()
    }

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

    /// A mirrored Record.
    pub fn mirrored(
        &self,
        space: &str,
        collection: &str,
        id: &str,
    ) -> Result<Option<Mirrored>, ClientError> {
        self.conn
            .query_row(
                "SELECT change_seq, deleted, value, conflicts, digest FROM mirror WHERE space = ?1 AND collection = ?2 AND id = ?3",
                params![space, collection, id],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?, r.get::<_, Option<String>>(2)?, r.get::<_, Option<String>>(3)?, r.get::<_, Option<String>>(4)?)),
            )
            .optional()
            .map_err(sql_error)?
            .map(|(seq, deleted, value, conflicts, digest)| {
                Ok(Mirrored {
                    change_seq: seq as u64,
                    deleted,
                    value: value.map(|v| serde_json::from_str(&v)).transpose().map_err(|e| ClientError::Store(e.to_string()))?,
                    conflicts: conflicts.map(|v| serde_json::from_str(&v)).transpose().map_err(|e| ClientError::Store(e.to_string()))?,
                    digest,
                })
            })
            .transpose()
    }

    /// Calls `f` with the Collection, Record ID and value of each existing (not deleted)
    /// Record the Mirror holds for `space`, in one scan. Errors: the store's, a value that is
    /// not JSON (a damaged row).
    pub fn for_each_mirrored_value(
        &self,
        space: &str,
        mut f: impl FnMut(&str, &str, &serde_json::Map<String, Value>),
    ) -> Result<(), ClientError> {
        let mut st = self
            .conn
            .prepare("SELECT collection, id, value FROM mirror WHERE space = ?1 AND deleted = 0")
            .map_err(sql_error)?;
        let mut rows = st.query([space]).map_err(sql_error)?;
        while let Some(row) = rows.next().map_err(sql_error)? {
            let (collection, id) = (
                row.get_ref(0)
                    .and_then(|v| Ok(v.as_str()?))
                    .map_err(sql_error)?,
                row.get_ref(1)
                    .and_then(|v| Ok(v.as_str()?))
                    .map_err(sql_error)?,
            );
            let Some(text) = row
                .get_ref(2)
                .and_then(|v| Ok(v.as_str_or_null()?))
                .map_err(sql_error)?
            else {
                continue;
            };
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(value)) => f(collection, id, &value),
                Ok(_) => {}
                Err(e) => {
                    return Err(ClientError::Store(format!(
                        "mirrored value of {collection}/{id}: {e}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// IDs of mirrored Records of a Collection (tombstones included).
    pub fn mirrored_ids(&self, space: &str, collection: &str) -> Result<Vec<String>, ClientError> {
        let mut st = self
            .conn
            .prepare("SELECT id FROM mirror WHERE space = ?1 AND collection = ?2 ORDER BY id")
            .map_err(sql_error)?;
        let rows = st
            .query_map(params![space, collection], |r| r.get(0))
            .map_err(sql_error)?;
        rows.map(|r| r.map_err(sql_error)).collect()
    }

    /// The Collections of a Space's mirrored Records (tombstones included), each once.
    pub fn mirror_collections(&self, space: &str) -> Result<Vec<String>, ClientError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT DISTINCT collection FROM mirror WHERE space = ?1")
            .map_err(sql_error)?;
        let rows = st.query_map([space], |r| r.get(0)).map_err(sql_error)?;
        rows.map(|r| r.map_err(sql_error)).collect()
    }

    /// (collection, id) of every mirrored Record of a Space, tombstones included.
    pub fn mirror_keys(&self, space: &str) -> Result<Vec<(String, String)>, ClientError> {
        let mut st = self
            .conn
            .prepare("SELECT collection, id FROM mirror WHERE space = ?1 ORDER BY collection, id")
            .map_err(sql_error)?;
        let rows = st
            .query_map([space], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql_error)?;
        rows.map(|r| r.map_err(sql_error)).collect()
    }

    /// (bucket, hex digest) of every existing mirrored Record of a Space.
    pub fn mirror_digests(&self, space: &str) -> Result<Vec<(u8, String)>, ClientError> {
        let mut st = self
            .conn
            .prepare("SELECT bucket, digest FROM mirror WHERE space = ?1 AND deleted = 0")
            .map_err(sql_error)?;
        let rows = st
            .query_map([space], |r| {
                Ok((r.get::<_, i64>(0)? as u8, r.get::<_, String>(1)?))
            })
            .map_err(sql_error)?;
        rows.map(|r| r.map_err(sql_error)).collect()
    }

    /// The dead-letter list of a Space: (op_id, body, problem).
    pub fn dead(&self, space: &str) -> Result<Vec<(String, Value, Value)>, ClientError> {
        let mut st = self
            .conn
            .prepare("SELECT op_id, body, problem FROM dead WHERE space = ?1 ORDER BY op_id")
            .map_err(sql_error)?;
        let rows = st
            .query_map([space], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(sql_error)?;
        rows.map(|r| {
            let (op, body, problem) = r.map_err(sql_error)?;
            Ok((
                op,
                serde_json::from_str(&body).unwrap_or(Value::Null),
                serde_json::from_str(&problem).unwrap_or(Value::Null),
            ))
        })
        .collect()
    }

    /// The dead-letter list of a Space with the time each entry was dead-lettered (milliseconds
    /// since the Unix epoch; `None` for entries made before the time was kept), oldest first.
    pub fn dead_at(&self, space: &str) -> Result<Vec<DeadRow>, ClientError> {
        let mut st = self
            .conn
            .prepare("SELECT op_id, body, problem, at_ms FROM dead WHERE space = ?1 ORDER BY at_ms, op_id")
            .map_err(sql_error)?;
        let rows = st
            .query_map([space], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                ))
            })
            .map_err(sql_error)?;
        rows.map(|r| {
            let (op, body, problem, at) = r.map_err(sql_error)?;
            Ok((
                op,
                serde_json::from_str(&body).unwrap_or(Value::Null),
                serde_json::from_str(&problem).unwrap_or(Value::Null),
                at.map(|a| a as u64),
            ))
        })
        .collect()
    }

    /// The receipt of an Op ID: (status, detail).
    pub fn receipt(&self, op_id: &str) -> Result<Option<(String, Option<String>)>, ClientError> {
        self.conn
            .query_row(
                "SELECT status, detail FROM receipts WHERE op_id = ?1",
                [op_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql_error)
    }
}

/// A pulled Record as the Mirror keeps it: its value and conflicts as JSON text, ready to
/// store, borrowed from the page it was parsed from (strings are copied only when they hold
/// escapes).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct MirrorRow<'a> {
    /// The Collection.
    #[serde(borrow, default)]
    pub collection: Cow<'a, str>,
    /// The Record ID.
    #[serde(borrow, default)]
    pub id: Cow<'a, str>,
    /// Its Change Sequence.
    #[serde(default)]
    pub change_seq: i64,
    /// Whether it is a tombstone.
    #[serde(default)]
    pub deleted: bool,
    /// Its Fields as JSON text; `None` for a tombstone (or `null`).
    #[serde(borrow, default)]
    pub value: Option<&'a RawValue>,
    /// Its `keep_both` conflicts as JSON text, when there are any.
    #[serde(borrow, default)]
    pub conflicts: Option<&'a RawValue>,
    /// The Server's digest (64 hex digits).
    #[serde(borrow, default)]
    pub digest: Option<Cow<'a, str>>,
}

/// The value and conflicts of a Record given as a JSON tree, as JSON text.
type RowTexts = (Option<Box<RawValue>>, Option<Box<RawValue>>);

fn row_texts(rec: &Value) -> RowTexts {
    let raw = |v: Option<&Value>| {
        v.filter(|v| !v.is_null())
            .map(|v| serde_json::value::to_raw_value(v).expect("JSON values serialize"))
    };
    (raw(rec.get("value")), raw(rec.get("conflicts")))
}

/// The row of a Record given as a JSON tree (absent members read as empty, as on a page).
fn row_of<'a>(rec: &'a Value, texts: &'a RowTexts) -> MirrorRow<'a> {
    let text = |k: &str| Cow::Borrowed(rec[k].as_str().unwrap_or(""));
    MirrorRow {
        collection: text("collection"),
        id: text("id"),
        change_seq: rec["change_seq"].as_i64().unwrap_or(0),
        deleted: rec["deleted"].as_bool().unwrap_or(false),
        value: texts.0.as_deref(),
        conflicts: texts.1.as_deref(),
        digest: rec["digest"].as_str().map(Cow::Borrowed),
    }
}

/// Writes a pulled Record, given as a JSON tree, into the Mirror.
pub fn put_mirror(tx: &Connection, space: &str, rec: &Value) -> Result<(), ClientError> {
    let texts = row_texts(rec);
    put_mirror_row(tx, space, &row_of(rec, &texts))
}

/// Writes a pulled Record into the Mirror, its value and conflicts stored as the text that
/// arrived (one cached statement; the caller holds the page's transaction).
pub fn put_mirror_row(
    tx: &Connection,
    space: &str,
    rec: &MirrorRow<'_>,
) -> Result<(), ClientError> {
    #[cfg(not(feature = "fault-injection"))]
    let merged: Option<String> = None;
    #[cfg(feature = "fault-injection")]
    let merged = if crate::faults::fault!(KeepsDroppedFields) {
        keep_dropped_fields(tx, space, rec)?
    } else {
        None
    };
    let value = merged.as_deref().or(rec.value.as_ref().map(|v| v.get()));
    tx.prepare_cached(
        "INSERT OR REPLACE INTO mirror (space, collection, id, change_seq, deleted, value, conflicts, digest, bucket)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .map_err(sql_error)?
    .execute(params![
        space,
        rec.collection,
        rec.id,
        rec.change_seq,
        rec.deleted,
        value,
        rec.conflicts.as_ref().map(|v| v.get()),
        rec.digest,
        i64::from(driftless_protocol::checksum::bucket_of(&rec.collection, &rec.id)),
    ])
    .map_err(sql_error)?;
    Ok(())
}

#[cfg(feature = "fault-injection")]
/// The planted fault `keeps-dropped-fields`: the pulled value laid over the Mirror's, so Fields
/// the pulled value lacks stay.
fn keep_dropped_fields(
    tx: &Connection,
    space: &str,
    rec: &MirrorRow<'_>,
) -> Result<Option<String>, ClientError> {
    let held: Option<String> = tx
        .query_row(
            "SELECT value FROM mirror WHERE space = ?1 AND collection = ?2 AND id = ?3",
            params![space, rec.collection, rec.id],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql_error)?
        .flatten();
    let (Some(held), Some(new)) = (held, rec.value.as_ref()) else {
        return Ok(None);
    };
    let mut merged: Value = serde_json::from_str(&held).unwrap_or(Value::Null);
    let new: Value = serde_json::from_str(new.get()).unwrap_or(Value::Null);
    match (merged.as_object_mut(), new.as_object()) {
        (Some(m), Some(n)) => {
            m.extend(n.clone());
            Ok(Some(merged.to_string()))
        }
        _ => Ok(None),
    }
}

/// Sets a receipt.
pub fn receipt(
    tx: &Connection,
    op_id: &str,
    status: &str,
    detail: Option<&str>,
) -> Result<(), ClientError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO receipts (op_id, status, detail) VALUES (?1, ?2, ?3)",
    )
    .and_then(|mut st| st.execute(params![op_id, status, detail]))
    .map_err(sql_error)?;
    Ok(())
}

/// Sets the receipts of `op_ids` to `status` (no detail), in one statement.
pub fn receipts<S: AsRef<str> + serde::Serialize>(
    tx: &Connection,
    op_ids: &[S],
    status: &str,
) -> Result<(), ClientError> {
    if op_ids.is_empty() {
        return Ok(());
    }
    let list = serde_json::to_string(op_ids).map_err(|e| ClientError::Store(e.to_string()))?;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO receipts (op_id, status, detail) SELECT value, ?2, NULL FROM json_each(?1)",
    )
    .and_then(|mut st| st.execute(params![list, status]))
    .map_err(sql_error)?;
    Ok(())
}

/// The raw-SQLite ceiling for offline writes: the rows one `Client::write` commits (the Outbox
/// entry, `seq`, `hlc`, its receipt and the `writes` counter) inserted directly into a fresh
/// store in `dir`, one durable transaction per write, as `write` does. `bodies` are the
/// Mutations' JSON texts.
pub fn raw_outbox_ceiling(
    dir: &Path,
    bodies: &[String],
) -> Result<std::time::Duration, ClientError> {
    let mut store = Store::open(dir)?;
    let start = std::time::Instant::now();
    for (i, body) in bodies.iter().enumerate() {
        let (seq, op_id, id) = (i as i64 + 1, format!("op-{i:08}"), format!("r{i}"));
        store.tx(|tx| {
            tx.execute(
                "INSERT INTO outbox (seq, space, op_id, collection, record_id, body, priority) VALUES (?1, 'bench', ?2, 'things', ?3, ?4, 0)",
                params![seq, op_id, id, body],
            )
            .map_err(sql_error)?;
            Store::set_meta(tx, "hlc", "019b76daa87b-0000-client-a")?;
            Store::set_meta(tx, "seq", &seq.to_string())?;
            receipt(tx, &op_id, "pending", None)?;
            Store::count(tx, "writes", 1)
        })?;
    }
    Ok(start.elapsed())
}

/// The raw-SQLite ceiling for the initial-sync benchmark: the same Mirror rows (as pulled
/// Records) inserted directly into a fresh store in `dir`, one transaction per page of `page`,
/// with the store's own pragmas. Returns the elapsed time.
pub fn raw_mirror_ceiling(
    dir: &Path,
    records: &[Value],
    page: usize,
) -> Result<std::time::Duration, ClientError> {
    let mut store = Store::open(dir)?;
    // The rows are made ready before the clock starts: this is the cost of the inserts alone.
    let texts: Vec<RowTexts> = records.iter().map(row_texts).collect();
    let rows: Vec<MirrorRow<'_>> = records
        .iter()
        .zip(&texts)
        .map(|(rec, t)| row_of(rec, t))
        .collect();
    let start = std::time::Instant::now();
    for chunk in rows.chunks(page.max(1)) {
        store.tx(|tx| {
            for rec in chunk {
                put_mirror_row(tx, "bench", rec)?;
            }
            Store::set_meta(tx, "cursor:bench", "c1.0.0")
        })?;
    }
    Ok(start.elapsed())
}

/// A full disk, for `driftless simulate`: a real SQLite limit, not a mock.
impl Store {
    /// With `full`, packs the store (`VACUUM`, so its pages have little room left) and caps it
    /// at the pages it has then (SQLite's `max_page_count`), so that every write needing a new
    /// page fails with "database or disk is full" as on a full disk; without, lifts the cap
    /// again. Lasts as long as this connection.
    pub(crate) fn set_disk_full(&self, full: bool) -> Result<(), ClientError> {
        let pages: i64 = if full {
            self.conn.execute_batch("VACUUM").map_err(sql_error)?;
            self.conn
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .map_err(sql_error)?
        } else {
            // SQLite's largest page count.
            0xFFFF_FFFE
        };
        self.conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
            .map_err(sql_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(store: &Store, name: &str) -> Option<i64> {
        let counters = store.counters().unwrap();
        counters
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// A deferred count is written by the next transaction that commits, and only once; a
    /// transaction that fails keeps it for the next.
    #[test]
    fn deferred_counts_ride_on_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.count_later("bytes_received", 10);
        store.count_later("bytes_received", 5);
        assert_eq!(counter(&store, "bytes_received"), None);
        let failed: Result<(), ClientError> =
            store.tx(|_| Err(ClientError::Store("refused".into())));
        assert!(failed.is_err());
        assert_eq!(counter(&store, "bytes_received"), None);
        store.tx(|tx| Store::set_meta(tx, "k", "v")).unwrap();
        assert_eq!(counter(&store, "bytes_received"), Some(15));
        store.tx(|tx| Store::set_meta(tx, "k", "w")).unwrap();
        assert_eq!(counter(&store, "bytes_received"), Some(15));
    }
}
