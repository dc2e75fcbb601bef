//! Crash safety of the reference server: the real binary is SIGKILLed at random moments while
//! several clients push, then restarted on the same data. Every acknowledged Mutation must be
//! there exactly once, no batch may be half-applied, and increments are neither lost nor doubled.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;

use common::server::{agent, call, mutation, now_ms, seed, token, Rng, ServerProcess};
use serde_json::{json, Value};

const ROUNDS: usize = 24;
const WRITERS: usize = 3;
const SPACE: &str = "crash";

/// One pushed batch and what the pusher learned.
struct Batch {
    id: String,
    mutations: Vec<Value>,
}

enum Event {
    Acked(Batch, Value),
    Lost(Batch),
}

fn batch(rng: &mut Rng, round: usize, writer: usize, n: usize) -> Batch {
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
fn manifest(base: &str, token: &str, op_ids: &[String]) -> BTreeMap<String, Value> {
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
fn verify(base: &str, token: &str, batches: &[(Batch, Option<Value>)]) -> (usize, usize) {
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

#[test]
fn sigkill_never_loses_acknowledged_writes_nor_applies_any_twice() {
    let mut rng = Rng(seed("server_crash"));
    let dir = tempfile::tempdir().unwrap();
    let token = token(dir.path(), "crasher", SPACE, "write");
    let mut batches: Vec<(Batch, Option<Value>)> = Vec::new();
    let mut kills = 0;
    for round in 0..ROUNDS {
        let server = ServerProcess::start(dir.path(), &[]);
        verify(&server.base, &token, &batches);
        // Replay every batch whose response was lost: it must come back applied or duplicate,
        // never applied twice (checked by the next verify).
        let replayer = agent();
        for (b, ack) in batches.iter_mut().filter(|(_, a)| a.is_none()) {
            let body = json!({"client_id": b.mutations[0]["hlc"].as_str().unwrap().split('-').skip(2).collect::<Vec<_>>().join("-"), "mutations": b.mutations});
            let (status, resp) = call(
                &replayer,
                "POST",
                &format!("{}/v1/spaces/{SPACE}/push", server.base),
                &token,
                Some(&body),
            )
            .unwrap();
            assert_eq!(status, 200, "{resp}");
            *ack = Some(resp);
        }
        let threshold = 1 + rng.below(8) as usize;
        let (tx, rx) = mpsc::channel::<Event>();
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let tx = tx.clone();
            let base = server.base.clone();
            let token = token.clone();
            let mut wrng = Rng(rng.next() | 1);
            writers.push(std::thread::spawn(move || {
                let agent = agent();
                for n in 0.. {
                    let b = batch(&mut wrng, round, w, n);
                    let client = format!("client-{w}");
                    let body = json!({"client_id": client, "mutations": b.mutations});
                    match call(
                        &agent,
                        "POST",
                        &format!("{base}/v1/spaces/{SPACE}/push"),
                        &token,
                        Some(&body),
                    ) {
                        Ok((200, resp)) => {
                            if tx.send(Event::Acked(b, resp)).is_err() {
                                return;
                            }
                        }
                        Ok((status, resp)) => panic!("push answered {status}: {resp}"),
                        Err(_) => {
                            let _ = tx.send(Event::Lost(b));
                            return;
                        }
                    }
                }
            }));
        }
        drop(tx);
        let mut acks = 0;
        let mut server = Some(server);
        for event in rx {
            match event {
                Event::Acked(b, resp) => {
                    batches.push((b, Some(resp)));
                    acks += 1;
                    if acks == threshold {
                        server.take().unwrap().kill();
                        kills += 1;
                    }
                }
                Event::Lost(b) => batches.push((b, None)),
            }
        }
        for w in writers {
            w.join().unwrap();
        }
        assert!(server.is_none(), "round {round} ended without a kill");
    }
    let server = ServerProcess::start(dir.path(), &[]);
    let (acked, lost_applied) = verify(&server.base, &token, &batches);
    eprintln!("server_crash: {kills} SIGKILLs, {} batches, {acked} acknowledged, {lost_applied} applied without an ack reaching the client", batches.len());
    assert!(kills >= 20);
    // Every acknowledged Mutation replayed now is a duplicate: nothing applies twice.
    let agent = agent();
    for (b, _) in batches.iter().take(50) {
        let client = b.mutations[0]["hlc"]
            .as_str()
            .unwrap()
            .split('-')
            .skip(2)
            .collect::<Vec<_>>()
            .join("-");
        let (_, resp) = call(
            &agent,
            "POST",
            &format!("{}/v1/spaces/{SPACE}/push", server.base),
            &token,
            Some(&json!({"client_id": client, "mutations": b.mutations})),
        )
        .unwrap();
        assert!(
            resp["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["status"] == "duplicate"),
            "{resp}"
        );
    }
    verify(&server.base, &token, &batches);
}
