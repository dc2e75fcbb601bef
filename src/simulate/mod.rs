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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use driftless_server::faults::Faults;

mod check;
mod model;
mod remote;
mod scenario;
mod shrink;
mod sim;
mod world;
use model::*;
pub use scenario::{generate, Event, Scenario};
use shrink::shrink;
use sim::*;
use world::*;

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

/// Why `driftless simulate` stopped without a verdict: bad flags, or a `--replay` file that
/// does not parse (the line says which line), exit 2; a file that cannot be read or written, a
/// folder that cannot be created, a child process that cannot start, exit 1. The one failure
/// type of the CLI's commands.
pub use crate::client_cmd::Failure;

/// What a run reports as an error text is an operating error.
impl From<String> for Failure {
    fn from(s: String) -> Self {
        Self::Operating(s)
    }
}

/// `driftless simulate`. Exit code 0: every scenario held every invariant (or, with
/// `--self-check`, every planted fault was found); 1: a scenario broke one, or an operating
/// error; 2: a usage error (see [`Failure`]).
pub fn main(a: Args) -> Result<u8, Failure> {
    if a.server.is_some() || a.token_cmd.is_some() {
        return remote::main(a);
    }
    if a.clients == 0 || a.scenarios == 0 {
        return Err(Failure::Usage(
            "--clients and --scenarios must be at least 1".into(),
        ));
    }
    if a.self_check {
        return self_check(&a);
    }
    if let Some(f) = &a.client_fault {
        switch_on_client_fault(f).map_err(Failure::Usage)?;
    }
    if let Ok(mut f) = SERVER_FAULT.lock() {
        f.clone_from(&a.server_fault);
    }
    server_faults().map_err(Failure::Usage)?;
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
            outln!("seed {seed} trace {:016x}", out.trace_hash);
        }
        if let Some(v) = out.violation {
            outln!(
                "FAIL seed {seed} trace {:016x}: invariant {} broken: {}",
                out.trace_hash,
                v.invariant.name(),
                v.detail
            );
            outln!("replay: {}", replay_command(&a, seed));
            if a.shrink {
                shrink_and_print(&a, &generate(seed, a.clients, a.steps), v.invariant)?;
            }
            return Ok(1);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    outln!(
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
    outln!(
        "shrunk from {} events and {} clients to {} events and {} clients ({} trials), still breaking {}:",
        failing.events.len(),
        failing.clients,
        shrunk.scenario.events.len(),
        shrunk.scenario.clients,
        shrunk.trials,
        broken.name()
    );
    out!("{}", shrunk.scenario);
    outln!("replay: {} --replay {}", command_prefix(a), file.display());
    Ok(())
}

/// `--replay FILE`: runs the scenario written in FILE once.
fn replay(a: &Args, file: &Path) -> Result<u8, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let scenario: Scenario = text
        .parse()
        .map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
    let out = run(&scenario, a.print_trace, true)?;
    match out.violation {
        Some(v) => {
            outln!(
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
            outln!(
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
fn self_check(a: &Args) -> Result<u8, Failure> {
    let faults = planted();
    if faults.is_empty() {
        return Err(Failure::Usage(
            "--self-check needs a build with the fault-injection or client-fault-injection feature"
                .into(),
        ));
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
                outln!("found   {flag} {name}: {first}");
            }
            _ => {
                missed += 1;
                outln!(
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
