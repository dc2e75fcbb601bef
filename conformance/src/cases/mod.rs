//! The cases. Each is named `area.behaviour`, cites the requirement IDs it checks, and runs in a
//! fresh Space. Invalid-input cases are named after the fault they send.

use serde_json::{json, Value};

use crate::client::{check, fail, mutation, now_ms, Ctx};
use crate::{Case, CaseResult, Level, Verdict};

pub(crate) const C: &str = "cf-client-a";

macro_rules! case_entry {
    ($id:literal, [$($req:literal),+], $level:ident, $desc:literal, $f:expr) => {
        Case { id: $id, requirements: &[$($req),+], level: Level::$level, description: $desc, run: $f }
    };
}

/// Every case, in suite order.
pub fn all() -> Vec<Case> {
    vec![
        case_entry!(
            "discovery.shape",
            ["DISC-1", "DISC-2", "LIM-1", "RET-1"],
            Must,
            "discovery needs no token and is a valid discovery document",
            discovery_shape
        ),
        case_entry!(
            "discovery.clock-header",
            ["HTTP-9"],
            Must,
            "every response carries a Driftless-Clock HLC",
            clock_header
        ),
        case_entry!(
            "version.unsupported-major",
            ["VER-3"],
            Must,
            "a major version the server lacks is unsupported-version with supported_versions",
            unsupported_major
        ),
        case_entry!(
            "version.response-header",
            ["VER-4"],
            Must,
            "responses under /v1 carry Driftless-Version",
            version_header
        ),
        case_entry!(
            "http.unknown-path",
            ["HTTP-8"],
            Must,
            "an unknown path is not-found",
            unknown_path
        ),
        case_entry!(
            "http.wrong-method",
            ["HTTP-12"],
            Must,
            "a wrong method is method-not-allowed with Allow",
            wrong_method
        ),
        case_entry!(
            "http.wrong-content-type",
            ["HTTP-2"],
            Must,
            "a non-JSON body is unsupported-media-type",
            wrong_content_type
        ),
        case_entry!(
            "http.malformed-json",
            ["HTTP-5", "ERR-8"],
            Must,
            "malformed JSON is invalid-json and the server keeps serving",
            malformed_json
        ),
        case_entry!(
            "http.invalid-utf8",
            ["HTTP-5"],
            Must,
            "a body that is not UTF-8 is invalid-json",
            invalid_utf8
        ),
        case_entry!(
            "limits.deep-nesting",
            ["LIM-4"],
            Must,
            "a body nested deeper than json_depth_max is invalid-json",
            deep_nesting
        ),
        case_entry!(
            "limits.oversized-body",
            ["LIM-2"],
            Must,
            "a body over body_bytes_max is payload-too-large",
            oversized_body
        ),
        case_entry!(
            "limits.batch-too-large",
            ["PUSH-7", "PUSH-9", "DISC-3"],
            Must,
            "a push over mutations_per_push_max is refused whole",
            batch_too_large
        ),
        case_entry!(
            "push.applies-and-answers-in-order",
            ["PUSH-1", "ORD-1", "HTTP-1", "ORD-2"],
            Must,
            "a push answers one result per mutation, in order",
            push_in_order
        ),
        case_entry!(
            "push.unknown-member",
            ["HTTP-7"],
            Must,
            "an unknown member in a push is invalid-request",
            push_unknown_member
        ),
        case_entry!(
            "push.missing-op-id",
            ["PUSH-6", "PUSH-9"],
            Must,
            "a mutation without a valid op_id fails the request with a pointer",
            push_missing_op_id
        ),
        case_entry!(
            "push.invalid-mutation-alone",
            ["PUSH-4", "PUSH-5", "PUSH-3"],
            Must,
            "one invalid mutation is rejected alone and its rejection is stored",
            invalid_mutation_alone
        ),
        case_entry!(
            "push.number-beyond-double",
            ["PUSH-11", "PUSH-4"],
            Must,
            "a mutation holding 1e400 is invalid-mutation and the rest of the batch applies",
            number_beyond_double
        ),
        case_entry!(
            "push.hlc-node-mismatch",
            ["MUT-1"],
            Must,
            "an hlc whose node is not the client_id is invalid-mutation",
            hlc_node_mismatch
        ),
        case_entry!(
            "idempotency.replay-returns-stored-outcome",
            ["IDEM-2", "IDEM-3"],
            Must,
            "a replay is a duplicate carrying the stored outcome and changes nothing",
            replay_returns_stored_outcome
        ),
        case_entry!(
            "idempotency.op-id-reused",
            ["IDEM-4", "IDEM-5"],
            Must,
            "the same op ID with another body is op-id-reused and the original stays",
            op_id_reused
        ),
        case_entry!(
            "idempotency.increment-replay",
            ["IDEM-3", "MERGE-1"],
            Must,
            "a replayed increment is not applied again",
            increment_replay
        ),
        case_entry!(
            "manifest.fates",
            ["MAN-1", "MAN-2", "MAN-3"],
            Must,
            "the manifest reports applied, rejected and unknown in order, as first sent",
            manifest_fates
        ),
        case_entry!(
            "hlc.clock-skew",
            ["HLC-8"],
            Must,
            "a mutation an hour in the future is rejected as clock-skew",
            clock_skew
        ),
        case_entry!(
            "retention.too-old",
            ["RET-2", "IDEM-7"],
            Must,
            "a mutation older than retention is mutation-too-old",
            too_old
        ),
        case_entry!(
            "merge.lww-order-independent",
            ["MERGE-1", "MERGE-2", "HLC-3", "HLC-2"],
            Must,
            "the greater stamp wins whatever the arrival order",
            lww_order_independent
        ),
        case_entry!(
            "merge.delete-vs-newer-update",
            ["MERGE-4", "MERGE-5"],
            Must,
            "a delete hides older writes and a newer update brings the record back",
            delete_vs_update
        ),
        case_entry!(
            "merge.increment-after-put",
            ["MERGE-6", "MUT-6"],
            Must,
            "increments after a put add to it; earlier ones are superseded",
            increment_after_put
        ),
        case_entry!(
            "pull.pages",
            ["PULL-2", "PULL-4", "PULL-5"],
            Must,
            "pages hold limit records in change_seq order with has_more",
            pull_pages
        ),
        case_entry!(
            "pull.own-writes",
            ["PULL-11", "PULL-12", "PUSH-2"],
            Must,
            "a pull after an acknowledgement reflects the write",
            pull_own_writes
        ),
        case_entry!(
            "pull.invalid-cursor",
            ["PULL-13"],
            Must,
            "a cursor the server did not issue for the space is invalid-cursor",
            pull_invalid_cursor
        ),
        case_entry!(
            "pull.parameter-ranges",
            ["PULL-16"],
            Must,
            "limit and wait_ms out of range are invalid-request",
            pull_parameter_ranges
        ),
        case_entry!(
            "pull.resync-after-compaction",
            [
                "PULL-14", "RET-7", "RET-10", "RET-3", "RET-5", "RET-6", "RET-9", "RET-12",
                "IDEM-8"
            ],
            Must,
            "after compaction an old cursor is cursor-expired and late writes are too old",
            resync_after_compaction
        ),
        case_entry!(
            "record.not-found",
            ["REC-2"],
            Must,
            "a record never written is record-not-found",
            record_not_found
        ),
        case_entry!(
            "integrity.checksums-match-model",
            ["INT-4", "INT-5", "INT-6", "INT-7", "PULL-18", "INT-1", "INT-2", "INT-8", "INT-14"],
            Must,
            "checksums equal the spec's algorithm over the pulled records",
            checksums_match_model
        ),
        case_entry!(
            "auth.missing-token",
            ["AUTH-1", "AUTH-2", "ERR-5"],
            Must,
            "no token is unauthorized with WWW-Authenticate",
            missing_token
        ),
        case_entry!(
            "auth.expired-token",
            ["AUTH-2", "AUTH-3"],
            Must,
            "an expired token is unauthorized",
            expired_token
        ),
        case_entry!(
            "auth.tampered-token",
            ["AUTH-2", "AUTH-7"],
            Must,
            "a changed token is unauthorized",
            tampered_token
        ),
        case_entry!(
            "auth.no-grant-leaks-nothing",
            ["AUTH-4", "AUTH-5"],
            Must,
            "a space without grant is forbidden, identically whether it holds data or not",
            no_grant_leaks_nothing
        ),
        case_entry!(
            "auth.read-cannot-write",
            ["AUTH-4", "AUTH-6"],
            Must,
            "a read token cannot push, and gets forbidden before validation",
            read_cannot_write
        ),
    ]
    .into_iter()
    .chain(crate::more_cases::all())
    .chain(crate::scenarios::all())
    .collect()
}

/// A Mutation of Client C with a fresh Op ID and HLC.
pub(crate) fn fresh(ctx: &mut Ctx, collection: &str, id: &str, effect: Value) -> Value {
    let (op, hlc) = (ctx.op(), ctx.hlc(C));
    mutation(&op, 1, collection, id, &hlc, effect)
}

/// A fresh `put` of Client C in `things`.
pub(crate) fn put(ctx: &mut Ctx, id: &str, value: Value) -> Value {
    fresh(ctx, "things", id, json!({"kind": "put", "value": value}))
}

/// A fresh Space and a Token on it.
pub(crate) fn space(ctx: &mut Ctx, scope: &str) -> Result<(String, String), Verdict> {
    let space = ctx.space();
    let token = ctx.token(&ctx.user(), &space, scope)?;
    Ok((space, token))
}

fn discovery_shape(ctx: &mut Ctx) -> CaseResult {
    let r = ctx.get("/.well-known/driftless", None)?;
    ctx.expect(&r, 200, "discovery")?;
    ctx.validate("discovery", &r.body)?;
    check(
        r.body["protocol_versions"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x == "1.0")),
        || "protocol_versions lacks 1.0".into(),
    )
}

fn clock_header(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    for r in [
        ctx.get("/.well-known/driftless", None)?,
        ctx.get(&format!("/v1/spaces/{space}/pull"), Some(&token))?,
        ctx.get("/v1/nope", None)?,
    ] {
        let h = r.header("driftless-clock").unwrap_or("");
        check(h.parse::<driftless_protocol::hlc::Hlc>().is_ok(), || {
            format!("Driftless-Clock {h:?} is not an HLC (status {})", r.status)
        })?;
    }
    Ok(())
}

fn unsupported_major(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    let r = ctx.request(
        "GET",
        &format!("/v1/spaces/{space}/pull"),
        Some(&token),
        &[("driftless-version", "99.0")],
        None,
    )?;
    ctx.expect_problem(&r, 400, "unsupported-version")?;
    check(r.body["supported_versions"].is_array(), || {
        "unsupported-version lacks supported_versions".into()
    })
}

fn version_header(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    let r = ctx.get(&format!("/v1/spaces/{space}/pull"), Some(&token))?;
    let v = r.header("driftless-version").unwrap_or("");
    check(v.starts_with("1."), || {
        format!("Driftless-Version is {v:?}")
    })
}

fn unknown_path(ctx: &mut Ctx) -> CaseResult {
    let r = ctx.get("/v1/no/such/endpoint", None)?;
    ctx.expect_problem(&r, 404, "not-found")
}

fn wrong_method(ctx: &mut Ctx) -> CaseResult {
    let r = ctx.request("DELETE", "/.well-known/driftless", None, &[], None)?;
    ctx.expect_problem(&r, 405, "method-not-allowed")?;
    check(r.header("allow").is_some_and(|a| a.contains("GET")), || {
        "405 without Allow: GET".into()
    })
}

fn wrong_content_type(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let r = ctx.request(
        "POST",
        &format!("/v1/spaces/{space}/push"),
        Some(&token),
        &[("content-type", "text/plain")],
        Some(b"{}".to_vec()),
    )?;
    ctx.expect_problem(&r, 415, "unsupported-media-type")
}

fn malformed_json(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let r = ctx.push_text(&space, &token, "{\"client_id\":")?;
    ctx.expect_problem(&r, 400, "invalid-json")?;
    let again = ctx.get("/.well-known/driftless", None)?;
    ctx.expect(&again, 200, "discovery after bad input")
}

fn invalid_utf8(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let r = ctx.push_text(&space, &token, vec![b'"', 0xff, 0xfe, b'"'])?;
    ctx.expect_problem(&r, 400, "invalid-json")
}

fn deep_nesting(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let depth = ctx.limit("json_depth_max") as usize + 2;
    let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let r = ctx.push_text(&space, &token, body)?;
    ctx.expect_problem(&r, 400, "invalid-json")
}

fn oversized_body(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let max = ctx.limit("body_bytes_max") as usize;
    if max > 16 * 1024 * 1024 {
        return Err(Verdict::Skip(format!(
            "body_bytes_max {max} is too large to exceed cheaply"
        )));
    }
    let filler = "x".repeat(max + 1);
    let m = put(ctx, "big", json!({ "filler": filler }));
    let body = json!({"client_id": C, "mutations": [m]})
        .to_string()
        .into_bytes();
    let r = ctx.post_oversized(&format!("/v1/spaces/{space}/push"), &token, body)?;
    ctx.expect_problem(&r, 413, "payload-too-large")?;
    let (records, _) = ctx.pull_all(&space, &token, 10)?;
    check(records.is_empty(), || {
        "part of an oversized request was applied".into()
    })
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

fn push_unknown_member(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let r = ctx.send(
        "POST",
        &format!("/v1/spaces/{space}/push"),
        Some(&token),
        &json!({"client_id": C, "mutations": [], "surprise": true}),
    )?;
    ctx.expect_problem(&r, 400, "invalid-request")
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

fn replay_returns_stored_outcome(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let m = put(ctx, "r1", json!({"n": 1}));
    let first = ctx.push_ok(&space, &token, C, std::slice::from_ref(&m))?;
    let (_, before) = ctx.pull_all(&space, &token, 100)?;
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
    })
}

fn op_id_reused(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let m = put(ctx, "r1", json!({"n": 1}));
    ctx.push_ok(&space, &token, C, std::slice::from_ref(&m))?;
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

fn increment_replay(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let inc = fresh(
        ctx,
        "things",
        "c",
        json!({"kind": "increment", "field": "n", "by": 7}),
    );
    for _ in 0..3 {
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
    let results = ctx.push_ok(&space, &token, C, &[applied.clone(), skewed.clone()])?;
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

fn clock_skew(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let op = ctx.op();
    let m = mutation(
        &op,
        1,
        "things",
        "r1",
        &Ctx::hlc_at(now_ms() + 3_600_000, 0, C),
        json!({"kind": "put", "value": {}}),
    );
    let r = ctx.push_ok(&space, &token, C, &[m])?;
    check(
        r[0]["problem"]["type"] == "urn:driftless:problem:clock-skew",
        || format!("answered {}", r[0]),
    )
}

fn too_old(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let retention = ctx.discovery()["retention"]["op_ids_s"]
        .as_u64()
        .unwrap_or(0)
        .min(
            ctx.discovery()["retention"]["history_s"]
                .as_u64()
                .unwrap_or(0),
        );
    let at = now_ms().saturating_sub((retention + 86_400) * 1000);
    let op = ctx.op();
    let m = mutation(
        &op,
        1,
        "things",
        "r1",
        &Ctx::hlc_at(at, 0, C),
        json!({"kind": "put", "value": {}}),
    );
    let r = ctx.push_ok(&space, &token, C, &[m])?;
    check(
        r[0]["problem"]["type"] == "urn:driftless:problem:mutation-too-old",
        || format!("answered {}", r[0]),
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
    let newer = mk(ctx, 7, "cf-client-b", "newer");
    let older = mk(ctx, 3, C, "older");
    ctx.push_ok(&space, &token, "cf-client-b", &[newer])?;
    ctx.push_ok(&space, &token, C, &[older])?;
    let rec = ctx.record(&space, &token, "things", "r1")?;
    check(rec.body["value"]["v"] == "newer", || {
        format!("the older write won: {}", rec.body["value"])
    })
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
    ctx.push_ok(&space, &token, C, &[newer, del, older])?;
    let rec = ctx.record(&space, &token, "things", "r1")?;
    check(
        rec.body["deleted"] == false && rec.body["value"] == json!({"title": "Again"}),
        || format!("record is {}", rec.body),
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
    ctx.push_ok(&space, &token, "cf-client-b", &[after, before])?;
    ctx.push_ok(&space, &token, C, &[put])?;
    let rec = ctx.record(&space, &token, "things", "s")?;
    check(rec.body["value"]["count"] == 14, || {
        format!("count is {} (expected 10 + 4)", rec.body["value"]["count"])
    })
}

fn pull_pages(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let ms: Vec<Value> = (0..7)
        .map(|i| put(ctx, &format!("r{i}"), json!({"i": i})))
        .collect();
    ctx.push_ok(&space, &token, C, &ms)?;
    let r = ctx.get(&format!("/v1/spaces/{space}/pull?limit=3"), Some(&token))?;
    ctx.validate("pull-response", &r.body)?;
    let recs = r.body["records"].as_array().cloned().unwrap_or_default();
    check(recs.len() == 3 && r.body["has_more"] == true, || {
        format!(
            "first page of limit 3 has {} records, has_more {}",
            recs.len(),
            r.body["has_more"]
        )
    })?;
    let seqs: Vec<u64> = recs
        .iter()
        .filter_map(|x| x["change_seq"].as_u64())
        .collect();
    check(seqs.windows(2).all(|w| w[0] < w[1]), || {
        format!("change_seq not ascending: {seqs:?}")
    })?;
    check(r.body["through"].as_u64() == seqs.last().copied(), || {
        "through is not the last record's change_seq".into()
    })?;
    let (all, last) = ctx.pull_all(&space, &token, 3)?;
    check(all.len() == 7, || {
        format!("paging delivered {} of 7 records", all.len())
    })?;
    check(last["has_more"] == false, || {
        "the last page has more".into()
    })
}

fn pull_own_writes(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let m = put(ctx, "mine", json!({"x": 1}));
    let results = ctx.push_ok(&space, &token, C, &[m])?;
    let seq = results[0]["change_seq"].as_u64().unwrap_or(u64::MAX);
    let (records, last) = ctx.pull_all(&space, &token, 100)?;
    check(last["through"].as_u64().is_some_and(|t| t >= seq), || {
        format!(
            "through {} is below the acknowledged change_seq {seq}",
            last["through"]
        )
    })?;
    check(
        records
            .get("things/mine")
            .is_some_and(|r| r["value"] == json!({"x": 1})),
        || "the acknowledged write is missing".into(),
    )
}

fn pull_invalid_cursor(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    let r = ctx.get(
        &format!("/v1/spaces/{space}/pull?cursor=not-a-cursor-at-all"),
        Some(&token),
    )?;
    ctx.expect_problem(&r, 400, "invalid-cursor")?;
    let (other, other_token) = (ctx.space(), String::new());
    let _ = other_token;
    let t2 = ctx.token(&ctx.user(), &other, "read")?;
    let foreign = ctx.get(&format!("/v1/spaces/{other}/pull"), Some(&t2))?;
    let cursor = foreign.body["cursor"].as_str().unwrap_or("").to_owned();
    let r = ctx.get(
        &format!("/v1/spaces/{space}/pull?cursor={cursor}"),
        Some(&token),
    )?;
    ctx.expect_problem(&r, 400, "invalid-cursor")
}

fn pull_parameter_ranges(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    let too_many = ctx.limit("page_records_max") + 1;
    let too_long = ctx.limit("pull_wait_ms_max") + 1;
    for q in [
        "limit=0".to_owned(),
        format!("limit={too_many}"),
        format!("wait_ms={too_long}"),
    ] {
        let r = ctx.get(&format!("/v1/spaces/{space}/pull?{q}"), Some(&token))?;
        ctx.expect_problem(&r, 400, "invalid-request")
            .map_err(|v| match v {
                Verdict::Fail(d) => fail(format!("{q}: {d}")),
                other => other,
            })?;
    }
    Ok(())
}

fn resync_after_compaction(ctx: &mut Ctx) -> CaseResult {
    if !ctx.has_feature("compaction-trigger") {
        return Err(Verdict::Skip(
            "the server does not offer compaction-trigger".into(),
        ));
    }
    let (space, token) = space(ctx, "admin")?;
    let a = put(ctx, "a", json!({}));
    let b = put(ctx, "b", json!({}));
    ctx.push_ok(&space, &token, C, &[a, b.clone()])?;
    let old = ctx
        .get(&format!("/v1/spaces/{space}/pull"), Some(&token))?
        .body["cursor"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let (op, hlc) = (ctx.op(), ctx.hlc(C));
    let deleted = ctx.push_ok(
        &space,
        &token,
        C,
        &[mutation(
            &op,
            3,
            "things",
            "a",
            &hlc,
            json!({"kind": "delete"}),
        )],
    )?;
    let delete_seq = deleted[0]["change_seq"].as_u64().unwrap_or(u64::MAX);
    let sums_before = ctx.get(&format!("/v1/spaces/{space}/checksums"), Some(&token))?;
    let r = ctx.request(
        "POST",
        &format!("/v1/spaces/{space}/compact"),
        Some(&token),
        &[],
        None,
    )?;
    ctx.expect(&r, 200, "compact")?;
    ctx.validate("compaction-response", &r.body)?;
    check(
        r.body["compaction_point"]
            .as_u64()
            .is_some_and(|p| p >= delete_seq),
        || {
            format!("compaction point {} is below the purged tombstone's change_seq {delete_seq} ([RET-12])", r.body["compaction_point"])
        },
    )?;
    let sums_after = ctx.get(&format!("/v1/spaces/{space}/checksums"), Some(&token))?;
    check(
        sums_after.body["space_digest"] == sums_before.body["space_digest"],
        || "compaction changed the existing records' checksums ([RET-6])".into(),
    )?;
    let replay = ctx.push_ok(&space, &token, C, &[b])?;
    check(replay[0]["status"] == "duplicate", || {
        format!("a replay stamped before the horizon answered {} instead of its stored outcome ([IDEM-8], [RET-9])", replay[0])
    })?;
    let again = ctx.request(
        "POST",
        &format!("/v1/spaces/{space}/compact"),
        Some(&token),
        &[],
        None,
    )?;
    ctx.expect(&again, 200, "second compact")?;
    check(
        again.body["compaction_point"].as_u64() >= r.body["compaction_point"].as_u64()
            && again.body["horizon"].as_str() >= r.body["horizon"].as_str(),
        || "a second compaction lowered the horizon or the compaction point ([RET-5])".into(),
    )?;
    let expired = ctx.get(
        &format!("/v1/spaces/{space}/pull?cursor={old}"),
        Some(&token),
    )?;
    ctx.expect_problem(&expired, 410, "cursor-expired")?;
    let (records, _) = ctx.pull_all(&space, &token, 100)?;
    check(
        records.keys().collect::<Vec<_>>() == vec!["things/b"],
        || {
            format!(
                "after resync the space holds {:?}",
                records.keys().collect::<Vec<_>>()
            )
        },
    )?;
    let op = ctx.op();
    let late = mutation(
        &op,
        4,
        "things",
        "a",
        &Ctx::hlc_at(now_ms() - 10_000, 0, C),
        json!({"kind": "patch", "set": {"x": 1}}),
    );
    let results = ctx.push_ok(&space, &token, C, &[late])?;
    check(
        results[0]["problem"]["type"] == "urn:driftless:problem:mutation-too-old",
        || format!("a write stamped before the horizon answered {}", results[0]),
    )
}

fn record_not_found(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    let r = ctx.record(&space, &token, "things", "never")?;
    ctx.expect_problem(&r, 404, "record-not-found")
}

fn checksums_match_model(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let ms: Vec<Value> = (0..30)
        .map(|i| {
            put(
                ctx,
                &format!("r{i}"),
                json!({"i": i, "f": 0.5, "whole": 1.0, "big": 1e21, "s": "é\n"}),
            )
        })
        .collect();
    ctx.push_ok(&space, &token, C, &ms)?;
    let (records, last) = ctx.pull_all(&space, &token, 100)?;
    let mut model = driftless_protocol::checksum::SpaceChecksums::default();
    for rec in records.values().filter(|r| r["deleted"] == false) {
        let (c, id) = (
            rec["collection"].as_str().unwrap_or(""),
            rec["id"].as_str().unwrap_or(""),
        );
        let value = rec["value"].as_object().cloned().unwrap_or_default();
        let digest = driftless_protocol::checksum::to_hex(
            &driftless_protocol::checksum::record_digest(c, id, &value),
        );
        check(rec["digest"] == digest.as_str(), || {
            format!(
                "{c}/{id} digest {} differs from the spec's {digest}",
                rec["digest"]
            )
        })?;
        model.add(c, id, &value);
    }
    let r = ctx.get(&format!("/v1/spaces/{space}/checksums"), Some(&token))?;
    ctx.expect(&r, 200, "checksums")?;
    ctx.validate("checksums-response", &r.body)?;
    check(r.body["through"] == last["through"], || {
        "checksums and pull disagree on through".into()
    })?;
    let expected = driftless_protocol::checksum::to_hex(&model.space_digest());
    check(r.body["space_digest"] == expected.as_str(), || {
        format!(
            "space_digest {} differs from the model's {expected}",
            r.body["space_digest"]
        )
    })
}

fn missing_token(ctx: &mut Ctx) -> CaseResult {
    let space = ctx.space();
    let r = ctx.get(&format!("/v1/spaces/{space}/pull"), None)?;
    ctx.expect_problem(&r, 401, "unauthorized")?;
    check(
        r.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer")),
        || "401 without WWW-Authenticate: Bearer".into(),
    )
}

fn expired_token(ctx: &mut Ctx) -> CaseResult {
    let space = ctx.space();
    let token = ctx.token_ttl(&ctx.user(), &space, "read", -60)?;
    let r = ctx.get(&format!("/v1/spaces/{space}/pull"), Some(&token))?;
    ctx.expect_problem(&r, 401, "unauthorized")
}

fn tampered_token(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    let mut bytes = token.into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8_lossy(&bytes).into_owned();
    let r = ctx.get(&format!("/v1/spaces/{space}/pull"), Some(&tampered))?;
    ctx.expect_problem(&r, 401, "unauthorized")
}

fn no_grant_leaks_nothing(ctx: &mut Ctx) -> CaseResult {
    let (full, owner) = space(ctx, "write")?;
    let m = put(ctx, "secret", json!({"s": 1}));
    ctx.push_ok(&full, &owner, C, &[m])?;
    let empty = ctx.space();
    let (mine, stranger) = space(ctx, "admin")?;
    let _ = mine;
    let a = ctx.get(&format!("/v1/spaces/{full}/checksums"), Some(&stranger))?;
    let b = ctx.get(&format!("/v1/spaces/{empty}/checksums"), Some(&stranger))?;
    ctx.expect_problem(&a, 403, "forbidden")?;
    ctx.expect_problem(&b, 403, "forbidden")?;
    let strip = |s: &str, space: &str| s.replace(space, "SPACE");
    check(strip(&a.text, &full) == strip(&b.text, &empty), || {
        format!("the answers differ: {} vs {}", a.text, b.text)
    })
}

fn read_cannot_write(ctx: &mut Ctx) -> CaseResult {
    let (space, reader) = space(ctx, "read")?;
    let r = ctx.send(
        "POST",
        &format!("/v1/spaces/{space}/push"),
        Some(&reader),
        &json!({"garbage": true}),
    )?;
    ctx.expect_problem(&r, 403, "forbidden")
}
