//! One transaction of the PostgreSQL backend on one Space: the [`SpaceRead`] and [`SpaceWrite`]
//! implementations (the SQL of every storage operation), and Change Sequences taken under the
//! Space's row lock (see the parent module's docs).

use std::cell::RefCell;
use std::collections::HashMap;

use driftless_protocol::collection_schema::CollectionSchema;
use driftless_protocol::hlc::Hlc;
use driftless_protocol::merge::RecordState;
use driftless_protocol::messages::HistoryEntry;
use postgres::types::ToSql;
use postgres::{Row, Statement, Transaction};

use super::super::{
    RecordView, SpaceMeta, SpaceRead, SpaceWrite, StorageError, StoredOp, StoredRecord,
};
use super::{backend, corrupt, prepared};

pub(super) struct Tx<'a, 'c> {
    pub(super) tx: RefCell<&'a mut Transaction<'c>>,
    pub(super) statements: RefCell<&'a mut HashMap<String, Statement>>,
    pub(super) space: &'a str,
    pub(super) node: &'a str,
    pub(super) naive: bool,
    /// In a write: the Space's latest Change Sequence, read under its row lock and advanced in
    /// memory; written back once, before commit (one row version per transaction instead of
    /// one per Mutation). `None` in a read.
    pub(super) seq: std::cell::Cell<Option<u64>>,
    /// Whether `seq` moved since it was read.
    pub(super) seq_moved: std::cell::Cell<bool>,
}

const RECORD_COLUMNS: &str =
    "collection, id, change_seq, deleted, state, value, conflicts, digest, bucket, schema_version";

fn record_from_row(row: &Row) -> Result<StoredRecord, StorageError> {
    let text = |i: usize| row.try_get::<_, Option<String>>(i).map_err(backend);
    let state: String = row.try_get(4).map_err(backend)?;
    let state: RecordState =
        serde_json::from_str(&state).map_err(|e| corrupt("record state", e))?;
    let value = text(5)?
        .map(|v| serde_json::from_str(&v).map_err(|e| corrupt("record value", e)))
        .transpose()?;
    let conflicts = text(6)?
        .map(|v| serde_json::from_str(&v).map_err(|e| corrupt("record conflicts", e)))
        .transpose()?;
    let digest = row
        .try_get::<_, Option<Vec<u8>>>(7)
        .map_err(backend)?
        .map(|d| <[u8; 32]>::try_from(d.as_slice()).map_err(|e| corrupt("record digest", e)))
        .transpose()?;
    let deleted: bool = row.try_get(3).map_err(backend)?;
    Ok(StoredRecord {
        collection: row.try_get(0).map_err(backend)?,
        id: row.try_get(1).map_err(backend)?,
        change_seq: row.try_get::<_, i64>(2).map_err(backend)? as u64,
        state,
        view: RecordView {
            exists: !deleted,
            value,
            conflicts,
            digest,
            bucket: row.try_get::<_, i32>(8).map_err(backend)? as u8,
            schema_version: row
                .try_get::<_, Option<i64>>(9)
                .map_err(backend)?
                .map(|v| v as u32),
        },
    })
}

impl Tx<'_, '_> {
    pub(super) fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StorageError> {
        let mut tx = self.tx.borrow_mut();
        let statement = prepared(&mut tx, &mut self.statements.borrow_mut(), sql)?;
        tx.query(&statement, params).map_err(backend)
    }

    pub(super) fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StorageError> {
        let mut tx = self.tx.borrow_mut();
        let statement = prepared(&mut tx, &mut self.statements.borrow_mut(), sql)?;
        tx.execute(&statement, params).map_err(backend)
    }

    fn records(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<StoredRecord>, StorageError> {
        self.query(sql, params)?
            .iter()
            .map(record_from_row)
            .collect()
    }
}

impl SpaceRead for Tx<'_, '_> {
    fn meta(&self) -> Result<SpaceMeta, StorageError> {
        let rows = self.query(
            "SELECT latest_seq, horizon, compaction_point, clock FROM spaces WHERE space = $1",
            &[&self.space],
        )?;
        let Some(row) = rows.first() else {
            return Ok(SpaceMeta::default());
        };
        let horizon: Option<String> = row.try_get(1).map_err(backend)?;
        let clock: Option<String> = row.try_get(3).map_err(backend)?;
        Ok(SpaceMeta {
            // Inside a write, the number taken in memory (see `Tx::seq`).
            latest_seq: match self.seq.get() {
                Some(latest) => latest,
                None => row.try_get::<_, i64>(0).map_err(backend)? as u64,
            },
            horizon: horizon
                .map(|h| h.parse().map_err(|e| corrupt("horizon", e)))
                .transpose()?,
            compaction_point: row.try_get::<_, i64>(2).map_err(backend)? as u64,
            clock: clock
                .map(|c| c.parse().map_err(|e| corrupt("space clock", e)))
                .transpose()?,
        })
    }

    fn ops(&self, op_ids: &[&str]) -> Result<HashMap<String, StoredOp>, StorageError> {
        if op_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = self.query(
            "SELECT op_id, body_digest, text_digest, outcome FROM ops
             WHERE space = $1 AND op_id = ANY($2)",
            &[&self.space, &op_ids],
        )?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(backend)?,
                    StoredOp {
                        body_digest: r.try_get(1).map_err(backend)?,
                        text_digest: r.try_get(2).map_err(backend)?,
                        outcome: r.try_get(3).map_err(backend)?,
                    },
                ))
            })
            .collect()
    }

    fn record(&self, collection: &str, id: &str) -> Result<Option<StoredRecord>, StorageError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE space = $1 AND collection = $2 AND id = $3"
        );
        Ok(self.records(&sql, &[&self.space, &collection, &id])?.pop())
    }

    fn records_changed_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StorageError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE space = $1 AND change_seq > $2
             ORDER BY change_seq LIMIT $3"
        );
        self.records(&sql, &[&self.space, &(after as i64), &(limit as i64)])
    }

    fn record_digests(&self) -> Result<Vec<(u8, [u8; 32])>, StorageError> {
        let rows = self.query(
            "SELECT bucket, digest FROM records WHERE space = $1 AND NOT deleted",
            &[&self.space],
        )?;
        rows.iter()
            .map(|r| {
                let bucket: i32 = r.try_get(0).map_err(backend)?;
                let digest: Vec<u8> = r.try_get(1).map_err(backend)?;
                let digest = <[u8; 32]>::try_from(digest.as_slice())
                    .map_err(|e| corrupt("record digest", e))?;
                Ok((bucket as u8, digest))
            })
            .collect()
    }

    fn bucket_records(
        &self,
        bucket: u8,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StorageError> {
        let (c, i) = after.unwrap_or(("", ""));
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE space = $1 AND bucket = $2 AND NOT deleted
             AND (collection, id) > ($3, $4) ORDER BY collection, id LIMIT $5"
        );
        self.records(
            &sql,
            &[&self.space, &(bucket as i32), &c, &i, &(limit as i64)],
        )
    }

    fn collection_records(&self, collection: &str) -> Result<Vec<StoredRecord>, StorageError> {
        let sql =
            format!("SELECT {RECORD_COLUMNS} FROM records WHERE space = $1 AND collection = $2");
        self.records(&sql, &[&self.space, &collection])
    }

    fn schemas(&self, collection: &str) -> Result<Vec<CollectionSchema>, StorageError> {
        let rows = self.query(
            "SELECT doc FROM schemas WHERE space = $1 AND collection = $2 ORDER BY version",
            &[&self.space, &collection],
        )?;
        rows.iter()
            .map(|r| {
                let doc: String = r.try_get(0).map_err(backend)?;
                serde_json::from_str(&doc).map_err(|e| corrupt("collection schema", e))
            })
            .collect()
    }

    fn schema_versions(
        &self,
    ) -> Result<Option<std::collections::BTreeMap<String, u32>>, StorageError> {
        // [PULL-20]: read in the pull's snapshot, so the summary is as of the page's records.
        let rows = self.query(
            "SELECT collection, MAX(version) FROM schemas WHERE space = $1 GROUP BY collection",
            &[&self.space],
        )?;
        rows.iter()
            .map(|r| {
                let collection: String = r.try_get(0).map_err(backend)?;
                let version: i64 = r.try_get(1).map_err(backend)?;
                let version =
                    u32::try_from(version).map_err(|e| corrupt("collection schema version", e))?;
                Ok((collection, version))
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    fn history(
        &self,
        collection: &str,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StorageError> {
        let rows = self.query(
            "SELECT position, entry FROM history WHERE space = $1 AND collection = $2 AND id = $3
             AND position > $4 ORDER BY position LIMIT $5",
            &[
                &self.space,
                &collection,
                &id,
                &(after as i64),
                &(limit as i64),
            ],
        )?;
        rows.iter()
            .map(|r| {
                let position: i64 = r.try_get(0).map_err(backend)?;
                let text: String = r.try_get(1).map_err(backend)?;
                let mut entry: HistoryEntry =
                    serde_json::from_str(&text).map_err(|e| corrupt("history entry", e))?;
                entry.position = position as u64;
                Ok(entry)
            })
            .collect()
    }
}

impl SpaceWrite for Tx<'_, '_> {
    fn next_change_seq(&mut self) -> Result<u64, StorageError> {
        if self.naive {
            // The fault the gap test must catch: a number taken before commit order is known.
            let seq: i64 = self.query("SELECT nextval('naive_change_seq')", &[])?[0].get(0);
            self.execute(
                "UPDATE spaces SET latest_seq = GREATEST(latest_seq, $2) WHERE space = $1",
                &[&self.space, &seq],
            )?;
            return Ok(seq as u64);
        }
        // The row is locked by this transaction since `write` began (see the module docs), and
        // its `latest_seq` read then: the next number is taken in memory.
        if let Some(latest) = self.seq.get() {
            let next = latest + 1;
            self.seq.set(Some(next));
            self.seq_moved.set(true);
            return Ok(next);
        }
        let rows = self.query(
            "UPDATE spaces SET latest_seq = latest_seq + 1 WHERE space = $1 RETURNING latest_seq",
            &[&self.space],
        )?;
        let row = rows
            .first()
            .ok_or_else(|| StorageError::Backend("the space row is missing".into()))?;
        Ok(row.try_get::<_, i64>(0).map_err(backend)? as u64)
    }

    fn put_record(&mut self, r: &StoredRecord) -> Result<(), StorageError> {
        let state = serde_json::to_string(&r.state).map_err(|e| corrupt("record state", e))?;
        let value = r
            .view
            .value
            .as_ref()
            .map(|v| serde_json::Value::Object(v.clone()).to_string());
        let conflicts = r
            .view
            .conflicts
            .as_ref()
            .map(|c| serde_json::to_string(c).map_err(|e| corrupt("record conflicts", e)))
            .transpose()?;
        let deleted_hlc = if r.view.exists {
            None
        } else {
            r.state.deleted.as_ref().map(|d| d.hlc.to_string())
        };
        self.execute(
            "INSERT INTO records
             (space, collection, id, change_seq, deleted, deleted_hlc, state, value, conflicts, digest, bucket, schema_version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (space, collection, id) DO UPDATE SET
               change_seq = EXCLUDED.change_seq, deleted = EXCLUDED.deleted,
               deleted_hlc = EXCLUDED.deleted_hlc, state = EXCLUDED.state, value = EXCLUDED.value,
               conflicts = EXCLUDED.conflicts, digest = EXCLUDED.digest, bucket = EXCLUDED.bucket,
               schema_version = EXCLUDED.schema_version",
            &[
                &self.space,
                &r.collection,
                &r.id,
                &(r.change_seq as i64),
                &!r.view.exists,
                &deleted_hlc,
                &state,
                &value,
                &conflicts,
                &r.view.digest.map(|d| d.to_vec()),
                &(r.view.bucket as i32),
                &r.view.schema_version.map(|v| v as i64),
            ],
        )?;
        Ok(())
    }

    fn put_op(&mut self, op_id: &str, op: &StoredOp, hlc_ms: u64) -> Result<(), StorageError> {
        self.execute(
            "INSERT INTO ops (space, op_id, body_digest, text_digest, outcome, hlc_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &self.space,
                &op_id,
                &op.body_digest,
                &op.text_digest,
                &op.outcome,
                &(hlc_ms as i64),
            ],
        )?;
        Ok(())
    }

    fn append_history(
        &mut self,
        collection: &str,
        id: &str,
        entry: &HistoryEntry,
    ) -> Result<u64, StorageError> {
        let text = serde_json::to_string(entry).map_err(|e| corrupt("history entry", e))?;
        let rows = self.query(
            "INSERT INTO history (space, collection, id, hlc_ms, entry) VALUES ($1, $2, $3, $4, $5)
             RETURNING position",
            &[
                &self.space,
                &collection,
                &id,
                &(entry.hlc.physical_ms() as i64),
                &text,
            ],
        )?;
        Ok(rows[0].try_get::<_, i64>(0).map_err(backend)? as u64)
    }

    fn put_schema(&mut self, doc: &CollectionSchema) -> Result<(), StorageError> {
        let text = serde_json::to_string(doc).map_err(|e| corrupt("collection schema", e))?;
        self.execute(
            "INSERT INTO schemas (space, collection, version, doc) VALUES ($1, $2, $3, $4)",
            &[
                &self.space,
                &doc.collection.as_str(),
                &(doc.version as i64),
                &text,
            ],
        )?;
        Ok(())
    }

    fn compact(&mut self, horizon: &Hlc, compaction_point: u64) -> Result<u64, StorageError> {
        let horizon = horizon.to_string();
        // Cursors before a purged tombstone could have missed its delete: raise the point past it.
        let newest_purged: Option<i64> = self.query(
            "SELECT MAX(change_seq) FROM records WHERE space = $1 AND deleted AND deleted_hlc <= $2",
            &[&self.space, &horizon],
        )?[0]
            .try_get(0)
            .map_err(backend)?;
        let point = compaction_point.max(newest_purged.unwrap_or(0) as u64) as i64;
        self.execute(
            "UPDATE spaces SET
               horizon = CASE WHEN horizon IS NULL OR horizon < $2 THEN $2 ELSE horizon END,
               compaction_point = GREATEST(compaction_point, $3)
             WHERE space = $1",
            &[&self.space, &horizon, &point],
        )?;
        self.execute(
            "DELETE FROM records WHERE space = $1 AND deleted AND deleted_hlc <= $2",
            &[&self.space, &horizon],
        )
    }

    fn save_clock(&mut self, clock: &Hlc) -> Result<(), StorageError> {
        // Kept per (node, Space): one row per instance and Space, so pushes to different
        // Spaces never wait on a shared clock row.
        self.execute(
            "INSERT INTO clocks (node, space, value) VALUES ($1, $2, $3)
             ON CONFLICT (node, space) DO UPDATE SET value = GREATEST(clocks.value, EXCLUDED.value)",
            &[&self.node, &self.space, &clock.to_string()],
        )?;
        // The Space's row is locked by this transaction already: no added contention.
        self.execute(
            "UPDATE spaces SET clock = GREATEST(clock, $2) WHERE space = $1",
            &[&self.space, &clock.to_string()],
        )?;
        Ok(())
    }

    fn expire(&mut self, before_ms: u64, history_before_ms: u64) -> Result<(), StorageError> {
        self.execute(
            "DELETE FROM ops WHERE space = $1 AND hlc_ms < $2",
            &[&self.space, &(before_ms as i64)],
        )?;
        self.execute(
            "DELETE FROM history WHERE space = $1 AND hlc_ms < $2",
            &[&self.space, &(history_before_ms as i64)],
        )?;
        Ok(())
    }
}
