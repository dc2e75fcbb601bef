//! Injection points for deterministic simulation (`driftless simulate`): the transport a
//! [`Client`] sends its requests through ([`Transport`]), and the [`Environment`] it reads the
//! wall clock, its randomness (Client IDs, Op IDs, the backoff jitter of `[RETRY-1]`) and its
//! waits from. Without injection the Client uses `ureq`, the operating system's clock and random
//! source, and real sleeps, exactly as before; the real binaries never inject anything.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::Value;

use crate::transport::Reply;
use crate::Client;

/// One HTTP request as the Client would put it on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// `GET`, `POST` or `PUT`.
    pub method: String,
    /// Path and query, e.g. `/v1/spaces/s/pull?cursor=...`.
    pub path: String,
    /// Header names (lowercase) and values: `authorization`, `driftless-version`, and
    /// `content-type` when there is a body.
    pub headers: Vec<(String, String)>,
    /// The body bytes (JSON), if any.
    pub body: Option<Vec<u8>>,
}

/// One HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

/// A request that got no response: `transient` failures are retried on the schedule of
/// chapter 08 (`[RETRY-3]`), others end the sync with [`crate::ClientError::Connection`].
#[derive(Debug, Clone, PartialEq)]
pub struct TransportFailure {
    /// What went wrong, for the Client's `Retrying` event.
    pub reason: String,
    /// Whether a retry may help.
    pub transient: bool,
}

/// Where a Client's requests go: request in, response (or a failure) out.
pub trait Transport {
    /// Sends `req` and waits for its response.
    fn round_trip(&mut self, req: HttpRequest) -> Result<HttpResponse, TransportFailure>;
}

/// The wall clock, the randomness and the waits of the Clients on this thread.
pub trait Environment {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Fills `buf` with random bytes.
    fn fill_random(&self, buf: &mut [u8]);
    /// Waits `ms` milliseconds (a simulation advances its clock instead).
    fn sleep_ms(&self, ms: u64);
}

thread_local! {
    static ENV: RefCell<Option<Rc<dyn Environment>>> = const { RefCell::new(None) };
}

/// Makes every Client on this thread use `env` (`None`: the operating system's again).
pub fn set_environment(env: Option<Rc<dyn Environment>>) {
    ENV.with(|e| *e.borrow_mut() = env);
}

fn injected() -> Option<Rc<dyn Environment>> {
    ENV.with(|e| e.borrow().clone())
}

/// The wall clock, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    match injected() {
        Some(env) => env.now_ms(),
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    }
}

/// Fills `buf` with random bytes; `false` if the operating system's source failed.
pub(crate) fn fill_random(buf: &mut [u8]) -> bool {
    match injected() {
        Some(env) => {
            env.fill_random(buf);
            true
        }
        None => getrandom::fill(buf).is_ok(),
    }
}

/// Waits `ms` milliseconds.
pub(crate) fn sleep_ms(ms: u64) {
    match injected() {
        Some(env) => env.sleep_ms(ms),
        None => std::thread::sleep(std::time::Duration::from_millis(ms)),
    }
}

impl Client {
    /// Sends every request of this Client through `transport` instead of HTTP.
    pub fn set_transport(&mut self, transport: Box<dyn Transport>) {
        self.transport = Some(transport);
    }

    /// Makes this Client's disk full (`true`: its store refuses every write that needs more
    /// space, so `write` and syncs fail with [`crate::ClientError::Store`]) or frees it again.
    /// Lasts until the Client is dropped; a reopened Client has space.
    pub fn set_disk_full(&mut self, full: bool) -> Result<(), crate::ClientError> {
        self.store.set_disk_full(full)
    }

    /// The latest version of `collection`'s Collection Schema this Client has learned (`None`:
    /// none yet), the version its writes carry (`[EVO-1]`): a simulated app writes the Field
    /// names of that version.
    pub fn known_schema_version(
        &self,
        collection: &str,
    ) -> Result<Option<u32>, crate::ClientError> {
        let key = format!("schema:{}:{collection}", self.cfg.space);
        Ok(self.store.meta(&key)?.and_then(|v| v.parse().ok()))
    }

    /// One attempt through the injected transport; the same headers, body and reading of the
    /// response as the HTTP path of `transport.rs`.
    pub(crate) fn request_injected(
        &mut self,
        method: &str,
        path: &str,
        body: Option<crate::transport::Json<'_>>,
    ) -> Option<Result<Reply, (String, bool)>> {
        let transport = self.transport.as_mut()?;
        let mut headers = vec![
            (
                "authorization".to_owned(),
                format!("Bearer {}", self.cfg.token),
            ),
            ("driftless-version".to_owned(), "1.0".to_owned()),
        ];
        let bytes = match body {
            Some(b) => match b.to_vec() {
                Ok(v) => {
                    headers.push(("content-type".to_owned(), "application/json".to_owned()));
                    Some(v)
                }
                Err(e) => return Some(Err((e, false))),
            },
            None => None,
        };
        let req = HttpRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            headers,
            body: bytes,
        };
        let resp = match transport.round_trip(req) {
            Ok(r) => r,
            Err(f) => return Some(Err((f.reason, f.transient))),
        };
        let header = |name: &str| {
            resp.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        // Counted with the next durable transaction, as the HTTP path does.
        self.store
            .count_later("bytes_received", resp.body.len() as i64);
        // Both forms: a caller that asked for the text (a pull page) reads `text`, the rest
        // read the tree.
        Some(Ok(Reply {
            status: resp.status,
            retry_after: header("retry-after").and_then(|v| v.trim().parse().ok()),
            clock: header("driftless-clock"),
            body: serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
            attempts: 1,
            text: String::from_utf8_lossy(&resp.body).into_owned(),
        }))
    }
}
