//! Black-box tests of every endpoint and every Problem type, over real HTTP on 127.0.0.1.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{assert_schema, hlc, hlc_at, mutation, now_ms, op, Client, TestServer};
use driftless_protocol::checksum::SpaceChecksums;
use driftless_protocol::messages::Scope;
use driftless_server::service::Config;
use serde_json::{json, Value};

const CLIENT: &str = "client-a";

fn put(n: u64, id: &str, value: Value) -> Value {
    mutation(
        &op(n),
        n,
        "tasks",
        id,
        &hlc(CLIENT),
        json!({"kind": "put", "value": value}),
    )
}

// ---------------------------------------------------------------------------------------------
// Discovery, routing and headers

#[test]
fn discovery_needs_no_token_and_matches_its_schema() {
    let s = TestServer::start();
    let r = s.client().get("/.well-known/driftless", None);
    assert_eq!(r.status, 200);
    assert_schema("discovery", &r.json());
    assert!(r.header("driftless-clock").is_some());
    assert_eq!(r.json()["features"], json!(["compaction-trigger"]));
}

#[test]
fn every_v1_response_carries_clock_and_version_headers() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Read);
    for r in [
        s.client().pull("demo", &t, ""),
        s.client().get("/v1/spaces/demo/pull", None),
    ] {
        let clock = r.header("driftless-clock").expect("clock header");
        assert!(
            clock.parse::<driftless_protocol::hlc::Hlc>().is_ok(),
            "{clock}"
        );
        assert_eq!(r.header("driftless-version"), Some("1.0"));
    }
}

#[test]
fn unknown_path_is_not_found() {
    let s = TestServer::start();
    let r = s.client().get("/v1/nothing/here", None);
    assert_eq!((r.status, r.problem().as_str()), (404, "not-found"));
}

#[test]
fn wrong_method_is_method_not_allowed_with_allow() {
    let s = TestServer::start();
    let r = s
        .client()
        .raw("DELETE", "/.well-known/driftless", None, &[], None);
    assert_eq!(
        (r.status, r.problem().as_str()),
        (405, "method-not-allowed")
    );
    assert_eq!(r.header("allow"), Some("GET"));
}

#[test]
fn unsupported_major_version_is_refused_with_supported_versions() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Read);
    let r = s.client().raw(
        "GET",
        "/v1/spaces/demo/pull",
        Some(&t),
        &[("driftless-version", "2.0")],
        None,
    );
    assert_eq!(
        (r.status, r.problem().as_str()),
        (400, "unsupported-version")
    );
    assert_eq!(r.json()["supported_versions"], json!(["1.0"]));
    let ok = s.client().raw(
        "GET",
        "/v1/spaces/demo/pull",
        Some(&t),
        &[("driftless-version", "1.7")],
        None,
    );
    assert_eq!(
        ok.status, 200,
        "a higher minor version of the same major is served"
    );
}

#[test]
fn metrics_count_pushed_mutations() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    s.client()
        .push("demo", &t, CLIENT, vec![put(1, "t1", json!({"a": 1}))]);
    // Metrics are not on the API port (`[SEC-5]`) but on their own listener.
    let api = s.client().get("/metrics", None);
    assert_eq!(api.status, 404, "{}", api.text);
    let r = Client::new(&s.metrics_base).get("/metrics", None);
    assert_eq!(r.status, 200);
    assert!(
        r.text
            .contains("driftless_mutations_total{outcome=\"applied\"} 1"),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("driftless_request_duration_ms_count{route=\"push\"}"),
        "{}",
        r.text
    );
}

// ---------------------------------------------------------------------------------------------
// Push and idempotency

#[test]
fn push_applies_and_pull_returns_the_record() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let r = s.client().push(
        "demo",
        &t,
        CLIENT,
        vec![put(1, "t1", json!({"title": "Buy milk"}))],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_schema("push-response", &r.json());
    assert_eq!(r.json()["results"][0]["status"], "applied");
    let page = s.client().pull("demo", &t, "").json();
    assert_schema("pull-response", &page);
    assert_eq!(page["records"][0]["value"], json!({"title": "Buy milk"}));
}

#[test]
fn replay_returns_the_stored_outcome_byte_for_byte() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let m = put(1, "t1", json!({"n": 1}));
    let first = s.client().push("demo", &t, CLIENT, vec![m.clone()]).json();
    let again = s.client().push("demo", &t, CLIENT, vec![m]).json();
    assert_eq!(again["results"][0]["status"], "duplicate");
    assert_eq!(
        again["results"][0]["original"].to_string(),
        first["results"][0].to_string()
    );
    let (records, through) = s.client().pull_all("demo", &t, 100);
    assert_eq!(records.len(), 1);
    assert_eq!(through, 1, "a duplicate assigns no change_seq");
}

#[test]
fn same_op_id_with_another_body_is_op_id_reused_and_keeps_the_original() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let m = put(1, "t1", json!({"n": 1}));
    let first = s.client().push("demo", &t, CLIENT, vec![m.clone()]).json();
    let mut other = m.clone();
    other["effect"]["value"]["n"] = json!(2);
    let r = s.client().push("demo", &t, CLIENT, vec![other]).json();
    assert_eq!(r["results"][0]["status"], "rejected");
    assert_eq!(
        r["results"][0]["problem"]["type"],
        "urn:driftless:problem:op-id-reused"
    );
    assert_eq!(r["results"][0]["problem"]["status"], 422);
    let replay = s.client().push("demo", &t, CLIENT, vec![m]).json();
    assert_eq!(replay["results"][0]["original"], first["results"][0]);
    let rec = s
        .client()
        .get("/v1/spaces/demo/records/tasks/t1", Some(&t))
        .json();
    assert_eq!(rec["value"], json!({"n": 1}));
}

#[test]
fn one_invalid_mutation_is_rejected_alone_and_acknowledged() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let bad = mutation(
        &op(1),
        1,
        "tasks",
        "t1",
        &hlc(CLIENT),
        json!({"kind": "explode"}),
    );
    let good = put(2, "t2", json!({"ok": true}));
    let r = s
        .client()
        .push("demo", &t, CLIENT, vec![bad.clone(), good])
        .json();
    assert_eq!(r["results"][0]["status"], "rejected");
    assert_eq!(
        r["results"][0]["problem"]["type"],
        "urn:driftless:problem:invalid-mutation"
    );
    assert!(r["results"][0]["problem"]["detail"]
        .as_str()
        .unwrap()
        .contains("/effect"));
    assert_eq!(r["results"][1]["status"], "applied");
    let replay = s.client().push("demo", &t, CLIENT, vec![bad]).json();
    assert_eq!(
        replay["results"][0]["status"], "duplicate",
        "the rejection is the stored outcome"
    );
}

#[test]
fn a_number_beyond_a_double_rejects_only_its_mutation() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let huge = put(1, "t1", json!({"n": 1}))
        .to_string()
        .replace(r#""n":1"#, r#""n":1e400"#);
    let good = put(2, "t2", json!({"ok": true}));
    let body = format!(r#"{{"client_id":"{CLIENT}","mutations":[{huge},{good}]}}"#);
    let push = || {
        s.client().raw(
            "POST",
            "/v1/spaces/demo/push",
            Some(&t),
            &[("content-type", "application/json")],
            Some(body.clone().into_bytes()),
        )
    };
    let r = push();
    assert_eq!(r.status, 200, "{}", r.text);
    let r = r.json();
    assert_eq!(
        r["results"][0]["problem"]["type"],
        "urn:driftless:problem:invalid-mutation"
    );
    assert_eq!(r["results"][1]["status"], "applied");
    let again = push().json();
    assert_eq!(again["results"][0]["status"], "duplicate");
    assert_eq!(again["results"][0]["original"], r["results"][0]);
}

#[test]
fn push_without_a_valid_op_id_is_invalid_request_with_pointers() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let r = s.client().send(
        "POST",
        "/v1/spaces/demo/push",
        Some(&t),
        &json!({"client_id": "client-a", "mutations": [{"seq": 5}], "extra": 1}),
    );
    assert_eq!((r.status, r.problem().as_str()), (400, "invalid-request"));
    let body = r.json();
    let pointers: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert!(
        pointers.contains(&"/mutations/0/op_id") && pointers.contains(&"/extra"),
        "{pointers:?}"
    );
    let (records, _) = s.client().pull_all("demo", &t, 10);
    assert!(records.is_empty());
}

#[test]
fn hlc_node_must_equal_client_id() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let m = mutation(
        &op(1),
        1,
        "tasks",
        "t1",
        &hlc("client-b"),
        json!({"kind": "delete"}),
    );
    let r = s.client().push("demo", &t, CLIENT, vec![m]).json();
    assert_eq!(
        r["results"][0]["problem"]["type"],
        "urn:driftless:problem:invalid-mutation"
    );
}

#[test]
fn mutation_far_in_the_future_is_clock_skew() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let m = mutation(
        &op(1),
        1,
        "tasks",
        "t1",
        &hlc_at(now_ms() + 3_600_000, 0, CLIENT),
        json!({"kind": "delete"}),
    );
    let r = s.client().push("demo", &t, CLIENT, vec![m]).json();
    assert_eq!(
        r["results"][0]["problem"]["type"],
        "urn:driftless:problem:clock-skew"
    );
}

#[test]
fn mutation_older_than_retention_is_too_old() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let old = now_ms() - 31 * 86_400_000;
    let m = mutation(
        &op(1),
        1,
        "tasks",
        "t1",
        &hlc_at(old, 0, CLIENT),
        json!({"kind": "delete"}),
    );
    let r = s.client().push("demo", &t, CLIENT, vec![m]).json();
    assert_eq!(
        r["results"][0]["problem"]["type"],
        "urn:driftless:problem:mutation-too-old"
    );
}

#[test]
fn policy_violation_and_unknown_schema_version_are_rejected() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let set_on_lww = mutation(
        &op(1),
        1,
        "tasks",
        "t1",
        &hlc(CLIENT),
        json!({"kind": "set_add", "field": "tags", "elements": ["a"]}),
    );
    let mut versioned = put(2, "t1", json!({"a": 1}));
    versioned["schema_version"] = json!(3);
    let r = s
        .client()
        .push("demo", &t, CLIENT, vec![set_on_lww, versioned])
        .json();
    assert_eq!(
        r["results"][0]["problem"]["type"],
        "urn:driftless:problem:policy-violation"
    );
    assert_eq!(
        r["results"][1]["problem"]["type"],
        "urn:driftless:problem:unknown-schema-version"
    );
}

#[test]
fn too_many_mutations_is_batch_too_large() {
    let mut config = Config::default();
    config.limits.mutations_per_push_max = 100;
    let s = TestServer::start_with(config);
    let t = s.token("ada", "demo", Scope::Write);
    let ms: Vec<Value> = (1..=101)
        .map(|n| put(n, &format!("r{n}"), json!({})))
        .collect();
    let r = s.client().push("demo", &t, CLIENT, ms);
    assert_eq!((r.status, r.problem().as_str()), (413, "batch-too-large"));
    assert!(
        s.client().pull_all("demo", &t, 10).0.is_empty(),
        "nothing of a refused batch is applied"
    );
}

#[test]
fn oversized_body_is_payload_too_large() {
    let mut config = Config::default();
    config.limits.body_bytes_max = 65_536;
    let s = TestServer::start_with(config);
    let t = s.token("ada", "demo", Scope::Write);
    let big = "x".repeat(70_000);
    let r = s
        .client()
        .push("demo", &t, CLIENT, vec![put(1, "t1", json!({"big": big}))]);
    assert_eq!((r.status, r.problem().as_str()), (413, "payload-too-large"));
}

#[test]
fn malformed_bodies_are_invalid_json_and_the_server_keeps_serving() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let c = s.client();
    let json_ct = [("content-type", "application/json")];
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    for body in [
        b"{not json".to_vec(),
        vec![0xff, 0xfe, 0x7b],
        deep.into_bytes(),
        Vec::new(),
    ] {
        let r = c.raw(
            "POST",
            "/v1/spaces/demo/push",
            Some(&t),
            &json_ct,
            Some(body),
        );
        assert_eq!((r.status, r.problem().as_str()), (400, "invalid-json"));
    }
    let r = c.send("POST", "/v1/spaces/demo/push", Some(&t), &json!([1, 2]));
    assert_eq!((r.status, r.problem().as_str()), (400, "invalid-request"));
    let r = c.raw(
        "POST",
        "/v1/spaces/demo/push",
        Some(&t),
        &[("content-type", "text/plain")],
        Some(b"{}".to_vec()),
    );
    assert_eq!(
        (r.status, r.problem().as_str()),
        (415, "unsupported-media-type")
    );
    assert_eq!(c.get("/.well-known/driftless", None).status, 200);
}

// ---------------------------------------------------------------------------------------------
// Manifest

#[test]
fn manifest_reports_applied_rejected_and_unknown_in_order() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let skewed = mutation(
        &op(2),
        2,
        "tasks",
        "t1",
        &hlc_at(now_ms() + 3_600_000, 0, CLIENT),
        json!({"kind": "delete"}),
    );
    let pushed = s
        .client()
        .push("demo", &t, CLIENT, vec![put(1, "t1", json!({})), skewed])
        .json();
    let r = s.client().send(
        "POST",
        "/v1/spaces/demo/manifest",
        Some(&t),
        &json!({"op_ids": [op(3), op(1), op(2), op(1)]}),
    );
    assert_eq!(r.status, 200);
    let m = r.json();
    assert_schema("manifest-response", &m);
    assert_eq!(
        m["entries"][0],
        json!({"status": "unknown", "op_id": op(3)})
    );
    assert_eq!(m["entries"][1], pushed["results"][0]);
    assert_eq!(m["entries"][2], pushed["results"][1]);
    assert_eq!(
        m["entries"][3], pushed["results"][0],
        "an Op ID asked twice"
    );
}

#[test]
fn an_op_id_twice_in_one_push_is_applied_once_then_a_duplicate() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let inc = mutation(
        &op(1),
        1,
        "tasks",
        "c",
        &hlc(CLIENT),
        json!({"kind": "increment", "field": "n", "by": 4}),
    );
    let r = s
        .client()
        .push("demo", &t, CLIENT, vec![inc.clone(), inc])
        .json();
    assert_eq!(r["results"][0]["status"], "applied");
    assert_eq!(r["results"][1]["status"], "duplicate");
    assert_eq!(r["results"][1]["original"], r["results"][0]);
    let rec = s
        .client()
        .get("/v1/spaces/demo/records/tasks/c", Some(&t))
        .json();
    assert_eq!(rec["value"], json!({"n": 4}));
}

#[test]
fn manifest_limits_and_shape_are_enforced() {
    let mut config = Config::default();
    config.limits.op_ids_per_manifest_max = 100;
    let s = TestServer::start_with(config);
    let t = s.token("ada", "demo", Scope::Write);
    let ids: Vec<String> = (0..101).map(op).collect();
    let r = s.client().send(
        "POST",
        "/v1/spaces/demo/manifest",
        Some(&t),
        &json!({"op_ids": ids}),
    );
    assert_eq!((r.status, r.problem().as_str()), (413, "batch-too-large"));
    let r = s.client().send(
        "POST",
        "/v1/spaces/demo/manifest",
        Some(&t),
        &json!({"op_ids": "op-1"}),
    );
    assert_eq!((r.status, r.problem().as_str()), (400, "invalid-request"));
    assert_eq!(r.json()["errors"][0]["pointer"], "/op_ids");
}

// ---------------------------------------------------------------------------------------------
// Pull

#[test]
fn pull_pages_have_more_and_cover_everything_once() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let ms: Vec<Value> = (1..=25)
        .map(|n| put(n, &format!("r{n:02}"), json!({"n": n})))
        .collect();
    s.client().push_applied("demo", &t, CLIENT, ms);
    let first = s.client().pull("demo", &t, "?limit=10").json();
    let first_ids: Vec<&str> = first["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (1..=10).map(|n| format!("r{n:02}")).collect();
    assert_eq!(first_ids, expected);
    assert_eq!(first["has_more"], true);
    assert_eq!(first["through"], first["records"][9]["change_seq"]);
    let (all, through) = s.client().pull_all("demo", &t, 10);
    let expected: BTreeMap<String, Value> = (1..=25)
        .map(|n| (format!("tasks/r{n:02}"), json!({"n": n})))
        .collect();
    let pulled: BTreeMap<String, Value> = all
        .iter()
        .map(|(k, r)| (k.clone(), r["value"].clone()))
        .collect();
    assert_eq!(pulled, expected);
    assert_eq!(through, 25);
}

#[test]
fn pull_under_concurrent_writes_ends_with_the_space_state() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let c = s.client();
    c.push_applied(
        "demo",
        &t,
        CLIENT,
        (1..=20)
            .map(|n| put(n, &format!("r{n:02}"), json!({"v": 0})))
            .collect(),
    );
    let mut mirror: BTreeMap<String, Value> = BTreeMap::new();
    let mut page = c.pull("demo", &t, "?limit=5").json();
    let mut n = 100;
    loop {
        for rec in page["records"].as_array().unwrap() {
            mirror.insert(rec["id"].as_str().unwrap().to_owned(), rec.clone());
        }
        // Between pages, change Records already pulled and not yet pulled.
        n += 1;
        c.push_applied(
            "demo",
            &t,
            CLIENT,
            vec![
                put(n, "r01", json!({"v": n})),
                put(n + 500, "r19", json!({"v": n})),
            ],
        );
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        page = c
            .pull(
                "demo",
                &t,
                &format!("?limit=5&cursor={}", page["cursor"].as_str().unwrap()),
            )
            .json();
    }
    // Catch up on the last writes, then compare with the server's checksums.
    let cursor = page["cursor"].as_str().unwrap().to_owned();
    let rest = c.pull("demo", &t, &format!("?cursor={cursor}")).json();
    for rec in rest["records"].as_array().unwrap() {
        mirror.insert(rec["id"].as_str().unwrap().to_owned(), rec.clone());
    }
    let mut sums = SpaceChecksums::default();
    for rec in mirror.values().filter(|r| r["deleted"] == false) {
        sums.add(
            "tasks",
            rec["id"].as_str().unwrap(),
            rec["value"].as_object().unwrap(),
        );
    }
    let server = c.get("/v1/spaces/demo/checksums", Some(&t)).json();
    assert_eq!(server["through"], rest["through"]);
    assert_eq!(
        server["space_digest"],
        driftless_protocol::checksum::to_hex(&sums.space_digest())
    );
}

#[test]
fn own_acknowledged_writes_are_in_the_next_pull() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let r = s
        .client()
        .push("demo", &t, CLIENT, vec![put(1, "t1", json!({"x": 1}))])
        .json();
    let seq = r["results"][0]["change_seq"].as_u64().unwrap();
    let (records, through) = s.client().pull_all("demo", &t, 100);
    assert!(through >= seq);
    assert_eq!(records["tasks/t1"]["value"], json!({"x": 1}));
}

#[test]
fn long_poll_returns_when_a_change_arrives() {
    use std::io::{Read, Write};
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let empty = s.client().pull("demo", &t, "").json();
    let cursor = empty["cursor"].as_str().unwrap().to_owned();
    // Ordered by a signal, not by time: the held pull is written in full before the push is
    // sent, so the change arrives after the request and a Server that did not hold it would
    // answer an empty page.
    let authority = s.base.strip_prefix("http://").unwrap();
    let mut held = std::net::TcpStream::connect(authority).unwrap();
    held.write_all(
        format!(
            "GET /v1/spaces/demo/pull?wait_ms=20000&cursor={cursor} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {t}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    held.flush().unwrap();
    let pushed = s
        .client()
        .push(
            "demo",
            &t,
            CLIENT,
            vec![put(1, "t1", json!({"live": true}))],
        )
        .json();
    assert_eq!(pushed["results"][0]["status"], "applied", "{pushed}");
    let mut raw = String::new();
    held.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let page: Value = serde_json::from_str(body).unwrap();
    assert_eq!(page["records"][0]["id"], "t1", "{page}");
    assert_eq!(page["records"][0]["value"], json!({"live": true}));
}

#[test]
fn long_poll_without_changes_returns_an_empty_page_at_the_same_position() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    s.client()
        .push("demo", &t, CLIENT, vec![put(1, "t1", json!({}))]);
    let first = s.client().pull("demo", &t, "").json();
    let page = s
        .client()
        .pull(
            "demo",
            &t,
            &format!("?wait_ms=100&cursor={}", first["cursor"].as_str().unwrap()),
        )
        .json();
    assert_eq!(page["records"], json!([]));
    assert_eq!(page["through"], first["through"]);
}

#[test]
fn bad_cursors_and_parameters_are_refused() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Read);
    let other = s.token("ada", "other", Scope::Read);
    let foreign = s.client().pull("other", &other, "").json()["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    for q in ["?cursor=nonsense".to_owned(), format!("?cursor={foreign}")] {
        let r = s.client().pull("demo", &t, &q);
        assert_eq!(
            (r.status, r.problem().as_str()),
            (400, "invalid-cursor"),
            "{q}"
        );
    }
    for q in ["?limit=0", "?limit=100000", "?wait_ms=999999", "?limit=x"] {
        let r = s.client().pull("demo", &t, q);
        assert_eq!(
            (r.status, r.problem().as_str()),
            (400, "invalid-request"),
            "{q}"
        );
        assert!(r.json()["errors"][0]["pointer"]
            .as_str()
            .unwrap()
            .starts_with("/query/"));
    }
}

#[test]
fn cursor_after_compaction_gets_the_resync_problem() {
    let s = TestServer::start();
    let admin = s.token("ada", "demo", Scope::Admin);
    let c = s.client();
    c.push(
        "demo",
        &admin,
        CLIENT,
        vec![put(1, "t1", json!({})), put(2, "t2", json!({}))],
    );
    let old = c.pull("demo", &admin, "").json()["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    c.push(
        "demo",
        &admin,
        CLIENT,
        vec![mutation(
            &op(3),
            3,
            "tasks",
            "t1",
            &hlc(CLIENT),
            json!({"kind": "delete"}),
        )],
    );
    let compacted = c.raw("POST", "/v1/spaces/demo/compact", Some(&admin), &[], None);
    assert_eq!(compacted.status, 200, "{}", compacted.text);
    assert_schema("compaction-response", &compacted.json());
    assert_eq!(compacted.json()["tombstones_purged"], 1);
    let r = c.pull("demo", &admin, &format!("?cursor={old}"));
    assert_eq!((r.status, r.problem().as_str()), (410, "cursor-expired"));
    let (records, _) = c.pull_all("demo", &admin, 100);
    assert_eq!(
        records.keys().collect::<Vec<_>>(),
        vec!["tasks/t2"],
        "the purged tombstone is gone"
    );
    // A late write stamped before the Horizon cannot resurrect t1.
    let late = mutation(
        &op(4),
        4,
        "tasks",
        "t1",
        &hlc_at(now_ms() - 10_000, 0, CLIENT),
        json!({"kind": "patch", "set": {"x": 1}}),
    );
    let r = c.push("demo", &admin, CLIENT, vec![late]).json();
    assert_eq!(
        r["results"][0]["problem"]["type"],
        "urn:driftless:problem:mutation-too-old"
    );
}

// ---------------------------------------------------------------------------------------------
// Records, history, checksums

#[test]
fn records_are_read_with_tombstones_and_missing_ones_are_not_found() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let c = s.client();
    c.push(
        "demo",
        &t,
        CLIENT,
        vec![
            put(1, "t1", json!({"a": 1})),
            mutation(
                &op(2),
                2,
                "tasks",
                "t1",
                &hlc(CLIENT),
                json!({"kind": "delete"}),
            ),
        ],
    );
    let r = c.get("/v1/spaces/demo/records/tasks/t1", Some(&t));
    assert_eq!(r.status, 200);
    assert_schema("record", &r.json());
    assert_eq!(r.json()["deleted"], true);
    assert!(r.json().get("value").is_none());
    let r = c.get("/v1/spaces/demo/records/tasks/nope", Some(&t));
    assert_eq!((r.status, r.problem().as_str()), (404, "record-not-found"));
    let r = c.get("/v1/spaces/demo/records/Tasks/t1", Some(&t));
    assert_eq!((r.status, r.problem().as_str()), (400, "invalid-request"));
}

#[test]
fn history_lists_applied_and_rejected_without_values_for_admins_only() {
    let s = TestServer::start();
    let admin = s.token("ada", "demo", Scope::Admin);
    let writer = s.token("bob", "demo", Scope::Write);
    let c = s.client();
    c.push(
        "demo",
        &admin,
        CLIENT,
        vec![put(1, "t1", json!({"secret": "s3cr3t"}))],
    );
    let bad = mutation(
        &op(2),
        2,
        "tasks",
        "t1",
        &hlc("client-b"),
        json!({"kind": "resolve", "field": "secret", "value": "x"}),
    );
    c.push("demo", &writer, "client-b", vec![bad]);
    let r = c.get("/v1/spaces/demo/records/tasks/t1/history", Some(&admin));
    assert_eq!(r.status, 200);
    let h = r.json();
    assert_schema("history-response", &h);
    assert!(!r.text.contains("s3cr3t"), "history holds no values");
    let entries = h["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (entries[0]["user"].as_str(), entries[0]["status"].as_str()),
        (Some("ada"), Some("applied"))
    );
    assert_eq!(
        (entries[1]["user"].as_str(), entries[1]["status"].as_str()),
        (Some("bob"), Some("rejected"))
    );
    assert_eq!(
        entries[1]["problem_type"],
        "urn:driftless:problem:policy-violation"
    );
    let page = c
        .get(
            "/v1/spaces/demo/records/tasks/t1/history?limit=1",
            Some(&admin),
        )
        .json();
    assert_eq!(page["has_more"], true);
    let r = c.get("/v1/spaces/demo/records/tasks/t1/history", Some(&writer));
    assert_eq!((r.status, r.problem().as_str()), (403, "forbidden"));
}

#[test]
fn checksums_match_the_records_and_buckets_hold_exactly_theirs() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let c = s.client();
    c.push_applied(
        "demo",
        &t,
        CLIENT,
        (1..=40)
            .map(|n| put(n, &format!("r{n}"), json!({"n": n})))
            .collect(),
    );
    c.push_applied(
        "demo",
        &t,
        CLIENT,
        vec![mutation(
            &op(99),
            99,
            "tasks",
            "r1",
            &hlc(CLIENT),
            json!({"kind": "delete"}),
        )],
    );
    let sums = c.get("/v1/spaces/demo/checksums", Some(&t)).json();
    assert_schema("checksums-response", &sums);
    let (records, _) = c.pull_all("demo", &t, 100);
    let existing: BTreeSet<String> = records
        .iter()
        .filter(|(_, r)| r["deleted"] == false)
        .map(|(_, r)| r["id"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = (2..=40).map(|n| format!("r{n}")).collect();
    assert_eq!(existing, expected);
    assert_eq!(records["tasks/r1"]["deleted"], true);
    let mut model = SpaceChecksums::default();
    for rec in records.values().filter(|r| r["deleted"] == false) {
        model.add(
            "tasks",
            rec["id"].as_str().unwrap(),
            rec["value"].as_object().unwrap(),
        );
    }
    assert_eq!(
        sums["space_digest"],
        driftless_protocol::checksum::to_hex(&model.space_digest())
    );
    for (i, b) in model.buckets().iter().enumerate() {
        assert_eq!(sums["buckets"][i]["records"], b.records);
        let mut got = BTreeSet::new();
        let mut query = "?limit=2".to_owned();
        loop {
            let page = c
                .get(&format!("/v1/spaces/demo/buckets/{i}{query}"), Some(&t))
                .json();
            assert_schema("bucket-response", &page);
            for r in page["records"].as_array().unwrap() {
                let id = r["id"].as_str().unwrap().to_owned();
                assert_eq!(r["value"], records[&format!("tasks/{id}")]["value"]);
                assert!(got.insert(id), "bucket {i} lists {r} twice");
            }
            if page["has_more"] == false {
                break;
            }
            query = format!("?limit=2&after={}", page["next_after"].as_str().unwrap());
        }
        // Exactly the existing Records whose bucket is i.
        let expected: BTreeSet<String> = existing
            .iter()
            .filter(|id| usize::from(driftless_protocol::checksum::bucket_of("tasks", id)) == i)
            .cloned()
            .collect();
        assert_eq!(got, expected, "bucket {i}");
        assert_eq!(got.len() as u64, b.records, "bucket {i}");
    }
    let r = c.get("/v1/spaces/demo/buckets/64", Some(&t));
    assert_eq!((r.status, r.problem().as_str()), (400, "invalid-request"));
    // An `after` that no page ever gave (not a Collection name and a Record ID) is refused, as
    // the OpenAPI document's pattern says.
    for after in ["no-slash", "Tasks/r1", "tasks/", "tasks/a%20b"] {
        let r = c.get(
            &format!("/v1/spaces/demo/buckets/0?after={after}"),
            Some(&t),
        );
        assert_eq!(
            (r.status, r.problem().as_str()),
            (400, "invalid-request"),
            "after={after}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Collection schemas

fn schema_doc(version: u32, schema: Value, fields: Value, migration: Value) -> Value {
    json!({"collection": "tasks", "version": version, "schema": schema, "fields": fields, "migration": migration})
}

#[test]
fn schema_registration_is_versioned_and_immutable() {
    let s = TestServer::start();
    let admin = s.token("ada", "demo", Scope::Admin);
    let c = s.client();
    let v1 = schema_doc(
        1,
        json!({"type": "object", "properties": {"name": {"type": "string"}}}),
        json!({}),
        json!([]),
    );
    let path = "/v1/spaces/demo/collections/tasks/schemas";
    let r = c.send("PUT", &format!("{path}/1"), Some(&admin), &v1);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_schema("collection-schema", &r.json());
    assert_eq!(
        c.send("PUT", &format!("{path}/1"), Some(&admin), &v1)
            .status,
        200
    );
    let mut changed = v1.clone();
    changed["schema"]["properties"]["name"]["maxLength"] = json!(3);
    let r = c.send("PUT", &format!("{path}/1"), Some(&admin), &changed);
    assert_eq!((r.status, r.problem().as_str()), (409, "schema-conflict"));
    let v3 = schema_doc(3, json!({"type": "object"}), json!({}), json!([]));
    let r = c.send("PUT", &format!("{path}/3"), Some(&admin), &v3);
    assert_eq!(
        (r.status, r.problem().as_str()),
        (409, "schema-version-gap")
    );
    let r = c.send("PUT", &format!("{path}/2"), Some(&admin), &v3);
    assert_eq!((r.status, r.problem().as_str()), (400, "invalid-request"));
    let list = c.get(path, Some(&admin)).json();
    assert_schema("collection-schema-list", &list);
    assert_eq!(list["versions"].as_array().unwrap().len(), 1);
}

#[test]
fn invalid_collection_schemas_are_refused() {
    let s = TestServer::start();
    let admin = s.token("ada", "demo", Scope::Admin);
    let c = s.client();
    let path = "/v1/spaces/demo/collections/tasks/schemas/1";
    for doc in [
        schema_doc(1, json!({"type": "array"}), json!({}), json!([])),
        schema_doc(
            1,
            json!({"type": "object", "required": ["likes"]}),
            json!({"likes": {"policy": "counter"}}),
            json!([]),
        ),
        schema_doc(
            1,
            json!({"type": "object", "properties": {"a": {"type": 12}}}),
            json!({}),
            json!([]),
        ),
        schema_doc(
            1,
            json!({"type": "object"}),
            json!({}),
            json!([{"op": "remove_field", "field": "a"}]),
        ),
    ] {
        let r = c.send("PUT", path, Some(&admin), &doc);
        assert_eq!(
            (r.status, r.problem().as_str()),
            (422, "invalid-schema"),
            "{doc}"
        );
    }
}

#[test]
fn old_writes_are_upcast_validated_and_defaults_filled() {
    let s = TestServer::start();
    let admin = s.token("ada", "demo", Scope::Admin);
    let c = s.client();
    let path = "/v1/spaces/demo/collections/tasks/schemas";
    let v1 = schema_doc(
        1,
        json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
        json!({}),
        json!([]),
    );
    assert_eq!(
        c.send("PUT", &format!("{path}/1"), Some(&admin), &v1)
            .status,
        201
    );
    let mut old = put(1, "t1", json!({"name": "Buy milk", "extra": "kept"}));
    old["schema_version"] = json!(1);
    c.push("demo", &admin, CLIENT, vec![old]);
    let v2 = schema_doc(
        2,
        json!({"type": "object", "properties": {"title": {"type": "string"}, "priority": {"type": "integer"}}, "required": ["title"]}),
        json!({}),
        json!([{"op": "rename_field", "from": "name", "to": "title"}, {"op": "add_field", "field": "priority", "default": 0}]),
    );
    assert_eq!(
        c.send("PUT", &format!("{path}/2"), Some(&admin), &v2)
            .status,
        201
    );
    let rec = c
        .get("/v1/spaces/demo/records/tasks/t1", Some(&admin))
        .json();
    assert_eq!(
        rec["value"],
        json!({"title": "Buy milk", "priority": 0, "extra": "kept"})
    );
    assert_eq!(rec["schema_version"], 2);
    // A v1 client's patch is upcast to the new name.
    let mut v1_patch = mutation(
        &op(2),
        2,
        "tasks",
        "t1",
        &hlc(CLIENT),
        json!({"kind": "patch", "set": {"name": "Oat milk"}}),
    );
    v1_patch["schema_version"] = json!(1);
    let r = c.push("demo", &admin, CLIENT, vec![v1_patch]).json();
    assert_eq!(r["results"][0]["status"], "applied", "{r}");
    let rec = c
        .get("/v1/spaces/demo/records/tasks/t1", Some(&admin))
        .json();
    assert_eq!(rec["value"]["title"], "Oat milk");
    // A value that breaks the schema is rejected.
    let mut bad = mutation(
        &op(3),
        3,
        "tasks",
        "t1",
        &hlc(CLIENT),
        json!({"kind": "patch", "set": {"priority": "high"}}),
    );
    bad["schema_version"] = json!(2);
    let r = c.push("demo", &admin, CLIENT, vec![bad]).json();
    assert_eq!(
        r["results"][0]["problem"]["type"],
        "urn:driftless:problem:schema-violation"
    );
    let mut unset_required = mutation(
        &op(4),
        4,
        "tasks",
        "t1",
        &hlc(CLIENT),
        json!({"kind": "patch", "unset": ["title"]}),
    );
    unset_required["schema_version"] = json!(2);
    let r = c.push("demo", &admin, CLIENT, vec![unset_required]).json();
    assert_eq!(
        r["results"][0]["problem"]["type"],
        "urn:driftless:problem:schema-violation"
    );
}

// ---------------------------------------------------------------------------------------------
// Auth and limits

#[test]
fn missing_expired_and_tampered_tokens_are_unauthorized() {
    let s = TestServer::start();
    let c = s.client();
    let expired = s.token_ttl("ada", "demo", Scope::Read, -10);
    let good = s.token("ada", "demo", Scope::Read);
    let mut tampered = good.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for token in [
        None,
        Some(expired.as_str()),
        Some(tampered.as_str()),
        Some("garbage"),
    ] {
        let r = c.get("/v1/spaces/demo/pull", token);
        assert_eq!(
            (r.status, r.problem().as_str()),
            (401, "unauthorized"),
            "{token:?}"
        );
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
}

#[test]
fn forbidden_looks_the_same_whether_or_not_the_space_exists() {
    let s = TestServer::start();
    let c = s.client();
    let owner = s.token("ada", "private", Scope::Write);
    c.push(
        "private",
        &owner,
        CLIENT,
        vec![put(1, "t1", json!({"secret": 1}))],
    );
    let stranger = s.token("eve", "mine", Scope::Admin);
    let existing = c.get("/v1/spaces/private/checksums", Some(&stranger));
    let missing = c.get("/v1/spaces/never-written/checksums", Some(&stranger));
    assert_eq!(
        (existing.status, existing.problem().as_str()),
        (403, "forbidden")
    );
    assert_eq!(existing.text, missing.text);
    assert_eq!(
        existing.headers.get("content-length"),
        missing.headers.get("content-length")
    );
}

#[test]
fn read_scope_cannot_write_and_authorization_precedes_validation() {
    let s = TestServer::start();
    let reader = s.token("ada", "demo", Scope::Read);
    let r = s.client().send(
        "POST",
        "/v1/spaces/demo/push",
        Some(&reader),
        &json!({"garbage": true}),
    );
    assert_eq!((r.status, r.problem().as_str()), (403, "forbidden"));
    let r = s
        .client()
        .raw("POST", "/v1/spaces/demo/compact", Some(&reader), &[], None);
    assert_eq!((r.status, r.problem().as_str()), (403, "forbidden"));
}

#[test]
fn excess_requests_are_rate_limited_with_retry_after() {
    let config = Config {
        rate_limit_per_s: 3,
        ..Config::default()
    };
    let s = TestServer::start_with(config);
    let t = s.token("ada", "demo", Scope::Read);
    let statuses: Vec<Reply> = (0..10).map(|_| s.client().pull("demo", &t, "")).collect();
    let limited = statuses
        .iter()
        .find(|r| r.status == 429)
        .expect("some request is limited");
    assert_eq!(limited.problem(), "rate-limited");
    assert!(
        limited
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    // Another User has a bucket of their own.
    let other = s.token("bob", "demo", Scope::Read);
    assert_eq!(s.client().pull("demo", &other, "").status, 200);
}

use common::Reply;

// ---------------------------------------------------------------------------------------------
// Merge policies over HTTP

#[test]
fn policies_merge_as_the_spec_defines() {
    let s = TestServer::start();
    let admin = s.token("ada", "demo", Scope::Admin);
    let c = s.client();
    let doc = json!({"collection": "notes", "version": 1,
        "schema": {"type": "object"},
        "fields": {"likes": {"policy": "counter"}, "tags": {"policy": "add_wins_set"}, "body": {"policy": "keep_both"}}});
    assert_eq!(
        c.send(
            "PUT",
            "/v1/spaces/demo/collections/notes/schemas/1",
            Some(&admin),
            &doc
        )
        .status,
        201
    );
    let t0 = now_ms() - 5_000;
    let m = |n: u64, client: &str, l: u16, effect: Value| {
        let mut m = mutation(&op(n), n, "notes", "n1", &hlc_at(t0, l, client), effect);
        m["schema_version"] = json!(1);
        m
    };
    let a = vec![
        m(
            1,
            "client-a",
            0,
            json!({"kind": "increment", "field": "likes", "by": 2}),
        ),
        m(
            2,
            "client-a",
            1,
            json!({"kind": "set_add", "field": "tags", "elements": ["home", "urgent"]}),
        ),
        m(
            3,
            "client-a",
            2,
            json!({"kind": "patch", "set": {"body": "Milk"}}),
        ),
    ];
    let b = vec![
        m(
            4,
            "client-b",
            0,
            json!({"kind": "increment", "field": "likes", "by": 5}),
        ),
        m(
            5,
            "client-b",
            3,
            json!({"kind": "set_remove", "field": "tags", "elements": ["urgent"]}),
        ),
        m(
            6,
            "client-b",
            3,
            json!({"kind": "patch", "set": {"body": "Oat milk"}}),
        ),
    ];
    let rb = c.push("demo", &admin, "client-b", b).json();
    let ra = c.push("demo", &admin, "client-a", a).json();
    for r in [ra, rb] {
        assert!(
            r["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|x| x["status"] == "applied"),
            "{r}"
        );
    }
    let rec = c
        .get("/v1/spaces/demo/records/notes/n1", Some(&admin))
        .json();
    assert_eq!(
        rec["value"],
        json!({"likes": 7, "tags": ["home"], "body": "Oat milk"})
    );
    assert_eq!(rec["conflicts"], json!({"body": ["Milk", "Oat milk"]}));
}
