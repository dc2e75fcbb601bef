//! Crash safety of the reference client: `driftless client sync` is SIGKILLed at random progress
//! points, over and over, while new writes keep arriving; then a last sync finishes. The server
//! must hold every record exactly once with its final value, and increments must be neither lost
//! nor doubled. Also: once everything is acknowledged, the client's view equals the server's.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::server::{agent, call, client_cli, seed, token, Rng, ServerProcess};
use driftless_client::{Client, Config, RetryPolicy};
use proptest::prelude::*;
use serde_json::{json, Value};

const ROUNDS: usize = 24;

fn library(store: &std::path::Path, server: &str, token: &str, space: &str) -> Client {
    let retry = RetryPolicy {
        initial_delay_ms: 1,
        delay_ms_cap: 20,
        multiplier: 2,
        attempts_per_sync: 3,
    };
    let cfg = Config {
        server: server.into(),
        token: token.into(),
        space: space.into(),
        retry,
        batch_max: 5,
        timeout: Duration::from_secs(30),
    };
    Client::open(store, cfg).unwrap()
}

#[test]
fn sigkill_during_sync_loses_and_doubles_nothing() {
    let mut rng = Rng(seed("client_crash"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "crash", "write");
    let server = ServerProcess::start(&data, &[]);
    let store = dir.path().join("client");
    let mut expected_total = 0u64;
    let mut puts = Vec::new();
    let mut kills = 0;
    for round in 0..ROUNDS {
        {
            let mut c = library(&store, &server.base, &t, "crash");
            for i in 0..10 {
                let by = 1 + rng.below(5);
                expected_total += by;
                c.write(
                    "things",
                    "counter",
                    json!({"kind": "increment", "field": "total", "by": by}),
                    0,
                )
                .unwrap();
                let id = format!("r{round}-{i}");
                c.write(
                    "things",
                    &id,
                    json!({"kind": "put", "value": {"round": round, "i": i}}),
                    0,
                )
                .unwrap();
                puts.push(id);
            }
        }
        let mut child = client_cli(&store, &server.base, &t, "crash")
            .args(["--batch-max", "5", "--progress", "sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A round emits at least five events (four pushes of five, one pull): stop before that.
        let threshold = 1 + rng.below(4) as usize;
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = 0;
        while let Some(Ok(line)) = lines.next() {
            // `--progress` writes one JSON object per event.
            if line.contains("\"event\":") {
                seen += 1;
                if seen == threshold {
                    break;
                }
            }
        }
        // SIGKILL at that point (if the sync already finished, the kill finds nothing to stop).
        let _ = child.kill();
        let status = child.wait().unwrap();
        if !status.success() {
            kills += 1;
        }
    }
    let mut c = library(&store, &server.base, &t, "crash");
    c.sync().unwrap();
    assert_eq!(c.status().unwrap().pending, 0);
    assert_eq!(c.status().unwrap().rejected, 0);
    let (_, counter) = call(
        &agent(),
        "GET",
        &format!("{}/v1/spaces/crash/records/things/counter", server.base),
        &t,
        None,
    )
    .unwrap();
    assert_eq!(
        counter["value"]["total"].as_u64(),
        Some(expected_total),
        "increments lost or doubled"
    );
    let mut present = std::collections::BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let (_, page) = call(
            &agent(),
            "GET",
            &format!("{}/v1/spaces/crash/pull?limit=1000{cursor}", server.base),
            &t,
            None,
        )
        .unwrap();
        for r in page["records"].as_array().unwrap() {
            if r["id"] != "counter" {
                assert!(
                    present.insert(r["id"].as_str().unwrap().to_owned()),
                    "a record appears twice"
                );
            }
        }
        if page["has_more"] == false {
            break;
        }
        cursor = format!("&cursor={}", page["cursor"].as_str().unwrap());
    }
    let wanted: std::collections::BTreeSet<String> = puts.into_iter().collect();
    assert_eq!(present, wanted);
    eprintln!("client_crash: {kills} of {ROUNDS} syncs killed mid-way; {} records, counter {expected_total}", wanted.len());
    assert!(kills >= 20, "only {kills} syncs were killed mid-way");
}

fn effect_strategy() -> impl Strategy<Value = (u8, Value)> {
    let record = 0u8..4;
    let effect = prop_oneof![
        (0i64..5).prop_map(|n| json!({"kind": "put", "value": {"n": n, "title": "x"}})),
        "[a-c]".prop_map(|t| json!({"kind": "patch", "set": {"title": t}})),
        Just(json!({"kind": "patch", "unset": ["title"]})),
        (1i64..4).prop_map(|by| json!({"kind": "increment", "field": "n", "by": by})),
        Just(json!({"kind": "delete"})),
    ];
    (record, effect)
}

/// Once every Mutation is acknowledged, the local view after rebase equals the server's state.
///
/// 64 cases against one server, each in a fresh Space with a fresh client store. A failing case
/// is shrunk and its seed kept in `tests/client_crash.proptest-regressions` (commit it), which
/// later runs replay first.
#[test]
fn acknowledged_view_equals_server_state() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    // The first token creates the server's key; every later one is minted with it.
    token(&data, "ada", "prop-0", "write");
    let server = ServerProcess::start(&data, &[]);
    let config = ProptestConfig {
        cases: 64,
        source_file: Some(file!()),
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let case = std::cell::Cell::new(0u32);
    let strategy = (prop::collection::vec(effect_strategy(), 1..25), 1usize..8);
    let result = runner.run(&strategy, |(ops, sync_every)| {
        case.set(case.get() + 1);
        let space = format!("prop-{}", case.get());
        let t = token(&data, "ada", &space, "write");
        let store = tempfile::tempdir().unwrap();
        let mut c = library(store.path(), &server.base, &t, &space);
        for (i, (record, effect)) in ops.iter().enumerate() {
            c.write("things", &format!("r{record}"), effect.clone(), 0)
                .unwrap();
            if i % sync_every == 0 {
                c.sync().unwrap();
            }
        }
        c.sync().unwrap();
        prop_assert_eq!(c.status().unwrap().pending, 0);
        for record in 0..4u8 {
            let id = format!("r{record}");
            let url = format!("{}/v1/spaces/{space}/records/things/{id}", server.base);
            let (status, rec) = call(&agent(), "GET", &url, &t, None).unwrap();
            let server_view = if status == 200 && rec["deleted"] == false {
                Some(rec["value"].clone())
            } else {
                None
            };
            let local = c.get("things", &id).unwrap().map(Value::Object);
            prop_assert_eq!(local, server_view, "record {} of {}", id, space);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\n{runner}");
    }
    assert!(case.get() >= 64, "only {} cases ran", case.get());
}
