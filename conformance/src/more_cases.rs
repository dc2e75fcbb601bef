//! The second group of cases: effects, policies, collection schemas, audit, buckets, tombstones,
//! long-poll, paging under writes and rate limits.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::cases::{fresh, put, space, C};
use crate::client::{check, fail, mutation, now_ms, Ctx};
use crate::{Case, CaseResult, Level, Verdict};

fn c(
    id: &'static str,
    requirements: &'static [&'static str],
    level: Level,
    description: &'static str,
    run: fn(&mut Ctx) -> CaseResult,
) -> Case {
    Case {
        id,
        requirements,
        level,
        description,
        run,
    }
}

/// The cases of this group, in suite order.
pub fn all() -> Vec<Case> {
    use Level::{Must, Should};
    vec![
        c("auth.admin-only-endpoints", &["AUTH-4"], Must, "history, schema registration and compaction need admin", admin_only),
        c("http.problem-shape", &["ERR-1", "ERR-2", "ERR-3", "HTTP-4", "HTTP-3"], Must, "errors are problem+json with type, title and status; successes are JSON", problem_shape),
        c("effect.invalid-field-name", &["MUT-4", "MUT-3"], Must, "a put naming an invalid field is invalid-mutation", invalid_field_name),
        c("effect.empty-patch", &["MUT-5"], Must, "a patch naming no field, or one field both set and unset, is invalid-mutation", empty_patch),
        c("effect.increment-range", &["MUT-6"], Must, "an increment beyond the safe integers is invalid-mutation", increment_range),
        c("effect.empty-elements", &["MUT-7"], Must, "set_add with no elements is invalid-mutation", empty_elements),
        c("policy.violations", &["MUT-8", "MUT-9", "MUT-10", "MUT-11"], Must, "effects a field's policy forbids are policy-violation", policy_violations),
        c("merge.unschematized-lww", &["MERGE-9"], Must, "a collection without schema takes any object and merges field by field", unschematized_lww),
        c("merge.counter-adds-up", &["MERGE-1", "MERGE-2"], Must, "concurrent counter increments add up in any order", counter_adds_up),
        c("merge.set-latest-add-wins", &["MERGE-1", "MERGE-2"], Must, "a set element is present when its latest add is newer than its latest remove", set_semantics),
        c("merge.keep-both-then-resolve", &["MERGE-7", "MERGE-8"], Must, "concurrent keep_both writes are siblings until a resolve", keep_both_then_resolve),
        c("schema.register-and-list", &["SCHEMA-2", "SCHEMA-3", "SCHEMA-8"], Must, "a version registers with 201, again with 200, and lists as registered", schema_register_and_list),
        c("schema.conflict-and-gap", &["SCHEMA-4", "SCHEMA-5", "SCHEMA-1"], Must, "a changed version conflicts, a skipped version is a gap, a path mismatch is invalid", schema_conflict_and_gap),
        c("schema.invalid-documents", &["SCHEMA-6", "EVO-12"], Must, "non-object schemas, required counters, v1 migrations and policy changes are invalid-schema", schema_invalid),
        c("schema.upcast-and-unknown-fields", &["EVO-2", "EVO-4", "EVO-8", "EVO-9", "SCHEMA-7", "SCHEMA-9"], Must, "old writes are upcast, defaults served, unknown fields kept, records re-sequenced", schema_upcast),
        c("schema.violations", &["EVO-6", "EVO-7"], Must, "values that break the latest schema are schema-violation", schema_violations),
        c("schema.unknown-version", &["EVO-3"], Must, "an unregistered schema_version is unknown-schema-version", schema_unknown_version),
        c("schema.removed-field-is-noop", &["EVO-5"], Must, "a write to a removed field is applied without changing the record", schema_removed_field),
        c("audit.history", &["AUDIT-1", "AUDIT-2", "AUDIT-3", "AUDIT-5", "AUTH-10"], Must, "history lists applied and rejected mutations with user and client, without values or duplicates", audit_history),
        c("integrity.bucket-repair", &["INT-10", "INT-11", "INT-12"], Must, "bucket pages hold exactly the bucket's records, and bucket 64 is invalid", bucket_repair),
        c("record.tombstone", &["REC-1", "PULL-7"], Must, "a deleted record reads and pulls as a tombstone without value", tombstone),
        c("pull.long-poll", &["PULL-8", "PULL-9"], Must, "a held pull answers when a change arrives", long_poll),
        c("pull.empty-page-position", &["PULL-10"], Must, "an empty page keeps the request's position", empty_page_position),
        c("pull.consistent-under-writes", &["PULL-3", "PULL-6"], Must, "paging while records change ends with exactly the space's state", pull_consistent_under_writes),
        c("limits.rate-limited", &["LIM-5"], Should, "a burst from one user is eventually rate-limited", rate_limited),
        c("limits.retry-after", &["ERR-4", "LIM-6"], Must, "429 carries Retry-After and applies nothing", retry_after),
        c("http.wrong-shape", &["HTTP-6"], Must, "valid JSON of the wrong shape is invalid-request", wrong_shape),
        c("discovery.features-truthful", &["DISC-4", "DISC-7", "RET-11"], Must, "compaction works exactly when compaction-trigger is listed", features_truthful),
        c("version.absent-header", &["VER-6"], Must, "a request without Driftless-Version is served as 1.0", absent_version),
        c("id.invalid-path-identifier", &["ID-1"], Must, "an invalid collection or record ID in a path is invalid-request", invalid_path_identifier),
        c("id.spaces-are-implicit", &["ID-6"], Must, "a space never written pulls as empty", spaces_are_implicit),
        c("hlc.malformed", &["HLC-1"], Must, "a malformed hlc is invalid-mutation", malformed_hlc),
        c("hlc.server-clock-merges", &["HLC-11", "HLC-6", "HLC-7"], Must, "the server clock moves past applied mutations and never goes back", server_clock_merges),
        c("manifest.too-many", &["MAN-4"], Must, "a manifest over op_ids_per_manifest_max is batch-too-large", manifest_too_many),
        c("errors.detail-without-values", &["ERR-9"], Must, "problem details never echo record values", detail_without_values),
    ]
}

/// Server-side MUSTs that a black-box suite cannot check, and why. The reference server covers
/// each in its own tests; a test keeps this list and the cases in step with the spec.
pub const NOT_CHECKABLE: &[(&str, &str)] = &[
    ("IDEM-1", "atomicity of outcome and write shows only under crashes; covered by the reference server's SIGKILL test"),
    ("IDEM-6", "needs days of retention and a server restart"),
    ("AUDIT-4", "needs days of retention"),
    ("AUTH-9", "a server that trusted client_id is indistinguishable over HTTP unless it also broke AUTH-4/AUTH-5, which are checked"),
    ("LIM-3", "memory use is not observable over HTTP; the 413 itself is checked (LIM-2)"),
    ("RET-4", "tombstones newer than the horizon cannot be produced on demand: the trigger uses the server's own clock"),
    ("SEC-1", "server logs are not observable over HTTP"),
    ("SEC-3", "timing side channels are not measurable reliably over a network"),
    ("SEC-4", "where the secret is stored is not observable over HTTP"),
    ("PRIV-1", "what the server keeps on disk is not observable over HTTP"),
];

fn wrong_shape(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    for body in [
        json!({"op_ids": "one"}),
        json!([1, 2]),
        json!({"op_ids": [], "x": 1}),
    ] {
        let r = ctx.send(
            "POST",
            &format!("/v1/spaces/{space}/manifest"),
            Some(&token),
            &body,
        )?;
        ctx.expect_problem(&r, 400, "invalid-request")
            .map_err(|v| match v {
                Verdict::Fail(d) => fail(format!("{body}: {d}")),
                other => other,
            })?;
    }
    Ok(())
}

fn features_truthful(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    let r = ctx.request(
        "POST",
        &format!("/v1/spaces/{space}/compact"),
        Some(&token),
        &[],
        None,
    )?;
    if ctx.has_feature("compaction-trigger") {
        ctx.expect(&r, 200, "compaction with compaction-trigger listed")?;
        ctx.validate("compaction-response", &r.body)
    } else {
        ctx.expect_problem(&r, 404, "not-found")
    }
}

fn absent_version(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    let r = ctx.request(
        "GET",
        &format!("/v1/spaces/{space}/pull"),
        Some(&token),
        &[("driftless-version", "")],
        None,
    )?;
    ctx.expect(&r, 200, "pull without Driftless-Version")?;
    let v = r.header("driftless-version").unwrap_or("");
    check(v.starts_with("1."), || format!("served as version {v:?}"))
}

fn invalid_path_identifier(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    for path in [
        format!("/v1/spaces/{space}/records/Bad-Collection/r1"),
        format!("/v1/spaces/{space}/records/things/bad%20id"),
    ] {
        let r = ctx.get(&path, Some(&token))?;
        ctx.expect_problem(&r, 400, "invalid-request")
            .map_err(|v| match v {
                Verdict::Fail(d) => fail(format!("{path}: {d}")),
                other => other,
            })?;
    }
    Ok(())
}

fn spaces_are_implicit(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    let (records, last) = ctx.pull_all(&space, &token, 10)?;
    check(records.is_empty() && last["through"] == 0, || {
        format!("a never-written space pulled as {last}")
    })?;
    let sums = ctx.get(&format!("/v1/spaces/{space}/checksums"), Some(&token))?;
    ctx.expect(&sums, 200, "checksums of a never-written space")
}

fn malformed_hlc(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let op = ctx.op();
    let m = mutation(
        &op,
        1,
        "things",
        "r1",
        "yesterday-at-noon",
        json!({"kind": "delete"}),
    );
    let r = ctx.push_ok(&space, &token, C, &[m])?;
    check(
        r[0]["problem"]["type"] == "urn:driftless:problem:invalid-mutation",
        || format!("answered {}", r[0]),
    )
}

fn server_clock_merges(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    // Stamped 20 s ahead: within every allowed skew bound (at least 1 s is guaranteed; use half
    // the announced bound when it is smaller).
    let ahead = (ctx.limit("clock_skew_ms_max") / 2).min(20_000);
    let op = ctx.op();
    let stamp = Ctx::hlc_at(now_ms() + ahead, 0, C);
    let m = mutation(
        &op,
        1,
        "things",
        "r1",
        &stamp,
        json!({"kind": "put", "value": {}}),
    );
    let r = ctx.push(&space, &token, C, &[m])?;
    ctx.expect(&r, 200, "push")?;
    check(r.body["results"][0]["status"] == "applied", || {
        format!(
            "a mutation {ahead} ms ahead answered {}",
            r.body["results"][0]
        )
    })?;
    let mut last = String::new();
    for _ in 0..3 {
        let resp = ctx.get(&format!("/v1/spaces/{space}/pull"), Some(&token))?;
        let clock = resp.header("driftless-clock").unwrap_or("").to_owned();
        check(clock.as_str() > stamp.as_str(), || {
            format!("Driftless-Clock {clock} is not after the applied hlc {stamp}")
        })?;
        check(clock > last, || {
            format!("Driftless-Clock went back from {last} to {clock}")
        })?;
        last = clock;
    }
    Ok(())
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

fn detail_without_values(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    register(ctx, &space, &token, &v1_tasks())?;
    let marker = "DETAIL-MARKER-8472";
    let wrong_type = task(
        ctx,
        "t1",
        1,
        json!({"kind": "put", "value": {"name": 7, "color": [marker]}}),
    );
    let op = ctx.op();
    let bad_shape = mutation(
        &op,
        2,
        "things",
        "r1",
        &ctx.hlc(C),
        json!({"kind": "put", "value": marker}),
    );
    let r = ctx.push_ok(&space, &token, C, &[wrong_type, bad_shape])?;
    for result in &r {
        check(result["status"] == "rejected", || {
            format!("expected a rejection, got {result}")
        })?;
        check(!result["problem"].to_string().contains(marker), || {
            format!("a Problem echoes a value: {}", result["problem"])
        })?;
    }
    Ok(())
}

fn admin_only(ctx: &mut Ctx) -> CaseResult {
    let (space, writer) = space(ctx, "write")?;
    let doc = json!({"collection": "things", "version": 1, "schema": {"type": "object"}});
    let checks = [
        ctx.get(
            &format!("/v1/spaces/{space}/records/things/r/history"),
            Some(&writer),
        )?,
        ctx.send(
            "PUT",
            &format!("/v1/spaces/{space}/collections/things/schemas/1"),
            Some(&writer),
            &doc,
        )?,
    ];
    for r in checks {
        ctx.expect_problem(&r, 403, "forbidden")?;
    }
    if ctx.has_feature("compaction-trigger") {
        let r = ctx.request(
            "POST",
            &format!("/v1/spaces/{space}/compact"),
            Some(&writer),
            &[],
            None,
        )?;
        ctx.expect_problem(&r, 403, "forbidden")?;
    }
    Ok(())
}

fn problem_shape(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    let ok = ctx.get(&format!("/v1/spaces/{space}/pull"), Some(&token))?;
    let ct = ok.header("content-type").unwrap_or("");
    check(ct.starts_with("application/json"), || {
        format!("a success has content type {ct:?}")
    })?;
    let bad = ctx.get(&format!("/v1/spaces/{space}/pull?limit=0"), Some(&token))?;
    ctx.expect_problem(&bad, 400, "invalid-request")?;
    check(
        bad.body["title"].as_str().is_some_and(|t| !t.is_empty()),
        || "a Problem without title".into(),
    )
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

/// Registers a Collection Schema version and requires 201.
fn register(ctx: &Ctx, space: &str, token: &str, doc: &Value) -> CaseResult {
    let path = format!(
        "/v1/spaces/{space}/collections/{}/schemas/{}",
        doc["collection"].as_str().unwrap_or(""),
        doc["version"]
    );
    let r = ctx.send("PUT", &path, Some(token), doc)?;
    ctx.expect(&r, 201, "registering a collection schema")?;
    ctx.validate("collection-schema", &r.body)
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
    ctx.push_ok(&space, &token, "cf-client-b", &[b])?;
    ctx.push_ok(&space, &token, C, &[a])?;
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
    ctx.push_ok(&space, &token, C, &[a2])?;
    ctx.push_ok(&space, &token, "cf-client-b", &[b1])?;
    ctx.push_ok(&space, &token, C, &[a1])?;
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
    ctx.push_ok(&space, &token, C, &[readd, gone])?;
    ctx.push_ok(&space, &token, "cf-client-b", &[remove, gone_rm])?;
    ctx.push_ok(&space, &token, C, &[add])?;
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
    ctx.push_ok(&space, &token, "cf-client-b", &[b])?;
    ctx.push_ok(&space, &token, C, &[a])?;
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
    ctx.push_ok(&space, &token, C, &[resolve])?;
    let rec = ctx.record(&space, &token, "notes", "n1")?;
    check(
        rec.body["value"]["body"] == "Oat milk, 2 litres"
            && rec.body.get("conflicts").is_none_or(Value::is_null),
        || format!("after resolve the record is {}", rec.body),
    )
}

fn v1_tasks() -> Value {
    json!({"collection": "tasks", "version": 1, "schema": {"type": "object", "properties": {"name": {"type": "string"}, "color": {"type": "string"}}, "required": ["name"]}, "fields": {}, "migration": []})
}

fn v2_tasks() -> Value {
    json!({"collection": "tasks", "version": 2,
        "schema": {"type": "object", "properties": {"title": {"type": "string"}, "priority": {"type": "integer"}}, "required": ["title"]},
        "fields": {}, "migration": [{"op": "rename_field", "from": "name", "to": "title"}, {"op": "add_field", "field": "priority", "default": 0}, {"op": "remove_field", "field": "color"}]})
}

fn schema_register_and_list(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    register(ctx, &space, &token, &v1_tasks())?;
    let again = ctx.send(
        "PUT",
        &format!("/v1/spaces/{space}/collections/tasks/schemas/1"),
        Some(&token),
        &v1_tasks(),
    )?;
    ctx.expect(&again, 200, "registering the same document again")?;
    let list = ctx.get(
        &format!("/v1/spaces/{space}/collections/tasks/schemas"),
        Some(&token),
    )?;
    ctx.expect(&list, 200, "listing schemas")?;
    ctx.validate("collection-schema-list", &list.body)?;
    check(list.body["versions"] == json!([v1_tasks()]), || {
        format!("listed {}", list.body["versions"])
    })
}

fn schema_conflict_and_gap(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    register(ctx, &space, &token, &v1_tasks())?;
    let path = |v: u32| format!("/v1/spaces/{space}/collections/tasks/schemas/{v}");
    let mut changed = v1_tasks();
    changed["schema"]["properties"]["name"]["maxLength"] = json!(5);
    let r = ctx.send("PUT", &path(1), Some(&token), &changed)?;
    ctx.expect_problem(&r, 409, "schema-conflict")?;
    let mut v3 = v2_tasks();
    v3["version"] = json!(3);
    let r = ctx.send("PUT", &path(3), Some(&token), &v3)?;
    ctx.expect_problem(&r, 409, "schema-version-gap")?;
    let r = ctx.send("PUT", &path(2), Some(&token), &v3)?;
    ctx.expect_problem(&r, 400, "invalid-request")
}

fn schema_invalid(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    let bad = [
        json!({"collection": "tasks", "version": 1, "schema": {"type": "array"}}),
        json!({"collection": "tasks", "version": 1, "schema": {"type": "object", "required": ["likes"]}, "fields": {"likes": {"policy": "counter"}}}),
        json!({"collection": "tasks", "version": 1, "schema": {"type": "object", "properties": {"a": {"type": 7}}}}),
        json!({"collection": "tasks", "version": 1, "schema": {"type": "object"}, "migration": [{"op": "remove_field", "field": "a"}]}),
    ];
    for doc in bad {
        let r = ctx.send(
            "PUT",
            &format!("/v1/spaces/{space}/collections/tasks/schemas/1"),
            Some(&token),
            &doc,
        )?;
        ctx.expect_problem(&r, 422, "invalid-schema")
            .map_err(|v| match v {
                Verdict::Fail(d) => fail(format!("{doc}: {d}")),
                other => other,
            })?;
    }
    register(
        ctx,
        &space,
        &token,
        &json!({"collection": "tasks", "version": 1, "schema": {"type": "object"}, "fields": {"likes": {"policy": "counter"}}}),
    )?;
    let change = json!({"collection": "tasks", "version": 2, "schema": {"type": "object"}, "fields": {"likes": {"policy": "lww"}}});
    let r = ctx.send(
        "PUT",
        &format!("/v1/spaces/{space}/collections/tasks/schemas/2"),
        Some(&token),
        &change,
    )?;
    ctx.expect_problem(&r, 422, "invalid-schema")
}

fn task(ctx: &mut Ctx, id: &str, version: u32, effect: Value) -> Value {
    let (op, hlc) = (ctx.op(), ctx.hlc(C));
    let mut m = mutation(&op, 1, "tasks", id, &hlc, effect);
    m["schema_version"] = json!(version);
    m
}

fn schema_upcast(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    register(ctx, &space, &token, &v1_tasks())?;
    let m = task(
        ctx,
        "t1",
        1,
        json!({"kind": "put", "value": {"name": "Buy milk", "color": "red", "extra": "kept"}}),
    );
    ctx.push_ok(&space, &token, C, &[m])?;
    let before = ctx.record(&space, &token, "tasks", "t1")?;
    check(before.body["value"]["extra"] == "kept", || {
        format!("an undeclared field was dropped: {}", before.body["value"])
    })?;
    register(ctx, &space, &token, &v2_tasks())?;
    let after = ctx.record(&space, &token, "tasks", "t1")?;
    check(
        after.body["value"] == json!({"title": "Buy milk", "priority": 0, "extra": "kept"}),
        || format!("after v2 the record is {}", after.body["value"]),
    )?;
    check(after.body["schema_version"] == 2, || {
        format!("schema_version is {}", after.body["schema_version"])
    })?;
    check(
        after.body["change_seq"].as_u64() > before.body["change_seq"].as_u64(),
        || "the upcast record kept its change_seq".into(),
    )?;
    let old_patch = task(
        ctx,
        "t1",
        1,
        json!({"kind": "patch", "set": {"name": "Oat milk"}}),
    );
    let mut unversioned = task(
        ctx,
        "t2",
        1,
        json!({"kind": "put", "value": {"name": "Call Ada"}}),
    );
    if let Some(o) = unversioned.as_object_mut() {
        o.remove("schema_version");
    }
    ctx.push_ok(&space, &token, C, &[old_patch, unversioned])?;
    let (records, _) = ctx.pull_all(&space, &token, 100)?;
    check(
        records
            .get("tasks/t1")
            .is_some_and(|r| r["value"]["title"] == "Oat milk"),
        || "a v1 patch was not upcast to the renamed field".into(),
    )?;
    check(
        records
            .get("tasks/t2")
            .is_some_and(|r| r["value"]["title"] == "Call Ada"),
        || "a write without schema_version was not treated as v1".into(),
    )
}

fn schema_violations(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    register(ctx, &space, &token, &v1_tasks())?;
    let seed = task(ctx, "t1", 1, json!({"kind": "put", "value": {"name": "x"}}));
    ctx.push_ok(&space, &token, C, &[seed])?;
    let bad = [
        json!({"kind": "put", "value": {"color": "red"}}),
        json!({"kind": "patch", "set": {"name": 42}}),
        json!({"kind": "patch", "unset": ["name"]}),
    ];
    for effect in bad {
        let m = task(ctx, "t1", 1, effect.clone());
        let r = ctx.push_ok(&space, &token, C, &[m])?;
        check(
            r[0]["problem"]["type"] == "urn:driftless:problem:schema-violation",
            || format!("{effect} answered {}", r[0]),
        )?;
    }
    Ok(())
}

fn schema_unknown_version(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    register(ctx, &space, &token, &v1_tasks())?;
    let m = task(ctx, "t1", 5, json!({"kind": "put", "value": {"name": "x"}}));
    let r = ctx.push_ok(&space, &token, C, &[m])?;
    check(
        r[0]["problem"]["type"] == "urn:driftless:problem:unknown-schema-version",
        || format!("answered {}", r[0]),
    )
}

fn schema_removed_field(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    register(ctx, &space, &token, &v1_tasks())?;
    register(ctx, &space, &token, &v2_tasks())?;
    let seed = task(
        ctx,
        "t1",
        2,
        json!({"kind": "put", "value": {"title": "x"}}),
    );
    ctx.push_ok(&space, &token, C, &[seed])?;
    let before = ctx.record(&space, &token, "tasks", "t1")?;
    let m = task(
        ctx,
        "t1",
        1,
        json!({"kind": "patch", "set": {"color": "blue"}}),
    );
    let r = ctx.push_ok(&space, &token, C, &[m])?;
    check(r[0]["status"] == "applied", || {
        format!("a write to a removed field answered {}", r[0])
    })?;
    let after = ctx.record(&space, &token, "tasks", "t1")?;
    check(after.body["value"] == before.body["value"], || {
        format!("the record changed to {}", after.body["value"])
    })
}

fn audit_history(ctx: &mut Ctx) -> CaseResult {
    let (space, admin) = space(ctx, "admin")?;
    let good = put(ctx, "r1", json!({"secret": "AUDIT-VALUE-MARKER"}));
    ctx.push_ok(&space, &admin, C, std::slice::from_ref(&good))?;
    ctx.push_ok(&space, &admin, C, std::slice::from_ref(&good))?;
    let bad = fresh(
        ctx,
        "things",
        "r1",
        json!({"kind": "resolve", "field": "secret", "value": 1}),
    );
    ctx.push_ok(&space, &admin, C, &[bad])?;
    let r = ctx.get(
        &format!("/v1/spaces/{space}/records/things/r1/history"),
        Some(&admin),
    )?;
    ctx.expect(&r, 200, "history")?;
    ctx.validate("history-response", &r.body)?;
    check(!r.text.contains("AUDIT-VALUE-MARKER"), || {
        "the history holds a field value ([AUDIT-3])".into()
    })?;
    let entries = r.body["entries"].as_array().cloned().unwrap_or_default();
    check(entries.len() == 2, || {
        format!(
            "history has {} entries for one applied, one duplicate and one rejected mutation",
            entries.len()
        )
    })?;
    check(
        entries[0]["status"] == "applied" && entries[1]["status"] == "rejected",
        || format!("entries are {entries:?}"),
    )?;
    let user = ctx.user();
    check(
        entries
            .iter()
            .all(|e| e["client_id"] == C && e["user"] == user.as_str()),
        || "entries lack the user or the client".into(),
    )
}

fn bucket_repair(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let ms: Vec<Value> = (0..80)
        .map(|i| put(ctx, &format!("r{i}"), json!({"i": i})))
        .collect();
    ctx.push_ok(&space, &token, C, &ms)?;
    let sums = ctx.get(&format!("/v1/spaces/{space}/checksums"), Some(&token))?;
    let (records, _) = ctx.pull_all(&space, &token, 100)?;
    let bucket = (0..64u64)
        .max_by_key(|b| {
            sums.body["buckets"][*b as usize]["records"]
                .as_u64()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    let mut got = Vec::new();
    let mut query = "?limit=1".to_owned();
    for _ in 0..1000 {
        let r = ctx.get(
            &format!("/v1/spaces/{space}/buckets/{bucket}{query}"),
            Some(&token),
        )?;
        ctx.expect(&r, 200, "bucket")?;
        ctx.validate("bucket-response", &r.body)?;
        for rec in r.body["records"].as_array().into_iter().flatten() {
            let id = rec["id"].as_str().unwrap_or("");
            let key = format!("things/{id}");
            check(
                records
                    .get(&key)
                    .is_some_and(|p| p["value"] == rec["value"] && p["digest"] == rec["digest"]),
                || format!("bucket record {key} differs from the pulled one"),
            )?;
            check(
                u64::from(driftless_protocol::checksum::bucket_of("things", id)) == bucket,
                || format!("{key} is not in bucket {bucket}"),
            )?;
            got.push(key);
        }
        if r.body["has_more"] != true {
            break;
        }
        check(r.body["next_after"].is_string(), || {
            "has_more without next_after ([INT-11])".into()
        })?;
        query = format!(
            "?limit=1&after={}",
            r.body["next_after"].as_str().unwrap_or("")
        );
    }
    let expected = sums.body["buckets"][bucket as usize]["records"]
        .as_u64()
        .unwrap_or(0);
    let unique: BTreeSet<&String> = got.iter().collect();
    check(
        got.len() as u64 == expected && unique.len() == got.len(),
        || {
            format!(
                "bucket {bucket} paged {} records ({} unique); checksums say {expected}",
                got.len(),
                unique.len()
            )
        },
    )?;
    let r = ctx.get(&format!("/v1/spaces/{space}/buckets/64"), Some(&token))?;
    ctx.expect_problem(&r, 400, "invalid-request")
}

fn tombstone(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let m = put(ctx, "r1", json!({"a": 1}));
    let (op, hlc) = (ctx.op(), ctx.hlc(C));
    ctx.push_ok(
        &space,
        &token,
        C,
        &[
            m,
            mutation(&op, 2, "things", "r1", &hlc, json!({"kind": "delete"})),
        ],
    )?;
    let rec = ctx.record(&space, &token, "things", "r1")?;
    ctx.expect(&rec, 200, "reading a tombstone")?;
    ctx.validate("record", &rec.body)?;
    check(
        rec.body["deleted"] == true && rec.body.get("value").is_none_or(Value::is_null),
        || format!("the tombstone is {}", rec.body),
    )?;
    let (records, _) = ctx.pull_all(&space, &token, 100)?;
    check(
        records
            .get("things/r1")
            .is_some_and(|r| r["deleted"] == true),
        || "the pull lacks the tombstone".into(),
    )
}

fn long_poll(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let first = ctx.get(&format!("/v1/spaces/{space}/pull"), Some(&token))?;
    let cursor = first.body["cursor"].as_str().unwrap_or("").to_owned();
    let wait = ctx.limit("pull_wait_ms_max").min(20_000);
    let m = put(ctx, "live", json!({"live": true}));
    let started = std::time::Instant::now();
    let ctx_ref: &Ctx = ctx;
    let (waited, pushed) = std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            ctx_ref.get(
                &format!("/v1/spaces/{space}/pull?wait_ms={wait}&cursor={cursor}"),
                Some(&token),
            )
        });
        let pushed = ctx_ref.push_ok(&space, &token, C, &[m]);
        (waiter.join(), pushed)
    });
    pushed?;
    let page = waited.map_err(|_| Verdict::Error("the long-poll thread panicked".into()))??;
    ctx.expect(&page, 200, "long-poll")?;
    let elapsed = started.elapsed().as_millis() as u64;
    let has_live = page.body["records"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["id"] == "live");
    check(has_live, || {
        format!("a pull held for up to {wait} ms returned after {elapsed} ms without the change pushed meanwhile")
    })?;
    check(elapsed < wait, || {
        format!("the change arrived but the pull returned only after {elapsed} ms")
    })
}

fn empty_page_position(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let m = put(ctx, "r1", json!({}));
    ctx.push_ok(&space, &token, C, &[m])?;
    let first = ctx.get(&format!("/v1/spaces/{space}/pull"), Some(&token))?;
    let cursor = first.body["cursor"].as_str().unwrap_or("").to_owned();
    let again = ctx.get(
        &format!("/v1/spaces/{space}/pull?cursor={cursor}"),
        Some(&token),
    )?;
    ctx.expect(&again, 200, "pull")?;
    check(
        again.body["records"] == json!([]) && again.body["through"] == first.body["through"],
        || format!("an empty page answered {}", again.text),
    )
}

fn pull_consistent_under_writes(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let ms: Vec<Value> = (0..12)
        .map(|i| put(ctx, &format!("r{i:02}"), json!({"v": 0})))
        .collect();
    ctx.push_ok(&space, &token, C, &ms)?;
    let mut mirror = BTreeMap::new();
    let mut query = "?limit=4".to_owned();
    for round in 1..1000 {
        let r = ctx.get(&format!("/v1/spaces/{space}/pull{query}"), Some(&token))?;
        ctx.expect(&r, 200, "pull")?;
        for rec in r.body["records"].as_array().into_iter().flatten() {
            mirror.insert(
                rec["id"].as_str().unwrap_or("").to_owned(),
                rec["value"].clone(),
            );
        }
        // Between pages, change a record already pulled and one not yet pulled, and add one.
        let edits = vec![
            put(ctx, "r00", json!({"v": round})),
            put(ctx, "r11", json!({"v": round})),
            put(ctx, &format!("new{round}"), json!({})),
        ];
        ctx.push_ok(&space, &token, C, &edits)?;
        let cursor = r.body["cursor"].as_str().unwrap_or("").to_owned();
        if r.body["has_more"] != true {
            let rest = ctx.get(
                &format!("/v1/spaces/{space}/pull?cursor={cursor}"),
                Some(&token),
            )?;
            for rec in rest.body["records"].as_array().into_iter().flatten() {
                mirror.insert(
                    rec["id"].as_str().unwrap_or("").to_owned(),
                    rec["value"].clone(),
                );
            }
            break;
        }
        query = format!("?limit=4&cursor={cursor}");
    }
    let (fresh, _) = ctx.pull_all(&space, &token, 1000)?;
    let fresh: BTreeMap<String, Value> = fresh
        .into_iter()
        .map(|(k, v)| {
            (
                k.trim_start_matches("things/").to_owned(),
                v["value"].clone(),
            )
        })
        .collect();
    check(mirror == fresh, || {
        format!(
            "the paged mirror ({} records) differs from the space ({} records)",
            mirror.len(),
            fresh.len()
        )
    })
}

fn rate_limited(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    for _ in 0..1000 {
        if ctx
            .get(&format!("/v1/spaces/{space}/checksums"), Some(&token))?
            .status
            == 429
        {
            return Ok(());
        }
    }
    Err(fail(
        "1000 back-to-back requests from one user were never rate-limited",
    ))
}

fn retry_after(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    // Empty the User's allowance with cheap reads, then send the push that must be refused.
    for _ in 0..1000 {
        if ctx
            .get(&format!("/v1/spaces/{space}/checksums"), Some(&token))?
            .status
            != 429
        {
            continue;
        }
        let m = put(ctx, "limited", json!({}));
        let r = ctx.push(&space, &token, C, std::slice::from_ref(&m))?;
        if r.status != 429 {
            continue; // the bucket refilled in between; drain it again
        }
        ctx.expect_problem(&r, 429, "rate-limited")?;
        check(
            r.header("retry-after")
                .is_some_and(|v| v.trim().parse::<u64>().is_ok()),
            || "429 without a Retry-After in seconds".into(),
        )?;
        let wait = r
            .header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(1);
        std::thread::sleep(std::time::Duration::from_secs(wait.min(5))); // honour it ([RETRY-2])
        let manifest = ctx.send(
            "POST",
            &format!("/v1/spaces/{space}/manifest"),
            Some(&token),
            &json!({"op_ids": [m["op_id"]]}),
        )?;
        ctx.expect(&manifest, 200, "manifest after Retry-After")?;
        return check(manifest.body["entries"][0]["status"] == "unknown", || {
            "a rate-limited push was applied ([LIM-6])".into()
        });
    }
    Err(Verdict::Skip(
        "the server did not rate-limit 1000 requests from one user".into(),
    ))
}
