//! `driftless bench converge`: N reference Clients each make W offline writes, then sync over
//! real HTTP to a `driftless serve` child process on 127.0.0.1, all at once, until every one
//! has pulled what the others pushed; then each syncs once more with nothing new (an idle sync).
//!
//! Every byte the Clients send goes through a counting TCP relay in this process (headers and
//! bodies exactly as sent, so after compression), which also counts the HTTP requests and TCP
//! connections. The report says whether the replicas converged (every Client lists the same
//! Records, and the shared counter holds every increment), the client-to-server bytes against
//! the Mutations' own JSON, the requests per idle sync, and the server's peak resident set
//! (`VmHWM` of `/proc/PID/status`), each beside its goal, then one verdict line.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use driftless_protocol::messages::Scope;
use serde_json::{json, Value};

use crate::bench::verdict;
use crate::bench_load::ChildServer;

/// Client-to-server bytes of the whole convergence, at most this share of the Mutations' JSON.
const BYTES_RATIO_GOAL: f64 = 0.5;
/// Requests a sync with nothing to push and nothing to pull makes, at most.
const IDLE_REQUESTS_GOAL: f64 = 2.0;
/// The server's peak resident set, below this many KiB (64 MB).
const PEAK_RSS_KIB_GOAL: u64 = 64 * 1024;
/// The Space and Collection written.
const SPACE: &str = "bench";
const COLLECTION: &str = "items";
/// The Record every Client increments.
const SHARED: &str = "shared";

/// What the relay counted on the way from the Clients to the server.
#[derive(Default)]
struct Counts {
    bytes: AtomicU64,
    requests: AtomicU64,
    connections: AtomicU64,
    /// A request the relay could not frame (chunked, or no `content-length` on a body):
    /// its request count would be wrong, so the report says so.
    unframed: AtomicBool,
}

impl Counts {
    fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.bytes.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
            self.connections.load(Ordering::Relaxed),
        )
    }
}

/// Splits the client-to-server byte stream of one connection into HTTP/1.1 requests: a head
/// up to the empty line, then `content-length` bytes of body.
#[derive(Default)]
struct Framer {
    head: Vec<u8>,
    body_left: u64,
}

impl Framer {
    fn feed(&mut self, data: &[u8], counts: &Counts) {
        for &b in data {
            if self.body_left > 0 {
                self.body_left -= 1;
                continue;
            }
            self.head.push(b);
            if self.head.ends_with(b"\r\n\r\n") {
                counts.requests.fetch_add(1, Ordering::Relaxed);
                let head = String::from_utf8_lossy(&self.head).to_ascii_lowercase();
                for line in head.lines() {
                    if let Some(v) = line.strip_prefix("content-length:") {
                        self.body_left = v.trim().parse().unwrap_or(0);
                    }
                    if line.starts_with("transfer-encoding:") {
                        counts.unframed.store(true, Ordering::Relaxed);
                    }
                }
                self.head.clear();
            }
        }
    }
}

/// A TCP relay on 127.0.0.1 in front of `upstream` that counts what the Clients send; stops
/// accepting when dropped.
struct Relay {
    base: String,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
}

impl Relay {
    fn start(upstream: &str) -> Result<Self, String> {
        let target = upstream
            .strip_prefix("http://")
            .ok_or_else(|| format!("not an http:// address: {upstream}"))?
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (counts, stop) = (
            Arc::new(Counts::default()),
            Arc::new(AtomicBool::new(false)),
        );
        let (c, s) = (Arc::clone(&counts), Arc::clone(&stop));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(down) = conn else { continue };
                let Ok(up) = TcpStream::connect(&target) else {
                    continue;
                };
                c.connections.fetch_add(1, Ordering::Relaxed);
                let _ = (down.set_nodelay(true), up.set_nodelay(true));
                let (Ok(mut down_r), Ok(mut up_w)) = (down.try_clone(), up.try_clone()) else {
                    continue;
                };
                let (mut up_r, mut down_w) = (up, down);
                // Server to Client: copied as it is.
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up_r, &mut down_w);
                    let _ = down_w.shutdown(std::net::Shutdown::Both);
                });
                // Client to server: copied and counted.
                let counts = Arc::clone(&c);
                std::thread::spawn(move || {
                    let (mut buf, mut framer) = (vec![0u8; 64 * 1024], Framer::default());
                    loop {
                        let n = match down_r.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        counts.bytes.fetch_add(n as u64, Ordering::Relaxed);
                        framer.feed(&buf[..n], &counts);
                        if up_w.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = up_w.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Ok(Self {
            base: format!("http://{addr}"),
            counts,
            stop,
            addr,
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accepting thread so that it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// The Collection Schema: a counter Field `n`, the rest `lww`.
fn schema() -> Value {
    json!({"collection": COLLECTION, "version": 1, "schema": {"type": "object"},
        "fields": {"n": {"policy": "counter"}}})
}

/// The `j`th offline write of Client `c`: every other one increments the shared counter, the
/// others put a Record of the Client's own.
fn offline_write(c: usize, j: usize) -> (String, Value) {
    if j % 2 == 0 {
        (
            SHARED.to_owned(),
            json!({"kind": "increment", "field": "n", "by": 1}),
        )
    } else {
        (
            format!("c{c}-{j}"),
            json!({"kind": "put", "value": {"title": "an offline write", "client": c, "j": j}}),
        )
    }
}

/// What one Client thread hands back at the end.
struct Outcome {
    /// The JSON text length of its Mutations, as its Outbox held them before the first sync.
    mutation_bytes: u64,
    /// Its list of the Collection after the last sync, as canonical text.
    listed: String,
    /// The shared counter as it reads it.
    counter: Option<i64>,
}

/// Runs the benchmark: `clients` Clients, `writes` offline writes each.
pub fn run(clients: usize, writes: usize) -> Result<String, String> {
    let (server, write_token) = ChildServer::start()?;
    let admin = server.token(SPACE, Scope::Admin)?;
    let relay = Relay::start(&server.base)?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = |token: &str| driftless_client::Config {
        server: relay.base.clone(),
        token: token.to_owned(),
        space: SPACE.into(),
        retry: driftless_client::RetryPolicy::preset(driftless_client::Preset::Interactive),
        batch_max: 100,
        timeout: Duration::from_secs(120),
    };
    {
        let mut admin_client =
            driftless_client::Client::open(&dir.path().join("admin"), config(&admin))
                .map_err(|e| e.to_string())?;
        admin_client
            .register_schema(&schema())
            .map_err(|e| format!("registering the schema: {e}"))?;
    }
    // Phases, each ended by every thread and this one at the barrier: writes; the converging
    // syncs (two rounds: the second pulls what others pushed after one's first); the idle sync.
    let barrier = Arc::new(Barrier::new(clients + 1));
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let mut threads = Vec::with_capacity(clients);
    for c in 0..clients {
        let (barrier, first_error) = (Arc::clone(&barrier), Arc::clone(&first_error));
        let (store_dir, cfg) = (dir.path().join(format!("c{c}")), config(&write_token));
        threads.push(std::thread::spawn(move || {
            let fail = |e: String| {
                if let Ok(mut f) = first_error.lock() {
                    f.get_or_insert(format!("client {c}: {e}"));
                }
            };
            let mut client = driftless_client::Client::open(&store_dir, cfg)
                .map_err(|e| fail(e.to_string()))
                .ok();
            let mut mutation_bytes = 0;
            if let Some(cl) = client.as_mut() {
                for j in 0..writes {
                    let (id, effect) = offline_write(c, j);
                    if let Err(e) = cl.write(COLLECTION, &id, effect, 0) {
                        fail(e.to_string());
                        break;
                    }
                }
                match driftless_client::store::Store::open(&store_dir).and_then(|s| s.outbox(SPACE))
                {
                    Ok(outbox) => mutation_bytes = outbox.iter().map(|p| p.text.len() as u64).sum(),
                    Err(e) => fail(e.to_string()),
                }
            }
            barrier.wait(); // the writes are done
            for _round in 0..3 {
                barrier.wait();
                if let Some(cl) = client.as_mut() {
                    if let Err(e) = cl.sync() {
                        fail(e.to_string());
                    }
                }
                barrier.wait();
            }
            let listed = client
                .as_ref()
                .and_then(|cl| cl.list(COLLECTION).map_err(|e| fail(e.to_string())).ok());
            let counter = listed.as_ref().and_then(|l| {
                l.iter()
                    .find(|(id, _)| id == SHARED)
                    .and_then(|(_, v)| v.get("n")?.as_i64())
            });
            Outcome {
                mutation_bytes,
                listed: listed.map_or(String::new(), |l| format!("{l:?}")),
                counter,
            }
        }));
    }
    crate::bench::step(&format!(
        "bench converge: {clients} clients x {writes} offline writes..."
    ));
    barrier.wait(); // the writes are done
    crate::bench::step("bench converge: syncing...");
    let before = relay.counts.snapshot();
    let start = std::time::Instant::now();
    for _round in 0..2 {
        barrier.wait(); // every Client syncs
        barrier.wait(); // every Client is done
    }
    let converged_at = relay.counts.snapshot();
    let took = start.elapsed();
    crate::bench::step("bench converge: one idle sync each...");
    barrier.wait();
    barrier.wait();
    let idle_at = relay.counts.snapshot();
    let outcomes: Vec<Outcome> = threads
        .into_iter()
        .map(|t| t.join().map_err(|_| "a client thread panicked".to_owned()))
        .collect::<Result<_, _>>()?;
    let peak_kib = server.peak_rss_kib();
    crate::bench::step_done();
    if let Some(e) = first_error.lock().ok().and_then(|f| f.clone()) {
        return Err(e);
    }
    let expected_counter = (clients * writes.div_ceil(2)) as i64;
    let equal = outcomes.windows(2).all(|w| w[0].listed == w[1].listed);
    let counter_right = outcomes.iter().all(|o| {
        o.counter == Some(expected_counter) || (expected_counter == 0 && o.counter.is_none())
    });
    let converged = equal && counter_right;
    let mutation_bytes: u64 = outcomes.iter().map(|o| o.mutation_bytes).sum();
    let sent = converged_at.0 - before.0;
    let bytes_ratio = sent as f64 / mutation_bytes.max(1) as f64;
    let idle_requests = (idle_at.1 - converged_at.1) as f64 / clients as f64;
    let unframed = relay.counts.unframed.load(Ordering::Relaxed);
    let mut out = format!(
        "convergence benchmark: {clients} reference Clients x {writes} offline writes each (half increments of one shared counter), then every Client syncs at once over HTTP to a `driftless serve` child on 127.0.0.1 (two rounds), then once more with nothing new\n"
    );
    out.push_str(&format!(
        "  converged            {}   (every replica equal: {}; counter {} of {expected_counter} on every Client: {})\n",
        if converged { "yes" } else { "NO" },
        if equal { "yes" } else { "no" },
        outcomes.first().and_then(|o| o.counter).map_or("absent".into(), |n| n.to_string()),
        if counter_right { "yes" } else { "no" },
    ));
    out.push_str(&format!(
        "  client-to-server     {sent} bytes (headers and bodies as sent) for {mutation_bytes} bytes of Mutations' JSON = {bytes_ratio:.2}x   goal <= {BYTES_RATIO_GOAL}x; {} requests on {} connections in {:.2} s\n",
        converged_at.1 - before.1,
        converged_at.2 - before.2,
        took.as_secs_f64()
    ));
    out.push_str(&format!(
        "  requests/idle sync   {idle_requests:.2}{}   goal <= {IDLE_REQUESTS_GOAL}\n",
        if unframed {
            " (uncertain: a request body was not framed by content-length)"
        } else {
            ""
        }
    ));
    out.push_str(&format!(
        "  peak server RSS      {}   goal < {} MB\n",
        peak_kib.map_or("unknown (no /proc)".to_owned(), |k| format!(
            "{:.1} MB",
            k as f64 / 1024.0
        )),
        PEAK_RSS_KIB_GOAL / 1024
    ));
    out.push_str(&verdict(&[
        ("converged".to_owned(), converged),
        (
            format!("client-to-server bytes <= {BYTES_RATIO_GOAL}x the Mutations' JSON"),
            bytes_ratio <= BYTES_RATIO_GOAL,
        ),
        (
            format!("requests per idle sync <= {IDLE_REQUESTS_GOAL}"),
            !unframed && idle_requests <= IDLE_REQUESTS_GOAL,
        ),
        (
            format!("peak server RSS < {} MB", PEAK_RSS_KIB_GOAL / 1024),
            peak_kib.is_some_and(|k| k < PEAK_RSS_KIB_GOAL),
        ),
    ]));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The relay's framing counts requests split anywhere across reads, skipping bodies that
    /// hold what looks like a request head.
    #[test]
    fn requests_are_counted_across_reads_and_bodies_are_skipped() {
        let stream = b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 22\r\n\r\nGET / HTTP/1.1\r\n\r\n....GET /c HTTP/1.1\r\n\r\n";
        for split in [1, 7, 30, stream.len()] {
            let (counts, mut framer) = (Counts::default(), Framer::default());
            for chunk in stream.chunks(split) {
                framer.feed(chunk, &counts);
            }
            assert_eq!(counts.requests.load(Ordering::Relaxed), 3, "split {split}");
        }
    }
}
