//! The conformance reports of a run against a faulty Server (feature `fault-injection`): a
//! failing case carries the HTTP exchanges that failed and expected vs actual, in JSON, JUnit
//! and HTML, and never a Token.
#![cfg(feature = "fault-injection")]

mod common;

use common::server::{driftless, ServerProcess};
use serde_json::Value;

/// A reference server with `fault` on, and the token command for its data folder.
fn faulty_server(dir: &std::path::Path, fault: &str) -> (ServerProcess, String) {
    let server = ServerProcess::start(dir, &["--rate-limit", "200", "--fault", fault]);
    let token_cmd = format!(
        "{} token --data {} --user {{user}} --space {{space}} --scope {{scope}} --ttl {{ttl}}",
        env!("CARGO_BIN_EXE_driftless"),
        dir.display()
    );
    (server, token_cmd)
}

/// The report of `case` run alone against a server with `fault`, in `format`, and the exit code.
fn report_of(fault: &str, case: &str, format: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let (server, token_cmd) = faulty_server(dir.path(), fault);
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("report");
    let run = driftless()
        .args([
            "conformance",
            "--server",
            &server.base,
            "--token-cmd",
            &token_cmd,
        ])
        .args(["--run", case, "--seed", "3", "--format", format, "--output"])
        .arg(&out)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&out)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&run.stderr)));
    (run.status.code().unwrap(), text)
}

#[test]
fn a_digest_failure_carries_its_exchanges_expected_actual_and_canonical_text() {
    let (code, text) = report_of("wrong-checksum", "integrity.checksums-match-model", "json");
    assert_eq!(code, 1, "{text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    let case = &report["cases"][0];
    assert_eq!(case["outcome"], "fail", "{case:#}");
    let m = &case["mismatch"];
    assert!(
        m["what"].as_str().unwrap().starts_with("digest of things/"),
        "{m:#}"
    );
    assert_ne!(m["expected"], m["actual"], "{m:#}");
    let canonical = m["canonical"].as_str().expect("the canonical text");
    assert!(
        canonical.starts_with(r#"{"collection":"things","id":"r"#),
        "{canonical}"
    );
    // The failing comparison read the pull: its exchange is the last one, with status and body.
    let exchanges = case["exchanges"].as_array().expect("exchanges");
    assert!(!exchanges.is_empty() && exchanges.len() <= 4, "{case:#}");
    let last = exchanges.last().unwrap();
    assert_eq!(last["method"], "GET");
    assert!(last["path"].as_str().unwrap().contains("/pull"), "{last:#}");
    assert_eq!(last["status"], 200);
    assert_eq!(last["response_content_type"], "application/json");
    let actual = m["actual"].as_str().unwrap().trim_matches('"');
    assert!(
        last["response_body"].as_str().unwrap().contains(actual),
        "the exchange shows the digest the server sent: {last:#}"
    );
    assert_no_token(&text);
}

#[test]
fn a_status_failure_carries_expected_and_actual_status_in_junit() {
    let (code, text) = report_of(
        "reject-everything",
        "idempotency.replay-returns-stored-outcome",
        "junit",
    );
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("<failure message=") || text.contains("<error message="),
        "{text}"
    );
    assert!(
        text.contains("&gt; POST /v1/spaces/"),
        "the request line: {text}"
    );
    assert!(
        text.contains("&lt; 200 application/json"),
        "the status line: {text}"
    );
    assert!(text.contains("rejected"), "the response body: {text}");
    assert_no_token(&text);
}

/// No Token (`dl1.` prefix) and no bearer header anywhere in a report.
fn assert_no_token(text: &str) {
    assert!(!text.contains("dl1."), "a Token leaked into the report");
    assert!(
        !text.to_ascii_lowercase().contains("bearer"),
        "an authorization header leaked"
    );
}

#[test]
fn the_html_report_shows_the_failure_its_requirement_and_its_transcript() {
    let (code, html) = report_of("wrong-checksum", "integrity.checksums-match-model", "html");
    assert_eq!(code, 1, "{html}");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.contains("data-outcome=\"fail\"") && html.contains("integrity.checksums-match-model"),
        "the failing case's row"
    );
    assert!(html.contains("href=\"#req-INT-"), "a requirement link");
    assert!(html.contains("<dt id=\"req-INT-"), "the requirement's text");
    assert!(
        html.contains("<pre class=\"exchange\">&gt; GET /v1/spaces/"),
        "the transcript"
    );
    assert!(html.contains("class=\"canonical\""), "the canonical text");
    // Self-contained: nothing is fetched.
    assert!(!html.contains("<link") && !html.contains("src=\"http"));
    assert_no_token(&html);
}
