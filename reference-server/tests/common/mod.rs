//! A reference server on a real 127.0.0.1 ephemeral port with a real SQLite file, and a small
//! HTTP client for talking to it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use driftless_protocol::messages::{Scope, TokenClaims};
use driftless_server::auth::TokenKey;
use driftless_server::conn::EdgeConfig;
use driftless_server::faults::Faults;
use driftless_server::service::Config;
use serde_json::{json, Value};

pub struct TestServer {
    pub base: String,
    /// The metrics listener (`[SEC-5]`: not the API port).
    pub metrics_base: String,
    /// The server as the tests' in-process handle sees it (gauges, the connection registry).
    pub app: std::sync::Arc<
        driftless_server::http::App<driftless_server::storage::sqlite::SqliteStorage>,
    >,
    pub key: TokenKey,
    pub dir: tempfile::TempDir,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(Config::default())
    }

    pub fn start_with(config: Config) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), config)
    }

    pub fn start_in(dir: tempfile::TempDir, config: Config) -> Self {
        Self::start_full(dir, config, Faults::default())
    }

    pub fn start_full(dir: tempfile::TempDir, config: Config, faults: Faults) -> Self {
        Self::start_edge(dir, config, faults, EdgeConfig::default())
    }

    /// A server with these connection-layer bounds.
    pub fn start_edge(
        dir: tempfile::TempDir,
        config: Config,
        faults: Faults,
        edge: EdgeConfig,
    ) -> Self {
        let app = driftless_server::open_with_edge(
            dir.path(),
            config,
            edge,
            faults,
            std::sync::Arc::new(driftless_server::service::SystemClock),
        )
        .unwrap();
        let key = app.key.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let metrics = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let metrics_base = format!("http://{}", metrics.local_addr().unwrap());
        runtime.spawn(driftless_server::run_metrics(
            app.clone(),
            metrics,
            std::future::pending(),
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(driftless_server::run(
            app.clone(),
            listener,
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(3600),
            Duration::from_secs(5),
        ));
        Self {
            base,
            metrics_base,
            app,
            key,
            dir,
            runtime: Some(runtime),
            stop: Some(stop),
        }
    }

    /// A Token for `user` with `scope` on `space`, valid for an hour.
    pub fn token(&self, user: &str, space: &str, scope: Scope) -> String {
        self.token_ttl(user, space, scope, 3600)
    }

    pub fn token_ttl(&self, user: &str, space: &str, scope: Scope, ttl: i64) -> String {
        let now = now_ms() / 1000;
        let claims = TokenClaims {
            sub: user.into(),
            grants: BTreeMap::from([(space.parse().unwrap(), scope)]),
            iat: now,
            exp: (now as i64 + ttl).max(0) as u64,
        };
        self.key.mint(&claims)
    }

    pub fn client(&self) -> Client {
        Client::new(&self.base)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// An HLC for `client` at wall time `ms` with logical counter `l`.
pub fn hlc_at(ms: u64, l: u16, client: &str) -> String {
    format!("{ms:012x}-{l:04x}-{client}")
}

/// A fresh HLC for `client`: now, with a counter from a process-wide sequence so that two
/// calls never collide.
pub fn hlc(client: &str) -> String {
    use std::sync::atomic::{AtomicU16, Ordering};
    static N: AtomicU16 = AtomicU16::new(0);
    hlc_at(now_ms(), N.fetch_add(1, Ordering::Relaxed), client)
}

pub fn op(n: u64) -> String {
    format!("op-{n:08}")
}

/// A Mutation as JSON.
pub fn mutation(
    op_id: &str,
    seq: u64,
    collection: &str,
    id: &str,
    hlc: &str,
    effect: Value,
) -> Value {
    json!({"op_id": op_id, "seq": seq, "collection": collection, "record_id": id, "hlc": hlc, "effect": effect})
}

pub struct Reply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The Problem `type` code, asserting the response is problem+json with a matching status.
    pub fn problem(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.text
        );
        let p = self.json();
        assert_eq!(
            p["status"].as_u64(),
            Some(self.status as u64),
            "{}",
            self.text
        );
        assert!(p["title"].is_string());
        p["type"]
            .as_str()
            .unwrap()
            .strip_prefix("urn:driftless:problem:")
            .unwrap()
            .to_owned()
    }
}

pub struct Client {
    agent: ureq::Agent,
    base: String,
}

impl Client {
    pub fn new(base: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Self {
            agent,
            base: base.to_owned(),
        }
    }

    pub fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let url = format!("{}{path}", self.base);
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = token {
            builder = builder.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let result = match body {
            Some(b) => self.agent.run(builder.body(b).unwrap()),
            None => self.agent.run(builder.body(()).unwrap()),
        };
        let mut resp = result.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        Reply {
            status,
            headers,
            text,
        }
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.raw("GET", path, token, &[], None)
    }

    pub fn send(&self, method: &str, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.raw(
            method,
            path,
            token,
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
    }

    pub fn push(&self, space: &str, token: &str, client: &str, mutations: Vec<Value>) -> Reply {
        self.send(
            "POST",
            &format!("/v1/spaces/{space}/push"),
            Some(token),
            &json!({"client_id": client, "mutations": mutations}),
        )
    }

    /// Pushes and asserts the push answered 200 with every Mutation `applied`; returns the
    /// results, so that a test's setup is known to have happened.
    pub fn push_applied(
        &self,
        space: &str,
        token: &str,
        client: &str,
        mutations: Vec<Value>,
    ) -> Vec<Value> {
        let n = mutations.len();
        let r = self.push(space, token, client, mutations);
        assert_eq!(r.status, 200, "{}", r.text);
        let results = r.json()["results"].as_array().unwrap().clone();
        assert_eq!(results.len(), n, "{}", r.text);
        for result in &results {
            assert_eq!(result["status"], "applied", "{}", r.text);
        }
        results
    }

    pub fn pull(&self, space: &str, token: &str, query: &str) -> Reply {
        self.get(&format!("/v1/spaces/{space}/pull{query}"), Some(token))
    }

    /// Pulls from no Cursor until `has_more` is false; returns the Records by key and the last
    /// `through`.
    pub fn pull_all(
        &self,
        space: &str,
        token: &str,
        limit: usize,
    ) -> (BTreeMap<String, Value>, u64) {
        let mut mirror = BTreeMap::new();
        let mut query = format!("?limit={limit}");
        loop {
            let r = self.pull(space, token, &query);
            assert_eq!(r.status, 200, "{}", r.text);
            let page = r.json();
            for rec in page["records"].as_array().unwrap() {
                let key = format!(
                    "{}/{}",
                    rec["collection"].as_str().unwrap(),
                    rec["id"].as_str().unwrap()
                );
                mirror.insert(key, rec.clone());
            }
            if !page["has_more"].as_bool().unwrap() {
                return (mirror, page["through"].as_u64().unwrap());
            }
            query = format!("?limit={limit}&cursor={}", page["cursor"].as_str().unwrap());
        }
    }
}

/// Validates a response body against its message schema in `schemas/v1` (as generated).
pub fn assert_schema(name: &str, instance: &Value) {
    static SCHEMAS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| {
        driftless_protocol::export::message_schemas()
            .into_iter()
            .collect()
    });
    let validator = jsonschema::validator_for(&schemas[name]).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:?}\n{instance}");
}
