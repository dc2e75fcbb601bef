//! `driftless bench push`: push throughput of the reference server over real HTTP on loopback,
//! reported beside a raw-SQLite ceiling measured in the same run, and the cost of re-pushing
//! everything as duplicates. Ratios, not absolute numbers, are what to compare across machines.

use std::time::{Duration, Instant};

use driftless_protocol::messages::Scope;
use serde_json::{json, Value};

/// One measured batch size.
pub struct Row {
    pub batch: usize,
    pub server_per_s: f64,
    pub ceiling_per_s: f64,
    pub duplicate_ratio: f64,
}

/// Goals each benchmark is judged against, as ratios to its baseline from the same run.
/// Push: the server reaches this share of the raw-SQLite ceiling at batch 100.
const PUSH_RATIO_GOAL: f64 = 0.50;
/// Push: a re-push of duplicates costs at most this share of the first push.
const DUPLICATE_RATIO_GOAL: f64 = 0.20;
/// Initial sync: the client reaches this share of inserting the same Mirror rows directly
/// (it also pays HTTP, JSON parsing and a merge per Record, which the raw insert does not).
const SYNC_RATIO_GOAL: f64 = 0.60;
/// Backlog: a client write reaches this share of the raw durable insert of its row.
const BACKLOG_WRITE_RATIO_GOAL: f64 = 0.50;
/// Backlog: the client's sync reaches this share of a bare HTTP push of the same Mutations.
const BACKLOG_SYNC_RATIO_GOAL: f64 = 0.60;

/// The verdict line: `PASS` when every goal is met, else `FAIL` naming the goals missed.
pub(crate) fn verdict(checks: &[(String, bool)]) -> String {
    let missed: Vec<&str> = checks
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(g, _)| g.as_str())
        .collect();
    if missed.is_empty() {
        let met: Vec<&str> = checks.iter().map(|(g, _)| g.as_str()).collect();
        format!("PASS: {}\n", met.join("; "))
    } else {
        format!("FAIL: missed {}\n", missed.join("; "))
    }
}

/// Progress for a person watching: one line on stderr, rewritten in place, only on a terminal.
pub(crate) fn step(msg: &str) {
    use std::io::{IsTerminal, Write};
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = write!(err, "\r\x1b[2K{msg}");
        let _ = err.flush();
    }
}

/// Clears the progress line before the report is printed.
pub(crate) fn step_done() {
    step("");
}

pub(crate) fn per_s(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// A fresh in-process server with no rate limit, and a write Token for `space`.
fn bench_server(space: &str) -> Result<(crate::embedded::Embedded, String), String> {
    let config = driftless_server::service::Config {
        rate_limit_per_s: u32::MAX,
        ..Default::default()
    };
    let server = crate::embedded::Embedded::start(config)?;
    let token = server.token("bench", space, Scope::Write)?;
    Ok((server, token))
}

/// The median of `v` (the mean of the middle two for an even count); 0 for none.
pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub(crate) fn now_ms() -> Result<u64, String> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis() as u64)
}

/// The `i`th benchmark Effect: a put of a small record.
fn bench_effect(i: usize) -> Value {
    json!({"kind": "put", "value": {"title": "benchmark record", "n": i}})
}

/// The `i`th benchmark Mutation of `client-a`, stamped at `base_ms`.
fn bench_mutation(i: usize, base_ms: u64) -> Value {
    json!({"op_id": format!("op-{i:08}"), "seq": i + 1, "collection": "things", "record_id": format!("r{i}"),
        "hlc": format!("{base_ms:012x}-{:04x}-client-a", i % 65_536), "effect": bench_effect(i)})
}

/// Push bodies of the first `n` benchmark Mutations in batches of `batch`, serialized once
/// (outside any timed loop: the client's own JSON work is not the server's cost).
pub(crate) fn push_bodies(n: usize, batch: usize, base_ms: u64) -> Vec<String> {
    (0..n)
        .collect::<Vec<_>>()
        .chunks(batch.max(1))
        .map(|chunk| {
            let ms: Vec<Value> = chunk.iter().map(|&i| bench_mutation(i, base_ms)).collect();
            json!({"client_id": "client-a", "mutations": ms}).to_string()
        })
        .collect()
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// POSTs a serialized push body; returns the parsed response.
pub(crate) fn post_push(
    agent: &ureq::Agent,
    url: &str,
    token: &str,
    body: &str,
) -> Result<Value, String> {
    agent
        .post(url)
        .header("authorization", &format!("Bearer {token}"))
        .content_type("application/json")
        .send(body.as_bytes())
        .map_err(|e| e.to_string())?
        .body_mut()
        .read_json()
        .map_err(|e| e.to_string())
}

/// A reference client on a fresh store in `dir` for Space `bench`.
fn bench_client(
    dir: &std::path::Path,
    base: &str,
    token: &str,
    space: &str,
    batch_max: usize,
) -> Result<driftless_client::Client, String> {
    let cfg = driftless_client::Config {
        server: base.to_owned(),
        token: token.to_owned(),
        space: space.into(),
        retry: driftless_client::RetryPolicy::preset(driftless_client::Preset::Interactive),
        batch_max,
        timeout: Duration::from_secs(120),
    };
    driftless_client::Client::open(dir, cfg).map_err(|e| e.to_string())
}

/// Pushes `mutations` puts in batches of `batch` to a fresh in-process server and re-pushes them;
/// returns (first push, re-push) durations.
pub(crate) fn measure_server(
    mutations: usize,
    batch: usize,
) -> Result<(Duration, Duration), String> {
    let (server, token) = bench_server("bench")?;
    let url = format!("{}/v1/spaces/bench/push", server.base);
    let bodies = push_bodies(mutations, batch, now_ms()?);
    let agent = agent();
    let push_all = |expect: &str| -> Result<Duration, String> {
        let start = Instant::now();
        for body in &bodies {
            let v = post_push(&agent, &url, &token, body)?;
            let ok = v["results"]
                .as_array()
                .is_some_and(|r| r.iter().all(|x| x["status"] == expect));
            if !ok {
                return Err(format!("expected every result to be {expect}, got {v}"));
            }
        }
        Ok(start.elapsed())
    };
    let first = push_all("applied")?;
    let again = push_all("duplicate")?;
    drop(server);
    Ok((first, again))
}

/// Runs the benchmark for each batch size.
pub fn push(mutations: usize, batches: &[usize]) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for &batch in batches {
        step(&format!("bench push: {mutations} puts in batches of {batch} over HTTP, then again as duplicates..."));
        let (first, again) = measure_server(mutations, batch)?;
        step(&format!(
            "bench push: batch {batch}: the raw-SQLite ceiling..."
        ));
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ceiling =
            driftless_server::storage::sqlite::raw_insert_ceiling(dir.path(), mutations, batch)
                .map_err(|e| e.to_string())?;
        rows.push(Row {
            batch,
            server_per_s: per_s(mutations, first),
            ceiling_per_s: per_s(mutations, ceiling),
            duplicate_ratio: again.as_secs_f64() / first.as_secs_f64().max(1e-9),
        });
    }
    step_done();
    Ok(rows)
}

/// The report, one line per batch size.
pub fn report(mutations: usize, rows: &[Row]) -> String {
    let mut out = format!(
        "push benchmark: {mutations} puts over HTTP on loopback; ceiling = the same rows inserted directly into SQLite (WAL, synchronous=FULL, one transaction per batch)\n"
    );
    out.push_str(&format!(
        "{:>6}  {:>12}  {:>14}  {:>16}  {:>18}\n",
        "batch", "server mut/s", "ceiling mut/s", "server/ceiling", "re-push/first push"
    ));
    for r in rows {
        out.push_str(&format!(
            "{:>6}  {:>12.0}  {:>14.0}  {:>15.1}%  {:>17.1}%\n",
            r.batch,
            r.server_per_s,
            r.ceiling_per_s,
            100.0 * r.server_per_s / r.ceiling_per_s.max(1e-9),
            100.0 * r.duplicate_ratio
        ));
    }
    let mut checks: Vec<(String, bool)> = Vec::new();
    match rows.iter().find(|r| r.batch == 100) {
        Some(r) => checks.push((
            format!(
                "server/ceiling at batch 100 >= {:.0}%",
                100.0 * PUSH_RATIO_GOAL
            ),
            r.server_per_s / r.ceiling_per_s.max(1e-9) >= PUSH_RATIO_GOAL,
        )),
        None => checks.push((
            "a batch of 100 measured (add 100 to --batches)".into(),
            false,
        )),
    }
    checks.push((
        format!(
            "re-push/first push <= {:.0}% at every batch size",
            100.0 * DUPLICATE_RATIO_GOAL
        ),
        rows.iter()
            .all(|r| r.duplicate_ratio <= DUPLICATE_RATIO_GOAL),
    ));
    out.push_str(&verdict(&checks));
    out
}

/// `driftless bench sync`: an initial sync of `records` records into an empty client store over
/// HTTP, beside the raw-SQLite insert rate of the same Mirror rows measured in the same run.
pub fn sync(records: usize, rounds: usize) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (server, token) = bench_server("bench")?;
    let base = server.base.clone();
    // Fill the server.
    step(&format!(
        "bench sync: filling the server with {records} records..."
    ));
    let agent = agent();
    for body in push_bodies(records, 1000, now_ms()?) {
        post_push(
            &agent,
            &format!("{base}/v1/spaces/bench/push"),
            &token,
            &body,
        )?;
    }
    // The ceiling's rows: the same rows, pulled once without timing.
    let mut rows = Vec::with_capacity(records);
    let mut cursor = String::new();
    loop {
        let mut resp = agent
            .get(&format!("{base}/v1/spaces/bench/pull?limit=1000{cursor}"))
            .header("authorization", &format!("Bearer {token}"))
            .call()
            .map_err(|e| e.to_string())?;
        let page: Value = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_json()
            .map_err(|e| e.to_string())?;
        rows.extend(page["records"].as_array().cloned().unwrap_or_default());
        if page["has_more"] != true {
            break;
        }
        cursor = format!("&cursor={}", page["cursor"].as_str().unwrap_or(""));
    }
    // The measured part, in `rounds` alternating rounds (medians compared): a fresh client's
    // initial sync with uncoded pages (what the client asks for by default from a loopback
    // Server), one into another fresh store with gzip pages (its default elsewhere), and the
    // same rows inserted directly into a fresh store.
    let timed = |name: &str, gzip: bool| -> Result<f64, String> {
        step(&format!(
            "bench sync: initial sync of {records} records ({name})..."
        ));
        let mut client = bench_client(&dir.path().join(name), &base, &token, "bench", 500)?;
        client.accept_gzip(gzip);
        let start = Instant::now();
        let report = client.sync().map_err(|e| e.to_string())?;
        let took = start.elapsed();
        if report.pulled != records {
            return Err(format!("pulled {} of {records} records", report.pulled));
        }
        Ok(took.as_secs_f64())
    };
    let [mut plain, mut gzip, mut raw] = [(); 3].map(|_| Vec::new());
    for round in 0..rounds {
        plain.push(timed(&format!("identity-{round}"), false)?);
        gzip.push(timed(&format!("gzip-{round}"), true)?);
        step(&format!(
            "bench sync: round {}/{rounds}: the raw-SQLite ceiling...",
            round + 1
        ));
        raw.push(
            driftless_client::store::raw_mirror_ceiling(
                &dir.path().join(format!("ceiling-{round}")),
                &rows,
                1000,
            )
            .map_err(|e| e.to_string())?
            .as_secs_f64(),
        );
    }
    let [took_plain, took, ceiling] =
        [&plain, &gzip, &raw].map(|v| Duration::from_secs_f64(median(v)));
    drop(server);
    step_done();
    let (client_rate, plain_rate, raw_rate) = (
        per_s(records, took),
        per_s(records, took_plain),
        per_s(records, ceiling),
    );
    let (ratio, plain_ratio) = (
        client_rate / raw_rate.max(1e-9),
        plain_rate / raw_rate.max(1e-9),
    );
    Ok(format!(
        "initial sync benchmark: {records} records into an empty client store over HTTP on loopback; ceiling = the same mirror rows inserted directly (WAL, synchronous=FULL, one transaction per 1000); medians of {rounds} alternating rounds\n  client sync, uncoded pages (the default on loopback)  {plain_rate:>10.0} records/s   ratio {:>5.1}%\n  client sync, gzip pages (the default elsewhere)       {client_rate:>10.0} records/s   ratio {:>5.1}%{}\n  raw SQLite                                            {raw_rate:>10.0} records/s\n{}",
        100.0 * plain_ratio,
        100.0 * ratio,
        if ratio < SYNC_RATIO_GOAL { format!("   (below {:.0}%: gzip costs CPU on both ends and saves no time on loopback)", 100.0 * SYNC_RATIO_GOAL) } else { String::new() },
        verdict(&[(format!("client/raw >= {:.0}% as the client syncs by default (uncoded pages on loopback)", 100.0 * SYNC_RATIO_GOAL), plain_ratio >= SYNC_RATIO_GOAL)])
    ))
}

/// Timed rounds of `bench backlog` and `bench sync`, each on fresh stores (and Spaces), whose
/// medians are compared: one round alone was a coin flip on a shared disk (backlog: 44.7%, then
/// 62.3% of the bare push for the same build; the raw-SQLite ceiling of `bench sync` swung from
/// 233k to 374k rows/s between runs minutes apart).
pub const BENCH_ROUNDS: u64 = 3;

/// `driftless bench backlog`: `mutations` offline writes through the reference client, then the
/// one sync that pushes them (batches of 100) and pulls them back. Baselines from the same run:
/// the same Outbox rows written straight into SQLite (one durable transaction each, as a write
/// commits), and the same mutations pushed over HTTP by a bare client in batches of 100 into
/// another Space of the same server. Each of the four is measured in each of `rounds` rounds,
/// alternating, and the medians are compared. Both costs must grow linearly with the backlog.
pub fn backlog(mutations: usize, rounds: usize) -> Result<String, String> {
    const BATCH: usize = 100;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (server, _) = bench_server("bench")?;
    let base_ms = now_ms()?;
    let texts: Vec<String> = (0..mutations)
        .map(|i| bench_mutation(i, base_ms).to_string())
        .collect();
    let bodies = push_bodies(mutations, BATCH, base_ms);
    let agent = agent();
    let [mut wrote, mut synced, mut raw_writes, mut raw_push] = [(); 4].map(|_| Vec::new());
    for round in 0..rounds {
        let space = format!("bench-{round}");
        let client_token = server.token("bench", &space, Scope::Write)?;
        let client_dir = dir.path().join(format!("client-{round}"));
        let mut client = bench_client(&client_dir, &server.base, &client_token, &space, BATCH)?;
        step(&format!(
            "bench backlog: round {}/{rounds}: {mutations} offline writes...",
            round + 1
        ));
        let start = Instant::now();
        for i in 0..mutations {
            client
                .write("things", &format!("r{i}"), bench_effect(i), 0)
                .map_err(|e| e.to_string())?;
        }
        wrote.push(start.elapsed().as_secs_f64());
        step(&format!(
            "bench backlog: round {}/{rounds}: syncing {mutations} writes...",
            round + 1
        ));
        let start = Instant::now();
        let report = client.sync().map_err(|e| e.to_string())?;
        synced.push(start.elapsed().as_secs_f64());
        if report.acknowledged != mutations {
            return Err(format!(
                "acknowledged {} of {mutations} writes",
                report.acknowledged
            ));
        }
        drop(client);
        step(&format!(
            "bench backlog: round {}/{rounds}: the baselines...",
            round + 1
        ));
        // Baseline 1: the same Outbox rows, straight into SQLite.
        raw_writes.push(
            driftless_client::store::raw_outbox_ceiling(
                &dir.path().join(format!("ceiling-{round}")),
                &texts,
            )
            .map_err(|e| e.to_string())?
            .as_secs_f64(),
        );
        // Baseline 2: a bare HTTP push of the same mutations into a Space of its own.
        let raw_space = format!("raw-{round}");
        let raw_token = server.token("bench", &raw_space, Scope::Write)?;
        let url = format!("{}/v1/spaces/{raw_space}/push", server.base);
        let start = Instant::now();
        for body in &bodies {
            post_push(&agent, &url, &raw_token, body)?;
        }
        raw_push.push(start.elapsed().as_secs_f64());
    }
    drop(server);
    step_done();
    let [wrote, synced, raw_writes, raw_push] =
        [&wrote, &synced, &raw_writes, &raw_push].map(|v| median(v));
    let ratio = |base: f64, ours: f64| base / ours.max(1e-9);
    let (write_ratio, sync_ratio) = (ratio(raw_writes, wrote), ratio(raw_push, synced));
    let rate = |secs: f64| mutations as f64 / secs.max(1e-9);
    Ok(format!(
        "offline backlog benchmark: {mutations} writes through the reference client, then one sync (push in batches of {BATCH}, then pull); medians of {rounds} alternating rounds\n  client writes  {:>10.0} writes/s   raw SQLite (same rows, one transaction each) {:>10.0}/s   ratio {:>5.1}%\n  client sync    {:>10.0} mutations/s   bare HTTP push of the same mutations {:>10.0}/s   ratio {:>5.1}%\n{}",
        rate(wrote),
        rate(raw_writes),
        100.0 * write_ratio,
        rate(synced),
        rate(raw_push),
        100.0 * sync_ratio,
        verdict(&[
            (format!("writes/raw >= {:.0}%", 100.0 * BACKLOG_WRITE_RATIO_GOAL), write_ratio >= BACKLOG_WRITE_RATIO_GOAL),
            (format!("sync/bare push >= {:.0}%", 100.0 * BACKLOG_SYNC_RATIO_GOAL), sync_ratio >= BACKLOG_SYNC_RATIO_GOAL),
        ])
    ))
}
