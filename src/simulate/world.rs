//! The in-process world: simulated time, the simulated network, the Server behind it.

use super::*;
use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use driftless_client::inject::{
    Environment, HttpRequest, HttpResponse, Transport, TransportFailure,
};
use driftless_protocol::messages::{Mutation, Retention};
use driftless_server::conn::EdgeConfig;
use driftless_server::faults::Faults;
use driftless_server::http::App;
use driftless_server::service::WallClock;
use driftless_server::storage::sqlite::SqliteStorage;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Randomness and time

/// FNV-1a, 64 bits: the trace hash (stable across machines and versions). With `print`, each
/// line also goes to stderr: the scenario as a readable event list.
#[derive(Debug, Clone)]
pub(super) struct Trace(pub(super) u64, pub(super) bool);

impl Trace {
    pub(super) fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325, false)
    }
    pub(super) fn add(&mut self, line: &str) {
        if self.1 {
            eprintln!("{line}");
        }
        for b in line.bytes().chain(std::iter::once(b'\n')) {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The simulated clock every party reads: milliseconds since the Unix epoch.
#[derive(Debug, Clone)]
pub(super) struct SimClock(pub(super) Arc<AtomicU64>);

impl WallClock for SimClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl SimClock {
    pub(super) fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

/// The Clients' environment: the simulated clock plus the skew of the Client acting now, the
/// scenario's randomness, and waits that advance the clock.
pub(super) struct SimEnv {
    pub(super) clock: SimClock,
    pub(super) skew_ms: Cell<i64>,
    pub(super) rng: RefCell<Rng>,
}

impl Environment for SimEnv {
    fn now_ms(&self) -> u64 {
        self.clock
            .now_ms()
            .saturating_add_signed(self.skew_ms.get())
    }
    fn fill_random(&self, buf: &mut [u8]) {
        let mut rng = self.rng.borrow_mut();
        for chunk in buf.chunks_mut(8) {
            let v = rng.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn sleep_ms(&self, ms: u64) {
        self.clock.advance(ms);
    }
}

// ---------------------------------------------------------------------------------------------
// The network

/// What the network does to requests now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Weather {
    /// Percent of requests lost before the Server sees them.
    pub(super) drop_request_pct: u64,
    /// Percent of responses lost after the Server applied the request.
    pub(super) drop_response_pct: u64,
    /// Percent of requests delivered twice (the Client sees the second answer).
    pub(super) duplicate_pct: u64,
    /// Largest delay of a delivery, in simulated milliseconds.
    pub(super) delay_ms_max: u64,
}

impl Weather {
    pub(super) fn random(rng: &mut Rng) -> Self {
        Self {
            drop_request_pct: rng.below(30),
            drop_response_pct: rng.below(30),
            duplicate_pct: rng.below(20),
            delay_ms_max: rng.below(5_000),
        }
    }
}

/// The Server and the network between it and the Clients.
pub(super) struct World {
    pub(super) rt: tokio::runtime::Runtime,
    pub(super) app: RefCell<Arc<App<SqliteStorage>>>,
    pub(super) server_dir: PathBuf,
    pub(super) server_faults: Faults,
    pub(super) clock: SimClock,
    pub(super) rng: RefCell<Rng>,
    pub(super) weather: RefCell<Weather>,
    /// Clients cut off from the network, by index.
    pub(super) offline: RefCell<Vec<bool>>,
    pub(super) trace: RefCell<Trace>,
    /// Requests sent so far.
    pub(super) requests: Cell<u64>,
    /// Every Mutation a push answer said the Server applied (whether or not the answer arrived).
    pub(super) applied: RefCell<Vec<Mutation>>,
    /// How many Mutations were applied when `docs` version 2 was registered, if it was.
    pub(super) v2_at: Cell<Option<usize>>,
    /// Clients whose next request the network holds back, by index.
    pub(super) hold: RefCell<Vec<bool>>,
    /// Requests held back, oldest first, delivered at the next `release`.
    pub(super) held: RefCell<Vec<HttpRequest>>,
}

/// Requests one scenario may send (a default scenario sends a few hundred).
pub(super) const REQUESTS_PER_SCENARIO_MAX: u64 = 20_000;

pub(super) fn server_config() -> driftless_server::service::Config {
    driftless_server::service::Config {
        retention: Retention {
            op_ids_s: 86_400,
            history_s: 86_400,
        },
        // Simulated Clients send as fast as the simulation runs; rate limits are not under test.
        rate_limit_per_s: 1_000_000,
        ..Default::default()
    }
}

impl World {
    pub(super) fn open_app(&self) -> Result<Arc<App<SqliteStorage>>, String> {
        let _guard = self.rt.enter();
        driftless_server::open_with_edge(
            &self.server_dir,
            server_config(),
            EdgeConfig::default(),
            self.server_faults.clone(),
            Arc::new(self.clock.clone()),
        )
        .map_err(|e| format!("cannot open the simulated server: {e}"))
    }

    /// Drops the Server's in-memory state and reopens its store.
    pub(super) fn restart_server(&self) -> Result<(), String> {
        let fresh = self.open_app()?;
        *self.app.borrow_mut() = fresh;
        Ok(())
    }

    /// Keeps the Mutations of a push the Server answered as applied.
    pub(super) fn note_applied(&self, req: &HttpRequest, resp: &HttpResponse) {
        if resp.status != 200 || !req.path.ends_with("/push") {
            return;
        }
        let body: Value =
            serde_json::from_slice(req.body.as_deref().unwrap_or(b"")).unwrap_or_default();
        let answer: Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        let (Some(ms), Some(rs)) = (body["mutations"].as_array(), answer["results"].as_array())
        else {
            return;
        };
        for (m, r) in ms.iter().zip(rs) {
            if r["status"] == "applied" {
                if let Ok(m) = serde_json::from_value::<Mutation>(m.clone()) {
                    self.applied.borrow_mut().push(m);
                }
            }
        }
    }

    /// Delivers every held request, oldest first; their answers go nowhere.
    pub(super) fn release(&self) {
        let held = std::mem::take(&mut *self.held.borrow_mut());
        for req in held {
            let status = match self.deliver(&req) {
                Ok(resp) => {
                    self.note_applied(&req, &resp);
                    format!("{} {}", resp.status, outcomes(&resp.body))
                }
                Err(e) => e,
            };
            self.trace.borrow_mut().add(&format!(
                "net released {} {} -> {status}",
                req.method,
                req.path.split('?').next().unwrap_or("")
            ));
        }
    }

    pub(super) fn compact(&self) {
        let app = self.app.borrow().clone();
        let r = self.rt.block_on(app.service.compact_expired());
        self.trace
            .borrow_mut()
            .add(&format!("compact {}", r.is_ok()));
    }

    /// Hands `req` to the Server's request handler over an in-memory HTTP/1.1 connection.
    pub(super) fn deliver(&self, req: &HttpRequest) -> Result<HttpResponse, String> {
        let app = self.app.borrow().clone();
        self.rt.block_on(async move {
            let (client_io, server_io) = tokio::io::duplex(1 << 16);
            let service = hyper::service::service_fn(move |r| app.clone().handle(r));
            let server = tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(server_io), service)
                    .await;
            });
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client_io))
                .await
                .map_err(|e| e.to_string())?;
            let driver = tokio::spawn(conn);
            let mut builder = hyper::Request::builder()
                .method(req.method.as_str())
                .uri(req.path.as_str())
                .header("host", "simulated");
            for (n, v) in &req.headers {
                builder = builder.header(n.as_str(), v.as_str());
            }
            let request = builder
                .body(Full::new(Bytes::from(req.body.clone().unwrap_or_default())))
                .map_err(|e| e.to_string())?;
            let resp = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes()
                .to_vec();
            drop(sender);
            let _ = driver.await;
            let _ = server.await;
            Ok(HttpResponse {
                status,
                headers,
                body,
            })
        })
    }
}

/// The Outcomes of a push answer, or the Problem type of an error answer, in short.
pub(super) fn outcomes(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let short = |o: &Value| {
        let o = if o["status"] == "duplicate" {
            &o["original"]
        } else {
            o
        };
        let problem = o["problem"]["type"].as_str().unwrap_or("");
        format!(
            "{}{}",
            o["status"].as_str().unwrap_or("?"),
            problem
                .rsplit(':')
                .next()
                .map(|p| format!(":{p}"))
                .filter(|p| p.len() > 1)
                .unwrap_or_default()
        )
    };
    match (v["results"].as_array(), v["type"].as_str()) {
        (Some(rs), _) => rs.iter().map(short).collect::<Vec<_>>().join(","),
        (None, Some(t)) => t.rsplit(':').next().unwrap_or("").to_owned(),
        _ => String::new(),
    }
}

/// One Client's end of the simulated network.
pub(super) struct SimTransport {
    pub(super) world: Rc<World>,
    pub(super) client: usize,
}

impl Transport for SimTransport {
    fn round_trip(&mut self, req: HttpRequest) -> Result<HttpResponse, TransportFailure> {
        let w = &self.world;
        let lost = |reason: &str| {
            w.trace
                .borrow_mut()
                .add(&format!("net c{} {} {reason}", self.client, req.method));
            Err(TransportFailure {
                reason: reason.to_owned(),
                transient: true,
            })
        };
        // A sync that never ends (a livelock) would hang the run: a request past the budget is
        // refused as no retry can help, so the sync fails and `sync-completes` names it.
        w.requests.set(w.requests.get() + 1);
        if w.requests.get() > REQUESTS_PER_SCENARIO_MAX {
            return Err(TransportFailure {
                reason: "request budget of the scenario exhausted (a sync that never ends?)".into(),
                transient: false,
            });
        }
        if w.offline.borrow()[self.client] {
            return lost("offline");
        }
        if std::mem::take(&mut w.hold.borrow_mut()[self.client]) {
            // Reordered delivery: the Client sees a timeout and goes on (retries, sends
            // others); the Server sees this request only at the next `release`.
            w.held.borrow_mut().push(req.clone());
            return lost("held back");
        }
        let weather = w.weather.borrow().clone();
        let (drop_req, drop_resp, dup, delay) = {
            let mut rng = w.rng.borrow_mut();
            (
                rng.chance(weather.drop_request_pct),
                rng.chance(weather.drop_response_pct),
                rng.chance(weather.duplicate_pct),
                rng.below(weather.delay_ms_max + 1),
            )
        };
        w.clock.advance(delay);
        if drop_req {
            return lost("request lost");
        }
        let mut resp = w.deliver(&req).map_err(|e| TransportFailure {
            reason: e,
            transient: true,
        })?;
        w.note_applied(&req, &resp);
        if dup {
            resp = w.deliver(&req).map_err(|e| TransportFailure {
                reason: e,
                transient: true,
            })?;
            w.note_applied(&req, &resp);
        }
        w.trace.borrow_mut().add(&format!(
            "net c{} {} {} -> {} {}",
            self.client,
            req.method,
            req.path.split('?').next().unwrap_or(""),
            resp.status,
            outcomes(&resp.body)
        ));
        if drop_resp {
            return lost("response lost");
        }
        Ok(resp)
    }
}
