//! Content codings over real HTTP (spec chapter 01, `[HTTP-16]` to `[HTTP-18]`): gzip push
//! bodies are decoded within the body limit, pull pages go gzip to Clients that accept it, and
//! other codings are refused with 415 naming gzip.

mod common;

use std::io::{Read, Write};

use common::{hlc, mutation, op, TestServer};
use driftless_protocol::messages::Scope;
use serde_json::{json, Value};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Status, headers and the body's bytes exactly as they came (no decoding).
fn exchange(
    s: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, std::collections::BTreeMap<String, String>, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut b = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", s.base))
        .header("authorization", format!("Bearer {token}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut resp = match body {
        Some(body) => agent.run(b.body(body).unwrap()),
        None => agent.run(b.body(()).unwrap()),
    }
    .unwrap();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    let bytes = resp.body_mut().read_to_vec().unwrap();
    (resp.status().as_u16(), headers, bytes)
}

const GZIP_JSON: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("content-encoding", "gzip"),
];

fn problem_type(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["type"].as_str().unwrap().to_owned()
}

#[test]
fn a_gzip_push_is_applied_and_the_pull_page_comes_back_gzip() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let mutations: Vec<Value> = (0..10)
        .map(|i| {
            mutation(
                &op(i),
                i + 1,
                "notes",
                &format!("note-{i}"),
                &hlc("client-a"),
                json!({"kind": "put", "value": {"title": "a note long enough to be worth compressing"}}),
            )
        })
        .collect();
    let body = json!({"client_id": "client-a", "mutations": mutations}).to_string();
    let (status, _, answer) = exchange(
        &s,
        "POST",
        "/v1/spaces/demo/push",
        &t,
        GZIP_JSON,
        Some(gzip(body.as_bytes())),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let results: Value = serde_json::from_slice(&answer).unwrap();
    assert!(results["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["status"] == "applied"));
    let (status, headers, packed) = exchange(
        &s,
        "GET",
        "/v1/spaces/demo/pull",
        &t,
        &[("accept-encoding", "br, gzip")],
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("content-encoding").map(String::as_str),
        Some("gzip")
    );
    assert_eq!(
        headers.get("vary").map(String::as_str),
        Some("accept-encoding")
    );
    let page: Value = serde_json::from_slice(&gunzip(&packed)).unwrap();
    assert_eq!(page["records"].as_array().unwrap().len(), 10);
    // Without Accept-Encoding the same page comes as it is.
    let (_, headers, plain) = exchange(&s, "GET", "/v1/spaces/demo/pull", &t, &[], None);
    assert!(!headers.contains_key("content-encoding"));
    let page: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(page["records"].as_array().unwrap().len(), 10);
}

/// A gzip body of a few KiB that inflates past `body_bytes_max` is refused with 413 before it
/// is decoded any further (`[HTTP-18]`, `[LIM-2]`).
#[test]
fn a_small_gzip_body_that_inflates_past_the_limit_is_payload_too_large() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let limit = s.app.service.config().limits.body_bytes_max as usize;
    let mut inflated = b"{\"client_id\":\"client-a\",\"mutations\":[".to_vec();
    inflated.resize(limit + 1024, b' ');
    inflated.extend_from_slice(b"]}");
    let bomb = gzip(&inflated);
    assert!(bomb.len() < limit / 100, "{} bytes", bomb.len());
    let (status, headers, answer) = exchange(
        &s,
        "POST",
        "/v1/spaces/demo/push",
        &t,
        GZIP_JSON,
        Some(bomb),
    );
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("application/problem+json")
    );
    assert_eq!(
        problem_type(&answer),
        "urn:driftless:problem:payload-too-large"
    );
}

#[test]
fn an_unknown_content_coding_is_415_naming_gzip() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let (status, headers, answer) = exchange(
        &s,
        "POST",
        "/v1/spaces/demo/push",
        &t,
        &[
            ("content-type", "application/json"),
            ("content-encoding", "br"),
        ],
        Some(b"{}".to_vec()),
    );
    assert_eq!(status, 415);
    assert_eq!(
        headers.get("accept-encoding").map(String::as_str),
        Some("gzip")
    );
    assert_eq!(
        problem_type(&answer),
        "urn:driftless:problem:unsupported-media-type"
    );
}

#[test]
fn a_body_marked_gzip_that_is_not_gzip_is_invalid_json() {
    let s = TestServer::start();
    let t = s.token("ada", "demo", Scope::Write);
    let (status, _, answer) = exchange(
        &s,
        "POST",
        "/v1/spaces/demo/push",
        &t,
        GZIP_JSON,
        Some(b"{\"client_id\":\"client-a\",\"mutations\":[]}".to_vec()),
    );
    assert_eq!(status, 400);
    assert_eq!(problem_type(&answer), "urn:driftless:problem:invalid-json");
}
