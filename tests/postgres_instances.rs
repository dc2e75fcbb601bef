//! `driftless serve --database postgres://...` as real child processes on one real PostgreSQL
//! database (a throwaway cluster, see reference-server/tests/common/pg.rs): the conformance
//! suite against one instance and against three behind a round-robin proxy, and SIGKILLs of
//! instances during concurrent pushes. Built with `--features postgres`. The reference client's
//! e2e tests run against three instances too: `DRIFTLESS_E2E_INSTANCES=3 cargo test -p
//! driftless --features postgres --test client_e2e` (tests/common/server.rs).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use common::crash::{batch, verify, Batch, Event, SPACE};
use common::instances::Deployment;
use common::pg;
use common::server::{agent, call, driftless, seed, Rng};
use driftless_conformance::proxy::Proxy;
use serde_json::{json, Value};

/// `n` instances on one fresh database (tests/common/instances.rs). Each limits a User's rate
/// on its own, so a deployment of `n` lets a User make up to `n` times `--rate-limit`: the limit
/// is split between them (the suite's self-check wants a 429 within its 4000 requests).
fn deploy(n: usize) -> Deployment {
    Deployment::start(n, &["--rate-limit", &(200 / n as u32).to_string()])
}

fn conformance(server: &str, token_cmd: &str, seed: &str) -> (i32, Value) {
    let out = driftless()
        .args(["conformance", "--server", server, "--token-cmd", token_cmd])
        .args(["--seed", seed, "--format", "json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), report)
}

fn assert_all_pass(code: i32, report: &Value) {
    let failing: Vec<String> = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] != "pass")
        .map(|c| format!("{} {}: {}", c["id"], c["outcome"], c["detail"]))
        .collect();
    let all = driftless_conformance::cases::all().len();
    assert_eq!(report["cases"].as_array().unwrap().len(), all);
    assert_eq!(report["summary"]["passed"], all, "failing: {failing:#?}");
    assert_eq!(code, 0);
}

#[test]
fn the_conformance_suite_passes_against_one_instance_on_postgres() {
    let d = deploy(1);
    let (code, report) = conformance(&d.bases()[0], &d.token_cmd(), "11");
    assert_all_pass(code, &report);
}

#[test]
fn the_conformance_suite_passes_against_three_instances_behind_a_round_robin_proxy() {
    let d = deploy(3);
    let bases = d.bases();
    let refs: Vec<&str> = bases.iter().map(String::as_str).collect();
    let proxy = Proxy::round_robin(&refs).unwrap();
    let (code, report) = conformance(proxy.base(), &d.token_cmd(), "23");
    assert_all_pass(code, &report);
}

/// The client ID a crash-test batch was pushed as.
fn client_of(b: &Batch) -> String {
    let hlc = b.mutations[0]["hlc"].as_str().unwrap();
    hlc.splitn(3, '-').nth(2).unwrap().to_owned()
}

/// Three writers push concurrently, each through its own instance; after a random number of
/// acknowledgements one instance is SIGKILLed, then restarted. After every round, checked
/// through a surviving instance: every acknowledged Mutation is there exactly once, no batch is
/// half-applied, the concurrent increments of one counter are exact; batches whose response
/// was lost are replayed (applied once or duplicate, never twice).
#[test]
fn sigkill_of_one_of_three_instances_never_loses_acknowledged_writes_nor_applies_any_twice() {
    const ROUNDS: usize = 12;
    let mut d = deploy(3);
    let token = d.token(SPACE);
    let mut rng = Rng(seed("postgres_crash"));
    let mut batches: Vec<(Batch, Option<serde_json::Value>)> = Vec::new();
    let mut kills = 0;
    for round in 0..ROUNDS {
        let victim = round % 3;
        let bases = d.bases();
        verify(&bases[(victim + 1) % 3], &token, &batches);
        let replayer = agent();
        for (i, (b, ack)) in batches
            .iter_mut()
            .enumerate()
            .filter(|(_, (_, a))| a.is_none())
        {
            let body = json!({"client_id": client_of(b), "mutations": b.mutations});
            let base = &bases[i % 3];
            let (status, resp) = call(
                &replayer,
                "POST",
                &format!("{base}/v1/spaces/{SPACE}/push"),
                &token,
                Some(&body),
            )
            .unwrap();
            assert_eq!(status, 200, "{resp}");
            *ack = Some(resp);
        }
        let threshold = 1 + rng.below(8) as usize;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Event>();
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let (tx, base, token, stop) =
                    (tx.clone(), bases[w].clone(), token.clone(), stop.clone());
                let mut wrng = Rng(rng.next() | 1);
                std::thread::spawn(move || {
                    let agent = agent();
                    for n in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let b = batch(&mut wrng, round, w, n);
                        let body =
                            json!({"client_id": format!("client-{w}"), "mutations": b.mutations});
                        let url = format!("{base}/v1/spaces/{SPACE}/push");
                        match call(&agent, "POST", &url, &token, Some(&body)) {
                            Ok((200, resp)) => {
                                if tx.send(Event::Acked(b, resp)).is_err() {
                                    return;
                                }
                            }
                            Ok((status, resp)) => panic!("push answered {status}: {resp}"),
                            Err(_) => {
                                let _ = tx.send(Event::Lost(b));
                                return;
                            }
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        let mut acks = 0;
        for event in rx {
            match event {
                Event::Acked(b, resp) => {
                    batches.push((b, Some(resp)));
                    acks += 1;
                    if acks == threshold {
                        d.instances[victim].take().unwrap().kill();
                        kills += 1;
                        stop.store(true, Ordering::SeqCst);
                    }
                }
                Event::Lost(b) => batches.push((b, None)),
            }
        }
        for w in writers {
            w.join().unwrap();
        }
        assert!(
            d.instances[victim].is_none(),
            "round {round} ended without a kill"
        );
        let restarted = d.spawn(victim);
        d.instances[victim] = Some(restarted);
    }
    let bases = d.bases();
    let mut counts = (0, 0);
    for base in &bases {
        counts = verify(base, &token, &batches);
    }
    eprintln!(
        "postgres crash: {kills} SIGKILLs of one of three instances, {} batches, {} acknowledged, {} applied without an ack reaching the client",
        batches.len(),
        counts.0,
        counts.1
    );
    assert_eq!(kills, ROUNDS);
    // Every batch replayed now, through any instance, is a duplicate: nothing applies twice.
    let agent = agent();
    for (i, (b, _)) in batches.iter().enumerate().take(60) {
        let url = format!("{}/v1/spaces/{SPACE}/push", bases[i % 3]);
        let body = json!({"client_id": client_of(b), "mutations": b.mutations});
        let (_, resp) = call(&agent, "POST", &url, &token, Some(&body)).unwrap();
        let results = resp["results"].as_array().unwrap();
        assert!(results.iter().all(|r| r["status"] == "duplicate"), "{resp}");
    }
    verify(&bases[0], &token, &batches);
}

/// The README's command for three instances on one database runs as written (with the test's
/// database, binary and free ports put in), and its Token works on every instance: a push
/// through one is pulled through another.
#[test]
fn the_readme_command_runs_three_instances_on_one_database() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let line = |start: &str| {
        readme
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("README has no line starting {start:?}"))
            .to_owned()
    };
    let url = pg::fresh_database();
    let bin = env!("CARGO_BIN_EXE_driftless");
    let substitute = |l: String| {
        for shown in [
            "./target/release/driftless",
            "postgres://postgres@127.0.0.1:5432/driftless",
        ] {
            assert!(l.contains(shown) || !l.contains("serve"), "{l}");
        }
        l.replace("./target/release/driftless", bin)
            .replace("postgres://postgres@127.0.0.1:5432/driftless", &url)
            .replace("127.0.0.1:787$i", "127.0.0.1:0")
    };
    let serve = substitute(line("for i in 0 1 2; do ./target/release/driftless serve"));
    assert!(
        serve.contains("127.0.0.1:0"),
        "the README's ports moved: {serve}"
    );
    let token_line = substitute(line("./target/release/driftless token --token-secret"));
    let dir = tempfile::tempdir().unwrap();
    let mut group = std::process::Command::new("bash")
        .args(["-c", &format!("{serve}\nwait")])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = group.id() as i32;
    let mut lines = std::io::BufReader::new(group.stdout.take().unwrap()).lines();
    let bases: Vec<String> = (0..3)
        .map(|_| {
            let l = lines
                .next()
                .expect("an instance printed its address")
                .unwrap();
            l.strip_prefix("listening on ").unwrap().to_owned()
        })
        .collect();
    let out = std::process::Command::new("bash")
        .args(["-c", &token_line])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let agent = agent();
    let push = json!({"client_id": "client-r", "mutations": [{"op_id": "op-readme-1", "seq": 1,
        "collection": "notes", "record_id": "n1", "hlc": format!("{:012x}-0000-client-r", common::server::now_ms()),
        "effect": {"kind": "put", "value": {"from": "readme"}}}]});
    let (status, body) = call(
        &agent,
        "POST",
        &format!("{}/v1/spaces/demo/push", bases[0]),
        &token,
        Some(&push),
    )
    .unwrap();
    let pulled = call(
        &agent,
        "GET",
        &format!("{}/v1/spaces/demo/pull", bases[2]),
        &token,
        None,
    )
    .unwrap();
    // SAFETY: signalling the process group this test started.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = group.wait();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        pulled.1["records"][0]["value"],
        json!({"from": "readme"}),
        "{}",
        pulled.1
    );
}
