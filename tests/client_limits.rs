//! Faults 1 and 2 of issue 11: one write too deep or too large for the Server's announced
//! limits must not wedge the Outbox nor cause a retry storm (`[CLIENT-16]`..`[CLIENT-20]`).

mod common;

use std::time::Duration;

use common::server::{agent, call, token, ServerProcess};
use driftless_client::{Client, ClientError, Config, RetryPolicy};
use serde_json::{json, Value};

fn client(dir: &std::path::Path, server: &str, token: &str) -> Client {
    let cfg = Config {
        server: server.into(),
        token: token.into(),
        space: "demo".into(),
        retry: RetryPolicy {
            initial_delay_ms: 1,
            delay_ms_cap: 20,
            multiplier: 2,
            attempts_per_sync: 2,
        },
        batch_max: 50,
        timeout: Duration::from_secs(30),
    };
    Client::open(dir, cfg).unwrap()
}

fn nested(levels: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..levels {
        v = json!({ "a": v });
    }
    v
}

fn put(c: &mut Client, id: &str, value: Value) -> Result<String, ClientError> {
    c.write("tasks", id, json!({"kind": "put", "value": value}), 0)
}

fn on_server(base: &str, t: &str, id: &str) -> u16 {
    call(
        &agent(),
        "GET",
        &format!("{base}/v1/spaces/demo/records/tasks/{id}"),
        t,
        None,
    )
    .unwrap()
    .0
}

fn counter(c: &Client, name: &str) -> i64 {
    let s = c.status().unwrap();
    s.counters
        .iter()
        .find(|(k, _)| k == name)
        .map_or(0, |(_, v)| *v)
}

#[test]
fn a_write_too_deep_is_dead_lettered_alone_and_the_others_apply() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "write");
    let server = ServerProcess::start(&data, &[]);
    // A Client that never heard from the Server cannot check limits when writing: the Server's
    // whole-request refusal is bisected until the deep write is alone.
    let mut c = client(&dir.path().join("c"), &server.base, &t);
    put(&mut c, "ok1", json!({"title": "first"})).unwrap();
    let deep = put(&mut c, "deep", nested(29)).unwrap();
    put(&mut c, "ok2", json!({"title": "second"})).unwrap();
    let r = c.sync().unwrap();
    assert_eq!((r.acknowledged, r.rejected), (2, 1));
    assert_eq!(r.dead_lettered, vec![deep.clone()]);
    let s = c.status().unwrap();
    assert_eq!((s.pending, s.rejected), (0, 1));
    assert_eq!(on_server(&server.base, &t, "ok1"), 200);
    assert_eq!(on_server(&server.base, &t, "ok2"), 200);
    assert_eq!(on_server(&server.base, &t, "deep"), 404);
    let dead = c.dead_letter_list().unwrap();
    assert_eq!(dead[0].op_id, deep);
    assert_eq!(
        dead[0].problem["type"],
        "urn:driftless:problem:invalid-json"
    );
    assert!(dead[0].at_ms.is_some());
}

#[test]
fn a_write_too_deep_is_refused_when_made_once_the_limits_are_known() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "write");
    let server = ServerProcess::start(&data, &[]);
    let store = dir.path().join("c");
    client(&store, &server.base, &t).sync().unwrap();
    drop(server);
    // Offline now, in a new handle: the limits were kept in the store.
    let mut c = client(&store, "http://127.0.0.1:9", &t);
    put(&mut c, "ok", nested(28)).unwrap();
    let e = put(&mut c, "deep", nested(29)).unwrap_err();
    assert!(matches!(e, ClientError::Invalid(_)), "{e:?}");
    assert!(e.to_string().contains("nests 33 levels"), "{e}");
    assert_eq!(
        c.status().unwrap().pending,
        1,
        "the refused write left nothing behind"
    );
}

#[test]
fn an_oversized_write_is_dead_lettered_unsent_without_retries() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "write");
    let server = ServerProcess::start(&data, &[]);
    let mut c = client(&dir.path().join("c"), &server.base, &t);
    put(&mut c, "small1", json!({"title": "a"})).unwrap();
    let big = put(&mut c, "big", json!({"blob": "x".repeat(1_150_000)})).unwrap();
    put(&mut c, "small2", json!({"title": "b"})).unwrap();
    let r = c.sync().unwrap();
    assert_eq!((r.acknowledged, r.rejected), (2, 1));
    assert_eq!(counter(&c, "retries"), 0);
    let dead = c.dead_letter_list().unwrap();
    assert_eq!(dead[0].op_id, big);
    assert_eq!(
        dead[0].problem["type"],
        "urn:driftless:problem:payload-too-large"
    );
    assert!(
        dead[0].problem["detail"]
            .as_str()
            .unwrap()
            .contains("not sent"),
        "{}",
        dead[0].problem
    );
    assert_eq!(on_server(&server.base, &t, "small2"), 200);
}

#[test]
fn batches_are_cut_by_encoded_size() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "write");
    let server = ServerProcess::start(&data, &[]);
    let mut c = client(&dir.path().join("c"), &server.base, &t);
    // Five writes of 400 kB each: any two fit in the 1 MiB body limit, three do not.
    for i in 0..5 {
        put(
            &mut c,
            &format!("r{i}"),
            json!({"blob": "y".repeat(400_000)}),
        )
        .unwrap();
    }
    let r = c.sync().unwrap();
    assert_eq!((r.acknowledged, r.rejected), (5, 0));
    assert_eq!(counter(&c, "retries"), 0);
    for i in 0..5 {
        assert_eq!(on_server(&server.base, &t, &format!("r{i}")), 200);
    }
}

#[test]
fn a_store_from_before_dead_letter_times_opens_with_its_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("c");
    drop(client(&store, "http://127.0.0.1:9", "t"));
    // The store as an older client left it: a dead letter and no `at_ms` column.
    let db = rusqlite::Connection::open(store.join("client.sqlite3")).unwrap();
    db.execute_batch(
        "ALTER TABLE dead DROP COLUMN at_ms;
         INSERT INTO dead (op_id, space, body, problem) VALUES ('op-old', 'demo', '{}', '{}');",
    )
    .unwrap();
    drop(db);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                client(&store, "http://127.0.0.1:9", "t")
                    .dead_letter_list()
                    .unwrap()
            })
        })
        .collect();
    for h in handles {
        let dead = h.join().unwrap();
        assert_eq!((dead[0].op_id.as_str(), dead[0].at_ms), ("op-old", None));
    }
}
