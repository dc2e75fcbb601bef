//! The fault proxy of the network mode: between each Client and the Server under test, it
//! drops, duplicates and delays requests and answers, and notes the Mutations the Server
//! answered as applied.

use super::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use driftless_protocol::messages::Mutation;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// What the proxy does to requests now, in percent of requests.
#[derive(Debug, Clone, Default)]
pub(super) struct Weather {
    pub(super) drop_request_pct: u64,
    pub(super) drop_response_pct: u64,
    pub(super) duplicate_pct: u64,
    pub(super) delay_pct: u64,
    /// Largest single delay.
    pub(super) delay_ms_max: u64,
}

impl Weather {
    pub(super) fn random(rng: &mut Rng) -> Self {
        Self {
            drop_request_pct: rng.below(15),
            drop_response_pct: rng.below(15),
            duplicate_pct: rng.below(15),
            delay_pct: rng.below(30),
            delay_ms_max: rng.below(200),
        }
    }
}

/// What the proxies did, over a whole run.
#[derive(Debug, Clone, Default)]
pub(super) struct Counts {
    pub(super) requests: u64,
    pub(super) dropped_requests: u64,
    pub(super) dropped_responses: u64,
    pub(super) duplicated: u64,
    pub(super) delayed: u64,
    pub(super) refused_offline: u64,
}

/// The state every proxy of a scenario shares.
pub(super) struct NetState {
    pub(super) weather: Weather,
    /// Per Client: cut off from the network.
    pub(super) offline: Vec<bool>,
    /// Per Client: the generator of its proxy's decisions.
    pub(super) rngs: Vec<Rng>,
    pub(super) delay_budget_ms: u64,
    pub(super) counts: Counts,
    pub(super) print_trace: bool,
    /// Every Mutation a push answer said the Server applied, whether or not the answer reached
    /// the Client.
    pub(super) applied: Vec<Mutation>,
}

pub(super) type Net = Arc<Mutex<NetState>>;

/// The Server under test: `http://` authority and path prefix.
#[derive(Debug, Clone)]
pub(super) struct Upstream {
    /// `host:port`.
    pub(super) authority: String,
    /// Empty, or a path starting with `/` without a trailing `/`.
    pub(super) prefix: String,
}

impl Upstream {
    /// Parses `--server`: an `http://host[:port][/prefix]` URL.
    pub(super) fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("https://") {
            return Err(format!(
                "--server {url}: network simulation puts a plain-HTTP fault proxy in front of the server, so it needs an http:// URL"
            ));
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("--server {url}: not an http:// URL"))?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let bad = |why: &str| Err(format!("--server {url}: {why}"));
        if authority.is_empty() || authority.contains('@') {
            return bad("no host");
        }
        if url.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
            return bad("a server URL has no spaces, query or fragment");
        }
        // `[::1]` has colons but no port; `[::1]:7878` and `host:7878` have one.
        let authority = match authority.rsplit_once(':') {
            Some((host, port)) if !authority.ends_with(']') => {
                if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                    return bad("the port is not a number in 1..=65535");
                }
                authority.to_owned()
            }
            _ => format!("{authority}:80"),
        };
        Ok(Self {
            authority,
            prefix: prefix.to_owned(),
        })
    }

    pub(super) fn base(&self) -> String {
        format!("http://{}{}", self.authority, self.prefix)
    }
}

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1), plus `host`
/// and `expect`, which the proxy sets or has already answered.
pub(super) fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "expect"
    )
}

/// Sends one request to the Server on a fresh connection and reads its whole answer.
/// A whole answer of the Server: its head and body.
pub(super) type Answer = (hyper::http::response::Parts, Bytes);

pub(super) async fn forward(
    up: &Upstream,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> Result<Answer, BoxError> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(&up.authority).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(conn);
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut builder = Request::builder()
            .method(parts.method.clone())
            .uri(format!("{}{path}", up.prefix))
            .header("host", up.authority.as_str());
        for (name, value) in &parts.headers {
            if !hop_by_hop(name.as_str()) {
                builder = builder.header(name, value);
            }
        }
        let resp = sender.send_request(builder.body(Full::new(body))?).await?;
        let (mut head, incoming) = resp.into_parts();
        let bytes = incoming.collect().await?.to_bytes();
        drop(sender);
        driver.abort();
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "te",
            "trailer",
            "upgrade",
        ] {
            head.headers.remove(name);
        }
        Ok::<_, BoxError>((head, bytes))
    };
    tokio::time::timeout(Duration::from_millis(UPSTREAM_TIMEOUT_MS), exchange)
        .await
        .map_err(|_| "the server did not answer in time")?
}

/// Most bytes a gzip body the proxy reads may decode to.
pub(super) const GUNZIP_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// A body as sent: decoded when its `content-encoding` is gzip (`[HTTP-16]`).
pub(super) fn plain(headers: &hyper::HeaderMap, body: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let gzip = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Some(body.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(GUNZIP_BYTES_MAX)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// Keeps the Mutations of a push the Server answered as applied.
pub(super) fn note_applied(
    net: &Net,
    parts: &hyper::http::request::Parts,
    body: &[u8],
    (head, answer): &Answer,
) {
    if head.status != 200 || parts.method != "POST" || !parts.uri.path().ends_with("/push") {
        return;
    }
    let (Some(request), Some(answer)) = (plain(&parts.headers, body), plain(&head.headers, answer))
    else {
        return;
    };
    let request: Value = serde_json::from_slice(&request).unwrap_or_default();
    let answer: Value = serde_json::from_slice(&answer).unwrap_or_default();
    let (Some(ms), Some(rs)) = (
        request["mutations"].as_array(),
        answer["results"].as_array(),
    ) else {
        return;
    };
    let applied: Vec<Mutation> = ms
        .iter()
        .zip(rs)
        .filter(|(_, r)| r["status"] == "applied")
        .filter_map(|(m, _)| serde_json::from_value(m.clone()).ok())
        .collect();
    if let Ok(mut n) = net.lock() {
        n.applied.extend(applied);
    }
}

/// One request through Client `client`'s proxy. An `Err` makes hyper close the connection
/// without an answer: what the Client sees of a lost request or response.
pub(super) async fn relay(
    req: Request<Incoming>,
    net: Net,
    up: Arc<Upstream>,
    client: usize,
) -> Result<Response<Full<Bytes>>, BoxError> {
    let (parts, incoming) = req.into_parts();
    let label = format!("net c{client} {} {}", parts.method, parts.uri.path());
    // The decisions are drawn in arrival order; one Client sends one request at a time, so the
    // order of its proxy's decisions is fixed by the seed.
    let (offline, drop_req, drop_resp, dup, delay_ms, print) = {
        let mut n = net.lock().map_err(|_| "proxy state poisoned")?;
        let w = n.weather.clone();
        n.counts.requests += 1;
        let offline = n.offline[client];
        let rng = &mut n.rngs[client];
        let drop_req = rng.chance(w.drop_request_pct);
        let drop_resp = rng.chance(w.drop_response_pct);
        let dup = rng.chance(w.duplicate_pct);
        let delay = if rng.chance(w.delay_pct) {
            rng.below(w.delay_ms_max + 1)
        } else {
            0
        };
        let delay = delay.min(n.delay_budget_ms);
        n.delay_budget_ms -= delay;
        if offline {
            n.counts.refused_offline += 1;
        } else {
            n.counts.dropped_requests += u64::from(drop_req);
            n.counts.dropped_responses += u64::from(!drop_req && drop_resp);
            n.counts.duplicated += u64::from(!drop_req && dup);
            n.counts.delayed += u64::from(delay > 0);
        }
        (offline, drop_req, drop_resp, dup, delay, n.print_trace)
    };
    let say = |what: &str| {
        if print {
            eprintln!("{label} {what}");
        }
    };
    if offline {
        say("refused: offline");
        return Err("offline".into());
    }
    let body = incoming.collect().await?.to_bytes();
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    if drop_req {
        say("request lost");
        return Err("request lost".into());
    }
    let mut answer = forward(&up, &parts, body.clone()).await?;
    note_applied(&net, &parts, &body, &answer);
    if dup {
        say(&format!("-> {} (delivered twice)", answer.0.status));
        answer = forward(&up, &parts, body.clone()).await?;
        note_applied(&net, &parts, &body, &answer);
    }
    let resp = Response::from_parts(answer.0, Full::new(answer.1));
    if drop_resp {
        say(&format!("-> {} response lost", resp.status()));
        return Err("response lost".into());
    }
    say(&format!("-> {}", resp.status()));
    Ok(resp)
}

/// One Client's proxy: a loopback listener whose connections are served by [`relay`]. It stops
/// accepting when dropped.
pub(super) struct Proxy {
    pub(super) base: String,
    pub(super) accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub(super) fn start(
        rt: &tokio::runtime::Runtime,
        net: Net,
        up: Arc<Upstream>,
        client: usize,
    ) -> Result<Self, String> {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| format!("cannot start the fault proxy: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot start the fault proxy: {e}"))?;
        let accept = rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (net, up) = (net.clone(), up.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        relay(req, net.clone(), up.clone(), client)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            base: format!("http://{addr}"),
            accept,
        })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
