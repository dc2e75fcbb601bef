//! `driftless simulate --server URL --token-cmd CMD`: network scenarios against any Server, for
//! implementers.
//!
//! Real reference Clients (their real HTTP transport over `ureq`, the real wall clock, real
//! backoff sleeps) talk to the Server under test through a fault-injecting HTTP/1.1 proxy in
//! this process (hyper, on `127.0.0.1`, one listener per Client). For each request the proxy
//! draws from its seeded generator whether to lose the request, lose the response after the
//! Server applied it, deliver the request twice, or hold it a little (at most
//! [`DELAY_MS_PER_SCENARIO_MAX`] in all per scenario), and it refuses every request of a Client
//! that is offline. Each scenario works in a fresh Space with its own Tokens from the token
//! command (`spec/running-the-suite.md`), so scenarios never see each other's data.
//!
//! The steps are those of the in-process simulator that a black box allows: writes of every
//! Effect kind on a few Records of two Collections, writes no push can carry, syncs, offline
//! periods, Client crashes (the Client dropped, its store reopened) and Client clock skew
//! (through [`driftless_client::inject::Environment`], the Client's own injection point; the
//! Server's clock is never touched). No Server restarts and no compaction: the Server is not
//! ours. After the network heals and every Client synced until idle, the invariants observable
//! from outside are checked (see [`Invariant`]; the merge model is folded over the push
//! answers the proxy saw) and the first broken one is named with its seed and a replay command.
//!
//! Network mode is not bit-for-bit deterministic (real time, a real Server, real scheduling):
//! a seed fixes the steps and each proxy's sequence of decisions, not the Server's answers. The
//! printed steps hash covers the steps alone, so two runs of one seed show the same one.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use driftless_client::inject::Environment;
use driftless_client::{Client, ClientError, Config, RetryPolicy};
use driftless_conformance::client::CommandTokens;
use driftless_conformance::TokenSource;
use serde_json::{json, Value};

use super::model::{
    applied_once, check_after_quiescence, listing, random_effect, tally_increment, Done, Fleet,
    Rng, DOCS, RECORDS, TALLY,
};
use super::{Args, Failure, Invariant, Violation};

mod proxy;
use proxy::*;

/// Most milliseconds the proxy holds requests back in one scenario, all delays together.
pub const DELAY_MS_PER_SCENARIO_MAX: u64 = 3_000;
/// Longest wait for the Server's answer to one forwarded request.
const UPSTREAM_TIMEOUT_MS: u64 = 30_000;
/// Each Client's per-request timeout.
const CLIENT_TIMEOUT_MS: u64 = 15_000;
/// Lifetime of the Tokens a scenario asks for, in seconds (the reference server's maximum).
const TOKEN_TTL_S: i64 = 3_600;
/// Sync rounds after the network healed before a Client that still changes counts as not
/// converging.
const QUIESCE_ROUNDS_MAX: usize = 8;

/// Longest offline period of a Client, in steps.
const OFFLINE_STEPS_MAX: u64 = 8;

fn violation(invariant: Invariant, detail: String) -> Violation {
    Violation { invariant, detail }
}

// ---------------------------------------------------------------------------------------------
// Randomness and the steps hash

/// FNV-1a, 64 bits, over the lines of the steps.
fn fnv(hash: u64, line: &str) -> u64 {
    line.bytes()
        .chain(std::iter::once(b'\n'))
        .fold(hash, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

// ---------------------------------------------------------------------------------------------
// The Clients' environment: the real clock plus a skew

/// The real wall clock, the operating system's randomness and real sleeps; only the clock of
/// the Client acting now runs `skew_ms` off.
struct SkewedClock {
    skew_ms: Cell<i64>,
}

impl Environment for SkewedClock {
    fn now_ms(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        now.saturating_add_signed(self.skew_ms.get())
    }
    fn fill_random(&self, buf: &mut [u8]) {
        // The Client treats a failed source as fatal on its own path; here the same source is
        // asked, and a failure leaves zeros, which the Client's IDs then show.
        let _ = getrandom::fill(buf);
    }
    fn sleep_ms(&self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

// ---------------------------------------------------------------------------------------------
// A scenario

/// What stays the same over a run.
struct Run {
    upstream: Arc<Upstream>,
    tokens: CommandTokens,
    /// Makes this run's Space names unique on a shared Server.
    nonce: String,
    clients: usize,
    steps: usize,
    print_trace: bool,
    rt: tokio::runtime::Runtime,
    /// Read without the proxy: discovery, history.
    agent: ureq::Agent,
}

struct Scenario<'r> {
    run: &'r Run,
    space: String,
    write_token: String,
    admin_token: String,
    dir: PathBuf,
    net: Net,
    proxies: Vec<Proxy>,
    env: Rc<SkewedClock>,
    clients: Vec<Option<Client>>,
    skews: Vec<i64>,
    /// Per Client: the step at which its offline period ends (0: none).
    offline_until: Vec<usize>,
    done: Vec<Done>,
    rng: Rng,
    steps_hash: u64,
}

/// What one scenario ended with.
struct Ended {
    steps_hash: u64,
    violation: Option<Violation>,
    counts: Counts,
}

fn client_config(server: &str, token: &str, space: &str) -> Config {
    Config {
        server: server.to_owned(),
        token: token.to_owned(),
        space: space.to_owned(),
        // One retry per request within a sync, so a lost answer is replayed at once; more
        // would make every sync of an offline Client sit through real backoff waits (the
        // Server's announced policy still bounds each wait from below, [RETRY-1]). A sync
        // resumes a persisted schedule after at most `delay_ms_cap`.
        retry: RetryPolicy {
            initial_delay_ms: 100,
            delay_ms_cap: 2_000,
            multiplier: 2,
            attempts_per_sync: 1,
        },
        batch_max: 8,
        timeout: Duration::from_millis(CLIENT_TIMEOUT_MS),
    }
}

impl Fleet for Scenario<'_> {
    fn clients(&self) -> usize {
        self.clients.len()
    }
    fn client(&mut self, i: usize) -> &mut Client {
        Scenario::client(self, i)
    }
    fn check_applied_once(&self) -> Result<(), Violation> {
        Scenario::check_applied_once(self)
    }
}

impl Scenario<'_> {
    /// Notes a step: into the steps hash, and to stderr with `--print-trace`.
    fn step_line(&mut self, line: &str) {
        self.steps_hash = fnv(self.steps_hash, line);
        if self.run.print_trace {
            eprintln!("{line}");
        }
    }

    fn result_line(&self, line: &str) {
        if self.run.print_trace {
            eprintln!("  {line}");
        }
    }

    fn open_client(&self, i: usize) -> Result<Client, String> {
        self.env.skew_ms.set(self.skews[i]);
        Client::open(
            &self.dir.join(format!("client-{i}")),
            client_config(&self.proxies[i].base, &self.write_token, &self.space),
        )
        .map_err(|e| format!("cannot open client {i}: {e}"))
    }

    fn client(&mut self, i: usize) -> &mut Client {
        self.env.skew_ms.set(self.skews[i]);
        self.clients[i]
            .as_mut()
            .expect("a crashed client is reopened at once")
    }

    /// One step. The choice of step depends on the seed alone, never on an answer, so a seed
    /// always runs the same steps.
    fn step(&mut self, n: usize) -> Result<(), String> {
        for c in 0..self.clients.len() {
            if n > 0 && self.offline_until[c] == n {
                self.net.lock().map_err(|_| "proxy state poisoned")?.offline[c] = false;
                self.step_line(&format!("{n} online c{c}"));
            }
        }
        let c = self.rng.below(self.clients.len() as u64) as usize;
        match self.rng.below(100) {
            0..=49 => {
                let (collection, id, effect) = random_effect(&mut self.rng);
                let tally = tally_increment(&collection, &id, &effect);
                self.step_line(&format!("{n} write c{c} {collection}/{id} {effect}"));
                let res = self.client(c).write(&collection, &id, effect, 0);
                self.result_line(&format!("-> {}", res.as_ref().map_or("error", |_| "done")));
                if let Ok(op_id) = res {
                    self.done.push(Done {
                        client: c,
                        op_id,
                        tally,
                        poison: false,
                        seen: None,
                        target: format!("{collection}/{id}"),
                    });
                }
            }
            50..=51 => {
                // Deeper than the reference server's limit: the Client refuses it or the
                // Server rejects it; a Server with a larger limit may apply it.
                let mut deep = json!(1);
                for _ in 0..40 {
                    deep = json!([deep]);
                }
                self.step_line(&format!("{n} poison c{c}"));
                let effect = json!({"kind": "put", "value": {"title": "deep", "body": deep}});
                let res = self.client(c).write(DOCS, "poison", effect, 0);
                self.result_line(&format!("-> {}", res.as_ref().map_or("error", |_| "done")));
                if let Ok(op_id) = res {
                    self.done.push(Done {
                        client: c,
                        op_id,
                        tally: None,
                        poison: true,
                        seen: None,
                        target: format!("{DOCS}/poison"),
                    });
                }
            }
            52..=71 => {
                self.step_line(&format!("{n} sync c{c}"));
                let res = self.client(c).sync();
                self.result_line(&summary(&res));
            }
            72..=78 => {
                // Offline for a few steps: long enough to write and fail a sync or two, short
                // enough that the real backoff of a Client that keeps failing stays small.
                let steps = 1 + self.rng.below(OFFLINE_STEPS_MAX);
                self.offline_until[c] = n + steps as usize;
                self.net.lock().map_err(|_| "proxy state poisoned")?.offline[c] = true;
                self.step_line(&format!("{n} offline c{c} for {steps} steps"));
            }
            79..=82 => {
                self.step_line(&format!("{n} crash c{c}"));
                self.clients[c] = None;
                self.clients[c] = Some(self.open_client(c)?);
            }
            83..=88 => {
                let skew = self.rng.below(240_001) as i64 - 120_000;
                self.skews[c] = skew;
                self.step_line(&format!("{n} skew c{c} {skew}"));
            }
            _ => {
                let weather = Weather::random(&mut self.rng);
                self.step_line(&format!("{n} weather {weather:?}"));
                self.net.lock().map_err(|_| "proxy state poisoned")?.weather = weather;
            }
        }
        Ok(())
    }

    /// Heals the network and the clocks, and syncs every Client until a round changes nothing.
    fn quiesce(&mut self) -> Result<(), Violation> {
        if let Ok(mut net) = self.net.lock() {
            net.weather = Weather::default();
            net.offline.iter_mut().for_each(|o| *o = false);
        }
        // A Client whose clock runs ahead by more than the Server's skew bound cannot stamp a
        // Mutation the Server accepts ([HLC-8]) until its clock is fixed.
        for s in &mut self.skews {
            *s = (*s).clamp(-30_000, 30_000);
        }
        for round in 0..QUIESCE_ROUNDS_MAX {
            let mut changed = false;
            for c in 0..self.clients.len() {
                let res = self.client(c).sync();
                self.result_line(&format!("quiesce {round} c{c} {}", summary(&res)));
                match res {
                    Ok(r) => {
                        changed |=
                            r.acknowledged + r.rejected + r.reissued + r.pulled > 0 || r.resynced
                    }
                    Err(e) => {
                        return Err(violation(
                            Invariant::SyncCompletes,
                            format!("client {c} after the network healed: {e}"),
                        ))
                    }
                }
            }
            if !changed && round > 0 {
                return Ok(());
            }
        }
        Err(violation(
            Invariant::SyncCompletes,
            format!("the clients still changed after {QUIESCE_ROUNDS_MAX} sync rounds"),
        ))
    }

    fn check(&mut self) -> Result<(), Violation> {
        let _n = self.clients.len();
        // The truth: a fresh Client's pull, straight from the Server, clock unskewed.
        self.env.skew_ms.set(0);
        let mut observer = Client::open(
            &self.dir.join("observer"),
            client_config(&self.run.upstream.base(), &self.admin_token, &self.space),
        )
        .map_err(|e| violation(Invariant::SyncCompletes, format!("observer: {e}")))?;
        observer
            .sync()
            .map_err(|e| violation(Invariant::SyncCompletes, format!("observer: {e}")))?;
        let truth = listing(&observer);
        let applied = self
            .net
            .lock()
            .map(|n| n.applied.clone())
            .unwrap_or_default();
        let done = self.done.clone();
        check_after_quiescence(self, &observer, &truth, &applied, None, &done)
    }

    /// No Op ID is applied twice: the Server's audit history of every Record the scenario
    /// touched holds at most one `applied` entry per Op ID (`[IDEM-2]`, `[AUDIT-1]`). A Record
    /// without history answers 404; a Server without the history endpoint cannot be checked
    /// here, and says so.
    fn check_applied_once(&self) -> Result<(), Violation> {
        let records = [DOCS, TALLY].into_iter().flat_map(|coll| {
            (0..RECORDS)
                .map(move |r| (coll, format!("r{r}")))
                .chain((coll == DOCS).then(|| (coll, "poison".to_owned())))
        });
        applied_once(records, |coll, id, after| {
            let url = format!(
                "{}/v1/spaces/{}/records/{coll}/{id}/history?after={after}",
                self.run.upstream.base(),
                self.space
            );
            let mut resp = self
                .run
                .agent
                .get(&url)
                .header("authorization", &format!("Bearer {}", self.admin_token))
                .header("driftless-version", "1.0")
                .call()
                .map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            if status == 404 {
                return Ok(None);
            }
            let text = resp
                .body_mut()
                .read_to_string()
                .map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("status {status}: {text}"));
            }
            Ok(Some(serde_json::from_str(&text).unwrap_or(Value::Null)))
        })
    }
}

fn summary(r: &Result<driftless_client::SyncReport, ClientError>) -> String {
    match r {
        Ok(r) => format!(
            "-> ok ack={} rej={} reissued={} pulled={} resync={}",
            r.acknowledged, r.rejected, r.reissued, r.pulled, r.resynced
        ),
        Err(e) => format!("-> error: {e}"),
    }
}

/// Where scenario folders go: memory-backed `/dev/shm` when there is one, else the system's
/// temporary folder.
fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// Runs the scenario of `seed`. `Err`: the scenario could not run (token command, store,
/// proxy), an operating error, not a broken invariant.
fn run_scenario(run: &Run, seed: u64) -> Result<Ended, String> {
    let mut rng = Rng(seed);
    let space = format!("sim-{}-{seed}", run.nonce);
    let user = format!("sim-{}", run.nonce);
    let write_token = run.tokens.token(&user, &space, "write", TOKEN_TTL_S)?;
    let admin_token = run.tokens.token(&user, &space, "admin", TOKEN_TTL_S)?;
    let dir = tempfile::Builder::new()
        .prefix("driftless-simremote-")
        .tempdir_in(scratch_root())
        .map_err(|e| format!("cannot create a scenario folder: {e}"))?;
    let net: Net = Arc::new(Mutex::new(NetState {
        weather: Weather::default(),
        offline: vec![false; run.clients],
        rngs: (0..run.clients).map(|_| Rng(rng.next())).collect(),
        delay_budget_ms: DELAY_MS_PER_SCENARIO_MAX,
        counts: Counts::default(),
        print_trace: run.print_trace,
        applied: Vec::new(),
    }));
    let proxies = (0..run.clients)
        .map(|i| Proxy::start(&run.rt, net.clone(), run.upstream.clone(), i))
        .collect::<Result<Vec<_>, _>>()?;
    let env = Rc::new(SkewedClock {
        skew_ms: Cell::new(0),
    });
    driftless_client::inject::set_environment(Some(env.clone()));
    let mut sc = Scenario {
        run,
        space,
        write_token,
        admin_token,
        dir: dir.path().to_owned(),
        net: net.clone(),
        proxies,
        env,
        clients: Vec::new(),
        skews: vec![0; run.clients],
        offline_until: vec![0; run.clients],
        done: Vec::new(),
        rng,
        steps_hash: FNV_START,
    };
    let outcome = (|| {
        // The scenario's Collection Schemas, registered straight with the Server (admin scope).
        let mut admin = Client::open(
            &sc.dir.join("admin"),
            client_config(&run.upstream.base(), &sc.admin_token, &sc.space),
        )
        .map_err(|e| format!("cannot open the admin client: {e}"))?;
        for coll in [DOCS, TALLY] {
            let doc = json!({"collection": coll, "version": 1, "schema": {"type": "object"},
                "fields": {"n": {"policy": "counter"}, "likes": {"policy": "counter"},
                           "tags": {"policy": "add_wins_set"}}});
            admin.register_schema(&doc).map_err(|e| {
                format!("cannot register the scenario's Collection Schema {coll}: {e}")
            })?;
        }
        drop(admin);
        for i in 0..run.clients {
            let c = sc.open_client(i)?;
            sc.clients.push(Some(c));
        }
        let weather = Weather::random(&mut sc.rng);
        sc.step_line(&format!("weather {weather:?}"));
        net.lock().map_err(|_| "proxy state poisoned")?.weather = weather;
        for n in 0..run.steps {
            sc.step(n)?;
        }
        Ok::<_, String>(sc.quiesce().and_then(|()| sc.check()).err())
    })();
    driftless_client::inject::set_environment(None);
    let steps_hash = sc.steps_hash;
    // The Clients go before their proxies, so no connection is left waiting.
    drop(sc);
    let counts = net.lock().map(|n| n.counts.clone()).unwrap_or_default();
    Ok(Ended {
        steps_hash,
        violation: outcome?,
        counts,
    })
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn replay_command(a: &Args, server: &str, token_cmd: &str, seed: u64) -> String {
    format!(
        "driftless simulate --server {} --token-cmd {} --seed {seed} --scenarios 1 --clients {} --steps {}",
        shell_quote(server),
        shell_quote(token_cmd),
        a.clients,
        a.steps
    )
}

/// Why the Server's discovery document cannot be read, if it cannot.
fn unreachable(agent: &ureq::Agent, upstream: &Upstream) -> Option<String> {
    let discovery = format!("{}/.well-known/driftless", upstream.base());
    match agent.get(&discovery).call() {
        Ok(r) if r.status() == 200 => None,
        Ok(r) => Some(format!(
            "{discovery} answered {}, not the discovery document",
            r.status()
        )),
        Err(e) => Some(format!("cannot reach {discovery}: {e}")),
    }
}

const NOT_DETERMINISTIC: &str = "network mode is not bit-for-bit deterministic (real time, a real server): a seed fixes the steps and the proxy's decisions, not the server's answers";

/// `driftless simulate --server URL --token-cmd CMD`. Exit code 0: every scenario held every
/// invariant; 1: a scenario broke one, or a scenario could not run (the line says which);
/// `Err`: a usage error (exit 2) or an operating error (exit 1).
pub fn main(a: Args) -> Result<u8, Failure> {
    let usage = |s: &str| Err(Failure::Usage(s.to_owned()));
    let (server, token_cmd) = match (&a.server, &a.token_cmd) {
        (Some(s), Some(t)) => (s.clone(), t.clone()),
        (Some(_), None) => {
            return usage("--server needs --token-cmd, the command that prints a Token (see spec/running-the-suite.md)")
        }
        (None, _) => return usage("--token-cmd needs --server"),
    };
    if a.server_fault.is_some() || a.client_fault.is_some() || a.self_check {
        return usage("--server-fault, --client-fault and --self-check plant faults in the in-process simulation; they do not go with --server");
    }
    if a.clients == 0 || a.scenarios == 0 {
        return usage("--clients and --scenarios must be at least 1");
    }
    if token_cmd.trim().is_empty() {
        return usage("--token-cmd is empty");
    }
    let upstream = Arc::new(Upstream::parse(&server).map_err(Failure::Usage)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the proxy runtime: {e}"))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_millis(CLIENT_TIMEOUT_MS)))
        .build()
        .into();
    // The Server must answer discovery before anything else is worth trying.
    if let Some(problem) = unreachable(&agent, &upstream) {
        eprintln!("driftless: {problem}");
        return Ok(1);
    }
    let mut nonce = [0u8; 4];
    getrandom::fill(&mut nonce).map_err(|e| format!("no random source: {e}"))?;
    let run = Run {
        upstream,
        tokens: CommandTokens::new(&token_cmd),
        nonce: nonce.iter().map(|b| format!("{b:02x}")).collect(),
        clients: a.clients,
        steps: a.steps,
        print_trace: a.print_trace,
        rt,
        agent,
    };
    let start = std::time::Instant::now();
    let mut total = Counts::default();
    for i in 0..a.scenarios {
        let seed = a.seed.wrapping_add(i);
        if a.print_trace {
            eprintln!("scenario seed {seed} in Space sim-{}-{seed}", run.nonce);
        }
        let ended = match run_scenario(&run, seed) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("driftless: seed {seed}: the scenario could not run: {e}");
                return Ok(1);
            }
        };
        let c = &ended.counts;
        total.requests += c.requests;
        total.dropped_requests += c.dropped_requests;
        total.dropped_responses += c.dropped_responses;
        total.duplicated += c.duplicated;
        total.delayed += c.delayed;
        total.refused_offline += c.refused_offline;
        if a.verbose {
            outln!(
                "seed {seed} steps {:016x}: {} requests through the proxy",
                ended.steps_hash,
                c.requests
            );
        }
        if let Some(v) = ended.violation {
            // A Server that went away is an operating error, not a broken invariant.
            if v.invariant == Invariant::SyncCompletes {
                if let Some(problem) = unreachable(&run.agent, &run.upstream) {
                    eprintln!("driftless: seed {seed}: the server stopped answering: {problem}");
                    return Ok(1);
                }
            }
            outln!(
                "FAIL seed {seed} steps {:016x}: invariant {} broken: {}",
                ended.steps_hash,
                v.invariant.name(),
                v.detail
            );
            outln!("replay: {}", replay_command(&a, &server, &token_cmd, seed));
            outln!("note: {NOT_DETERMINISTIC}; a replay may need a few runs");
            return Ok(1);
        }
    }
    outln!(
        "{} network scenarios (seeds {}..={}, {} clients, {} steps) against {server} held every invariant in {:.1} s; the proxy saw {} requests: {} lost, {} responses lost, {} duplicated, {} delayed, {} refused while offline",
        a.scenarios,
        a.seed,
        a.seed.wrapping_add(a.scenarios - 1),
        a.clients,
        a.steps,
        start.elapsed().as_secs_f64(),
        total.requests,
        total.dropped_requests,
        total.dropped_responses,
        total.duplicated,
        total.delayed,
        total.refused_offline
    );
    outln!("note: {NOT_DETERMINISTIC}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::Upstream;

    #[test]
    fn upstream_keeps_host_port_and_prefix() {
        let u = Upstream::parse("http://127.0.0.1:7878/sync/").unwrap();
        assert_eq!(u.authority, "127.0.0.1:7878");
        assert_eq!(u.prefix, "/sync");
        assert_eq!(u.base(), "http://127.0.0.1:7878/sync");
        assert_eq!(
            Upstream::parse("http://localhost").unwrap().authority,
            "localhost:80"
        );
    }

    #[test]
    fn upstream_refuses_what_the_proxy_cannot_reach() {
        for bad in [
            "https://sync.example.test",
            "ftp://x",
            "127.0.0.1:7878",
            "http://",
            "http://host:notaport",
            "http://host:0",
            "http://host:1/x?y",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }
}
