//! Each deliberate fault (cargo feature `fault-injection`) breaks the requirements it names in a
//! way a black-box client can see. CI runs this with the feature on; the conformance suite's
//! self-check relies on these faults being real bugs.
#![cfg(feature = "fault-injection")]

mod common;

use common::{hlc, hlc_at, mutation, now_ms, op, TestServer};
use driftless_protocol::messages::Scope;
use driftless_server::faults::{Faults, ALL};
use driftless_server::service::Config;
use serde_json::{json, Value};

const C: &str = "client-a";

fn faulty(name: &str) -> TestServer {
    let faults = Faults::parse(&[name.to_owned()]).unwrap();
    TestServer::start_full(tempfile::tempdir().unwrap(), Config::default(), faults)
}

fn put(n: u64, id: &str, value: Value) -> Value {
    mutation(
        &op(n),
        n,
        "tasks",
        id,
        &hlc(C),
        json!({"kind": "put", "value": value}),
    )
}

#[test]
fn every_fault_names_requirements_the_spec_defines() {
    let spec: String = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../spec"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(ALL.len() >= 10);
    for (name, ids, _) in ALL {
        for id in ids.split(' ') {
            assert!(
                spec.contains(&format!("- [{id}]")),
                "{name} cites {id}, which the spec does not define"
            );
        }
    }
}

#[test]
fn no_dedup_applies_a_replay_again() {
    let s = faulty("no-dedup");
    let t = s.token("ada", "demo", Scope::Write);
    let m = put(1, "t1", json!({}));
    let first = s.client().push_applied("demo", &t, C, vec![m.clone()]);
    // The replay is applied a second time, as a new change.
    let again = s.client().push_applied("demo", &t, C, vec![m]);
    assert!(
        again[0]["change_seq"].as_u64().unwrap() > first[0]["change_seq"].as_u64().unwrap(),
        "{again:?} after {first:?}"
    );
}

#[test]
fn dedup_not_atomic_applies_a_replay_that_comes_first_again() {
    let s = faulty("dedup-not-atomic");
    let t = s.token("ada", "demo", Scope::Write);
    let m = put(1, "t1", json!({}));
    let first = s.client().push_applied("demo", &t, C, vec![m.clone()]);
    // The replay arrives before the dedup record is written: applied again, as a new change.
    let again = s.client().push_applied("demo", &t, C, vec![m.clone()]);
    assert!(
        again[0]["change_seq"].as_u64().unwrap() > first[0]["change_seq"].as_u64().unwrap(),
        "{again:?} after {first:?}"
    );
    // Once a later request was answered the record is there, and a replay is a duplicate.
    let r = s.client().push("demo", &t, C, vec![m]).json();
    assert_eq!(r["results"][0]["status"], "duplicate", "{r}");
}

#[test]
fn ack_before_durable_acknowledges_what_a_pull_cannot_see() {
    let s = faulty("ack-before-durable");
    let t = s.token("ada", "demo", Scope::Write);
    let acked = s
        .client()
        .push_applied("demo", &t, C, vec![put(1, "t1", json!({"a": 1}))]);
    let seq = acked[0]["change_seq"].as_u64().unwrap();
    // The pull right after the acknowledgement misses the write: its page is computed before
    // the write lands.
    let page = s.client().pull("demo", &t, "").json();
    assert_eq!(page["records"], json!([]), "{page}");
    assert!(page["through"].as_u64().unwrap() < seq, "{page}");
    // The write did land, once that pull was answered.
    let (records, through) = s.client().pull_all("demo", &t, 10);
    assert!(through >= seq);
    assert_eq!(records["tasks/t1"]["value"], json!({"a": 1}));
}

#[test]
fn wrong_lww_tiebreak_lets_an_older_write_win() {
    let s = faulty("wrong-lww-tiebreak");
    let t = s.token("ada", "demo", Scope::Write);
    let at = now_ms() - 1000;
    let newer = mutation(
        &op(1),
        1,
        "tasks",
        "t1",
        &hlc_at(at, 5, C),
        json!({"kind": "put", "value": {"v": "new"}}),
    );
    let older = mutation(
        &op(2),
        2,
        "tasks",
        "t1",
        &hlc_at(at, 1, C),
        json!({"kind": "put", "value": {"v": "old"}}),
    );
    s.client().push_applied("demo", &t, C, vec![newer, older]);
    let rec = s
        .client()
        .get("/v1/spaces/demo/records/tasks/t1", Some(&t))
        .json();
    assert_eq!(rec["value"], json!({"v": "old"}));
}

#[test]
fn page_boundary_skip_loses_records() {
    let s = faulty("pull-page-boundary-skip");
    let t = s.token("ada", "demo", Scope::Write);
    s.client().push_applied(
        "demo",
        &t,
        C,
        (1..=5)
            .map(|n| put(n, &format!("r{n}"), json!({})))
            .collect(),
    );
    // Pages of 2: the last Record of each full page (r2, r4) is dropped.
    let (records, _) = s.client().pull_all("demo", &t, 2);
    let keys: Vec<&str> = records.keys().map(String::as_str).collect();
    assert_eq!(keys, ["tasks/r1", "tasks/r3", "tasks/r5"]);
}

#[test]
fn wrong_checksum_digests_disagree_with_the_algorithm() {
    let s = faulty("wrong-checksum");
    let t = s.token("ada", "demo", Scope::Write);
    s.client()
        .push_applied("demo", &t, C, vec![put(1, "t1", json!({"a": 1}))]);
    let rec = s
        .client()
        .get("/v1/spaces/demo/records/tasks/t1", Some(&t))
        .json();
    assert_eq!(rec["value"], json!({"a": 1}), "{rec}");
    let mut expected = driftless_protocol::checksum::record_digest(
        "tasks",
        "t1",
        &json!({"a": 1}).as_object().unwrap().clone(),
    );
    // The served digest is the right one with its last bit flipped.
    expected[31] ^= 1;
    assert_eq!(
        rec["digest"],
        driftless_protocol::checksum::to_hex(&expected)
    );
}

#[test]
fn auth_ignored_on_checksums_serves_a_stranger() {
    let s = faulty("auth-ignored-on-checksums");
    let stranger = s.token("eve", "elsewhere", Scope::Read);
    let r = s.client().get("/v1/spaces/demo/checksums", Some(&stranger));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json()["buckets"].as_array().unwrap().len(),
        64,
        "{}",
        r.text
    );
}

#[test]
fn unknown_fields_dropped_loses_undeclared_fields() {
    let s = faulty("unknown-fields-dropped");
    let admin = s.token("ada", "demo", Scope::Admin);
    let doc = json!({"collection": "tasks", "version": 1, "schema": {"type": "object", "properties": {"a": {}}}});
    assert_eq!(
        s.client()
            .send(
                "PUT",
                "/v1/spaces/demo/collections/tasks/schemas/1",
                Some(&admin),
                &doc
            )
            .status,
        201
    );
    let mut m = put(1, "t1", json!({"a": 1, "extra": 2}));
    m["schema_version"] = json!(1);
    s.client().push_applied("demo", &admin, C, vec![m]);
    let rec = s
        .client()
        .get("/v1/spaces/demo/records/tasks/t1", Some(&admin))
        .json();
    assert_eq!(rec["value"], json!({"a": 1}), "{rec}");
}

#[test]
fn manifest_forgets_rejections() {
    let s = faulty("manifest-forgets-rejections");
    let t = s.token("ada", "demo", Scope::Write);
    let skewed = mutation(
        &op(1),
        1,
        "tasks",
        "t1",
        &hlc_at(now_ms() + 3_600_000, 0, C),
        json!({"kind": "delete"}),
    );
    let r = s.client().push("demo", &t, C, vec![skewed]).json();
    assert_eq!(r["results"][0]["status"], "rejected", "{r}");
    let m = s
        .client()
        .send(
            "POST",
            "/v1/spaces/demo/manifest",
            Some(&t),
            &json!({"op_ids": [op(1)]}),
        )
        .json();
    assert_eq!(m["entries"][0]["op_id"], op(1), "{m}");
    assert_eq!(m["entries"][0]["status"], "unknown", "{m}");
}

#[test]
fn rejection_not_acknowledged_judges_a_replay_again() {
    let s = faulty("rejection-not-acknowledged");
    let t = s.token("ada", "demo", Scope::Write);
    let skewed = mutation(
        &op(1),
        1,
        "tasks",
        "t1",
        &hlc_at(now_ms() + 3_600_000, 0, C),
        json!({"kind": "delete"}),
    );
    let first = s.client().push("demo", &t, C, vec![skewed.clone()]).json();
    assert_eq!(first["results"][0]["status"], "rejected", "{first}");
    let r = s.client().push("demo", &t, C, vec![skewed]).json();
    assert_eq!(r["results"][0]["status"], "rejected", "{r}");
}

#[test]
fn increment_twice_on_replay_doubles_the_count() {
    let s = faulty("increment-twice-on-replay");
    let t = s.token("ada", "demo", Scope::Write);
    let inc = mutation(
        &op(1),
        1,
        "tasks",
        "t1",
        &hlc(C),
        json!({"kind": "increment", "field": "n", "by": 5}),
    );
    s.client().push_applied("demo", &t, C, vec![inc.clone()]);
    let r = s.client().push("demo", &t, C, vec![inc]).json();
    assert_eq!(r["results"][0]["status"], "duplicate", "{r}");
    let rec = s
        .client()
        .get("/v1/spaces/demo/records/tasks/t1", Some(&t))
        .json();
    assert_eq!(rec["value"], json!({"n": 10}), "{rec}");
}

#[test]
fn op_id_mismatch_accepted_answers_duplicate() {
    let s = faulty("op-id-mismatch-accepted");
    let t = s.token("ada", "demo", Scope::Write);
    let m = put(1, "t1", json!({"n": 1}));
    s.client().push_applied("demo", &t, C, vec![m.clone()]);
    let mut other = m;
    other["effect"]["value"]["n"] = json!(2);
    let r = s.client().push("demo", &t, C, vec![other]).json();
    assert_eq!(r["results"][0]["status"], "duplicate", "{r}");
}

#[test]
fn dedup_by_bytes_refuses_a_respelled_replay() {
    let s = faulty("dedup-by-bytes");
    let t = s.token("ada", "demo", Scope::Write);
    let m = put(1, "t1", json!({"n": 1}));
    let replay = |text: String| {
        let body = format!(r#"{{"client_id":"{C}","mutations":[{text}]}}"#);
        let r = s.client().raw(
            "POST",
            "/v1/spaces/demo/push",
            Some(&t),
            &[("content-type", "application/json")],
            Some(body.into_bytes()),
        );
        r.json()["results"][0].clone()
    };
    assert_eq!(replay(m.to_string())["status"], "applied");
    assert_eq!(replay(m.to_string())["status"], "duplicate");
    // The same Mutation with a space after its first member: equal canonical JSON.
    let respelled = m.to_string().replacen(',', " ,", 1);
    assert_eq!(
        replay(respelled)["problem"]["type"],
        "urn:driftless:problem:op-id-reused"
    );
}

#[test]
fn no_cursor_expiry_serves_a_compacted_cursor() {
    let s = faulty("no-cursor-expiry");
    let admin = s.token("ada", "demo", Scope::Admin);
    s.client()
        .push_applied("demo", &admin, C, vec![put(1, "t1", json!({}))]);
    let cursor = s.client().pull("demo", &admin, "").json()["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    s.client().push_applied(
        "demo",
        &admin,
        C,
        vec![mutation(
            &op(2),
            2,
            "tasks",
            "t1",
            &hlc(C),
            json!({"kind": "delete"}),
        )],
    );
    assert_eq!(
        s.client()
            .raw("POST", "/v1/spaces/demo/compact", Some(&admin), &[], None)
            .status,
        200
    );
    // The Cursor from before compaction is served a page instead of `cursor-expired`.
    let r = s
        .client()
        .pull("demo", &admin, &format!("?cursor={cursor}"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["cursor"].as_str().is_some(), "{}", r.text);
}

#[test]
fn clock_skew_unchecked_accepts_the_future() {
    let s = faulty("clock-skew-unchecked");
    let t = s.token("ada", "demo", Scope::Write);
    let m = mutation(
        &op(1),
        1,
        "tasks",
        "t1",
        &hlc_at(now_ms() + 3_600_000, 0, C),
        json!({"kind": "put", "value": {}}),
    );
    s.client().push_applied("demo", &t, C, vec![m]);
}

#[test]
fn reject_everything_rejects_a_valid_write() {
    let s = faulty("reject-everything");
    let t = s.token("ada", "demo", Scope::Write);
    let r = s
        .client()
        .push("demo", &t, C, vec![put(1, "t1", json!({"a": 1}))]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["results"][0]["status"], "rejected", "{}", r.text);
    let (records, through) = s.client().pull_all("demo", &t, 10);
    assert_eq!((records.len(), through), (0, 0));
}

#[test]
fn first_writer_wins_rejects_a_newer_write_to_an_existing_record() {
    let s = faulty("first-writer-wins");
    let t = s.token("ada", "demo", Scope::Write);
    let at = now_ms() - 1000;
    let older = mutation(
        &op(1),
        1,
        "tasks",
        "t1",
        &hlc_at(at, 1, C),
        json!({"kind": "put", "value": {"v": "old"}}),
    );
    let newer = mutation(
        &op(2),
        2,
        "tasks",
        "t1",
        &hlc_at(at, 5, C),
        json!({"kind": "put", "value": {"v": "new"}}),
    );
    let r = s.client().push("demo", &t, C, vec![older, newer]).json();
    assert_eq!(r["results"][0]["status"], "applied", "{r}");
    assert_eq!(r["results"][1]["status"], "rejected", "{r}");
    let rec = s
        .client()
        .get("/v1/spaces/demo/records/tasks/t1", Some(&t))
        .json();
    assert_eq!(rec["value"], json!({"v": "old"}));
}

#[test]
fn blank_values_serves_an_empty_value_with_its_digest() {
    let s = faulty("blank-values");
    let t = s.token("ada", "demo", Scope::Write);
    let r = s
        .client()
        .push("demo", &t, C, vec![put(1, "t1", json!({"a": 1}))])
        .json();
    assert_eq!(r["results"][0]["status"], "applied", "{r}");
    let rec = s
        .client()
        .get("/v1/spaces/demo/records/tasks/t1", Some(&t))
        .json();
    assert_eq!(rec["value"], json!({}));
    let blank = driftless_protocol::checksum::record_digest("tasks", "t1", &Default::default());
    assert_eq!(rec["digest"], driftless_protocol::checksum::to_hex(&blank));
}

#[test]
fn no_supported_versions_lists_none() {
    let s = faulty("no-supported-versions");
    let r = s.client().raw(
        "GET",
        "/v1/spaces/demo/pull",
        Some(&s.token("ada", "demo", Scope::Read)),
        &[("driftless-version", "99.0")],
        None,
    );
    assert_eq!(r.problem(), "unsupported-version");
    assert_eq!(r.json()["supported_versions"], json!([]));
}

#[test]
fn checksums_unavailable_answers_internal() {
    let s = faulty("checksums-unavailable");
    let t = s.token("ada", "demo", Scope::Read);
    let r = s.client().get("/v1/spaces/demo/checksums", Some(&t));
    assert_eq!(r.status, 500, "{}", r.text);
    assert_eq!(r.problem(), "internal");
}
