//! The vectors of `spec/vectors/` for implementers in other languages, each checked against the
//! Rust implementation: `hlc.json` against `protocol::hlc`, `merge.json` against
//! `protocol::merge` and `protocol::canonical::first_inexact_number`, `paging.json` against the
//! reference Server's pull handler over a real SQLite store, `upcast.json` against
//! `protocol::collection_schema` and the Server's `view_of`, and `backoff.json` against the
//! reference Client's `RetryPolicy::delay_ms`.
//!
//! Every file must hold at least one vector in every group, every vector a `description`, and
//! every number in a file must be one a double holds exactly (chapter 03 "Numbers"); numbers a
//! port must refuse appear only inside strings. On a mismatch the test names the vector and
//! prints what the code computes, so a deliberate change of a rule (a spec change) can update
//! the file in the same commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use driftless_client::RetryPolicy;
use driftless_protocol::canonical::{first_inexact_number, to_canonical_string};
use driftless_protocol::collection_schema::{
    CollectionSchema, MigrationStep, Policy, SchemaHistory,
};
use driftless_protocol::hlc::{step_back_target, Clock, Hlc};
use driftless_protocol::merge::{check_effect, RecordState};
use driftless_protocol::messages::{Effect, Mutation};
use driftless_server::faults::Faults;
use driftless_server::service::{encode_cursor, view_of, Caller, Config, WallClock};
use serde_json::{json, Value};

/// Reads `spec/vectors/{area}.json`, checks its shape and its numbers, and returns it.
fn load(area: &str, groups: &[&str]) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("spec/vectors")
        .join(format!("{area}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    assert_eq!(
        first_inexact_number(&text),
        None,
        "{area}.json holds a number a double cannot hold exactly; put numbers a port must refuse in strings"
    );
    let file: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{area}.json: {e}"));
    assert!(
        file["description"].as_str().is_some_and(|d| !d.is_empty()),
        "{area}.json has no description"
    );
    let mut total = 0;
    for g in groups {
        let vectors = file[g]
            .as_array()
            .unwrap_or_else(|| panic!("{area}.json has no array {g:?}"));
        assert!(
            !vectors.is_empty(),
            "{area}.json: group {g:?} has no vectors"
        );
        for v in vectors {
            assert!(
                v["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{area}.json: a vector of {g:?} has no description: {v}"
            );
        }
        total += vectors.len();
    }
    assert!(total > 0, "{area}.json has no vectors");
    file
}

/// Fails with every mismatch, each naming its vector.
fn report(area: &str, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} vector(s) of spec/vectors/{area}.json differ from the code:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn hlc(v: &Value) -> Hlc {
    v.as_str()
        .unwrap_or_else(|| panic!("{v} is not an HLC string"))
        .parse()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("{v} is not a string"))
}

#[test]
fn hlc_vectors_match_the_clock() {
    let file = load("hlc", &["clock", "step_back", "order", "invalid"]);
    let mut failures = Vec::new();
    for v in file["clock"].as_array().unwrap() {
        let d = text(&v["description"]);
        let mut clock = match &v["start"] {
            Value::Null => Clock::new(text(&v["node"])).unwrap(),
            start => Clock::resume(&hlc(start)),
        };
        for (i, step) in v["steps"].as_array().unwrap().iter().enumerate() {
            let got = if let Some(wall) = step.get("issue") {
                clock.issue(wall.as_u64().unwrap())
            } else {
                clock.merge(&hlc(&step["merge"]), step["wall_ms"].as_u64().unwrap())
            };
            if got.to_string() != text(&step["expect"]) {
                failures.push(format!("clock {d:?} step {i}: got {got}"));
            }
        }
    }
    for v in file["step_back"].as_array().unwrap() {
        let d = text(&v["description"]);
        let counted: Vec<Hlc> = v["counted"].as_array().unwrap().iter().map(hlc).collect();
        let to = step_back_target(&hlc(&v["current"]), &hlc(&v["server_clock"]), &counted);
        let got = to.as_ref().map(|h| h.to_string());
        if got.as_deref() != v["expect"].as_str() {
            failures.push(format!("step_back {d:?}: got {got:?}"));
            continue;
        }
        let next = &v["next"];
        let mut clock = Clock::resume(to.as_ref().unwrap_or(&hlc(&v["current"])));
        let issued = clock.issue(next["issue"].as_u64().unwrap());
        if issued.to_string() != text(&next["expect"]) {
            failures.push(format!("step_back {d:?}: next issue got {issued}"));
        }
    }
    for v in file["order"].as_array().unwrap() {
        let (less, greater) = (text(&v["less"]), text(&v["greater"]));
        if !(hlc(&v["less"]) < hlc(&v["greater"]) && less.as_bytes() < greater.as_bytes()) {
            failures.push(format!("order {:?}", text(&v["description"])));
        }
    }
    for v in file["invalid"].as_array().unwrap() {
        if text(&v["text"]).parse::<Hlc>().is_ok() {
            failures.push(format!("invalid {:?} parsed", text(&v["description"])));
        }
    }
    report("hlc", failures);
}

/// The Policy of each Field named in `policies`; `lww` for the rest.
fn policies(v: &Value) -> BTreeMap<String, Policy> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

fn mutation(m: &Value, seq: usize, collection: &str) -> Mutation {
    let mut body = m.clone();
    body["seq"] = json!(seq);
    body["collection"] = json!(collection);
    body["record_id"] = json!("r1");
    serde_json::from_value(body).unwrap_or_else(|e| panic!("{e}: {m}"))
}

/// The Record as a port compares it: canonical JSON of `exists`, `value` and `conflicts`.
fn record_text(exists: bool, value: &serde_json::Map<String, Value>, conflicts: Value) -> String {
    to_canonical_string(&json!({ "exists": exists, "value": value, "conflicts": conflicts }))
}

#[test]
fn merge_vectors_match_the_definition() {
    let file = load("merge", &["records", "numbers", "effect_checks"]);
    let mut failures = Vec::new();
    for v in file["records"].as_array().unwrap() {
        let d = text(&v["description"]);
        let pol = policies(&v["policies"]);
        let policy = |f: &str| pol.get(f).copied().unwrap_or_default();
        let ms: Vec<Mutation> = v["mutations"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, m)| mutation(m, i + 1, "items"))
            .collect();
        for m in &ms {
            assert_eq!(check_effect(&m.effect, policy), Ok(()), "{d}: {}", m.op_id);
        }
        // Every rotation and its reverse: the state is a function of the set (`[MERGE-1]`).
        let mut states = Vec::new();
        for r in 0..ms.len() {
            let mut order: Vec<&Mutation> = ms.iter().cycle().skip(r).take(ms.len()).collect();
            for _ in 0..2 {
                let mut s = RecordState::default();
                order.iter().for_each(|m| s.apply(m));
                states.push(s);
                order.reverse();
            }
        }
        assert!(
            states.windows(2).all(|w| w[0] == w[1]),
            "{d}: order matters"
        );
        let m = states[0].materialize(policy, &BTreeMap::new());
        let got = record_text(m.exists, &m.value, json!(m.conflicts));
        let e = &v["expect"];
        let want = record_text(
            e["exists"].as_bool().unwrap(),
            e["value"].as_object().unwrap(),
            e["conflicts"].clone(),
        );
        if got != want {
            failures.push(format!("records {d:?}: got {got}"));
        }
    }
    for v in file["numbers"].as_array().unwrap() {
        let got = first_inexact_number(text(&v["mutation"]));
        if got != v["inexact"].as_str() {
            failures.push(format!(
                "numbers {:?}: got {got:?}",
                text(&v["description"])
            ));
        }
        // Every accepted text is a Mutation; a refused one may hold a number no parser takes.
        if got.is_none() && serde_json::from_str::<Mutation>(text(&v["mutation"])).is_err() {
            failures.push(format!(
                "numbers {:?}: not a Mutation",
                text(&v["description"])
            ));
        }
    }
    for v in file["effect_checks"].as_array().unwrap() {
        let pol = policies(&v["policies"]);
        let effect: Effect = serde_json::from_value(v["effect"].clone()).unwrap();
        let got = check_effect(&effect, |f| pol.get(f).copied().unwrap_or_default())
            .err()
            .map(|e| e.problem.code());
        if got != v["problem"].as_str() {
            failures.push(format!(
                "effect_checks {:?}: got {got:?}",
                text(&v["description"])
            ));
        }
    }
    report("merge", failures);
}

/// The wall clock of the paging Server: 2026-01-01T00:00:01Z, after every HLC of the vectors.
struct Fixed;
impl WallClock for Fixed {
    fn now_ms(&self) -> u64 {
        1_767_225_601_000
    }
}

#[test]
fn paging_vectors_match_the_server() {
    let file = load("paging", &["spaces"]);
    let dir = tempfile::tempdir().unwrap();
    let app = driftless_server::open_with_clock(
        dir.path(),
        Config::default(),
        Faults::default(),
        Arc::new(Fixed),
    )
    .unwrap();
    let service = app.service.clone();
    let caller = Caller {
        user: "vectors".into(),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut failures = Vec::new();
    for (n, v) in file["spaces"].as_array().unwrap().iter().enumerate() {
        let d = text(&v["description"]);
        let space = format!("vectors-{n}");
        let mut clock = Clock::new("client-a").unwrap();
        let mut seq = 0;
        for (i, step) in v["steps"].as_array().unwrap().iter().enumerate() {
            if let Some(w) = step.get("write") {
                seq += 1;
                let body = json!({ "client_id": "client-a", "mutations": [{
                    "op_id": format!("op-{n:03}-{seq:04}"), "seq": seq,
                    "collection": "items", "record_id": w["id"],
                    "hlc": clock.issue(Fixed.now_ms()).to_string(), "effect": w["effect"],
                }]});
                let resp = rt
                    .block_on(service.push(&space, &caller, body.to_string().as_bytes()))
                    .unwrap_or_else(|p| panic!("{d}: push refused: {p:?}"));
                let result = serde_json::to_value(&resp.results[0]).unwrap();
                if result["status"] != "applied" || result["change_seq"] != step["change_seq"] {
                    failures.push(format!("paging {d:?} step {i}: write got {result}"));
                }
            } else {
                let p = &step["pull"];
                let after = p["after"].as_u64().unwrap();
                let cursor = (after > 0).then(|| encode_cursor(&space, after));
                let limit = p["limit"].to_string();
                let page = rt
                    .block_on(service.pull(&space, cursor.as_deref(), Some(&limit), None))
                    .unwrap_or_else(|p| panic!("{d}: pull refused: {p:?}"));
                let records: Vec<Value> = page
                    .records
                    .iter()
                    .map(|r| json!({"id": r.id, "change_seq": r.change_seq, "deleted": r.deleted}))
                    .collect();
                let got =
                    json!({"records": records, "through": page.through, "has_more": page.has_more});
                if got != step["expect"] {
                    failures.push(format!("paging {d:?} step {i}: got {got}"));
                }
            }
        }
    }
    report("paging", failures);
}

#[test]
fn upcast_vectors_match_the_schema_history() {
    let file = load("upcast", &["effects", "records"]);
    let versions: Vec<CollectionSchema> = serde_json::from_value(file["versions"].clone()).unwrap();
    for (i, v) in versions.iter().enumerate() {
        let previous = i.checked_sub(1).map(|p| &versions[p]);
        assert_eq!(
            v.check(previous),
            Ok(()),
            "version {} is invalid",
            v.version
        );
    }
    let history = SchemaHistory::new(versions).unwrap();
    let mut failures = Vec::new();
    for v in file["effects"].as_array().unwrap() {
        let d = text(&v["description"]);
        let effect: Effect = serde_json::from_value(v["effect"].clone()).unwrap();
        let got = match history.upcast(&effect, v["written_under"].as_u64().unwrap() as u32) {
            Ok(e) => json!({ "expect": e }),
            Err(_) => json!({ "expect_error": "unknown-schema-version" }),
        };
        let want = match v.get("expect_error") {
            Some(e) => json!({ "expect_error": e }),
            None => json!({ "expect": v["expect"] }),
        };
        if got != want {
            failures.push(format!("effects {d:?}: got {got}"));
        }
    }
    for v in file["records"].as_array().unwrap() {
        let d = text(&v["description"]);
        let mut state = RecordState::default();
        for (i, m) in v["mutations"].as_array().unwrap().iter().enumerate() {
            state.apply(&mutation(m, i + 1, "tasks"));
        }
        // What the Server does to stored Records as each later version is registered.
        let under = v["written_under"].as_u64().unwrap() as u32;
        for step in history.steps_after(under) {
            match step {
                MigrationStep::RenameField { from, to } => {
                    state.rename_field(from.as_str(), to.as_str())
                }
                MigrationStep::RemoveField { field } => state.remove_field(field.as_str()),
                MigrationStep::AddField { .. } => {}
            }
        }
        let view = view_of("tasks", "r1", &state, &history, &Faults::default());
        let got = record_text(
            view.exists,
            &view.value.unwrap_or_default(),
            json!(view.conflicts.unwrap_or_default()),
        );
        let e = &v["expect"];
        let want = record_text(
            e["exists"].as_bool().unwrap(),
            e["value"].as_object().unwrap(),
            e["conflicts"].clone(),
        );
        if got != want {
            failures.push(format!("records {d:?}: got {got}"));
        }
    }
    report("upcast", failures);
}

/// SplitMix64 (Steele, Lea and Flood 2014), the seeded source of `backoff.json`'s `seeded`
/// vectors: small enough to write in any language.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn u64_text(v: &Value) -> u64 {
    text(v)
        .parse()
        .unwrap_or_else(|e| panic!("{v} is not a decimal u64: {e}"))
}

#[test]
fn backoff_vectors_match_the_retry_policy() {
    let file = load("backoff", &["draws", "seeded"]);
    let mut failures = Vec::new();
    for v in file["draws"]
        .as_array()
        .unwrap()
        .iter()
        .chain(file["seeded"].as_array().unwrap())
    {
        let d = text(&v["description"]);
        let p = &v["policy"];
        let policy = RetryPolicy {
            initial_delay_ms: p["initial_delay_ms"].as_u64().unwrap(),
            delay_ms_cap: p["delay_ms_cap"].as_u64().unwrap(),
            multiplier: p["multiplier"].as_u64().unwrap(),
            attempts_per_sync: 1,
        };
        let mut source = v.get("seed").map(u64_text);
        for (i, draw) in v["draws"].as_array().unwrap().iter().enumerate() {
            let random = u64_text(&draw["random_u64"]);
            if let Some(state) = source.as_mut() {
                let expected = splitmix64(state);
                if random != expected {
                    failures.push(format!(
                        "seeded {d:?} draw {i}: the source gives {expected}"
                    ));
                }
            }
            let failures_before = draw["failures"].as_u64().unwrap() as u32;
            let bound = policy.bound_ms(failures_before);
            let delay = policy.delay_ms(failures_before, draw["retry_after_s"].as_u64(), random);
            if json!(bound) != draw["bound_ms"] || json!(delay) != draw["delay_ms"] {
                failures.push(format!(
                    "{d:?} draw {i}: got bound_ms {bound}, delay_ms {delay}"
                ));
            }
        }
    }
    report("backoff", failures);
}
