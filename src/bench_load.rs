//! `driftless bench load`: the reference server under concurrent and hostile load, on loopback.
//!
//! - `--mode mixed` (default): N pushers and M pullers, each a thread with one keep-alive
//!   connection, for T seconds against the embedded server; then the same clients for T seconds
//!   against a raw-hyper endpoint in this process that answers every request with a fixed body
//!   (the ceiling). Reports requests, errors, requests/s and p50/p99/max latency per role, the
//!   ratios to the ceiling, and the fsync bound on pushes: one durable SQLite transaction per
//!   push, measured raw in the same run (a push of one Mutation cannot commit faster).
//! - `--mode idle` and `--mode slowloris`: the server runs as a child process (`driftless serve`
//!   on port 0, default connection limits), so that the K attack sockets held here and the
//!   server's own sockets each have their process's whole file-descriptor limit. A normal Client
//!   pulls one request at a time, each on a new connection (as a newly arriving Client would),
//!   before, during and after K connections that stay silent (idle) or send a request head one
//!   byte a second and reconnect when closed (slowloris). Reports the normal pulls' latency and
//!   errors per phase, and the server's RSS and open file descriptors (from `/proc/PID`).
//!
//! Everything is bounded: counts by the argument ranges, every request by a timeout, K by this
//! process's file-descriptor limit (capped, and the report says so). Traffic stays on 127.0.0.1.
//! Figures are to be read as ratios against the same run's ceiling or baseline phase.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftless_protocol::messages::Scope;
use serde_json::{json, Value};

/// Pushes of one Mutation each reach at least this multiple of one durable SQLite transaction
/// per push (with two pushers or more): the share of an fsync group commit must win.
const GROUP_COMMIT_GOAL: f64 = 1.0;

/// What load to put on the server.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// N pushers and M pullers beside the same load on a raw-hyper ceiling.
    Mixed,
    /// K connections sending a request head one byte a second, reconnecting when closed.
    Slowloris,
    /// K connections that send nothing.
    Idle,
}

/// Arguments of `driftless bench load`.
#[derive(clap::Args)]
pub struct Args {
    /// Concurrent pushers (mixed mode), each pushing one Mutation per request.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pushers: u32,
    /// Concurrent pullers (mixed mode), each pulling a page of 100 records per request.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pullers: u32,
    /// Seconds each measured phase lasts.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: u64,
    /// The kind of load.
    #[arg(long, value_enum, default_value_t = Mode::Mixed)]
    mode: Mode,
    /// Attack connections (idle and slowloris modes); capped below this process's fd limit.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    idle: u64,
}

/// Runs the benchmark and returns its report.
pub fn run(args: Args) -> Result<String, String> {
    if args.mode == Mode::Mixed && args.pushers + args.pullers == 0 {
        return Err("--pushers and --pullers cannot both be 0".into());
    }
    let phase = Duration::from_secs(args.seconds);
    match args.mode {
        Mode::Mixed => mixed(args.pushers as usize, args.pullers as usize, phase),
        Mode::Idle | Mode::Slowloris => attack(args.mode, args.idle as usize, phase),
    }
}

// ---------------------------------------------------------------------------------------------
// Samples and percentiles

/// Latencies of successful requests, the count of failed ones and the first failure.
#[derive(Default)]
struct Stats {
    ok: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.ok.extend(other.ok);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn record(&mut self, took: Duration, result: Result<(), String>) {
        match result {
            Ok(()) => self.ok.push(took),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    /// The nearest-rank percentile `p` (0 to 100) of the successful latencies, in milliseconds.
    fn percentile_ms(&self, p: f64) -> f64 {
        let mut v = self.ok.clone();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_unstable();
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1].as_secs_f64() * 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.ok
            .iter()
            .max()
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------------
// Requests

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The push body of pusher `client`'s `seq`th Mutation (1-based): a put of a small record.
fn push_body(client: &str, seq: u64) -> String {
    json!({"client_id": client, "mutations": [{
        "op_id": format!("{client}-op-{seq:08}"), "seq": seq, "collection": "things",
        "record_id": format!("{client}-r{seq}"),
        "hlc": format!("{:012x}-{:04x}-{client}", now_ms(), seq % 65_536),
        "effect": {"kind": "put", "value": {"title": "load benchmark record", "n": seq}}}]})
    .to_string()
}

/// POSTs one push; Ok when it is answered 2xx and its Mutation was applied.
fn push_once(agent: &ureq::Agent, url: &str, token: &str, body: &str) -> Result<(), String> {
    let text = answer(
        "push",
        agent
            .post(url)
            .header("authorization", &format!("Bearer {token}"))
            .content_type("application/json")
            .send(body.as_bytes()),
    )?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("push: {e}"))?;
    if v["results"][0]["status"] == "applied" {
        Ok(())
    } else {
        Err(format!("push not applied: {v}"))
    }
}

/// GETs one pull page and reads it whole; Ok when answered 2xx.
fn pull_once(agent: &ureq::Agent, url: &str, token: &str) -> Result<(), String> {
    answer(
        "pull",
        agent
            .get(url)
            .header("authorization", &format!("Bearer {token}"))
            .call(),
    )
    .map(drop)
}

/// The whole body of a 2xx answer; any other answer or a transport error is an error naming
/// `what`, with the start of the body (problem+json) when there is one.
fn answer(
    what: &str,
    sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<String, String> {
    let mut resp = sent.map_err(|e| format!("{what}: {e}"))?;
    let status = resp.status();
    let text = resp
        .body_mut()
        .with_config()
        .limit(16 * 1024 * 1024)
        .read_to_string()
        .map_err(|e| format!("{what}: {e}"))?;
    if status.is_success() {
        Ok(text)
    } else {
        Err(format!(
            "{what}: status {status}: {}",
            text.chars().take(200).collect::<String>()
        ))
    }
}

/// Where the load goes.
struct Target {
    push_url: String,
    pull_url: String,
    token: String,
}

impl Target {
    fn new(base: &str, token: String) -> Self {
        Self {
            push_url: format!("{base}/v1/spaces/bench/push"),
            pull_url: format!("{base}/v1/spaces/bench/pull?limit=100"),
            token,
        }
    }
}

/// `pushers` and `pullers` threads, each on its own keep-alive connection, sending requests
/// back to back for `phase`; returns (push, pull) stats. `round` keeps Op IDs unique across runs.
fn drive(
    target: &Target,
    pushers: usize,
    pullers: usize,
    phase: Duration,
    round: &str,
) -> (Stats, Stats) {
    let deadline = Instant::now() + phase;
    std::thread::scope(|s| {
        let push: Vec<_> = (0..pushers)
            .map(|p| {
                s.spawn(move || {
                    let (agent, client) =
                        (agent(Duration::from_secs(30)), format!("load-{round}-p{p}"));
                    let mut stats = Stats::default();
                    let mut seq = 0;
                    while Instant::now() < deadline {
                        seq += 1;
                        let body = push_body(&client, seq);
                        let start = Instant::now();
                        let r = push_once(&agent, &target.push_url, &target.token, &body);
                        stats.record(start.elapsed(), r);
                    }
                    stats
                })
            })
            .collect();
        let pull: Vec<_> = (0..pullers)
            .map(|_| {
                s.spawn(move || {
                    let agent = agent(Duration::from_secs(30));
                    let mut stats = Stats::default();
                    while Instant::now() < deadline {
                        let start = Instant::now();
                        let r = pull_once(&agent, &target.pull_url, &target.token);
                        stats.record(start.elapsed(), r);
                    }
                    stats
                })
            })
            .collect();
        let join = |handles: Vec<std::thread::ScopedJoinHandle<'_, Stats>>| {
            let mut all = Stats::default();
            for h in handles {
                match h.join() {
                    Ok(st) => all.merge(st),
                    Err(_) => all.record(Duration::ZERO, Err("a client thread panicked".into())),
                }
            }
            all
        };
        (join(push), join(pull))
    })
}

/// Fills Space `bench` with `records` records in pushes of 100, so that pulls return full pages.
fn prefill(target: &Target, records: u64) -> Result<(), String> {
    let agent = agent(Duration::from_secs(60));
    let mut seq = 0;
    while seq < records {
        let ms: Vec<Value> = (0..100.min(records - seq))
            .map(|_| {
                seq += 1;
                json!({"op_id": format!("fill-op-{seq:08}"), "seq": seq, "collection": "things",
                    "record_id": format!("fill-r{seq}"),
                    "hlc": format!("{:012x}-{:04x}-load-fill", now_ms(), seq % 65_536),
                    "effect": {"kind": "put", "value": {"title": "prefilled record", "n": seq}}})
            })
            .collect();
        let body = json!({"client_id": "load-fill", "mutations": ms}).to_string();
        answer(
            "prefill push",
            agent
                .post(&target.push_url)
                .header("authorization", &format!("Bearer {}", target.token))
                .content_type("application/json")
                .send(body.as_bytes()),
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The raw-hyper ceiling

const CEILING_BODY: &[u8] = br#"{"results":[{"status":"applied"}]}"#;

/// A minimal hyper HTTP/1.1 server on 127.0.0.1 in this process, on its own two-worker runtime
/// (as the embedded server's), answering every request with [`CEILING_BODY`] after reading its
/// body. It stops when dropped.
struct Ceiling {
    base: String,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Ceiling {
    fn start() -> Result<Self, String> {
        use http_body_util::BodyExt;
        let (runtime, listener, base) = crate::embedded::loopback_runtime()?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(async move {
            loop {
                let tcp = tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, _)) => tcp,
                        Err(_) => {
                            // Out of descriptors: back off instead of spinning.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                };
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        |req: hyper::Request<hyper::body::Incoming>| async move {
                            let _ = req.into_body().collect().await;
                            let mut resp = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from_static(CEILING_BODY),
                            ));
                            resp.headers_mut().insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, std::convert::Infallible>(resp)
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok(Self {
            base,
            runtime: Some(runtime),
            stop: Some(stop),
        })
    }
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Mixed mode

fn mixed(pushers: usize, pullers: usize, phase: Duration) -> Result<String, String> {
    let config = driftless_server::service::Config {
        rate_limit_per_s: u32::MAX,
        ..Default::default()
    };
    let server = crate::embedded::Embedded::start(config)?;
    let target = Target::new(&server.base, server.token("bench", "bench", Scope::Write)?);
    prefill(&target, 200)?;
    let (s_push, s_pull) = drive(&target, pushers, pullers, phase, "s");
    drop(server);

    let ceiling = Ceiling::start()?;
    let target = Target::new(&ceiling.base, target.token);
    let (c_push, c_pull) = drive(&target, pushers, pullers, phase, "c");
    drop(ceiling);

    // The fsync bound: the same durability as a push (WAL, synchronous=FULL), one transaction
    // per Mutation, no HTTP and no protocol work.
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    const FSYNC_TX: usize = 300;
    let took = driftless_server::storage::sqlite::raw_insert_ceiling(dir.path(), FSYNC_TX, 1)
        .map_err(|e| e.to_string())?;
    let fsync_per_s = FSYNC_TX as f64 / took.as_secs_f64().max(1e-9);

    let secs = phase.as_secs_f64();
    let rate = |st: &Stats| st.ok.len() as f64 / secs;
    let mut out = format!(
        "load benchmark (mixed): {pushers} pushers (one Mutation per push) + {pullers} pullers (pages of 100 of 200+ records) for {secs:.0} s against the embedded reference server, then the same clients for {secs:.0} s against the ceiling (raw hyper in this process, fixed body); one keep-alive connection per client; loopback\n"
    );
    out.push_str(&format!(
        "{:<8}  {:<4}  {:>7}  {:>8}  {:>6}  {:>9}  {:>8}  {:>8}  {:>8}\n",
        "target", "role", "clients", "requests", "errors", "req/s", "p50 ms", "p99 ms", "max ms"
    ));
    for (target, role, clients, st) in [
        ("server", "push", pushers, &s_push),
        ("server", "pull", pullers, &s_pull),
        ("ceiling", "push", pushers, &c_push),
        ("ceiling", "pull", pullers, &c_pull),
    ] {
        out.push_str(&format!(
            "{target:<8}  {role:<4}  {clients:>7}  {:>8}  {:>6}  {:>9.1}  {:>8.2}  {:>8.2}  {:>8.2}\n",
            st.ok.len(),
            st.errors,
            rate(st),
            st.percentile_ms(50.0),
            st.percentile_ms(99.0),
            st.max_ms(),
        ));
    }
    let pct = |a: f64, b: f64| 100.0 * a / b.max(1e-9);
    out.push_str(&format!(
        "server/ceiling req/s: push {:.1}%, pull {:.1}%\n",
        pct(rate(&s_push), rate(&c_push)),
        pct(rate(&s_pull), rate(&c_pull)),
    ));
    out.push_str(&format!(
        "server pull p99 / push p99: {:.2} (goal <= 0.33)\n",
        s_pull.percentile_ms(99.0) / s_push.percentile_ms(99.0)
    ));
    out.push_str(&format!(
        "fsync bound: {fsync_per_s:.0} durable SQLite transactions/s raw (WAL, synchronous=FULL, one row each, {FSYNC_TX} in {:.0} ms); server pushes/s = {:.1}% of it\n",
        ms(took),
        pct(rate(&s_push), fsync_per_s),
    ));
    // Group commit: pushes arriving together share one fsync, so many single-Mutation pushers
    // are not bound by one durable transaction per request (issue 15).
    let group_ratio = rate(&s_push) / fsync_per_s.max(1e-9);
    out.push_str(&format!(
        "group commit: server pushes/s / raw durable tx/s = {group_ratio:.2} (goal >= {GROUP_COMMIT_GOAL:.1} with {pushers} pushers): {}\n",
        if pushers < 2 {
            "n/a (one pusher)"
        } else if group_ratio >= GROUP_COMMIT_GOAL {
            "PASS"
        } else {
            "FAIL"
        }
    ));
    for (what, st) in [
        ("server push", &s_push),
        ("server pull", &s_pull),
        ("ceiling push", &c_push),
        ("ceiling pull", &c_pull),
    ] {
        if let Some(e) = &st.first_error {
            out.push_str(&format!("first error ({what}): {e}\n"));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Idle and slowloris modes

/// The soft limit on open files of this process, from `/proc/self/limits`.
fn fd_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Descriptors kept free for everything but the attack sockets (the normal Client, the runtime,
/// the child's pipes, the data folder).
const FD_RESERVE: usize = 300;

/// The server as a child process, killed when dropped.
pub(crate) struct ChildServer {
    pub(crate) child: Child,
    pub(crate) base: String,
    stderr_lines: Arc<AtomicUsize>,
    stderr_first: Arc<Mutex<Option<String>>>,
    _dir: tempfile::TempDir,
}

impl ChildServer {
    /// Starts `driftless serve` on port 0 with default limits and a fresh data folder; returns
    /// it and a write Token for Space `bench`.
    pub(crate) fn start() -> Result<(Self, String), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let key = driftless_server::auth::TokenKey::load_or_create(dir.path())
            .map_err(|e| e.to_string())?;
        let token = crate::embedded::mint(&key, "bench", "bench", Scope::Write, 3600)?;
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let mut child = Command::new(exe)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--rate-limit",
                "1000000",
                "--data",
            ])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the server: {e}"))?;
        let stdout = child.stdout.take().ok_or("no server stdout")?;
        let stderr = child.stderr.take().ok_or("no server stderr")?;
        let (stderr_lines, stderr_first) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(None)));
        {
            let (lines, first) = (Arc::clone(&stderr_lines), Arc::clone(&stderr_first));
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    lines.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut f) = first.lock() {
                        f.get_or_insert(line);
                    }
                }
            });
        }
        let mut line = String::new();
        let mut out = BufReader::new(stdout);
        let read = out.read_line(&mut line);
        let base = match (read, line.trim().strip_prefix("listening on ")) {
            (Ok(_), Some(base)) => base.to_owned(),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the server did not start (first line: {:?})",
                    line.trim()
                ));
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in out.lines().map_while(Result::ok) {});
        Ok((
            Self {
                child,
                base,
                stderr_lines,
                stderr_first,
                _dir: dir,
            },
            token,
        ))
    }

    /// A Token for Space `space` with `scope`, signed with the child's secret.
    pub(crate) fn token(&self, space: &str, scope: Scope) -> Result<String, String> {
        let key = driftless_server::auth::TokenKey::load_or_create(self._dir.path())
            .map_err(|e| e.to_string())?;
        crate::embedded::mint(&key, "bench", space, scope, 3600)
    }

    /// The child's peak resident set so far in KiB (`VmHWM` of `/proc/PID/status`).
    pub(crate) fn peak_rss_kib(&self) -> Option<u64> {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()?
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
    }

    /// The child's resident set in KiB (`VmRSS`) and its open descriptors.
    fn usage(&self) -> (u64, usize) {
        let pid = self.child.id();
        let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
        (rss, fds)
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One phase's normal pulls and the server's usage sampled during it.
struct Phase {
    stats: Stats,
    rss_kib_max: u64,
    rss_kib_end: u64,
    fds_max: usize,
    fds_end: usize,
}

/// One normal Client pulling, one request at a time and each on a new connection, for `phase`,
/// while the server's RSS and descriptors are sampled every 100 ms.
fn normal_phase(server: &ChildServer, target: &Target, phase: Duration) -> Phase {
    let deadline = Instant::now() + phase;
    let done = AtomicBool::new(false);
    let (rss_max, fds_max) = (AtomicU64::new(0), AtomicUsize::new(0));
    let stats = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let (rss, fds) = server.usage();
                rss_max.fetch_max(rss, Ordering::Relaxed);
                fds_max.fetch_max(fds, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let mut stats = Stats::default();
        while Instant::now() < deadline {
            // A fresh agent: a new connection, as a Client arriving during the attack.
            let agent = agent(Duration::from_secs(5));
            let start = Instant::now();
            let r = pull_once(&agent, &target.pull_url, &target.token);
            stats.record(start.elapsed(), r);
        }
        done.store(true, Ordering::Relaxed);
        stats
    });
    let (rss_end, fds_end) = server.usage();
    Phase {
        stats,
        rss_kib_max: rss_max.load(Ordering::Relaxed).max(rss_end),
        rss_kib_end: rss_end,
        fds_max: fds_max.load(Ordering::Relaxed).max(fds_end),
        fds_end,
    }
}

/// What the attack connections saw.
#[derive(Default)]
struct AttackCounts {
    opened: AtomicUsize,
    connect_failed: AtomicUsize,
    closed_by_server: AtomicUsize,
}

/// Opens `k` connections to `addr`, at most 256 connecting at once, each within 5 s; the ones
/// that fail are counted.
async fn open_idle(addr: &str, k: usize, counts: &AttackCounts) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::with_capacity(k);
    let mut left = k;
    while left > 0 {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..left.min(256) {
            let addr = addr.to_owned();
            set.spawn(async move {
                tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
                    .await
            });
        }
        left -= left.min(256);
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(Ok(Ok(s))) => {
                    counts.opened.fetch_add(1, Ordering::Relaxed);
                    held.push(s);
                }
                _ => {
                    counts.connect_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    held
}

/// Whether the server has closed (or answered and closed) a silent connection.
fn closed_by_peer(s: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 512];
    match s.try_read(&mut buf) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// One slowloris connection until `stop`: a request head one byte a second, never finished;
/// when the server closes it (or answers), a new one.
async fn slowloris(
    addr: String,
    counts: Arc<AttackCounts>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const HEAD: &[u8] = b"GET /v1/spaces/bench/pull HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    const TRICKLE: &[u8] = b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    while !*stop.borrow() {
        let mut s = match tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(&addr),
        )
        .await
        {
            Ok(Ok(s)) => s,
            _ => {
                counts.connect_failed.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        counts.opened.fetch_add(1, Ordering::Relaxed);
        if s.write_all(HEAD).await.is_err() {
            counts.closed_by_server.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut i = 0;
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = s.read(&mut buf) => {
                    counts.closed_by_server.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                _ = tick.tick() => {
                    if s.write_all(&TRICKLE[i % TRICKLE.len()..][..1]).await.is_err() {
                        counts.closed_by_server.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    i += 1;
                }
            }
        }
    }
}

fn attack(mode: Mode, asked: usize, phase: Duration) -> Result<String, String> {
    let limit = fd_limit();
    let k = match limit {
        Some(l) => asked.min(l.saturating_sub(FD_RESERVE)),
        None => asked,
    };
    if k == 0 {
        return Err(format!(
            "the open-file limit ({}) leaves no room for attack connections",
            limit.unwrap_or(0)
        ));
    }
    let (server, token) = ChildServer::start()?;
    let target = Target::new(&server.base, token);
    let addr = server.base.trim_start_matches("http://").to_owned();
    prefill(&target, 200)?;
    let (idle_rss, idle_fds) = server.usage();

    let before = normal_phase(&server, &target, phase);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let counts = Arc::new(AttackCounts::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let open_start = Instant::now();
    let mut held = Vec::new();
    let mut tasks = Vec::new();
    match mode {
        Mode::Idle => held = runtime.block_on(open_idle(&addr, k, &counts)),
        _ => {
            for _ in 0..k {
                tasks.push(runtime.spawn(slowloris(
                    addr.clone(),
                    Arc::clone(&counts),
                    stopped.clone(),
                )));
            }
            // Wait (bounded) until every slowloris connection was opened once or failed.
            let wait_until = Instant::now() + Duration::from_secs(60);
            while counts.opened.load(Ordering::Relaxed)
                + counts.connect_failed.load(Ordering::Relaxed)
                < k
                && Instant::now() < wait_until
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let open_took = open_start.elapsed();
    let during = normal_phase(&server, &target, phase);
    let (still_open, closed) = if mode == Mode::Idle {
        let _guard = runtime.enter();
        let closed = held.iter().filter(|s| closed_by_peer(s)).count();
        (held.len() - closed, closed)
    } else {
        (0, counts.closed_by_server.load(Ordering::Relaxed))
    };
    let _ = stop.send(true);
    drop(held);
    runtime.block_on(async {
        for t in tasks {
            let _ = t.await;
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    // Let the server notice the closed sockets before the "after" phase.
    std::thread::sleep(Duration::from_secs(2));
    let after = normal_phase(&server, &target, phase);

    let secs = phase.as_secs_f64();
    let what = match mode {
        Mode::Idle => format!("{k} idle connections (open, silent)"),
        _ => format!(
            "{k} slowloris connections (a request head at 1 byte/s, reconnecting when closed)"
        ),
    };
    let cap = match limit {
        Some(l) if asked > k => format!(
            "; --idle {asked} capped to {k} by this process's open-file limit {l} (minus {FD_RESERVE} kept free)"
        ),
        Some(l) => format!("; open-file limit {l}"),
        None => String::new(),
    };
    let mut out = format!(
        "load benchmark ({}): {what} against `driftless serve` (child pid {}, default limits: header 10 s, idle 60 s, 10000 connections){cap}; a normal client pulls pages of 100, one request at a time, each on a new connection, {secs:.0} s per phase; loopback\n",
        if mode == Mode::Idle { "idle" } else { "slowloris" },
        server.child.id(),
    );
    out.push_str(&format!(
        "{:<6}  {:>8}  {:>6}  {:>8}  {:>8}  {:>8}  {:>11}  {:>11}  {:>7}  {:>7}\n",
        "phase",
        "requests",
        "errors",
        "p50 ms",
        "p99 ms",
        "max ms",
        "RSS MiB max",
        "RSS MiB end",
        "fds max",
        "fds end"
    ));
    for (name, p) in [("before", &before), ("attack", &during), ("after", &after)] {
        out.push_str(&format!(
            "{name:<6}  {:>8}  {:>6}  {:>8.2}  {:>8.2}  {:>8.2}  {:>11.1}  {:>11.1}  {:>7}  {:>7}\n",
            p.stats.ok.len(),
            p.stats.errors,
            p.stats.percentile_ms(50.0),
            p.stats.percentile_ms(99.0),
            p.stats.max_ms(),
            p.rss_kib_max as f64 / 1024.0,
            p.rss_kib_end as f64 / 1024.0,
            p.fds_max,
            p.fds_end,
        ));
    }
    out.push_str(&format!(
        "server at rest (after prefill): RSS {:.1} MiB, {idle_fds} fds; after/at-rest RSS: {:.2}x (goal <= 2x)\n",
        idle_rss as f64 / 1024.0,
        after.rss_kib_end as f64 / idle_rss.max(1) as f64,
    ));
    let opened = counts.opened.load(Ordering::Relaxed);
    let failed = counts.connect_failed.load(Ordering::Relaxed);
    out.push_str(&match mode {
        Mode::Idle => format!(
            "attack connections: {opened} opened in {:.0} ms, {failed} failed to connect; at the end of the attack {still_open} still open, {closed} closed by the server\n",
            ms(open_took)
        ),
        _ => format!(
            "attack connections: {opened} opened ({k} at first, in {:.0} ms, the rest reconnects), {failed} connects failed, {closed} closed by the server\n",
            ms(open_took)
        ),
    });
    let answered = during.stats.ok.len();
    out.push_str(&format!(
        "normal client answered during the attack: {} ({answered} of {} pulls)\n",
        if answered > 0 && during.stats.errors == 0 {
            "yes"
        } else if answered > 0 {
            "partly"
        } else {
            "no"
        },
        answered + during.stats.errors,
    ));
    let lines = server.stderr_lines.load(Ordering::Relaxed);
    out.push_str(&format!("server stderr: {lines} lines"));
    if let Ok(first) = server.stderr_first.lock() {
        if let Some(f) = first.as_deref() {
            out.push_str(&format!(" (first: {f})"));
        }
    }
    out.push('\n');
    for (name, p) in [("before", &before), ("attack", &during), ("after", &after)] {
        if let Some(e) = &p.stats.first_error {
            out.push_str(&format!("first error ({name}): {e}\n"));
        }
    }
    Ok(out)
}
