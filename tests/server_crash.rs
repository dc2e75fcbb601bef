//! Crash safety of the reference server: the real binary is SIGKILLed at random moments while
//! several clients push, then restarted on the same data. Every acknowledged Mutation must be
//! there exactly once, no batch may be half-applied, and increments are neither lost nor doubled.

mod common;

use std::sync::mpsc;

use common::crash::{batch, verify, Batch, Event, SPACE};
use common::server::{agent, call, seed, token, Rng, ServerProcess};
use serde_json::{json, Value};

const ROUNDS: usize = 24;
const WRITERS: usize = 3;

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
