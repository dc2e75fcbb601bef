//! The checks of the crash tests (tests/server_crash.rs on SQLite, tests/postgres_instances.rs
//! on PostgreSQL): batches of puts and increments, and the invariants after a SIGKILL: every
//! acknowledged Mutation present exactly once, no batch half-applied, increments exact.

use std::collections::{BTreeMap, BTreeSet};

use super::server::{agent, call, mutation, now_ms, Rng};
use serde_json::{json, Value};

/// The Space the crash tests push to.
pub const SPACE: &str = "crash";

/// One pushed batch and what the pusher learned.
pub struct Batch {
    pub id: String,
    pub mutations: Vec<Value>,
}

pub enum Event {
    Acked(Batch, Value),
    Lost(Batch),
}

pub fn batch(rng: &mut Rng, round: usize, writer: usize, n: usize) -> Batch {
    let id = format!("r{round}-w{writer}-b{n}");
    let client = format!("client-{writer}");
    let size = 1 + rng.below(12) as usize;
    let mutations = (0..size)
        .map(|i| {
            let op = format!("{id}-m{i}");
            let hlc = format!("{:012x}-{:04x}-{client}", now_ms(), i);
            let effect = if rng.below(2) == 0 {
                json!({"kind": "increment", "field": "total", "by": 1 + rng.below(5)})
            } else {
                json!({"kind": "put", "value": {"batch": id, "i": i}})
            };
            let record = if effect["kind"] == "increment" {
                "counter".to_owned()
            } else {
                op.clone()
            };
            mutation(
                &op,
                (n * 100 + i) as u64 + 1,
                "things",
                &record,
                &hlc,
                effect,
            )
        })
        .collect();
    Batch { id, mutations }
}

/// The fate of every Op ID, from the manifest.
pub fn manifest(base: &str, token: &str, op_ids: &[String]) -> BTreeMap<String, Value> {
    let agent = agent();
    let mut fates = BTreeMap::new();
    for chunk in op_ids.chunks(500) {
        let (status, body) = call(
            &agent,
            "POST",
            &format!("{base}/v1/spaces/{SPACE}/manifest"),
            token,
            Some(&json!({"op_ids": chunk})),
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
        for e in body["entries"].as_array().unwrap() {
            fates.insert(e["op_id"].as_str().unwrap().to_owned(), e.clone());
        }
    }
    fates
}

/// Checks the invariants against a freshly restarted server.
pub fn verify(base: &str, token: &str, batches: &[(Batch, Option<Value>)]) -> (usize, usize) {
    let ids: Vec<String> = batches
        .iter()
        .flat_map(|(b, _)| {
            b.mutations
                .iter()
                .map(|m| m["op_id"].as_str().unwrap().to_owned())
        })
        .collect();
    let fates = manifest(base, token, &ids);
    let mut expected_total = 0u64;
    let mut applied_puts = BTreeSet::new();
    let (mut acked, mut lost_applied) = (0, 0);
    for (b, ack) in batches {
        let statuses: BTreeSet<&str> = b
            .mutations
            .iter()
            .map(|m| {
                fates[m["op_id"].as_str().unwrap()]["status"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert!(
            statuses.len() == 1,
            "batch {} is half-applied: {statuses:?}",
            b.id
        );
        let applied = statuses.contains("applied");
        if let Some(resp) = ack {
            acked += 1;
            assert!(applied, "acknowledged batch {} was lost", b.id);
            for (m, result) in b.mutations.iter().zip(resp["results"].as_array().unwrap()) {
                let fate = &fates[m["op_id"].as_str().unwrap()];
                let original = if result["status"] == "duplicate" {
                    &result["original"]
                } else {
                    result
                };
                assert_eq!(
                    fate, original,
                    "the manifest disagrees with the acknowledgement"
                );
            }
        } else if applied {
            lost_applied += 1;
        }
        if applied {
            for m in &b.mutations {
                match m["effect"]["kind"].as_str().unwrap() {
                    "increment" => expected_total += m["effect"]["by"].as_u64().unwrap(),
                    _ => {
                        applied_puts.insert(m["record_id"].as_str().unwrap().to_owned());
                    }
                }
            }
        }
    }
    let agent = agent();
    let (status, counter) = call(
        &agent,
        "GET",
        &format!("{base}/v1/spaces/{SPACE}/records/things/counter"),
        token,
        None,
    )
    .unwrap();
    let total = if status == 404 {
        0
    } else {
        counter["value"]["total"].as_u64().unwrap()
    };
    assert_eq!(total, expected_total, "increments lost or doubled");
    let mut present = BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let (_, page) = call(
            &agent,
            "GET",
            &format!("{base}/v1/spaces/{SPACE}/pull?limit=1000{cursor}"),
            token,
            None,
        )
        .unwrap();
        for r in page["records"].as_array().unwrap() {
            if r["id"] != "counter" {
                present.insert(r["id"].as_str().unwrap().to_owned());
            }
        }
        if page["has_more"] == false {
            break;
        }
        cursor = format!("&cursor={}", page["cursor"].as_str().unwrap());
    }
    assert_eq!(
        present, applied_puts,
        "records present differ from applied puts"
    );
    (acked, lost_applied)
}
