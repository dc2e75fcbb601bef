//! The client conformance kit (`driftless conformance client`): checks a Client, wrapped in an
//! adapter (spec chapter 13), against the Client duties of chapters 02, 03, 08 and 10.
//!
//! Each case gets a fresh Space, store folder and [`layer::Layer`] in front of the Server, starts
//! the adapter, drives it, and checks what the layer recorded and what the adapter answered. The
//! grades, report formats and exit codes are the server suite's ([`crate::report`]).

pub mod adapter;
mod cases;
pub mod layer;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::TokenSource;
use crate::report::{self, Grade, Report};
use crate::{Level, Verdict};
pub use cases::{all, NOT_CHECKABLE};

/// What a client case returns: the server suite's own type.
pub use crate::CaseResult;

/// One client case.
pub struct ClientCase {
    /// A stable ID, `client.<area>.<behaviour>`.
    pub id: &'static str,
    /// The requirement IDs it checks.
    pub requirements: &'static [&'static str],
    /// Its level.
    pub level: Level,
    /// One line: what it checks.
    pub description: &'static str,
    /// The check.
    pub run: fn(&mut Kit) -> CaseResult,
}

/// What to run and how.
pub struct Options {
    /// The adapter command: program and arguments, split on whitespace.
    pub adapter: String,
    /// Base URL of the (reference) Server, plain `http://` on loopback.
    pub server: String,
    /// Where Tokens come from.
    pub tokens: Box<dyn TokenSource>,
    /// A folder for the cases' store folders.
    pub work: PathBuf,
    /// Seed of every random choice.
    pub seed: u64,
    /// Glob patterns of case IDs to run (empty: all).
    pub run: Vec<String>,
    /// Glob patterns of case IDs to skip.
    pub skip: Vec<String>,
}

crate::described!(ClientCase);

/// A case's world: the Server behind a fresh fault layer, a fresh Space and store folder, and the
/// adapter.
pub struct Kit {
    adapter_cmd: String,
    server: String,
    tokens: Box<dyn TokenSource>,
    work: PathBuf,
    rng: u64,
    agent: ureq::Agent,
    case_no: usize,
    other_seq: u64,
    /// The fault layer the Client talks to.
    pub layer: layer::Layer,
    /// This case's Space.
    pub space: String,
    store: PathBuf,
    token: String,
    admin: String,
    adapter: Option<adapter::Adapter>,
    /// The Client ID the adapter's `open` answered.
    pub client_id: String,
    options: Value,
}

/// `Err(Verdict::Fail(..))` unless `cond`.
pub fn ensure(cond: bool, why: impl FnOnce() -> String) -> CaseResult {
    if cond {
        Ok(())
    } else {
        Err(Verdict::Fail(why()))
    }
}

impl Kit {
    fn new(
        adapter_cmd: String,
        server: String,
        work: PathBuf,
        seed: u64,
        tokens: Box<dyn TokenSource>,
    ) -> Result<Self, String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Ok(Self {
            layer: layer::Layer::start(&server)?,
            adapter_cmd,
            server,
            tokens,
            work,
            rng: seed | 1,
            agent,
            case_no: 0,
            other_seq: 0,
            space: String::new(),
            store: PathBuf::new(),
            token: String::new(),
            admin: String::new(),
            adapter: None,
            client_id: String::new(),
            options: json!({}),
        })
    }

    /// A pseudo-random number from the run's seed.
    pub fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn begin_case(&mut self) -> Result<(), Verdict> {
        self.case_no += 1;
        if let Some(mut a) = self.adapter.take() {
            a.kill();
        }
        let tag = self.random() as u32;
        self.space = format!("kit-{}-{tag:08x}", self.case_no);
        self.store = self.work.join(format!("case-{}", self.case_no));
        self.layer = layer::Layer::start(&self.server).map_err(Verdict::Error)?;
        let user = format!("kit-user-{}", self.case_no);
        self.token = self
            .tokens
            .token(&user, &self.space, "write", 3600)
            .map_err(Verdict::Error)?;
        self.admin = self
            .tokens
            .token("kit-admin", &self.space, "admin", 3600)
            .map_err(Verdict::Error)?;
        self.options = json!({"attempts_per_sync": 3, "timeout_ms": 10_000});
        self.client_id.clear();
        Ok(())
    }

    /// Sets the `open` options of the next [`Kit::start`].
    pub fn options(&mut self, options: Value) {
        self.options = options;
    }

    /// Starts the adapter and opens the Client on this case's store folder.
    pub fn start(&mut self) -> Result<(), Verdict> {
        if let Some(mut a) = self.adapter.take() {
            a.kill();
        }
        self.adapter = Some(adapter::Adapter::start(&self.adapter_cmd)?);
        let open = json!({"op": "open", "store": self.store.display().to_string(),
            "server": self.layer.base(), "token": self.token, "space": self.space,
            "options": self.options});
        let r = self.call(open)?;
        let id = r["client_id"].as_str().unwrap_or("").to_owned();
        if !self.client_id.is_empty() && id != self.client_id {
            return Err(Verdict::Fail(format!(
                "[ID-2] the Client ID changed from {} to {id} on the same store",
                self.client_id
            )));
        }
        self.client_id = id;
        Ok(())
    }

    /// SIGKILLs the adapter (no chance to flush or close).
    pub fn kill(&mut self) {
        if let Some(mut a) = self.adapter.take() {
            a.kill();
        }
    }

    /// Sends a request; returns the whole answer (`ok`, `result` or `error`).
    pub fn answer(&mut self, request: Value) -> Result<Value, Verdict> {
        let a = self
            .adapter
            .as_mut()
            .ok_or_else(|| Verdict::Error("the adapter is not running".into()))?;
        a.call(request)
    }

    /// Sends a request and returns its result; `unsupported` skips the case, any other error
    /// fails it.
    pub fn call(&mut self, request: Value) -> Result<Value, Verdict> {
        let op = request["op"].as_str().unwrap_or("?").to_owned();
        let a = self.answer(request)?;
        if a["ok"] == true {
            return Ok(a["result"].clone());
        }
        let (kind, message) = (
            a["error"]["kind"].as_str().unwrap_or("?"),
            a["error"]["message"].as_str().unwrap_or(""),
        );
        Err(match kind {
            "unsupported" => Verdict::Skip(format!("the Client does not support {op}: {message}")),
            _ => Verdict::Fail(format!("{op} answered {kind}: {message}")),
        })
    }

    /// Writes an Effect; returns the Op ID.
    pub fn write(&mut self, collection: &str, id: &str, effect: Value) -> Result<String, Verdict> {
        self.write_lane(collection, id, effect, 0)
    }

    /// Writes an Effect in a priority lane; returns the Op ID.
    pub fn write_lane(
        &mut self,
        collection: &str,
        id: &str,
        effect: Value,
        priority: i64,
    ) -> Result<String, Verdict> {
        let r = self.call(
            json!({"op": "write", "collection": collection, "record_id": id,
            "effect": effect, "priority": priority}),
        )?;
        Ok(r["op_id"].as_str().unwrap_or("").to_owned())
    }

    /// `sync` until done; a `failed` answer fails the case.
    pub fn sync(&mut self) -> Result<Value, Verdict> {
        self.call(json!({"op": "sync"}))
    }

    /// `sync`, whose failure is expected or allowed: the whole answer.
    pub fn try_sync(&mut self) -> Result<Value, Verdict> {
        self.answer(json!({"op": "sync"}))
    }

    /// The Client's view of a Record.
    pub fn get(&mut self, collection: &str, id: &str) -> Result<Value, Verdict> {
        Ok(
            self.call(json!({"op": "get", "collection": collection, "record_id": id}))?["value"]
                .clone(),
        )
    }

    /// The Server's state of a Record (`None`: absent or deleted), asked directly.
    pub fn server_value(&mut self, collection: &str, id: &str) -> Result<Option<Value>, Verdict> {
        let path = format!("/v1/spaces/{}/records/{collection}/{id}", self.space);
        let (status, body) = self.direct("GET", &path, None)?;
        match status {
            200 if body["deleted"] != true => Ok(Some(body["value"].clone())),
            200 | 404 | 410 => Ok(None),
            s => Err(Verdict::Error(format!("GET {path} answered {s}: {body}"))),
        }
    }

    /// Every existing Record of a Collection on the Server, by ID, pulled directly.
    pub fn server_list(&mut self, collection: &str) -> Result<Vec<(String, Value)>, Verdict> {
        let mut out = std::collections::BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/spaces/{}/pull?cursor={c}", self.space),
                None => format!("/v1/spaces/{}/pull", self.space),
            };
            let (status, body) = self.direct("GET", &path, None)?;
            if status != 200 {
                return Err(Verdict::Error(format!("pull answered {status}: {body}")));
            }
            for r in body["records"].as_array().into_iter().flatten() {
                if r["collection"] != collection {
                    continue;
                }
                let id = r["id"].as_str().unwrap_or("").to_owned();
                if r["deleted"] == true {
                    out.remove(&id);
                } else {
                    out.insert(id, r["value"].clone());
                }
            }
            cursor = body["cursor"].as_str().map(str::to_owned);
            if body["has_more"] != true {
                return Ok(out.into_iter().collect());
            }
        }
    }

    /// Pushes Effects as another Client (`kit-other`), straight to the Server, with fresh HLCs.
    pub fn other_writes(&mut self, writes: &[(&str, &str, Value)]) -> Result<(), Verdict> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut mutations = Vec::new();
        for (c, id, effect) in writes {
            // One counter for seq and the logical part: later writes of the kit always win ties.
            self.other_seq += 1;
            let op = format!("kit-other-{:016x}", self.random());
            mutations.push(json!({"op_id": op, "seq": self.other_seq, "collection": c,
                "record_id": id, "hlc": format!("{now:012x}-{:04x}-kit-other", self.other_seq),
                "effect": effect}));
        }
        let path = format!("/v1/spaces/{}/push", self.space);
        let body = json!({"client_id": "kit-other", "mutations": mutations});
        let (status, answer) = self.direct("POST", &path, Some(&body))?;
        let applied = answer["results"]
            .as_array()
            .is_some_and(|r| r.iter().all(|x| x["status"] == "applied"));
        if status != 200 || !applied {
            return Err(Verdict::Error(format!(
                "the kit's own push answered {status}: {answer}"
            )));
        }
        Ok(())
    }

    fn direct(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Verdict> {
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.server))
            .header("authorization", format!("Bearer {}", self.admin))
            .header("driftless-version", "1.0")
            .header("content-type", "application/json")
            .body(body.map(|b| b.to_string().into_bytes()).unwrap_or_default())
            .map_err(|e| Verdict::Error(e.to_string()))?;
        let mut resp = self
            .agent
            .run(req)
            .map_err(|e| Verdict::Error(format!("{method} {path}: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Registers a Collection Schema version (admin, straight to the Server).
    pub fn register_schema(&mut self, collection: &str, doc: &Value) -> Result<(), Verdict> {
        let version = doc["version"].as_u64().unwrap_or(1);
        let path = format!(
            "/v1/spaces/{}/collections/{collection}/schemas/{version}",
            self.space
        );
        let (status, body) = self.direct("PUT", &path, Some(doc))?;
        if status != 200 && status != 201 {
            return Err(Verdict::Error(format!(
                "PUT {path} answered {status}: {body}"
            )));
        }
        Ok(())
    }

    /// Rewrites every answer to `path` (a path fragment) on its way to the Client.
    pub fn rewrite(&self, method: &'static str, path: &'static str, f: fn(&mut Value)) {
        self.layer
            .script(layer::on(method, path, usize::MAX, move |_| {
                layer::Action::Rewrite(Box::new(move |r: &mut layer::Response| {
                    let mut d = r.json_body();
                    if d.is_object() {
                        f(&mut d);
                        r.body = d.to_string().into_bytes();
                    }
                }))
            }));
    }

    /// Announces this backoff policy to the Client (the discovery document is rewritten on its
    /// way), so that retry cases run in milliseconds.
    pub fn announce_backoff(&self, initial_delay_ms: u64, multiplier: u64, delay_ms_cap: u64) {
        self.layer.script(layer::on(
            "GET",
            "/.well-known/driftless",
            usize::MAX,
            move |_| {
                layer::Action::Rewrite(Box::new(move |r: &mut layer::Response| {
                    let mut d = r.json_body();
                    d["backoff"] = json!({"initial_delay_ms": initial_delay_ms,
                        "multiplier": multiplier, "delay_ms_cap": delay_ms_cap, "jitter": "full"});
                    r.body = d.to_string().into_bytes();
                }))
            },
        ));
    }
}

/// Runs the selected cases; `progress` is called after each.
pub fn run(
    options: Options,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<Report, String> {
    let Options {
        adapter,
        server,
        tokens,
        work,
        seed,
        run,
        skip,
    } = options;
    let all = all();
    let selected = crate::select(&all, &run, &skip);
    if selected.is_empty() {
        return Err(
            "no case matches the --run/--skip selection; a run that checks nothing is never green"
                .into(),
        );
    }
    let mut kit = Kit::new(adapter.clone(), server, work, seed, tokens)?;
    let mut results = Vec::with_capacity(selected.len());
    for (i, case) in selected.iter().enumerate() {
        let start = Instant::now();
        let outcome = kit.begin_case().and_then(|()| (case.run)(&mut kit));
        kit.kill();
        let grade = match (outcome, case.level) {
            (Ok(()), _) => Grade::pass(),
            (Err(Verdict::Fail(d)), Level::Must) => Grade::fail(d),
            (Err(Verdict::Fail(d)), _) => Grade::warn(d),
            (Err(Verdict::Skip(d)), _) => Grade::skipped(d),
            (Err(Verdict::Error(d)), _) => Grade::errored(d),
        };
        // Evidence for a case that did not pass: the last requests the Client sent, as the
        // fault layer recorded them (the layer sees no Token: it forwards headers unread).
        let exchanges = if grade.outcome == "pass" || grade.outcome == "skipped" {
            Vec::new()
        } else {
            last_exchanges(&kit.layer.log())
        };
        results.push(report::CaseReport {
            id: case.id.to_owned(),
            requirements: case.requirements.iter().map(|s| s.to_string()).collect(),
            level: case.level,
            description: case.description.to_owned(),
            outcome: grade.outcome,
            detail: grade.detail,
            duration_ms: start.elapsed().as_millis() as u64,
            exchanges,
            mismatch: None,
        });
        progress(i + 1, selected.len(), case.id);
    }
    Ok(Report::new(
        format!("adapter: {adapter}"),
        "1.0 (client kit)".into(),
        seed,
        results,
    ))
}

/// The last four exchanges of `log` in the report's form (bodies cut at 2 KB).
fn last_exchanges(log: &[layer::Exchange]) -> Vec<report::Exchange> {
    let text = |v: &Value| match v {
        Value::Null => String::new(),
        v => report::Exchange::trim_body(&v.to_string()),
    };
    log.iter()
        .skip(log.len().saturating_sub(4))
        .map(|e| report::Exchange {
            method: e.method.clone(),
            path: e.path.clone(),
            request_body: text(&e.body),
            status: (e.status != 0).then_some(e.status),
            response_content_type: None,
            response_body: text(&e.answer),
            error: (e.status == 0).then(|| "closed without an answer".to_owned()),
        })
        .collect()
}
