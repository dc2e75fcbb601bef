//! `driftless client` as a person meets it: every subcommand once against the real server,
//! with its exit code and the shape of its output; faults 4 and 5 of issue 11 (rejected writes
//! that vanish without a reason; Effects the CLI could not express); exit codes 1 and 2.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use common::server::{client_cli, driftless, token, ServerProcess};
use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn cli(store: &Path, base: &str, t: &str, args: &[&str]) -> Run {
    run(client_cli(store, base, t, "demo")
        .args(args)
        .output()
        .unwrap())
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const TASKS_SCHEMA: &str = r#"{"collection": "tasks", "version": 1,
  "schema": {"type": "object", "properties": {"title": {"type": "string"}}},
  "fields": {"tags": {"policy": "add_wins_set"}, "note": {"policy": "keep_both"}, "n": {"policy": "counter"}}}"#;

#[test]
fn a_rejected_write_is_named_by_sync_listed_and_can_be_retried_or_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "admin");
    let server = ServerProcess::start(&data, &[]);
    let (store, base) = (dir.path().join("c"), server.base.as_str());
    let schema = dir.path().join("tasks.json");
    std::fs::write(&schema, TASKS_SCHEMA).unwrap();
    let r = cli(
        &store,
        base,
        &t,
        &["schema", "put", "tasks", schema.to_str().unwrap()],
    );
    assert_eq!((r.code, r.stdout.trim()), (0, "registered"), "{}", r.stderr);

    let bad = cli(&store, base, &t, &["put", "tasks", "bad", r#"{"title":5}"#]);
    assert_eq!(bad.code, 0, "{}", bad.stderr);
    let bad_op = bad.stdout.trim().to_owned();
    let good = cli(
        &store,
        base,
        &t,
        &["put", "tasks", "good", r#"{"title":"x"}"#],
    );
    assert_eq!(good.code, 0);

    // sync names the rejected write, its record and the Problem, one line each.
    let s = cli(&store, base, &t, &["sync"]);
    assert_eq!(s.code, 0, "{}", s.stderr);
    let rejected: Vec<&str> = s
        .stdout
        .lines()
        .filter(|l| l.starts_with("rejected: "))
        .collect();
    assert_eq!(rejected.len(), 1, "{}", s.stdout);
    assert!(rejected[0].contains(&bad_op), "{}", rejected[0]);
    assert!(
        rejected[0].contains("tasks/bad schema-violation"),
        "{}",
        rejected[0]
    );
    assert!(
        s.stdout.contains("synced: 1 acknowledged, 1 rejected"),
        "{}",
        s.stdout
    );

    // dead-letters lists it with the Problem type, detail, the Effect and when.
    let d = cli(&store, base, &t, &["--format", "json", "dead-letters"]);
    assert_eq!(d.code, 0);
    let list = json_lines(&d.stdout);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["op_id"], bad_op.as_str());
    assert_eq!(
        list[0]["problem"]["type"],
        "urn:driftless:problem:schema-violation"
    );
    assert_eq!(list[0]["effect"]["value"]["title"], 5);
    assert!(list[0]["at"].as_str().unwrap().ends_with('Z'));
    let text = cli(&store, base, &t, &["dead-letters"]);
    assert!(text.stdout.starts_with(&bad_op), "{}", text.stdout);

    // retry-dead writes the Effect again as a new write; it is rejected again, and discarded.
    let again = cli(&store, base, &t, &["retry-dead", &bad_op]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let new_op = again.stdout.trim().to_owned();
    assert_ne!(new_op, bad_op);
    assert!(cli(&store, base, &t, &["dead-letters"])
        .stdout
        .contains("no rejected writes"));
    let s2 = cli(&store, base, &t, &["sync"]);
    assert!(
        s2.stdout.contains(&format!("rejected: {new_op}")),
        "{}",
        s2.stdout
    );
    let gone = cli(
        &store,
        base,
        &t,
        &["--format", "json", "discard-dead", &new_op],
    );
    assert_eq!(
        (gone.code, json_lines(&gone.stdout)[0]["discarded"].as_str()),
        (0, Some(new_op.as_str()))
    );
    let unknown = cli(&store, base, &t, &["discard-dead", &new_op]);
    assert_eq!(unknown.code, 2, "an unknown Op ID is bad input");
    assert!(
        unknown.stderr.contains("not in the dead-letter list"),
        "{}",
        unknown.stderr
    );
    let st = cli(&store, base, &t, &["--format", "json", "status"]);
    assert_eq!(json_lines(&st.stdout)[0]["rejected"], 0);
}

#[test]
fn set_add_set_remove_and_resolve_write_their_effects() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "admin");
    let server = ServerProcess::start(&data, &[]);
    let (store, base) = (dir.path().join("c"), server.base.as_str());
    let schema = dir.path().join("tasks.json");
    std::fs::write(&schema, TASKS_SCHEMA).unwrap();
    assert_eq!(
        cli(
            &store,
            base,
            &t,
            &["schema", "put", "tasks", schema.to_str().unwrap()]
        )
        .code,
        0
    );
    for args in [
        vec!["put", "tasks", "t1", r#"{"title":"x","note":"a"}"#],
        vec!["set-add", "tasks", "t1", "tags", "urgent", "home", "7"],
        vec!["set-remove", "tasks", "t1", "tags", "home"],
        vec!["resolve", "tasks", "t1", "note", r#""b""#],
        vec!["increment", "tasks", "t1", "n", "-2"],
        vec!["patch", "tasks", "t1", r#"{"title":"y"}"#],
    ] {
        let r = cli(&store, base, &t, &args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    }
    let s = cli(&store, base, &t, &["sync"]);
    assert!(s.stdout.contains("0 rejected"), "{}{}", s.stdout, s.stderr);
    let got: Value =
        serde_json::from_str(&cli(&store, base, &t, &["get", "tasks", "t1"]).stdout).unwrap();
    let mut tags: Vec<Value> = got["tags"].as_array().unwrap().clone();
    tags.sort_by_key(|v| v.to_string());
    assert_eq!(
        tags,
        vec![serde_json::json!("urgent"), serde_json::json!(7)]
    );
    assert_eq!(
        (got["note"].clone(), got["n"].clone(), got["title"].clone()),
        ("b".into(), (-2).into(), "y".into())
    );
}

#[test]
fn every_subcommand_runs_once_with_its_exit_code_and_output_shape() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "admin");
    let server = ServerProcess::start(&data, &[]);
    let (store, base) = (dir.path().join("c"), server.base.as_str());
    let op = |r: &Run| {
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.trim().starts_with("c-"), "an Op ID: {}", r.stdout);
    };
    op(&cli(
        &store,
        base,
        &t,
        &["put", "notes", "n1", r#"{"v":1}"#],
    ));
    op(&cli(
        &store,
        base,
        &t,
        &["put", "notes", "n2", r#"{"v":2}"#, "--priority", "3"],
    ));
    op(&cli(&store, base, &t, &["delete", "notes", "n2"]));
    // JSON from stdin.
    let mut child = client_cli(&store, base, &t, "demo")
        .args(["put", "notes", "n3", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"v":3}"#)
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let st = cli(&store, base, &t, &["status"]);
    assert!(
        st.stdout.contains("3 writes waiting to be sent"),
        "{}",
        st.stdout
    );
    assert!(
        st.stdout.contains("last complete sync: never"),
        "{}",
        st.stdout
    );

    let progress = cli(
        &store,
        base,
        &t,
        &["--progress", "--format", "json", "sync"],
    );
    assert_eq!(progress.code, 0, "{}", progress.stderr);
    let events = json_lines(&progress.stderr);
    assert!(
        events.iter().any(|e| e["event"] == "pushed"),
        "{}",
        progress.stderr
    );
    assert!(events.iter().any(|e| e["event"] == "pulled"));
    assert_eq!(json_lines(&progress.stdout)[0]["acknowledged"], 3);

    let st = run(client_cli(&store, base, &t, "demo")
        .args(["status"])
        .output()
        .unwrap());
    let last = st
        .stdout
        .lines()
        .find(|l| l.starts_with("last complete sync: "))
        .unwrap();
    assert!(
        last.contains('T') && last.ends_with('Z') && !last.contains("Some("),
        "{last}"
    );
    let sj = json_lines(&cli(&store, base, &t, &["status", "--format", "json"]).stdout)[0].clone();
    assert_eq!(
        (sj["pending"].clone(), sj["rejected"].clone()),
        (0.into(), 0.into())
    );

    let got = cli(&store, base, &t, &["get", "notes", "n1"]);
    assert_eq!((got.code, got.stdout.trim()), (0, r#"{"v":1}"#));
    let absent = cli(&store, base, &t, &["get", "notes", "n2"]);
    assert_eq!(absent.code, 1);
    let list = json_lines(&cli(&store, base, &t, &["list", "notes"]).stdout);
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], "n1");

    let audit = cli(&store, base, &t, &["audit"]);
    assert_eq!(audit.code, 0, "{}", audit.stderr);
    assert!(
        audit.stdout.contains("bucket checksums with the server"),
        "{}",
        audit.stdout
    );
    assert!(
        audit.stdout.contains("nothing repaired"),
        "{}",
        audit.stdout
    );
    let aj = json_lines(&cli(&store, base, &t, &["--format", "json", "audit"]).stdout)[0].clone();
    assert!(aj["buckets_compared"].as_u64().unwrap() > 0);
    assert_eq!(
        cli(&store, base, &t, &["dead-letters"]).stdout.trim(),
        "no rejected writes"
    );
}

#[test]
fn usage_errors_exit_2_with_clap_s_names_and_operating_errors_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "write");
    let store = dir.path().join("c");
    // Missing arguments are named, with the usage of the subcommand that failed.
    let r = run(driftless()
        .args(["client", "--store", "x", "put"])
        .output()
        .unwrap());
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--server <SERVER>"), "{}", r.stderr);
    assert!(r.stderr.contains("Usage: driftless client"), "{}", r.stderr);
    // A typo gets "a similar ..." and an enum flag its valid values.
    let r = run(client_cli(&store, "http://127.0.0.1:9", &t, "demo")
        .args(["synk"])
        .output()
        .unwrap());
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("sync"), "{}", r.stderr);
    let r = run(client_cli(&store, "http://127.0.0.1:9", &t, "demo")
        .args(["--retry", "fast", "sync"])
        .output()
        .unwrap());
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("interactive") && r.stderr.contains("metered"),
        "{}",
        r.stderr
    );
    // A server URL without a scheme.
    let r = run(client_cli(&store, "127.0.0.1:7878", &t, "demo")
        .args(["sync"])
        .output()
        .unwrap());
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("expected a URL like http://host:port"),
        "{}",
        r.stderr
    );
    // Bad JSON is a usage error.
    let r = cli(
        &store,
        "http://127.0.0.1:9",
        &t,
        &["put", "notes", "n1", "{nope"],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.starts_with("driftless: not JSON"), "{}", r.stderr);

    // The server is down: an operating error, naming the URL; the write is kept.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    assert_eq!(
        cli(&store, &down, &t, &["put", "notes", "n1", "{}"]).code,
        0
    );
    let r = run(client_cli(&store, &down, &t, "demo")
        .args(["--retry", "interactive", "sync"])
        .output()
        .unwrap());
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains(&down), "{}", r.stderr);
    // A refused Token: exit 1.
    let server = ServerProcess::start(&data, &[]);
    let r = cli(&store, &server.base, "dl1.nope", &["sync"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("refused the token"), "{}", r.stderr);
    // A --store that is a file, and a corrupt store: exit 1, naming the file.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let r = cli(&file, &server.base, &t, &["status"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(file.to_str().unwrap()) && r.stderr.contains("is a file"),
        "{}",
        r.stderr
    );
    let corrupt = dir.path().join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    std::fs::write(corrupt.join("client.sqlite3"), vec![7u8; 4096]).unwrap();
    let r = cli(&corrupt, &server.base, &t, &["status"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("client.sqlite3"), "{}", r.stderr);
}

#[test]
fn token_refuses_a_data_folder_without_a_secret_unless_init_and_long_ttls_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("driftles-data");
    let mint = |extra: &[&str]| {
        run(driftless()
            .args(["token", "--data"])
            .arg(&typo)
            .args(["--user", "ada", "--space", "demo"])
            .args(extra)
            .output()
            .unwrap())
    };
    let r = mint(&[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("no token-signing secret") && r.stderr.contains("--init"),
        "{}",
        r.stderr
    );
    assert!(!typo.exists(), "nothing was created");
    assert_eq!(mint(&["--init"]).code, 0);
    assert_eq!(mint(&[]).code, 0, "the secret exists now");
    let r = mint(&["--ttl", "7200"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("--allow-long-ttl") && r.stderr.contains("AUTH-8"),
        "{}",
        r.stderr
    );
    assert_eq!(mint(&["--ttl", "7200", "--allow-long-ttl"]).code, 0);
}

#[test]
fn logs_written_to_a_file_carry_no_colour() {
    let dir = tempfile::tempdir().unwrap();
    let t = token(dir.path(), "ada", "demo", "write");
    let log = dir.path().join("server.log");
    let file = std::fs::File::create(&log).unwrap();
    let server =
        ServerProcess::start_with(dir.path(), &[], &[("DRIFTLESS_LOG", "debug")], file.into());
    let r = cli(&dir.path().join("c"), &server.base, &t, &["sync"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    server.kill();
    let text = std::fs::read(&log).unwrap();
    assert!(!text.is_empty(), "debug logs were written");
    assert!(!text.contains(&0x1b), "{}", String::from_utf8_lossy(&text));
}
