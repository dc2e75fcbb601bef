//! The protocol handlers: every endpoint of spec v1 as a function from parsed input to a message
//! or a [`Problem`]. This layer knows the spec and the storage traits; it knows nothing of HTTP.
//!
//! This module is the per-request context every handler shares: the settings ([`Config`]), the
//! clocks ([`WallClock`], [`ServerClock`], `[HLC-6]`), the [`Caller`], the [`Service`] itself
//! with its per-Space notifiers and compiled-schema cache, the error Problems, the parsing of
//! bodies (`[HTTP-5]`) and query parameters used by several endpoints, and a Record's view and
//! wire form (`[PULL-18]`, `[EVO-8]`, `[EVO-9]`). Each spec area has its own module with its own
//! `impl Service` block:
//!
//! | module       | spec chapter            | endpoints                                         |
//! |--------------|-------------------------|---------------------------------------------------|
//! | `discovery`  | 01 foundations          | `GET /.well-known/driftless`                      |
//! | `push`       | 04 push and idempotency | `POST .../push`                                   |
//! | `manifest`   | 04 push and idempotency | `POST .../manifest`                               |
//! | `pull`       | 05 pull and records     | `GET .../pull`                                    |
//! | `records`    | 05 pull and records     | `GET .../records/{collection}/{id}[/history]`     |
//! | `integrity`  | 06 integrity            | `GET .../checksums`, `GET .../buckets/{bucket}`   |
//! | `schemas`    | 10 schema evolution     | `GET`, `PUT .../collections/{collection}/schemas` |
//! | `compaction` | 11 limits and retention | `POST .../compact`, periodic compaction           |
//!
//! `...` stands for `/v1/spaces/{space}`.

mod compaction;
mod discovery;
mod integrity;
mod manifest;
mod pull;
mod push;
mod records;
mod schemas;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use driftless_protocol::checksum::{bucket_of, record_digest};
use driftless_protocol::collection_schema::SchemaHistory;
use driftless_protocol::hlc::{Clock, Hlc};
use driftless_protocol::ids::CollectionName;
use driftless_protocol::merge::RecordState;
use driftless_protocol::messages::{BackoffPolicy, Jitter, Limits, Record, Retention};
use driftless_protocol::problem::{Problem, ProblemType};
use serde_json::Value;
use tokio::sync::Notify;

use crate::faults::{fault, Faults};
use crate::metrics::Metrics;
use crate::storage::{RecordView, Storage, StorageError, StoredRecord};

pub use discovery::FEATURE_COMPACTION_TRIGGER;
pub use pull::{decode_cursor, encode_cursor, PullPage};
pub use push::rfc3339;
#[cfg(feature = "fault-injection")]
pub use push::DelayedWrites;

/// Server settings. The defaults are what `driftless serve` uses.
#[derive(Debug, Clone)]
pub struct Config {
    /// The limits announced in discovery and enforced.
    pub limits: Limits,
    /// Retention announced in discovery and enforced.
    pub retention: Retention,
    /// The backoff policy announced to Clients.
    pub backoff: BackoffPolicy,
    /// The node name in the Server's HLCs.
    pub node: String,
    /// Requests per second each User may make (token bucket of this size).
    pub rate_limit_per_s: u32,
    /// Whether `POST /v1/spaces/{space}/compact` is offered.
    pub compaction_trigger: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::REFERENCE,
            retention: Retention {
                op_ids_s: 30 * 86_400,
                history_s: 30 * 86_400,
            },
            backoff: BackoffPolicy {
                initial_delay_ms: 500,
                delay_ms_cap: 60_000,
                multiplier: 2,
                jitter: Jitter::Full,
            },
            node: "server".into(),
            rate_limit_per_s: 500,
            compaction_trigger: true,
        }
    }
}

/// The source of wall-clock time, injected so tests can move it.
pub trait WallClock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The operating system's clock.
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// The Server's hybrid logical clock.
pub struct ServerClock {
    clock: Mutex<Clock>,
    wall: Arc<dyn WallClock>,
}

impl ServerClock {
    fn new(node: &str, last: Option<Hlc>, wall: Arc<dyn WallClock>) -> Self {
        let clock = match last {
            // Resume after the persisted value, under our own node name.
            Some(h) => Clock::resume(&Hlc::new(h.physical_ms(), h.logical(), node).unwrap_or(h)),
            None => Clock::new(node).expect("the configured node name is valid"),
        };
        Self {
            clock: Mutex::new(clock),
            wall,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Clock> {
        self.clock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a new value (for a response or a Horizon).
    pub fn issue(&self) -> Hlc {
        let now = self.wall.now_ms();
        self.lock().issue(now)
    }

    /// Merges a Mutation's HLC (`[HLC-6]`).
    pub fn merge(&self, remote: &Hlc) {
        let now = self.wall.now_ms();
        self.lock().merge(remote, now);
    }

    /// The latest value issued or merged.
    pub fn last(&self) -> Hlc {
        self.lock().last()
    }

    /// Wall-clock milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.wall.now_ms()
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The Token's User.
    pub user: String,
}

/// A successful answer: a status (200 or 201) and a JSON body.
pub type Answer<T> = Result<T, Problem>;

fn internal(e: StorageError) -> Problem {
    tracing::error!(error = %e, "storage failure");
    Problem::new(
        ProblemType::Internal,
        "the server could not complete the request",
    )
}

fn invalid_request(pointer: &str, message: &str, detail: &str) -> Problem {
    Problem::new(ProblemType::InvalidRequest, detail).with_error(pointer, message)
}

/// Compiled validators of one Collection Schema version.
struct CompiledSchema {
    full: jsonschema::Validator,
    /// The same schema without its root `required`, for validating the Fields a patch sets.
    partial: jsonschema::Validator,
    required: Vec<String>,
}

/// The reference server's behaviour, over any [`Storage`].
pub struct Service<S: Storage> {
    storage: Arc<S>,
    config: Config,
    clock: ServerClock,
    notifiers: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    compiled: Mutex<HashMap<(String, String, u32), Arc<CompiledSchema>>>,
    metrics: Arc<Metrics>,
    /// Per-Space sync-health statistics for the dashboard (in memory, bounded).
    stats: crate::stats::Stats,
    faults: Faults,
    /// The writes [`crate::faults::Fault::AckBeforeDurable`] acknowledged but has not made yet.
    #[cfg(feature = "fault-injection")]
    delayed: Mutex<Vec<push::DelayedWrite>>,
}

/// Parses a request body, or gives the Problem `invalid-json` (`[HTTP-5]`).
pub fn parse_json(bytes: &[u8]) -> Result<Value, Problem> {
    serde_json::from_slice(bytes).map_err(|e| {
        Problem::new(
            ProblemType::InvalidJson,
            format!(
                "the body is not UTF-8 JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

/// Pointers of the members of a value that do not match a schema (no values: `[ERR-9]`).
fn schema_errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    let mut pointers: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.instance_path().to_string())
        .collect();
    pointers.sort();
    pointers.dedup();
    pointers
}

impl<S: Storage> Service<S> {
    /// A service over `storage`; the clock resumes after the persisted value.
    pub fn new(
        storage: Arc<S>,
        config: Config,
        wall: Arc<dyn WallClock>,
        metrics: Arc<Metrics>,
        faults: Faults,
    ) -> Result<Self, StorageError> {
        let last = storage.load_clock()?;
        let clock = ServerClock::new(&config.node, last, wall);
        let notifiers: Arc<Mutex<HashMap<String, Arc<Notify>>>> = Arc::default();
        {
            // Writes committed by other instances wake this one's long-polls (`[PULL-8]`).
            let notifiers = notifiers.clone();
            storage.on_change(Box::new(move |space| {
                let map = notifiers.lock().unwrap_or_else(|p| p.into_inner());
                match space {
                    Some(space) => map.get(space).iter().for_each(|n| n.notify_waiters()),
                    None => map.values().for_each(|n| n.notify_waiters()),
                }
            }));
        }
        Ok(Self {
            storage,
            config,
            clock,
            notifiers,
            compiled: Mutex::new(HashMap::new()),
            metrics,
            stats: Default::default(),
            faults,
            #[cfg(feature = "fault-injection")]
            delayed: Mutex::new(Vec::new()),
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The Server's clock.
    pub fn clock(&self) -> &ServerClock {
        &self.clock
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The dashboard's statistics.
    pub fn stats(&self) -> &crate::stats::Stats {
        &self.stats
    }

    /// The storage (for the dashboard's Space facts).
    pub fn storage(&self) -> &Arc<S> {
        &self.storage
    }

    /// The faults in force (empty unless built with `fault-injection` and asked for).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    fn notifier(&self, space: &str) -> Arc<Notify> {
        let mut map = self.notifiers.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(space.to_owned()).or_default().clone()
    }

    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Self) -> Result<T, Problem> + Send + 'static,
    ) -> Result<T, Problem> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "handler task failed");
                Err(Problem::new(
                    ProblemType::Internal,
                    "the server could not complete the request",
                ))
            })
    }
}

/// What a Record's state means under the Collection's current schema history.
pub fn view_of(
    collection: &str,
    id: &str,
    state: &RecordState,
    history: &SchemaHistory,
    faults: &Faults,
) -> RecordView {
    let defaults = history.defaults();
    let mut m = state.materialize(|f| history.policy(f), &defaults);
    if fault!(faults, BlankValues) {
        m.value = Default::default();
    }
    let bucket = bucket_of(collection, id);
    if !m.exists {
        return RecordView {
            exists: false,
            value: None,
            conflicts: None,
            digest: None,
            bucket,
            schema_version: history.latest().map(|s| s.version),
        };
    }
    let mut digest = record_digest(collection, id, &m.value);
    if fault!(faults, WrongChecksum) {
        digest[31] ^= 1;
    }
    RecordView {
        exists: true,
        digest: Some(digest),
        conflicts: (!m.conflicts.is_empty()).then_some(m.conflicts),
        value: Some(m.value),
        bucket,
        schema_version: history.latest().map(|s| s.version),
    }
}

/// The wire form of a stored Record.
pub fn to_wire(r: &StoredRecord) -> Record {
    crate::storage::wire_record(r)
}

fn parse_collection(collection: &str) -> Answer<CollectionName> {
    collection.parse().map_err(|_| {
        invalid_request(
            "/path/collection",
            &format!("does not match {}", "^[a-z][a-z0-9_]{0,63}$"),
            &format!("{collection:?} is not a collection name"),
        )
    })
}

fn parse_range(name: &str, value: Option<&str>, min: u64, max: u64, default: u64) -> Answer<u64> {
    match value {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                invalid_request(
                    &format!("/query/{name}"),
                    &format!("expected an integer from {min} to {max}"),
                    &format!("{name} must be an integer from {min} to {max}"),
                )
            }),
    }
}
