//! `driftless simulate --server URL --token-cmd CMD`, run as a child process against a
//! `driftless serve` child on a loopback port: a clean server holds every invariant, a server
//! with a planted fault is caught by name (feature `fault-injection`), and usage errors exit 2
//! with one line.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};

use common::server::{driftless, ServerProcess};

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The reference server's token command for the server over `data`.
fn token_cmd(data: &Path) -> String {
    format!(
        "{} token --data {} --user {{user}} --space {{space}} --scope {{scope}} --ttl {{ttl}}",
        shell_quote(env!("CARGO_BIN_EXE_driftless")),
        shell_quote(&data.display().to_string())
    )
}

fn simulate(args: &[&str]) -> Output {
    driftless()
        .arg("simulate")
        .args(args)
        .output()
        .expect("the driftless binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn clean_server_holds_every_invariant_over_the_network() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_one(data.path(), &[], &[], Stdio::null());
    let cmd = token_cmd(data.path());
    let out = simulate(&[
        "--server",
        &server.base,
        "--token-cmd",
        &cmd,
        "--seed",
        "1",
        "--scenarios",
        "3",
        "--verbose",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("seed ")).count(),
        3,
        "{}",
        text(&out)
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("3 network scenarios (seeds 1..=3"))
        .unwrap_or_else(|| panic!("no summary line: {}", text(&out)));
    assert!(summary.contains("held every invariant"), "{summary}");
    // The proxy was in the path: every Client request went through it.
    let requests: u64 = summary
        .split("the proxy saw ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count: {summary}"));
    assert!(requests > 0, "{summary}");
    assert!(stdout.contains("not bit-for-bit deterministic"), "{stdout}");
}

/// The steps hash depends on the seed alone, not on the Server's answers.
#[test]
fn a_seed_fixes_the_steps() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_one(data.path(), &[], &[], Stdio::null());
    let cmd = token_cmd(data.path());
    let run = |seed: &str| {
        let out = simulate(&[
            "--server",
            &server.base,
            "--token-cmd",
            &cmd,
            "--seed",
            seed,
            "--scenarios",
            "1",
            "--steps",
            "12",
            "--verbose",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("seed {seed} steps ")))
            .and_then(|l| l.split(':').next())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no steps hash: {}", text(&out)))
    };
    let (a, b, c) = (run("5"), run("5"), run("6"));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[cfg(feature = "fault-injection")]
fn caught(fault: &str, invariants: &[&str]) {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_one(data.path(), &["--fault", fault], &[], Stdio::null());
    let cmd = token_cmd(data.path());
    let out = simulate(&[
        "--server",
        &server.base,
        "--token-cmd",
        &cmd,
        "--seed",
        "1",
        "--scenarios",
        "20",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let fail = stdout
        .lines()
        .find(|l| l.starts_with("FAIL seed "))
        .unwrap_or_else(|| panic!("no FAIL line: {}", text(&out)));
    assert!(
        invariants
            .iter()
            .any(|i| fail.contains(&format!("invariant {i} broken"))),
        "{fault} caught as something else: {fail}"
    );
    let seed = fail.split(' ').nth(2).unwrap();
    let replay = stdout
        .lines()
        .find_map(|l| l.strip_prefix("replay: "))
        .unwrap_or_else(|| panic!("no replay line: {}", text(&out)));
    assert!(
        replay.starts_with("driftless simulate --server ")
            && replay.contains(&format!("--seed {seed} --scenarios 1 "))
            && replay.contains(" --token-cmd "),
        "{replay}"
    );
}

/// A server that applies a replayed push again is caught by its history, its counters or the
/// merge model.
#[cfg(feature = "fault-injection")]
#[test]
fn server_without_dedup_is_caught() {
    caught(
        "no-dedup",
        &[
            "applied-once",
            "counter-equals-applied-increments",
            "server-equals-merge-model",
        ],
    );
}

/// A server that adds a replayed increment again is caught by the counters or the merge model.
#[cfg(feature = "fault-injection")]
#[test]
fn server_that_increments_twice_on_replay_is_caught() {
    caught(
        "increment-twice-on-replay",
        &[
            "counter-equals-applied-increments",
            "server-equals-merge-model",
        ],
    );
}

/// A server that stores blank values is caught by the merge model the proxy keeps of what the
/// server answered as applied.
#[cfg(feature = "fault-injection")]
#[test]
fn server_that_blanks_values_breaks_the_merge_model() {
    caught("blank-values", &["server-equals-merge-model"]);
}

/// One line on stderr, exit 2, nothing run.
fn usage_error(args: &[&str], says: &str) {
    let out = simulate(args);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{}", text(&out));
    assert!(stderr.contains(says), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
}

#[test]
fn server_without_token_cmd_is_a_usage_error() {
    usage_error(
        &["--server", "http://127.0.0.1:9"],
        "--server needs --token-cmd",
    );
}

#[test]
fn token_cmd_without_server_is_a_usage_error() {
    usage_error(&["--token-cmd", "true"], "--token-cmd needs --server");
}

#[test]
fn bad_server_urls_are_usage_errors() {
    for (url, says) in [
        ("https://sync.example.test", "needs an http:// URL"),
        ("127.0.0.1:7878", "not an http:// URL"),
        ("http://127.0.0.1:notaport", "the port is not a number"),
    ] {
        usage_error(&["--server", url, "--token-cmd", "true"], says);
    }
}

#[test]
fn planted_faults_do_not_go_with_a_server() {
    usage_error(
        &[
            "--server",
            "http://127.0.0.1:9",
            "--token-cmd",
            "true",
            "--server-fault",
            "no-dedup",
        ],
        "do not go with --server",
    );
}

/// A server that is not there is an operating error: exit 1, one line naming the address.
#[test]
fn unreachable_server_exits_1_with_one_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = simulate(&["--server", &url, "--token-cmd", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{}", text(&out));
    assert!(
        stderr.contains(&format!("cannot reach {url}")),
        "{}",
        text(&out)
    );
}

/// A token command that fails is an operating error: exit 1, one line that names it.
#[test]
fn failing_token_command_exits_1_with_one_line() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_one(data.path(), &[], &[], Stdio::null());
    let out = simulate(&[
        "--server",
        &server.base,
        "--token-cmd",
        "echo no tokens here >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{}", text(&out));
    assert!(
        stderr.contains("the token command failed") && stderr.contains("no tokens here"),
        "{}",
        text(&out)
    );
}
