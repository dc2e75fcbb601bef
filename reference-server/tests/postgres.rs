//! The PostgreSQL backend with several server instances on one database, over real HTTP on
//! 127.0.0.1 and a real PostgreSQL cluster (see `common/pg.rs`). Built with `--features postgres`.

mod common;
#[path = "common/pg.rs"]
mod pg;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{hlc, mutation, op, Client};
use driftless_protocol::messages::{Scope, TokenClaims};
use driftless_server::auth::TokenKey;
use driftless_server::conn::EdgeConfig;
use driftless_server::faults::Faults;
use driftless_server::http::App;
use driftless_server::service::{Config, SystemClock};
use driftless_server::storage::postgres::PgStorage;
use pg::{fresh_database, psql};
use serde_json::{json, Value};

const SECRET: [u8; 32] = [7; 32];

/// A server on `storage`, served on a fresh loopback port by its own two-thread runtime:
/// (the server, its base URL, the runtime).
fn serve(
    storage: PgStorage,
    config: Config,
) -> (Arc<App<PgStorage>>, String, tokio::runtime::Runtime) {
    let app = driftless_server::open_storage(
        Arc::new(storage),
        TokenKey::from_bytes(SECRET),
        config,
        EdgeConfig::default(),
        Faults::default(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(driftless_server::run(
        app.clone(),
        listener,
        std::future::pending(),
        Duration::from_secs(3600),
        Duration::from_secs(1),
    ));
    (app, base, runtime)
}

/// One server instance on `url`, served on its own loopback port and runtime.
struct Instance {
    base: String,
    app: Arc<App<PgStorage>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Instance {
    fn start(url: &str, node: &str, naive: bool) -> Self {
        let storage = PgStorage::open(url, node).unwrap();
        let storage = if naive {
            storage.naive_sequences()
        } else {
            storage
        };
        let config = Config {
            node: node.into(),
            rate_limit_per_s: 100_000,
            ..Config::default()
        };
        let (app, base, runtime) = serve(storage, config);
        Self {
            base,
            app,
            runtime: Some(runtime),
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

fn token(space: &str) -> String {
    let now = common::now_ms() / 1000;
    TokenKey::from_bytes(SECRET).mint(&TokenClaims {
        sub: "ada".into(),
        grants: [(space.parse().unwrap(), Scope::Write)].into(),
        iat: now,
        exp: now + 3600,
    })
}

fn put(client: &str, n: u64, id: &str) -> Value {
    mutation(
        &format!("{client}-{}", op(n)),
        n,
        "tasks",
        id,
        &hlc(client),
        json!({"kind": "put", "value": {"n": n}}),
    )
}

/// Follows Cursors on `instances` in turn until `stop` and then until it has caught up with
/// `total` changes; returns every Change Sequence it was given.
fn follow(
    instances: &[String],
    space: &str,
    token: &str,
    stop: &AtomicBool,
    total: u64,
) -> Vec<u64> {
    let clients: Vec<Client> = instances.iter().map(|b| Client::new(b)).collect();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut turn = 0usize;
    loop {
        let done = stop.load(Ordering::SeqCst);
        let query = match &cursor {
            Some(c) => format!("?cursor={c}&limit=7"),
            None => "?limit=7".into(),
        };
        let r = clients[turn % clients.len()].pull(space, token, &query);
        turn += 1;
        assert_eq!(r.status, 200, "{}", r.text);
        let page = r.json();
        for rec in page["records"].as_array().unwrap() {
            seen.push(rec["change_seq"].as_u64().unwrap());
        }
        cursor = Some(page["cursor"].as_str().unwrap().to_owned());
        if done
            && page["through"].as_u64().unwrap() >= total
            && !page["has_more"].as_bool().unwrap()
        {
            return seen;
        }
    }
}

/// Many pushers to one Space through three instances, pullers following Cursors throughout:
/// returns the Change Sequences each puller missed (each push writes a new Record, so every
/// number 1..=total must reach every puller).
fn missed_changes(naive: bool) -> Vec<BTreeSet<u64>> {
    let url = fresh_database();
    let instances: Vec<Instance> = (0..3)
        .map(|i| Instance::start(&url, &format!("server-{i}"), naive))
        .collect();
    let bases: Vec<String> = instances.iter().map(|i| i.base.clone()).collect();
    let space = "gaps";
    let token = token(space);
    let pushers = 6u64;
    let per_pusher = 60u64;
    let total = pushers * per_pusher;
    let stop = Arc::new(AtomicBool::new(false));
    let pullers: Vec<_> = (0..3)
        .map(|_| {
            let (bases, token, stop) = (bases.clone(), token.clone(), stop.clone());
            std::thread::spawn(move || follow(&bases, space, &token, &stop, total))
        })
        .collect();
    let pushing: Vec<_> = (0..pushers)
        .map(|p| {
            let (bases, token) = (bases.clone(), token.clone());
            std::thread::spawn(move || {
                let client = format!("client-{p}");
                let clients: Vec<Client> = bases.iter().map(|b| Client::new(b)).collect();
                for n in 1..=per_pusher {
                    let c = &clients[((p + n) % 3) as usize];
                    c.push_applied(
                        space,
                        &token,
                        &client,
                        vec![put(&client, n, &format!("{client}-r{n}"))],
                    );
                }
            })
        })
        .collect();
    for p in pushing {
        p.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let all: BTreeSet<u64> = (1..=total).collect();
    pullers
        .into_iter()
        .map(|p| {
            let seen = p.join().unwrap();
            let set: BTreeSet<u64> = seen.iter().copied().collect();
            assert_eq!(
                set.len(),
                seen.len(),
                "a change was delivered twice: {seen:?}"
            );
            all.difference(&set).copied().collect()
        })
        .collect()
}

/// `[PULL-3]` across instances: with the Space's row lock, every puller sees every change.
#[test]
fn change_sequences_are_gap_free_across_instances() {
    let missed = missed_changes(false);
    assert!(
        missed.iter().all(BTreeSet::is_empty),
        "pullers missed changes: {missed:?}"
    );
}

/// The gap test catches the naive approach (a sequence number taken without the Space's lock):
/// some puller skips a change that committed after a higher one.
#[test]
fn naive_sequences_lose_changes_and_the_gap_check_sees_it() {
    let missed = missed_changes(true);
    assert!(
        missed.iter().any(|m| !m.is_empty()),
        "the naive sequence lost nothing in this run"
    );
}

/// A replay racing its original on another instance gets the stored Outcome, byte for byte,
/// and the Mutation is applied once.
#[test]
fn a_replay_racing_its_original_on_another_instance_gets_the_stored_outcome() {
    let url = fresh_database();
    let a = Instance::start(&url, "server-a", false);
    let b = Instance::start(&url, "server-b", false);
    let space = "replays";
    let token = token(space);
    for n in 1..=40u64 {
        let body = json!({"client_id": "client-r", "mutations": [{
            "op_id": format!("op-race-{n}"), "seq": n, "collection": "counters", "record_id": "c",
            "hlc": hlc("client-r"), "effect": {"kind": "put", "value": {"n": n}}}]});
        let replies: Vec<_> = [a.base.clone(), b.base.clone()]
            .into_iter()
            .map(|base| {
                let (body, token) = (body.clone(), token.clone());
                std::thread::spawn(move || {
                    Client::new(&base).send("POST", "/v1/spaces/replays/push", Some(&token), &body)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        for r in &replies {
            assert_eq!(r.status, 200, "{}", r.text);
        }
        // One applied it; the other was told it is a duplicate of that same Outcome, or, when
        // it came second as a whole request, got the stored Outcome itself.
        let outcomes: Vec<Value> = replies
            .iter()
            .map(|r| {
                let result = r.json()["results"][0].clone();
                match result["status"].as_str() {
                    Some("duplicate") => result["original"].clone(),
                    _ => result,
                }
            })
            .collect();
        assert_eq!(outcomes[0], outcomes[1]);
        assert_eq!(outcomes[0]["status"], "applied", "{outcomes:?}");
    }
    let applied = psql(&url, "SELECT count(*) FROM ops WHERE space = 'replays'");
    assert_eq!(applied, "40");
    let latest = psql(
        &url,
        "SELECT latest_seq FROM spaces WHERE space = 'replays'",
    );
    assert_eq!(latest, "40", "every Op ID was applied exactly once");
}

/// A long-poll held on one instance wakes when a push lands on another (LISTEN/NOTIFY).
#[test]
fn a_long_poll_on_one_instance_wakes_on_a_push_to_another() {
    let url = fresh_database();
    let a = Instance::start(&url, "server-a", false);
    let b = Instance::start(&url, "server-b", false);
    let space = "waits";
    let token = token(space);
    let first = Client::new(&a.base).pull(space, &token, "").json();
    let cursor = first["cursor"].as_str().unwrap().to_owned();
    let waiter = {
        let (base, token) = (a.base.clone(), token.clone());
        std::thread::spawn(move || {
            // 30 s is the longest wait the server allows; the push below ends it long before,
            // and if it did not, the pull would come back empty and the test fail.
            Client::new(&base)
                .pull(space, &token, &format!("?cursor={cursor}&wait_ms=30000"))
                .json()
        })
    };
    // Push once instance A holds the pull: a signal the server gives, not a clock.
    let mut taken = a.app.long_polls_taken.subscribe();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(taken.wait_for(|taken| *taken >= 1))
        .expect("the server is running");
    Client::new(&b.base).push_applied(space, &token, "client-w", vec![put("client-w", 1, "w1")]);
    let page = waiter.join().unwrap();
    assert_eq!(page["records"].as_array().unwrap().len(), 1, "{page}");
}

/// Migrations are versioned and applied once, even by instances started on a migrated database.
#[test]
fn migrations_are_recorded_and_applied_once() {
    let url = fresh_database();
    let _a = Instance::start(&url, "server-a", false);
    let _b = Instance::start(&url, "server-b", false);
    assert_eq!(
        psql(
            &url,
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations"
        ),
        "1,2"
    );
}

/// A server whose last handle goes away on a runtime thread (the runtime shuts down while only
/// its tasks hold the server) closes its PostgreSQL connections without panicking: the sync
/// client's close blocks on its own runtime, which a tokio worker thread forbids. (Before the
/// fix this aborted the process: a panic in a destructor during the runtime's shutdown.)
#[test]
fn the_last_handle_dropped_on_a_runtime_thread_closes_cleanly() {
    let url = fresh_database();
    let (app, base, runtime) = serve(
        PgStorage::open(&url, "server-a").unwrap(),
        Config::default(),
    );
    let r = Client::new(&base).pull("demo", &token("demo"), "");
    assert_eq!(r.status, 200, "{}", r.text);
    // Only the runtime's tasks hold the server now; shutting it down drops the last handle on
    // one of its threads.
    drop(app);
    runtime.shutdown_timeout(Duration::from_secs(2));
}

/// Two instances with one node name would issue the same server HLCs: the second one on a
/// database refuses to start while the first holds the name, and names it in its error.
#[test]
fn a_node_name_is_held_by_one_instance_at_a_time() {
    let url = fresh_database();
    let first = PgStorage::open(&url, "server-a").unwrap();
    let err = match PgStorage::open(&url, "server-a") {
        Ok(_) => panic!("a second instance took node name server-a while the first held it"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("\"server-a\"") && err.contains("--node"),
        "{err}"
    );
    // Another name is free, and the name is free again once its holder is gone.
    let _other = PgStorage::open(&url, "server-b").unwrap();
    drop(first);
    PgStorage::open(&url, "server-a").unwrap();
}
