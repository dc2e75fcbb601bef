//! `driftless simulate`, run as a child process: scenarios replay exactly from their seed, seeds
//! differ, a usage error exits 2, and the hand-written clock-skew livelock scenario holds.

use std::process::{Command, Output};

fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driftless"))
        .arg("simulate")
        .args(args)
        .output()
        .expect("the driftless binary runs")
}

/// The per-seed trace hashes `--verbose` prints, in order.
fn hashes(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("seed "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn same_seed_gives_same_trace_hash() {
    let args = ["--seed", "11", "--scenarios", "3", "--verbose"];
    let (a, b) = (simulate(&args), simulate(&args));
    assert_eq!(
        a.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&a.stdout)
    );
    let (ha, hb) = (hashes(&a), hashes(&b));
    assert_eq!(ha.len(), 3, "{ha:?}");
    assert_eq!(ha, hb);
}

#[test]
fn different_seeds_give_different_trace_hashes() {
    let out = simulate(&["--seed", "21", "--scenarios", "4", "--verbose"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut h: Vec<String> = hashes(&out)
        .iter()
        .filter_map(|l| l.split(" trace ").nth(1).map(str::to_owned))
        .collect();
    assert_eq!(h.len(), 4);
    h.sort();
    h.dedup();
    assert_eq!(h.len(), 4, "two seeds gave one trace");
}

/// Seed 49 (and 82) made a Client whose wall clock ran ahead of the Server re-issue its
/// `clock-skew` rejections forever within one sync (each step back let the next Stamp run ahead
/// again). Since scenarios are generated as event lists (issue 16), seed 49 is a different
/// scenario, so the condition is written by hand: tests/data/clock-far-ahead.scenario. Each
/// of the far-ahead Client's syncs stops re-issuing after three times (`[HLC-13]`), keeping the
/// writes pending, and the scenario holds every invariant; without the bound, its first sync
/// loops and the scenario breaks `sync-completes`.
#[test]
fn clock_far_ahead_does_not_loop_a_sync_forever() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/clock-far-ahead.scenario"
    );
    let out = simulate(&["--replay", file, "--print-trace"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("held every invariant"), "{stdout}");
    // The condition is there: the far-ahead Client's syncs are refused as clock-skew and
    // re-issue, three times each, and end with nothing acknowledged.
    let trace = String::from_utf8_lossy(&out.stderr);
    for n in [4, 5] {
        let line = format!("{n} sync c0 -> ok ack=0 rej=0 reissued=6 ");
        assert!(trace.contains(&line), "no `{line}` in:\n{trace}");
    }
    assert!(trace.contains("rejected:clock-skew"), "{trace}");
}

#[test]
fn zero_clients_is_a_usage_error() {
    let out = simulate(&["--clients", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--clients"));
}

/// Every planted fault the self-check lists is found within its budget (each prints `found`),
/// and the self-check exits 0.
#[cfg(all(feature = "fault-injection", feature = "client-fault-injection"))]
#[test]
fn self_check_finds_every_planted_fault() {
    let out = simulate(&["--self-check", "--scenarios", "300"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("found")).count(),
        15,
        "{stdout}"
    );
}

/// A scenario written by hand as an event list replays, and replays the same way twice.
#[test]
fn replay_runs_a_written_event_list() {
    let dir = tempfile::tempdir().expect("a scratch folder");
    let file = dir.path().join("two-clients.scenario");
    std::fs::write(
        &file,
        "# a partition, a held request and a compaction\nseed 5\nclients 2\n\
         1 write c0 docs/r1 {\"kind\":\"put\",\"value\":{\"title\":\"a\"}}\n\
         2 partition c1\n3 hold c0\n4 sync c0\n\
         5 write c1 tally/r0 {\"kind\":\"increment\",\"field\":\"n\",\"by\":2}\n\
         6 advance 90000000\n7 compact\n8 heal\n9 release\n10 sync c1\n",
    )
    .expect("write the scenario");
    let path = file.to_str().expect("a UTF-8 path");
    let (a, b) = (simulate(&["--replay", path]), simulate(&["--replay", path]));
    let stdout = String::from_utf8_lossy(&a.stdout);
    assert_eq!(a.status.code(), Some(0), "{stdout}");
    assert!(
        // It compacts, so it also ran without its compact events and compared the two.
        stdout.contains(
            "(10 events, 2 clients) held every invariant, compaction-independent included"
        ),
        "{stdout}"
    );
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn replay_of_a_malformed_event_names_its_line() {
    let dir = tempfile::tempdir().expect("a scratch folder");
    let file = dir.path().join("bad.scenario");
    std::fs::write(&file, "seed 1\nclients 1\n1 sync c0\n2 explode c0\n").expect("write");
    let out = simulate(&["--replay", file.to_str().expect("a UTF-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 4: unknown event \"explode\""),
        "{stderr}"
    );
}

/// A Client whose disk fills up: its store (SQLite capped at its size, `max_page_count`) refuses
/// some of the writes with a clear error, nothing it acknowledged is lost, and it syncs again
/// once space is freed; every invariant holds, `write-error-clear` included.
#[test]
fn full_disk_refuses_writes_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("a scratch folder");
    let file = dir.path().join("full-disk.scenario");
    let mut text = String::from(
        "seed 1\nclients 2\n1 write c0 docs/r0 {\"kind\":\"delete\"}\n2 disk-full c0\n",
    );
    for n in 3..60 {
        text.push_str(&format!(
            "{n} write c0 docs/r{} {{\"kind\":\"put\",\"value\":{{\"title\":\"{}\"}}}}\n",
            n % 3,
            "x".repeat(60 + n)
        ));
    }
    text.push_str("60 sync c0\n61 disk-freed c0\n62 sync c0\n63 sync c1\n");
    std::fs::write(&file, text).expect("write the scenario");
    let out = simulate(&[
        "--replay",
        file.to_str().expect("a UTF-8 path"),
        "--print-trace",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let trace = String::from_utf8_lossy(&out.stderr);
    let refused = trace
        .lines()
        .filter(|l| l.contains(" write c0 ") && l.ends_with("-> false"))
        .count();
    assert!(
        refused > 0,
        "no write was refused on the full disk:\n{trace}"
    );
}

/// `docs` v2 (renames `title` to `heading`, adds `rank`) registered mid-run: an offline Client
/// that has not learned it keeps writing `title` under v1, the Server upcasts it; a Client
/// that learned v2 writes `heading`; every invariant holds, the merge model upcasting too.
#[test]
fn schema_v2_mid_run_with_old_and_new_clients() {
    let dir = tempfile::tempdir().expect("a scratch folder");
    let file = dir.path().join("v2.scenario");
    std::fs::write(
        &file,
        "seed 1\nclients 2\n\
         1 write c0 docs/r0 {\"kind\":\"put\",\"value\":{\"title\":\"a\",\"body\":1}}\n\
         2 sync c0\n3 sync c1\n4 offline c0\n5 schema docs v2\n\
         6 write c0 docs/r1 {\"kind\":\"patch\",\"set\":{\"title\":\"old\"}}\n\
         7 sync c1\n\
         8 write c1 docs/r0 {\"kind\":\"patch\",\"set\":{\"title\":\"new\"}}\n\
         9 online c0\n10 sync c0\n11 sync c1\n",
    )
    .expect("write the scenario");
    let out = simulate(&[
        "--replay",
        file.to_str().expect("a UTF-8 path"),
        "--print-trace",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(trace.contains("5 schema docs v2 -> 201"), "{trace}");
    assert!(trace.contains("8 write c1 docs/r0 {\"kind\":\"patch\",\"set\":{\"title\":\"new\"}} (v2 names) -> true"), "{trace}");
    assert!(
        trace.contains(
            "6 write c0 docs/r1 {\"kind\":\"patch\",\"set\":{\"title\":\"old\"}} -> true"
        ),
        "{trace}"
    );
    let truth = trace
        .lines()
        .find(|l| l.starts_with("truth "))
        .expect("a truth line");
    assert_eq!(
        truth,
        r#"truth {"docs":{"r0":{"body":1,"heading":"new","rank":0},"r1":{"heading":"old","rank":0}},"tally":{}}"#
    );
}

/// A `--replay` FILE that exists but cannot be read (here a folder) is an operating error:
/// exit 1, one line naming the file; nothing runs.
#[test]
fn replay_of_an_unreadable_file_is_an_operating_error() {
    let dir = tempfile::tempdir().expect("a scratch folder");
    let out = simulate(&["--replay", dir.path().to_str().expect("a UTF-8 path")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot read"), "{stderr}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

/// A reader that went away (`driftless simulate | head -0`) stops the output quietly: no panic,
/// no "Broken pipe", and the exit code is the run's. The read end of the pipe is closed before
/// the child starts, so every write the child makes meets EPIPE.
#[test]
fn a_closed_stdout_stops_the_output_quietly() {
    {
        let args = [
            "--seed",
            "1",
            "--scenarios",
            "2",
            "--steps",
            "4",
            "--verbose",
        ];
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_driftless"))
            .arg("simulate")
            .args(args)
            .stdout(writer)
            .output()
            .expect("the driftless binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    }
}
