//! `driftless simulate`: seeded, deterministic scenarios of the reference server and several
//! reference Clients in one process, under simulated time and a simulated network.
//!
//! Each scenario is derived from its seed alone: random writes of every Effect kind on a few
//! Records of two Collections, offline periods (some longer than retention), dropped requests,
//! responses dropped after the Server applied them, duplicated and delayed delivery, Client
//! crashes (the in-memory Client dropped, its store reopened), Server restarts, compaction at
//! random times, clock skew, and writes no push can carry. The Clients' requests go through
//! [`driftless_client::inject::Transport`] to the Server's own request handler
//! ([`driftless_server::http::App::handle`]) over an in-memory HTTP/1.1 connection (hyper on both
//! ends, no sockets); the Clients' clock, randomness and backoff waits come from
//! [`driftless_client::inject::Environment`], so a wait advances the simulated clock instead of
//! sleeping, and the Server's wall clock is the same simulated clock.
//!
//! After the steps the network heals and every Client syncs until idle; then the invariants are
//! checked and the first one broken is named (see [`Invariant`]). Every scenario prints a trace
//! hash: the same seed gives the same hash on every run; a failure prints its seed and the
//! command that replays it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use driftless_client::inject::{
    Environment, HttpRequest, HttpResponse, Transport, TransportFailure,
};
use driftless_client::{Client, ClientError, Config, Preset, RetryPolicy};
use driftless_protocol::collection_schema::{Policy, SchemaHistory};
use driftless_protocol::merge::RecordState;
use driftless_protocol::messages::{Mutation, Retention, Scope, TokenClaims};
use driftless_server::conn::EdgeConfig;
use driftless_server::faults::Faults;
use driftless_server::http::App;
use driftless_server::service::WallClock;
use driftless_server::storage::sqlite::SqliteStorage;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};

mod scenario;
mod shrink;
pub use scenario::{generate, Event, Scenario};
use shrink::shrink;

/// `driftless simulate` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The seed of the first scenario; scenario i runs seed + i.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How many scenarios to run.
    #[arg(long, default_value_t = 100)]
    pub scenarios: u64,
    /// Clients per scenario.
    #[arg(long, default_value_t = 3)]
    pub clients: usize,
    /// Steps per scenario (before the network heals).
    #[arg(long, default_value_t = 40)]
    pub steps: usize,
    /// Worker threads running scenarios side by side (default: the machine's cores; 1 with
    /// --print-trace).
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    pub jobs: usize,
    /// Print every scenario's trace hash, not only failures and the summary.
    #[arg(long)]
    pub verbose: bool,
    /// Print every scenario's events (steps, requests, answers) to stderr as they happen.
    #[arg(long)]
    pub print_trace: bool,
    /// Switch on a planted fault of the reference server (needs the `fault-injection` feature).
    #[arg(long, value_name = "NAME")]
    pub server_fault: Option<String>,
    /// Switch on a planted fault of the reference client (needs the `client-fault-injection`
    /// feature).
    #[arg(long, value_name = "NAME")]
    pub client_fault: Option<String>,
    /// Run every planted fault the build has, each in its own process with up to --scenarios
    /// scenarios, and fail unless each is found (needs a fault-injection feature).
    #[arg(long)]
    pub self_check: bool,
    /// Network mode: run the scenarios against the Server at this http:// URL instead, with real
    /// reference Clients (real HTTP, real clock and sleeps) behind a seeded fault proxy on
    /// 127.0.0.1 (lost requests and responses, duplicates, short delays, offline Clients), each
    /// scenario in a fresh Space. Steps: writes of every Effect kind, syncs, offline periods,
    /// Client crashes, Client clock skew; no Server restarts and no compaction (the Server is
    /// not ours). Not bit-for-bit deterministic (real time, a real Server): the seed fixes the
    /// steps and the proxy's decisions. Scenarios run one at a time (no --jobs). Needs --token-cmd.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// With --server: the command that prints a Token, with placeholders {user}, {space},
    /// {scope} and {ttl} (as for `driftless conformance`, spec/running-the-suite.md).
    #[arg(long, value_name = "CMD")]
    pub token_cmd: Option<String>,
    /// When a scenario fails, reduce it to a minimal one that breaks the same invariant, print
    /// it as a numbered event list and write it to `driftless-sim-<seed>.scenario` in the
    /// current folder, for --replay.
    #[arg(long)]
    pub shrink: bool,
    /// Run the one scenario written in FILE (the event list --shrink writes) instead of
    /// generating scenarios from --seed.
    #[arg(long, value_name = "FILE", conflicts_with = "self_check")]
    pub replay: Option<PathBuf>,
}

/// One invariant checked after quiescence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invariant {
    /// Every Client's optimistic view equals what a fresh Client pulls from the Server.
    ReplicaEqualsServer,
    /// Every write a Client reported done ended acknowledged (applied exactly once) or in that
    /// Client's dead letters with a reason (`[CLIENT-1]`, `[CLIENT-4]`).
    WriteFateKnown,
    /// Only writes no push can carry, and writes refused as `mutation-too-old` (they waited
    /// longer than retention), are dead-lettered.
    NoValidWriteRejected,
    /// Every counter equals the sum of the increments acknowledged to its Clients
    /// (`[IDEM-3]`, `[MERGE-1]`).
    CounterEqualsAppliedIncrements,
    /// No Client keeps pending writes after syncing with a healthy network (`[CLIENT-5]`).
    NoWedgedClient,
    /// Every Client's bucket checksums equal the Server's (an audit repairs nothing, `[INT-9]`).
    ChecksumsEqual,
    /// Every Client finished syncing once the network healed.
    SyncCompletes,
    /// The Server applied no Op ID twice (its audit history, `[IDEM-2]`).
    AppliedOnce,
    /// The Server's state equals the protocol's merge model over the Mutations it applied.
    ServerEqualsMergeModel,
    /// A write made while its Client saw the Record, refused as `mutation-too-old` and
    /// re-issued, never lands right after a delete: that delete would be undone by a write
    /// made before it was seen (`[CLIENT-21]`).
    NoResurrection,
    /// A write the app is refused is refused only because the Client's disk is full, with a
    /// store error that says so (nothing is reported done that was not stored).
    WriteErrorClear,
    /// The Server's final state is the same with and without the scenario's `compact` events,
    /// on every Record no write was refused or dead-lettered on (see [`compare_ends`]).
    CompactionIndependent,
}

impl Invariant {
    /// The invariant's name, as failures print it.
    pub fn name(self) -> &'static str {
        match self {
            Self::ReplicaEqualsServer => "replica-equals-server",
            Self::WriteFateKnown => "write-fate-known",
            Self::NoValidWriteRejected => "no-valid-write-rejected",
            Self::CounterEqualsAppliedIncrements => "counter-equals-applied-increments",
            Self::NoWedgedClient => "no-wedged-client",
            Self::ChecksumsEqual => "checksums-equal",
            Self::SyncCompletes => "sync-completes",
            Self::AppliedOnce => "applied-once",
            Self::ServerEqualsMergeModel => "server-equals-merge-model",
            Self::NoResurrection => "no-resurrection",
            Self::WriteErrorClear => "write-error-clear",
            Self::CompactionIndependent => "compaction-independent",
        }
    }
}

/// A broken invariant, with what was seen.
#[derive(Debug, Clone)]
pub struct Violation {
    /// Which invariant.
    pub invariant: Invariant,
    /// What was seen.
    pub detail: String,
}

/// The outcome of one scenario.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// FNV-1a 64 over the scenario's trace (steps, what each returned, the final state).
    pub trace_hash: u64,
    /// The first invariant broken, if any.
    pub violation: Option<Violation>,
    /// Whether the scenario was also run without its `compact` events and compared.
    pub compared: bool,
}

// ---------------------------------------------------------------------------------------------
// Randomness and time

/// SplitMix64: a tiny, fixed, portable generator, so that a seed gives the same scenario on
/// every machine and every Rust version (the standard library's hashers promise neither).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `pct` percent.
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// FNV-1a, 64 bits: the trace hash (stable across machines and versions). With `print`, each
/// line also goes to stderr: the scenario as a readable event list.
#[derive(Debug, Clone)]
struct Trace(u64, bool);

impl Trace {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325, false)
    }
    fn add(&mut self, line: &str) {
        if self.1 {
            eprintln!("{line}");
        }
        for b in line.bytes().chain(std::iter::once(b'\n')) {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The simulated clock every party reads: milliseconds since the Unix epoch.
#[derive(Debug, Clone)]
struct SimClock(Arc<AtomicU64>);

impl WallClock for SimClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl SimClock {
    fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

/// The Clients' environment: the simulated clock plus the skew of the Client acting now, the
/// scenario's randomness, and waits that advance the clock.
struct SimEnv {
    clock: SimClock,
    skew_ms: Cell<i64>,
    rng: RefCell<Rng>,
}

impl Environment for SimEnv {
    fn now_ms(&self) -> u64 {
        self.clock
            .now_ms()
            .saturating_add_signed(self.skew_ms.get())
    }
    fn fill_random(&self, buf: &mut [u8]) {
        let mut rng = self.rng.borrow_mut();
        for chunk in buf.chunks_mut(8) {
            let v = rng.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn sleep_ms(&self, ms: u64) {
        self.clock.advance(ms);
    }
}

// ---------------------------------------------------------------------------------------------
// The network

/// What the network does to requests now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Weather {
    /// Percent of requests lost before the Server sees them.
    drop_request_pct: u64,
    /// Percent of responses lost after the Server applied the request.
    drop_response_pct: u64,
    /// Percent of requests delivered twice (the Client sees the second answer).
    duplicate_pct: u64,
    /// Largest delay of a delivery, in simulated milliseconds.
    delay_ms_max: u64,
}

impl Weather {
    fn random(rng: &mut Rng) -> Self {
        Self {
            drop_request_pct: rng.below(30),
            drop_response_pct: rng.below(30),
            duplicate_pct: rng.below(20),
            delay_ms_max: rng.below(5_000),
        }
    }
}

/// The Server and the network between it and the Clients.
struct World {
    rt: tokio::runtime::Runtime,
    app: RefCell<Arc<App<SqliteStorage>>>,
    server_dir: PathBuf,
    server_faults: Faults,
    clock: SimClock,
    rng: RefCell<Rng>,
    weather: RefCell<Weather>,
    /// Clients cut off from the network, by index.
    offline: RefCell<Vec<bool>>,
    trace: RefCell<Trace>,
    /// Requests sent so far.
    requests: Cell<u64>,
    /// Every Mutation a push answer said the Server applied (whether or not the answer arrived).
    applied: RefCell<Vec<Mutation>>,
    /// How many Mutations were applied when `docs` version 2 was registered, if it was.
    v2_at: Cell<Option<usize>>,
    /// Clients whose next request the network holds back, by index.
    hold: RefCell<Vec<bool>>,
    /// Requests held back, oldest first, delivered at the next `release`.
    held: RefCell<Vec<HttpRequest>>,
}

/// Requests one scenario may send (a default scenario sends a few hundred).
const REQUESTS_PER_SCENARIO_MAX: u64 = 20_000;

fn server_config() -> driftless_server::service::Config {
    driftless_server::service::Config {
        retention: Retention {
            op_ids_s: 86_400,
            history_s: 86_400,
        },
        // Simulated Clients send as fast as the simulation runs; rate limits are not under test.
        rate_limit_per_s: 1_000_000,
        ..Default::default()
    }
}

impl World {
    fn open_app(&self) -> Result<Arc<App<SqliteStorage>>, String> {
        let _guard = self.rt.enter();
        driftless_server::open_with_edge(
            &self.server_dir,
            server_config(),
            EdgeConfig::default(),
            self.server_faults.clone(),
            Arc::new(self.clock.clone()),
        )
        .map_err(|e| format!("cannot open the simulated server: {e}"))
    }

    /// Drops the Server's in-memory state and reopens its store.
    fn restart_server(&self) -> Result<(), String> {
        let fresh = self.open_app()?;
        *self.app.borrow_mut() = fresh;
        Ok(())
    }

    /// Keeps the Mutations of a push the Server answered as applied.
    fn note_applied(&self, req: &HttpRequest, resp: &HttpResponse) {
        if resp.status != 200 || !req.path.ends_with("/push") {
            return;
        }
        let body: Value =
            serde_json::from_slice(req.body.as_deref().unwrap_or(b"")).unwrap_or_default();
        let answer: Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        let (Some(ms), Some(rs)) = (body["mutations"].as_array(), answer["results"].as_array())
        else {
            return;
        };
        for (m, r) in ms.iter().zip(rs) {
            if r["status"] == "applied" {
                if let Ok(m) = serde_json::from_value::<Mutation>(m.clone()) {
                    self.applied.borrow_mut().push(m);
                }
            }
        }
    }

    /// Delivers every held request, oldest first; their answers go nowhere.
    fn release(&self) {
        let held = std::mem::take(&mut *self.held.borrow_mut());
        for req in held {
            let status = match self.deliver(&req) {
                Ok(resp) => {
                    self.note_applied(&req, &resp);
                    format!("{} {}", resp.status, outcomes(&resp.body))
                }
                Err(e) => e,
            };
            self.trace.borrow_mut().add(&format!(
                "net released {} {} -> {status}",
                req.method,
                req.path.split('?').next().unwrap_or("")
            ));
        }
    }

    fn compact(&self) {
        let app = self.app.borrow().clone();
        let r = self.rt.block_on(app.service.compact_expired());
        self.trace
            .borrow_mut()
            .add(&format!("compact {}", r.is_ok()));
    }

    /// Hands `req` to the Server's request handler over an in-memory HTTP/1.1 connection.
    fn deliver(&self, req: &HttpRequest) -> Result<HttpResponse, String> {
        let app = self.app.borrow().clone();
        self.rt.block_on(async move {
            let (client_io, server_io) = tokio::io::duplex(1 << 16);
            let service = hyper::service::service_fn(move |r| app.clone().handle(r));
            let server = tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(server_io), service)
                    .await;
            });
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client_io))
                .await
                .map_err(|e| e.to_string())?;
            let driver = tokio::spawn(conn);
            let mut builder = hyper::Request::builder()
                .method(req.method.as_str())
                .uri(req.path.as_str())
                .header("host", "simulated");
            for (n, v) in &req.headers {
                builder = builder.header(n.as_str(), v.as_str());
            }
            let request = builder
                .body(Full::new(Bytes::from(req.body.clone().unwrap_or_default())))
                .map_err(|e| e.to_string())?;
            let resp = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes()
                .to_vec();
            drop(sender);
            let _ = driver.await;
            let _ = server.await;
            Ok(HttpResponse {
                status,
                headers,
                body,
            })
        })
    }
}

/// The Outcomes of a push answer, or the Problem type of an error answer, in short.
fn outcomes(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let short = |o: &Value| {
        let o = if o["status"] == "duplicate" {
            &o["original"]
        } else {
            o
        };
        let problem = o["problem"]["type"].as_str().unwrap_or("");
        format!(
            "{}{}",
            o["status"].as_str().unwrap_or("?"),
            problem
                .rsplit(':')
                .next()
                .map(|p| format!(":{p}"))
                .filter(|p| p.len() > 1)
                .unwrap_or_default()
        )
    };
    match (v["results"].as_array(), v["type"].as_str()) {
        (Some(rs), _) => rs.iter().map(short).collect::<Vec<_>>().join(","),
        (None, Some(t)) => t.rsplit(':').next().unwrap_or("").to_owned(),
        _ => String::new(),
    }
}

/// One Client's end of the simulated network.
struct SimTransport {
    world: Rc<World>,
    client: usize,
}

impl Transport for SimTransport {
    fn round_trip(&mut self, req: HttpRequest) -> Result<HttpResponse, TransportFailure> {
        let w = &self.world;
        let lost = |reason: &str| {
            w.trace
                .borrow_mut()
                .add(&format!("net c{} {} {reason}", self.client, req.method));
            Err(TransportFailure {
                reason: reason.to_owned(),
                transient: true,
            })
        };
        // A sync that never ends (a livelock) would hang the run: a request past the budget is
        // refused as no retry can help, so the sync fails and `sync-completes` names it.
        w.requests.set(w.requests.get() + 1);
        if w.requests.get() > REQUESTS_PER_SCENARIO_MAX {
            return Err(TransportFailure {
                reason: "request budget of the scenario exhausted (a sync that never ends?)".into(),
                transient: false,
            });
        }
        if w.offline.borrow()[self.client] {
            return lost("offline");
        }
        if std::mem::take(&mut w.hold.borrow_mut()[self.client]) {
            // Reordered delivery: the Client sees a timeout and goes on (retries, sends
            // others); the Server sees this request only at the next `release`.
            w.held.borrow_mut().push(req.clone());
            return lost("held back");
        }
        let weather = w.weather.borrow().clone();
        let (drop_req, drop_resp, dup, delay) = {
            let mut rng = w.rng.borrow_mut();
            (
                rng.chance(weather.drop_request_pct),
                rng.chance(weather.drop_response_pct),
                rng.chance(weather.duplicate_pct),
                rng.below(weather.delay_ms_max + 1),
            )
        };
        w.clock.advance(delay);
        if drop_req {
            return lost("request lost");
        }
        let mut resp = w.deliver(&req).map_err(|e| TransportFailure {
            reason: e,
            transient: true,
        })?;
        w.note_applied(&req, &resp);
        if dup {
            resp = w.deliver(&req).map_err(|e| TransportFailure {
                reason: e,
                transient: true,
            })?;
            w.note_applied(&req, &resp);
        }
        w.trace.borrow_mut().add(&format!(
            "net c{} {} {} -> {} {}",
            self.client,
            req.method,
            req.path.split('?').next().unwrap_or(""),
            resp.status,
            outcomes(&resp.body)
        ));
        if drop_resp {
            return lost("response lost");
        }
        Ok(resp)
    }
}

// ---------------------------------------------------------------------------------------------
// A scenario

const SPACE: &str = "sim";
const DOCS: &str = "docs";
const TALLY: &str = "tally";
const RECORDS: u64 = 3;

/// A write a Client reported done.
#[derive(Debug, Clone)]
struct Done {
    client: usize,
    op_id: String,
    /// For increments of the tally: (Record ID, amount).
    tally: Option<(String, i64)>,
    /// Written with a value no push can carry: expected in the dead letters.
    poison: bool,
    /// The Record (collection, ID) if the Client's Mirror held it when written (its view showed
    /// it, right after a finished sync, with nothing pending).
    seen: Option<(String, String)>,
    /// `collection/record`.
    target: String,
}

struct Sim {
    world: Rc<World>,
    env: Rc<SimEnv>,
    dir: PathBuf,
    token: String,
    clients: Vec<Option<Client>>,
    skews: Vec<i64>,
    /// Whether each Client's last sync finished: its view is then its Mirror while it has
    /// nothing pending.
    synced: Vec<bool>,
    done: Vec<Done>,
    /// The scenario's seed, which seeds each event's streams.
    seed: u64,
    /// Clients whose disk is full, by index (a reopened Client's is filled again).
    disk_full: Vec<bool>,
    /// The first write refused for another reason than a full disk, or without saying so.
    refused: Option<Violation>,
    /// What the check saw, for the comparison without compaction.
    end: EndState,
}

/// The Server's final state as the check saw it, and the Records whose outcome may depend on
/// when compaction ran.
#[derive(Debug, Clone, Default)]
struct EndState {
    /// `collection/record` → the Record's value on the Server (absent: no such Record).
    records: BTreeMap<String, Value>,
    /// `collection/record` of every write that was refused, dead-lettered or ended unknown.
    tainted: std::collections::BTreeSet<String>,
}

fn client_config(token: &str) -> Config {
    Config {
        server: "http://simulated".into(),
        token: token.to_owned(),
        space: SPACE.into(),
        retry: RetryPolicy::preset(Preset::Interactive),
        batch_max: 8,
        timeout: std::time::Duration::from_secs(30),
    }
}

impl Sim {
    fn trace(&self, line: String) {
        self.world.trace.borrow_mut().add(&line);
    }

    fn open_client(&self, i: usize) -> Result<Client, String> {
        self.env.skew_ms.set(self.skews[i]);
        let mut c = Client::open(
            &self.dir.join(format!("client-{i}")),
            client_config(&self.token),
        )
        .map_err(|e| format!("cannot open simulated client {i}: {e}"))?;
        c.set_transport(Box::new(SimTransport {
            world: self.world.clone(),
            client: i,
        }));
        Ok(c)
    }

    fn client(&mut self, i: usize) -> &mut Client {
        self.env.skew_ms.set(self.skews[i]);
        self.clients[i]
            .as_mut()
            .expect("clients are reopened at once")
    }

    /// Executes event number `n` of the scenario.
    fn exec(&mut self, n: u64, event: &Event) -> Result<(), String> {
        // What the network and the Clients draw during this event comes from (seed, n) alone,
        // so dropping other events (`--shrink`) leaves this one's draws as they were.
        self.reseed(n);
        let shown = n;
        match event {
            Event::Write {
                client,
                collection,
                record,
                effect,
            } => {
                let c = *client;
                // Whether the Client's Mirror holds the Record as it writes: its view shows it,
                // right after a finished sync, with nothing pending ([CLIENT-21]).
                let mirrored =
                    self.synced[c] && matches!(self.client(c).status(), Ok(s) if s.pending == 0);
                let seen = (mirrored
                    && matches!(self.client(c).get(collection, record), Ok(Some(_))))
                .then(|| (collection.clone(), record.clone()));
                let mut effect = effect.clone();
                // The app of a Client that learned docs v2 writes its Field names.
                let v2 = self.client(c).known_schema_version(collection);
                let knows_v2 = collection == DOCS && v2.map_err(|e| e.to_string())? == Some(2);
                if knows_v2 {
                    rename_title(&mut effect);
                }
                let res = self.client(c).write(collection, record, effect.clone(), 0);
                let names = if knows_v2 { " (v2 names)" } else { "" };
                self.trace(format!("{shown} {event}{names} -> {}", res.is_ok()));
                self.note_write_error(c, &res, false);
                if let Ok(op_id) = res {
                    let tally = (collection == TALLY && effect["field"] == "n")
                        .then(|| effect["by"].as_i64().map(|by| (record.clone(), by)))
                        .flatten();
                    self.done.push(Done {
                        client: c,
                        op_id,
                        tally,
                        poison: false,
                        seen,
                        target: format!("{collection}/{record}"),
                    });
                } else {
                    self.end.tainted.insert(format!("{collection}/{record}"));
                }
            }
            Event::Poison(c) => {
                // A value deeper than the Server's limit: no push can carry it ([CLIENT-18]).
                let mut deep = json!(1);
                for _ in 0..40 {
                    deep = json!([deep]);
                }
                let effect = json!({"kind": "put", "value": {"title": "deep", "body": deep}});
                let res = self.client(*c).write(DOCS, "poison", effect, 0);
                self.trace(format!("{shown} {event} -> {}", res.is_ok()));
                self.note_write_error(*c, &res, true);
                if let Ok(op_id) = res {
                    self.done.push(Done {
                        client: *c,
                        op_id,
                        tally: None,
                        poison: true,
                        seen: None,
                        target: format!("{DOCS}/poison"),
                    });
                }
            }
            Event::Sync(c) => {
                let res = self.client(*c).sync();
                self.synced[*c] = res.is_ok();
                self.trace(format!("{shown} {event} -> {}", summary(&res)));
            }
            Event::Offline(c, on) => {
                self.world.offline.borrow_mut()[*c] = *on;
                self.trace(format!("{shown} {event}"));
            }
            Event::Partition(cut) => {
                for c in cut {
                    self.world.offline.borrow_mut()[*c] = true;
                }
                self.trace(format!("{shown} {event}"));
            }
            Event::Heal => {
                self.world.offline.borrow_mut().fill(false);
                self.trace(format!("{shown} {event}"));
            }
            Event::Crash(c) => {
                self.clients[*c] = None;
                self.clients[*c] = Some(self.open_client(*c)?);
                if self.disk_full[*c] {
                    // The disk is still full after the crash.
                    self.client(*c)
                        .set_disk_full(true)
                        .map_err(|e| format!("cannot fill the disk of client {c}: {e}"))?;
                }
                self.trace(format!("{shown} {event}"));
            }
            Event::RestartServer => {
                self.world.restart_server()?;
                self.trace(format!("{shown} {event}"));
            }
            Event::Compact => {
                self.world.compact();
                self.trace(format!("{shown} {event}"));
            }
            Event::Advance(ms) => {
                self.world.clock.advance(*ms);
                self.trace(format!("{shown} {event}"));
            }
            Event::Skew(c, ms) => {
                self.skews[*c] = *ms;
                self.trace(format!("{shown} {event}"));
            }
            Event::Weather(w) => {
                *self.world.weather.borrow_mut() = w.clone();
                self.trace(format!("{shown} {event}"));
            }
            Event::Hold(c) => {
                self.world.hold.borrow_mut()[*c] = true;
                self.trace(format!("{shown} {event}"));
            }
            Event::Release => {
                self.trace(format!("{shown} {event}"));
                self.world.release();
            }
            Event::SchemaV2 => {
                let req = HttpRequest {
                    method: "PUT".into(),
                    path: format!("/v1/spaces/{SPACE}/collections/{DOCS}/schemas/2"),
                    headers: vec![
                        ("authorization".into(), format!("Bearer {}", self.token)),
                        ("driftless-version".into(), "1.0".into()),
                        ("content-type".into(), "application/json".into()),
                    ],
                    body: Some(schema_doc(DOCS, 2).to_string().into_bytes()),
                };
                let resp = self.world.deliver(&req)?;
                self.trace(format!("{shown} {event} -> {}", resp.status));
                if resp.status != 201 {
                    return Err(format!(
                        "cannot register docs v2: {} {}",
                        resp.status,
                        String::from_utf8_lossy(&resp.body)
                    ));
                }
                self.world
                    .v2_at
                    .set(Some(self.world.applied.borrow().len()));
            }
            Event::DiskFull(c, full) => {
                self.disk_full[*c] = *full;
                let res = self.client(*c).set_disk_full(*full);
                self.trace(format!("{shown} {event} -> {}", res.is_ok()));
                res.map_err(|e| format!("cannot fill the disk of client {c}: {e}"))?;
            }
        }
        Ok(())
    }

    /// A write the app was refused must have been refused because the Client's disk is full,
    /// and say so: a store error naming the full disk (the first other refusal is kept and
    /// reported as `write-error-clear` after the run). A `poison` write may also be refused as
    /// invalid at once, against the Server's announced limits (`[CLIENT-18]`).
    fn note_write_error(&mut self, c: usize, res: &Result<String, ClientError>, poison: bool) {
        let Err(e) = res else { return };
        if poison && matches!(e, ClientError::Invalid(_)) {
            return;
        }
        let clear = matches!(e, ClientError::Store(m) if m.contains("full"));
        if (!self.disk_full[c] || !clear) && self.refused.is_none() {
            self.refused = Some(Violation {
                invariant: Invariant::WriteErrorClear,
                detail: format!(
                    "client {c} (disk {}) refused a write: {e}",
                    if self.disk_full[c] {
                        "full"
                    } else {
                        "not full"
                    }
                ),
            });
        }
    }

    /// Reseeds the network's and the Clients' streams from the scenario's seed and `n`.
    fn reseed(&self, n: u64) {
        let mut mix = Rng(self.seed ^ n.wrapping_mul(0xA076_1D64_78BD_642F));
        *self.world.rng.borrow_mut() = Rng(mix.next());
        *self.env.rng.borrow_mut() = Rng(mix.next());
    }

    /// Heals the network and syncs every Client until a round changes nothing.
    fn quiesce(&mut self) -> Result<(), Violation> {
        *self.world.weather.borrow_mut() = Weather::default();
        // Clocks healed too: a Client whose wall clock runs ahead by more than the skew bound
        // cannot stamp a Mutation the Server accepts ([HLC-8]) until its clock is fixed.
        for s in &mut self.skews {
            *s = (*s).clamp(-30_000, 30_000);
        }
        for o in self.world.offline.borrow_mut().iter_mut() {
            *o = false;
        }
        // Space is freed: syncing must resume, and nothing acknowledged to the app is lost.
        for c in 0..self.clients.len() {
            if std::mem::take(&mut self.disk_full[c]) {
                if let Err(e) = self.client(c).set_disk_full(false) {
                    return Err(store_violation(e));
                }
            }
        }
        // Requests still held back arrive first, long after their Clients gave up on them.
        self.reseed(QUIESCE_STREAM);
        self.world.release();
        for round in 0..8 {
            self.reseed(QUIESCE_STREAM + 1 + round);
            let mut changed = false;
            for c in 0..self.clients.len() {
                let res = self.client(c).sync();
                self.trace(format!("quiesce {round} c{c} -> {}", summary(&res)));
                match res {
                    Ok(r) => {
                        changed |=
                            r.acknowledged + r.rejected + r.reissued + r.pulled > 0 || r.resynced
                    }
                    Err(e) => {
                        return Err(Violation {
                            invariant: Invariant::SyncCompletes,
                            detail: format!("client {c}: {e}"),
                        })
                    }
                }
            }
            if !changed && round > 0 {
                return Ok(());
            }
        }
        Ok(())
    }

    fn check(&mut self) -> Result<(), Violation> {
        let fail = |invariant, detail: String| Err(Violation { invariant, detail });
        if let Some(v) = self.refused.take() {
            return Err(v);
        }
        // The truth: a fresh Client's pull of the Server.
        self.reseed(QUIESCE_STREAM - 1);
        let n = self.clients.len();
        self.skews.push(0);
        self.world.offline.borrow_mut().push(false);
        self.world.hold.borrow_mut().push(false);
        let mut observer = self.open_client(n).map_err(|e| Violation {
            invariant: Invariant::SyncCompletes,
            detail: e,
        })?;
        if let Err(e) = observer.sync() {
            return fail(Invariant::SyncCompletes, format!("observer: {e}"));
        }
        let truth = listing(&observer);
        self.trace(format!("truth {}", truth));
        for coll in [DOCS, TALLY] {
            for (id, v) in observer.list(coll).map_err(store_violation)? {
                self.end
                    .records
                    .insert(format!("{coll}/{id}"), Value::Object(v));
            }
        }
        for c in 0..n {
            let status = self.client(c).status().map_err(store_violation)?;
            if status.pending > 0 {
                return fail(
                    Invariant::NoWedgedClient,
                    format!("client {c} keeps {} pending writes", status.pending),
                );
            }
        }
        for c in 0..n {
            let mine = listing(self.client(c));
            if mine != truth {
                return fail(
                    Invariant::ReplicaEqualsServer,
                    format!("client {c} sees {mine}, the server {truth}"),
                );
            }
        }
        self.check_merge_model(&observer)?;
        // The fate of every write reported done.
        let mut applied: BTreeMap<String, i64> = BTreeMap::new();
        for d in self.done.clone() {
            self.check_no_resurrection(&d)?;
            let fate = self.fate(&d)?;
            match fate {
                Fate::Applied => {
                    if let Some((id, by)) = &d.tally {
                        *applied.entry(id.clone()).or_default() += by;
                    }
                }
                Fate::Dead(problem) => {
                    self.end.tainted.insert(d.target.clone());
                    let too_old = problem.contains("mutation-too-old");
                    // A write that waited longer than retention may be refused as too old
                    // ([CLIENT-10], [CLIENT-21]): the time steps make that common.
                    if !d.poison && !too_old {
                        return fail(
                            Invariant::NoValidWriteRejected,
                            format!(
                                "client {} write {} dead-lettered: {problem}",
                                d.client, d.op_id
                            ),
                        );
                    }
                }
                Fate::Superseded => {}
                Fate::Unknown(state) => {
                    return fail(
                        Invariant::WriteFateKnown,
                        format!("client {} write {} ends {state}", d.client, d.op_id),
                    )
                }
            }
        }
        for r in 0..RECORDS {
            let id = format!("r{r}");
            let want = applied.get(&id).copied();
            let got = observer
                .get(TALLY, &id)
                .map_err(store_violation)?
                .and_then(|v| v.get("n").and_then(Value::as_i64));
            if want.unwrap_or(0) != got.unwrap_or(0) {
                return fail(
                    Invariant::CounterEqualsAppliedIncrements,
                    format!(
                        "{TALLY}/{id}.n is {got:?} on the server; acknowledged increments sum to {want:?}"
                    ),
                );
            }
        }
        self.check_applied_once()?;
        for c in 0..n {
            match self.client(c).audit() {
                Ok(a) if a.repaired.is_empty() => {}
                Ok(a) => {
                    return fail(
                        Invariant::ChecksumsEqual,
                        format!("client {c}: audit repaired buckets {:?}", a.repaired),
                    )
                }
                Err(e) => {
                    return fail(Invariant::ChecksumsEqual, format!("client {c}: audit: {e}"))
                }
            }
        }
        Ok(())
    }

    /// The Server's state (a fresh Client's pull) equals the protocol's merge rules folded over
    /// every Mutation the Server answered as applied (`[MERGE-1]`, `[MERGE-2]`).
    fn check_merge_model(&self, observer: &Client) -> Result<(), Violation> {
        let policy = |f: &str| match f {
            "n" | "likes" => Policy::Counter,
            "tags" => Policy::AddWinsSet,
            _ => Policy::Lww,
        };
        let v2_at = self.world.v2_at.get();
        let docs = docs_history(if v2_at.is_some() { 2 } else { 1 });
        let mut states: BTreeMap<(String, String), RecordState> = BTreeMap::new();
        for (i, m) in self.world.applied.borrow().iter().enumerate() {
            if v2_at == Some(i) {
                // Registering v2 migrated the stored Records ([SCHEMA-7]).
                for ((coll, _), state) in states.iter_mut() {
                    if coll == DOCS {
                        state.rename_field("title", "heading");
                    }
                }
            }
            let mut m = m.clone();
            if m.collection.as_str() == DOCS && v2_at.is_some_and(|at| i >= at) {
                // Applied after v2: the Server upcast it from the version it was written
                // under ([EVO-4]); one that upcasts to nothing changed nothing ([EVO-5]).
                match docs.upcast(&m.effect, m.schema_version.unwrap_or(1)) {
                    Ok(Some(e)) => m.effect = e,
                    Ok(None) => continue,
                    Err(e) => {
                        return Err(Violation {
                            invariant: Invariant::ServerEqualsMergeModel,
                            detail: format!("applied {}: {e}", m.op_id.as_str()),
                        })
                    }
                }
            }
            states
                .entry((
                    m.collection.as_str().to_owned(),
                    m.record_id.as_str().to_owned(),
                ))
                .or_default()
                .apply(&m);
        }
        if v2_at == Some(self.world.applied.borrow().len()) {
            for ((coll, _), state) in states.iter_mut() {
                if coll == DOCS {
                    state.rename_field("title", "heading");
                }
            }
        }
        for coll in [DOCS, TALLY] {
            for r in 0..RECORDS {
                let id = format!("r{r}");
                let model = states
                    .get(&(coll.to_owned(), id.clone()))
                    .map(|s| {
                        let defaults = if coll == DOCS {
                            docs.defaults()
                        } else {
                            BTreeMap::new()
                        };
                        s.materialize(policy, &defaults)
                    })
                    .filter(|m| m.exists)
                    .map(|m| Value::Object(m.value));
                let server = observer
                    .get(coll, &id)
                    .map_err(store_violation)?
                    .map(Value::Object);
                if model != server {
                    return Err(Violation {
                        invariant: Invariant::ServerEqualsMergeModel,
                        detail: format!(
                            "{coll}/{id} is {} on the server; the merge of its applied Mutations gives {}",
                            server.unwrap_or(Value::Null),
                            model.unwrap_or(Value::Null)
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// No Op ID is applied twice: the Server's audit history of every Record holds at most one
    /// `applied` entry per Op ID (`[IDEM-2]`, `[AUDIT-1]`).
    fn check_applied_once(&self) -> Result<(), Violation> {
        for coll in [DOCS, TALLY] {
            for r in 0..RECORDS {
                let mut seen: BTreeMap<String, u32> = BTreeMap::new();
                let mut after = 0u64;
                for _ in 0..1000 {
                    let req = HttpRequest {
                        method: "GET".into(),
                        path: format!(
                            "/v1/spaces/{SPACE}/records/{coll}/r{r}/history?after={after}"
                        ),
                        headers: vec![
                            ("authorization".into(), format!("Bearer {}", self.token)),
                            ("driftless-version".into(), "1.0".into()),
                        ],
                        body: None,
                    };
                    let resp = self.world.deliver(&req).map_err(|e| Violation {
                        invariant: Invariant::AppliedOnce,
                        detail: format!("history of {coll}/r{r}: {e}"),
                    })?;
                    let page: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
                    if resp.status == 404 {
                        break;
                    }
                    let entries = page["entries"].as_array().cloned().unwrap_or_default();
                    for e in &entries {
                        if e["status"] == "applied" {
                            let op = e["op_id"].as_str().unwrap_or("").to_owned();
                            let count = seen.entry(op.clone()).or_default();
                            *count += 1;
                            if *count > 1 {
                                return Err(Violation {
                                    invariant: Invariant::AppliedOnce,
                                    detail: format!("{coll}/r{r}: op {op} applied {count} times"),
                                });
                            }
                        }
                        after = after.max(e["position"].as_u64().unwrap_or(0));
                    }
                    if page["has_more"] != true || entries.is_empty() {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// `[CLIENT-21]`: if `d` was written while its Client saw the Record and re-issued after
    /// `mutation-too-old`, the Mutation applied before its re-issue's is not a delete.
    fn check_no_resurrection(&mut self, d: &Done) -> Result<(), Violation> {
        let Some((coll, id)) = &d.seen else {
            return Ok(());
        };
        let mut op = d.op_id.clone();
        while let Some((_, Some(detail))) = self
            .client(d.client)
            .receipt(&op)
            .map_err(store_violation)?
        {
            let Some((why, next)) = detail.split_once("; re-issued as ") else {
                break;
            };
            op = next.trim().to_owned();
            if why != "mutation-too-old" {
                continue;
            }
            let applied = self.world.applied.borrow();
            let mine = |m: &&Mutation| m.collection.as_str() == coll && m.record_id.as_str() == id;
            let Some(at) = applied
                .iter()
                .position(|m| mine(&m) && m.op_id.as_str() == op)
            else {
                continue;
            };
            // The Record as the Server held it when the re-issue landed: deleted if it had
            // Mutations and does not exist (`[MERGE-2]`).
            let mut state = RecordState::default();
            let mut deleter = None;
            for m in applied[..at].iter().filter(mine) {
                state.apply(m);
                if matches!(
                    m.effect,
                    driftless_protocol::messages::Effect::Delete { .. }
                ) {
                    deleter = Some(m.op_id.as_str().to_owned());
                }
            }
            let exists = state
                .materialize(
                    |f: &str| match f {
                        "n" | "likes" => Policy::Counter,
                        "tags" => Policy::AddWinsSet,
                        _ => Policy::Lww,
                    },
                    &BTreeMap::new(),
                )
                .exists;
            if let (false, Some(by)) = (exists, deleter) {
                return Err(Violation {
                    invariant: Invariant::NoResurrection,
                    detail: format!(
                        "client {} write {} to {coll}/{id}, re-issued as {op}, brought back the Record deleted by {by}",
                        d.client, d.op_id
                    ),
                });
            }
        }
        Ok(())
    }

    /// Follows a write's receipts through re-issues and coalescing to its end.
    fn fate(&mut self, d: &Done) -> Result<Fate, Violation> {
        let mut op = d.op_id.clone();
        for _ in 0..1000 {
            let receipt = self
                .client(d.client)
                .receipt(&op)
                .map_err(store_violation)?;
            match receipt {
                Some((state, _)) if state == "acknowledged" => return Ok(Fate::Applied),
                Some((state, Some(detail)))
                    if state == "rejected" && detail.contains("re-issued as ") =>
                {
                    op = detail
                        .rsplit("re-issued as ")
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_owned();
                }
                Some((state, Some(next))) if state == "superseded" => {
                    if d.tally.is_some() {
                        // An increment is never superseded: its amount would be lost.
                        return Ok(Fate::Unknown(format!("superseded by {next}")));
                    }
                    return Ok(Fate::Superseded);
                }
                Some((state, detail)) if state == "rejected" => {
                    let dead = self
                        .client(d.client)
                        .dead_letters()
                        .map_err(store_violation)?
                        .into_iter()
                        .find(|(o, _, _)| *o == op);
                    return Ok(match dead {
                        Some((_, _, problem)) => Fate::Dead(problem.to_string()),
                        None => Fate::Unknown(format!(
                            "rejected ({}) but not in the dead letters",
                            detail.unwrap_or_default()
                        )),
                    });
                }
                Some((state, _)) => return Ok(Fate::Unknown(state)),
                None => return Ok(Fate::Unknown("without a receipt".into())),
            }
        }
        Ok(Fate::Unknown("a re-issue loop".into()))
    }
}

enum Fate {
    Applied,
    Dead(String),
    Superseded,
    Unknown(String),
}

fn store_violation(e: ClientError) -> Violation {
    Violation {
        invariant: Invariant::SyncCompletes,
        detail: e.to_string(),
    }
}

fn summary(r: &Result<driftless_client::SyncReport, ClientError>) -> String {
    match r {
        Ok(r) => format!(
            "ok ack={} rej={} reissued={} pulled={} resync={}",
            r.acknowledged, r.rejected, r.reissued, r.pulled, r.resynced
        ),
        Err(e) => format!("error {}", error_kind(e)),
    }
}

/// The kind of an error, without its text (which may hold paths of this run's folders).
fn error_kind(e: &ClientError) -> &'static str {
    match e {
        ClientError::Store(_) => "store",
        ClientError::Invalid(_) => "invalid",
        ClientError::Refused(_) => "refused",
        ClientError::Auth(_) => "auth",
        ClientError::Unavailable(_) => "unavailable",
        ClientError::Connection(_) => "connection",
        ClientError::Protocol(_) => "protocol",
    }
}

/// The Collection Schema document of `collection` at `version`: version 1 declares the
/// counters and the set; `docs` version 2 renames `title` to `heading` and adds `rank`
/// (default 0), a backward-compatible change (`[EVO-11]`).
fn schema_doc(collection: &str, version: u32) -> Value {
    let mut doc = json!({"collection": collection, "version": version,
        "schema": {"type": "object"},
        "fields": {"n": {"policy": "counter"}, "likes": {"policy": "counter"},
                   "tags": {"policy": "add_wins_set"}}});
    if version == 2 {
        doc["migration"] = json!([
            {"op": "rename_field", "from": "title", "to": "heading"},
            {"op": "add_field", "field": "rank", "default": 0}
        ]);
    }
    doc
}

/// The `docs` schema history up to `latest`, for the merge model's upcast and defaults.
fn docs_history(latest: u32) -> SchemaHistory {
    let versions = (1..=latest)
        .map(|v| serde_json::from_value(schema_doc(DOCS, v)).expect("the simulated schemas parse"))
        .collect();
    SchemaHistory::new(versions).expect("the simulated schemas are numbered 1, 2")
}

/// `title` → `heading` in a `put` value or a `patch`, as an app built for `docs` v2 writes.
fn rename_title(effect: &mut Value) {
    for key in ["value", "set"] {
        if let Some(m) = effect.get_mut(key).and_then(Value::as_object_mut) {
            if let Some(v) = m.remove("title") {
                m.insert("heading".into(), v);
            }
        }
    }
}

/// A Client's optimistic view of both Collections, as canonical text.
fn listing(c: &Client) -> String {
    let mut all = Map::new();
    for coll in [DOCS, TALLY] {
        let records: Map<String, Value> = c
            .list(coll)
            .unwrap_or_default()
            .into_iter()
            .map(|(id, v)| (id, Value::Object(v)))
            .collect();
        all.insert(coll.to_owned(), Value::Object(records));
    }
    Value::Object(all).to_string()
}

/// Where scenario folders go: memory-backed `/dev/shm` when there is one (the stores' fsyncs
/// are not what is under test), else the system's temporary folder.
fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// The stream numbers past every event's: opening the Clients, the check, quiescence rounds.
const QUIESCE_STREAM: u64 = 1 << 40;

/// Runs the scenario `seed` generates (see [`generate`]).
pub fn run_scenario(
    seed: u64,
    clients: usize,
    steps: usize,
    print_trace: bool,
) -> Result<Outcome, String> {
    let scenario = generate(seed, clients, steps);
    run(&scenario, print_trace, compared_by_seed(&scenario))
}

/// One scenario in [`COMPARE_EVERY`] (by seed) that has a `compact` event is also run without
/// its `compact` events and compared (`compaction-independent`): a fraction, so that the
/// second run costs a quarter of the scenarios with compaction, not all.
const COMPARE_EVERY: u64 = 4;

/// Whether the seed run of `scenario` is compared with its run without compaction.
fn compared_by_seed(scenario: &Scenario) -> bool {
    scenario.seed % COMPARE_EVERY == 0
}

/// Executes `scenario`'s events, heals the network, syncs every Client until idle and checks
/// the invariants; with `compare` and a `compact` event, runs it again without its `compact`
/// events and checks `compaction-independent` (see [`compare_ends`]).
pub fn run(scenario: &Scenario, print_trace: bool, compare: bool) -> Result<Outcome, String> {
    let (mut out, end) = run_once(scenario, print_trace)?;
    let compacts = scenario.events.iter().any(|(_, e)| *e == Event::Compact);
    if out.violation.is_some() || !compare || !compacts {
        return Ok(out);
    }
    let without = Scenario {
        events: scenario
            .events
            .iter()
            .filter(|(_, e)| *e != Event::Compact)
            .cloned()
            .collect(),
        ..scenario.clone()
    };
    let (other, other_end) = run_once(&without, false)?;
    out.compared = true;
    out.trace_hash ^= other.trace_hash.rotate_left(1);
    out.violation = match other.violation {
        Some(v) => Some(Violation {
            invariant: v.invariant,
            detail: format!("without its compact events: {}", v.detail),
        }),
        None => compare_ends(&end, &other_end),
    };
    Ok(out)
}

/// `compaction-independent`: the Server's final state must not depend on when (or whether)
/// compaction ran. Compaction never changes a Record that exists (`[RET-6]`), a Mutation at or
/// below the Horizon is refused (`[RET-3]`) exactly as one older than retention is (`[RET-2]`),
/// and a Client decides a refused never-sent write only after pulling up to date
/// (`[CLIENT-21]`); so every Record must end with the same value (or absent in both) in the run
/// with compaction and the run without. Excluded are the Records a write was refused or
/// dead-lettered on in either run (a `mutation-too-old` may legitimately be decided
/// differently: the Client's view when it decided may differ, e.g. after a resync).
fn compare_ends(with: &EndState, without: &EndState) -> Option<Violation> {
    let keys: std::collections::BTreeSet<&String> =
        with.records.keys().chain(without.records.keys()).collect();
    for k in keys {
        if with.tainted.contains(k) || without.tainted.contains(k) {
            continue;
        }
        let (a, b) = (with.records.get(k), without.records.get(k));
        if a != b {
            let show = |v: Option<&Value>| v.map_or("absent".to_owned(), Value::to_string);
            return Some(Violation {
                invariant: Invariant::CompactionIndependent,
                detail: format!("{k} is {} with compaction and {} without", show(a), show(b)),
            });
        }
    }
    None
}

fn run_once(scenario: &Scenario, print_trace: bool) -> Result<(Outcome, EndState), String> {
    let clients = scenario.clients;
    let dir = tempfile::Builder::new()
        .prefix("driftless-sim-")
        .tempdir_in(scratch_root())
        .map_err(|e| format!("cannot create a scenario folder: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // 2026-01-01T00:00:00Z: a fixed start, so that Stamps are the same on every run.
    let clock = SimClock(Arc::new(AtomicU64::new(1_767_225_600_000)));
    let env = Rc::new(SimEnv {
        clock: clock.clone(),
        skew_ms: Cell::new(0),
        rng: RefCell::new(Rng(scenario.seed)),
    });
    let placeholder = {
        let _guard = rt.enter();
        driftless_server::open_with_edge(
            &dir.path().join("server"),
            server_config(),
            EdgeConfig::default(),
            server_faults()?,
            Arc::new(clock.clone()),
        )
        .map_err(|e| format!("cannot open the simulated server: {e}"))?
    };
    let now_s = clock.now_ms() / 1000;
    let token = placeholder.key.mint(&TokenClaims {
        sub: "sim".into(),
        grants: BTreeMap::from([(SPACE.parse().map_err(|e| format!("{e}"))?, Scope::Admin)]),
        iat: now_s,
        exp: now_s + 100 * 365 * 86_400,
    });
    let world = Rc::new(World {
        rt,
        app: RefCell::new(placeholder),
        server_dir: dir.path().join("server"),
        server_faults: server_faults()?,
        clock,
        rng: RefCell::new(Rng(scenario.seed)),
        weather: RefCell::new(Weather::default()),
        offline: RefCell::new(vec![false; clients]),
        trace: RefCell::new(Trace(Trace::new().0, print_trace)),
        requests: Cell::new(0),
        applied: RefCell::new(Vec::new()),
        v2_at: Cell::new(None),
        hold: RefCell::new(vec![false; clients]),
        held: RefCell::new(Vec::new()),
    });
    driftless_client::inject::set_environment(Some(env.clone()));
    let outcome = (|| {
        let mut sim = Sim {
            world: world.clone(),
            env,
            dir: dir.path().to_owned(),
            token,
            clients: Vec::new(),
            skews: vec![0; clients],
            synced: vec![false; clients],
            done: Vec::new(),
            seed: scenario.seed,
            disk_full: vec![false; clients],
            refused: None,
            end: EndState::default(),
        };
        sim.reseed(QUIESCE_STREAM - 2);
        for i in 0..clients {
            let c = sim.open_client(i)?;
            sim.clients.push(Some(c));
        }
        for coll in [DOCS, TALLY] {
            sim.client(0)
                .register_schema(&schema_doc(coll, 1))
                .map_err(|e| format!("cannot register the simulated schema: {e}"))?;
        }
        for (n, event) in &scenario.events {
            sim.exec(*n, event)?;
        }
        let violation = sim.quiesce().and_then(|()| sim.check()).err();
        Ok::<_, String>((violation, std::mem::take(&mut sim.end)))
    })();
    driftless_client::inject::set_environment(None);
    let (violation, end) = outcome?;
    let trace_hash = world.trace.borrow().0;
    Ok((
        Outcome {
            trace_hash,
            violation,
            compared: false,
        },
        end,
    ))
}

#[cfg(feature = "client-fault-injection")]
fn switch_on_client_fault(name: &str) -> Result<(), String> {
    driftless_client::faults::switch_on(name)
}

#[cfg(not(feature = "client-fault-injection"))]
fn switch_on_client_fault(_: &str) -> Result<(), String> {
    Err("this driftless was built without the client-fault-injection feature".into())
}

/// The `--server-fault` of this process, for every worker thread.
static SERVER_FAULT: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn server_fault() -> Option<String> {
    SERVER_FAULT.lock().map(|f| f.clone()).unwrap_or(None)
}

#[cfg(feature = "fault-injection")]
fn server_faults() -> Result<Faults, String> {
    let names: Vec<String> = server_fault().into_iter().collect();
    Faults::parse(&names)
}

#[cfg(not(feature = "fault-injection"))]
fn server_faults() -> Result<Faults, String> {
    match server_fault() {
        Some(_) => Err("this driftless was built without the fault-injection feature".into()),
        None => Ok(Faults::default()),
    }
}

/// The planted faults the self-check runs: (`--server-fault` or `--client-fault`, name), each
/// found within 300 scenarios of seeds 1.. (the budget of `.ci/run`). The faults of the
/// reference server and client not listed, and why the simulator cannot reach them (each is
/// caught by the conformance self-check, server `conformance --self-check` or client kit
/// `conformance client --self-check`, instead):
/// - server `ack-before-durable`: the write lands once the next request is answered, and every
///   sync pulls right after it pushes, so it is lost only if the Server restarts between the
///   push's answer and that pull; restarts happen between steps, never inside a sync.
/// - server `rejection-not-acknowledged`: the only rejections a scenario makes
///   (`mutation-too-old`, `clock-skew`) are judged the same on a replay, or the replay's answer
///   is the only one the Client saw, so judging again changes no end state.
/// - server `manifest-forgets-rejections`: the Client resends the Mutation the manifest calls
///   unknown, the replay returns the stored rejection, and the end state is the same.
/// - server `pull-page-boundary-skip`: a scenario holds at most 6 Records, the Server's page
///   floor is 100 (`[LIM-1]`) and the reference Client asks for no smaller `limit`, so no page
///   is ever full.
/// - server `dedup-by-bytes`: needs two serializers of one Mutation; every simulated Client is
///   the reference Client, whose replays are byte-identical.
/// - client `never-sends-manifest`: a write the Server never saw is taken as applied, which an
///   end state shows only for a tally increment all of whose attempts of one sync (5) were
///   lost before the Server (at most 0.3^5 of such pushes).
/// - client `reissues-sent-too-old`: needs a Mutation whose every attempt of one sync failed,
///   then a wait past retention and a compaction that purged its Op ID before the next sync,
///   and an increment, for the double apply to show.
/// - client `reorders-across-lanes`: every simulated write is in lane 0, and the merge orders
///   by HLC, not by arrival, so an end state cannot show the order on the wire.
fn planted() -> Vec<(&'static str, &'static str)> {
    #[allow(unused_mut)]
    let mut all = Vec::new();
    #[cfg(feature = "fault-injection")]
    for name in [
        "no-dedup",
        "increment-twice-on-replay",
        "wrong-checksum",
        "reject-everything",
        "first-writer-wins",
        "blank-values",
        "wrong-lww-tiebreak",
        "dedup-not-atomic",
    ] {
        all.push(("--server-fault", name));
    }
    #[cfg(feature = "client-fault-injection")]
    for name in [
        "new-op-id-on-retry",
        "ack-before-durable",
        "stops-after-poison",
        "coalesces-increments",
        "reissues-before-pull",
        "deep-write-wedge",
        "drops-outbox-before-durable-ack",
    ] {
        all.push(("--client-fault", name));
    }
    all
}

fn replay_command(a: &Args, seed: u64) -> String {
    format!(
        "{} --seed {seed} --scenarios 1 --clients {} --steps {}",
        command_prefix(a),
        a.clients,
        a.steps
    )
}

/// `driftless simulate` with this run's fault flags (built with their features).
fn command_prefix(a: &Args) -> String {
    let mut cmd = String::from("driftless simulate");
    if let Some(f) = &a.server_fault {
        cmd = format!("cargo run --features fault-injection -- simulate --server-fault {f}");
    }
    if let Some(f) = &a.client_fault {
        cmd = format!("cargo run --features client-fault-injection -- simulate --client-fault {f}");
    }
    cmd
}

/// `driftless simulate`. Exit code 0: every scenario held every invariant (or, with
/// `--self-check`, every planted fault was found); 1: a scenario broke one; 2: usage error.
pub fn main(a: Args) -> Result<u8, String> {
    if a.server.is_some() || a.token_cmd.is_some() {
        return crate::simulate_remote::main(a);
    }
    if a.clients == 0 || a.scenarios == 0 {
        return Err("--clients and --scenarios must be at least 1".into());
    }
    if a.self_check {
        return self_check(&a);
    }
    if let Some(f) = &a.client_fault {
        switch_on_client_fault(f)?;
    }
    if let Ok(mut f) = SERVER_FAULT.lock() {
        f.clone_from(&a.server_fault);
    }
    server_faults()?;
    if let Some(file) = &a.replay {
        return replay(&a, file);
    }
    let start = std::time::Instant::now();
    // Scenarios are independent, so worker threads run them side by side; the results are
    // read in seed order, so the output (and the first failure named) is the same as with one.
    let jobs = if a.print_trace { 1 } else { a.jobs.max(1) };
    let next = AtomicU64::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                // A claimed seed always runs, so every seed below a failing one has a result.
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= a.scenarios {
                    return;
                }
                let seed = a.seed.wrapping_add(i);
                let out = run_scenario(seed, a.clients, a.steps, a.print_trace);
                if !matches!(&out, Ok(o) if o.violation.is_none()) {
                    stop.store(true, Ordering::SeqCst);
                }
                if let Ok(mut r) = results.lock() {
                    r.push((i, out));
                }
            });
        }
    });
    let mut results = results.into_inner().map_err(|e| e.to_string())?;
    results.sort_by_key(|(i, _)| *i);
    let mut combined = Trace::new();
    for (i, out) in results {
        let seed = a.seed.wrapping_add(i);
        let out = out.map_err(|e| format!("seed {seed}: {e}"))?;
        combined.add(&format!("{seed} {:016x}", out.trace_hash));
        if a.verbose {
            println!("seed {seed} trace {:016x}", out.trace_hash);
        }
        if let Some(v) = out.violation {
            println!(
                "FAIL seed {seed} trace {:016x}: invariant {} broken: {}",
                out.trace_hash,
                v.invariant.name(),
                v.detail
            );
            println!("replay: {}", replay_command(&a, seed));
            if a.shrink {
                shrink_and_print(&a, &generate(seed, a.clients, a.steps), v.invariant)?;
            }
            return Ok(1);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} scenarios (seeds {}..={}, {} clients, {} steps) held every invariant; trace {:016x}; {:.0} scenarios/min",
        a.scenarios,
        a.seed,
        a.seed.wrapping_add(a.scenarios - 1),
        a.clients,
        a.steps,
        combined.0,
        a.scenarios as f64 * 60.0 / secs.max(1e-9)
    );
    Ok(0)
}

/// Candidate scenarios `--shrink` runs at most.
const SHRINK_TRIALS_MAX: usize = 600;

/// Shrinks `failing`, prints the minimal event list and writes it where `--replay` reads it.
fn shrink_and_print(a: &Args, failing: &Scenario, broken: Invariant) -> Result<(), String> {
    let shrunk = shrink(failing, broken, SHRINK_TRIALS_MAX)?;
    let file = PathBuf::from(format!("driftless-sim-{}.scenario", failing.seed));
    let text = format!(
        "# driftless simulate --replay {}: breaks {}\n{}",
        file.display(),
        broken.name(),
        shrunk.scenario
    );
    std::fs::write(&file, &text).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    println!(
        "shrunk from {} events and {} clients to {} events and {} clients ({} trials), still breaking {}:",
        failing.events.len(),
        failing.clients,
        shrunk.scenario.events.len(),
        shrunk.scenario.clients,
        shrunk.trials,
        broken.name()
    );
    print!("{}", shrunk.scenario);
    println!("replay: {} --replay {}", command_prefix(a), file.display());
    Ok(())
}

/// `--replay FILE`: runs the scenario written in FILE once.
fn replay(a: &Args, file: &Path) -> Result<u8, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let scenario: Scenario = text
        .parse()
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let out = run(&scenario, a.print_trace, true)?;
    match out.violation {
        Some(v) => {
            println!(
                "FAIL {} trace {:016x}: invariant {} broken: {}",
                file.display(),
                out.trace_hash,
                v.invariant.name(),
                v.detail
            );
            if a.shrink {
                shrink_and_print(a, &scenario, v.invariant)?;
            }
            Ok(1)
        }
        None => {
            println!(
                "{} ({} events, {} clients) held every invariant{}; trace {:016x}",
                file.display(),
                scenario.events.len(),
                scenario.clients,
                if out.compared {
                    ", compaction-independent included"
                } else {
                    ""
                },
                out.trace_hash
            );
            Ok(0)
        }
    }
}

/// Runs each planted fault in a child process of this binary, and fails unless each is found
/// within `--scenarios` scenarios.
fn self_check(a: &Args) -> Result<u8, String> {
    let faults = planted();
    if faults.is_empty() {
        return Err(
            "--self-check needs a build with the fault-injection or client-fault-injection feature"
                .into(),
        );
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut missed = 0;
    for (flag, name) in faults {
        let out = std::process::Command::new(&exe)
            .args(["simulate", flag, name])
            .args(["--seed", &a.seed.to_string()])
            .args(["--scenarios", &a.scenarios.to_string()])
            .args(["--clients", &a.clients.to_string()])
            .args(["--steps", &a.steps.to_string()])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        match out.status.code() {
            Some(1) => {
                let first = stdout.lines().find(|l| l.starts_with("FAIL")).unwrap_or("");
                println!("found   {flag} {name}: {first}");
            }
            _ => {
                missed += 1;
                println!(
                    "MISSED  {flag} {name} within {} scenarios: {}{}",
                    a.scenarios,
                    stdout.trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
    Ok(u8::from(missed > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(records: &[(&str, Value)], tainted: &[&str]) -> EndState {
        EndState {
            records: records
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            tainted: tainted.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    #[test]
    fn a_record_that_differs_without_compaction_is_named() {
        let with = end(&[("docs/r1", json!({"title": "a"}))], &[]);
        let without = end(&[("docs/r1", json!({"title": "b"}))], &[]);
        let v = compare_ends(&with, &without).expect("a difference");
        assert_eq!(v.invariant, Invariant::CompactionIndependent);
        assert!(v.detail.starts_with("docs/r1 is"), "{}", v.detail);
        // A Record present in only one run differs too.
        let gone = end(&[], &[]);
        assert!(compare_ends(&with, &gone).is_some());
    }

    #[test]
    fn a_record_a_write_was_refused_on_may_differ() {
        let with = end(&[("docs/r1", json!({"title": "a"}))], &["docs/r1"]);
        let without = end(&[], &[]);
        assert!(compare_ends(&with, &without).is_none());
        assert!(compare_ends(&without, &with).is_none());
    }
}
