//! `driftless serve` and `driftless token` as real child processes.

mod common;

use std::time::Duration;

use common::server::{agent, call, driftless, token, ServerProcess};
use serde_json::json;

#[test]
fn token_prints_one_token_that_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out = driftless()
        .args(["token", "--data"])
        .arg(dir.path())
        .args([
            "--user", "ada", "--space", "demo", "--scope", "read", "--ttl", "60", "--init",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    let token = stdout.trim();
    assert!(token.starts_with("dl1."));
    let server = ServerProcess::start(dir.path(), &[]);
    let (status, _) = call(
        &agent(),
        "GET",
        &format!("{}/v1/spaces/demo/pull", server.base),
        token,
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    let (status, _) = call(
        &agent(),
        "POST",
        &format!("{}/v1/spaces/demo/compact", server.base),
        token,
        None,
    )
    .unwrap();
    assert_eq!(status, 403, "a read token cannot compact");
}

#[test]
fn token_with_an_invalid_space_is_named_with_the_token_usage_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = driftless()
        .args(["token", "--data"])
        .arg(dir.path())
        .args(["--user", "ada", "--space", "-bad"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.lines().next().unwrap().contains("'-b'"), "{stderr}");
    assert!(stderr.contains("Usage: driftless token"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn sigterm_stops_the_server_cleanly_and_data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = token(dir.path(), "ada", "demo", "write");
    let server = ServerProcess::start(dir.path(), &[]);
    let hlc = format!("{:012x}-0000-client-a", common::server::now_ms());
    let body = json!({"client_id": "client-a", "mutations": [common::server::mutation("op-sigterm-1", 1, "tasks", "t1", &hlc, json!({"kind": "put", "value": {"x": 1}}))]});
    let (status, _) = call(
        &agent(),
        "POST",
        &format!("{}/v1/spaces/demo/push", server.base),
        &t,
        Some(&body),
    )
    .unwrap();
    assert_eq!(status, 200);
    let mut server = server;
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let mut child = std::mem::replace(
        &mut server.child,
        driftless().arg("--version").spawn().unwrap(),
    );
    std::thread::spawn(move || done_tx.send(child.wait().unwrap()).unwrap());
    let status = done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    let again = ServerProcess::start(dir.path(), &[]);
    let (_, rec) = call(
        &agent(),
        "GET",
        &format!("{}/v1/spaces/demo/records/tasks/t1", again.base),
        &t,
        None,
    )
    .unwrap();
    assert_eq!(rec["value"], json!({"x": 1}));
}

#[test]
fn a_busy_port_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let out = driftless()
        .args(["serve", "--listen", &addr, "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot listen"), "{stderr}");
}

#[test]
fn debug_logs_name_op_ids_but_never_values_or_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let t = token(dir.path(), "ada", "demo", "write");
    let log = dir.path().join("server.log");
    let file = std::fs::File::create(&log).unwrap();
    let server =
        ServerProcess::start_with(dir.path(), &[], &[("DRIFTLESS_LOG", "debug")], file.into());
    let hlc = format!("{:012x}-0000-client-a", common::server::now_ms());
    let m = common::server::mutation(
        "op-logged-0001",
        1,
        "tasks",
        "t1",
        &hlc,
        json!({"kind": "put", "value": {"secret": "PAYLOAD-MARKER-42"}}),
    );
    let (status, _) = call(
        &agent(),
        "POST",
        &format!("{}/v1/spaces/demo/push", server.base),
        &t,
        Some(&json!({"client_id": "client-a", "mutations": [m]})),
    )
    .unwrap();
    assert_eq!(status, 200);
    let (status, _) = call(
        &agent(),
        "GET",
        &format!("{}/v1/spaces/demo/pull", server.base),
        &t,
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    server.kill();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("op-logged-0001"),
        "the push is logged with its op ID:\n{text}"
    );
    assert!(
        !text.contains("PAYLOAD-MARKER-42"),
        "a value reached the log:\n{text}"
    );
    assert!(
        !text.contains(&t) && !text.contains(t.split('.').nth(2).unwrap()),
        "a token reached the log:\n{text}"
    );
}
