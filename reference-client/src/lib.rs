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

pub mod background;
mod clock;
mod manifest;
mod outbox;
mod push;
mod retry;
pub mod store;
mod transport;
mod view;

use std::path::Path;
use std::time::Duration;

use driftless_protocol::checksum::{bucket_of, record_digest, to_hex, SpaceChecksums};
use driftless_protocol::hlc::{Clock, Hlc};
use driftless_protocol::ids::SpaceId;
use serde_json::{json, Map, Value};

use crate::clock::{now_ms, random_hex, LocalClock};
pub use crate::retry::{Preset, RetryPolicy};
use crate::store::{put_mirror, Store};

/// A Client failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The local store failed.
    #[error("local store: {0}")]
    Store(String),
    /// Bad input from the application.
    #[error("{0}")]
    Invalid(String),
    /// The Server refused the Token.
    #[error("the server refused the token: {0}")]
    Auth(String),
    /// The Server could not be reached, or kept failing, within this sync's retry budget.
    #[error("the server is unavailable: {0}")]
    Unavailable(String),
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
}

/// A progress callback.
type EventSink = Box<dyn FnMut(&Event)>;

/// Records of a Collection by ID.
pub type Listed = Vec<(String, Map<String, Value>)>;

/// The reference Client.
pub struct Client {
    store: Store,
    cfg: Config,
    agent: ureq::Agent,
    client_id: String,
    clock: LocalClock,
    discovery: Option<Value>,
    on_event: Option<EventSink>,
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
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(cfg.timeout))
            .build()
            .into();
        Ok(Self {
            store,
            cfg,
            agent,
            client_id,
            clock,
            discovery: None,
            on_event: None,
        })
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
        change(&mut value);
        self.write(collection, id, json!({"kind": "put", "value": value}), 0)
    }

    /// Learns the latest Collection Schema of every Collection in the Mirror or the Outbox, so
    /// that views merge by the right Policies and writes carry the version (`[EVO-1]`).
    fn refresh_schemas(&mut self) -> Result<(), ClientError> {
        let space = self.cfg.space.clone();
        let mut collections: Vec<String> = self
            .store
            .mirror_keys(&space)?
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        collections.extend(self.store.outbox_collections(&space)?);
        collections.sort();
        collections.dedup();
        for c in collections {
            let r = self.call(
                "GET",
                &format!("/v1/spaces/{space}/collections/{c}/schemas"),
                None,
            )?;
            self.check_auth(&r)?;
            if let Some(latest) = r.body["versions"]
                .as_array()
                .and_then(|v| v.last())
                .cloned()
            {
                let (doc_key, version_key) = (
                    format!("schemadoc:{space}:{c}"),
                    format!("schema:{space}:{c}"),
                );
                let version = latest["version"].as_u64().unwrap_or(0).to_string();
                self.store.tx(|tx| {
                    Store::set_meta(tx, &doc_key, &latest.to_string())?;
                    Store::set_meta(tx, &version_key, &version)
                })?;
            }
        }
        Ok(())
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

    /// The receipt of a Mutation: `pending`, `sent`, `acknowledged` or `rejected`, with detail.
    pub fn receipt(&self, op_id: &str) -> Result<Option<(String, Option<String>)>, ClientError> {
        self.store.receipt(op_id)
    }

    /// Pushes the Outbox and pulls until caught up. Returns an error when it could not finish;
    /// nothing is lost then, and the next sync continues.
    pub fn sync(&mut self) -> Result<SyncReport, ClientError> {
        let mut report = SyncReport::default();
        self.discover()?;
        self.refresh_schemas()?;
        self.resolve_unknown_fates(&mut report)?;
        self.push_all(&mut report)?;
        self.pull_all(&mut report, None)?;
        let (space, now, clock) = (self.cfg.space.clone(), now_ms(), &mut self.clock);
        self.store.tx(|tx| {
            clock.keep_in(tx)?;
            Store::set_meta(tx, &format!("last_sync:{space}"), &now.to_string())
        })?;
        Ok(report)
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
        let mut total = SyncReport::default();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let r = self.sync()?;
            total.acknowledged += r.acknowledged;
            total.rejected += r.rejected;
            total.reissued += r.reissued;
            total.pulled += r.pulled;
            total.resynced |= r.resynced;
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            self.pull_all(&mut total, Some(wait_ms))?;
        }
        Ok(total)
    }

    fn pull_all(
        &mut self,
        report: &mut SyncReport,
        wait_ms: Option<u64>,
    ) -> Result<(), ClientError> {
        let space = self.cfg.space.clone();
        let cursor_key = format!("cursor:{space}");
        let through_key = format!("through:{space}");
        for _ in 0..1_000_000 {
            let cursor = self.store.meta(&cursor_key)?;
            let wait = wait_ms.map(|w| format!("wait_ms={w}&")).unwrap_or_default();
            let path = match &cursor {
                Some(c) => format!("/v1/spaces/{space}/pull?{wait}cursor={c}"),
                None => format!("/v1/spaces/{space}/pull?{wait}"),
            };
            let r = self.call("GET", &path, None)?;
            self.check_auth(&r)?;
            if r.status == 410 || (r.status == 400 && Self::problem_of(&r) == "invalid-cursor") {
                // Resync: rebuild the Mirror, keep the Outbox ([PULL-15]).
                report.resynced = true;
                self.emit(Event::Resync);
                let (s, ck, tk) = (space.clone(), cursor_key.clone(), through_key.clone());
                self.store.tx(|tx| {
                    tx.execute("DELETE FROM mirror WHERE space = ?1", [&s])
                        .map_err(store::sql_error)?;
                    tx.execute("DELETE FROM meta WHERE key = ?1 OR key = ?2", [&ck, &tk])
                        .map_err(store::sql_error)?;
                    Store::count(tx, "resyncs", 1)
                })?;
                continue;
            }
            if r.status != 200 {
                return Err(ClientError::Protocol(format!(
                    "pull answered {}: {}",
                    r.status, r.body
                )));
            }
            let records = r.body["records"].as_array().cloned().unwrap_or_default();
            let (next, through) = (
                r.body["cursor"].as_str().unwrap_or("").to_owned(),
                r.body["through"].as_u64().unwrap_or(0),
            );
            let conflicts = records
                .iter()
                .filter(|x| x.get("conflicts").is_some_and(|c| !c.is_null()))
                .count() as i64;
            let (s, ck, tk) = (space.clone(), cursor_key.clone(), through_key.clone());
            self.store.tx(|tx| {
                for rec in &records {
                    put_mirror(tx, &s, rec)?;
                }
                Store::set_meta(tx, &ck, &next)?;
                Store::set_meta(tx, &tk, &through.to_string())?;
                Store::count(tx, "pulled", records.len() as i64)?;
                Store::count(tx, "conflicts_seen", conflicts)
            })?;
            report.pulled += records.len();
            self.emit(Event::Pulled {
                records: records.len(),
                through,
            });
            if r.body["has_more"] != true {
                return Ok(());
            }
        }
        Err(ClientError::Protocol("pull never caught up".into()))
    }

    // -----------------------------------------------------------------------------------------
    // Integrity audit and schemas

    /// Compares the Mirror's bucket checksums with the Server's and repairs drifted buckets
    /// (`[INT-9]`, `[INT-13]`).
    pub fn audit(&mut self) -> Result<AuditReport, ClientError> {
        self.discover()?;
        let space = self.cfg.space.clone();
        for _ in 0..5 {
            let mut scratch = SyncReport::default();
            self.pull_all(&mut scratch, None)?;
            let r = self.call("GET", &format!("/v1/spaces/{space}/checksums"), None)?;
            self.check_auth(&r)?;
            let local_through: u64 = self
                .store
                .meta(&format!("through:{space}"))?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if r.body["through"].as_u64() != Some(local_through) {
                continue; // the space moved on; pull again and compare at the same position
            }
            let local = self.local_checksums()?;
            let mut report = AuditReport::default();
            for (i, b) in local.buckets().iter().enumerate() {
                if r.body["buckets"][i]["digest"].as_str() != Some(to_hex(&b.digest).as_str()) {
                    report.records_fixed += self.repair_bucket(i as u8)?;
                    report.repaired.push(i as u8);
                    self.emit(Event::Repaired { bucket: i as u8 });
                }
            }
            return Ok(report);
        }
        Err(ClientError::Unavailable(
            "the space kept changing during the audit".into(),
        ))
    }

    /// Checksums recomputed from the Mirror's values (not the stored digests), so local
    /// corruption shows.
    fn local_checksums(&self) -> Result<SpaceChecksums, ClientError> {
        let mut sums = SpaceChecksums::default();
        let space = &self.cfg.space;
        for (c, id) in self.store.mirror_keys(space)? {
            if let Some(m) = self.store.mirrored(space, &c, &id)? {
                if let (false, Some(Value::Object(v))) = (m.deleted, m.value) {
                    sums.add_digest(bucket_of(&c, &id), record_digest(&c, &id, &v));
                }
            }
        }
        Ok(sums)
    }

    fn repair_bucket(&mut self, bucket: u8) -> Result<usize, ClientError> {
        let space = self.cfg.space.clone();
        let mut fetched: Vec<Value> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/v1/spaces/{space}/buckets/{bucket}?after={a}"),
                None => format!("/v1/spaces/{space}/buckets/{bucket}"),
            };
            let r = self.call("GET", &path, None)?;
            self.check_auth(&r)?;
            fetched.extend(r.body["records"].as_array().cloned().unwrap_or_default());
            if r.body["has_more"] != true {
                break;
            }
            after = r.body["next_after"].as_str().map(str::to_owned);
        }
        let keep: Vec<(String, String)> = fetched
            .iter()
            .map(|r| {
                (
                    r["collection"].as_str().unwrap_or("").to_owned(),
                    r["id"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let local: Vec<(String, String)> = self
            .store
            .mirror_keys(&space)?
            .into_iter()
            .filter(|(c, i)| bucket_of(c, i) == bucket)
            .collect();
        let mut fixed = 0;
        self.store.tx(|tx| {
            for (c, i) in &local {
                if !keep.contains(&(c.clone(), i.clone())) {
                    tx.execute("DELETE FROM mirror WHERE space = ?1 AND collection = ?2 AND id = ?3 AND deleted = 0", rusqlite::params![space, c, i])
                        .map_err(store::sql_error)?;
                    fixed += 1;
                }
            }
            for rec in &fetched {
                put_mirror(tx, &space, rec)?;
                fixed += 1;
            }
            Store::count(tx, "repaired_buckets", 1)
        })?;
        Ok(fixed)
    }

    /// Registers a Collection Schema version (needs `admin`) and remembers it, so that new
    /// Mutations carry its version (`[EVO-1]`). Returns the HTTP status (201 or 200).
    pub fn register_schema(&mut self, doc: &Value) -> Result<u16, ClientError> {
        let (c, v) = (
            doc["collection"].as_str().unwrap_or(""),
            doc["version"].as_u64().unwrap_or(0),
        );
        let path = format!("/v1/spaces/{}/collections/{c}/schemas/{v}", self.cfg.space);
        let r = self.call("PUT", &path, Some(doc))?;
        self.check_auth(&r)?;
        if r.status != 201 && r.status != 200 {
            return Err(ClientError::Invalid(format!(
                "the server refused the schema: {}",
                r.body["detail"].as_str().unwrap_or("")
            )));
        }
        let (key, doc_key, text) = (
            format!("schema:{}:{c}", self.cfg.space),
            format!("schemadoc:{}:{c}", self.cfg.space),
            doc.to_string(),
        );
        self.store.tx(|tx| {
            Store::set_meta(tx, &key, &v.to_string())?;
            Store::set_meta(tx, &doc_key, &text)
        })?;
        Ok(r.status)
    }
}
