//! Several clients push to the same Records at once; the server must end in exactly the state the
//! merge rules predict from the set of Mutations, under every Policy.

mod common;

use std::collections::BTreeMap;

use common::server::{agent, call, mutation, now_ms, seed, token, Rng, ServerProcess};
use driftless_protocol::checksum::{to_hex, SpaceChecksums};
use driftless_protocol::collection_schema::Policy;
use driftless_protocol::merge::RecordState;
use driftless_protocol::messages::Mutation;
use serde_json::{json, Value};

const SPACE: &str = "together";
const CLIENTS: usize = 4;
const RECORDS: [&str; 3] = ["r0", "r1", "r2"];

fn policy(field: &str) -> Policy {
    match field {
        "likes" => Policy::Counter,
        "tags" => Policy::AddWinsSet,
        "body" => Policy::KeepBoth,
        _ => Policy::Lww,
    }
}

fn effect(rng: &mut Rng) -> Value {
    let word = |rng: &mut Rng| ["a", "b", "c"][rng.below(3) as usize];
    match rng.below(9) {
        0 => json!({"kind": "put", "value": {"title": word(rng), "n": rng.below(10)}}),
        1 => json!({"kind": "patch", "set": {"title": word(rng)}}),
        2 => json!({"kind": "patch", "unset": ["n"]}),
        3 => json!({"kind": "increment", "field": "likes", "by": 1 + rng.below(3)}),
        4 => json!({"kind": "increment", "field": "n", "by": 1}),
        5 => json!({"kind": "set_add", "field": "tags", "elements": [word(rng)]}),
        6 => json!({"kind": "set_remove", "field": "tags", "elements": [word(rng)]}),
        7 => json!({"kind": "patch", "set": {"body": word(rng)}}),
        _ if rng.below(4) == 0 => json!({"kind": "delete"}),
        _ => json!({"kind": "resolve", "field": "body", "value": word(rng)}),
    }
}

#[test]
fn concurrent_clients_converge_to_the_merge_model() {
    let root_seed = seed("server_concurrency");
    let dir = tempfile::tempdir().unwrap();
    let token = token(dir.path(), "team", SPACE, "admin");
    let server = ServerProcess::start(dir.path(), &[]);
    let doc = json!({"collection": "notes", "version": 1, "schema": {"type": "object"},
        "fields": {"likes": {"policy": "counter"}, "tags": {"policy": "add_wins_set"}, "body": {"policy": "keep_both"}}});
    let url = format!(
        "{}/v1/spaces/{SPACE}/collections/notes/schemas/1",
        server.base
    );
    let put = agent()
        .put(&url)
        .header("authorization", &format!("Bearer {token}"))
        .send_json(&doc)
        .unwrap();
    assert_eq!(put.status().as_u16(), 201);

    let handles: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let base = server.base.clone();
            let token = token.clone();
            std::thread::spawn(move || {
                let mut rng =
                    Rng((root_seed ^ (c as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1);
                let agent = agent();
                let client = format!("client-{c}");
                let mut sent = Vec::new();
                let base_ms = now_ms() - 2_000;
                for batch in 0..15 {
                    let ms: Vec<Value> = (0..1 + rng.below(6))
                        .map(|i| {
                            let n = batch * 10 + i;
                            // Physical times overlap across clients, so ties are broken by node.
                            let hlc =
                                format!("{:012x}-{:04x}-{client}", base_ms + rng.below(50), n);
                            let mut m = mutation(
                                &format!("{client}-op-{n}"),
                                n + 1,
                                "notes",
                                RECORDS[rng.below(3) as usize],
                                &hlc,
                                effect(&mut rng),
                            );
                            m["schema_version"] = json!(1);
                            m
                        })
                        .collect();
                    let body = json!({"client_id": client, "mutations": ms});
                    let (status, resp) = call(
                        &agent,
                        "POST",
                        &format!("{base}/v1/spaces/{SPACE}/push"),
                        &token,
                        Some(&body),
                    )
                    .unwrap();
                    assert_eq!(status, 200, "{resp}");
                    for (m, r) in body["mutations"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .zip(resp["results"].as_array().unwrap())
                    {
                        assert_eq!(r["status"], "applied", "{m} -> {r}");
                        sent.push(m.clone());
                    }
                }
                sent
            })
        })
        .collect();
    let all: Vec<Value> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(all.len() > 100);

    // The model: each Record's state is the join of its Mutations, in any order.
    let mut model: BTreeMap<&str, RecordState> = BTreeMap::new();
    for m in &all {
        let parsed: Mutation = serde_json::from_value(m.clone()).unwrap();
        model
            .entry(
                RECORDS
                    .iter()
                    .find(|r| **r == parsed.record_id.as_str())
                    .unwrap(),
            )
            .or_default()
            .apply(&parsed);
    }
    let agent = agent();
    let mut sums = SpaceChecksums::default();
    for (id, state) in &model {
        let expected = state.materialize(policy, &BTreeMap::new());
        let (status, rec) = call(
            &agent,
            "GET",
            &format!("{}/v1/spaces/{SPACE}/records/notes/{id}", server.base),
            &token,
            None,
        )
        .unwrap();
        assert_eq!(status, 200);
        assert_eq!(rec["deleted"], !expected.exists, "{id}: {rec}");
        if expected.exists {
            assert_eq!(rec["value"], Value::Object(expected.value.clone()), "{id}");
            let conflicts = if expected.conflicts.is_empty() {
                Value::Null
            } else {
                serde_json::to_value(&expected.conflicts).unwrap()
            };
            assert_eq!(
                rec.get("conflicts").cloned().unwrap_or(Value::Null),
                conflicts,
                "{id}"
            );
            sums.add("notes", id, &expected.value);
        }
    }
    let (_, server_sums) = call(
        &agent,
        "GET",
        &format!("{}/v1/spaces/{SPACE}/checksums", server.base),
        &token,
        None,
    )
    .unwrap();
    assert_eq!(server_sums["space_digest"], to_hex(&sums.space_digest()));
}
