//! The scriptable fault layer of the client kit: an HTTP/1.1 proxy on loopback between the Client
//! under test and the Server. It records every request (time, method, path, JSON body, and the
//! status the Client got) and, where a case scripted a [`Rule`], answers in the Server's place or
//! spoils the Server's answer: a lost acknowledgement (forwarded, then the connection closed), a
//! reset (closed unforwarded), a canned answer (503 or 429 with `Retry-After`, a `mutation-too-old`
//! result, 413, `cursor-expired`), a slow answer, or a rewritten one (a skewed `Driftless-Clock`).
//! One request per connection keeps the framing simple; `Accept-Encoding` is dropped so that every
//! body it sees is plain JSON.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A request the Client sent, as a rule sees it and the record keeps it.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// When the layer had read it.
    pub at: Instant,
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The body as JSON (`Null` when empty or not JSON), inflated when it came coded.
    pub body: Value,
    /// The request's `Content-Encoding` (`None` when the body came uncoded).
    pub coding: Option<String>,
    /// The status the Client got; 0 when the connection was closed without an answer.
    pub status: u16,
    /// The body the Client got, as JSON (`Null` when none or not JSON).
    pub answer: Value,
}

/// A response, as forwarded or made up.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header lines, without `Content-Length` and `Connection`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON answer (`application/problem+json` for 4xx and 5xx).
    pub fn json(status: u16, body: &Value, headers: &[(&str, &str)]) -> Self {
        let ct = if status >= 400 {
            "application/problem+json"
        } else {
            "application/json"
        };
        let mut h = vec![("Content-Type".to_owned(), ct.to_owned())];
        h.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Self {
            status,
            headers: h,
            body: body.to_string().into_bytes(),
        }
    }

    /// The body as JSON (`Null` if it is not).
    pub fn json_body(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Replaces the value of header `name` (added if absent).
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
    }
}

/// What the layer does with one request.
pub enum Action {
    /// Forward it and pass the answer on.
    Forward,
    /// Answer this instead of the Server (which never sees the request).
    Answer(Response),
    /// Close the connection without forwarding (a reset).
    Reset,
    /// Forward it, then close the connection without the answer (a lost acknowledgement).
    Drop,
    /// Wait, then forward.
    Slow(Duration),
    /// Forward it and change the answer before passing it on.
    Rewrite(Box<dyn FnOnce(&mut Response) + Send>),
}

/// A scripted rule: asked for each request in turn until one returns an action.
pub type Rule = Box<dyn FnMut(&Exchange) -> Option<Action> + Send>;

#[derive(Default)]
struct Shared {
    rules: Vec<Rule>,
    log: Vec<Exchange>,
}

/// A running layer; stops when dropped.
pub struct Layer {
    addr: String,
    upstream: String,
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl Layer {
    /// Starts a layer in front of `upstream` (an `http://host:port` base URL) on a free loopback
    /// port.
    pub fn start(upstream: &str) -> Result<Self, String> {
        let upstream = upstream
            .strip_prefix("http://")
            .ok_or("the client kit's fault layer needs an http:// server")?
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener
            .local_addr()
            .map_err(|e| e.to_string())?
            .to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop_flag, shared_ref, up) = (stop.clone(), shared.clone(), upstream.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop_flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (up, shared) = (up.clone(), shared_ref.clone());
                std::thread::spawn(move || serve(conn, &up, &shared));
            }
        });
        Ok(Self {
            addr: format!("http://{addr}"),
            upstream: format!("http://{upstream}"),
            stop,
            shared,
            thread: Some(thread),
        })
    }

    /// The layer's base URL, for the Client.
    pub fn base(&self) -> &str {
        &self.addr
    }

    /// The Server's own base URL, for the kit's direct requests.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Adds a rule after the others.
    pub fn script(&self, rule: Rule) {
        lock(&self.shared).rules.push(rule);
    }

    /// Removes every rule.
    pub fn clear(&self) {
        lock(&self.shared).rules.clear();
    }

    /// Every request so far, in arrival order.
    pub fn log(&self) -> Vec<Exchange> {
        lock(&self.shared).log.clone()
    }

    /// The push requests so far.
    pub fn pushes(&self) -> Vec<Exchange> {
        self.log()
            .into_iter()
            .filter(|e| e.method == "POST" && e.path.contains("/push"))
            .collect()
    }

    /// Waits until `ready` holds for the log, at most `within`; whether it did.
    pub fn wait_for(&self, within: Duration, ready: impl Fn(&[Exchange]) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if ready(&lock(&self.shared).log) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Layer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A rule for requests whose method is `method` and whose path contains `path`, that acts the
/// first `times` times it matches (`usize::MAX`: always).
pub fn on(
    method: &'static str,
    path: &'static str,
    times: usize,
    mut act: impl FnMut(&Exchange) -> Action + Send + 'static,
) -> Rule {
    let mut left = times;
    Box::new(move |e: &Exchange| {
        if left == 0 || e.method != method || !e.path.contains(path) {
            return None;
        }
        left = left.saturating_sub(1);
        Some(act(e))
    })
}

fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<String>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok((!head.is_empty()).then_some(head));
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            return Ok(Some(head));
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

fn read_body(reader: &mut BufReader<TcpStream>, head: &str) -> std::io::Result<Vec<u8>> {
    if let Some(n) = header(head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        let mut body = vec![0; n];
        reader.read_exact(&mut body)?;
        return Ok(body);
    }
    if header(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(std::io::Error::other)?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Ok(Vec::new())
}

fn forward(upstream: &str, head: &str, body: &[u8]) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(upstream)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut out: String = head
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("connection:") && !l.starts_with("accept-encoding:") && !l.is_empty()
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    out.push_str("Connection: close\r\n\r\n");
    stream.write_all(out.as_bytes())?;
    stream.write_all(body)?;
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader)?
        .ok_or_else(|| std::io::Error::other("the server closed without answering"))?;
    let body = read_body(&mut reader, &head)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(502);
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k != "content-length" && k != "connection" && k != "transfer-encoding"
        })
        .collect();
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn send(mut to: &TcpStream, r: &Response) {
    let mut out = format!("HTTP/1.1 {} X\r\n", r.status);
    for (k, v) in &r.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        r.body.len()
    ));
    let _ = to.write_all(out.as_bytes());
    let _ = to.write_all(&r.body);
}

/// A request body as JSON, inflated first when the Client sent it gzip-compressed
/// (`[HTTP-16]`), so that cases see every push's Mutations (`Null` when it is not JSON).
fn json_of(head: &str, body: &[u8]) -> Value {
    let gzipped = header(head, "content-encoding").is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzipped {
        return serde_json::from_slice(body).unwrap_or(Value::Null);
    }
    let mut plain = Vec::new();
    // A bound on the inflated size: a body that inflates past it is recorded as not JSON.
    let mut decoder = flate2::read::GzDecoder::new(body).take(64 << 20);
    match decoder.read_to_end(&mut plain) {
        Ok(_) => serde_json::from_slice(&plain).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

fn serve(client: TcpStream, upstream: &str, shared: &Mutex<Shared>) {
    let Ok(read_half) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let Ok(Some(head)) = read_head(&mut reader) else {
        return;
    };
    let Ok(body) = read_body(&mut reader, &head) else {
        return;
    };
    let mut words = head.split_whitespace();
    let (method, path) = (
        words.next().unwrap_or("").to_owned(),
        words.next().unwrap_or("").to_owned(),
    );
    let exchange = Exchange {
        at: Instant::now(),
        method,
        path,
        body: json_of(&head, &body),
        coding: header(&head, "content-encoding").map(str::to_owned),
        status: 0,
        answer: Value::Null,
    };
    // The request is logged before it is answered, so a case waiting for it sees it at once.
    let (action, index) = {
        let mut s = lock(shared);
        let action = s.rules.iter_mut().find_map(|r| r(&exchange));
        s.log.push(exchange.clone());
        (action.unwrap_or(Action::Forward), s.log.len() - 1)
    };
    let answer = match action {
        Action::Forward => forward(upstream, &head, &body).ok(),
        Action::Answer(r) => Some(r),
        Action::Reset => None,
        Action::Drop => {
            let _ = forward(upstream, &head, &body);
            None
        }
        Action::Slow(d) => {
            std::thread::sleep(d);
            forward(upstream, &head, &body).ok()
        }
        Action::Rewrite(f) => forward(upstream, &head, &body).ok().map(|mut r| {
            f(&mut r);
            r
        }),
    };
    if let Some(r) = &answer {
        let mut s = lock(shared);
        s.log[index].status = r.status;
        s.log[index].answer = r.json_body();
        drop(s);
        send(&client, r);
    }
    let _ = client.shutdown(Shutdown::Both);
}
