//! What a case sees: an HTTP client for one Server, Tokens, fresh Spaces, clocks and the bundled
//! message schemas.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use crate::report::{Exchange, Mismatch};
use crate::{CaseResult, Verdict};

mod evidence;
mod tokens;

pub use tokens::CommandTokens;

/// Where Tokens come from.
pub trait TokenSource: Send + Sync {
    /// A Token for `user` with `scope` (`read`, `write` or `admin`) on `space`, valid for
    /// `ttl_s` seconds (negative: already expired).
    fn token(&self, user: &str, space: &str, scope: &str, ttl_s: i64) -> Result<String, String>;
}

/// A response.
pub struct Resp {
    /// HTTP status.
    pub status: u16,
    /// Headers, names lowercase.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
    /// The body as text.
    pub text: String,
}

impl Resp {
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// The fail verdict.
pub fn fail(msg: impl Into<String>) -> Verdict {
    Verdict::Fail(msg.into())
}

/// `Ok` when `cond`, else a failure with `msg`.
pub fn check(cond: bool, msg: impl FnOnce() -> String) -> CaseResult {
    if cond {
        Ok(())
    } else {
        Err(Verdict::Fail(msg()))
    }
}

/// `Ok` when `cond`, else the errored verdict of a case whose precondition did not hold: the
/// Server did not do what the case's setup relies on, so the case's own requirement was never
/// exercised and must not be credited. `msg` names the precondition.
pub fn precondition(cond: bool, msg: impl FnOnce() -> String) -> CaseResult {
    if cond {
        Ok(())
    } else {
        Err(Verdict::Error(format!("precondition failed: {}", msg())))
    }
}

/// The context of a run.
pub struct Ctx {
    agent: ureq::Agent,
    base: String,
    tokens: Box<dyn TokenSource>,
    discovery: Value,
    validators: BTreeMap<String, jsonschema::Validator>,
    rng: u64,
    counter: u64,
    case: String,
    /// The current case's last exchanges and failed comparison, for its report. Behind a mutex
    /// because requests are made through `&self`.
    evidence: Mutex<(VecDeque<Exchange>, Option<Mismatch>)>,
}

impl Ctx {
    /// Connects: fetches and validates the discovery document. An unreachable Server or an
    /// invalid discovery document is a setup error.
    pub fn connect(
        base: &str,
        tokens: Box<dyn TokenSource>,
        timeout: Duration,
        seed: u64,
    ) -> Result<Self, String> {
        Self::connect_tls(base, tokens, timeout, seed, None)
    }

    /// As [`Ctx::connect`]; HTTPS certificates are verified against the certificates of
    /// `ca_pem` (PEM text) if given, else against the bundled Mozilla roots.
    pub fn connect_tls(
        base: &str,
        tokens: Box<dyn TokenSource>,
        timeout: Duration,
        seed: u64,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, String> {
        use ureq::tls::{PemItem, RootCerts, TlsConfig};
        let roots = match ca_pem {
            None => RootCerts::WebPki,
            Some(pem) => {
                let mut certs = Vec::new();
                for item in ureq::tls::parse_pem(pem) {
                    if let PemItem::Certificate(c) = item.map_err(|e| e.to_string())? {
                        certs.push(c);
                    }
                }
                if certs.is_empty() {
                    return Err("--ca-cert holds no PEM certificate".into());
                }
                RootCerts::new_with_certs(&certs)
            }
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build()
            .into();
        let validators = driftless_protocol::export::message_schemas()
            .into_iter()
            .map(|(name, schema)| {
                let v = jsonschema::validator_for(&schema).expect("bundled schemas compile");
                (name, v)
            })
            .collect();
        let mut ctx = Self {
            agent,
            base: base.trim_end_matches('/').to_owned(),
            tokens,
            discovery: Value::Null,
            validators,
            rng: seed | 1,
            counter: 0,
            case: String::new(),
            evidence: Mutex::default(),
        };
        let resp = ctx
            .request("GET", "/.well-known/driftless", None, &[], None)
            .map_err(|v| match v {
                Verdict::Error(e) | Verdict::Fail(e) | Verdict::Skip(e) => {
                    format!("cannot reach the server at {base}: {e}")
                }
            })?;
        if resp.status != 200 {
            return Err(format!(
                "GET /.well-known/driftless answered {}",
                resp.status
            ));
        }
        ctx.discovery = resp.body;
        Ok(ctx)
    }

    /// Before any case: a Token from the token command must be accepted. A Server that answers
    /// it `unauthorized` (401) would fail nearly every MUST case for a setup mistake (a token
    /// command signing with another secret), so the run stops with one line instead. A failing
    /// token command is left to the cases, which report it as errored.
    pub fn preflight(&mut self) -> Result<(), String> {
        self.begin_case("preflight");
        let space = self.space();
        let Ok(token) = self.token(&self.user(), &space, "read") else {
            return Ok(());
        };
        let Ok(r) = self.get(&format!("/v1/spaces/{space}/checksums"), Some(&token)) else {
            return Ok(());
        };
        if r.status == 401 {
            return Err(format!(
                "the server refuses the token command's Tokens (401: {}); check that the command \
                 signs with the server's own secret (for the reference server: the same --data \
                 folder)",
                r.body["detail"].as_str().unwrap_or("no detail")
            ));
        }
        Ok(())
    }

    /// A User name of the current case's own, so that per-User rate limits never couple cases.
    pub fn user(&self) -> String {
        let h = self.case.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        format!("cf-{:012x}", h & 0xffff_ffff_ffff)
    }

    /// The discovery document.
    pub fn discovery(&self) -> &Value {
        &self.discovery
    }

    /// Whether the Server announces an optional feature.
    pub fn has_feature(&self, name: &str) -> bool {
        self.discovery["features"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == name))
    }

    /// A limit from discovery.
    pub fn limit(&self, name: &str) -> u64 {
        self.discovery["limits"][name].as_u64().unwrap_or(0)
    }

    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// A random number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A fresh Space name no other case uses.
    pub fn space(&mut self) -> String {
        self.counter += 1;
        format!("cf-{:08x}-{}", self.next() as u32, self.counter)
    }

    /// A fresh Op ID.
    pub fn op(&mut self) -> String {
        self.counter += 1;
        format!("cf-op-{:08x}-{}", self.next() as u32, self.counter)
    }

    /// A fresh HLC for `client`, at the current time.
    pub fn hlc(&mut self, client: &str) -> String {
        self.counter += 1;
        Self::hlc_at(now_ms(), (self.counter % 65_536) as u16, client)
    }

    /// An HLC at a given time.
    pub fn hlc_at(ms: u64, logical: u16, client: &str) -> String {
        format!("{ms:012x}-{logical:04x}-{client}")
    }

    /// A Token, or an errored verdict when the source fails.
    pub fn token(&self, user: &str, space: &str, scope: &str) -> Result<String, Verdict> {
        self.token_ttl(user, space, scope, 600)
    }

    /// A Token with a lifetime.
    pub fn token_ttl(
        &self,
        user: &str,
        space: &str,
        scope: &str,
        ttl_s: i64,
    ) -> Result<String, Verdict> {
        self.tokens
            .token(user, space, scope, ttl_s)
            .map_err(Verdict::Error)
    }

    /// The HTTP agent (clonable: its connections are pooled) for requests made in parallel.
    pub(crate) fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// The Server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// One request.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Resp, Verdict> {
        self.request_at(&self.base, method, path, token, headers, body)
    }

    /// One request to another base URL (the fault-injecting proxy).
    pub fn request_at(
        &self,
        base: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Resp, Verdict> {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{base}{path}"));
        if let Some(t) = token {
            builder = builder.header("authorization", format!("Bearer {t}"));
        }
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("driftless-version"))
        {
            builder = builder.header("driftless-version", "1.0");
        }
        // An empty value means: send no such header at all.
        for (k, v) in headers.iter().filter(|(_, v)| !v.is_empty()) {
            builder = builder.header(*k, *v);
        }
        let req = |b| builder.body(b).map_err(|e| Verdict::Error(e.to_string()));
        let body = body.unwrap_or_default();
        // The exchange is recorded without any request header, so no Token reaches a report.
        let mut exchange = Exchange {
            method: method.to_owned(),
            path: path.to_owned(),
            request_body: Exchange::trim_body(&String::from_utf8_lossy(&body)),
            status: None,
            response_content_type: None,
            response_body: String::new(),
            error: None,
        };
        let mut resp = match self.agent.run(req(body)?) {
            Ok(resp) => resp,
            Err(e) => {
                exchange.error = Some(e.to_string());
                self.record_exchange(exchange);
                return Err(Verdict::Error(format!("{method} {path}: {e}")));
            }
        };
        let status = resp.status().as_u16();
        let headers: BTreeMap<String, String> = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        exchange.status = Some(status);
        exchange.response_content_type = headers.get("content-type").cloned();
        exchange.response_body = Exchange::trim_body(&text);
        self.record_exchange(exchange);
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        let reply = Resp {
            status,
            headers,
            body,
            text,
        };
        // Every response of a known endpoint must match its message schema.
        if let Some(name) = response_schema(method, path, &reply) {
            self.validate(name, &reply.body).map_err(|v| match v {
                Verdict::Fail(d) => {
                    Verdict::Fail(format!("{method} {path} answered {}: {d}", reply.status))
                }
                other => other,
            })?;
        }
        Ok(reply)
    }

    /// GET.
    pub fn get(&self, path: &str, token: Option<&str>) -> Result<Resp, Verdict> {
        self.request("GET", path, token, &[], None)
    }

    /// A JSON request.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Result<Resp, Verdict> {
        self.request(
            method,
            path,
            token,
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
    }

    /// The Server's current state of one Record.
    pub fn record(
        &self,
        space: &str,
        token: &str,
        collection: &str,
        id: &str,
    ) -> Result<Resp, Verdict> {
        self.get(
            &format!("/v1/spaces/{space}/records/{collection}/{id}"),
            Some(token),
        )
    }

    /// A push.
    pub fn push(
        &self,
        space: &str,
        token: &str,
        client: &str,
        mutations: &[Value],
    ) -> Result<Resp, Verdict> {
        self.send(
            "POST",
            &format!("/v1/spaces/{space}/push"),
            Some(token),
            &json!({"client_id": client, "mutations": mutations}),
        )
    }

    /// A push whose body is these bytes exactly (for bodies a JSON value cannot spell: other
    /// member order and whitespace, numbers beyond a double, malformed text).
    pub fn push_text(
        &self,
        space: &str,
        token: &str,
        body: impl Into<Vec<u8>>,
    ) -> Result<Resp, Verdict> {
        self.request(
            "POST",
            &format!("/v1/spaces/{space}/push"),
            Some(token),
            &[("content-type", "application/json")],
            Some(body.into()),
        )
    }

    /// A push that must succeed as a whole; returns its results.
    pub fn push_ok(
        &self,
        space: &str,
        token: &str,
        client: &str,
        mutations: &[Value],
    ) -> Result<Vec<Value>, Verdict> {
        let r = self.push(space, token, client, mutations)?;
        self.expect(&r, 200, "push")?;
        self.validate("push-response", &r.body)?;
        let results = r.body["results"].as_array().cloned().unwrap_or_default();
        check(results.len() == mutations.len(), || {
            format!(
                "push of {} mutations answered {} results ([PUSH-1])",
                mutations.len(),
                results.len()
            )
        })?;
        Ok(results)
    }

    /// A push the case's setup relies on: it must succeed as a whole ([`Ctx::push_ok`]) and every
    /// result must be `applied`, else the case is errored naming the first Mutation that was not.
    pub fn push_applied(
        &self,
        space: &str,
        token: &str,
        client: &str,
        mutations: &[Value],
    ) -> Result<Vec<Value>, Verdict> {
        self.push_expect(
            space,
            token,
            client,
            mutations,
            &vec!["applied"; mutations.len()],
        )
    }

    /// A push the case's setup relies on, with a given mix of results: result `i` must have the
    /// status `statuses[i]` (`applied`, `rejected` or `duplicate`), else the case is errored
    /// naming the Mutation and what it answered.
    pub fn push_expect(
        &self,
        space: &str,
        token: &str,
        client: &str,
        mutations: &[Value],
        statuses: &[&str],
    ) -> Result<Vec<Value>, Verdict> {
        assert_eq!(statuses.len(), mutations.len(), "one status per mutation");
        let results = self.push_ok(space, token, client, mutations)?;
        for (i, (r, want)) in results.iter().zip(statuses).enumerate() {
            precondition(r["status"] == *want, || {
                format!(
                    "setup mutation {i} ({}) answered {r}; the case needs it {want}",
                    mutations[i]["op_id"]
                )
            })?;
        }
        Ok(results)
    }

    /// Pulls from no Cursor until `has_more` is false; returns the Records by `collection/id`
    /// and the last page.
    pub fn pull_all(
        &self,
        space: &str,
        token: &str,
        limit: u64,
    ) -> Result<(BTreeMap<String, Value>, Value), Verdict> {
        let mut mirror = BTreeMap::new();
        let mut query = format!("?limit={limit}");
        for _ in 0..100_000 {
            let r = self.get(&format!("/v1/spaces/{space}/pull{query}"), Some(token))?;
            self.expect(&r, 200, "pull")?;
            self.validate("pull-response", &r.body)?;
            for rec in r.body["records"].as_array().into_iter().flatten() {
                let key = format!(
                    "{}/{}",
                    rec["collection"].as_str().unwrap_or(""),
                    rec["id"].as_str().unwrap_or("")
                );
                mirror.insert(key, rec.clone());
            }
            if r.body["has_more"] != true {
                return Ok((mirror, r.body));
            }
            query = format!(
                "?limit={limit}&cursor={}",
                r.body["cursor"].as_str().unwrap_or("")
            );
        }
        Err(fail("pull never reached has_more = false"))
    }

    /// A failure unless the status is `status`.
    pub fn expect(&self, r: &Resp, status: u16, what: &str) -> CaseResult {
        if r.status == status {
            return Ok(());
        }
        self.note_mismatch(&format!("status of {what}"), status, r.status);
        Err(fail(format!(
            "{what}: expected status {status}, got {}: {}",
            r.status,
            truncate(&r.text)
        )))
    }

    /// A failure unless the response is the Problem `code` with `status`, as problem+json.
    pub fn expect_problem(&self, r: &Resp, status: u16, code: &str) -> CaseResult {
        let expected = format!("urn:driftless:problem:{code}");
        if r.status != status || r.body["type"] != expected.as_str() {
            self.note_mismatch(
                "status and Problem type",
                format!("{status} {expected}"),
                format!("{} {}", r.status, r.body["type"]),
            );
        }
        check(r.status == status, || {
            format!(
                "expected {status} {code}, got {}: {}",
                r.status,
                truncate(&r.text)
            )
        })?;
        let ct = r.header("content-type").unwrap_or("");
        check(ct.starts_with("application/problem+json"), || {
            format!("expected application/problem+json, got {ct:?} ([HTTP-4])")
        })?;
        self.validate("problem", &r.body)?;
        check(r.body["type"] == expected.as_str(), || {
            format!("expected Problem type {expected}, got {}", r.body["type"])
        })?;
        check(r.body["status"] == status, || {
            format!(
                "Problem status member {} differs from HTTP {status} ([ERR-3])",
                r.body["status"]
            )
        })
    }

    /// A failure unless `value` validates against the bundled message schema `name`.
    pub fn validate(&self, name: &str, value: &Value) -> CaseResult {
        let Some(v) = self.validators.get(name) else {
            return Err(Verdict::Error(format!("no bundled schema {name}")));
        };
        let errors: Vec<String> = v
            .iter_errors(value)
            .take(3)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        check(errors.is_empty(), || {
            format!(
                "response does not match schema {name}: {}",
                errors.join("; ")
            )
        })
    }
}

/// The message schema a response of `method path` must match: `problem` for any
/// problem+json answer, else the endpoint's success message.
fn response_schema(method: &str, path: &str, r: &Resp) -> Option<&'static str> {
    let ct = r.header("content-type").unwrap_or("");
    if r.status >= 400 {
        return ct
            .starts_with("application/problem+json")
            .then_some("problem");
    }
    if !(200..300).contains(&r.status) || !ct.starts_with("application/json") {
        return None;
    }
    let path = path.split('?').next().unwrap_or(path);
    let seg: Vec<&str> = path.split('/').collect();
    Some(match (method, seg.as_slice()) {
        ("GET", ["", ".well-known", "driftless"]) => "discovery",
        ("POST", ["", "v1", "spaces", _, "push"]) => "push-response",
        ("POST", ["", "v1", "spaces", _, "manifest"]) => "manifest-response",
        ("GET", ["", "v1", "spaces", _, "pull"]) => "pull-response",
        ("GET", ["", "v1", "spaces", _, "records", _, _]) => "record",
        ("GET", ["", "v1", "spaces", _, "records", _, _, "history"]) => "history-response",
        ("GET", ["", "v1", "spaces", _, "checksums"]) => "checksums-response",
        ("GET", ["", "v1", "spaces", _, "buckets", _]) => "bucket-response",
        ("GET", ["", "v1", "spaces", _, "collections", _, "schemas"]) => "collection-schema-list",
        ("PUT", ["", "v1", "spaces", _, "collections", _, "schemas", _]) => "collection-schema",
        ("POST", ["", "v1", "spaces", _, "compact"]) => "compaction-response",
        _ => return None,
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn truncate(s: &str) -> String {
    if s.len() > 300 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(300).map(|(i, _)| i).unwrap_or(s.len())]
        )
    } else {
        s.to_owned()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Evidence, EXCHANGES_KEPT};

    #[test]
    fn a_digest_mismatch_carries_the_canonical_text_its_expected_digest_hashes() {
        let ctx = offline_ctx();
        let value = json!({"b": 1.0, "a": "é"}).as_object().cloned().unwrap();
        let err = ctx
            .check_record_digest("things", "r1", &value, &json!("00"))
            .unwrap_err();
        assert!(matches!(err, Verdict::Fail(_)));
        let m = ctx
            .evidence_mut()
            .1
            .clone()
            .expect("a mismatch is recorded");
        let canonical = m
            .canonical
            .expect("a digest mismatch has its canonical text");
        assert_eq!(
            canonical,
            r#"{"collection":"things","id":"r1","value":{"a":"é","b":1}}"#
        );
        let hashed = driftless_protocol::checksum::to_hex(&driftless_protocol::checksum::sha256(
            canonical.as_bytes(),
        ));
        assert_eq!(m.expected, format!("\"{hashed}\""));
        assert_eq!(m.actual, "\"00\"");
    }

    #[test]
    fn only_the_last_exchanges_are_kept_and_begin_case_forgets_them() {
        let mut ctx = offline_ctx();
        for i in 0..EXCHANGES_KEPT + 2 {
            ctx.record_exchange(Exchange {
                method: "GET".into(),
                path: format!("/p{i}"),
                request_body: String::new(),
                status: Some(200),
                response_content_type: None,
                response_body: String::new(),
                error: None,
            });
        }
        let ev = ctx.take_evidence();
        let paths: Vec<&str> = ev.exchanges.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(paths, ["/p2", "/p3", "/p4", "/p5"]);
        ctx.record_exchange(ev.exchanges[0].clone());
        ctx.begin_case("next");
        assert_eq!(ctx.take_evidence(), Evidence::default());
    }

    /// A context that has never connected, for the bookkeeping tests.
    fn offline_ctx() -> Ctx {
        struct NoTokens;
        impl TokenSource for NoTokens {
            fn token(&self, _: &str, _: &str, _: &str, _: i64) -> Result<String, String> {
                Err("no tokens".into())
            }
        }
        Ctx {
            agent: ureq::Agent::new_with_defaults(),
            base: "http://127.0.0.1:9".into(),
            tokens: Box::new(NoTokens),
            discovery: Value::Null,
            validators: BTreeMap::new(),
            rng: 1,
            counter: 0,
            case: String::new(),
            evidence: Mutex::default(),
        }
    }

    fn resp(status: u16, ct: &str) -> Resp {
        Resp {
            status,
            headers: [("content-type".to_owned(), ct.to_owned())].into(),
            body: Value::Null,
            text: String::new(),
        }
    }

    #[test]
    fn every_endpoint_maps_to_its_response_schema() {
        let ok = resp(200, "application/json");
        for (method, path, name) in [
            ("GET", "/.well-known/driftless", "discovery"),
            ("POST", "/v1/spaces/s/push", "push-response"),
            ("POST", "/v1/spaces/s/manifest", "manifest-response"),
            ("GET", "/v1/spaces/s/pull?cursor=x", "pull-response"),
            ("GET", "/v1/spaces/s/records/c/i", "record"),
            (
                "GET",
                "/v1/spaces/s/records/c/i/history",
                "history-response",
            ),
            ("GET", "/v1/spaces/s/checksums", "checksums-response"),
            ("GET", "/v1/spaces/s/buckets/3", "bucket-response"),
            (
                "GET",
                "/v1/spaces/s/collections/c/schemas",
                "collection-schema-list",
            ),
            (
                "PUT",
                "/v1/spaces/s/collections/c/schemas/1",
                "collection-schema",
            ),
            ("POST", "/v1/spaces/s/compact", "compaction-response"),
        ] {
            assert_eq!(
                response_schema(method, path, &ok),
                Some(name),
                "{method} {path}"
            );
        }
        assert_eq!(
            response_schema(
                "GET",
                "/v1/spaces/s/pull",
                &resp(400, "application/problem+json")
            ),
            Some("problem")
        );
        assert_eq!(
            response_schema("GET", "/metrics", &resp(200, "text/plain")),
            None
        );
    }
}
