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

mod ceiling;
mod mirror;
mod outbox;

pub use ceiling::{raw_mirror_ceiling, raw_outbox_ceiling};
pub use mirror::{put_mirror, put_mirror_row, MirrorRow, Mirrored};
pub use outbox::Pending;

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
pub fn receipts<S: serde::Serialize>(
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
