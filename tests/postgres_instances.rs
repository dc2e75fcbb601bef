//! `driftless serve --database postgres://...` as real child processes on one real PostgreSQL
//! database (a throwaway cluster, see reference-server/tests/common/pg.rs): the conformance
//! suite against one instance and against three behind a round-robin proxy, and SIGKILLs of
//! instances during concurrent pushes. Built with `--features postgres`.

mod common;
#[path = "../reference-server/tests/common/pg.rs"]
mod pg;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use common::crash::{batch, verify, Batch, Event, SPACE};
use common::server::{agent, call, driftless, seed, Rng, ServerProcess};
use driftless_conformance::proxy::Proxy;
use serde_json::{json, Value};

/// Server instances on one fresh database, sharing one token secret.
struct Deployment {
    url: String,
    dir: tempfile::TempDir,
    instances: Vec<Option<ServerProcess>>,
    rate_limit: u32,
}

impl Deployment {
    /// `n` instances. Each limits a User's rate on its own, so a deployment of `n` lets a User
    /// make up to `n` times `--rate-limit`: the limit is split between them (the suite's
    /// self-check wants a 429 within its 4000 requests).
    fn start(n: usize) -> Self {
        let url = pg::fresh_database();
        let dir = tempfile::tempdir().unwrap();
        let mut d = Self {
            url,
            dir,
            instances: Vec::new(),
            rate_limit: 200 / n as u32,
        };
        for i in 0..n {
            let s = d.spawn(i);
            d.instances.push(Some(s));
        }
        d
    }

    fn secret(&self) -> PathBuf {
        self.dir.path().join("token-secret")
    }

    /// Starts instance `i` (its own node name and data folder; the shared database and secret).
    fn spawn(&self, i: usize) -> ServerProcess {
        let data = self.dir.path().join(format!("data-{i}"));
        let secret = self.secret().display().to_string();
        ServerProcess::start(
            &data,
            &[
                "--database",
                &self.url,
                "--node",
                &format!("server-{i}"),
                "--token-secret",
                &secret,
                "--rate-limit",
                &self.rate_limit.to_string(),
            ],
        )
    }

    fn bases(&self) -> Vec<String> {
        self.instances
            .iter()
            .flatten()
            .map(|s| s.base.clone())
            .collect()
    }

    /// A write Token for `space` from `driftless token --token-secret`.
    fn token(&self, space: &str) -> String {
        self.token_scoped(space, "write")
    }

    /// A Token for `space` with `scope` from `driftless token --token-secret`.
    fn token_scoped(&self, space: &str, scope: &str) -> String {
        let out = driftless()
            .args(["token", "--token-secret"])
            .arg(self.secret())
            .args(["--user", "crasher", "--space", space, "--scope", scope])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn token_cmd(&self) -> String {
        format!(
            "{} token --token-secret {} --user {{user}} --space {{space}} --scope {{scope}} --ttl {{ttl}}",
            env!("CARGO_BIN_EXE_driftless"),
            self.secret().display()
        )
    }
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
    let d = Deployment::start(1);
    let (code, report) = conformance(&d.bases()[0], &d.token_cmd(), "11");
    assert_all_pass(code, &report);
}

#[test]
fn the_conformance_suite_passes_against_three_instances_behind_a_round_robin_proxy() {
    let d = Deployment::start(3);
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
    let mut d = Deployment::start(3);
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

// ---------------------------------------------------------------------------------------------
// The reference client through three instances behind the round-robin proxy: a subset of
// tests/client_e2e.rs (convergence of two Clients under every Policy, and watch by long-poll),
// which exercises push, pull, long-poll wakeups across instances and convergence.

fn e2e_client(dir: &std::path::Path, server: &str, token: &str) -> driftless_client::Client {
    let cfg = driftless_client::Config {
        server: server.into(),
        token: token.into(),
        space: "demo".into(),
        retry: driftless_client::RetryPolicy {
            initial_delay_ms: 1,
            delay_ms_cap: 20,
            multiplier: 2,
            attempts_per_sync: 2,
        },
        batch_max: 50,
        timeout: std::time::Duration::from_secs(30),
    };
    driftless_client::Client::open(dir, cfg).unwrap()
}

fn three_behind_a_proxy() -> (Deployment, Proxy) {
    let d = Deployment::start(3);
    let bases = d.bases();
    let refs: Vec<&str> = bases.iter().map(String::as_str).collect();
    let proxy = Proxy::round_robin(&refs).unwrap();
    (d, proxy)
}

#[test]
fn two_clients_converge_under_every_policy_through_three_instances() {
    let (d, proxy) = three_behind_a_proxy();
    let t = d.token_scoped("demo", "admin");
    let dir = tempfile::tempdir().unwrap();
    let mut a = e2e_client(&dir.path().join("a"), proxy.base(), &t);
    let mut b = e2e_client(&dir.path().join("b"), proxy.base(), &t);
    let doc = json!({"collection": "notes", "version": 1, "schema": {"type": "object"},
        "fields": {"likes": {"policy": "counter"}, "tags": {"policy": "add_wins_set"}, "body": {"policy": "keep_both"}}});
    assert_eq!(a.register_schema(&doc).unwrap(), 201);
    assert_eq!(b.register_schema(&doc).unwrap(), 200);
    for (c, who) in [(&mut a, "a"), (&mut b, "b")] {
        c.sync().unwrap();
        for effect in [
            json!({"kind": "patch", "set": {"title": who, "body": who}}),
            json!({"kind": "increment", "field": "likes", "by": 3}),
            json!({"kind": "set_add", "field": "tags", "elements": [who, "shared"]}),
        ] {
            c.write("notes", "n1", effect, 0).unwrap();
        }
        c.write(
            "notes",
            "n2",
            json!({"kind": "put", "value": {"from": who}}),
            0,
        )
        .unwrap();
        c.sync().unwrap();
    }
    a.sync().unwrap();
    a.write(
        "notes",
        "n1",
        json!({"kind": "set_remove", "field": "tags", "elements": ["shared"]}),
        0,
    )
    .unwrap();
    a.sync().unwrap();
    b.sync().unwrap();
    // As in tests/client_e2e.rs, derived by hand from chapter 03's rules.
    let n1 = json!({"title": "b", "body": "b", "likes": 6, "tags": ["a", "b"]});
    let n2 = json!({"from": "b"});
    for base in d.bases() {
        let (_, rec) = call(
            &agent(),
            "GET",
            &format!("{base}/v1/spaces/demo/records/notes/n1"),
            &t,
            None,
        )
        .unwrap();
        assert_eq!(rec["value"], n1, "{rec}");
        assert_eq!(rec["conflicts"], json!({"body": ["a", "b"]}), "{rec}");
    }
    for (c, who) in [(&a, "a"), (&b, "b")] {
        assert_eq!(c.status().unwrap().pending, 0, "{who}");
        for (id, expected) in [("n1", &n1), ("n2", &n2)] {
            let got = Value::Object(c.get("notes", id).unwrap().unwrap());
            assert_eq!(got, *expected, "{id} on {who}");
        }
    }
}

#[test]
fn watch_receives_another_clients_change_by_long_poll_through_three_instances() {
    use driftless_client::Event as ClientEvent;
    let (d, proxy) = three_behind_a_proxy();
    let t = d.token("demo");
    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (seen_tx, seen_rx) = mpsc::channel::<ClientEvent>();
    let (base, tok, store, flag) = (
        proxy.base().to_owned(),
        t.clone(),
        dir.path().join("watcher"),
        stop.clone(),
    );
    // Each held pull may wait 30 s, far longer than the test runs: no empty page can come
    // back from a held pull, so an empty page means the wakeup across instances failed.
    let watcher = std::thread::spawn(move || {
        let mut w = e2e_client(&store, &base, &tok);
        w.on_event(move |e| {
            let _ = seen_tx.send(e.clone());
        });
        w.watch(&flag, 30_000).unwrap();
        w.get("notes", "live").unwrap()
    });
    let wait_for = |done: &mut dyn FnMut(&ClientEvent) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match seen_rx.recv_timeout(left) {
                Ok(e) if done(&e) => return,
                Ok(_) => {}
                Err(e) => panic!("the awaited event never came: {e}"),
            }
        }
    };
    wait_for(&mut |e| matches!(e, ClientEvent::Pulled { .. }));
    let mut writer = e2e_client(&dir.path().join("writer"), proxy.base(), &t);
    writer
        .write(
            "notes",
            "live",
            json!({"kind": "put", "value": {"hello": true}}),
            0,
        )
        .unwrap();
    writer.sync().unwrap();
    let mut empty_pages = 0;
    wait_for(&mut |e| match e {
        ClientEvent::Pulled { records: 0, .. } => {
            empty_pages += 1;
            false
        }
        ClientEvent::Pulled { .. } => true,
        _ => false,
    });
    assert_eq!(
        empty_pages, 0,
        "the watcher pulled empty pages instead of holding a pull"
    );
    stop.store(true, Ordering::Relaxed);
    writer
        .write("notes", "wake", json!({"kind": "put", "value": {}}), 0)
        .unwrap();
    writer.sync().unwrap();
    let live = watcher.join().unwrap().unwrap();
    assert_eq!(Value::Object(live), json!({"hello": true}));
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
