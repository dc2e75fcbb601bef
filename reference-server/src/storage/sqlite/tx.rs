//! The SQLite backend's transaction: reads and writes of one Space inside a read or write
//! transaction ([`SpaceRead`], [`SpaceWrite`]), and the mapping of `records` rows.

use super::*;

pub(super) struct Tx<'a> {
    tx: &'a Connection,
    space: &'a str,
    /// The last change sequence number handed out by this write and not yet stored in `spaces`
    /// ([`Tx::store_seq`] stores it once, at the end of the write, instead of one row update per
    /// Mutation).
    seq: Option<u64>,
}

impl<'a> Tx<'a> {
    pub(super) fn new(tx: &'a Connection, space: &'a str) -> Self {
        Self {
            tx,
            space,
            seq: None,
        }
    }

    /// Runs a write's closure on this transaction, then stores the Space's latest change
    /// sequence number it advanced to, if any.
    pub(super) fn run<T>(
        mut self,
        f: impl FnOnce(&mut dyn SpaceWrite) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let value = f(&mut self)?;
        if let Some(seq) = self.seq {
            self.tx
                .prepare_cached(
                    "INSERT INTO spaces (space, latest_seq) VALUES (?1, ?2)
                     ON CONFLICT (space) DO UPDATE SET latest_seq = ?2",
                )
                .map_err(backend)?
                .execute(params![self.space, seq as i64])
                .map_err(backend)?;
        }
        Ok(value)
    }
}

const RECORD_COLUMNS: &str =
    "collection, id, change_seq, deleted, state, value, conflicts, digest, bucket, schema_version";

fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRecord> {
    Ok(RawRecord {
        collection: row.get(0)?,
        id: row.get(1)?,
        change_seq: row.get(2)?,
        deleted: row.get(3)?,
        state: row.get(4)?,
        value: row.get(5)?,
        conflicts: row.get(6)?,
        digest: row.get(7)?,
        bucket: row.get(8)?,
        schema_version: row.get(9)?,
    })
}

struct RawRecord {
    collection: String,
    id: String,
    change_seq: i64,
    deleted: bool,
    state: String,
    value: Option<String>,
    conflicts: Option<String>,
    digest: Option<Vec<u8>>,
    bucket: i64,
    schema_version: Option<i64>,
}

impl RawRecord {
    fn decode(self) -> Result<StoredRecord, StorageError> {
        let state: RecordState =
            serde_json::from_str(&self.state).map_err(|e| corrupt("record state", e))?;
        let value = self
            .value
            .map(|v| serde_json::from_str(&v).map_err(|e| corrupt("record value", e)))
            .transpose()?;
        let conflicts = self
            .conflicts
            .map(|v| serde_json::from_str(&v).map_err(|e| corrupt("record conflicts", e)))
            .transpose()?;
        let digest = self
            .digest
            .map(|d| <[u8; 32]>::try_from(d.as_slice()).map_err(|e| corrupt("record digest", e)))
            .transpose()?;
        Ok(StoredRecord {
            collection: self.collection,
            id: self.id,
            change_seq: self.change_seq as u64,
            state,
            view: RecordView {
                exists: !self.deleted,
                value,
                conflicts,
                digest,
                bucket: self.bucket as u8,
                schema_version: self.schema_version.map(|v| v as u32),
            },
        })
    }
}

impl Tx<'_> {
    fn records(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<StoredRecord>, StorageError> {
        let mut stmt = self.tx.prepare_cached(sql).map_err(backend)?;
        let rows = stmt.query_map(params, record_from_row).map_err(backend)?;
        rows.map(|r| r.map_err(backend)?.decode()).collect()
    }
}

impl SpaceRead for Tx<'_> {
    fn meta(&self) -> Result<SpaceMeta, StorageError> {
        let row = self
            .tx
            .prepare_cached(
                "SELECT latest_seq, horizon, compaction_point FROM spaces WHERE space = ?1",
            )
            .map_err(backend)?
            .query_row([self.space], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .optional()
            .map_err(backend)?;
        let mut meta = match row {
            None => SpaceMeta::default(),
            Some((latest, horizon, point)) => SpaceMeta {
                latest_seq: latest as u64,
                horizon: horizon
                    .map(|h| h.parse().map_err(|e| corrupt("horizon", e)))
                    .transpose()?,
                compaction_point: point as u64,
                clock: None,
            },
        };
        // A change sequence number this write handed out but has not stored yet.
        if let Some(seq) = self.seq {
            meta.latest_seq = seq;
        }
        Ok(meta)
    }

    fn ops(&self, op_ids: &[&str]) -> Result<HashMap<String, StoredOp>, StorageError> {
        if op_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids = serde_json::to_string(op_ids).map_err(|e| corrupt("op IDs", e))?;
        // One statement for the whole batch; each ID is still one primary-key lookup.
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT op_id, body_digest, text_digest, outcome FROM ops
                 WHERE space = ?1 AND op_id IN (SELECT value FROM json_each(?2))",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![self.space, ids], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    StoredOp {
                        body_digest: r.get(1)?,
                        text_digest: r.get(2)?,
                        outcome: r.get(3)?,
                    },
                ))
            })
            .map_err(backend)?;
        rows.map(|r| r.map_err(backend)).collect()
    }

    fn record(&self, collection: &str, id: &str) -> Result<Option<StoredRecord>, StorageError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE space = ?1 AND collection = ?2 AND id = ?3"
        );
        Ok(self
            .records(&sql, params![self.space, collection, id])?
            .pop())
    }

    fn records_changed_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StorageError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE space = ?1 AND change_seq > ?2 ORDER BY change_seq LIMIT ?3"
        );
        self.records(&sql, params![self.space, after as i64, limit as i64])
    }

    fn wire_records_changed_after(
        &self,
        after: u64,
        limit: usize,
        each: &mut dyn FnMut(u64, &str) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT change_seq, wire, collection, id FROM records
                 WHERE space = ?1 AND change_seq > ?2 ORDER BY change_seq LIMIT ?3",
            )
            .map_err(backend)?;
        let mut rows = stmt
            .query(params![self.space, after as i64, limit as i64])
            .map_err(backend)?;
        while let Some(row) = rows.next().map_err(backend)? {
            let seq = row.get::<_, i64>(0).map_err(backend)? as u64;
            // The text is borrowed from SQLite's row buffer: no copy, no decoding.
            match row.get_ref(1).map_err(backend)?.as_str_or_null() {
                Ok(Some(wire)) => each(seq, wire)?,
                Ok(None) => {
                    // Written before the column existed: derive it from the stored state.
                    let (collection, id): (String, String) =
                        (row.get(2).map_err(backend)?, row.get(3).map_err(backend)?);
                    let record = self
                        .record(&collection, &id)?
                        .ok_or_else(|| corrupt("record", "vanished during a read"))?;
                    each(seq, &super::super::wire_json(&record))?;
                }
                Err(e) => return Err(corrupt("record wire form", e)),
            }
        }
        Ok(())
    }

    fn record_digests(&self) -> Result<Vec<(u8, [u8; 32])>, StorageError> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT bucket, digest FROM records WHERE space = ?1 AND deleted = 0")
            .map_err(backend)?;
        let rows = stmt
            .query_map([self.space], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(backend)?;
        rows.map(|r| {
            let (bucket, digest) = r.map_err(backend)?;
            let digest =
                <[u8; 32]>::try_from(digest.as_slice()).map_err(|e| corrupt("record digest", e))?;
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
            "SELECT {RECORD_COLUMNS} FROM records WHERE space = ?1 AND bucket = ?2 AND deleted = 0
             AND (collection, id) > (?3, ?4) ORDER BY collection, id LIMIT ?5"
        );
        self.records(&sql, params![self.space, bucket as i64, c, i, limit as i64])
    }

    fn collection_records(&self, collection: &str) -> Result<Vec<StoredRecord>, StorageError> {
        let sql =
            format!("SELECT {RECORD_COLUMNS} FROM records WHERE space = ?1 AND collection = ?2");
        self.records(&sql, params![self.space, collection])
    }

    fn schema_versions(
        &self,
    ) -> Result<Option<std::collections::BTreeMap<String, u32>>, StorageError> {
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT collection, MAX(version) FROM schemas WHERE space = ?1 GROUP BY collection",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([self.space], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u32))
            })
            .map_err(backend)?;
        rows.map(|r| r.map_err(backend))
            .collect::<Result<_, _>>()
            .map(Some)
    }

    fn schemas(&self, collection: &str) -> Result<Vec<CollectionSchema>, StorageError> {
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT doc FROM schemas WHERE space = ?1 AND collection = ?2 ORDER BY version",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![self.space, collection], |r| r.get::<_, String>(0))
            .map_err(backend)?;
        rows.map(|r| {
            serde_json::from_str(&r.map_err(backend)?).map_err(|e| corrupt("collection schema", e))
        })
        .collect()
    }

    fn history(
        &self,
        collection: &str,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StorageError> {
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT position, entry FROM history WHERE space = ?1 AND collection = ?2 AND id = ?3
                 AND position > ?4 ORDER BY position LIMIT ?5",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(
                params![self.space, collection, id, after as i64, limit as i64],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
            .map_err(backend)?;
        rows.map(|r| {
            let (position, text) = r.map_err(backend)?;
            let mut entry: HistoryEntry =
                serde_json::from_str(&text).map_err(|e| corrupt("history entry", e))?;
            entry.position = position as u64;
            Ok(entry)
        })
        .collect()
    }
}

impl SpaceWrite for Tx<'_> {
    fn next_change_seq(&mut self) -> Result<u64, StorageError> {
        let latest = match self.seq {
            Some(seq) => seq,
            None => self.meta()?.latest_seq,
        };
        let next = latest + 1;
        self.seq = Some(next);
        Ok(next)
    }

    fn put_record(&mut self, r: &StoredRecord) -> Result<(), StorageError> {
        let encode = |v: &serde_json::Value| v.to_string();
        let state = serde_json::to_string(&r.state).map_err(|e| corrupt("record state", e))?;
        let value = r
            .view
            .value
            .as_ref()
            .map(|v| encode(&serde_json::Value::Object(v.clone())));
        let conflicts = r
            .view
            .conflicts
            .as_ref()
            .map(|c| serde_json::to_string(c).unwrap_or_default());
        let deleted_hlc = if r.view.exists {
            None
        } else {
            r.state.deleted.as_ref().map(|d| d.hlc.to_string())
        };
        // The wire form is derived once here, so that every pull copies it out as it is.
        let wire = super::super::wire_json(r);
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO records
                 (space, collection, id, change_seq, deleted, deleted_hlc, state, value, conflicts, digest, bucket, schema_version, wire)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )
            .map_err(backend)?
            .execute(params![
                self.space,
                r.collection,
                r.id,
                r.change_seq as i64,
                !r.view.exists,
                deleted_hlc,
                state,
                value,
                conflicts,
                r.view.digest.map(|d| d.to_vec()),
                r.view.bucket as i64,
                r.view.schema_version.map(|v| v as i64),
                wire,
            ])
            .map_err(backend)?;
        Ok(())
    }

    fn put_op(&mut self, op_id: &str, op: &StoredOp, hlc_ms: u64) -> Result<(), StorageError> {
        self.tx
            .prepare_cached("INSERT INTO ops (space, op_id, body_digest, text_digest, outcome, hlc_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .map_err(backend)?
            .execute(params![self.space, op_id, op.body_digest, op.text_digest, op.outcome, hlc_ms as i64])
            .map_err(backend)?;
        Ok(())
    }

    fn append_history(
        &mut self,
        collection: &str,
        id: &str,
        entry: &HistoryEntry,
    ) -> Result<u64, StorageError> {
        let text = serde_json::to_string(entry).map_err(|e| corrupt("history entry", e))?;
        self.tx
            .prepare_cached("INSERT INTO history (space, collection, id, hlc_ms, entry) VALUES (?1, ?2, ?3, ?4, ?5)")
            .map_err(backend)?
            .execute(params![self.space, collection, id, entry.hlc.physical_ms() as i64, text])
            .map_err(backend)?;
        Ok(self.tx.last_insert_rowid() as u64)
    }

    fn put_schema(&mut self, doc: &CollectionSchema) -> Result<(), StorageError> {
        let text = serde_json::to_string(doc).map_err(|e| corrupt("collection schema", e))?;
        self.tx
            .execute(
                "INSERT INTO schemas (space, collection, version, doc) VALUES (?1, ?2, ?3, ?4)",
                params![
                    self.space,
                    doc.collection.as_str(),
                    doc.version as i64,
                    text
                ],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn compact(&mut self, horizon: &Hlc, compaction_point: u64) -> Result<u64, StorageError> {
        // Cursors before a purged tombstone could have missed its delete: raise the point past it.
        let newest_purged: Option<i64> = self
            .tx
            .query_row(
                "SELECT MAX(change_seq) FROM records WHERE space = ?1 AND deleted = 1 AND deleted_hlc <= ?2",
                params![self.space, horizon.to_string()],
                |r| r.get(0),
            )
            .map_err(backend)?;
        let compaction_point = compaction_point.max(newest_purged.unwrap_or(0) as u64);
        self.tx
            .execute(
                "INSERT INTO spaces (space, horizon, compaction_point) VALUES (?1, ?2, ?3)
                 ON CONFLICT (space) DO UPDATE SET
                   horizon = CASE WHEN horizon IS NULL OR horizon < ?2 THEN ?2 ELSE horizon END,
                   compaction_point = MAX(compaction_point, ?3)",
                params![self.space, horizon.to_string(), compaction_point as i64],
            )
            .map_err(backend)?;
        let purged = self
            .tx
            .execute(
                "DELETE FROM records WHERE space = ?1 AND deleted = 1 AND deleted_hlc <= ?2",
                params![self.space, horizon.to_string()],
            )
            .map_err(backend)?;
        Ok(purged as u64)
    }

    fn save_clock(&mut self, clock: &Hlc) -> Result<(), StorageError> {
        self.tx
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('clock', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = MAX(value, ?1)",
            )
            .map_err(backend)?
            .execute([clock.to_string()])
            .map_err(backend)?;
        Ok(())
    }

    fn expire(&mut self, before_ms: u64, history_before_ms: u64) -> Result<(), StorageError> {
        self.tx
            .execute(
                "DELETE FROM ops WHERE space = ?1 AND hlc_ms < ?2",
                params![self.space, before_ms as i64],
            )
            .map_err(backend)?;
        self.tx
            .execute(
                "DELETE FROM history WHERE space = ?1 AND hlc_ms < ?2",
                params![self.space, history_before_ms as i64],
            )
            .map_err(backend)?;
        Ok(())
    }
}
