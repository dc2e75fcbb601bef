//! `driftless bench push --database postgres://... [--instances N]`: push throughput of the
//! reference server on PostgreSQL, beside the SQLite backend and a raw PostgreSQL insert of the
//! same rows (one transaction per batch) measured in the same run, and a write mix over many
//! Spaces through one instance and through N. Ratios, not absolute numbers, are what to compare.
//!
//! It writes into the given database, in Spaces named `bench-<run>-...`, where `<run>` is the
//! run's start time in milliseconds; it never deletes anything.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftless_protocol::messages::{Scope, TokenClaims};
use driftless_server::auth::TokenKey;

use crate::bench::{agent, measure_server, median, now_ms, per_s, post_push, push_bodies, verdict};

/// Goal: the PostgreSQL backend reaches this share of its raw ceiling at batch 100.
const PG_RATIO_GOAL: f64 = 0.50;
/// Concurrent pushers of the write mix, each to its own Space.
const MIX_PUSHERS: usize = 8;
/// Batch size of the write mix.
const MIX_BATCH: usize = 100;
/// Rounds of the write mix, alternating one instance and all instances, so that a drift of the
/// machine's load over the run (other processes, PostgreSQL's checkpoints) falls on both alike.
const MIX_ROUNDS: usize = 3;

/// One in-process server instance on the database.
struct Instance {
    base: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

fn start(url: &str, node: &str, key: &TokenKey) -> Result<Instance, String> {
    let config = driftless_server::service::Config {
        node: node.into(),
        rate_limit_per_s: u32::MAX,
        ..Default::default()
    };
    let app = driftless_server::open_postgres(
        url,
        key.clone(),
        config,
        driftless_server::conn::EdgeConfig::default(),
        driftless_server::faults::Faults::default(),
        Arc::new(driftless_server::service::SystemClock),
    )
    .map_err(|e| e.to_string())?;
    let (runtime, listener, base) = crate::embedded::loopback_runtime()?;
    runtime.spawn(driftless_server::run(
        app,
        listener,
        std::future::pending(),
        Duration::from_secs(3600),
        Duration::from_secs(1),
    ));
    Ok(Instance {
        base,
        runtime: Some(runtime),
    })
}

/// Pushes every body to `space` through `base`, in order; returns the elapsed time.
fn push_all(base: &str, space: &str, token: &str, bodies: &[String]) -> Result<Duration, String> {
    let agent = agent();
    let url = format!("{base}/v1/spaces/{space}/push");
    let start = Instant::now();
    for body in bodies {
        let v = post_push(&agent, &url, token, body)?;
        let ok = v["results"]
            .as_array()
            .is_some_and(|r| r.iter().all(|x| x["status"] == "applied"));
        if !ok {
            return Err(format!("expected every result to be applied, got {v}"));
        }
    }
    Ok(start.elapsed())
}

/// The write mix: [`MIX_PUSHERS`] concurrent pushers, each to its own Space, pusher `i`
/// through `bases[i % len]`; returns mutations per second.
fn mix(bases: &[String], spaces: &[String], token: &str, mutations: usize) -> Result<f64, String> {
    let per = (mutations / MIX_PUSHERS).max(1);
    let base_ms = now_ms()?;
    let start = Instant::now();
    let handles: Vec<_> = spaces
        .iter()
        .enumerate()
        .map(|(i, space)| {
            let (base, space, token) = (
                bases[i % bases.len()].clone(),
                space.clone(),
                token.to_owned(),
            );
            let bodies = push_bodies(per, MIX_BATCH, base_ms);
            std::thread::spawn(move || push_all(&base, &space, &token, &bodies))
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "a pusher panicked".to_owned())??;
    }
    Ok(per_s(per * MIX_PUSHERS, start.elapsed()))
}

/// Runs the benchmark and returns the report.
pub fn run(
    url: &str,
    mutations: usize,
    batches: &[usize],
    instances: usize,
) -> Result<String, String> {
    let run = now_ms()?;
    // A fresh random secret, as a server makes on its first start.
    let secret_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let key = TokenKey::load_or_create(secret_dir.path()).map_err(|e| e.to_string())?;
    let mut spaces: Vec<String> = batches
        .iter()
        .map(|b| format!("bench-{run}-b{b}"))
        .collect();
    // The write mix's Spaces: a fresh set per round and per side, so that no round pushes into
    // a Space an earlier round filled.
    let mix_spaces = |side: &str, round: usize| -> Vec<String> {
        (0..MIX_PUSHERS)
            .map(|i| format!("bench-{run}-{side}{round}-{i}"))
            .collect()
    };
    for round in 0..MIX_ROUNDS {
        spaces.extend(mix_spaces("one", round));
        spaces.extend(mix_spaces("many", round));
    }
    let now_s = run / 1000;
    let mut grants = BTreeMap::new();
    for s in &spaces {
        grants.insert(
            s.parse()
                .map_err(|e: driftless_protocol::ids::InvalidId| e.to_string())?,
            Scope::Write,
        );
    }
    let token = key.mint(&TokenClaims {
        sub: "bench".into(),
        grants,
        iat: now_s,
        exp: now_s + 24 * 3600,
    });
    let servers: Vec<Instance> = (0..instances.max(1))
        .map(|i| start(url, &format!("bench-{i}"), &key))
        .collect::<Result<_, _>>()?;
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let mut out = format!(
        "push benchmark on PostgreSQL: {mutations} puts over HTTP on loopback per batch size; raw = the same rows inserted directly into PostgreSQL (one transaction per batch, synchronous_commit on); SQLite = the same pushes to the SQLite backend\n"
    );
    out.push_str(&format!(
        "{:>6}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}\n",
        "batch", "pg mut/s", "raw pg mut/s", "pg/raw", "sqlite mut/s", "pg/sqlite"
    ));
    let mut checks = Vec::new();
    for (&batch, space) in batches.iter().zip(&spaces) {
        let bodies = push_bodies(mutations, batch, now_ms()?);
        let pg = per_s(mutations, push_all(&bases[0], space, &token, &bodies)?);
        let raw = driftless_server::storage::postgres::raw_insert_ceiling(
            url,
            &format!("{space}-raw"),
            mutations,
            batch,
        )
        .map_err(|e| e.to_string())?;
        let raw = per_s(mutations, raw);
        let sqlite = per_s(mutations, measure_server(mutations, batch)?.0);
        out.push_str(&format!(
            "{:>6}  {:>12.0}  {:>12.0}  {:>11.1}%  {:>12.0}  {:>11.1}%\n",
            batch,
            pg,
            raw,
            100.0 * pg / raw.max(1e-9),
            sqlite,
            100.0 * pg / sqlite.max(1e-9)
        ));
        if batch == 100 {
            checks.push((
                format!("pg/raw at batch 100 >= {:.0}%", 100.0 * PG_RATIO_GOAL),
                pg / raw.max(1e-9) >= PG_RATIO_GOAL,
            ));
        }
    }
    if !batches.contains(&100) {
        checks.push((
            "a batch of 100 measured (add 100 to --batches)".into(),
            false,
        ));
    }
    let mut through_one = Vec::new();
    let mut through_all = Vec::new();
    for round in 0..MIX_ROUNDS {
        through_one.push(mix(
            &bases[..1],
            &mix_spaces("one", round),
            &token,
            mutations,
        )?);
        through_all.push(mix(&bases, &mix_spaces("many", round), &token, mutations)?);
    }
    let rounds = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join("/")
    };
    let (one_median, all_median) = (median(&through_one), median(&through_all));
    let one_slowest = through_one.iter().copied().fold(f64::INFINITY, f64::min);
    out.push_str(&format!(
        "write mix: {MIX_PUSHERS} concurrent pushers, each to its own Space, batches of {MIX_BATCH}, {MIX_ROUNDS} alternating rounds: {} mut/s through 1 instance (median {one_median:.0}), {} mut/s through {} (median {all_median:.0}); {:.2}x\n",
        rounds(&through_one),
        rounds(&through_all),
        bases.len(),
        all_median / one_median.max(1e-9)
    ));
    if bases.len() > 1 {
        // "At least as fast": the instances' median is not below what one instance reached in
        // its slowest round of the same run, i.e. no slower than one instance's own spread.
        checks.push((
            format!(
                "{} instances >= 1 instance on the write mix (median of {} >= slowest round of 1)",
                bases.len(),
                bases.len()
            ),
            all_median >= one_slowest,
        ));
    }
    out.push_str(&verdict(&checks));
    Ok(out)
}
