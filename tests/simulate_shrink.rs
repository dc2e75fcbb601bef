//! `driftless simulate --shrink` and `--replay` against a planted Server fault (feature
//! `fault-injection`, run by .ci/run): the shrunk scenario is shorter than the one the seed
//! generated, breaks the same invariant, and its replay command reproduces the failure.
#![cfg(feature = "fault-injection")]

use std::path::Path;
use std::process::{Command, Output};

fn simulate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driftless"))
        .current_dir(dir)
        .arg("simulate")
        .args(args)
        .output()
        .expect("the driftless binary runs")
}

/// The invariant a `FAIL ...: invariant NAME broken: ...` line names.
fn broken(stdout: &str) -> String {
    stdout
        .lines()
        .find(|l| l.starts_with("FAIL"))
        .and_then(|l| l.split("invariant ").nth(1))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("no FAIL line in {stdout}"))
        .to_owned()
}

#[test]
fn shrunk_no_dedup_scenario_is_shorter_and_replays_the_same_failure() {
    let dir = tempfile::tempdir().expect("a scratch folder");
    let out = simulate(
        dir.path(),
        &[
            "--server-fault",
            "no-dedup",
            "--seed",
            "1",
            "--scenarios",
            "300",
            "--shrink",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let invariant = broken(&stdout);
    let seed: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("FAIL seed "))
        .and_then(|l| l.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no failing seed in {stdout}"));
    // "shrunk from 41 events and 3 clients to 6 events and 1 clients (...), still breaking X:"
    let line = stdout
        .lines()
        .find(|l| l.starts_with("shrunk from "))
        .unwrap_or_else(|| panic!("no shrink summary in {stdout}"));
    let numbers: Vec<usize> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let (before, after) = (numbers[0], numbers[2]);
    assert!(after < before, "{line}");
    assert!(
        line.ends_with(&format!("still breaking {invariant}:")),
        "{line}"
    );
    // The numbered list is printed, one line per event.
    let listed = stdout
        .lines()
        .filter(|l| {
            l.split(' ')
                .next()
                .is_some_and(|n| n.parse::<usize>().is_ok())
        })
        .count();
    assert_eq!(listed, after, "{stdout}");
    let file = format!("driftless-sim-{seed}.scenario");
    assert!(
        stdout.contains(&format!("--server-fault no-dedup --replay {file}")),
        "{stdout}"
    );
    let text = std::fs::read_to_string(dir.path().join(&file)).expect("the scenario file");
    assert!(text.contains(&format!("seed {seed}\n")), "{text}");

    let replayed = simulate(
        dir.path(),
        &["--server-fault", "no-dedup", "--replay", &file],
    );
    let again = String::from_utf8_lossy(&replayed.stdout).into_owned();
    assert_eq!(replayed.status.code(), Some(1), "{again}");
    assert_eq!(broken(&again), invariant, "{again}");
    // Deterministic: a second replay prints the same line, trace hash included.
    let twice = simulate(
        dir.path(),
        &["--server-fault", "no-dedup", "--replay", &file],
    );
    assert_eq!(String::from_utf8_lossy(&twice.stdout), again);
    // Without the fault the same minimal scenario holds every invariant.
    let clean = simulate(dir.path(), &["--replay", &file]);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
}
