//! Cases of spec chapter 04, Push, idempotency and the manifest
//! (`spec/04-push-and-idempotency.md`): ordered results, a request refused whole against one
//! mutation rejected alone, replays and reused Op IDs, the manifest, and an acknowledgement lost by
//! the fault-injecting proxy.
//!
//! Requirement IDs its cases check: `[DISC-3]`, `[HTTP-1]`, `[IDEM-2]`, `[IDEM-3]`, `[IDEM-4]`,
//! `[IDEM-5]`, `[MAN-1]`, `[MAN-2]`, `[MAN-3]`, `[MAN-4]`, `[MERGE-1]`, `[ORD-1]`, `[ORD-2]`,
//! `[HTTP-15]`, `[PUSH-1]`, `[PUSH-3]`, `[PUSH-4]`, `[PUSH-5]`, `[PUSH-6]`, `[PUSH-7]`, `[PUSH-9]`, `[PUSH-11]`, `[PUSH-15]`, `[PUSH-16]`.

use serde_json::{json, Value};

use super::support::{case, fresh, push_via, put, register, space, task, v1_tasks, v2_tasks, C};
use crate::client::{check, mutation, now_ms, Ctx};
use crate::proxy::{FaultRates, Proxy};
use crate::Level::Must;
use crate::{Case, CaseResult, Verdict};

/// The cases of this chapter, in suite order.
pub fn cases() -> Vec<Case> {
    vec![
        case(
            "limits.batch-too-large",
            &["PUSH-7", "PUSH-9", "DISC-3"],
            Must,
            "a push over mutations_per_push_max is refused whole",
            batch_too_large,
        ),
        case(
            "push.applies-and-answers-in-order",
            &["PUSH-1", "ORD-1", "HTTP-1", "ORD-2"],
            Must,
            "a push answers one result per mutation, in order",
            push_in_order,
        ),
        case(
            "push.missing-op-id",
            &["PUSH-6", "PUSH-9"],
            Must,
            "a mutation without a valid op_id fails the request with a pointer",
            push_missing_op_id,
        ),
        case(
            "push.invalid-mutation-alone",
            &["PUSH-4", "PUSH-5", "PUSH-3"],
            Must,
            "one invalid mutation is rejected alone and its rejection is stored",
            invalid_mutation_alone,
        ),
        case(
            "push.unknown-member-in-mutation",
            &["HTTP-15", "PUSH-5"],
            Must,
            "an unknown member inside a mutation rejects that mutation alone, not the push",
            unknown_member_in_mutation,
        ),
        case(
            "push.change-seq-of-a-noop",
            &["PUSH-15", "PULL-19", "PULL-12"],
            Must,
            "a mutation that changes no record takes no change_seq: it reports the space's position",
            change_seq_of_a_noop,
        ),
        case(
            "push.number-beyond-double",
            &["PUSH-11", "PUSH-4"],
            Must,
            "a mutation holding 1e400 is invalid-mutation and the rest of the batch applies",
            number_beyond_double,
        ),
        case(
            "push.check-order",
            &["PUSH-13"],
            Must,
            "a mutation breaking several rules is rejected with the first in the spec's order",
            mutation_check_order,
        ),
        case(
            "push.not-i-json",
            &["PUSH-14", "PUSH-4"],
            Must,
            "a mutation with a duplicate member name or a lone surrogate is invalid-mutation alone",
            not_i_json,
        ),
        case(
            "push.inexact-number",
            &["PUSH-12", "PUSH-4"],
            Must,
            "a number a double cannot hold exactly is invalid-mutation alone; exact ones keep their value",
            inexact_number,
        ),
        case(
            "idempotency.replay-returns-stored-outcome",
            &["IDEM-2", "IDEM-3"],
            Must,
            "a replay is a duplicate carrying the stored outcome and changes nothing",
            replay_returns_stored_outcome,
        ),
        case(
            "idempotency.op-id-reused",
            &["IDEM-4", "IDEM-5"],
            Must,
            "the same op ID with another body is op-id-reused and the original stays",
            op_id_reused,
        ),
        case(
            "idempotency.concurrent-replay",
            &["IDEM-2", "IDEM-3"],
            Must,
            "one push sent on eight connections at once is applied exactly once",
            concurrent_replay,
        ),
        case(
            "idempotency.increment-replay",
            &["IDEM-3", "MERGE-1"],
            Must,
            "a replayed increment is not applied again",
            increment_replay,
        ),
        case(
            "manifest.fates",
            &["MAN-1", "MAN-2", "MAN-3"],
            Must,
            "the manifest reports applied, rejected and unknown in order, as first sent",
            manifest_fates,
        ),
        case(
            "limits.batch-size-first",
            &["PUSH-16"],
            Must,
            "an oversized push or manifest is batch-too-large even when its members are invalid too",
            batch_size_first,
        ),
        case(
            "manifest.too-many",
            &["MAN-4"],
            Must,
            "a manifest over op_ids_per_manifest_max is batch-too-large",
            manifest_too_many,
        ),
        case(
            "idempotency.lost-ack-then-retry",
            &["IDEM-2", "IDEM-3", "MAN-2"],
            Must,
            "a push whose response is lost was applied once; the manifest and a retry say so",
            lost_ack_then_retry,
        ),
    ]
}

fn batch_too_large(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let n = ctx.limit("mutations_per_push_max") as usize + 1;
    let ms: Vec<Value> = (0..n)
        .map(|i| put(ctx, &format!("r{i}"), json!({})))
        .collect();
    let r = ctx.push(&space, &token, C, &ms)?;
    ctx.expect_problem(&r, 413, "batch-too-large")?;
    let (records, _) = ctx.pull_all(&space, &token, 100)?;
    check(records.is_empty(), || {
        format!("{} records of a refused batch were applied", records.len())
    })?;
    // Exactly at the announced limit, the same batch is accepted ([DISC-3]).
    let results = ctx.push_ok(&space, &token, C, &ms[..n - 1])?;
    check(results.iter().all(|r| r["status"] == "applied"), || {
        "a batch at the announced limit was not applied".into()
    })
}

fn push_in_order(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let ms: Vec<Value> = (0..5)
        .map(|i| put(ctx, &format!("r{i}"), json!({"i": i})))
        .collect();
    let results = ctx.push_ok(&space, &token, C, &ms)?;
    for (m, r) in ms.iter().zip(&results) {
        check(r["op_id"] == m["op_id"] && r["status"] == "applied", || {
            format!("result {r} does not answer {}", m["op_id"])
        })?;
    }
    Ok(())
}

fn push_missing_op_id(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let good = put(ctx, "ok", json!({}));
    let r = ctx.send(
        "POST",
        &format!("/v1/spaces/{space}/push"),
        Some(&token),
        &json!({"client_id": C, "mutations": [good, {"seq": 2}]}),
    )?;
    ctx.expect_problem(&r, 400, "invalid-request")?;
    let pointers: Vec<&str> = r.body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["pointer"].as_str())
        .collect();
    check(pointers.contains(&"/mutations/1/op_id"), || {
        format!("errors lack /mutations/1/op_id: {pointers:?}")
    })?;
    let (records, _) = ctx.pull_all(&space, &token, 100)?;
    check(records.is_empty(), || {
        "a mutation of a refused request was applied".into()
    })
}

fn invalid_mutation_alone(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let bad = fresh(ctx, "things", "r1", json!({"kind": "no-such-kind"}));
    let good = put(ctx, "r2", json!({}));
    let results = ctx.push_ok(&space, &token, C, &[bad.clone(), good])?;
    check(
        results[0]["status"] == "rejected"
            && results[0]["problem"]["type"] == "urn:driftless:problem:invalid-mutation",
        || format!("bad mutation answered {}", results[0]),
    )?;
    check(results[1]["status"] == "applied", || {
        format!("good mutation answered {}", results[1])
    })?;
    let replay = ctx.push_ok(&space, &token, C, &[bad])?;
    check(
        replay[0]["status"] == "duplicate" && replay[0]["original"] == results[0],
        || format!("a replayed rejection answered {}", replay[0]),
    )
}

fn unknown_member_in_mutation(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let mut odd = put(ctx, "r1", json!({}));
    odd["surprise"] = json!(true);
    let good = put(ctx, "r2", json!({}));
    let results = ctx.push_ok(&space, &token, C, &[odd, good])?;
    check(
        results[0]["status"] == "rejected"
            && results[0]["problem"]["type"] == "urn:driftless:problem:invalid-mutation",
        || {
            format!(
                "the mutation with an unknown member answered {}",
                results[0]
            )
        },
    )?;
    check(results[1]["status"] == "applied", || {
        format!("the valid mutation beside it answered {}", results[1])
    })
}

/// A `patch` under `tasks` version 1 of `color`, which version 2 removes (`[EVO-5]`).
fn patch_of_removed_field(ctx: &mut Ctx, id: &str) -> Value {
    task(
        ctx,
        id,
        1,
        json!({"kind": "patch", "set": {"color": "blue"}}),
    )
}

fn change_seq_of_a_noop(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    register(ctx, &space, &token, &v1_tasks())?;
    register(ctx, &space, &token, &v2_tasks())?;
    // Before the Space's first change its position is 0.
    let first = patch_of_removed_field(ctx, "t0");
    let r = ctx.push_applied(&space, &token, C, &[first])?;
    check(r[0]["change_seq"] == 0, || {
        format!("a no-op in a space without changes answered {}", r[0])
    })?;
    let seed = task(
        ctx,
        "t1",
        2,
        json!({"kind": "put", "value": {"title": "x"}}),
    );
    let seeded = ctx.push_applied(&space, &token, C, &[seed])?;
    let (_, last) = ctx.pull_all(&space, &token, 100)?;
    let cursor = last["cursor"].as_str().unwrap_or("").to_owned();
    let noop = patch_of_removed_field(ctx, "t1");
    let r = ctx.push_applied(&space, &token, C, &[noop])?;
    check(r[0]["change_seq"] == seeded[0]["change_seq"], || {
        format!(
            "a no-op after the change {} answered {}: no record carries a new change_seq",
            seeded[0]["change_seq"], r[0]
        )
    })?;
    let page = ctx.get(
        &format!("/v1/spaces/{space}/pull?cursor={cursor}"),
        Some(&token),
    )?;
    ctx.expect(&page, 200, "pull after the no-op")?;
    check(
        page.body["records"] == json!([])
            && page.body["has_more"] == false
            && page.body["through"] == seeded[0]["change_seq"],
        || format!("the pull after the no-op answered {}", page.text),
    )
}

fn number_beyond_double(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let huge = put(ctx, "r1", json!({"n": 7})).to_string();
    let huge = huge.replace("\"n\":7", "\"n\":1e400");
    check(huge.contains("1e400"), || format!("could not build {huge}"))?;
    let good = put(ctx, "r2", json!({}));
    let body = format!("{{\"client_id\":\"{C}\",\"mutations\":[{huge},{good}]}}");
    let r = ctx.push_text(&space, &token, body)?;
    ctx.expect(&r, 200, "push")?;
    let results = &r.body["results"];
    check(
        results[0]["problem"]["type"] == "urn:driftless:problem:invalid-mutation",
        || format!("the mutation holding 1e400 answered {}", results[0]),
    )?;
    check(results[1]["status"] == "applied", || {
        format!("the good mutation beside it answered {}", results[1])
    })
}

/// `[PUSH-13]`: each Mutation breaks two per-Mutation rules; the Problem must be the earlier
/// step's.
fn mutation_check_order(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let ancient = Ctx::hlc_at(1, 0, C); // older than any retention
    let ahead = Ctx::hlc_at(now_ms() + 3_600_000, 0, C); // far beyond any skew bound
    let with = |ctx: &mut Ctx, id: &str, hlc: &str, version: Option<u32>| {
        let op = ctx.op();
        let mut m = mutation(
            &op,
            1,
            "things",
            id,
            hlc,
            json!({"kind": "put", "value": {}}),
        );
        if let Some(v) = version {
            m["schema_version"] = json!(v);
        }
        m
    };
    let stranger = Ctx::hlc_at(1, 0, "someone-else");
    let cases = [
        (
            "a foreign node and an ancient HLC",
            with(ctx, "r1", &stranger, None),
            "invalid-mutation",
        ),
        (
            "an ancient HLC and an unknown schema version",
            with(ctx, "r2", &ancient, Some(99)),
            "mutation-too-old",
        ),
        (
            "a skewed HLC and an unknown schema version",
            with(ctx, "r3", &ahead, Some(99)),
            "clock-skew",
        ),
    ];
    let mutations: Vec<Value> = cases.iter().map(|(_, m, _)| m.clone()).collect();
    let r = ctx.push(&space, &token, C, &mutations)?;
    ctx.expect(&r, 200, "push")?;
    for (i, (what, _, code)) in cases.iter().enumerate() {
        let result = &r.body["results"][i];
        let expected = format!("urn:driftless:problem:{code}");
        check(result["problem"]["type"] == expected.as_str(), || {
            format!("{what}: expected {code}, got {result}")
        })?;
    }
    Ok(())
}

/// `[PUSH-14]`: the texts are written by hand (a JSON library would never produce them).
fn not_i_json(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let spell = |ctx: &mut Ctx, id: &str, inner: &str| -> Result<String, Verdict> {
        let text = put(ctx, id, json!({"n": 7})).to_string();
        let text = text.replace("{\"n\":7}", inner);
        check(text.contains(inner), || format!("could not build {text}"))?;
        Ok(text)
    };
    let duplicate = spell(ctx, "dup", r#"{"n":1,"n":2}"#)?;
    let escaped = spell(ctx, "esc", r#"{"n":1,"\u006e":2}"#)?;
    let surrogate = spell(ctx, "sur", r#"{"s":"\ud800"}"#)?;
    let good = put(ctx, "good", json!({"n": 1})).to_string();
    let body = format!(
        "{{\"client_id\":\"{C}\",\"mutations\":[{duplicate},{escaped},{surrogate},{good}]}}"
    );
    let r = ctx.push_text(&space, &token, body)?;
    ctx.expect(
        &r,
        200,
        "push (one mutation's text must not fail the request: [PUSH-4])",
    )?;
    let results = &r.body["results"];
    for (i, what) in [
        "a member twice",
        "a member twice, once escaped",
        "a lone surrogate",
    ]
    .iter()
    .enumerate()
    {
        check(
            results[i]["problem"]["type"] == "urn:driftless:problem:invalid-mutation",
            || format!("the mutation holding {what} answered {}", results[i]),
        )?;
    }
    check(results[3]["status"] == "applied", || {
        format!("the good mutation beside them answered {}", results[3])
    })
}

/// `[PUSH-12]`: the literal is written into the push text (a JSON library would round it first).
fn inexact_number(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let with = |ctx: &mut Ctx, id: &str, literal: &str| -> Result<String, Verdict> {
        let text = put(ctx, id, json!({"n": 7})).to_string();
        let text = text.replace("\"n\":7", &format!("\"n\":{literal}"));
        check(text.contains(literal), || format!("could not build {text}"))?;
        Ok(text)
    };
    let inexact = [
        "9007199254740993",
        "18446744073709551616",
        "1.00000000000000000001",
    ];
    let exact = [
        ("1e20", 1e20),
        ("0.1", 0.1),
        ("9007199254740992", 9_007_199_254_740_992.0),
    ];
    let mut texts = Vec::new();
    for (i, literal) in inexact.iter().enumerate() {
        texts.push(with(ctx, &format!("bad{i}"), literal)?);
    }
    for (i, (literal, _)) in exact.iter().enumerate() {
        texts.push(with(ctx, &format!("good{i}"), literal)?);
    }
    let body = format!(
        "{{\"client_id\":\"{C}\",\"mutations\":[{}]}}",
        texts.join(",")
    );
    let r = ctx.push_text(&space, &token, body)?;
    ctx.expect(&r, 200, "push")?;
    let results = &r.body["results"];
    for (i, literal) in inexact.iter().enumerate() {
        check(
            results[i]["problem"]["type"] == "urn:driftless:problem:invalid-mutation",
            || format!("the mutation holding {literal} answered {}", results[i]),
        )?;
    }
    for (i, (literal, value)) in exact.iter().enumerate() {
        let at = inexact.len() + i;
        if results[at]["status"] != "applied" {
            return Err(Verdict::Error(format!(
                "precondition: the mutation holding {literal} was not applied: {}",
                results[at]
            )));
        }
        let got = ctx.record(&space, &token, "things", &format!("good{i}"))?;
        ctx.expect(&got, 200, "the record of an applied mutation")?;
        let n = got.body["value"]["n"].as_f64();
        check(n == Some(*value), || {
            format!(
                "{literal} was stored as {} ([PUSH-12]: never another value)",
                got.body["value"]["n"]
            )
        })?;
    }
    for i in 0..inexact.len() {
        let r = ctx.record(&space, &token, "things", &format!("bad{i}"))?;
        ctx.expect(&r, 404, "a rejected mutation creates no record")?;
    }
    Ok(())
}

fn replay_returns_stored_outcome(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let m = put(ctx, "r1", json!({"n": 1}));
    let first = ctx.push_applied(&space, &token, C, std::slice::from_ref(&m))?;
    let (_, before) = ctx.pull_all(&space, &token, 100)?;
    let record_before = ctx.record(&space, &token, "things", "r1")?;
    ctx.expect(&record_before, 200, "the record the first push applied")?;
    let again = ctx.push_ok(&space, &token, C, &[m])?;
    check(again[0]["status"] == "duplicate", || {
        format!("a replay answered {}", again[0])
    })?;
    check(again[0]["original"] == first[0], || {
        format!(
            "original {} differs from the first answer {}",
            again[0]["original"], first[0]
        )
    })?;
    let (_, after) = ctx.pull_all(&space, &token, 100)?;
    check(after["through"] == before["through"], || {
        "a duplicate changed the space's change sequence".into()
    })?;
    let record_after = ctx.record(&space, &token, "things", "r1")?;
    check(
        record_after.body["value"] == json!({"n": 1})
            && record_after.body["change_seq"] == record_before.body["change_seq"],
        || {
            format!(
                "the record was {} before the replay and {} after it",
                record_before.text, record_after.text
            )
        },
    )
}

fn op_id_reused(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let m = put(ctx, "r1", json!({"n": 1}));
    ctx.push_applied(&space, &token, C, std::slice::from_ref(&m))?;
    // Equal means equal canonical JSON ([IDEM-5]), not equal bytes: the same body with its
    // members in reverse order, other whitespace and `1.0` for `1` is a duplicate.
    let respelled = respell(&m).replace("\"n\" : 1 }", "\"n\" : 1.0 }");
    check(respelled.contains("1.0"), || {
        format!("the respelled body lost its number: {respelled}")
    })?;
    let body = format!("{{ \"mutations\" : [ {respelled} ] , \"client_id\" : \"{C}\" }}");
    let r = ctx.push_text(&space, &token, body)?;
    ctx.expect(&r, 200, "push")?;
    check(r.body["results"][0]["status"] == "duplicate", || {
        format!(
            "the same mutation in other bytes ({respelled}) answered {}",
            r.body["results"][0]
        )
    })?;
    let mut other = m.clone();
    other["effect"]["value"]["n"] = json!(2);
    let r = ctx.push_ok(&space, &token, C, &[other])?;
    check(
        r[0]["status"] == "rejected"
            && r[0]["problem"]["type"] == "urn:driftless:problem:op-id-reused",
        || format!("answered {}", r[0]),
    )?;
    check(r[0]["problem"]["status"] == 422, || {
        "op-id-reused status is not 422".into()
    })?;
    let rec = ctx.record(&space, &token, "things", "r1")?;
    check(rec.body["value"] == json!({"n": 1}), || {
        format!("the record became {}", rec.body["value"])
    })
}

/// `v` as JSON text with every object's members in reverse order and spaces around every
/// separator: other bytes, the same canonical JSON.
fn respell(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let members: Vec<String> = map
                .iter()
                .rev()
                .map(|(k, x)| format!("{} : {}", Value::from(k.as_str()), respell(x)))
                .collect();
            format!("{{ {} }}", members.join(" , "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(respell).collect();
            format!("[ {} ]", items.join(" , "))
        }
        other => other.to_string(),
    }
}

/// A Server whose dedup lookup and write are not one atomic step applies a push twice when its
/// copies arrive together (a client retrying on a second connection while the first is slow).
fn concurrent_replay(ctx: &mut Ctx) -> CaseResult {
    const COPIES: usize = 8;
    let (space, token) = space(ctx, "write")?;
    let inc = fresh(
        ctx,
        "things",
        "c",
        json!({"kind": "increment", "field": "n", "by": 5}),
    );
    let body = json!({"client_id": C, "mutations": [inc]});
    let answers =
        ctx.post_concurrently(&format!("/v1/spaces/{space}/push"), &token, &body, COPIES)?;
    let mut applied = 0;
    for (status, reply) in &answers {
        check(*status == 200, || {
            format!("a concurrent copy answered {status}: {reply}")
        })?;
        let result = &reply["results"][0];
        match result["status"].as_str() {
            Some("applied") => applied += 1,
            Some("duplicate") => check(result["original"]["status"] == "applied", || {
                format!("a duplicate must carry the applied original: {result}")
            })?,
            _ => {
                return Err(Verdict::Error(format!(
                "precondition: a copy of the increment was neither applied nor duplicate: {result}"
            )))
            }
        }
    }
    check(applied == 1, || {
        format!(
            "{applied} of {COPIES} concurrent copies of one push were applied; exactly one must be"
        )
    })?;
    let rec = ctx.record(&space, &token, "things", "c")?;
    ctx.expect(&rec, 200, "the record")?;
    check(rec.body["value"]["n"] == 5, || {
        format!(
            "after {COPIES} concurrent copies of one increment by 5 the value is {}",
            rec.body["value"]["n"]
        )
    })
}

fn increment_replay(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let inc = fresh(
        ctx,
        "things",
        "c",
        json!({"kind": "increment", "field": "n", "by": 7}),
    );
    ctx.push_applied(&space, &token, C, std::slice::from_ref(&inc))?;
    for _ in 0..2 {
        ctx.push_ok(&space, &token, C, std::slice::from_ref(&inc))?;
    }
    let rec = ctx.record(&space, &token, "things", "c")?;
    check(rec.body["value"]["n"] == 7, || {
        format!(
            "after three deliveries of one increment by 7 the value is {}",
            rec.body["value"]["n"]
        )
    })
}

fn manifest_fates(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let applied = put(ctx, "r1", json!({}));
    let op = ctx.op();
    let skewed = mutation(
        &op,
        2,
        "things",
        "r1",
        &Ctx::hlc_at(now_ms() + 3_600_000, 0, C),
        json!({"kind": "delete"}),
    );
    let results = ctx.push_expect(
        &space,
        &token,
        C,
        &[applied.clone(), skewed.clone()],
        &["applied", "rejected"],
    )?;
    let unknown = ctx.op();
    let r = ctx.send(
        "POST",
        &format!("/v1/spaces/{space}/manifest"),
        Some(&token),
        &json!({"op_ids": [unknown, applied["op_id"], skewed["op_id"]]}),
    )?;
    ctx.expect(&r, 200, "manifest")?;
    ctx.validate("manifest-response", &r.body)?;
    let e = &r.body["entries"];
    check(
        e[0] == json!({"status": "unknown", "op_id": unknown}),
        || format!("unknown op answered {}", e[0]),
    )?;
    check(e[1] == results[0], || {
        format!("applied op answered {} but push said {}", e[1], results[0])
    })?;
    check(e[2] == results[1], || {
        format!("rejected op answered {} but push said {}", e[2], results[1])
    })
}

fn batch_size_first(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    // Every element lacks a valid Op ID and the body has an unknown member: the count decides.
    let n = ctx.limit("mutations_per_push_max") as usize + 1;
    let r = ctx.send(
        "POST",
        &format!("/v1/spaces/{space}/push"),
        Some(&token),
        &json!({"client_id": C, "mutations": vec![json!({}); n], "surprise": true}),
    )?;
    ctx.expect_problem(&r, 413, "batch-too-large")?;
    let n = ctx.limit("op_ids_per_manifest_max") as usize + 1;
    let r = ctx.send(
        "POST",
        &format!("/v1/spaces/{space}/manifest"),
        Some(&token),
        &json!({"op_ids": vec!["?"; n], "surprise": true}),
    )?;
    ctx.expect_problem(&r, 413, "batch-too-large")
}

fn manifest_too_many(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let n = ctx.limit("op_ids_per_manifest_max") as usize + 1;
    let ids: Vec<String> = (0..n).map(|_| ctx.op()).collect();
    let r = ctx.send(
        "POST",
        &format!("/v1/spaces/{space}/manifest"),
        Some(&token),
        &json!({"op_ids": ids}),
    )?;
    ctx.expect_problem(&r, 413, "batch-too-large")
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
