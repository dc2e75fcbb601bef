//! The Driftless reference client: every Client duty of spec chapter 08, durably.
//!
//! - Writes go to a durable Outbox (SQLite, `synchronous=FULL`) before [`Client::write`] returns.
//! - Reads are optimistic: the Mirror of pulled state with pending Mutations applied on top,
//!   recomputed on every read, so a pull never hides a pending write (`[CLIENT-8]`).
//! - [`Client::sync`] learns the fate of Mutations sent before (manifest), pushes the Outbox in
//!   batches (priority lanes that never reorder one Record's Mutations), retries transient
//!   failures with exponential backoff and full jitter (persisted, so a restart resumes the
//!   schedule), moves permanent rejections to a dead-letter list, re-issues `clock-skew` and
//!   never-sent `mutation-too-old` rejections, then pulls until caught up and resyncs after
//!   `cursor-expired` without touching the Outbox.
//! - [`Client::audit`] compares bucket checksums with the Server and repairs drifted buckets.
//!
//! The public methods of [`Client`] live here and each hands over to the module of its duty:
//! `outbox` (writes, coalescing, receipts), `view` (optimistic reads, the rebase), `push` (lanes,
//! settling Outcomes, dead letters, re-issue, clock step back), `manifest` (unknown fates),
//! `pull` (with resync, and live sync), `schema` (Collection Schemas), `audit` (checksums and
//! bucket repair), `retry` (policy and schedule), `transport` (the only module that knows HTTP),
//! `clock` (the HLC shared by every handle on a store) and [`store`] (SQLite).

mod audit;
pub mod background;
mod clock;
pub mod faults;
pub mod inject;
mod limits;
mod manifest;
mod outbox;
mod pull;
mod push;
mod retry;
mod schema;
pub mod store;
mod transport;
pub use crate::transport::pem_certificates;
mod view;

use std::path::Path;
use std::time::Duration;

use driftless_protocol::hlc::{Clock, Hlc};
use driftless_protocol::ids::SpaceId;
use serde_json::{json, Map, Value};

use crate::clock::{now_ms, random_hex, LocalClock};
pub use crate::retry::{Preset, RetryPolicy};
use crate::store::Store;

/// A Client failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The local store failed.
    #[error("local store: {0}")]
    Store(String),
    /// Bad input from the application.
    #[error("{0}")]
    Invalid(String),
    /// The Server refused a request that needs a change before it can succeed (e.g. a
    /// Collection Schema).
    #[error("the server refused it: {0}")]
    Refused(String),
    /// The Server refused the Token.
    #[error("the server refused the token: {0}")]
    Auth(String),
    /// The Server could not be reached, or kept failing, within this sync's retry budget.
    #[error("the server is unavailable: {0}")]
    Unavailable(String),
    /// The connection failed in a way no retry can help: the Server's certificate was not
    /// trusted, TLS could not be set up, or the URL is malformed.
    #[error("cannot connect: {0}")]
    Connection(String),
    /// The Server answered something this Client does not understand.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

/// Where and as whom to sync.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Server's base URL.
    pub server: String,
    /// The bearer Token.
    pub token: String,
    /// The Space.
    pub space: String,
    /// The retry schedule.
    pub retry: RetryPolicy,
    /// Most Mutations per push (further capped by the Server's limit).
    pub batch_max: usize,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// Progress, reported while syncing.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A batch was acknowledged.
    Pushed {
        acknowledged: usize,
        rejected: usize,
    },
    /// A page was pulled.
    Pulled { records: usize, through: u64 },
    /// A transient failure; waiting before the next attempt.
    Retrying {
        failures: u32,
        delay_ms: u64,
        reason: String,
    },
    /// The Cursor expired; the Mirror is being rebuilt (the Outbox is kept).
    Resync,
    /// A drifted bucket was repaired.
    Repaired { bucket: u8 },
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncReport {
    /// Mutations acknowledged as applied.
    pub acknowledged: usize,
    /// Mutations moved to the dead-letter list.
    pub rejected: usize,
    /// Mutations re-issued with a fresh HLC (clock-skew, never-sent too-old).
    pub reissued: usize,
    /// Records pulled.
    pub pulled: usize,
    /// Whether a resync happened.
    pub resynced: bool,
    /// The Op IDs this sync moved to the dead-letter list, in the order it did.
    pub dead_lettered: Vec<String>,
}

/// An entry of the dead-letter list (`[CLIENT-4]`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The Op ID of the rejected Mutation.
    pub op_id: String,
    /// The Mutation as it was sent (or would have been).
    pub mutation: Value,
    /// The Problem the Server answered, or the one the Client found before sending.
    pub problem: Value,
    /// When it was dead-lettered, in milliseconds since the Unix epoch (`None` for entries
    /// older than this field).
    pub at_ms: Option<u64>,
}

/// Counts for an application to show (`[CLIENT-13]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Mutations in the Outbox.
    pub pending: usize,
    /// Of those, sent at least once with fate unknown.
    pub sent: usize,
    /// Mutations in the dead-letter list.
    pub rejected: usize,
    /// Milliseconds since the epoch of the last complete sync.
    pub last_sync: Option<u64>,
    /// Telemetry counters (writes, acknowledged, rejected, retries, conflicts, bytes, ...).
    pub counters: Vec<(String, i64)>,
}

/// What an audit found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditReport {
    /// Buckets whose digests differed and were repaired.
    pub repaired: Vec<u8>,
    /// Records replaced or removed while repairing.
    pub records_fixed: usize,
    /// Buckets whose digests were compared.
    pub buckets_compared: usize,
    /// The Space position (`through`) both sides were compared at.
    pub through: u64,
}

/// A progress callback.
type EventSink = Box<dyn FnMut(&Event)>;

/// Records of a Collection by ID.
pub type Listed = Vec<(String, Map<String, Value>)>;

/// The reference Client.
pub struct Client {
    store: Store,
    cfg: Config,
    agent: transport::Agent,
    client_id: String,
    clock: LocalClock,
    discovery: Option<Value>,
    on_event: Option<EventSink>,
    /// Mutations refused as `mutation-too-old` whose Records the Mirror held: settled after the
    /// pull of the sync that refused them ([CLIENT-21]).
    too_old_waiting: Vec<store::Pending>,
    /// Writes reported done but not yet stored: only ever filled by the planted fault
    /// `ack-before-durable` of the client kit's self-check (see the faults module).
    unflushed: Vec<(String, String, Value, i64)>,
    /// Op IDs whose `acknowledged` receipt is not yet stored: only ever filled by the planted
    /// fault `drops-outbox-before-durable-ack` (see the faults module).
    unacked: Vec<String>,
    /// The Server answered a gzip body with 415 (`[HTTP-17]`): bodies go uncompressed.
    gzip_refused: bool,
    /// Whether requests say `Accept-Encoding: gzip` (`[HTTP-16]`; on unless switched off).
    accept_gzip: bool,
    /// Where requests go instead of HTTP, if injected (simulation; see the inject module).
    transport: Option<Box<dyn inject::Transport>>,
}

const ID_CHARS_MIN: usize = 8;

impl Client {
    /// Opens the Client whose local store is `dir` (created with a new Client ID if empty).
    pub fn open(dir: &Path, cfg: Config) -> Result<Self, ClientError> {
        cfg.space
            .parse::<SpaceId>()
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let mut store = Store::open(dir)?;
        let client_id = store.meta_or_init("client_id", || {
            let id = format!("c-{}", random_hex(8));
            debug_assert!(id.len() >= ID_CHARS_MIN);
            id
        })?;
        let clock = LocalClock {
            clock: match store.meta("hlc")?.and_then(|h| h.parse::<Hlc>().ok()) {
                Some(h) => Clock::resume(&h),
                None => Clock::new(&client_id).map_err(|e| ClientError::Store(e.to_string()))?,
            },
            epoch: store
                .meta("clock_epoch")?
                .and_then(|e| e.parse().ok())
                .unwrap_or(0),
        };
        let agent = transport::agent(cfg.timeout, None);
        let accept_gzip = !transport::on_loopback(&cfg.server);
        Ok(Self {
            store,
            cfg,
            agent,
            client_id,
            clock,
            discovery: None,
            on_event: None,
            too_old_waiting: Vec::new(),
            unflushed: Vec::new(),
            unacked: Vec::new(),
            gzip_refused: false,
            accept_gzip,
            transport: None,
        })
    }

    /// Verifies the Server's certificate against the certificates of `pem` (a PEM file's text,
    /// e.g. a private CA) instead of the bundled Mozilla roots. Errors with
    /// [`ClientError::Invalid`] if `pem` holds no certificate.
    pub fn trust_only_pem(&mut self, pem: &[u8]) -> Result<(), ClientError> {
        let certs = pem_certificates(pem).map_err(ClientError::Invalid)?;
        self.agent = transport::agent(self.cfg.timeout, Some(&certs));
        Ok(())
    }

    /// Whether this Client asks for gzip-coded answers (`Accept-Encoding: gzip`, `[HTTP-16]`).
    /// By default it does, unless the Server's address is a loopback one (`localhost`,
    /// 127.0.0.0/8, `::1`): there no byte crosses a network, and coding and decoding pages
    /// costs time and saves none (`driftless bench sync`: 52% of the raw-SQLite rate with gzip
    /// pages, 78% uncoded, same run).
    pub fn accept_gzip(&mut self, on: bool) {
        self.accept_gzip = on;
    }

    /// Calls `f` with every progress [`Event`].
    pub fn on_event(&mut self, f: impl FnMut(&Event) + 'static) {
        self.on_event = Some(Box::new(f));
    }

    fn emit(&mut self, e: Event) {
        if let Some(f) = self.on_event.as_mut() {
            f(&e);
        }
    }

    /// This Client's ID.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    // -----------------------------------------------------------------------------------------
    // Writes and reads

    /// Records a Mutation durably in the Outbox and returns its Op ID. `effect` is the Mutation's
    /// `effect` object; `priority` puts it in a faster lane.
    pub fn write(
        &mut self,
        collection: &str,
        id: &str,
        effect: Value,
        priority: i64,
    ) -> Result<String, ClientError> {
        self.store_unacked()?;
        if faults::fault!(AckBeforeDurable) {
            self.unflushed
                .push((collection.to_owned(), id.to_owned(), effect, priority));
            return Ok(format!("{}-unflushed-{}", self.client_id, random_hex(4)));
        }
        self.enqueue(collection, id, effect, priority)
    }

    /// The optimistic value of a Record (`None`: absent or deleted): the Mirror's state with the
    /// pending Mutations joined on top by the protocol crate's merge rules, under the
    /// Collection's Policies (`[MERGE-3]`).
    pub fn get(
        &self,
        collection: &str,
        id: &str,
    ) -> Result<Option<Map<String, Value>>, ClientError> {
        self.optimistic(collection, id)
    }

    /// Read-modify-write: `change` edits the current optimistic value (an empty object for a new
    /// Record), and the result is written as a `put`. Fields this app version does not know stay
    /// in the value, so they survive (`[EVO-10]`).
    pub fn update(
        &mut self,
        collection: &str,
        id: &str,
        change: impl FnOnce(&mut Map<String, Value>),
    ) -> Result<String, ClientError> {
        let mut value = self.get(collection, id)?.unwrap_or_default();
        if faults::fault!(DropsUnknownFields) {
            let known = self.declared_fields(collection)?;
            value.retain(|f, _| known.contains(f));
        }
        change(&mut value);
        self.write(collection, id, json!({"kind": "put", "value": value}), 0)
    }

    /// Every existing Record of a Collection, optimistically, sorted by ID.
    pub fn list(&self, collection: &str) -> Result<Listed, ClientError> {
        self.optimistic_list(collection)
    }

    /// Counts for the application.
    pub fn status(&self) -> Result<Status, ClientError> {
        self.read_status()
    }

    /// The dead-letter list: (Op ID, Mutation, Problem).
    pub fn dead_letters(&self) -> Result<Vec<(String, Value, Value)>, ClientError> {
        self.store.dead(&self.cfg.space)
    }

    /// The dead-letter list with the time of each entry, oldest first.
    pub fn dead_letter_list(&self) -> Result<Vec<DeadLetter>, ClientError> {
        Ok(self
            .store
            .dead_at(&self.cfg.space)?
            .into_iter()
            .map(|(op_id, mutation, problem, at_ms)| DeadLetter {
                op_id,
                mutation,
                problem,
                at_ms,
            })
            .collect())
    }

    /// Removes a dead letter without re-issuing it. Errors with [`ClientError::Invalid`] if
    /// `op_id` is not in the list.
    pub fn discard_dead(&mut self, op_id: &str) -> Result<(), ClientError> {
        self.discard_dead_letter(op_id)
    }

    /// The receipt of a Mutation: `pending`, `sent`, `acknowledged` or `rejected`, with detail.
    pub fn receipt(&self, op_id: &str) -> Result<Option<(String, Option<String>)>, ClientError> {
        self.store.receipt(op_id)
    }

    // -----------------------------------------------------------------------------------------
    // Sync

    /// Pushes the Outbox and pulls until caught up. Returns an error when it could not finish;
    /// nothing is lost then, and the next sync continues.
    pub fn sync(&mut self) -> Result<SyncReport, ClientError> {
        let mut report = SyncReport::default();
        self.store_unacked()?;
        for (collection, id, effect, priority) in std::mem::take(&mut self.unflushed) {
            // The planted fault's writes were never checked when reported done; one that is
            // invalid now is dropped, as such a Client would, so the fault shows as a write with
            // no fate rather than as a failing sync.
            match self.enqueue(&collection, &id, effect, priority) {
                Err(ClientError::Invalid(_)) => {}
                other => {
                    other?;
                }
            }
        }
        self.discover()?;
        self.refresh_schemas()?;
        self.resolve_unknown_fates(&mut report)?;
        self.push_all(&mut report)?;
        self.pull_all(&mut report, None)?;
        if self.settle_too_old_waiting(&mut report)? > 0 {
            self.push_all(&mut report)?;
            self.pull_all(&mut report, None)?;
        }
        let (space, now, clock) = (self.cfg.space.clone(), now_ms(), &mut self.clock);
        self.store.tx(|tx| {
            clock.keep_in(tx)?;
            Store::set_meta(tx, &format!("last_sync:{space}"), &now.to_string())
        })?;
        Ok(report)
    }

    /// Stores the receipts the fault `drops-outbox-before-durable-ack` kept in memory (none
    /// without it).
    fn store_unacked(&mut self) -> Result<(), ClientError> {
        if self.unacked.is_empty() {
            return Ok(());
        }
        let ops = std::mem::take(&mut self.unacked);
        self.store.tx(|tx| {
            for op in &ops {
                store::receipt(tx, op, "acknowledged", None)?;
            }
            Ok(())
        })
    }

    /// Re-issues a dead letter as a new Mutation (after the user fixed what made it fail).
    pub fn retry_dead(&mut self, op_id: &str) -> Result<String, ClientError> {
        self.reissue_dead(op_id)
    }

    /// Live sync (`[PULL-17]`): sync, then hold a long-poll pull until the Server has a change
    /// (or `wait_ms` passes), and again, until `stop` is set. Writes made meanwhile are pushed
    /// on the next turn.
    pub fn watch(
        &mut self,
        stop: &std::sync::atomic::AtomicBool,
        wait_ms: u64,
    ) -> Result<SyncReport, ClientError> {
        self.live_sync(stop, wait_ms)
    }

    // -----------------------------------------------------------------------------------------
    // Integrity audit and schemas

    /// Compares the Mirror's bucket checksums with the Server's and repairs drifted buckets
    /// (`[INT-9]`, `[INT-13]`).
    pub fn audit(&mut self) -> Result<AuditReport, ClientError> {
        self.audit_buckets()
    }

    /// Registers a Collection Schema version (needs `admin`) and remembers it, so that new
    /// Mutations carry its version (`[EVO-1]`). Returns the HTTP status (201 or 200).
    pub fn register_schema(&mut self, doc: &Value) -> Result<u16, ClientError> {
        self.put_schema(doc)
    }
}
