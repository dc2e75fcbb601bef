//! The connection layer under hostile clients (`[LIM-8]` to `[LIM-13]`, `[SEC-5]`, `[SEC-6]`):
//! raw sockets on 127.0.0.1 against an in-process server with small bounds.
//!
//! No test measures time. Where a test waits, it waits for an event (the server closing the
//! socket, an answer) under a generous deadline that only ends a hung run.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Client, TestServer};
use driftless_protocol::messages::Scope;
use driftless_server::conn::EdgeConfig;
use driftless_server::faults::Faults;
use driftless_server::service::Config;
use serde_json::Value;

/// Ends a hung run; never reached by a passing one.
const DEADLINE: Duration = Duration::from_secs(60);

fn server(edge: EdgeConfig) -> TestServer {
    TestServer::start_edge(
        tempfile::tempdir().unwrap(),
        Config::default(),
        Faults::default(),
        edge,
    )
}

fn connect(s: &TestServer) -> TcpStream {
    let stream = TcpStream::connect(s.base.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// Reads until the server closes the socket; what it sent. Fails on the deadline.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }
}

/// Reads one response (head and a `content-length` body).
fn read_response(stream: &mut TcpStream) -> (u16, String, Value) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                let body =
                    serde_json::from_slice(&data[end + 4..end + 4 + length]).unwrap_or(Value::Null);
                return (status, head, body);
            }
        }
        let n = stream
            .read(&mut buf)
            .expect("a response before the deadline");
        assert!(
            n > 0,
            "closed before a whole response: {:?}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&buf[..n]);
    }
}

fn assert_problem(head: &str, body: &Value, status: u16, code: &str) {
    assert!(
        head.contains("content-type: application/problem+json"),
        "not problem+json: {head}"
    );
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(
        body["type"],
        format!("urn:driftless:problem:{code}"),
        "{body}"
    );
    assert!(body["title"].is_string(), "{body}");
}

#[test]
fn a_request_head_that_never_ends_is_closed_after_the_header_timeout() {
    let s = server(EdgeConfig {
        header_read_timeout: Duration::from_millis(200),
        ..Default::default()
    });
    let mut slow = connect(&s);
    slow.write_all(b"GET /.well-known/driftless HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
        .unwrap();
    let answer = read_to_close(&mut slow);
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let counters = &s.app.registry.counters;
    assert_eq!(
        counters
            .header_timeouts
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout_but_answered_before() {
    let s = server(EdgeConfig {
        idle_timeout: Duration::from_millis(200),
        ..Default::default()
    });
    let mut idle = connect(&s);
    // One request keeps the connection alive; then it sits idle until the server closes it.
    idle.write_all(b"GET /.well-known/driftless HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (status, _, body) = read_response(&mut idle);
    assert_eq!(status, 200);
    assert!(body["limits"].is_object(), "{body}");
    assert!(read_to_close(&mut idle).is_empty());
}

#[test]
fn idle_connections_beyond_the_bound_do_not_lock_a_new_client_out() {
    let s = server(EdgeConfig {
        connections_max: 4,
        ..Default::default()
    });
    // Twelve silent connections: three times the bound.
    let mut silent: Vec<TcpStream> = (0..12).map(|_| connect(&s)).collect();
    let reply = s.client().get("/.well-known/driftless", None);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(s.app.registry.open_connections() <= 4);
    // The oldest silent connections were closed to make room.
    assert!(read_to_close(&mut silent[0]).is_empty());
}

#[test]
fn a_new_connection_is_answered_503_when_every_connection_is_busy() {
    let s = server(EdgeConfig {
        connections_max: 1,
        ..Default::default()
    });
    let token = s.token("ada", "demo", Scope::Read);
    // One long-poll holds the only place.
    let _held = hold_long_poll(&s, &token);
    wait_for_long_polls(&s, 1);
    let mut late = connect(&s);
    let (status, head, body) = read_response(&mut late);
    assert_eq!(status, 503);
    assert!(head.contains("retry-after: 1"), "{head}");
    assert_problem(&head, &body, 503, "unavailable");
}

/// Sends a long-poll pull on its own connection; the server holds it (nothing changes).
fn hold_long_poll(s: &TestServer, token: &str) -> TcpStream {
    let mut held = connect(s);
    write!(
        held,
        "GET /v1/spaces/demo/pull?wait_ms=30000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    held
}

/// Waits until `n` long-polls have taken a place: a signal the server gives, not a clock.
fn wait_for_long_polls(s: &TestServer, n: u64) {
    let mut taken = s.app.long_polls_taken.subscribe();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(taken.wait_for(|taken| *taken >= n))
        .expect("the server is running");
}

#[test]
fn a_long_poll_beyond_the_bound_is_answered_503_at_once() {
    let s = server(EdgeConfig {
        long_polls_max: 1,
        ..Default::default()
    });
    let token = s.token("ada", "demo", Scope::Read);
    let _held = hold_long_poll(&s, &token);
    wait_for_long_polls(&s, 1);
    assert_eq!(s.app.long_polls.available_permits(), 0);
    let second = s
        .client()
        .get("/v1/spaces/demo/pull?wait_ms=30000", Some(&token));
    assert_eq!(second.status, 503, "{}", second.text);
    assert_eq!(
        second.headers.get("retry-after").map(String::as_str),
        Some("1")
    );
    // A pull that does not wait is not bounded by it.
    let plain = s.client().get("/v1/spaces/demo/pull", Some(&token));
    assert_eq!(plain.status, 200, "{}", plain.text);
}

#[test]
fn an_oversized_head_is_answered_431_as_a_problem() {
    let s = server(EdgeConfig {
        header_bytes_max: 8 * 1024,
        ..Default::default()
    });
    let mut c = connect(&s);
    let big = "a".repeat(16 * 1024);
    let _ = write!(
        c,
        "GET /.well-known/driftless HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"
    );
    let (status, head, body) = read_response(&mut c);
    assert_eq!(status, 431);
    assert_problem(&head, &body, 431, "headers-too-large");
    assert!(head.contains("driftless-clock:"), "{head}");
}

#[test]
fn a_malformed_request_line_is_answered_400_as_a_problem() {
    let s = server(EdgeConfig::default());
    let mut c = connect(&s);
    c.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    let (status, head, body) = read_response(&mut c);
    assert_eq!(status, 400);
    assert_problem(&head, &body, 400, "invalid-request");
}

#[test]
fn a_client_still_uploading_reads_the_413_instead_of_a_reset() {
    let s = server(EdgeConfig::default());
    let token = s.token("ada", "demo", Scope::Write);
    let body_len = 2 * 1024 * 1024; // twice the announced body_bytes_max
    let mut c = connect(&s);
    write!(
        c,
        "POST /v1/spaces/demo/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n"
    )
    .unwrap();
    // The server answers on the Content-Length alone, before any of the body is sent.
    let (status, head, body) = read_response(&mut c);
    assert_eq!(status, 413);
    assert_problem(&head, &body, 413, "payload-too-large");
    // A client that sends its body anyway must be able to: the server keeps reading and
    // discarding it (a lingering close) instead of resetting the connection, which would turn
    // the answer into "broken pipe" for a client that reads only after writing.
    // The server has finished writing (its FIN arrived) before the body is sent, so what the
    // body meets is what a slow client meets: a reading socket, or a closed one.
    assert!(read_to_close(&mut c).is_empty());
    let chunk = vec![b' '; 64 * 1024];
    for i in 0..body_len / chunk.len() {
        c.write_all(&chunk)
            .unwrap_or_else(|e| panic!("chunk {i} of the body was refused: {e}"));
    }
    c.shutdown(std::net::Shutdown::Write).unwrap();
}

#[test]
fn a_body_trickled_too_slowly_is_answered_408() {
    let s = server(EdgeConfig {
        body_read_timeout: Duration::from_millis(200),
        ..Default::default()
    });
    let token = s.token("ada", "demo", Scope::Write);
    let mut c = connect(&s);
    write!(
        c,
        "POST /v1/spaces/demo/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"client_id\""
    )
    .unwrap();
    let (status, head, body) = read_response(&mut c);
    assert_eq!(status, 408);
    assert_problem(&head, &body, 408, "request-timeout");
    // Nothing was applied.
    let read = s.token("ada", "demo", Scope::Read);
    let pulled = s.client().get("/v1/spaces/demo/pull", Some(&read));
    let page: Value = serde_json::from_str(&pulled.text).unwrap();
    assert_eq!(page["records"], serde_json::json!([]), "{page}");
}

#[test]
fn failed_authentications_from_one_address_are_rate_limited_before_tokens_are_checked() {
    let s = server(EdgeConfig {
        auth_failures_burst: 3,
        auth_failures_per_min: 1,
        ..Default::default()
    });
    let c = s.client();
    for _ in 0..3 {
        let r = c.get("/v1/spaces/demo/pull", Some("dl1.not-a-token"));
        assert_eq!(r.status, 401, "{}", r.text);
    }
    let limited = c.get("/v1/spaces/demo/pull", Some("dl1.not-a-token"));
    assert_eq!(limited.status, 429, "{}", limited.text);
    assert!(limited.headers.contains_key("retry-after"));
    // A valid Token from the same address waits too: it is refused before it is checked.
    let good = s.token("ada", "demo", Scope::Read);
    assert_eq!(c.get("/v1/spaces/demo/pull", Some(&good)).status, 429);
}

#[test]
fn metrics_are_served_only_on_their_own_listener() {
    let s = server(EdgeConfig::default());
    let api = s.client().get("/metrics", None);
    assert_eq!(api.status, 404, "{}", api.text);
    let metrics = Client::new(&s.metrics_base).get("/metrics", None);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text.contains("driftless_connections_open"),
        "{}",
        metrics.text
    );
    let other = Client::new(&s.metrics_base).get("/v1/spaces/demo/pull", None);
    assert_eq!(other.status, 404);
}
