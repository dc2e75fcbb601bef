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

mod ceiling;
mod tx;

pub use ceiling::raw_insert_ceiling;
use tx::Tx;

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

#[cfg(test)]
mod tests;
