//! `driftless bench load` as a real child process: each mode runs, its report has its shape, and
//! requests were answered. No figure (rate, latency, RSS) is asserted: speed is the benchmark's
//! to report, not a test's to check.

use std::process::Command;

fn bench_load(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args(["bench", "load"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The columns of the report row whose first columns are `key` (split on whitespace).
fn row<'a>(report: &'a str, key: &[&str]) -> Vec<&'a str> {
    report
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.len() > key.len() && cols[..key.len()] == *key)
        .unwrap_or_else(|| panic!("no row {key:?} in:\n{report}"))
}

fn count(col: &str) -> usize {
    col.parse()
        .unwrap_or_else(|_| panic!("{col:?} is not a count"))
}

#[test]
fn mixed_mode_reports_server_and_ceiling_rows_with_answered_requests() {
    let (code, out, err) = bench_load(&["--seconds", "1", "--pushers", "2", "--pullers", "2"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let header = row(&out, &["target", "role"]);
    assert_eq!(
        header,
        [
            "target", "role", "clients", "requests", "errors", "req/s", "p50", "ms", "p99", "ms",
            "max", "ms"
        ]
    );
    for target in ["server", "ceiling"] {
        for role in ["push", "pull"] {
            let cols = row(&out, &[target, role]);
            assert_eq!(cols.len(), 9, "{cols:?}");
            assert_eq!(count(cols[2]), 2, "{target} {role} clients");
            assert!(
                count(cols[3]) > 0,
                "{target} {role} answered nothing:\n{out}"
            );
            assert_eq!(count(cols[4]), 0, "{target} {role} had errors:\n{out}");
        }
    }
    assert!(out.contains("server/ceiling req/s: push "), "{out}");
    assert!(out.contains("server pull p99 / push p99: "), "{out}");
    assert!(out.contains("fsync bound: "), "{out}");
    assert!(
        out.contains("group commit: server pushes/s / raw durable tx/s = "),
        "{out}"
    );
}

/// Checks an attack mode's report: three phases, each with answered pulls and no errors.
fn check_attack_report(out: &str) {
    for phase in ["before", "attack", "after"] {
        let cols = row(out, &[phase]);
        assert_eq!(cols.len(), 10, "{cols:?}");
        assert!(count(cols[1]) > 0, "no pull answered {phase}:\n{out}");
        assert_eq!(count(cols[2]), 0, "errors {phase}:\n{out}");
    }
    assert!(
        out.contains("normal client answered during the attack: yes"),
        "{out}"
    );
}

#[test]
fn idle_mode_holds_the_connections_and_the_normal_client_is_answered() {
    let (code, out, err) = bench_load(&["--mode", "idle", "--idle", "20", "--seconds", "1"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    check_attack_report(&out);
    // Twenty connections are far below the server's bound and its 60 s idle timeout.
    assert!(
        out.contains("attack connections: 20 opened in ")
            && out.contains("0 failed to connect; at the end of the attack 20 still open, 0 closed by the server"),
        "{out}"
    );
}

#[test]
fn slowloris_mode_opens_its_connections_and_the_normal_client_is_answered() {
    let (code, out, err) = bench_load(&["--mode", "slowloris", "--idle", "5", "--seconds", "1"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    check_attack_report(&out);
    let opened = row(&out, &["attack", "connections:"]);
    assert!(count(opened[2]) >= 5, "{out}");
}

#[test]
fn zero_seconds_is_a_usage_error() {
    let (code, out, err) = bench_load(&["--seconds", "0"]);
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    // clap's own rendering: the first line names the flag and the valid range.
    let first = err.lines().next().unwrap_or("");
    assert!(
        first.contains("'--seconds <SECONDS>'") && first.contains("1..=600"),
        "{err}"
    );
}
