//! The HTTP edge: routing, headers, limits, authentication and problem+json. With `conn` (the
//! connection layer below it), the only code that knows hyper. It turns requests into calls of
//! [`Service`] and answers into responses.
//!
//! Over 600 lines as one cohesive thing: the request pipeline, from a hyper request to a
//! response, in the order the checks apply (route, method, version, body limits, address and
//! User rate limits, authentication, authorization, body read, dispatch), plus the answers the
//! connection layer writes for it (refusals, metrics).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use driftless_protocol::messages::{Scope, TokenClaims, PROTOCOL_VERSIONS};
use driftless_protocol::problem::{Problem, ProblemType};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ACCEPT_ENCODING, ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE,
    RETRY_AFTER, VARY, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tracing::Instrument;

use crate::auth::{scope_on, TokenKey};
use crate::conn::{ConnInfo, Registry};
use crate::encoding::{accepts_gzip, gunzip_limited, gzip, GunzipError, GZIP_RESPONSE_BYTES_MIN};
use crate::faults::fault;
pub use crate::rate_limit::RateLimiter;
use crate::service::{Caller, Service};
use crate::storage::Storage;

mod request;

use request::{query_params, too_deep, Route};

/// The header that carries the Server's HLC (`[HTTP-9]`).
pub const CLOCK_HEADER: &str = "driftless-clock";
/// The version negotiation header (`[VER-2]`).
pub const VERSION_HEADER: &str = "driftless-version";

/// Everything a request needs.
pub struct App<S: Storage> {
    /// The protocol handlers.
    pub service: Arc<Service<S>>,
    /// The Token key.
    pub key: TokenKey,
    /// The per-User rate limiter.
    pub limiter: RateLimiter,
    /// Failed authentications per source address (`[SEC-6]`).
    pub auth_failures: RateLimiter,
    /// Open connections and their bounds (`[LIM-8]` to `[LIM-11]`).
    pub registry: Arc<Registry>,
    /// Held long-polls (`[LIM-12]`).
    pub long_polls: tokio::sync::Semaphore,
    /// How many long-polls have taken a place so far: a signal tests wait on, not a metric.
    pub long_polls_taken: tokio::sync::watch::Sender<u64>,
}

/// A response before headers common to all are added.
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    content_type: &'static str,
    headers: Vec<(hyper::header::HeaderName, HeaderValue)>,
}

impl Reply {
    fn html(page: &'static str) -> Reply {
        Reply {
            status: StatusCode::OK,
            body: page.as_bytes().to_vec(),
            content_type: "text/html; charset=utf-8",
            // The page loads nothing from elsewhere and may only call this server.
            headers: vec![(
                hyper::header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                     connect-src 'self'; img-src data:; form-action 'none'; frame-ancestors 'none'",
                ),
            )],
        }
    }

    fn json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
        Reply {
            status,
            body: serde_json::to_vec(value).expect("messages serialize"),
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    fn problem(p: Problem) -> Reply {
        let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut headers = Vec::new();
        match p.known_type() {
            Some(ProblemType::Unauthorized) => {
                headers.push((WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")))
            }
            Some(ProblemType::Unavailable) if !headers.iter().any(|(n, _)| n == RETRY_AFTER) => {
                headers.push((RETRY_AFTER, HeaderValue::from_static("1")))
            }
            _ => {}
        }
        Reply {
            status,
            body: serde_json::to_vec(&p).expect("problems serialize"),
            content_type: "application/problem+json",
            headers,
        }
    }
}

fn unix_s(ms: u64) -> u64 {
    ms / 1000
}

impl<S: Storage> App<S> {
    /// Answers one request. Never fails: every error becomes a Problem response.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let start = Instant::now();
        let path = req.uri().path().to_owned();
        let route = Route::parse(&path);
        let route_name = route.as_ref().map(Route::name).unwrap_or("unknown");
        let traceparent = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        // Spans carry the route, method and trace context; never bodies or Tokens (`[SEC-1]`).
        let span = tracing::info_span!("request", route = route_name, method = %req.method(), traceparent = %traceparent);
        let is_v1 = path.starts_with("/v1/");
        let conn = req
            .extensions()
            .get::<ConnInfo>()
            .cloned()
            .unwrap_or_else(ConnInfo::detached);
        let has_body = req.headers().contains_key(hyper::header::TRANSFER_ENCODING)
            || req
                .headers()
                .get(CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0");
        let mut body_read = false;
        // The Space of an authorized request, for the dashboard's per-Space counts (set only
        // after authorization, so that unauthenticated traffic cannot fill its tables).
        let mut authorized_space: Option<String> = None;
        // [HTTP-16]: a Client that accepts gzip gets larger bodies compressed.
        let gzip_ok = req
            .headers()
            .get(ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(accepts_gzip);
        // The faults `ack-before-durable` and `dedup-not-atomic` make the writes they put off
        // before this request once this request's answer is computed, so it cannot see them.
        #[cfg(feature = "fault-injection")]
        let delayed = self.service.take_delayed_writes();
        let reply = self
            .clone()
            .dispatch(route, req, &conn, &mut body_read, &mut authorized_space)
            .instrument(span.clone())
            .await;
        #[cfg(feature = "fault-injection")]
        self.service.land_delayed_writes(delayed).await;
        if has_body && !body_read {
            // Answered before the body was read: close lingering, not with a reset (`[LIM-10]`).
            conn.state.set_linger();
        }
        let status = reply.status;
        let mut reply = reply;
        if gzip_ok && reply.body.len() >= GZIP_RESPONSE_BYTES_MIN {
            reply.body = gzip(&reply.body);
            reply
                .headers
                .push((CONTENT_ENCODING, HeaderValue::from_static("gzip")));
        }
        let mut response = Response::builder().status(status);
        let headers = response.headers_mut().expect("builder is fresh");
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
        if let Ok(v) = HeaderValue::from_str(&self.service.clock().issue().to_string()) {
            headers.insert(CLOCK_HEADER, v);
        }
        if is_v1 {
            headers.insert(VERSION_HEADER, HeaderValue::from_static("1.0"));
        }
        // The body's coding depends on Accept-Encoding, so caches must key on it.
        headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
        for (name, value) in reply.headers {
            headers.insert(name, value);
        }
        let elapsed = start.elapsed().as_millis() as u64;
        self.service
            .metrics()
            .observe_request(route_name, status.as_u16(), elapsed);
        if let Some(space) = &authorized_space {
            let kind = match route_name {
                "push" => Some(crate::stats::Kind::Push),
                "pull" => Some(crate::stats::Kind::Pull),
                _ => None,
            };
            self.service.stats().note_request(
                space,
                kind,
                status.as_u16(),
                elapsed,
                self.service.clock().now_ms(),
            );
        }
        span.in_scope(|| {
            tracing::info!(status = status.as_u16(), elapsed_ms = elapsed, "answered")
        });
        Ok(response
            .body(Full::new(Bytes::from(reply.body)))
            .expect("a valid response"))
    }

    async fn dispatch(
        self: Arc<Self>,
        route: Option<Route>,
        req: Request<Incoming>,
        conn: &ConnInfo,
        body_read: &mut bool,
        authorized_space: &mut Option<String>,
    ) -> Reply {
        match self
            .answer(route, req, conn, body_read, authorized_space)
            .await
        {
            Ok(reply) => reply,
            Err(problem) => Reply::problem(problem),
        }
    }

    async fn answer(
        self: Arc<Self>,
        route: Option<Route>,
        req: Request<Incoming>,
        conn: &ConnInfo,
        body_read: &mut bool,
        authorized_space: &mut Option<String>,
    ) -> Result<Reply, Problem> {
        let Some(route) = route else {
            return Err(Problem::new(
                ProblemType::NotFound,
                format!("{} is not an endpoint of this server", req.uri().path()),
            ));
        };
        if req.method() != route.method() {
            let mut reply = Reply::problem(Problem::new(
                ProblemType::MethodNotAllowed,
                format!(
                    "{} is not allowed on {}; use {}",
                    req.method(),
                    req.uri().path(),
                    route.method()
                ),
            ));
            reply.headers.push((
                ALLOW,
                HeaderValue::from_str(route.method().as_str()).expect("method names are ASCII"),
            ));
            return Ok(reply);
        }
        if route == Route::Discovery {
            return Ok(Reply::json(StatusCode::OK, &self.service.discovery()));
        }
        if route == Route::Dashboard {
            return Ok(Reply::html(crate::dashboard::PAGE));
        }
        self.check_version(&req)?;
        let limits = &self.service.config().limits;
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limits.body_bytes_max) {
            return Err(too_large(limits.body_bytes_max));
        }
        // An address that failed authentication too often is refused before its Token is
        // looked at, so that guessing Tokens is slow (`[SEC-6]`).
        let peer = conn.peer.to_string();
        if let Err(retry_after) = self.auth_failures.check(&peer) {
            return Ok(rate_limited(
                retry_after,
                "too many failed authentications from this address".into(),
            ));
        }
        if route == Route::DashboardStats {
            let claims = match self.claims(&req) {
                Ok(claims) => claims,
                Err(p) => {
                    let _ = self.auth_failures.take(&peer);
                    return Err(p);
                }
            };
            if let Err(retry_after) = self.service_limiter_take(&claims.sub) {
                return Ok(rate_limited(
                    retry_after,
                    format!(
                        "more than {} requests per second",
                        self.service.config().rate_limit_per_s
                    ),
                ));
            }
            let mut reply = Reply::json(
                StatusCode::OK,
                &crate::dashboard::stats(&self.service, &claims).await?,
            );
            reply.headers.push((
                hyper::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            ));
            return Ok(reply);
        }
        // The Client ID a Client may send on reads, for the dashboard only; ignored unless it
        // is a valid Client ID.
        let client_header = req
            .headers()
            .get("driftless-client-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<driftless_protocol::ids::ClientId>().ok());
        let caller = match self.authorize(&req, &route) {
            Ok(caller) => caller,
            Err(p) => {
                if p.known_type() == Some(ProblemType::Unauthorized) {
                    let _ = self.auth_failures.take(&peer);
                }
                return Err(p);
            }
        };
        *authorized_space = route.access().map(|(space, _)| space.to_owned());
        if let Err(retry_after) = self.service_limiter_take(&caller.user) {
            return Ok(rate_limited(
                retry_after,
                format!(
                    "more than {} requests per second; retry after {retry_after} s",
                    self.service.config().rate_limit_per_s
                ),
            ));
        }
        let query = query_params(req.uri().query());
        let q = |name: &str| query.get(name).map(String::as_str);
        let body = if route.has_body() {
            let is_json = req
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .eq_ignore_ascii_case("application/json")
                })
                .unwrap_or(false);
            if !is_json {
                return Err(Problem::new(
                    ProblemType::UnsupportedMediaType,
                    "request bodies must be application/json",
                ));
            }
            // [HTTP-17]: gzip or no coding; anything else is refused, naming what is accepted.
            let gzipped = match req
                .headers()
                .get(CONTENT_ENCODING)
                .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
                .as_deref()
            {
                None | Some("identity") => false,
                Some("gzip" | "x-gzip") => true,
                Some(other) => {
                    let mut reply = Reply::problem(Problem::new(
                        ProblemType::UnsupportedMediaType,
                        format!("the content coding {other:?} is not accepted; use gzip or none"),
                    ));
                    reply
                        .headers
                        .push((ACCEPT_ENCODING, HeaderValue::from_static("gzip")));
                    return Ok(reply);
                }
            };
            // A body trickled too slowly is cut off (`[LIM-9]`).
            let timeout = self.registry.config().body_read_timeout;
            let collected = tokio::time::timeout(
                timeout,
                Limited::new(req.into_body(), limits.body_bytes_max as usize).collect(),
            )
            .await
            .map_err(|_| {
                Problem::new(
                    ProblemType::RequestTimeout,
                    format!("the body did not arrive within {} ms", timeout.as_millis()),
                )
            })?;
            let mut bytes = collected
                .map_err(|_| too_large(limits.body_bytes_max))?
                .to_bytes();
            *body_read = true;
            if gzipped {
                // [HTTP-18]: the limit applies to the decoded body; decoding stops at it.
                bytes = gunzip_limited(&bytes, limits.body_bytes_max as usize)
                    .map_err(|e| match e {
                        GunzipError::TooLarge => too_large(limits.body_bytes_max),
                        GunzipError::Corrupt => Problem::new(
                            ProblemType::InvalidJson,
                            "the body is marked gzip but does not decode as gzip",
                        ),
                    })?
                    .into();
            }
            if too_deep(&bytes, limits.json_depth_max) {
                return Err(Problem::new(
                    ProblemType::InvalidJson,
                    format!(
                        "the body nests deeper than {} levels",
                        limits.json_depth_max
                    ),
                ));
            }
            Some(bytes)
        } else {
            None
        };
        // Push reads its body itself (it keeps each Mutation's text); the others take a tree.
        let bytes = body.unwrap_or_default();
        let body = || crate::service::parse_json(&bytes);
        let service = &self.service;
        Ok(match &route {
            Route::Push(space) => {
                Reply::json(StatusCode::OK, &service.push(space, &caller, &bytes).await?)
            }
            Route::Manifest(space) => {
                Reply::json(StatusCode::OK, &service.manifest(space, body()?).await?)
            }
            Route::Pull(space) => {
                // A held long-poll takes one of a bounded number of places (`[LIM-12]`).
                let _place = if q("wait_ms").is_some_and(|w| !w.trim_start_matches('0').is_empty())
                {
                    match self.long_polls.try_acquire() {
                        Ok(place) => {
                            self.long_polls_taken.send_modify(|n| *n += 1);
                            Some(place)
                        }
                        Err(_) => {
                            return Err(Problem::new(
                                ProblemType::Unavailable,
                                "too many long-poll pulls are held; retry after 1 s",
                            ))
                        }
                    }
                } else {
                    None
                };
                let pulled = service
                    .pull_page(space, q("cursor"), q("limit"), q("wait_ms"))
                    .await;
                // The dashboard's hook: who pulled through where, and expired Cursors.
                match &pulled {
                    Ok(page) => service.stats().note_pull(
                        space,
                        &caller.user,
                        client_header.as_ref().map(|c| c.as_str()),
                        q("cursor").is_some(),
                        page.through,
                        service.clock().now_ms(),
                    ),
                    Err(p) if p.known_type() == Some(ProblemType::CursorExpired) => {
                        service.stats().note_cursor_expired(space)
                    }
                    Err(_) => {}
                }
                Reply {
                    status: StatusCode::OK,
                    body: pulled?.body,
                    content_type: "application/json",
                    headers: Vec::new(),
                }
            }
            Route::Record(space, c, id) => {
                Reply::json(StatusCode::OK, &service.record(space, c, id).await?)
            }
            Route::History(space, c, id) => Reply::json(
                StatusCode::OK,
                &service
                    .history(space, c, id, q("after"), q("limit"))
                    .await?,
            ),
            Route::Checksums(space) => {
                Reply::json(StatusCode::OK, &service.checksums(space).await?)
            }
            Route::Bucket(space, b) => Reply::json(
                StatusCode::OK,
                &service.bucket(space, b, q("after"), q("limit")).await?,
            ),
            Route::Schemas(space, c) => {
                Reply::json(StatusCode::OK, &service.list_schemas(space, c).await?)
            }
            Route::Schema(space, c, v) => {
                let (created, doc) = service.put_schema(space, c, v, body()?).await?;
                Reply::json(
                    if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    },
                    &doc,
                )
            }
            Route::Compact(space) => Reply::json(StatusCode::OK, &service.compact(space).await?),
            Route::Discovery | Route::Dashboard | Route::DashboardStats => {
                unreachable!("answered above")
            }
        })
    }

    fn service_limiter_take(&self, user: &str) -> Result<(), u64> {
        self.limiter.take(user)
    }

    fn check_version(&self, req: &Request<Incoming>) -> Result<(), Problem> {
        let Some(v) = req.headers().get(VERSION_HEADER) else {
            return Ok(()); // [VER-6]
        };
        let text = v.to_str().unwrap_or("");
        let major = text
            .split_once('.')
            .filter(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
            })
            .map(|(a, _)| a);
        if major != Some("1") {
            let mut p = Problem::new(
                ProblemType::UnsupportedVersion,
                format!("protocol version {text} is not supported"),
            );
            p.supported_versions = Some(PROTOCOL_VERSIONS.iter().map(|s| s.to_string()).collect());
            if fault!(self.service.faults(), NoSupportedVersions) {
                p.supported_versions = Some(Vec::new());
            }
            return Err(p);
        }
        Ok(())
    }

    /// Authentication (`[AUTH-2]`) then authorization (`[AUTH-4]`), before anything about the
    /// Space or the body is looked at (`[AUTH-6]`).
    fn authorize(&self, req: &Request<Incoming>, route: &Route) -> Result<Caller, Problem> {
        let claims = self.claims(req)?;
        let (space, needed) = route.access().expect("only Space routes are authorized");
        let ignore = fault!(self.service.faults(), AuthIgnoredOnChecksums)
            && matches!(route, Route::Checksums(_));
        let granted = scope_on(&claims, space);
        if !ignore && granted.is_none_or(|g| g < needed) {
            let scope = match needed {
                Scope::Read => "read",
                Scope::Write => "write",
                Scope::Admin => "admin",
            };
            // The same answer whether or not the Space exists (`[AUTH-5]`).
            return Err(Problem::new(
                ProblemType::Forbidden,
                format!("this token does not grant {scope} on the requested space"),
            ));
        }
        Ok(Caller { user: claims.sub })
    }

    /// The claims of the request's bearer Token, verified (`[AUTH-2]`).
    fn claims(&self, req: &Request<Incoming>) -> Result<TokenClaims, Problem> {
        let unauthorized = |detail: &str| Problem::new(ProblemType::Unauthorized, detail);
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = match header {
            None => return Err(unauthorized("a bearer token is required")),
            Some(h) => match h
                .strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
            {
                Some(t) => t.trim(),
                None => return Err(unauthorized("the Authorization header must be Bearer")),
            },
        };
        let now_s = unix_s(self.service.clock().now_ms());
        self.key
            .verify(token, now_s)
            .map_err(|e| unauthorized(&e.to_string()))
    }
}

fn rate_limited(retry_after: u64, detail: String) -> Reply {
    let mut reply = Reply::problem(Problem::new(ProblemType::RateLimited, detail));
    reply
        .headers
        .push((RETRY_AFTER, HeaderValue::from(retry_after)));
    reply
}

impl<S: Storage> App<S> {
    /// A complete HTTP/1.1 response, problem+json, for a request the connection layer refuses
    /// before any handler sees it: hyper's own 400, 414 and 431 (`[LIM-13]`) and the 503 of a
    /// full server (`[LIM-11]`). It closes the connection.
    pub fn refusal(&self, status: u16) -> Vec<u8> {
        let (kind, detail) = match status {
            414 => (
                ProblemType::UriTooLong,
                "the request target is too long".to_owned(),
            ),
            431 => (
                ProblemType::HeadersTooLarge,
                format!(
                    "the request head exceeds {} bytes or has too many headers",
                    self.registry.config().header_bytes_max
                ),
            ),
            503 => (
                ProblemType::Unavailable,
                "every connection is busy; retry after 1 s".to_owned(),
            ),
            _ => (
                ProblemType::InvalidRequest,
                "the request line or a header could not be parsed as HTTP/1.1".to_owned(),
            ),
        };
        let problem = Problem::new(kind, detail);
        let body = serde_json::to_vec(&problem).expect("problems serialize");
        let reason = StatusCode::from_u16(problem.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n{CLOCK_HEADER}: {}\r\n",
            problem.status,
            body.len(),
            self.service.clock().issue()
        );
        if problem.status == 503 {
            head.push_str("retry-after: 1\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&body);
        bytes
    }

    /// Answers a request on the metrics listener (`[SEC-5]`): `GET /metrics` in the Prometheus
    /// text format, and `not-found` for anything else.
    pub async fn handle_metrics(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let reply = if req.uri().path() == "/metrics" && req.method() == Method::GET {
            let mut text = self.service.metrics().render();
            self.render_edge_metrics(&mut text);
            Reply {
                status: StatusCode::OK,
                body: text.into_bytes(),
                content_type: "text/plain; version=0.0.4",
                headers: Vec::new(),
            }
        } else {
            Reply::problem(Problem::new(
                ProblemType::NotFound,
                "the metrics listener serves only GET /metrics",
            ))
        };
        let mut response = Response::builder().status(reply.status);
        let headers = response.headers_mut().expect("builder is fresh");
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
        Ok(response
            .body(Full::new(Bytes::from(reply.body)))
            .expect("a valid response"))
    }

    fn render_edge_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.registry.counters;
        let gauges = [
            (
                "driftless_connections_open",
                "Open connections.",
                self.registry.open_connections() as u64,
            ),
            (
                "driftless_long_polls_held",
                "Long-poll pulls held now.",
                (self.registry.config().long_polls_max - self.long_polls.available_permits())
                    as u64,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP driftless_connections_closed_total Connections the server closed or refused, by reason.\n# TYPE driftless_connections_closed_total counter"
        );
        for (reason, value) in [
            ("header_timeout", &c.header_timeouts),
            ("idle_timeout", &c.idle_timeouts),
            ("evicted", &c.evicted),
            ("refused", &c.refused),
        ] {
            let _ = writeln!(
                out,
                "driftless_connections_closed_total{{reason=\"{reason}\"}} {}",
                value.load(Relaxed)
            );
        }
    }
}

fn too_large(max: u64) -> Problem {
    Problem::new(
        ProblemType::PayloadTooLarge,
        format!("the body exceeds {max} bytes"),
    )
}
