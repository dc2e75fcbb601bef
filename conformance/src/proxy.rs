//! A fault-injecting HTTP/1.1 proxy on loopback, between the suite's simulated Clients and the
//! Server. For each request it draws, from a seeded generator, one of: forward; forward and then
//! drop the response (a lost acknowledgement); forward twice (a duplicated request); or wait a
//! while first (which reorders concurrent requests). Plain `http://` upstreams only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often each fault happens, in percent of requests.
#[derive(Debug, Clone, Copy)]
pub struct FaultRates {
    /// Forward the request, then close the connection without the response.
    pub drop_response: u64,
    /// Forward the request twice; the second answer is discarded.
    pub duplicate: u64,
    /// Wait up to `delay_ms_max` before forwarding.
    pub delay: u64,
    /// Longest injected delay.
    pub delay_ms_max: u64,
}

impl FaultRates {
    /// No faults: every request is forwarded at once.
    pub const NONE: Self = Self {
        drop_response: 0,
        duplicate: 0,
        delay: 0,
        delay_ms_max: 0,
    };
}

/// What the proxy did, for the case's report.
#[derive(Debug, Default)]
pub struct Counts {
    /// Requests seen.
    pub requests: AtomicU64,
    /// Responses dropped after the Server answered.
    pub dropped: AtomicU64,
    /// Requests sent twice.
    pub duplicated: AtomicU64,
    /// Requests delayed.
    pub delayed: AtomicU64,
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    addr: String,
    stop: Arc<AtomicBool>,
    /// What it did.
    pub counts: Arc<Counts>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Rng(Mutex<u64>);

impl Rng {
    fn below(&self, n: u64) -> u64 {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s % n.max(1)
    }
}

/// Reads one HTTP/1.1 message head and its Content-Length body.
fn read_message(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(if head.is_empty() {
                None
            } else {
                Some((head, Vec::new()))
            });
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

/// Sends one request upstream on a fresh connection and returns the raw response.
fn forward(upstream: &str, head: &str, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    // One request per upstream connection keeps the framing trivial.
    let mut head: String = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
        .map(|l| format!("{l}\r\n"))
        .collect();
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut reader = BufReader::new(stream);
    match read_message(&mut reader)? {
        Some((h, b)) => {
            let mut raw = h.into_bytes();
            raw.extend_from_slice(&b);
            Ok(raw)
        }
        None => Err(std::io::Error::other("the server closed without answering")),
    }
}

fn serve(client: TcpStream, upstream: &str, rng: &Rng, rates: FaultRates, counts: &Counts) {
    let Ok(read_half) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = client;
    // One request per connection: responses carry Connection: close.
    if let Ok(Some((head, body))) = read_message(&mut reader) {
        counts.requests.fetch_add(1, Ordering::Relaxed);
        if rng.below(100) < rates.delay {
            counts.delayed.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(rng.below(rates.delay_ms_max + 1)));
        }
        let Ok(response) = forward(upstream, &head, &body) else {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        };
        if rng.below(100) < rates.duplicate {
            counts.duplicated.fetch_add(1, Ordering::Relaxed);
            let _ = forward(upstream, &head, &body);
        }
        if rng.below(100) < rates.drop_response {
            counts.dropped.fetch_add(1, Ordering::Relaxed);
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
        let _ = writer.write_all(&response);
        let _ = writer.shutdown(Shutdown::Both);
    }
}

impl Proxy {
    /// Starts a proxy to `upstream` (an `http://host:port` base URL) on a free loopback port.
    pub fn start(upstream: &str, seed: u64, rates: FaultRates) -> Result<Self, String> {
        let upstream = upstream
            .strip_prefix("http://")
            .ok_or("the fault-injecting proxy needs an http:// server")?
            .trim_end_matches('/')
            .to_owned();
        Self::spawn(vec![upstream], seed, rates)
    }

    fn spawn(upstreams: Vec<String>, seed: u64, rates: FaultRates) -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener
            .local_addr()
            .map_err(|e| e.to_string())?
            .to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let rng = Arc::new(Rng(Mutex::new(seed | 1)));
        let (stop_flag, counts_ref) = (stop.clone(), counts.clone());
        let thread = std::thread::spawn(move || {
            // One request per connection, so taking turns per connection is per request.
            let mut turn = 0usize;
            for conn in listener.incoming() {
                if stop_flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let upstream = upstreams[turn % upstreams.len()].clone();
                turn += 1;
                let (rng, counts) = (rng.clone(), counts_ref.clone());
                std::thread::spawn(move || serve(conn, &upstream, &rng, rates, &counts));
            }
        });
        Ok(Self {
            addr: format!("http://{addr}"),
            stop,
            counts,
            thread: Some(thread),
        })
    }

    /// Starts a plain forwarding proxy on a free loopback port that sends each request to the
    /// next of `upstreams` in turn (`http://host:port` base URLs): several server instances
    /// behind one address, where consecutive requests of one Client land on different ones.
    pub fn round_robin(upstreams: &[&str]) -> Result<Self, String> {
        let upstreams: Vec<String> = upstreams
            .iter()
            .map(|u| {
                u.strip_prefix("http://")
                    .map(|u| u.trim_end_matches('/').to_owned())
                    .ok_or_else(|| format!("the proxy needs http:// servers, not {u}"))
            })
            .collect::<Result<_, _>>()?;
        if upstreams.is_empty() {
            return Err("the proxy needs at least one server".into());
        }
        Self::spawn(upstreams, 1, FaultRates::NONE)
    }

    /// The proxy's base URL.
    pub fn base(&self) -> &str {
        &self.addr
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
