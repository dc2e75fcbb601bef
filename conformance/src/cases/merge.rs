//! Cases of spec chapter 03, Mutations and merge (`spec/03-mutations-and-merge.md`): the validation
//! of each effect and field policy, the merge rules (last writer wins, deletes, counters, add-wins
//! sets, keep-both and resolve), and the randomised scenario in which several Clients write offline
//! and sync through the fault-injecting proxy and must converge to the merge model.
//!
//! Over 600 lines, it is one cohesive thing: the merge rules' checks, the convergence scenario
//! being their randomised form.
//!
//! Requirement IDs its cases check: `[HLC-2]`, `[HLC-3]`, `[IDEM-2]`, `[IDEM-3]`, `[INT-5]`,
//! `[MERGE-1]`, `[MERGE-2]`, `[MERGE-4]`, `[MERGE-5]`, `[MERGE-6]`, `[MERGE-7]`, `[MERGE-8]`,
//! `[MERGE-9]`, `[MUT-1]`, `[MUT-3]`, `[MUT-4]`, `[MUT-5]`, `[MUT-6]`, `[MUT-7]`, `[MUT-8]`,
//! `[MUT-9]`, `[MUT-10]`, `[MUT-11]`, `[PULL-2]`, `[PULL-6]`.

use std::collections::BTreeMap;

use driftless_protocol::collection_schema::Policy;
use driftless_protocol::merge::RecordState;
use driftless_protocol::messages::Mutation;
use serde_json::{json, Value};

use super::support::{case, pull_via, push_via, register, space, C};
use crate::client::{check, fail, mutation, now_ms, Ctx};
use crate::proxy::{FaultRates, Proxy};
use crate::Level::Must;
use crate::{Case, CaseResult, Verdict};

/// The cases of this chapter, in suite order.
pub fn cases() -> Vec<Case> {
    vec![
        case(
            "push.hlc-node-mismatch",
            &["MUT-1"],
            Must,
            "an hlc whose node is not the client_id is invalid-mutation",
            hlc_node_mismatch,
        ),
        case(
            "merge.lww-order-independent",
            &["MERGE-1", "MERGE-2", "HLC-3", "HLC-2"],
            Must,
            "the greater stamp wins whatever the arrival order",
            lww_order_independent,
        ),
        case(
            "merge.delete-vs-newer-update",
            &["MERGE-4", "MERGE-5"],
            Must,
            "a delete hides older writes and a newer update brings the record back",
            delete_vs_update,
        ),
        case(
            "merge.increment-after-put",
            &["MERGE-6", "MUT-6"],
            Must,
            "increments after a put add to it; earlier ones are superseded",
            increment_after_put,
        ),
        case(
            "effect.invalid-field-name",
            &["MUT-4", "MUT-3"],
            Must,
            "a put naming an invalid field is invalid-mutation",
            invalid_field_name,
        ),
        case(
            "effect.empty-patch",
            &["MUT-5"],
            Must,
            "a patch naming no field, or one field both set and unset, is invalid-mutation",
            empty_patch,
        ),
        case(
            "effect.increment-range",
            &["MUT-6"],
            Must,
            "an increment beyond the safe integers is invalid-mutation",
            increment_range,
        ),
        case(
            "effect.empty-elements",
            &["MUT-7"],
            Must,
            "set_add with no elements is invalid-mutation",
            empty_elements,
        ),
        case(
            "policy.violations",
            &["MUT-8", "MUT-9", "MUT-10", "MUT-11"],
            Must,
            "effects a field's policy forbids are policy-violation",
            policy_violations,
        ),
        case(
            "merge.unschematized-lww",
            &["MERGE-9"],
            Must,
            "a collection without schema takes any object and merges field by field",
            unschematized_lww,
        ),
        case(
            "merge.counter-adds-up",
            &["MERGE-1", "MERGE-2"],
            Must,
            "concurrent counter increments add up in any order",
            counter_adds_up,
        ),
        case(
            "merge.set-latest-add-wins",
            &["MERGE-1", "MERGE-2"],
            Must,
            "a set element is present when its latest add is newer than its latest remove",
            set_semantics,
        ),
        case(
            "merge.keep-both-then-resolve",
            &["MERGE-7", "MERGE-8"],
            Must,
            "concurrent keep_both writes are siblings until a resolve",
            keep_both_then_resolve,
        ),
        case(
            "convergence.clients-through-faulty-proxy",
            &["MERGE-1", "MERGE-2", "IDEM-2", "IDEM-3", "PULL-2", "PULL-6", "INT-5"],
            Must,
            "clients writing offline and syncing through lost acks, duplicates and reordering converge to the merge model",
            convergence,
        ),
    ]
}

fn hlc_node_mismatch(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let (op, hlc) = (ctx.op(), ctx.hlc("cf-someone-else"));
    let m = mutation(&op, 1, "things", "r1", &hlc, json!({"kind": "delete"}));
    let results = ctx.push_ok(&space, &token, C, &[m])?;
    check(
        results[0]["problem"]["type"] == "urn:driftless:problem:invalid-mutation",
        || format!("answered {}", results[0]),
    )
}

fn lww_order_independent(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let at = now_ms() - 5_000;
    let mk = |ctx: &mut Ctx, l: u16, client: &str, v: &str| {
        let op = ctx.op();
        mutation(
            &op,
            1,
            "things",
            "r1",
            &Ctx::hlc_at(at, l, client),
            json!({"kind": "put", "value": {"v": v}}),
        )
    };
    // Each arrival order in a Space of its own: both writes must be applied, and the newer
    // stamp must win either way.
    for newer_first in [true, false] {
        let (space, token) = if newer_first {
            (space.clone(), token.clone())
        } else {
            super::support::space(ctx, "write")?
        };
        let newer = mk(ctx, 7, "cf-client-b", "newer");
        let older = mk(ctx, 3, C, "older");
        if newer_first {
            ctx.push_applied(&space, &token, "cf-client-b", &[newer])?;
            ctx.push_applied(&space, &token, C, &[older])?;
        } else {
            ctx.push_applied(&space, &token, C, &[older])?;
            ctx.push_applied(&space, &token, "cf-client-b", &[newer])?;
        }
        let rec = ctx.record(&space, &token, "things", "r1")?;
        ctx.expect(&rec, 200, "the record both writes were applied to")?;
        check(rec.body["value"] == json!({"v": "newer"}), || {
            let order = if newer_first {
                "newer first"
            } else {
                "older first"
            };
            format!("arriving {order}, the record is {}", rec.body["value"])
        })?;
    }
    Ok(())
}

fn delete_vs_update(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let at = now_ms() - 5_000;
    let mut m = |l: u16, effect: Value| {
        let op = ctx.op();
        mutation(&op, 1, "things", "r1", &Ctx::hlc_at(at, l, C), effect)
    };
    let del = m(4, json!({"kind": "delete"}));
    let older = m(2, json!({"kind": "patch", "set": {"done": true}}));
    let newer = m(9, json!({"kind": "patch", "set": {"title": "Again"}}));
    ctx.push_applied(&space, &token, C, &[newer, del.clone(), older.clone()])?;
    let rec = ctx.record(&space, &token, "things", "r1")?;
    check(
        rec.body["deleted"] == false && rec.body["value"] == json!({"title": "Again"}),
        || format!("record is {}", rec.body),
    )?;
    // Without the newer update, the delete hides the older patch: a tombstone.
    let (space, token) = super::support::space(ctx, "write")?;
    let (mut older, mut del) = (older, del);
    older["op_id"] = json!(ctx.op());
    del["op_id"] = json!(ctx.op());
    ctx.push_applied(&space, &token, C, &[older, del])?;
    let rec = ctx.record(&space, &token, "things", "r1")?;
    ctx.expect(&rec, 200, "reading the tombstone")?;
    check(
        rec.body["deleted"] == true && rec.body.get("value").is_none_or(Value::is_null),
        || format!("an older patch after a delete left {}", rec.body),
    )
}

fn increment_after_put(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let at = now_ms() - 5_000;
    let mut m = |l: u16, client: &str, effect: Value| {
        let op = ctx.op();
        mutation(&op, 1, "things", "s", &Ctx::hlc_at(at, l, client), effect)
    };
    let put = m(5, C, json!({"kind": "put", "value": {"count": 10}}));
    let before = m(
        2,
        "cf-client-b",
        json!({"kind": "increment", "field": "count", "by": 3}),
    );
    let after = m(
        8,
        "cf-client-b",
        json!({"kind": "increment", "field": "count", "by": 4}),
    );
    ctx.push_applied(&space, &token, "cf-client-b", &[after, before])?;
    ctx.push_applied(&space, &token, C, &[put])?;
    let rec = ctx.record(&space, &token, "things", "s")?;
    check(rec.body["value"]["count"] == 14, || {
        format!("count is {} (expected 10 + 4)", rec.body["value"]["count"])
    })
}

fn one_rejection(
    ctx: &mut Ctx,
    space: &str,
    token: &str,
    effect: Value,
    expected: &str,
) -> CaseResult {
    let (op, hlc) = (ctx.op(), ctx.hlc(C));
    let m = mutation(&op, 1, "things", "r1", &hlc, effect.clone());
    let r = ctx.push_ok(space, token, C, &[m])?;
    let want = format!("urn:driftless:problem:{expected}");
    check(
        r[0]["status"] == "rejected" && r[0]["problem"]["type"] == want.as_str(),
        || format!("{effect} answered {}", r[0]),
    )
}

fn invalid_field_name(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    one_rejection(
        ctx,
        &space,
        &token,
        json!({"kind": "put", "value": {"not a field": 1}}),
        "invalid-mutation",
    )
}

fn empty_patch(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    one_rejection(
        ctx,
        &space,
        &token,
        json!({"kind": "patch"}),
        "invalid-mutation",
    )?;
    one_rejection(
        ctx,
        &space,
        &token,
        json!({"kind": "patch", "set": {"a": 1}, "unset": ["a"]}),
        "invalid-mutation",
    )
}

fn increment_range(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    one_rejection(
        ctx,
        &space,
        &token,
        json!({"kind": "increment", "field": "n", "by": 9_007_199_254_740_992u64}),
        "invalid-mutation",
    )
}

fn empty_elements(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    one_rejection(
        ctx,
        &space,
        &token,
        json!({"kind": "set_add", "field": "tags", "elements": []}),
        "invalid-mutation",
    )
}

fn policies_doc() -> Value {
    json!({"collection": "notes", "version": 1, "schema": {"type": "object"},
        "fields": {"likes": {"policy": "counter"}, "tags": {"policy": "add_wins_set"}, "body": {"policy": "keep_both"}}})
}

fn versioned(ctx: &mut Ctx, client: &str, id: &str, at: u64, l: u16, effect: Value) -> Value {
    let op = ctx.op();
    let mut m = mutation(&op, 1, "notes", id, &Ctx::hlc_at(at, l, client), effect);
    m["schema_version"] = json!(1);
    m
}

fn policy_violations(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    register(ctx, &space, &token, &policies_doc())?;
    let at = now_ms() - 1000;
    let cases = [
        (
            json!({"kind": "put", "value": {"likes": 0}}),
            "put of a counter",
        ),
        (
            json!({"kind": "increment", "field": "tags", "by": 1}),
            "increment of a set",
        ),
        (
            json!({"kind": "set_add", "field": "title", "elements": [1]}),
            "set_add on an lww field",
        ),
        (
            json!({"kind": "resolve", "field": "likes", "value": 1}),
            "resolve of a counter",
        ),
    ];
    for (i, (effect, what)) in cases.into_iter().enumerate() {
        let m = versioned(ctx, C, "n1", at, i as u16, effect);
        let r = ctx.push_ok(&space, &token, C, &[m])?;
        check(
            r[0]["problem"]["type"] == "urn:driftless:problem:policy-violation",
            || format!("{what} answered {}", r[0]),
        )?;
    }
    Ok(())
}

fn unschematized_lww(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let at = now_ms() - 1000;
    let (op_a, op_b) = (ctx.op(), ctx.op());
    let value = json!({"title": "Draft", "pinned": true, "nested": {"deep": [1, {"x": null}]}});
    let a = mutation(
        &op_a,
        1,
        "free",
        "r1",
        &Ctx::hlc_at(at, 0, C),
        json!({"kind": "put", "value": value}),
    );
    let b = mutation(
        &op_b,
        1,
        "free",
        "r1",
        &Ctx::hlc_at(at, 1, "cf-client-b"),
        json!({"kind": "patch", "set": {"title": "Final"}}),
    );
    ctx.push_applied(&space, &token, "cf-client-b", &[b])?;
    ctx.push_applied(&space, &token, C, &[a])?;
    let rec = ctx.record(&space, &token, "free", "r1")?;
    let expected = json!({"title": "Final", "pinned": true, "nested": {"deep": [1, {"x": null}]}});
    check(rec.body["value"] == expected, || {
        format!("record is {}", rec.body["value"])
    })
}

fn counter_adds_up(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    register(ctx, &space, &token, &policies_doc())?;
    let at = now_ms() - 1000;
    let a1 = versioned(
        ctx,
        C,
        "n1",
        at,
        0,
        json!({"kind": "increment", "field": "likes", "by": 2}),
    );
    let b1 = versioned(
        ctx,
        "cf-client-b",
        "n1",
        at,
        0,
        json!({"kind": "increment", "field": "likes", "by": 5}),
    );
    let a2 = versioned(
        ctx,
        C,
        "n1",
        at + 1,
        0,
        json!({"kind": "increment", "field": "likes", "by": -1}),
    );
    ctx.push_applied(&space, &token, C, &[a2])?;
    ctx.push_applied(&space, &token, "cf-client-b", &[b1])?;
    ctx.push_applied(&space, &token, C, &[a1])?;
    let rec = ctx.record(&space, &token, "notes", "n1")?;
    check(rec.body["value"]["likes"] == 6, || {
        format!("likes is {}", rec.body["value"]["likes"])
    })
}

fn set_semantics(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    register(ctx, &space, &token, &policies_doc())?;
    let at = now_ms() - 1000;
    let add = versioned(
        ctx,
        C,
        "n1",
        at,
        0,
        json!({"kind": "set_add", "field": "tags", "elements": ["urgent", "home"]}),
    );
    let remove = versioned(
        ctx,
        "cf-client-b",
        "n1",
        at,
        3,
        json!({"kind": "set_remove", "field": "tags", "elements": ["urgent", "work"]}),
    );
    let readd = versioned(
        ctx,
        C,
        "n1",
        at + 1,
        0,
        json!({"kind": "set_add", "field": "tags", "elements": ["urgent"]}),
    );
    let gone = versioned(
        ctx,
        C,
        "n2",
        at,
        0,
        json!({"kind": "set_add", "field": "tags", "elements": ["x"]}),
    );
    let gone_rm = versioned(
        ctx,
        "cf-client-b",
        "n2",
        at,
        5,
        json!({"kind": "set_remove", "field": "tags", "elements": ["x"]}),
    );
    ctx.push_applied(&space, &token, C, &[readd, gone])?;
    ctx.push_applied(&space, &token, "cf-client-b", &[remove, gone_rm])?;
    ctx.push_applied(&space, &token, C, &[add])?;
    let rec = ctx.record(&space, &token, "notes", "n1")?;
    check(
        rec.body["value"]["tags"] == json!(["home", "urgent"]),
        || format!("tags is {}", rec.body["value"]["tags"]),
    )?;
    let rec = ctx.record(&space, &token, "notes", "n2")?;
    check(rec.body["value"]["tags"] == json!([]), || {
        format!(
            "a removed element is still present: {}",
            rec.body["value"]["tags"]
        )
    })
}

fn keep_both_then_resolve(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    register(ctx, &space, &token, &policies_doc())?;
    let at = now_ms() - 1000;
    let a = versioned(
        ctx,
        C,
        "n1",
        at,
        0,
        json!({"kind": "patch", "set": {"body": "Milk"}}),
    );
    let b = versioned(
        ctx,
        "cf-client-b",
        "n1",
        at,
        1,
        json!({"kind": "patch", "set": {"body": "Oat milk"}}),
    );
    ctx.push_applied(&space, &token, "cf-client-b", &[b])?;
    ctx.push_applied(&space, &token, C, &[a])?;
    let rec = ctx.record(&space, &token, "notes", "n1")?;
    ctx.validate("record", &rec.body)?;
    check(
        rec.body["value"]["body"] == "Oat milk"
            && rec.body["conflicts"] == json!({"body": ["Milk", "Oat milk"]}),
        || format!("record is {}", rec.body),
    )?;
    let resolve = versioned(
        ctx,
        C,
        "n1",
        at + 1,
        0,
        json!({"kind": "resolve", "field": "body", "value": "Oat milk, 2 litres"}),
    );
    ctx.push_applied(&space, &token, C, &[resolve])?;
    let rec = ctx.record(&space, &token, "notes", "n1")?;
    check(
        rec.body["value"]["body"] == "Oat milk, 2 litres"
            && rec.body.get("conflicts").is_none_or(Value::is_null),
        || format!("after resolve the record is {}", rec.body),
    )
}

fn policy(field: &str) -> Policy {
    match field {
        "likes" => Policy::Counter,
        "tags" => Policy::AddWinsSet,
        "body" => Policy::KeepBoth,
        _ => Policy::Lww,
    }
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
