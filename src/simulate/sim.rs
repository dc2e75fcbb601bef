//! One in-process scenario: the Clients, the events, quiescence, and the runs of a scenario.

use super::*;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use driftless_client::inject::HttpRequest;
use driftless_client::{Client, ClientError, Config, Preset, RetryPolicy};
use driftless_protocol::messages::{Scope, TokenClaims};
use driftless_server::conn::EdgeConfig;
use driftless_server::service::WallClock;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// A scenario

pub(super) const SPACE: &str = "sim";

pub(super) struct Sim {
    pub(super) world: Rc<World>,
    pub(super) env: Rc<SimEnv>,
    pub(super) dir: PathBuf,
    pub(super) token: String,
    pub(super) clients: Vec<Option<Client>>,
    pub(super) skews: Vec<i64>,
    /// Whether each Client's last sync finished: its view is then its Mirror while it has
    /// nothing pending.
    pub(super) synced: Vec<bool>,
    pub(super) done: Vec<Done>,
    /// The scenario's seed, which seeds each event's streams.
    pub(super) seed: u64,
    /// Clients whose disk is full, by index (a reopened Client's is filled again).
    pub(super) disk_full: Vec<bool>,
    /// The first write refused for another reason than a full disk, or without saying so.
    pub(super) refused: Option<Violation>,
    /// What the check saw, for the comparison without compaction.
    pub(super) end: EndState,
}

/// The Server's final state as the check saw it, and the Records whose outcome may depend on
/// when compaction ran.
#[derive(Debug, Clone, Default)]
pub(super) struct EndState {
    /// `collection/record` → the Record's value on the Server (absent: no such Record).
    pub(super) records: BTreeMap<String, Value>,
    /// `collection/record` of every write that was refused, dead-lettered or ended unknown.
    pub(super) tainted: std::collections::BTreeSet<String>,
}

pub(super) fn client_config(token: &str) -> Config {
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
    pub(super) fn trace(&self, line: String) {
        self.world.trace.borrow_mut().add(&line);
    }

    pub(super) fn open_client(&self, i: usize) -> Result<Client, String> {
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

    pub(super) fn client(&mut self, i: usize) -> &mut Client {
        self.env.skew_ms.set(self.skews[i]);
        self.clients[i]
            .as_mut()
            .expect("clients are reopened at once")
    }

    /// Executes event number `n` of the scenario.
    pub(super) fn exec(&mut self, n: u64, event: &Event) -> Result<(), String> {
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
                    let tally = tally_increment(collection, record, &effect);
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
    pub(super) fn note_write_error(
        &mut self,
        c: usize,
        res: &Result<String, ClientError>,
        poison: bool,
    ) {
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
    pub(super) fn reseed(&self, n: u64) {
        let mut mix = Rng(self.seed ^ n.wrapping_mul(0xA076_1D64_78BD_642F));
        *self.world.rng.borrow_mut() = Rng(mix.next());
        *self.env.rng.borrow_mut() = Rng(mix.next());
    }

    /// Heals the network and syncs every Client until a round changes nothing.
    pub(super) fn quiesce(&mut self) -> Result<(), Violation> {
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
}

pub(super) fn summary(r: &Result<driftless_client::SyncReport, ClientError>) -> String {
    match r {
        Ok(r) => format!(
            "ok ack={} rej={} reissued={} pulled={} resync={}",
            r.acknowledged, r.rejected, r.reissued, r.pulled, r.resynced
        ),
        Err(e) => format!("error {}", error_kind(e)),
    }
}

/// The kind of an error, without its text (which may hold paths of this run's folders).
pub(super) fn error_kind(e: &ClientError) -> &'static str {
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

/// `title` → `heading` in a `put` value or a `patch`, as an app built for `docs` v2 writes.
pub(super) fn rename_title(effect: &mut Value) {
    for key in ["value", "set"] {
        if let Some(m) = effect.get_mut(key).and_then(Value::as_object_mut) {
            if let Some(v) = m.remove("title") {
                m.insert("heading".into(), v);
            }
        }
    }
}

/// Where scenario folders go: memory-backed `/dev/shm` when there is one (the stores' fsyncs
/// are not what is under test), else the system's temporary folder.
pub(super) fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// The stream numbers past every event's: opening the Clients, the check, quiescence rounds.
pub(super) const QUIESCE_STREAM: u64 = 1 << 40;

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
pub(super) const COMPARE_EVERY: u64 = 4;

/// Whether the seed run of `scenario` is compared with its run without compaction.
pub(super) fn compared_by_seed(scenario: &Scenario) -> bool {
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
pub(super) fn compare_ends(with: &EndState, without: &EndState) -> Option<Violation> {
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

pub(super) fn run_once(
    scenario: &Scenario,
    print_trace: bool,
) -> Result<(Outcome, EndState), String> {
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
