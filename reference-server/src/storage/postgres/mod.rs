//! The PostgreSQL backend: several server instances on one database (feature `postgres`).
//!
//! # Gap-free Change Sequences
//!
//! A pull pages Records in `change_seq` order and hands out a Cursor at the last position it
//! saw (`[PULL-3]`). That is only correct if no Change Sequence below that position can become
//! visible later. On an MVCC database a number taken at insert time (a `SEQUENCE`, `nextval`) is
//! not commit order: transaction A takes 4, B takes 5 and commits first, a pull reads 5 and
//! moves its Cursor past 4, then A commits 4 and that Client never sees it.
//!
//! So every write transaction first takes the Space's row in `spaces` with
//! `SELECT ... FOR UPDATE`, before it reads anything, and assigns Change Sequences from
//! `spaces.latest_seq` while it holds that lock (read with the lock, advanced in memory, written
//! back once before commit). The lock is released at commit, after the commit
//! is visible, so the next writer of the Space assigns its numbers only once every smaller number
//! is committed: within a Space, commit order is Change Sequence order, and a snapshot that sees
//! `n` sees every number below it. Different Spaces lock different rows and commit in parallel.
//!
//! The same lock makes the other cross-instance guarantees hold:
//! - **Dedup** (`[IDEM-1]`, `[IDEM-2]`): a replay that races its original on another instance
//!   waits for the lock, then reads the committed Outcome (statements under READ COMMITTED see
//!   every commit before them) and returns it; the unique key `(space, op_id)` backs this up.
//! - **Compaction**: one per Space at a time, serialised with that Space's pushes.
//!
//! Reads run in REPEATABLE READ, READ ONLY transactions: one snapshot per `read` closure.
//!
//! # Instances
//!
//! Each instance has its own server node name; its clock is persisted per (node, Space) in
//! `clocks`, so writes to different Spaces do not contend on one clock row, and the instance
//! resumes after the greatest value it stored (`[HLC-11]`). Every write transaction sends
//! `NOTIFY driftless, '<space>'`; PostgreSQL delivers it at commit to every instance listening
//! ([`Storage::on_change`]), which wakes its long-polls.
//!
//! # Durability
//!
//! Every pooled connection sets `synchronous_commit = on`: an acknowledgement means the commit
//! is flushed to PostgreSQL's WAL.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use driftless_protocol::hlc::Hlc;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, IsolationLevel, NoTls, Statement, Transaction};
use r2d2_postgres::PostgresConnectionManager;

use super::{ChangeListener, SpaceRead, SpaceWrite, Storage, StorageError};

mod ceiling;
mod tx;

pub use ceiling::raw_insert_ceiling;
use tx::Tx;

/// Versioned migrations, applied in order at start; each runs once per database, recorded in
/// `schema_migrations`. Text columns use the "C" collation so that comparisons (HLCs, Record
/// keys) are byte order, as in the SQLite backend.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE spaces (
    space TEXT COLLATE "C" PRIMARY KEY,
    latest_seq BIGINT NOT NULL DEFAULT 0,
    horizon TEXT COLLATE "C",
    compaction_point BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE records (
    space TEXT COLLATE "C" NOT NULL,
    collection TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    change_seq BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    deleted_hlc TEXT COLLATE "C",
    state TEXT NOT NULL,
    value TEXT,
    conflicts TEXT,
    digest BYTEA,
    bucket INTEGER NOT NULL,
    schema_version BIGINT,
    PRIMARY KEY (space, collection, id)
);
CREATE INDEX records_by_seq ON records (space, change_seq);
CREATE INDEX records_by_bucket ON records (space, bucket, collection, id) WHERE NOT deleted;
CREATE TABLE ops (
    space TEXT COLLATE "C" NOT NULL,
    op_id TEXT COLLATE "C" NOT NULL,
    body_digest TEXT NOT NULL,
    text_digest TEXT,
    outcome TEXT NOT NULL,
    hlc_ms BIGINT NOT NULL,
    PRIMARY KEY (space, op_id)
);
CREATE TABLE history (
    position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    space TEXT COLLATE "C" NOT NULL,
    collection TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    hlc_ms BIGINT NOT NULL,
    entry TEXT NOT NULL
);
CREATE INDEX history_by_record ON history (space, collection, id, position);
CREATE TABLE schemas (
    space TEXT COLLATE "C" NOT NULL,
    collection TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (space, collection, version)
);
CREATE TABLE clocks (
    node TEXT COLLATE "C" NOT NULL,
    space TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (node, space)
);
-- Only the naive-sequence test switch uses it (see `PgStorage::naive_sequences`).
CREATE SEQUENCE naive_change_seq;
"#,
    ),
    (
        2,
        r#"
-- The greatest server clock saved with a write to the Space, by any instance (SpaceMeta::clock).
ALTER TABLE spaces ADD COLUMN clock TEXT COLLATE "C";
"#,
    ),
];

/// The channel every instance listens on; the payload is the Space.
const CHANNEL: &str = "driftless";

/// Pooled connections per instance: concurrent reads and writes of different Spaces.
pub const CONNECTIONS: u32 = 16;

fn backend(e: postgres::Error) -> StorageError {
    // The error's own text is only "db error"; the server's message says what went wrong.
    match e.as_db_error() {
        Some(db) => StorageError::Backend(format!("{}: {}", db.code().code(), db.message())),
        None => StorageError::Backend(e.to_string()),
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("{what}: {e}"))
}

/// A pooled connection and the statements prepared on it, by SQL text: each statement is
/// parsed once per connection rather than once per call (a round trip each). Bounded by the
/// backend's fixed set of SQL texts.
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// Opens pooled connections set up for durable commits (`synchronous_commit = on`).
#[derive(Debug)]
struct Manager(PostgresConnectionManager<NoTls>);

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Conn, postgres::Error> {
        let mut client = self.0.connect()?;
        client.batch_execute("SET synchronous_commit = on")?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), postgres::Error> {
        self.0.is_valid(&mut conn.client)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.client.is_closed()
    }
}

/// The statement for `sql`, prepared on this connection once.
fn prepared(
    tx: &mut Transaction<'_>,
    statements: &mut HashMap<String, Statement>,
    sql: &str,
) -> Result<Statement, StorageError> {
    if let Some(s) = statements.get(sql) {
        return Ok(s.clone());
    }
    let s = tx.prepare(sql).map_err(backend)?;
    statements.insert(sql.to_owned(), s.clone());
    Ok(s)
}

/// A PostgreSQL database of Spaces, shared by any number of server instances.
pub struct PgStorage {
    /// Always `Some` until dropped (see the `Drop` impl).
    pool: Option<r2d2::Pool<Manager>>,
    config: postgres::Config,
    node: String,
    naive: bool,
    stop: Arc<AtomicBool>,
    /// The session that holds this instance's node name (an advisory lock) for its lifetime;
    /// in a mutex only because a `Client` is not `Sync` (nothing uses it after `open`).
    node_claim: std::sync::Mutex<Option<Client>>,
}

impl PgStorage {
    /// Connects to `url` (`postgres://USER@HOST:PORT/DB`), applies pending migrations, and
    /// checks that commits are durable. `node` is this instance's server node name: its clock
    /// is persisted under it.
    pub fn open(url: &str, node: &str) -> Result<Self, StorageError> {
        let config: postgres::Config = url
            .parse()
            .map_err(|e| StorageError::Backend(format!("database URL: {e}")))?;
        let mut client = config.connect(NoTls).map_err(backend)?;
        migrate(&mut client)?;
        let sync: String = client
            .query_one("SHOW synchronous_commit", &[])
            .map_err(backend)?
            .get(0);
        tracing::debug!(server_default = %sync, "synchronous_commit (set to on per connection)");
        // Two instances with one node name would issue the same server HLCs ([HLC-11] holds per
        // node, and the clock is kept per node): the name is claimed for the life of this
        // session. A killed instance's claim ends when PostgreSQL sees its connection close,
        // so a restart waits for it a few seconds at most.
        client
            .batch_execute("SET lock_timeout = '5s'")
            .map_err(backend)?;
        client
            .execute(
                "SELECT pg_advisory_lock(hashtextextended('driftless-node:' || $1, 0))",
                &[&node],
            )
            .map_err(|e| {
                StorageError::Backend(format!(
                    "node name {node:?} is held by another instance on this database \
                     (give each instance its own --node): {e}"
                ))
            })?;
        let pool = r2d2::Pool::builder()
            .max_size(CONNECTIONS)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            .build(Manager(PostgresConnectionManager::new(
                config.clone(),
                NoTls,
            )))
            .map_err(|e| StorageError::Backend(format!("connections: {e}")))?;
        Ok(Self {
            pool: Some(pool),
            config,
            node: node.to_owned(),
            naive: false,
            stop: Arc::new(AtomicBool::new(false)),
            node_claim: std::sync::Mutex::new(Some(client)),
        })
    }

    /// **Wrong on purpose, for tests only.** Assigns Change Sequences from a database
    /// `SEQUENCE` without the Space's row lock: the naive approach that loses changes under
    /// concurrency. The gap test uses it to show that it detects the fault.
    #[doc(hidden)]
    pub fn naive_sequences(mut self) -> Self {
        self.naive = true;
        self
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<Manager>, StorageError> {
        self.pool
            .as_ref()
            .ok_or_else(|| StorageError::Backend("the storage is closed".into()))?
            .get()
            .map_err(|e| StorageError::Backend(format!("no database connection: {e}")))
    }
}

impl Drop for PgStorage {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // A postgres::Client closes by blocking on its own runtime, which panics on a thread
        // that drives a tokio runtime, and the last handle of the server may go away on one
        // (at shutdown). So the connections are closed on a plain thread.
        let claim = match self.node_claim.get_mut() {
            Ok(claim) => claim.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        let pool = self.pool.take();
        let closing = std::thread::spawn(move || drop((pool, claim)));
        let _ = closing.join();
    }
}

/// Applies every migration newer than the database's, under an advisory lock so that instances
/// starting together apply each one once.
fn migrate(client: &mut Client) -> Result<(), StorageError> {
    let mut tx = client.transaction().map_err(backend)?;
    // The key is arbitrary but fixed: "drift" in ASCII.
    tx.execute("SELECT pg_advisory_xact_lock(452605626484)", &[])
        .map_err(backend)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .map_err(backend)?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .map_err(backend)?
        .get(0);
    let newest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if current > newest {
        return Err(StorageError::Backend(format!(
            "the database is at schema version {current}, newer than this server knows ({newest})"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.batch_execute(sql).map_err(backend)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

impl Storage for PgStorage {
    fn write<T>(
        &self,
        space: &str,
        f: impl FnOnce(&mut dyn SpaceWrite) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut conn = self.conn()?;
        let Conn { client, statements } = &mut *conn;
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .map_err(backend)?;
        let result = {
            let w = Tx {
                tx: RefCell::new(&mut tx),
                statements: RefCell::new(statements),
                space,
                node: &self.node,
                naive: self.naive,
                seq: std::cell::Cell::new(None),
                seq_moved: std::cell::Cell::new(false),
            };
            // Create the Space's row if needed (a concurrent creator makes this wait for its
            // commit, then do nothing), then lock it for the whole transaction: see the module
            // docs.
            w.execute(
                "INSERT INTO spaces (space) VALUES ($1) ON CONFLICT (space) DO NOTHING",
                &[&space],
            )?;
            if !self.naive {
                let rows = w.query(
                    "SELECT latest_seq FROM spaces WHERE space = $1 FOR UPDATE",
                    &[&space],
                )?;
                let latest = rows
                    .first()
                    .ok_or_else(|| StorageError::Backend("the space row is missing".into()))?
                    .try_get::<_, i64>(0)
                    .map_err(backend)?;
                w.seq.set(Some(latest as u64));
            }
            let mut w = w;
            let result = f(&mut w)?;
            if w.seq_moved.get() {
                if let Some(latest) = w.seq.get() {
                    w.execute(
                        "UPDATE spaces SET latest_seq = $2 WHERE space = $1",
                        &[&space, &(latest as i64)],
                    )?;
                }
            }
            // Delivered to every listening instance at commit, and only if it commits.
            w.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &space])?;
            result
        };
        tx.commit().map_err(backend)?;
        Ok(result)
    }

    fn read<T>(
        &self,
        space: &str,
        f: impl FnOnce(&dyn SpaceRead) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut conn = self.conn()?;
        let Conn { client, statements } = &mut *conn;
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(backend)?;
        let result = f(&Tx {
            tx: RefCell::new(&mut tx),
            statements: RefCell::new(statements),
            space,
            node: &self.node,
            naive: self.naive,
            seq: std::cell::Cell::new(None),
            seq_moved: std::cell::Cell::new(false),
        })?;
        tx.commit().map_err(backend)?;
        Ok(result)
    }

    fn spaces(&self) -> Result<Vec<String>, StorageError> {
        let mut conn = self.conn()?;
        let rows = conn
            .client
            .query("SELECT space FROM spaces ORDER BY space", &[])
            .map_err(backend)?;
        rows.iter().map(|r| r.try_get(0).map_err(backend)).collect()
    }

    fn load_clock(&self) -> Result<Option<Hlc>, StorageError> {
        let mut conn = self.conn()?;
        let text: Option<String> = conn
            .client
            .query_one(
                "SELECT MAX(value) FROM clocks WHERE node = $1",
                &[&self.node],
            )
            .map_err(backend)?
            .try_get(0)
            .map_err(backend)?;
        text.map(|t| t.parse().map_err(|e| corrupt("clock", e)))
            .transpose()
    }

    fn on_change(&self, listener: ChangeListener) {
        let config = self.config.clone();
        let stop = self.stop.clone();
        let spawned = std::thread::Builder::new()
            .name("driftless-listen".into())
            .spawn(move || listen(&config, &stop, &listener));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the change listener; long-polls wait out their time");
        }
    }
}

/// How long the listener waits for a notification before it checks whether to stop, and
/// before it reconnects after losing its connection.
const LISTEN_TICK: Duration = Duration::from_secs(1);

/// Listens on [`CHANNEL`] until `stop`, calling `listener` with each notified Space. After a
/// lost connection it reconnects and calls `listener(None)`: notifications sent meanwhile are
/// lost, so every waiter must look again.
fn listen(config: &postgres::Config, stop: &AtomicBool, listener: &ChangeListener) {
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let mut client = match config.connect(NoTls) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "change listener cannot connect; retrying");
                std::thread::sleep(LISTEN_TICK);
                continue;
            }
        };
        if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")) {
            tracing::warn!(error = %e, "change listener cannot LISTEN; retrying");
            std::thread::sleep(LISTEN_TICK);
            continue;
        }
        if !first {
            listener(None);
        }
        first = false;
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let next = client.notifications().timeout_iter(LISTEN_TICK).next();
            match next {
                Ok(Some(n)) => listener(Some(n.payload())),
                Ok(None) => {
                    if client.is_closed() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "change listener lost its connection; reconnecting");
                    break;
                }
            }
        }
    }
}
