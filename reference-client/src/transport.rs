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
use crate::store::Store;
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

/// Bodies larger than this many bytes are sent with `Expect: 100-continue`.
const EXPECT_CONTINUE_BYTES_MIN: usize = 64 * 1024;

/// A response: status, headers we need, JSON body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<u64>,
    pub(crate) clock: Option<String>,
    pub(crate) body: Value,
    /// How many attempts [`Client::call`] made for this answer (1: the first one answered).
    /// A push answered on a later attempt was sent before, even if no answer came
    /// (chapter 08, "sent before").
    pub(crate) attempts: u32,
}

impl Client {
    /// One attempt. `Err((reason, transient))`: a failure to retry, or one no retry can help
    /// (a certificate or TLS setup the Client refuses, a malformed URL).
    fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, (String, bool)> {
        if let Some(injected) = self.request_injected(method, path, body) {
            return injected;
        }
        let url = format!("{}{path}", self.cfg.server.trim_end_matches('/'));
        let auth = format!("Bearer {}", self.cfg.token);
        let result = match (method, body) {
            ("GET", _) => self
                .agent
                .get(&url)
                .header("authorization", &auth)
                .header("driftless-version", "1.0")
                .call(),
            (_, Some(b)) => {
                let bytes = serde_json::to_vec(b).map_err(|e| (e.to_string(), false))?;
                let req = if method == "PUT" {
                    self.agent.put(&url)
                } else {
                    self.agent.post(&url)
                };
                let mut req = req
                    .header("authorization", &auth)
                    .header("driftless-version", "1.0")
                    .header("content-type", "application/json");
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
                .send_empty(),
        };
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
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| (e.to_string(), true))?;
        let bytes = text.len() as i64;
        let _ = self
            .store
            .tx(|tx| Store::count(tx, "bytes_received", bytes));
        Ok(Reply {
            status,
            retry_after,
            clock,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            attempts: 1,
        })
    }

    /// A request with the retry schedule: transient failures wait and retry (`[RETRY-1..3]`),
    /// the schedule is persisted (`[RETRY-5]`) and reset on success (`[RETRY-7]`).
    pub(crate) fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ClientError> {
        let resumed = self.resume_schedule()?;
        let policy = self.retry_policy();
        let mut retried_body: Option<Value> = None;
        for attempt in 0..=policy.attempts_per_sync {
            if crate::faults::fault!(NewOpIdOnRetry) && attempt > 0 {
                let mut b = body.cloned().unwrap_or(Value::Null);
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
            let outcome = self.request(method, path, retried_body.as_ref().or(body));
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
