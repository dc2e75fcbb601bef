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

use driftless_protocol::collection_schema::CollectionSchema;
use driftless_protocol::hlc::Hlc;
use driftless_protocol::merge::RecordState;
use driftless_protocol::messages::HistoryEntry;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, IsolationLevel, NoTls, Row, Statement, Transaction};
use r2d2_postgres::PostgresConnectionManager;

use super::{
    ChangeListener, RecordView, SpaceMeta, SpaceRead, SpaceWrite, Storage, StorageError, StoredOp,
    StoredRecord,
};

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

struct Tx<'a, 'c> {
    tx: RefCell<&'a mut Transaction<'c>>,
    statements: RefCell<&'a mut HashMap<String, Statement>>,
    space: &'a str,
    node: &'a str,
    naive: bool,
    /// In a write: the Space's latest Change Sequence, read under its row lock and advanced in
    /// memory; written back once, before commit (one row version per transaction instead of
    /// one per Mutation). `None` in a read.
    seq: std::cell::Cell<Option<u64>>,
    /// Whether `seq` moved since it was read.
    seq_moved: std::cell::Cell<bool>,
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
    fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StorageError> {
        let mut tx = self.tx.borrow_mut();
        let statement = prepared(&mut tx, &mut self.statements.borrow_mut(), sql)?;
        tx.query(&statement, params).map_err(backend)
    }

    fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StorageError> {
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

/// The raw-PostgreSQL ceiling for the push benchmark: the rows one applied `put` writes (Space
/// bookkeeping under its row lock, Record, Outcome, history entry, clock) inserted directly into
/// the database at `url` for Space `space`, one transaction per batch of `batch`, with the same
/// tables, indexes and `synchronous_commit`. Returns the elapsed time for `mutations` rows of
/// each kind.
pub fn raw_insert_ceiling(
    url: &str,
    space: &str,
    mutations: usize,
    batch: usize,
) -> Result<Duration, StorageError> {
    let config: postgres::Config = url
        .parse()
        .map_err(|e| StorageError::Backend(format!("database URL: {e}")))?;
    let mut client = config.connect(NoTls).map_err(backend)?;
    migrate(&mut client)?;
    client
        .batch_execute("SET synchronous_commit = on")
        .map_err(backend)?;
    let state = r#"{"last_write":{"hlc":"019b76daa87b-0000-client-a","op_id":"op-00000001"},"puts":{"client-a":{"hlc":"019b76daa87b-0000-client-a","op_id":"op-00000001"}},"fields":{"n":{"assigns":{"client-a":{"stamp":{"hlc":"019b76daa87b-0000-client-a","op_id":"op-00000001"},"value":1}}},"title":{"assigns":{"client-a":{"stamp":{"hlc":"019b76daa87b-0000-client-a","op_id":"op-00000001"},"value":"benchmark record"}}}}}"#;
    let value = r#"{"n":1,"title":"benchmark record"}"#;
    let outcome = r#"{"status":"applied","op_id":"op-00000001","change_seq":1}"#;
    let entry = r#"{"position":0,"op_id":"op-00000001","client_id":"client-a","user":"bench","kind":"put","fields":["n","title"],"hlc":"019b76daa87b-0000-client-a","received_at":"2026-01-01T00:00:00.000Z","status":"applied","change_seq":1}"#;
    let digest = vec![7u8; 32];
    // Every statement prepared once, as the backend's per-connection statement cache does: the
    // ceiling is the database's own cost of these rows, not the cost of parsing SQL text.
    let prepare = |client: &mut Client, sql: &str| client.prepare(sql).map_err(backend);
    let ensure_space = prepare(
        &mut client,
        "INSERT INTO spaces (space) VALUES ($1) ON CONFLICT (space) DO NOTHING",
    )?;
    let lock_space = prepare(
        &mut client,
        "SELECT latest_seq FROM spaces WHERE space = $1 FOR UPDATE",
    )?;
    let save_seq = prepare(
        &mut client,
        "UPDATE spaces SET latest_seq = $2 WHERE space = $1",
    )?;
    let put_record = prepare(
        &mut client,
        "INSERT INTO records (space, collection, id, change_seq, deleted, deleted_hlc, state, value, conflicts, digest, bucket, schema_version)
         VALUES ($1, 'things', $2, $3, false, NULL, $4, $5, NULL, $6, $7, NULL)",
    )?;
    let put_op = prepare(
        &mut client,
        "INSERT INTO ops (space, op_id, body_digest, text_digest, outcome, hlc_ms) VALUES ($1, $2, $3, $3, $4, 0)",
    )?;
    let put_history = prepare(
        &mut client,
        "INSERT INTO history (space, collection, id, hlc_ms, entry) VALUES ($1, 'things', $2, 0, $3)",
    )?;
    let save_clock = prepare(
        &mut client,
        "INSERT INTO clocks (node, space, value) VALUES ('bench', $1, '019b76daa87b-0000-server')
         ON CONFLICT (node, space) DO UPDATE SET value = GREATEST(clocks.value, EXCLUDED.value)",
    )?;
    let zeros = "0".repeat(64);
    let start = std::time::Instant::now();
    let mut n = 0usize;
    while n < mutations {
        let mut tx = client.transaction().map_err(backend)?;
        tx.execute(&ensure_space, &[&space]).map_err(backend)?;
        let mut seq: i64 = tx
            .query_one(&lock_space, &[&space])
            .map_err(backend)?
            .get(0);
        for _ in 0..batch.min(mutations - n) {
            n += 1;
            let id = format!("r{n}");
            seq += 1;
            let bucket = (n % 64) as i32;
            tx.execute(
                &put_record,
                &[&space, &id, &seq, &state, &value, &digest, &bucket],
            )
            .map_err(backend)?;
            tx.execute(&put_op, &[&space, &format!("op-{n:08}"), &zeros, &outcome])
                .map_err(backend)?;
            tx.execute(&put_history, &[&space, &id, &entry])
                .map_err(backend)?;
        }
        tx.execute(&save_seq, &[&space, &seq]).map_err(backend)?;
        tx.execute(&save_clock, &[&space]).map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    Ok(start.elapsed())
}
