//! The reference client end to end against the real server binary: one SQLite server, or with
//! `DRIFTLESS_E2E_INSTANCES=3` and `--features postgres` three instances on one PostgreSQL
//! database behind a round-robin proxy (`ServerProcess::start_with`, tests/common/server.rs).

mod common;

use std::time::Duration;

use common::server::{agent, call, token, ServerProcess};
use driftless_client::{Client, Config, Event, RetryPolicy};
use serde_json::{json, Map, Value};

fn quick() -> RetryPolicy {
    RetryPolicy {
        initial_delay_ms: 1,
        delay_ms_cap: 20,
        multiplier: 2,
        attempts_per_sync: 2,
    }
}

fn client(dir: &std::path::Path, server: &str, token: &str, space: &str) -> Client {
    let cfg = Config {
        server: server.into(),
        token: token.into(),
        space: space.into(),
        retry: quick(),
        batch_max: 50,
        timeout: Duration::from_secs(30),
    };
    Client::open(dir, cfg).unwrap()
}

fn server_record(base: &str, token: &str, space: &str, id: &str) -> Value {
    call(
        &agent(),
        "GET",
        &format!("{base}/v1/spaces/{space}/records/notes/{id}"),
        token,
        None,
    )
    .unwrap()
    .1
}

/// Receives events until one satisfies `done`. A live task emits events all the time, so a
/// per-event timeout alone could wait forever for one that never comes: the whole wait is bounded.
fn wait_for(rx: &std::sync::mpsc::Receiver<Event>, mut done: impl FnMut(&Event) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) if done(&e) => return,
            Ok(_) => {}
            Err(e) => panic!("the awaited event never came: {e}"),
        }
    }
}

/// Compacts the Space `demo` on demand (`POST .../compact`, admin Token).
fn compact(base: &str, admin: &str) {
    let (status, body) = call(
        &agent(),
        "POST",
        &format!("{base}/v1/spaces/demo/compact"),
        admin,
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn writes_work_offline_and_sync_later() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "write");
    // Nothing listens on this port: the server is "down".
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let store = dir.path().join("client");
    {
        let mut c = client(&store, &down, &t, "demo");
        c.write(
            "notes",
            "n1",
            json!({"kind": "put", "value": {"title": "offline"}}),
            0,
        )
        .unwrap();
        c.write(
            "notes",
            "n1",
            json!({"kind": "increment", "field": "n", "by": 2}),
            0,
        )
        .unwrap();
        assert_eq!(
            c.get("notes", "n1").unwrap(),
            Some(obj(json!({"title": "offline", "n": 2})))
        );
        assert!(
            c.sync().is_err(),
            "sync cannot finish while the server is down"
        );
        assert_eq!(c.status().unwrap().pending, 2, "nothing is lost");
    }
    let server = ServerProcess::start(&data, &[]);
    let mut c = client(&store, &server.base, &t, "demo");
    let report = c.sync().unwrap();
    assert_eq!(report.acknowledged, 2);
    assert_eq!(c.status().unwrap().pending, 0);
    assert_eq!(
        server_record(&server.base, &t, "demo", "n1")["value"],
        json!({"title": "offline", "n": 2})
    );
}

#[test]
fn two_clients_converge_under_every_policy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "admin");
    let server = ServerProcess::start(&data, &[]);
    let mut a = client(&dir.path().join("a"), &server.base, &t, "demo");
    let mut b = client(&dir.path().join("b"), &server.base, &t, "demo");
    let doc = json!({"collection": "notes", "version": 1, "schema": {"type": "object"},
        "fields": {"likes": {"policy": "counter"}, "tags": {"policy": "add_wins_set"}, "body": {"policy": "keep_both"}}});
    assert_eq!(a.register_schema(&doc).unwrap(), 201);
    assert_eq!(b.register_schema(&doc).unwrap(), 200);
    // a writes first; b syncs before writing, so the Driftless-Clock it merges (`[HLC-5]`,
    // `[HLC-7]`) stamps each of b's writes after each of a's. The order of the Stamps, and so
    // every expected value below, is fixed whatever the wall clocks read.
    for (c, who) in [(&mut a, "a"), (&mut b, "b")] {
        c.sync().unwrap();
        c.write(
            "notes",
            "n1",
            json!({"kind": "patch", "set": {"title": who, "body": who}}),
            0,
        )
        .unwrap();
        c.write(
            "notes",
            "n1",
            json!({"kind": "increment", "field": "likes", "by": 3}),
            0,
        )
        .unwrap();
        c.write(
            "notes",
            "n1",
            json!({"kind": "set_add", "field": "tags", "elements": [who, "shared"]}),
            0,
        )
        .unwrap();
        c.write(
            "notes",
            "n2",
            json!({"kind": "put", "value": {"from": who}}),
            0,
        )
        .unwrap();
        c.sync().unwrap();
    }
    // a removes "shared" after both adds of it: the remove's Stamp is the greatest.
    a.sync().unwrap();
    a.write(
        "notes",
        "n1",
        json!({"kind": "set_remove", "field": "tags", "elements": ["shared"]}),
        0,
    )
    .unwrap();
    a.sync().unwrap();
    b.sync().unwrap();
    // Derived by hand from the writes and chapter 03's rules, not from the merge code:
    // title (lww): b's patch is the latest; likes (counter): 3 + 3; tags (add_wins_set): "a"
    // and "b" added, "shared" removed after its last add, sorted; body (keep_both): one
    // sibling per Client in Stamp order, the value is the last one; n2 (lww): b's put.
    let n1 = json!({"title": "b", "body": "b", "likes": 6, "tags": ["a", "b"]});
    let n2 = json!({"from": "b"});
    let server_n1 = server_record(&server.base, &t, "demo", "n1");
    assert_eq!(server_n1["value"], n1, "{server_n1}");
    assert_eq!(
        server_n1["conflicts"],
        json!({"body": ["a", "b"]}),
        "{server_n1}"
    );
    let server_n2 = server_record(&server.base, &t, "demo", "n2");
    assert_eq!(server_n2["value"], n2, "{server_n2}");
    assert!(server_n2.get("conflicts").is_none(), "{server_n2}");
    for (c, who) in [(&a, "a"), (&b, "b")] {
        assert_eq!(c.status().unwrap().pending, 0, "{who}");
        for (id, expected) in [("n1", &n1), ("n2", &n2)] {
            assert_eq!(
                Value::Object(c.get("notes", id).unwrap().unwrap()),
                *expected,
                "{id} on {who}"
            );
        }
    }
}

#[test]
fn lost_acknowledgements_through_a_faulty_proxy_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "write");
    let server = ServerProcess::start(&data, &[]);
    let rates = driftless_conformance::proxy::FaultRates {
        drop_response: 40,
        duplicate: 30,
        delay: 0,
        delay_ms_max: 0,
    };
    let proxy = driftless_conformance::proxy::Proxy::start(&server.base, 7, rates).unwrap();
    let mut c = client(&dir.path().join("c"), proxy.base(), &t, "demo");
    let mut total = 0;
    for i in 0..40 {
        c.write(
            "notes",
            "counter",
            json!({"kind": "increment", "field": "n", "by": i % 5 + 1}),
            0,
        )
        .unwrap();
        total += i % 5 + 1;
        c.write(
            "notes",
            &format!("r{i}"),
            json!({"kind": "put", "value": {"i": i}}),
            0,
        )
        .unwrap();
    }
    let mut finished = false;
    for _ in 0..50 {
        if c.sync().is_ok() {
            finished = true;
            break;
        }
    }
    assert!(finished, "sync never finished through the proxy");
    assert!(
        proxy
            .counts
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the proxy dropped nothing"
    );
    assert_eq!(
        server_record(&server.base, &t, "demo", "counter")["value"]["n"],
        total
    );
    assert_eq!(
        Value::Object(c.get("notes", "counter").unwrap().unwrap())["n"],
        total
    );
}

#[test]
fn resync_after_cursor_expiry_keeps_pending_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "admin");
    let server = ServerProcess::start(&data, &[]);
    let mut c = client(&dir.path().join("c"), &server.base, &t, "demo");
    c.write(
        "notes",
        "keep",
        json!({"kind": "put", "value": {"v": 1}}),
        0,
    )
    .unwrap();
    c.write(
        "notes",
        "gone",
        json!({"kind": "put", "value": {"v": 1}}),
        0,
    )
    .unwrap();
    c.sync().unwrap();
    c.write("notes", "gone", json!({"kind": "delete"}), 0)
        .unwrap();
    c.sync().unwrap();
    // Offline, the client writes; meanwhile another client writes and the server is compacted,
    // so the client's cursor is older than the compaction point.
    c.write(
        "notes",
        "pending",
        json!({"kind": "put", "value": {"v": 2}}),
        0,
    )
    .unwrap();
    let other = call(&agent(), "POST", &format!("{}/v1/spaces/demo/push", server.base), &t, Some(&json!({"client_id": "someone-else", "mutations": [
        {"op_id": "op-other-0001", "seq": 1, "collection": "notes", "record_id": "later", "hlc": format!("{:012x}-0000-someone-else", common::server::now_ms()), "effect": {"kind": "put", "value": {"v": 3}}}
    ]}))).unwrap();
    assert_eq!(other.0, 200);
    compact(&server.base, &t);
    let events = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let sink = events.clone();
    c.on_event(move |e| sink.borrow_mut().push(e.clone()));
    let report = c.sync().unwrap();
    assert!(report.resynced, "the expired cursor forced a resync");
    assert!(events.borrow().contains(&Event::Resync));
    assert_eq!(c.status().unwrap().pending, 0);
    let ids: Vec<String> = c
        .list("notes")
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, vec!["keep", "later", "pending"]);
    assert_eq!(
        server_record(&server.base, &t, "demo", "pending")["value"],
        json!({"v": 2})
    );
}

#[test]
fn a_poison_mutation_is_dead_lettered_and_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "admin");
    let server = ServerProcess::start(&data, &[]);
    let mut c = client(&dir.path().join("c"), &server.base, &t, "demo");
    c.register_schema(&json!({"collection": "notes", "version": 1, "schema": {"type": "object"}, "fields": {"tags": {"policy": "add_wins_set"}}})).unwrap();
    let poison = c
        .write(
            "notes",
            "n1",
            json!({"kind": "increment", "field": "tags", "by": 1}),
            0,
        )
        .unwrap();
    let fine = c
        .write(
            "notes",
            "n2",
            json!({"kind": "put", "value": {"ok": true}}),
            0,
        )
        .unwrap();
    let report = c.sync().unwrap();
    assert_eq!((report.acknowledged, report.rejected), (1, 1));
    let s = c.status().unwrap();
    assert_eq!((s.pending, s.rejected), (0, 1));
    assert_eq!(c.receipt(&poison).unwrap().unwrap().0, "rejected");
    assert_eq!(c.receipt(&fine).unwrap().unwrap().0, "acknowledged");
    let dead = c.dead_letters().unwrap();
    assert_eq!(dead[0].2["type"], "urn:driftless:problem:policy-violation");
}

#[test]
fn audit_repairs_exactly_the_drifted_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "write");
    let server = ServerProcess::start(&data, &[]);
    let store = dir.path().join("c");
    let mut c = client(&store, &server.base, &t, "demo");
    for i in 0..30 {
        c.write(
            "notes",
            &format!("r{i}"),
            json!({"kind": "put", "value": {"i": i}}),
            0,
        )
        .unwrap();
    }
    c.sync().unwrap();
    assert!(c.audit().unwrap().repaired.is_empty());
    drop(c);
    // Corrupt one mirrored record behind the client's back.
    let conn = rusqlite::Connection::open(store.join(driftless_client::store::STORE_FILE)).unwrap();
    conn.execute(
        "UPDATE mirror SET value = '{\"i\":999}' WHERE id = 'r7'",
        [],
    )
    .unwrap();
    drop(conn);
    let mut c = client(&store, &server.base, &t, "demo");
    let report = c.audit().unwrap();
    assert_eq!(
        report.repaired,
        vec![driftless_protocol::checksum::bucket_of("notes", "r7")]
    );
    assert_eq!(
        Value::Object(c.get("notes", "r7").unwrap().unwrap()),
        json!({"i": 7})
    );
    assert!(c.audit().unwrap().repaired.is_empty());
}

#[test]
fn retry_schedule_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let store = dir.path().join("c");
    let mut c = client(&store, &down, "t", "demo");
    c.write("notes", "n1", json!({"kind": "delete"}), 0)
        .unwrap();
    assert!(c.sync().is_err());
    let counters = c.status().unwrap().counters;
    assert!(
        counters.iter().any(|(k, v)| k == "retries" && *v >= 2),
        "{counters:?}"
    );
    drop(c);
    let conn = rusqlite::Connection::open(store.join(driftless_client::store::STORE_FILE)).unwrap();
    let failures: String = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'retry_failures'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        failures.parse::<u32>().unwrap() >= 2,
        "the failure count is persisted"
    );
}

#[test]
fn superseded_writes_are_coalesced_before_sending_and_the_result_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "write");
    let server = ServerProcess::start(&data, &[]);
    let mut c = client(&dir.path().join("c"), &server.base, &t, "demo");
    let first = c
        .write(
            "notes",
            "n1",
            json!({"kind": "patch", "set": {"title": "a"}}),
            0,
        )
        .unwrap();
    c.write(
        "notes",
        "n1",
        json!({"kind": "increment", "field": "n", "by": 1}),
        0,
    )
    .unwrap();
    c.write(
        "notes",
        "n1",
        json!({"kind": "patch", "set": {"title": "b"}}),
        0,
    )
    .unwrap();
    c.write(
        "notes",
        "n1",
        json!({"kind": "patch", "set": {"title": "c", "x": 1}}),
        0,
    )
    .unwrap();
    assert_eq!(
        c.status().unwrap().pending,
        3,
        "the patch right before a covering patch is dropped; the one before the increment stays"
    );
    assert_eq!(c.receipt(&first).unwrap().unwrap().0, "pending");
    c.write("notes", "n2", json!({"kind": "put", "value": {"v": 1}}), 0)
        .unwrap();
    c.write("notes", "n2", json!({"kind": "delete"}), 0)
        .unwrap();
    assert_eq!(c.status().unwrap().pending, 4);
    let view = c.get("notes", "n1").unwrap();
    c.sync().unwrap();
    assert_eq!(
        server_record(&server.base, &t, "demo", "n1")["value"],
        Value::Object(view.unwrap())
    );
}

#[test]
fn watch_receives_another_clients_change_by_long_poll() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "write");
    let server = ServerProcess::start(&data, &[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<Event>();
    let (base, tok, store, flag) = (
        server.base.clone(),
        t.clone(),
        dir.path().join("watcher"),
        stop.clone(),
    );
    // Each held pull may wait 30 s (the most the server allows): far longer than the test runs,
    // so no empty page can come back from a held pull. A watcher that polled instead would pull
    // empty pages while the writer works.
    let watcher = std::thread::spawn(move || {
        let mut w = client(&store, &base, &tok, "demo");
        w.on_event(move |e| {
            let _ = seen_tx.send(e.clone());
        });
        w.watch(&flag, 30_000).unwrap();
        w.get("notes", "live").unwrap()
    });
    // The watcher's first sync pulls an empty page; wait for it, then write from elsewhere.
    wait_for(&seen_rx, |e| matches!(e, Event::Pulled { .. }));
    let mut writer = client(&dir.path().join("writer"), &server.base, &t, "demo");
    writer
        .write(
            "notes",
            "live",
            json!({"kind": "put", "value": {"hello": true}}),
            0,
        )
        .unwrap();
    writer.sync().unwrap();
    // The change comes in the pull that was held for it: no empty page in between.
    let mut empty_pages = 0;
    wait_for(&seen_rx, |e| match e {
        Event::Pulled { records: 0, .. } => {
            empty_pages += 1;
            false
        }
        Event::Pulled { .. } => true,
        _ => false,
    });
    assert_eq!(
        empty_pages, 0,
        "the watcher pulled empty pages instead of holding a pull"
    );
    // Stop, and wake the held pull with one more change.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer
        .write("notes", "wake", json!({"kind": "put", "value": {}}), 0)
        .unwrap();
    writer.sync().unwrap();
    assert_eq!(watcher.join().unwrap(), Some(obj(json!({"hello": true}))));
}

/// Handles that open a new store at the same moment (an app and its background task) must be
/// one Client: one Client ID, one gapless `seq`, one clock. Two IDs would make the Server refuse
/// every Mutation stamped by the other handle ([MUT-1]).
#[test]
fn handles_opened_together_on_a_new_store_are_one_client() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("c");
        let gate = std::sync::Arc::new(std::sync::Barrier::new(6));
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let (store, gate) = (store.clone(), gate.clone());
                std::thread::spawn(move || {
                    gate.wait();
                    // Opening contacts no server.
                    client(&store, "http://127.0.0.1:9", "t", "demo")
                        .client_id()
                        .to_owned()
                })
            })
            .collect();
        let ids: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    }
}

#[test]
fn two_handles_on_one_store_interleave_writes_without_losing_any() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "write");
    let server = ServerProcess::start(&data, &[]);
    let store = dir.path().join("c");
    let mut a = client(&store, &server.base, &t, "demo");
    let mut b = client(&store, &server.base, &t, "demo");
    let inc = |by: i64| json!({"kind": "increment", "field": "n", "by": by});
    let ops = [
        a.write("notes", "n", inc(1), 0).unwrap(),
        b.write("notes", "n", inc(2), 0).unwrap(),
        a.write("notes", "n", inc(3), 0).unwrap(),
        b.write("notes", "m", json!({"kind": "put", "value": {"x": 1}}), 0)
            .unwrap(),
    ];
    // Op IDs are `{client}-{seq}-{random}`: one counter across both handles ([ID-4]).
    let seqs: Vec<&str> = ops.iter().map(|o| o.split('-').nth(2).unwrap()).collect();
    assert_eq!(seqs, ["1", "2", "3", "4"], "{ops:?}");
    assert_eq!(b.get("notes", "n").unwrap(), Some(obj(json!({"n": 6}))));
    let report = a.sync().unwrap();
    assert_eq!((report.acknowledged, report.rejected), (4, 0));
    assert_eq!(
        server_record(&server.base, &t, "demo", "n")["value"],
        json!({"n": 6})
    );
}

/// A Client whose clock ran ahead of the Server's skew bound (a device clock set wrong, then
/// corrected) gets `clock-skew`, steps its clock back to the Server's ([HLC-12]) and re-issues
/// the write ([HLC-9]) in the same sync; a second handle opened before the step back stamps its
/// next write from the stepped-back clock; and the CLI's sync finishes.
#[test]
fn a_clock_ahead_of_the_server_steps_back_and_the_write_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "write");
    let server = ServerProcess::start(&data, &[]);
    let store = dir.path().join("c");
    let mut c = client(&store, &server.base, &t, "demo");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let ahead = now + 3 * 3_600_000;
    let conn = rusqlite::Connection::open(store.join(driftless_client::store::STORE_FILE)).unwrap();
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('hlc', ?1)",
        [format!("{ahead:012x}-0000-{}", c.client_id())],
    )
    .unwrap();
    let op = c
        .write("notes", "x", json!({"kind": "put", "value": {"v": 1}}), 0)
        .unwrap();
    // Another handle of the same Client, opened while the clock is three hours ahead.
    let mut app = client(&store, &server.base, &t, "demo");
    let r = c.sync().unwrap();
    assert_eq!((r.acknowledged, r.rejected, r.reissued), (1, 0, 1));
    assert!(c.dead_letters().unwrap().is_empty());
    assert_eq!(c.status().unwrap().pending, 0);
    assert_eq!(
        server_record(&server.base, &t, "demo", "x")["value"],
        json!({"v": 1})
    );
    let (status, detail) = c.receipt(&op).unwrap().unwrap();
    assert_eq!(status, "rejected");
    assert!(detail.unwrap().starts_with("clock-skew; re-issued as"));
    let counters = c.status().unwrap().counters;
    assert!(
        counters.contains(&("clock_step_backs".to_owned(), 1)),
        "{counters:?}"
    );
    // The stored clock is back near real time; the other handle's next Stamp follows it.
    let stored: String = conn
        .query_row("SELECT value FROM meta WHERE key = 'hlc'", [], |r| r.get(0))
        .unwrap();
    let stored = u64::from_str_radix(&stored[..12], 16).unwrap();
    assert!(
        stored < now + 60_000,
        "the clock is still ahead: {stored} vs {now}"
    );
    app.write("notes", "y", json!({"kind": "put", "value": {"v": 2}}), 0)
        .unwrap();
    drop((c, app));
    // `driftless client sync` pushes it without any re-issue and exits 0.
    let out = common::server::client_cli(&store, &server.base, &t, "demo")
        .arg("sync")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("synced: 1 acknowledged, 0 rejected, 0 re-issued"),
        "{stdout}"
    );
}

/// When stepping back cannot help (here the Server's own clock runs five hours ahead of its wall
/// clock, as after its wall clock was set back), a Mutation refused twice in one sync with no
/// step back in between waits for the next sync instead of looping; the CLI's sync says so in
/// one line and exits non-zero, and nothing is dead-lettered or lost.
#[test]
fn a_mutation_refused_twice_without_a_step_back_waits_for_the_next_sync() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "write");
    ServerProcess::start(&data, &[]).kill();
    let ahead = common::server::now_ms() + 5 * 3_600_000;
    common::server::set_server_clock(&data, "demo", &format!("{ahead:012x}-0000-server-x"));
    let server = ServerProcess::start(&data, &[]);
    let store = dir.path().join("c");
    let mut c = client(&store, &server.base, &t, "demo");
    c.write("notes", "a", json!({"kind": "put", "value": {"v": 1}}), 0)
        .unwrap();
    // Stamped before the Client saw the Server's clock: applied; the clock merged then runs ahead.
    assert_eq!(c.sync().unwrap().acknowledged, 1);
    c.write("notes", "b", json!({"kind": "put", "value": {"v": 2}}), 0)
        .unwrap();
    drop(c);
    for _ in 0..2 {
        let out = common::server::client_cli(&store, &server.base, &t, "demo")
            .arg("sync")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("1 mutation(s) still pending"), "{stderr}");
    }
    let c = client(&store, &server.base, &t, "demo");
    assert!(c.dead_letters().unwrap().is_empty());
    assert_eq!(c.get("notes", "b").unwrap(), Some(obj(json!({"v": 2}))));
}

#[test]
fn background_task_pushes_writes_made_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "write");
    let server = ServerProcess::start(&data, &[]);
    let store = dir.path().join("c");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let cfg = Config {
        server: server.base.clone(),
        token: t.clone(),
        space: "demo".into(),
        retry: quick(),
        batch_max: 50,
        timeout: Duration::from_secs(30),
    };
    let bg = {
        let _guard = rt.enter();
        driftless_client::background::spawn(store.clone(), cfg, 300, Some(tx))
    };
    // The application writes through its own handle while the task runs.
    let mut app = client(&store, &server.base, &t, "demo");
    app.write(
        "notes",
        "bg",
        json!({"kind": "put", "value": {"from": "app"}}),
        0,
    )
    .unwrap();
    // Until the write is acknowledged; a rejection is a failure, never something to wait out.
    wait_for(&rx, |e| match e {
        Event::Pushed {
            acknowledged,
            rejected,
        } => {
            assert_eq!(*rejected, 0, "the background task had the write rejected");
            *acknowledged > 0
        }
        _ => false,
    });
    let report = rt.block_on(bg.stop()).unwrap();
    assert_eq!(report.rejected, 0);
    assert!(report.acknowledged >= 1);
    assert_eq!(
        server_record(&server.base, &t, "demo", "bg")["value"],
        json!({"from": "app"})
    );
}

#[test]
fn priority_lanes_go_first_but_never_reorder_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "write");
    let server = ServerProcess::start(&data, &[]);
    let cfg = Config {
        server: server.base.clone(),
        token: t.clone(),
        space: "demo".into(),
        retry: quick(),
        batch_max: 1,
        timeout: Duration::from_secs(30),
    };
    let mut c = Client::open(&dir.path().join("c"), cfg).unwrap();
    c.write(
        "notes",
        "r1",
        json!({"kind": "put", "value": {"step": 1}}),
        0,
    )
    .unwrap(); // lifted: r1 has a later high write
    c.write(
        "notes",
        "r3",
        json!({"kind": "put", "value": {"low": true}}),
        0,
    )
    .unwrap();
    c.write(
        "notes",
        "r2",
        json!({"kind": "put", "value": {"high": true}}),
        5,
    )
    .unwrap();
    c.write(
        "notes",
        "r1",
        json!({"kind": "patch", "set": {"step": 2}}),
        5,
    )
    .unwrap();
    c.sync().unwrap();
    let seq = |id: &str| {
        server_record(&server.base, &t, "demo", id)["change_seq"]
            .as_u64()
            .unwrap()
    };
    // One mutation per push: change_seq is the sending order. r1's put went first (lifted),
    // then r2, then r1's patch, and the low-priority r3 last.
    assert!(
        seq("r2") < seq("r1") && seq("r1") < seq("r3"),
        "r1 {} r2 {} r3 {}",
        seq("r1"),
        seq("r2"),
        seq("r3")
    );
    assert_eq!(
        server_record(&server.base, &t, "demo", "r1")["value"],
        json!({"step": 2})
    );
}

#[test]
fn read_modify_write_keeps_fields_this_app_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "write");
    let server = ServerProcess::start(&data, &[]);
    // A newer app version wrote a field this one does not know.
    let mut newer = client(&dir.path().join("newer"), &server.base, &t, "demo");
    newer
        .write(
            "notes",
            "n1",
            json!({"kind": "put", "value": {"title": "a", "color_v2": "teal"}}),
            0,
        )
        .unwrap();
    newer.sync().unwrap();
    let mut older = client(&dir.path().join("older"), &server.base, &t, "demo");
    older.sync().unwrap();
    older
        .update("notes", "n1", |v| {
            v.insert("title".into(), json!("b"));
        })
        .unwrap();
    older.sync().unwrap();
    assert_eq!(
        server_record(&server.base, &t, "demo", "n1")["value"],
        json!({"title": "b", "color_v2": "teal"})
    );
}

/// Issue 10's reproduction: a long-offline edit must not bring back a Record deleted while it
/// waited, whether or not the Server compacted meanwhile ([CLIENT-21]). Without compaction the
/// edit (older than the delete) is hidden by it; with compaction it is refused as too old, and
/// re-issued with a fresh clock it used to win over the purged delete.
#[test]
fn a_long_offline_edit_does_not_bring_back_a_record_deleted_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "admin");
    let server = ServerProcess::start(&data, &[]);
    let mut a = client(&dir.path().join("a"), &server.base, &t, "demo");
    let mut b = client(&dir.path().join("b"), &server.base, &t, "demo");
    a.write(
        "notes",
        "t1",
        json!({"kind": "put", "value": {"title": "Buy milk", "done": false}}),
        0,
    )
    .unwrap();
    a.sync().unwrap();
    b.sync().unwrap();
    // a edits offline; b deletes and syncs; an admin compacts.
    a.write(
        "notes",
        "t1",
        json!({"kind": "patch", "set": {"done": true}}),
        0,
    )
    .unwrap();
    b.write("notes", "t1", json!({"kind": "delete"}), 0)
        .unwrap();
    b.sync().unwrap();
    compact(&server.base, &t);
    let report = a.sync().unwrap();
    assert_eq!(report.reissued, 0, "{report:?}");
    assert_eq!(report.dead_lettered.len(), 1, "{report:?}");
    // The delete stands on the Server and in a's view.
    let (status, body) = call(
        &agent(),
        "GET",
        &format!("{}/v1/spaces/demo/records/notes/t1", server.base),
        &t,
        None,
    )
    .unwrap();
    assert_eq!(status, 404, "{body}");
    assert_eq!(a.get("notes", "t1").unwrap(), None);
    // The edit is in the dead letters, with a Problem the app can show.
    let dead = a.dead_letters().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        dead[0].1["effect"],
        json!({"kind": "patch", "set": {"done": true}})
    );
    assert_eq!(
        dead[0].2["type"], "urn:driftless:problem:mutation-too-old",
        "{:?}",
        dead[0]
    );
    assert_eq!(a.status().unwrap().pending, 0);
}

#[test]
fn an_acknowledged_write_stays_in_the_view_when_the_pull_after_it_fails() {
    // [CLIENT-23]: the push is acknowledged, then the Server goes away before the pull; the
    // write left the Outbox but the Mirror does not have it yet.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "write");
    let server = std::sync::Arc::new(std::sync::Mutex::new(Some(ServerProcess::start(
        &data,
        &[],
    ))));
    let base = server.lock().unwrap().as_ref().unwrap().base.clone();
    let mut c = client(&dir.path().join("c"), &base, &t, "demo");
    c.write(
        "notes",
        "n1",
        json!({"kind": "put", "value": {"title": "kept"}}),
        0,
    )
    .unwrap();
    let gone = server.clone();
    c.on_event(move |e| {
        if matches!(e, Event::Pushed { .. }) {
            if let Some(s) = gone.lock().unwrap().take() {
                s.kill();
            }
        }
    });
    assert!(
        c.sync().is_err(),
        "the pull cannot succeed without a server"
    );
    assert_eq!(c.status().unwrap().pending, 0, "the push was acknowledged");
    assert_eq!(
        c.get("notes", "n1").unwrap(),
        Some(obj(json!({"title": "kept"})))
    );
    assert_eq!(c.list("notes").unwrap().len(), 1);
    // A later write of the same Record merges on top of the acknowledged one.
    c.write("notes", "n1", json!({"kind": "patch", "set": {"n": 1}}), 0)
        .unwrap();
    assert_eq!(
        c.get("notes", "n1").unwrap(),
        Some(obj(json!({"title": "kept", "n": 1})))
    );
    // Back online: the pull reaches the change and the view is the Server's state.
    let again = ServerProcess::start(&data, &[]);
    let mut c = client(&dir.path().join("c"), &again.base, &t, "demo");
    c.sync().unwrap();
    assert_eq!(
        c.get("notes", "n1").unwrap(),
        Some(obj(json!({"title": "kept", "n": 1})))
    );
    assert_eq!(
        server_record(&again.base, &t, "demo", "n1")["value"],
        json!({"title": "kept", "n": 1})
    );
}

/// An idle sync of a new handle (as each `driftless client sync` is) sends discovery and one
/// pull, no Collection Schema request: the pull's schema summary says nothing changed
/// (`[PULL-20]`). When another Client registers a new version, the next sync fetches that
/// Collection's schemas, and only those.
#[test]
fn an_idle_sync_sends_two_requests_and_schemas_only_when_changed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "admin");
    let server = ServerProcess::start(&data, &[]);
    let rates = driftless_conformance::proxy::FaultRates {
        drop_response: 0,
        duplicate: 0,
        delay: 0,
        delay_ms_max: 0,
    };
    let proxy = driftless_conformance::proxy::Proxy::start(&server.base, 1, rates).unwrap();
    let store = dir.path().join("c");
    let notes = |v: u32| json!({"collection": "notes", "version": v, "schema": {"type": "object"}, "fields": {}, "migration": []});
    {
        let mut c = client(&store, proxy.base(), &t, "demo");
        c.register_schema(&notes(1)).unwrap();
        c.write(
            "notes",
            "n1",
            json!({"kind": "put", "value": {"t": "a"}}),
            0,
        )
        .unwrap();
        c.write("tags", "g1", json!({"kind": "put", "value": {"t": "b"}}), 0)
            .unwrap();
        c.sync().unwrap();
    }
    let requests = || {
        proxy
            .counts
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let idle_sync = || {
        let before = requests();
        client(&store, proxy.base(), &t, "demo").sync().unwrap();
        requests() - before
    };
    assert_eq!(idle_sync(), 2, "discovery and one pull");
    assert_eq!(idle_sync(), 2, "discovery and one pull");
    let mut other = client(&dir.path().join("other"), &server.base, &t, "demo");
    other.register_schema(&notes(2)).unwrap();
    assert_eq!(
        idle_sync(),
        3,
        "discovery, one pull, and the schemas of notes alone"
    );
    assert_eq!(idle_sync(), 2, "nothing changed since");
}
