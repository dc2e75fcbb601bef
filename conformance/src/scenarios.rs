//! Randomised scenarios through the fault-injecting proxy: lost acknowledgements, duplicated and
//! reordered requests, and several Clients that write offline and then sync in random orders. The
//! final state must equal what the merge rules compute from the set of Mutations; the seed of the
//! run makes every choice replayable.

use std::collections::BTreeMap;

use driftless_protocol::collection_schema::Policy;
use driftless_protocol::merge::RecordState;
use driftless_protocol::messages::Mutation;
use serde_json::{json, Value};

use crate::cases::{fresh, space, C};
use crate::client::{check, fail, mutation, now_ms, Ctx};
use crate::proxy::{FaultRates, Proxy};
use crate::{Case, CaseResult, Level, Verdict};

/// The cases of this group.
pub fn all() -> Vec<Case> {
    vec![
        Case {
            id: "idempotency.lost-ack-then-retry",
            requirements: &["IDEM-2", "IDEM-3", "MAN-2"],
            level: Level::Must,
            description: "a push whose response is lost was applied once; the manifest and a retry say so",
            run: lost_ack_then_retry,
        },
        Case {
            id: "convergence.clients-through-faulty-proxy",
            requirements: &["MERGE-1", "MERGE-2", "IDEM-2", "IDEM-3", "PULL-2", "PULL-6", "INT-5"],
            level: Level::Must,
            description: "clients writing offline and syncing through lost acks, duplicates and reordering converge to the merge model",
            run: convergence,
        },
    ]
}

fn policy(field: &str) -> Policy {
    match field {
        "likes" => Policy::Counter,
        "tags" => Policy::AddWinsSet,
        "body" => Policy::KeepBoth,
        _ => Policy::Lww,
    }
}

fn push_via(
    ctx: &Ctx,
    base: &str,
    space: &str,
    token: &str,
    client: &str,
    mutations: &[Value],
) -> Result<crate::client::Resp, Verdict> {
    let body = json!({"client_id": client, "mutations": mutations})
        .to_string()
        .into_bytes();
    ctx.request_at(
        base,
        "POST",
        &format!("/v1/spaces/{space}/push"),
        Some(token),
        &[("content-type", "application/json")],
        Some(body),
    )
}

/// A Client's mirror (`id` -> value, tombstones as null) pulled page by page through `base`,
/// retrying a page whose response was lost.
fn pull_via(
    ctx: &Ctx,
    base: &str,
    space: &str,
    token: &str,
) -> Result<BTreeMap<String, Value>, Verdict> {
    let mut mirror = BTreeMap::new();
    let mut query = "?limit=3".to_owned();
    for _ in 0..1000 {
        let page = (0..50)
            .find_map(|_| {
                match ctx.request_at(
                    base,
                    "GET",
                    &format!("/v1/spaces/{space}/pull{query}"),
                    Some(token),
                    &[],
                    None,
                ) {
                    Ok(r) if r.status == 200 => Some(r.body),
                    _ => None,
                }
            })
            .ok_or_else(|| Verdict::Error("a pull page was never answered in 50 tries".into()))?;
        for rec in page["records"].as_array().into_iter().flatten() {
            let value = if rec["deleted"] == true {
                Value::Null
            } else {
                rec["value"].clone()
            };
            mirror.insert(rec["id"].as_str().unwrap_or("").to_owned(), value);
        }
        if page["has_more"] != true {
            return Ok(mirror);
        }
        query = format!("?limit=3&cursor={}", page["cursor"].as_str().unwrap_or(""));
    }
    Err(fail("pull never reached has_more = false"))
}

fn lost_ack_then_retry(ctx: &mut Ctx) -> CaseResult {
    if !ctx.base().starts_with("http://") {
        return Err(Verdict::Skip(
            "the fault-injecting proxy needs an http:// server".into(),
        ));
    }
    let (space, token) = space(ctx, "write")?;
    let drop_all = FaultRates {
        drop_response: 100,
        duplicate: 0,
        delay: 0,
        delay_ms_max: 0,
    };
    let proxy = Proxy::start(ctx.base(), 1, drop_all).map_err(Verdict::Error)?;
    let inc = fresh(
        ctx,
        "things",
        "c",
        json!({"kind": "increment", "field": "n", "by": 3}),
    );
    let lost = push_via(
        ctx,
        proxy.base(),
        &space,
        &token,
        C,
        std::slice::from_ref(&inc),
    );
    check(
        lost.is_err() || lost.as_ref().is_ok_and(|r| r.status == 0),
        || "the proxy should have dropped the response".into(),
    )?;
    let m = ctx.send(
        "POST",
        &format!("/v1/spaces/{space}/manifest"),
        Some(&token),
        &json!({"op_ids": [inc["op_id"]]}),
    )?;
    ctx.expect(&m, 200, "manifest")?;
    check(m.body["entries"][0]["status"] == "applied", || {
        format!(
            "the manifest says {} for a push the server answered",
            m.body["entries"][0]
        )
    })?;
    let retry = ctx.push_ok(&space, &token, C, &[inc])?;
    check(
        retry[0]["status"] == "duplicate" && retry[0]["original"] == m.body["entries"][0],
        || format!("the retry answered {}", retry[0]),
    )?;
    let rec = ctx.record(&space, &token, "things", "c")?;
    check(rec.body["value"]["n"] == 3, || {
        format!(
            "after a lost ack and a retry the counter is {}",
            rec.body["value"]["n"]
        )
    })
}

/// One simulated Client's offline writes, in batches.
fn offline_writes(ctx: &mut Ctx, client: &str, base_ms: u64, n: usize) -> Vec<Vec<Value>> {
    let records = ["n0", "n1", "n2", "n3"];
    let words = ["a", "b", "c"];
    let mut out = Vec::new();
    let mut batch = Vec::new();
    for i in 0..n {
        let w = words[ctx.below(3) as usize];
        let effect = match ctx.below(10) {
            0 => json!({"kind": "put", "value": {"title": w, "n": ctx.below(9)}}),
            1 => json!({"kind": "patch", "set": {"title": w}}),
            2 => json!({"kind": "increment", "field": "likes", "by": 1 + ctx.below(4)}),
            3 => json!({"kind": "increment", "field": "n", "by": 1}),
            4 => json!({"kind": "set_add", "field": "tags", "elements": [w]}),
            5 => json!({"kind": "set_remove", "field": "tags", "elements": [w]}),
            6 => json!({"kind": "patch", "set": {"body": w}}),
            7 => json!({"kind": "resolve", "field": "body", "value": w}),
            8 if ctx.below(3) == 0 => json!({"kind": "delete"}),
            _ => json!({"kind": "patch", "unset": ["n"]}),
        };
        let op = ctx.op();
        // Offline clocks overlap across Clients, so ties are broken by node and Op ID.
        let hlc = Ctx::hlc_at(base_ms + ctx.below(40), i as u16, client);
        let mut m = mutation(
            &op,
            i as u64 + 1,
            "notes",
            records[ctx.below(4) as usize],
            &hlc,
            effect,
        );
        m["schema_version"] = json!(1);
        batch.push(m);
        if batch.len() as u64 > ctx.below(5) {
            out.push(std::mem::take(&mut batch));
        }
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

fn convergence(ctx: &mut Ctx) -> CaseResult {
    if !ctx.base().starts_with("http://") {
        return Err(Verdict::Skip(
            "the fault-injecting proxy needs an http:// server".into(),
        ));
    }
    let (space, token) = space(ctx, "admin")?;
    let doc = json!({"collection": "notes", "version": 1, "schema": {"type": "object"},
        "fields": {"likes": {"policy": "counter"}, "tags": {"policy": "add_wins_set"}, "body": {"policy": "keep_both"}}});
    let r = ctx.send(
        "PUT",
        &format!("/v1/spaces/{space}/collections/notes/schemas/1"),
        Some(&token),
        &doc,
    )?;
    ctx.expect(&r, 201, "registering the scenario's collection schema")?;
    let rates = FaultRates {
        drop_response: 20,
        duplicate: 20,
        delay: 30,
        delay_ms_max: 15,
    };
    let seed = ctx.below(u64::MAX);
    let proxy = Proxy::start(ctx.base(), seed, rates).map_err(Verdict::Error)?;
    let base_ms = now_ms() - 10_000;
    let clients = ["cf-sim-client-0", "cf-sim-client-1", "cf-sim-client-2"];
    let outboxes: Vec<Vec<Vec<Value>>> = clients
        .iter()
        .map(|c| offline_writes(ctx, c, base_ms, 30))
        .collect();
    let ctx_ref: &Ctx = ctx;
    // Every Client syncs at once, in its own order; a transport failure is retried with the very
    // same batch, as a Client must.
    let results: Vec<Result<(), Verdict>> = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter()
            .zip(&outboxes)
            .map(|(client, batches)| {
                let (proxy, space, token) = (proxy.base(), &space, &token);
                s.spawn(move || {
                    for batch in batches {
                        let mut acknowledged = false;
                        for _ in 0..50 {
                            match push_via(ctx_ref, proxy, space, token, client, batch) {
                                Ok(r) if r.status == 200 => {
                                    for res in r.body["results"].as_array().into_iter().flatten() {
                                        let outcome = if res["status"] == "duplicate" {
                                            &res["original"]
                                        } else {
                                            res
                                        };
                                        if outcome["status"] != "applied" {
                                            return Err(fail(format!(
                                                "a valid mutation was answered {res}"
                                            )));
                                        }
                                    }
                                    acknowledged = true;
                                    break;
                                }
                                Ok(r) if r.status == 429 || r.status >= 500 => continue,
                                Ok(r) => {
                                    return Err(fail(format!(
                                        "push answered {}: {}",
                                        r.status, r.text
                                    )))
                                }
                                Err(_) => continue,
                            }
                        }
                        if !acknowledged {
                            return Err(Verdict::Error(
                                "a batch was never acknowledged in 50 tries".into(),
                            ));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Verdict::Error("a client thread panicked".into())))
            })
            .collect()
    });
    for r in results {
        r?;
    }
    // The model: the join of every Mutation, per Record.
    let mut model: BTreeMap<String, RecordState> = BTreeMap::new();
    for m in outboxes.iter().flatten().flatten() {
        let parsed: Mutation =
            serde_json::from_value(m.clone()).map_err(|e| Verdict::Error(e.to_string()))?;
        model
            .entry(parsed.record_id.to_string())
            .or_default()
            .apply(&parsed);
    }
    let mut sums = driftless_protocol::checksum::SpaceChecksums::default();
    let (records, _) = ctx.pull_all(&space, &token, 100)?;
    for (id, state) in &model {
        let expected = state.materialize(policy, &BTreeMap::new());
        let got = records
            .get(&format!("notes/{id}"))
            .ok_or_else(|| fail(format!("record {id} is missing")))?;
        check(got["deleted"] == !expected.exists, || {
            format!(
                "{id}: exists {} but the model says {}",
                got["deleted"] == false,
                expected.exists
            )
        })?;
        if expected.exists {
            check(
                got["value"] == Value::Object(expected.value.clone()),
                || {
                    format!(
                        "{id}: {} but the model says {}",
                        got["value"],
                        Value::Object(expected.value.clone())
                    )
                },
            )?;
            let conflicts = if expected.conflicts.is_empty() {
                Value::Null
            } else {
                json!(expected.conflicts)
            };
            check(
                got.get("conflicts").cloned().unwrap_or(Value::Null) == conflicts,
                || {
                    format!(
                        "{id}: conflicts {} but the model says {conflicts}",
                        got["conflicts"]
                    )
                },
            )?;
            sums.add("notes", id, &expected.value);
        }
    }
    // Every Client's mirror, pulled through the same faulty proxy, holds the model's values.
    for client in clients {
        let mirror = pull_via(ctx, proxy.base(), &space, &token)?;
        for (id, state) in &model {
            let expected = state.materialize(policy, &BTreeMap::new());
            let got = mirror.get(id).cloned().unwrap_or(Value::Null);
            let want = if expected.exists {
                Value::Object(expected.value.clone())
            } else {
                Value::Null
            };
            check(got == want, || {
                format!("{client}'s mirror has {id} = {got}, the model {want}")
            })?;
        }
    }
    let server = ctx.get(&format!("/v1/spaces/{space}/checksums"), Some(&token))?;
    let expected = driftless_protocol::checksum::to_hex(&sums.space_digest());
    check(server.body["space_digest"] == expected.as_str(), || {
        format!("the server's space digest differs from the model's {expected}")
    })?;
    let c = &proxy.counts;
    let injected = c.dropped.load(std::sync::atomic::Ordering::Relaxed)
        + c.duplicated.load(std::sync::atomic::Ordering::Relaxed);
    check(injected > 0, || {
        "the proxy injected no fault; the scenario proved nothing".into()
    })
}
