//! The transport: the only module that knows HTTP (`ureq`). It sends requests with the bearer
//! Token (chapter 09) and the version header, reads the headers the protocol needs
//! (`Retry-After`, and `Driftless-Clock`, merged into the clock: `[HLC-5]`), retries transient
//! failures on the schedule of chapter 08 (`[RETRY-1]`..`[RETRY-3]`, `[RETRY-5]`, `[RETRY-7]`),
//! turns a refused Token into [`ClientError::Auth`], and fetches the discovery document
//! (chapter 01) once per handle.

use std::time::Duration;

use driftless_protocol::hlc::Hlc;
use serde_json::Value;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::clock::now_ms;
use crate::retry::is_transient;
use crate::{Client, ClientError};

/// The HTTP client a [`Client`] keeps for its requests.
pub(crate) type Agent = ureq::Agent;

/// An HTTP client that hands every status back as a response (the protocol reads them all) and
/// gives up on a request after `timeout`. HTTPS goes through rustls; certificates are verified
/// against `roots` if given, else against the bundled Mozilla roots (`webpki-roots`).
pub(crate) fn agent(timeout: Duration, roots: Option<&[Certificate<'static>]>) -> Agent {
    let tls = TlsConfig::builder().root_certs(match roots {
        Some(certs) => RootCerts::new_with_certs(certs),
        None => RootCerts::WebPki,
    });
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .tls_config(tls.build())
        .build()
        .into()
}

/// The certificates of a PEM file's text (other PEM items are ignored); an error if there is none.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<Certificate<'static>>, String> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        if let PemItem::Certificate(c) = item.map_err(|e| e.to_string())? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}

/// Whether the host of the Server URL `server` is a loopback address: `localhost`, an IPv4
/// address in 127.0.0.0/8 or `[::1]`.
pub(crate) fn on_loopback(server: &str) -> bool {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A request body: a JSON tree to serialize, or JSON text to send as it is (a push body
/// joined from the Outbox's stored texts, so that no tree of it is built, serialized and freed).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Json<'a> {
    /// A tree, serialized compactly when sent.
    Tree(&'a Value),
    /// Text that is already one JSON value.
    Text(&'a str),
}

impl Json<'_> {
    /// The bytes sent.
    pub(crate) fn to_vec(self) -> Result<Vec<u8>, String> {
        match self {
            Json::Tree(v) => serde_json::to_vec(v).map_err(|e| e.to_string()),
            Json::Text(t) => Ok(t.as_bytes().to_vec()),
        }
    }

    /// The body as a tree (`Null` for text that is not JSON).
    pub(crate) fn to_tree(self) -> Value {
        match self {
            Json::Tree(v) => v.clone(),
            Json::Text(t) => serde_json::from_str(t).unwrap_or(Value::Null),
        }
    }
}

/// Request bodies of at least this many bytes are sent gzip-compressed (`[HTTP-16]`).
const GZIP_REQUEST_BYTES_MIN: usize = 1024;

/// Most bytes of a compressed answer read, and most bytes it may decode to.
const RESPONSE_BYTES_MAX: u64 = 64 * 1024 * 1024;

fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(body)
        .and_then(|()| encoder.finish())
        .expect("writing to a Vec cannot fail")
}

/// Decodes a gzip answer, refusing one that inflates past [`RESPONSE_BYTES_MAX`].
fn gunzip(packed: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(packed)
        .take(RESPONSE_BYTES_MAX + 1)
        .read_to_end(&mut plain)
        .map_err(|e| format!("the gzip answer does not decode: {e}"))?;
    if plain.len() as u64 > RESPONSE_BYTES_MAX {
        return Err(format!(
            "the answer decodes to more than {RESPONSE_BYTES_MAX} bytes"
        ));
    }
    Ok(plain)
}

/// Bodies larger than this many bytes are sent with `Expect: 100-continue`.
const EXPECT_CONTINUE_BYTES_MIN: usize = 64 * 1024;

/// A response: status, headers we need, JSON body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<u64>,
    pub(crate) clock: Option<String>,
    /// The body as a JSON tree (`Null` when it is not JSON, or when a 200's tree was not asked
    /// for: see [`Body`]).
    pub(crate) body: Value,
    /// How many attempts [`Client::call`] made for this answer (1: the first one answered).
    /// A push answered on a later attempt was sent before, even if no answer came
    /// (chapter 08, "sent before").
    pub(crate) attempts: u32,
    /// The body as it arrived, when a 200's tree was not asked for (else empty).
    pub(crate) text: String,
}

/// How a successful (200) body is handed back. Other statuses always get a tree: the protocol
/// reads their Problem.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// Parsed into [`Reply::body`].
    Tree,
    /// Kept as text in [`Reply::text`], for a caller that parses it into borrowed values.
    Text,
}

/// A GET with the headers every Client GET carries. It needs nothing of the [`Client`] but its
/// agent and credentials, so a pull page can be fetched on another thread.
fn get(
    agent: &Agent,
    url: &str,
    auth: &str,
    client_id: &str,
    accept: &str,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    // The Client ID on reads lets a Server's diagnostics (the reference server's dashboard)
    // tell which Client is behind; it is not part of the protocol, and a Server ignores header
    // fields it does not know (RFC 9110, section 5.1).
    agent
        .get(url)
        .header("authorization", auth)
        .header("driftless-version", "1.0")
        .header("driftless-client-id", client_id)
        .header("accept-encoding", accept)
        .call()
}

/// An answer as read off the wire: the status, the headers the protocol needs and the body as
/// text, decoded if it came gzip-coded.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<u64>,
    pub(crate) clock: Option<String>,
    pub(crate) text: String,
}

/// Reads an answer. `Err((reason, transient))` as [`Client::request`].
fn read_answer(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Answer, (String, bool)> {
    let mut resp = result.map_err(|e| {
        let permanent = matches!(
            &e,
            ureq::Error::Rustls(_)
                | ureq::Error::Tls(_)
                | ureq::Error::Pem(_)
                | ureq::Error::BadUri(_)
                | ureq::Error::Http(_)
                | ureq::Error::TlsRequired
                | ureq::Error::RequireHttpsOnly(_)
        ) || matches!(&e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData);
        (e.to_string(), !permanent)
    })?;
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (retry_after, clock) = (
        header("retry-after").and_then(|v| v.trim().parse().ok()),
        header("driftless-clock"),
    );
    let status = resp.status().as_u16();
    let gzipped_answer =
        header("content-encoding").is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let text = if gzipped_answer {
        let packed = resp
            .body_mut()
            .with_config()
            .limit(RESPONSE_BYTES_MAX)
            .read_to_vec()
            .map_err(|e| (e.to_string(), true))?;
        let plain = gunzip(&packed).map_err(|e| (e, true))?;
        String::from_utf8(plain).map_err(|e| (format!("the answer is not UTF-8: {e}"), true))?
    } else {
        resp.body_mut()
            .read_to_string()
            .map_err(|e| (e.to_string(), true))?
    };
    Ok(Answer {
        status,
        retry_after,
        clock,
        text,
    })
}

/// A pull page being fetched on another thread while the previous one is stored: the path it
/// asks for, and the answer when it comes.
pub(crate) struct Prefetch {
    path: String,
    answer: std::thread::JoinHandle<Result<Answer, (String, bool)>>,
}

impl Client {
    /// One attempt. `Err((reason, transient))`: a failure to retry, or one no retry can help
    /// (a certificate or TLS setup the Client refuses, a malformed URL).
    fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Json<'_>>,
        want: Body,
    ) -> Result<Reply, (String, bool)> {
        if let Some(injected) = self.request_injected(method, path, body) {
            return injected;
        }
        let url = format!("{}{path}", self.cfg.server.trim_end_matches('/'));
        let auth = format!("Bearer {}", self.cfg.token);
        let result = match (method, body) {
            ("GET", _) => get(&self.agent, &url, &auth, &self.client_id, self.accept()),
            (_, Some(b)) => {
                let mut bytes = b.to_vec().map_err(|e| (e, false))?;
                // [HTTP-16]: larger bodies go compressed, unless this Server refused gzip.
                let gzipped = bytes.len() >= GZIP_REQUEST_BYTES_MIN && !self.gzip_refused;
                if gzipped {
                    bytes = gzip(&bytes);
                }
                let req = if method == "PUT" {
                    self.agent.put(&url)
                } else {
                    self.agent.post(&url)
                };
                let mut req = req
                    .header("authorization", &auth)
                    .header("driftless-version", "1.0")
                    .header("content-type", "application/json")
                    .header("accept-encoding", self.accept());
                if gzipped {
                    req = req.header("content-encoding", "gzip");
                }
                // A Server may refuse a large body before reading it (413, 401) and close the
                // connection; the Client, still uploading, would see only a broken pipe and
                // take a final answer for a transport failure. Asking first lets it read the
                // answer instead of sending the body ([CLIENT-20]).
                if bytes.len() > EXPECT_CONTINUE_BYTES_MIN {
                    req = req.header("expect", "100-continue");
                }
                req.send(&bytes[..])
            }
            (_, None) => self
                .agent
                .post(&url)
                .header("authorization", &auth)
                .header("driftless-version", "1.0")
                .header("accept-encoding", self.accept())
                .send_empty(),
        };
        let Answer {
            status,
            retry_after,
            clock,
            text,
        } = read_answer(result)?;
        if status == 415
            && body.is_some()
            && !self.gzip_refused
            && method != "GET"
            && !crate::faults::fault!(IgnoresUnsupportedCoding)
        {
            // [HTTP-17], [HTTP-19]: a Server that does not take gzip bodies says so with 415; send this
            // one, and every later one, without it.
            let refused_gzip = body
                .and_then(|b| b.to_vec().ok())
                .is_some_and(|b| b.len() >= GZIP_REQUEST_BYTES_MIN);
            if refused_gzip {
                self.gzip_refused = true;
                return self.request(method, path, body, want);
            }
        }
        Ok(self.reply_of(
            Answer {
                status,
                retry_after,
                clock,
                text,
            },
            want,
        ))
    }

    /// The [`Reply`] of an answer: its body parsed, unless a 200's text is wanted as it is.
    fn reply_of(&mut self, answer: Answer, want: Body) -> Reply {
        let Answer {
            status,
            retry_after,
            clock,
            text,
        } = answer;
        // Counted with the next durable transaction: a commit of its own would cost an fsync
        // per request.
        self.store.count_later("bytes_received", text.len() as i64);
        let (body, text) = if status == 200 && want == Body::Text {
            (Value::Null, text)
        } else {
            (
                serde_json::from_str(&text).unwrap_or(Value::Null),
                String::new(),
            )
        };
        Reply {
            status,
            retry_after,
            clock,
            body,
            text,
            attempts: 1,
        }
    }

    /// The `Accept-Encoding` this Client sends: `identity` is the coding every Server may use.
    fn accept(&self) -> &'static str {
        if self.accept_gzip {
            "gzip"
        } else {
            "identity"
        }
    }

    /// Starts fetching the pull page at `path` on another thread (with this Client's agent, so
    /// on its keep-alive connections), while the caller stores the page before it. `None` when
    /// requests do not go over HTTP (an injected transport: simulations stay deterministic).
    pub(crate) fn prefetch(&self, path: &str) -> Option<Prefetch> {
        if self.transport.is_some() {
            return None;
        }
        let agent = self.agent.clone();
        let url = format!("{}{path}", self.cfg.server.trim_end_matches('/'));
        let auth = format!("Bearer {}", self.cfg.token);
        let (client_id, accept) = (self.client_id.clone(), self.accept());
        let answer = std::thread::Builder::new()
            .name("driftless-pull-prefetch".into())
            .spawn(move || read_answer(get(&agent, &url, &auth, &client_id, accept)))
            .ok()?;
        Some(Prefetch {
            path: path.to_owned(),
            answer,
        })
    }

    /// [`Client::call`] for a GET whose 200 body the caller parses itself from [`Reply::text`].
    /// The answer of `prefetch` is taken as its first attempt when it was a prefetch of `path`: whatever it answered (a page, a Problem, a
    /// `Retry-After`, a failure) is read and retried on exactly as if it had been asked now.
    pub(crate) fn call_text(
        &mut self,
        path: &str,
        prefetch: Option<Prefetch>,
    ) -> Result<Reply, ClientError> {
        let first = prefetch.and_then(|p| {
            let same = p.path == path;
            // Joined whatever it was for: a GET of another page is safe to drop.
            let answer = p.answer.join().ok()?;
            same.then_some(answer)
        });
        let first = first.map(|a| a.map(|a| self.reply_of(a, Body::Text)));
        self.call_first("GET", path, None, Body::Text, first)
    }

    /// A request with the retry schedule: transient failures wait and retry (`[RETRY-1..3]`),
    /// the schedule is persisted (`[RETRY-5]`) and reset on success (`[RETRY-7]`).
    pub(crate) fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ClientError> {
        self.call_as(method, path, body.map(Json::Tree), Body::Tree)
    }

    /// [`Client::call`] with a body that may be JSON text ready to send.
    pub(crate) fn call_json(
        &mut self,
        method: &str,
        path: &str,
        body: Json<'_>,
    ) -> Result<Reply, ClientError> {
        self.call_as(method, path, Some(body), Body::Tree)
    }

    fn call_as(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Json<'_>>,
        want: Body,
    ) -> Result<Reply, ClientError> {
        self.call_first(method, path, body, want, None)
    }

    /// [`Client::call_as`], with the outcome of the first attempt already given if `first`.
    fn call_first(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Json<'_>>,
        want: Body,
        mut first: Option<Result<Reply, (String, bool)>>,
    ) -> Result<Reply, ClientError> {
        let resumed = self.resume_schedule()?;
        let policy = self.retry_policy();
        let mut retried_body: Option<Value> = None;
        for attempt in 0..=policy.attempts_per_sync {
            if crate::faults::fault!(NewOpIdOnRetry) && attempt > 0 {
                let mut b = body.map_or(Value::Null, Json::to_tree);
                if let Some(ms) = b["mutations"].as_array_mut() {
                    for m in ms {
                        m["op_id"] = Value::String(format!(
                            "{}-retry-{}",
                            self.client_id,
                            crate::clock::random_hex(4)
                        ));
                    }
                }
                retried_body = Some(b);
            }
            let outcome = match first.take() {
                Some(outcome) => outcome,
                None => self.request(
                    method,
                    path,
                    retried_body.as_ref().map(Json::Tree).or(body),
                    want,
                ),
            };
            let (reason, retry_after) = match outcome {
                Ok(mut r) => {
                    r.attempts = attempt + 1;
                    if let Some(c) = r
                        .clock
                        .as_deref()
                        .and_then(|c| c.parse::<Hlc>().ok())
                        .filter(|_| !crate::faults::fault!(IgnoresServerClock))
                    {
                        self.clock.clock.merge(&c, now_ms()); // [HLC-5]
                    }
                    if !is_transient(r.status) {
                        if resumed + attempt > 0 && !crate::faults::fault!(NoFailureReset) {
                            self.reset_schedule()?;
                        }
                        return Ok(r);
                    }
                    (
                        format!("{} {}", r.status, r.body["type"].as_str().unwrap_or("")),
                        r.retry_after,
                    )
                }
                Err((e, true)) => (e, None),
                Err((e, false)) => return Err(ClientError::Connection(e)),
            };
            if attempt == policy.attempts_per_sync {
                return Err(ClientError::Unavailable(reason));
            }
            self.wait_before_retry(&policy, resumed + attempt, retry_after, reason)?;
        }
        Err(ClientError::Unavailable("retries exhausted".into()))
    }

    pub(crate) fn problem_of(reply: &Reply) -> String {
        reply.body["type"]
            .as_str()
            .unwrap_or("")
            .rsplit(':')
            .next()
            .unwrap_or("")
            .to_owned()
    }

    pub(crate) fn discover(&mut self) -> Result<(), ClientError> {
        if self.discovery.is_some() {
            return Ok(());
        }
        let r = self.call("GET", "/.well-known/driftless", None)?;
        if r.status != 200 {
            return Err(ClientError::Protocol(format!(
                "discovery answered {}",
                r.status
            )));
        }
        self.keep_limits(&r.body)?;
        self.discovery = Some(r.body);
        Ok(())
    }

    pub(crate) fn check_auth(&self, r: &Reply) -> Result<(), ClientError> {
        if r.status == 401 || r.status == 403 {
            return Err(ClientError::Auth(
                r.body["detail"].as_str().unwrap_or("").to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    use serde_json::json;

    use crate::{Client, Config, Preset, RetryPolicy};

    /// A Client of Space `demo` on `base`, with the interactive retry policy.
    fn test_client(dir: &std::path::Path, base: String) -> Client {
        let cfg = Config {
            server: base,
            token: "t".into(),
            space: "demo".into(),
            retry: RetryPolicy::preset(Preset::Interactive),
            batch_max: 10,
            timeout: std::time::Duration::from_secs(30),
        };
        Client::open(dir, cfg).unwrap()
    }

    /// A Server that takes no coded bodies: 415 naming no coding for a gzip body, 200 for any
    /// other. Reports whether each request it saw was gzip-coded.
    fn refusing_server(requests: usize) -> (String, mpsc::Receiver<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (seen, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut served = 0;
            for stream in listener.incoming() {
                let mut reader = BufReader::new(stream.unwrap());
                // Requests on one keep-alive connection, until it closes.
                while served < requests {
                    let (mut length, mut gzipped) = (0usize, false);
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                        gzipped |= lower.starts_with("content-encoding: gzip");
                        if line == "\r\n" {
                            break;
                        }
                    }
                    if line.is_empty() {
                        break;
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    seen.send(gzipped).unwrap();
                    served += 1;
                    let (status, ctype, text) = if gzipped {
                        (
                            "415 Unsupported Media Type",
                            "application/problem+json",
                            r#"{"type":"urn:driftless:problem:unsupported-media-type","title":"Unsupported media type","status":415}"#,
                        )
                    } else {
                        ("200 OK", "application/json", r#"{"results":[]}"#)
                    };
                    let extra = if gzipped { "accept-encoding: \r\n" } else { "" };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\n{extra}content-length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    reader.get_mut().write_all(answer.as_bytes()).unwrap();
                }
                if served >= requests {
                    break;
                }
            }
        });
        (base, rx)
    }

    #[test]
    fn loopback_servers_are_told_apart() {
        for s in [
            "http://127.0.0.1:7878",
            "http://localhost/",
            "https://[::1]:8443/x",
            "http://127.5.0.1",
        ] {
            assert!(super::on_loopback(s), "{s}");
        }
        for s in [
            "https://sync.example.com",
            "http://10.0.0.1:7878",
            "http://[2001:db8::1]:80",
            "http://localhost.example.com",
        ] {
            assert!(!super::on_loopback(s), "{s}");
        }
    }

    /// A Server that answers GETs from `answers` in turn (status line, extra headers, body),
    /// each on the connection it came on; reports each request's path.
    fn scripted_server(
        answers: Vec<(&'static str, &'static str, String)>,
    ) -> (String, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (seen, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let answers = std::sync::Arc::new(std::sync::Mutex::new(answers.into_iter()));
            for stream in listener.incoming() {
                let (seen, answers) = (seen.clone(), std::sync::Arc::clone(&answers));
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.unwrap());
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                        loop {
                            let mut h = String::new();
                            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                                break;
                            }
                        }
                        let next = answers.lock().unwrap().next();
                        let Some((status, extra, text)) = next else {
                            return;
                        };
                        let _ = seen.send(path);
                        let answer = format!(
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{text}",
                            text.len()
                        );
                        reader.get_mut().write_all(answer.as_bytes()).unwrap();
                    }
                });
            }
        });
        (base, rx)
    }

    /// A pull page fetched ahead while the page before it is stored is answered as any
    /// request is: a 503 with `Retry-After` there is waited on and counted as a retry, then
    /// asked again, and the sync gets every page.
    #[test]
    fn a_prefetched_page_refused_for_now_is_retried_as_any_request() {
        let page = |ids: &[&str], cursor: &str, through: u64, more: bool| {
            let records: Vec<String> = ids
                .iter()
                .map(|id| format!(r#"{{"collection":"notes","id":"{id}","change_seq":{through},"deleted":false,"value":{{"t":1}}}}"#))
                .collect();
            format!(
                r#"{{"records":[{}],"cursor":"{cursor}","through":{through},"has_more":{more}}}"#,
                records.join(",")
            )
        };
        let (base, seen) = scripted_server(vec![
            ("200 OK", "", page(&["a"], "c1", 1, true)),
            (
                "503 Service Unavailable",
                "retry-after: 0\r\n",
                r#"{"type":"urn:driftless:problem:unavailable","status":503}"#.into(),
            ),
            ("200 OK", "", page(&["b"], "c2", 2, false)),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let mut client = test_client(dir.path(), base);
        let mut report = crate::SyncReport::default();
        client.pull_all(&mut report, None).unwrap();
        assert_eq!(report.pulled, 2);
        let paths: Vec<String> = (0..3)
            .map_while(|_| seen.recv_timeout(std::time::Duration::from_secs(60)).ok())
            .collect();
        assert_eq!(
            paths,
            [
                "/v1/spaces/demo/pull?",
                "/v1/spaces/demo/pull?cursor=c1",
                "/v1/spaces/demo/pull?cursor=c1"
            ]
        );
        let retries = client
            .store
            .counters()
            .unwrap()
            .into_iter()
            .find(|(n, _)| n == "retries")
            .map(|(_, v)| v);
        assert_eq!(retries, Some(1), "the 503 was not taken as an attempt");
    }

    /// `[HTTP-19]`: a gzip body answered 415 is sent again uncoded, and later bodies go
    /// uncoded from the start.
    #[test]
    fn a_refused_gzip_body_is_sent_again_uncoded_and_later_ones_uncoded() {
        let (base, seen) = refusing_server(3);
        let dir = tempfile::tempdir().unwrap();
        let mut client = test_client(dir.path(), base);
        let big = json!({"client_id": "c", "mutations": [], "padding": "x".repeat(4096)});
        let first = client
            .call("POST", "/v1/spaces/demo/push", Some(&big))
            .unwrap();
        assert_eq!(first.status, 200);
        let second = client
            .call("POST", "/v1/spaces/demo/push", Some(&big))
            .unwrap();
        assert_eq!(second.status, 200);
        // A deadline, not a timing claim: a Client that sent fewer requests must not hang here.
        let coded: Vec<bool> = (0..3)
            .map_while(|_| seen.recv_timeout(std::time::Duration::from_secs(60)).ok())
            .collect();
        assert_eq!(coded, [true, false, false]);
    }
}
