//! The SQLite backend: one database file in the data folder, WAL journal, `synchronous=FULL`.
//!
//! One writer connection, behind a mutex, and a pool of read connections. Callers run them on
//! blocking threads (`tokio::task::spawn_blocking`).
//!
//! **Group commit.** Writes that arrive while another is running share its transaction and its
//! one fsync: each `write` that joins an open transaction runs in a savepoint of it (so its own
//! failure rolls back only its own work; the first write of a transaction needs none), and the
//! writer that finds nobody queued behind it commits for all of them. Every writer whose closure succeeded waits for that commit before it returns, so
//! an `Ok` still means durable; if the commit fails, every one of them gets the error.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use driftless_protocol::collection_schema::CollectionSchema;
use driftless_protocol::hlc::Hlc;
use driftless_protocol::merge::RecordState;
use driftless_protocol::messages::HistoryEntry;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{
    RecordView, SpaceMeta, SpaceRead, SpaceWrite, Storage, StorageError, StoredOp, StoredRecord,
};

/// The database file name inside the data folder.
pub const DB_FILE: &str = "driftless.sqlite3";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS spaces (
    space TEXT PRIMARY KEY,
    latest_seq INTEGER NOT NULL DEFAULT 0,
    horizon TEXT,
    compaction_point INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    space TEXT NOT NULL,
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    change_seq INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    deleted_hlc TEXT,
    state TEXT NOT NULL,
    value TEXT,
    conflicts TEXT,
    digest BLOB,
    bucket INTEGER NOT NULL,
    schema_version INTEGER,
    wire TEXT,
    PRIMARY KEY (space, collection, id)
);
CREATE INDEX IF NOT EXISTS records_by_seq ON records (space, change_seq);
CREATE INDEX IF NOT EXISTS records_by_bucket ON records (space, bucket, collection, id) WHERE deleted = 0;
CREATE TABLE IF NOT EXISTS ops (
    space TEXT NOT NULL,
    op_id TEXT NOT NULL,
    body_digest TEXT NOT NULL,
    text_digest TEXT,
    outcome TEXT NOT NULL,
    hlc_ms INTEGER NOT NULL,
    PRIMARY KEY (space, op_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    space TEXT NOT NULL,
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    hlc_ms INTEGER NOT NULL,
    entry TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_record ON history (space, collection, id, position);
CREATE TABLE IF NOT EXISTS schemas (
    space TEXT NOT NULL,
    collection TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (space, collection, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
";

/// The pragmas every connection uses. WAL with `synchronous=FULL` makes each commit durable
/// before it returns, which is what an acknowledgement promises (`[PUSH-2]`).
pub const PRAGMAS: &str =
    "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;";

const STATEMENT_CACHE: usize = 64;

/// Brings a database written by an earlier version up to [`SCHEMA`]: `ops.text_digest` came
/// later (its rows read as `None`, and are then recognised by their canonical digest alone), and
/// so did `records.wire` (its rows read as NULL, and pull derives their wire form from the
/// stored state until the Record is next written). `records` was a `WITHOUT ROWID` table; it is
/// rebuilt as a rowid table in one transaction (see [`records_with_rowid`]).
fn migrate(conn: &Connection) -> Result<(), StorageError> {
    for (table, column) in [("ops", "text_digest"), ("records", "wire")] {
        let present: bool = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
                [table, column],
                |r| r.get::<_, i64>(0),
            )
            .map_err(backend)?
            > 0;
        if !present {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} TEXT"))
                .map_err(backend)?;
        }
    }
    records_with_rowid(conn)
}

/// Rebuilds a `WITHOUT ROWID` `records` table of an earlier version as the rowid table of
/// [`SCHEMA`], keeping every row, in one transaction (a crash leaves the old table whole).
///
/// Why: a `WITHOUT ROWID` table is a b-tree of its rows keyed by the primary key, and SQLite
/// keeps at most about a quarter of a page (some 1,000 bytes of a 4 KiB page) of such a row in
/// the b-tree itself; a Record's row (its merge state, value and wire form) is larger, so every
/// Record spilled into an overflow page of its own: one extra page read per Record on each pull,
/// mostly empty pages written on each push (measured with `dbstat` after 10k small puts: 10,000
/// overflow pages for 10,000 Records). A rowid table keeps rows up to nearly a whole page inline.
fn records_with_rowid(conn: &Connection) -> Result<(), StorageError> {
    let sql: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'records'",
            [],
            |r| r.get(0),
        )
        .map_err(backend)?;
    if !sql.to_ascii_uppercase().contains("WITHOUT ROWID") {
        return Ok(());
    }
    let columns = "space, collection, id, change_seq, deleted, deleted_hlc, state, value, \
                   conflicts, digest, bucket, schema_version, wire";
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         ALTER TABLE records RENAME TO records_without_rowid;
         DROP INDEX IF EXISTS records_by_seq;
         DROP INDEX IF EXISTS records_by_bucket;
         {SCHEMA}
         INSERT INTO records ({columns}) SELECT {columns} FROM records_without_rowid;
         DROP TABLE records_without_rowid;
         COMMIT;"
    ))
    .map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        backend(e)
    })
}

pub mod checkpoint;

fn backend(e: rusqlite::Error) -> StorageError {
    StorageError::Backend(e.to_string())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("{what}: {e}"))
}

/// Read connections beside the writer: pulls, record reads and checksums of a few Spaces at
/// once run while a push commits.
pub const READERS: u32 = 4;

/// A SQLite database of Spaces: one writer connection behind a mutex (SQLite has one writer at
/// a time; a second would only wait on its lock) and a pool of [`READERS`] read connections.
/// In WAL mode a read transaction sees the snapshot of its first read, unchanged by commits of
/// the writer, and never waits for it.
pub struct SqliteStorage {
    writer: Mutex<Writer>,
    /// Writers waiting for [`SqliteStorage::writer`]: while there are any, a finished write
    /// leaves the transaction open for them to join.
    queued: AtomicUsize,
    /// Group transactions committed so far.
    commits: std::sync::atomic::AtomicU64,
    readers: r2d2::Pool<r2d2_sqlite::SqliteConnectionManager>,
    /// Copies the write-ahead log into the database file beside the commits.
    checkpointer: checkpoint::Checkpointer,
}

/// Writes one commit may carry at most: bounds how long the first of them waits for its answer.
pub const GROUP_WRITES_MAX: usize = 64;

/// The writer connection and the transaction its writes share.
struct Writer {
    conn: Connection,
    /// The open group transaction, if any, and how many writes have joined it.
    group: Option<(Arc<Group>, usize)>,
    /// Wakes the checkpoint thread as the log grows.
    waker: checkpoint::Waker,
}

/// One group transaction: the writes that joined it wait here for its commit.
#[derive(Default)]
struct Group {
    outcome: Mutex<Option<Result<(), String>>>,
    done: Condvar,
}

impl Group {
    fn finish(&self, outcome: Result<(), String>) {
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        self.done.notify_all();
    }

    fn wait(&self) -> Result<(), StorageError> {
        let mut outcome = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match &*outcome {
                Some(result) => return result.clone().map_err(StorageError::Backend),
                None => outcome = self.done.wait(outcome).unwrap_or_else(|p| p.into_inner()),
            }
        }
    }
}

/// Holds the writer while one write runs in the group transaction. Dropped without
/// [`Joined::leave`] (a closure panicked), it rolls the whole group back and fails every write
/// that joined it, so none of them waits forever or reports a write that was not made.
struct Joined<'a> {
    writer: std::sync::MutexGuard<'a, Writer>,
    group: Arc<Group>,
    left: bool,
}

impl Joined<'_> {
    /// Commits the group if `commit`, then lets the next writer in.
    fn leave(mut self, commit: bool) {
        self.left = true;
        if commit {
            checkpoint::take_frames();
            let result = self
                .writer
                .conn
                .execute_batch("COMMIT")
                .map_err(|e| e.to_string());
            if result.is_err() {
                let _ = self.writer.conn.execute_batch("ROLLBACK");
            }
            if let Some(frames) = checkpoint::take_frames() {
                self.writer.waker.committed(frames);
            }
            self.writer.group = None;
            self.group.finish(result);
        }
    }
}

impl Drop for Joined<'_> {
    fn drop(&mut self) {
        if !self.left {
            let _ = self.writer.conn.execute_batch("ROLLBACK");
            self.writer.group = None;
            self.group
                .finish(Err("a write of the same commit failed unexpectedly".into()));
        }
    }
}

/// Sets up each read connection of the pool as the writer is set up, and read-only.
#[derive(Debug)]
struct ReaderSetup;

impl r2d2::CustomizeConnection<Connection, rusqlite::Error> for ReaderSetup {
    fn on_acquire(&self, conn: &mut Connection) -> Result<(), rusqlite::Error> {
        conn.execute_batch(PRAGMAS)?;
        conn.execute_batch("PRAGMA query_only=ON;")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(())
    }
}

impl SqliteStorage {
    /// Opens (creating if needed) the database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
        let path = data_dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(backend)?;
        conn.execute_batch(PRAGMAS).map_err(backend)?;
        // The savepoint journal of a write that joins a group transaction (a copy of each page
        // before the write changes it) stays in memory: it is at most the pages one write
        // touches, and on disk it was a temporary file written, never fsynced, then dropped.
        conn.execute_batch("PRAGMA temp_store=MEMORY;")
            .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        migrate(&conn)?;
        let (checkpointer, waker) =
            checkpoint::Checkpointer::start(&path).map_err(StorageError::Backend)?;
        checkpoint::install(&conn);
        // Room for every statement the backend prepares, so none is re-parsed per request.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Readers are opened after the tables exist and WAL is on.
        let readers = r2d2::Pool::builder()
            .max_size(READERS)
            .min_idle(Some(1))
            .connection_timeout(std::time::Duration::from_secs(30))
            .connection_customizer(Box::new(ReaderSetup))
            .build(r2d2_sqlite::SqliteConnectionManager::file(&path))
            .map_err(|e| StorageError::Backend(format!("read connections: {e}")))?;
        Ok(Self {
            writer: Mutex::new(Writer {
                conn,
                group: None,
                waker,
            }),
            checkpointer,
            queued: AtomicUsize::new(0),
            commits: Default::default(),
            readers,
        })
    }

    fn reader(
        &self,
    ) -> Result<r2d2::PooledConnection<r2d2_sqlite::SqliteConnectionManager>, StorageError> {
        self.readers
            .get()
            .map_err(|e| StorageError::Backend(format!("no read connection: {e}")))
    }

    /// How many transactions the writer has committed: with group commit, at most the number
    /// of writes, fewer when writes arrived together.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// The thread that checkpoints the write-ahead log (see [`checkpoint`]).
    pub fn checkpointer(&self) -> &checkpoint::Checkpointer {
        &self.checkpointer
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writer> {
        // A panic while holding the lock cannot leave a half-written transaction behind
        // ([`Joined`] rolls it back), so a poisoned lock is safe to reuse.
        self.queued.fetch_add(1, Ordering::SeqCst);
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.queued.fetch_sub(1, Ordering::SeqCst);
        writer
    }
}

struct Tx<'a> {
    tx: &'a Connection,
    space: &'a str,
    /// The last change sequence number handed out by this write and not yet stored in `spaces`
    /// ([`Tx::store_seq`] stores it once, at the end of the write, instead of one row update per
    /// Mutation).
    seq: Option<u64>,
}

impl<'a> Tx<'a> {
    fn new(tx: &'a Connection, space: &'a str) -> Self {
        Self {
            tx,
            space,
            seq: None,
        }
    }

    /// Runs a write's closure on this transaction, then stores the Space's latest change
    /// sequence number it advanced to, if any.
    fn run<T>(
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
                    each(seq, &super::wire_json(&record))?;
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
        let wire = super::wire_json(r);
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

impl Storage for SqliteStorage {
    fn write<T>(
        &self,
        space: &str,
        f: impl FnOnce(&mut dyn SpaceWrite) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut writer = self.lock();
        let (group, first) = match &mut writer.group {
            Some((group, joined)) => {
                *joined += 1;
                (group.clone(), false)
            }
            None => {
                writer
                    .conn
                    .execute_batch("BEGIN IMMEDIATE")
                    .map_err(backend)?;
                let group = Arc::new(Group::default());
                writer.group = Some((group.clone(), 1));
                (group, true)
            }
        };
        let mut joined = Joined {
            writer,
            group: group.clone(),
            left: false,
        };
        let result = if first {
            // Alone in the transaction (the next writer joins only once this one leaves): no
            // savepoint, whose journal would copy every page the write touches before changing
            // it; if the write fails, the whole transaction, which holds nothing else, is
            // rolled back (dropping `joined` does that) and nobody waits on its group.
            match Tx::new(&joined.writer.conn, space).run(f) {
                Ok(value) => Ok(value),
                Err(e) => {
                    drop(joined);
                    return Err(e);
                }
            }
        } else {
            (|| {
                let sp = joined.writer.conn.savepoint().map_err(backend)?;
                let value = Tx::new(&sp, space).run(f)?;
                sp.commit().map_err(backend)?;
                Ok(value)
            })()
        };
        // Whoever finds nobody queued behind it commits for the group (also when its own
        // write failed and was rolled back: the others' still wait for that commit).
        let joined_count = joined.writer.group.as_ref().map_or(0, |(_, n)| *n);
        let commit = self.queued.load(Ordering::SeqCst) == 0 || joined_count >= GROUP_WRITES_MAX;
        joined.leave(commit);
        if commit {
            self.commits.fetch_add(1, Ordering::Relaxed);
        }
        let value = result?;
        // With synchronous=FULL, the commit returns only after the WAL is fsynced.
        group.wait()?;
        Ok(value)
    }

    fn read<T>(
        &self,
        space: &str,
        f: impl FnOnce(&dyn SpaceRead) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut conn = self.reader()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(backend)?;
        let result = f(&Tx::new(&tx, space))?;
        tx.finish().map_err(backend)?;
        Ok(result)
    }

    fn spaces(&self) -> Result<Vec<String>, StorageError> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare("SELECT space FROM spaces ORDER BY space")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(backend)?;
        rows.map(|r| r.map_err(backend)).collect()
    }

    fn load_clock(&self) -> Result<Option<Hlc>, StorageError> {
        let conn = self.reader()?;
        let text: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'clock'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(backend)?;
        text.map(|t| t.parse().map_err(|e| corrupt("clock", e)))
            .transpose()
    }
}

/// The raw-SQLite ceiling for the push benchmark: the rows one applied `put` writes (Space
/// bookkeeping, Record, Outcome, history entry, clock) inserted directly into a fresh database in
/// `dir` with the same pragmas and indexes, one transaction per batch of `batch`. Returns the
/// elapsed time for `mutations` rows of each kind.
pub fn raw_insert_ceiling(
    dir: &Path,
    mutations: usize,
    batch: usize,
) -> Result<std::time::Duration, StorageError> {
    let conn = Connection::open(dir.join(DB_FILE)).map_err(backend)?;
    conn.execute_batch(PRAGMAS).map_err(backend)?;
    conn.execute_batch(SCHEMA).map_err(backend)?;
    let mut conn = conn;
    let state = r#"{"last_write":{"hlc":"019b76daa87b-0000-client-a","op_id":"op-00000001"},"puts":{"client-a":{"hlc":"019b76daa87b-0000-client-a","op_id":"op-00000001"}},"fields":{"n":{"assigns":{"client-a":{"stamp":{"hlc":"019b76daa87b-0000-client-a","op_id":"op-00000001"},"value":1}}},"title":{"assigns":{"client-a":{"stamp":{"hlc":"019b76daa87b-0000-client-a","op_id":"op-00000001"},"value":"benchmark record"}}}}}"#;
    let value = r#"{"n":1,"title":"benchmark record"}"#;
    let outcome = r#"{"status":"applied","op_id":"op-00000001","change_seq":1}"#;
    let wire = r#"{"collection":"things","id":"r1","change_seq":1,"deleted":false,"value":{"n":1,"title":"benchmark record"},"digest":"0707070707070707070707070707070707070707070707070707070707070707"}"#;
    let entry = r#"{"position":0,"op_id":"op-00000001","client_id":"client-a","user":"bench","kind":"put","fields":["n","title"],"hlc":"019b76daa87b-0000-client-a","received_at":"2026-01-01T00:00:00.000Z","status":"applied","change_seq":1}"#;
    let start = std::time::Instant::now();
    let mut n = 0usize;
    while n < mutations {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        for _ in 0..batch.min(mutations - n) {
            n += 1;
            let id = format!("r{n}");
            let seq: i64 = tx
                .query_row(
                    "INSERT INTO spaces (space, latest_seq) VALUES ('bench', 1)
                     ON CONFLICT (space) DO UPDATE SET latest_seq = latest_seq + 1 RETURNING latest_seq",
                    [],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO records
                 (space, collection, id, change_seq, deleted, deleted_hlc, state, value, conflicts, digest, bucket, schema_version, wire)
                 VALUES ('bench', 'things', ?1, ?2, 0, NULL, ?3, ?4, NULL, ?5, ?6, NULL, ?7)",
            )
            .map_err(backend)?
            .execute(params![id, seq, state, value, vec![7u8; 32], (n % 64) as i64, wire])
            .map_err(backend)?;
            tx.prepare_cached("INSERT INTO ops (space, op_id, body_digest, text_digest, outcome, hlc_ms) VALUES ('bench', ?1, ?2, ?2, ?3, 0)")
                .map_err(backend)?
                .execute(params![format!("op-{n:08}"), "0".repeat(64), outcome])
                .map_err(backend)?;
            tx.prepare_cached("INSERT INTO history (space, collection, id, hlc_ms, entry) VALUES ('bench', 'things', ?1, 0, ?2)")
                .map_err(backend)?
                .execute(params![id, entry])
                .map_err(backend)?;
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('clock', '019b76daa87b-0000-server')
             ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
            [],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    Ok(start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A read runs beside a write transaction that is still open, and sees the state from
    /// before it; after the commit, a new read sees the write.
    #[test]
    fn reads_run_beside_an_open_write_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let storage = std::sync::Arc::new(SqliteStorage::open(dir.path()).unwrap());
        let op = StoredOp {
            body_digest: "abc".into(),
            text_digest: None,
            outcome: "{}".into(),
        };
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let writer = {
            let storage = storage.clone();
            let op = op.clone();
            std::thread::spawn(move || {
                storage
                    .write("demo", |tx| {
                        tx.put_op("op-1", &op, 0)?;
                        started_tx.send(()).unwrap();
                        release_rx.recv().unwrap();
                        Ok(())
                    })
                    .unwrap()
            })
        };
        started.recv().unwrap();
        let (done_tx, done) = mpsc::channel();
        {
            let storage = storage.clone();
            std::thread::spawn(move || {
                let seen = storage.read("demo", |tx| tx.ops(&["op-1"])).unwrap();
                done_tx.send(seen.len()).unwrap();
            });
        }
        // A deadline, not a timing claim: with one shared connection this read never returns
        // while the writer holds it.
        let seen = done.recv_timeout(Duration::from_secs(60));
        release.send(()).unwrap();
        writer.join().unwrap();
        assert_eq!(
            seen,
            Ok(0),
            "the read must finish during the write and not see it"
        );
        let after = storage.read("demo", |tx| tx.ops(&["op-1"])).unwrap();
        assert_eq!(after.get("op-1"), Some(&op));
    }

    /// A data folder from before `ops.text_digest` opens, keeps its Outcomes, and takes new ones.
    #[test]
    fn a_database_without_text_digests_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            conn.execute_batch(
                "CREATE TABLE ops (space TEXT NOT NULL, op_id TEXT NOT NULL,
                     body_digest TEXT NOT NULL, outcome TEXT NOT NULL, hlc_ms INTEGER NOT NULL,
                     PRIMARY KEY (space, op_id)) WITHOUT ROWID;
                 INSERT INTO ops VALUES ('demo', 'op-old-1', 'abc', '{}', 0);",
            )
            .unwrap();
        }
        let storage = SqliteStorage::open(dir.path()).unwrap();
        let old = storage
            .read("demo", |tx| tx.ops(&["op-old-1"]))
            .unwrap()
            .remove("op-old-1");
        assert_eq!(
            old,
            Some(StoredOp {
                body_digest: "abc".into(),
                text_digest: None,
                outcome: "{}".into(),
            })
        );
        let new = StoredOp {
            body_digest: "def".into(),
            text_digest: Some("123".into()),
            outcome: "{}".into(),
        };
        storage
            .write("demo", |tx| tx.put_op("op-new-1", &new, 0))
            .unwrap();
        drop(storage);
        // Opening again finds the column in place.
        let storage = SqliteStorage::open(dir.path()).unwrap();
        let got = storage
            .read("demo", |tx| tx.ops(&["op-new-1", "op-none"]))
            .unwrap();
        assert_eq!(got.len(), 1);
        let got = got.get("op-new-1").cloned();
        assert_eq!(got, Some(new));
    }

    fn stored(id: &str, change_seq: u64, n: i64) -> StoredRecord {
        let value = serde_json::json!({"n": n, "title": "a \"quoted\" title"});
        StoredRecord {
            collection: "things".into(),
            id: id.into(),
            change_seq,
            state: RecordState::default(),
            view: RecordView {
                exists: true,
                value: value.as_object().cloned(),
                conflicts: None,
                digest: Some([7; 32]),
                bucket: 3,
                schema_version: Some(2),
            },
        }
    }

    fn wire_page(storage: &SqliteStorage, after: u64, limit: usize) -> Vec<(u64, String)> {
        storage
            .read("demo", |tx| {
                let mut out = Vec::new();
                tx.wire_records_changed_after(after, limit, &mut |seq, text| {
                    out.push((seq, text.to_owned()));
                    Ok(())
                })?;
                Ok(out)
            })
            .unwrap()
    }

    /// Pull copies out the wire form stored at write time: the same text the Record's wire
    /// message serializes to, in `change_seq` order, bounded by `limit`.
    #[test]
    fn wire_records_are_the_serialized_wire_form_in_change_order() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(dir.path()).unwrap();
        let records = [stored("b", 1, 1), stored("a", 2, 2), stored("c", 3, 3)];
        storage
            .write("demo", |tx| {
                for r in &records {
                    tx.put_record(r)?;
                }
                Ok(())
            })
            .unwrap();
        let page = wire_page(&storage, 1, 10);
        let expected: Vec<(u64, String)> = records[1..]
            .iter()
            .map(|r| {
                (
                    r.change_seq,
                    serde_json::to_string(&super::super::wire_record(r)).unwrap(),
                )
            })
            .collect();
        assert_eq!(page, expected);
        assert_eq!(wire_page(&storage, 0, 2).len(), 2);
    }

    /// A data folder from before `records.wire` opens, and pulls its old Records in the same
    /// wire form as if they had been written now (derived from the stored state).
    #[test]
    fn a_database_without_wire_forms_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(dir.path()).unwrap();
        storage
            .write("demo", |tx| tx.put_record(&stored("a", 1, 1)))
            .unwrap();
        let before = wire_page(&storage, 0, 10);
        drop(storage);
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            conn.execute_batch("ALTER TABLE records DROP COLUMN wire")
                .unwrap();
        }
        let storage = SqliteStorage::open(dir.path()).unwrap();
        assert_eq!(wire_page(&storage, 0, 10), before);
        storage
            .write("demo", |tx| tx.put_record(&stored("b", 2, 2)))
            .unwrap();
        let page = wire_page(&storage, 0, 10);
        assert_eq!(page.len(), 2);
        assert_eq!(page[0], before[0]);
    }

    /// A data folder whose `records` is the old `WITHOUT ROWID` table opens with every Record
    /// kept, pulls the same page, and keeps working; its table is a rowid table afterwards.
    #[test]
    fn a_records_table_without_rowid_is_rebuilt_with_every_record() {
        // Records written by this version, in a database of its own.
        let now = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(now.path()).unwrap();
        storage
            .write("demo", |tx| {
                tx.put_record(&stored("a", 1, 1))?;
                tx.put_record(&stored("b", 2, 2))
            })
            .unwrap();
        let before = wire_page(&storage, 0, 10);
        assert_eq!(before.len(), 2);
        drop(storage);
        // The same rows in a database whose `records` is the old WITHOUT ROWID table.
        let old = tempfile::tempdir().unwrap();
        let without_rowid = SCHEMA.replacen(
            "    PRIMARY KEY (space, collection, id)\n);",
            "    PRIMARY KEY (space, collection, id)\n) WITHOUT ROWID;",
            1,
        );
        assert_ne!(without_rowid, SCHEMA, "the old table's definition was made");
        {
            let conn = Connection::open(old.path().join(DB_FILE)).unwrap();
            conn.execute_batch(PRAGMAS).unwrap();
            conn.execute_batch(&without_rowid).unwrap();
            conn.execute(
                "ATTACH DATABASE ?1 AS now",
                [now.path().join(DB_FILE).to_str().unwrap()],
            )
            .unwrap();
            conn.execute_batch(
                "INSERT INTO records SELECT * FROM now.records;
                 INSERT INTO spaces SELECT * FROM now.spaces;",
            )
            .unwrap();
        }
        let table_sql = |storage: &SqliteStorage| -> String {
            storage
                .reader()
                .unwrap()
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE name = 'records'",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        let storage = SqliteStorage::open(old.path()).unwrap();
        assert!(!table_sql(&storage).contains("WITHOUT ROWID"));
        assert_eq!(wire_page(&storage, 0, 10), before);
        storage
            .write("demo", |tx| tx.put_record(&stored("c", 3, 3)))
            .unwrap();
        assert_eq!(wire_page(&storage, 0, 10).len(), 3);
        drop(storage);
        // Opening again changes nothing.
        let storage = SqliteStorage::open(old.path()).unwrap();
        assert_eq!(wire_page(&storage, 0, 10).len(), 3);
    }

    /// Waits until `n` writers are queued for the writer: a condition, not a duration.
    fn until_queued(storage: &SqliteStorage, n: usize) {
        while storage.queued.load(Ordering::SeqCst) < n {
            std::thread::yield_now();
        }
    }

    /// Starts a write of Op `op` on another thread that holds the writer until `release` says
    /// so; returns once it runs.
    fn held_write(
        storage: &std::sync::Arc<SqliteStorage>,
        op: &'static str,
    ) -> (
        mpsc::Sender<()>,
        std::thread::JoinHandle<Result<(), StorageError>>,
    ) {
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let storage = storage.clone();
        let handle = std::thread::spawn(move || {
            storage.write("demo", |tx| {
                tx.put_op(op, &op_of(), 0)?;
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                Ok(())
            })
        });
        started.recv().unwrap();
        (release, handle)
    }

    fn op_of() -> StoredOp {
        StoredOp {
            body_digest: "abc".into(),
            text_digest: None,
            outcome: "{}".into(),
        }
    }

    fn known_ops(storage: &SqliteStorage, ids: &[&str]) -> usize {
        storage.read("demo", |tx| tx.ops(ids)).unwrap().len()
    }

    /// Writes that queue behind a running one share its commit; one that fails is rolled back
    /// alone; every one that succeeded is durable when it returns.
    #[test]
    fn writes_arriving_together_share_one_commit_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let storage = std::sync::Arc::new(SqliteStorage::open(dir.path()).unwrap());
        let (release, first) = held_write(&storage, "op-1");
        let queued: Vec<_> = ["op-2", "op-bad", "op-3"]
            .into_iter()
            .enumerate()
            .map(|(i, op)| {
                let mine = storage.clone();
                let handle = std::thread::spawn(move || {
                    mine.write("demo", |tx| {
                        tx.put_op(op, &op_of(), 0)?;
                        if op == "op-bad" {
                            return Err(StorageError::Corrupt("refused".into()));
                        }
                        Ok(())
                    })
                });
                until_queued(&storage, i + 1);
                handle
            })
            .collect();
        release.send(()).unwrap();
        assert!(first.join().unwrap().is_ok());
        let results: Vec<bool> = queued
            .into_iter()
            .map(|h| h.join().unwrap().is_ok())
            .collect();
        assert_eq!(results, [true, false, true]);
        assert_eq!(
            storage.commits(),
            1,
            "four writes that arrived together, one commit"
        );
        assert_eq!(known_ops(&storage, &["op-1", "op-2", "op-3"]), 3);
        assert_eq!(known_ops(&storage, &["op-bad"]), 0);
        // Alone, a write commits by itself.
        storage
            .write("demo", |tx| tx.put_op("op-4", &op_of(), 0))
            .unwrap();
        assert_eq!(storage.commits(), 2);
        drop(storage);
        let storage = SqliteStorage::open(dir.path()).unwrap();
        assert_eq!(known_ops(&storage, &["op-1", "op-2", "op-3", "op-4"]), 4);
    }

    /// A write that panics in a shared transaction fails every write of it (none is reported
    /// durable, none waits forever), and the writer is usable afterwards.
    #[test]
    fn a_panicking_write_fails_its_whole_group_and_nothing_hangs() {
        let dir = tempfile::tempdir().unwrap();
        let storage = std::sync::Arc::new(SqliteStorage::open(dir.path()).unwrap());
        let (release, first) = held_write(&storage, "op-1");
        let panicking = {
            let storage = storage.clone();
            std::thread::spawn(move || {
                storage.write("demo", |tx| -> Result<(), StorageError> {
                    tx.put_op("op-2", &op_of(), 0)?;
                    panic!("a bug in a handler")
                })
            })
        };
        until_queued(&storage, 1);
        release.send(()).unwrap();
        assert!(first.join().unwrap().is_err(), "its commit never happened");
        assert!(panicking.join().is_err());
        assert_eq!(known_ops(&storage, &["op-1", "op-2"]), 0);
        storage
            .write("demo", |tx| tx.put_op("op-3", &op_of(), 0))
            .unwrap();
        assert_eq!(known_ops(&storage, &["op-3"]), 1);
    }

    /// The first write of a transaction runs without a savepoint; when it fails, nothing it
    /// wrote stays, and the next write starts a clean transaction of its own.
    #[test]
    fn a_failing_write_alone_in_its_transaction_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(dir.path()).unwrap();
        let failed = storage.write("demo", |tx| -> Result<(), StorageError> {
            tx.put_op("op-1", &op_of(), 0)?;
            tx.put_record(&stored("a", 1, 1))?;
            Err(StorageError::Corrupt("refused".into()))
        });
        assert!(matches!(failed, Err(StorageError::Corrupt(_))));
        assert_eq!(storage.commits(), 0, "nothing to commit");
        storage
            .write("demo", |tx| tx.put_op("op-2", &op_of(), 0))
            .unwrap();
        drop(storage);
        let storage = SqliteStorage::open(dir.path()).unwrap();
        assert_eq!(known_ops(&storage, &["op-1"]), 0);
        assert_eq!(known_ops(&storage, &["op-2"]), 1);
        assert!(wire_page(&storage, 0, 10).is_empty());
    }

    fn latest_seq(storage: &SqliteStorage) -> u64 {
        storage.read("demo", |tx| tx.meta()).unwrap().latest_seq
    }

    /// A write hands out consecutive change sequence numbers, `meta` sees the latest one at
    /// once, and the Space stores it with the commit; a failed write's numbers are not kept.
    #[test]
    fn change_sequence_numbers_continue_across_writes_and_only_committed_ones_count() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(dir.path()).unwrap();
        let handed = storage
            .write("demo", |tx| {
                let mut seen = Vec::new();
                for _ in 0..3 {
                    let seq = tx.next_change_seq()?;
                    assert_eq!(tx.meta()?.latest_seq, seq);
                    seen.push(seq);
                }
                Ok(seen)
            })
            .unwrap();
        assert_eq!(handed, [1, 2, 3]);
        assert_eq!(latest_seq(&storage), 3);
        let failed = storage.write("demo", |tx| -> Result<(), StorageError> {
            assert_eq!(tx.next_change_seq()?, 4);
            Err(StorageError::Corrupt("refused".into()))
        });
        assert!(failed.is_err());
        assert_eq!(latest_seq(&storage), 3);
        // The horizon's row update in the same write keeps the stored number.
        storage
            .write("demo", |tx| {
                assert_eq!(tx.next_change_seq()?, 4);
                tx.compact(&"000000000001-0000-n".parse().unwrap(), 0)
                    .map(|_| ())
            })
            .unwrap();
        drop(storage);
        let storage = SqliteStorage::open(dir.path()).unwrap();
        assert_eq!(latest_seq(&storage), 4);
    }

    /// Once the log has grown by [`checkpoint::CHECKPOINT_FRAMES`] pages, the checkpoint thread
    /// copies it into the database file (no COMMIT does), and every write is still there.
    #[test]
    fn the_checkpoint_thread_copies_the_log_once_it_has_grown() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(dir.path()).unwrap();
        let big = "x".repeat(5000);
        let write = |from: usize| {
            storage
                .write("demo", |tx| {
                    for i in from..from + 50 {
                        let mut r = stored(&format!("r{i:05}"), i as u64 + 1, i as i64);
                        r.view
                            .value
                            .as_mut()
                            .unwrap()
                            .insert("body".into(), big.clone().into());
                        tx.put_record(&r)?;
                    }
                    Ok(())
                })
                .unwrap()
        };
        write(0);
        assert_eq!(
            storage.checkpointer().done(),
            0,
            "a small log is left alone"
        );
        // Each Record's row takes two pages or more: 30 writes of 50 pass 1,000 pages.
        for n in 1..30 {
            write(n * 50);
        }
        assert!(
            storage
                .checkpointer()
                .wait_done(1, std::time::Duration::from_secs(60)),
            "no checkpoint ran"
        );
        assert_eq!(wire_page(&storage, 0, 2000).len(), 1500);
        drop(storage);
        let storage = SqliteStorage::open(dir.path()).unwrap();
        assert_eq!(wire_page(&storage, 0, 2000).len(), 1500);
    }
}
