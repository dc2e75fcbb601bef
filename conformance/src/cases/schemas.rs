//! Cases of spec chapter 10, Collection schemas and evolution (`spec/10-schema-evolution.md`):
//! registering and listing versions, conflicts and gaps, invalid schema documents, upcasting old
//! writes, schema violations, unknown versions and removed fields.
//!
//! Requirement IDs its cases check: `[EVO-2]`, `[EVO-3]`, `[EVO-4]`, `[EVO-5]`, `[EVO-6]`,
//! `[EVO-7]`, `[EVO-8]`, `[EVO-9]`, `[EVO-12]`, `[EVO-14]`, `[SCHEMA-1]`, `[SCHEMA-2]`, `[SCHEMA-3]`,
//! `[SCHEMA-4]`, `[SCHEMA-5]`, `[SCHEMA-6]`, `[SCHEMA-7]`, `[SCHEMA-8]`, `[SCHEMA-10]`, `[SCHEMA-11]`.

use serde_json::json;

use super::support::{case, register, space, task, v1_tasks, v2_tasks, C};
use crate::client::{check, fail, Ctx};
use crate::Level::Must;
use crate::{Case, CaseResult, Verdict};

/// The cases of this chapter, in suite order.
pub fn cases() -> Vec<Case> {
    vec![
        case(
            "schema.register-and-list",
            &["SCHEMA-2", "SCHEMA-3", "SCHEMA-8"],
            Must,
            "a version registers with 201, again with 200, and lists as registered",
            schema_register_and_list,
        ),
        case(
            "schema.conflict-and-gap",
            &["SCHEMA-4", "SCHEMA-5", "SCHEMA-1"],
            Must,
            "a changed version conflicts, a skipped version is a gap, a path mismatch is invalid",
            schema_conflict_and_gap,
        ),
        case(
            "schema.check-order",
            &["SCHEMA-11"],
            Must,
            "a broken schema is invalid-schema before conflict or gap; a gap before the other rules",
            schema_check_order,
        ),
        case(
            "schema.invalid-documents",
            &["SCHEMA-6", "EVO-12"],
            Must,
            "non-object schemas, required counters, v1 migrations and policy changes are invalid-schema",
            schema_invalid,
        ),
        case(
            "schema.upcast-and-unknown-fields",
            &["EVO-2", "EVO-4", "EVO-8", "EVO-9", "SCHEMA-7", "SCHEMA-10"],
            Must,
            "old writes are upcast, defaults served, unknown fields kept, records re-sequenced",
            schema_upcast,
        ),
        case(
            "schema.new-version-reaches-incremental-pull",
            &["SCHEMA-10", "EVO-9"],
            Must,
            "a new version re-sequences every record, unchanged values and tombstones included",
            schema_new_version_reaches_pull,
        ),
        case(
            "schema.rename-collision",
            &["EVO-14", "EVO-4"],
            Must,
            "an old write naming a renamed field under both names keeps the old name's value",
            schema_rename_collision,
        ),
        case(
            "schema.violations",
            &["EVO-6", "EVO-7"],
            Must,
            "values that break the latest schema are schema-violation",
            schema_violations,
        ),
        case(
            "schema.unknown-version",
            &["EVO-3"],
            Must,
            "an unregistered schema_version is unknown-schema-version",
            schema_unknown_version,
        ),
        case(
            "schema.removed-field-is-noop",
            &["EVO-5"],
            Must,
            "a write to a removed field is applied without changing the record",
            schema_removed_field,
        ),
    ]
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

fn schema_upcast(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    register(ctx, &space, &token, &v1_tasks())?;
    let m = task(
        ctx,
        "t1",
        1,
        json!({"kind": "put", "value": {"name": "Buy milk", "color": "red", "extra": "kept"}}),
    );
    ctx.push_applied(&space, &token, C, &[m])?;
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
    ctx.push_applied(&space, &token, C, &[old_patch, unversioned])?;
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

fn schema_new_version_reaches_pull(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    register(ctx, &space, &token, &v1_tasks())?;
    let keep = task(
        ctx,
        "t1",
        1,
        json!({"kind": "put", "value": {"name": "same"}}),
    );
    let gone = task(
        ctx,
        "t2",
        1,
        json!({"kind": "put", "value": {"name": "gone"}}),
    );
    let delete = task(ctx, "t2", 1, json!({"kind": "delete"}));
    ctx.push_applied(&space, &token, C, &[keep, gone, delete])?;
    let (_, last) = ctx.pull_all(&space, &token, 100)?;
    let cursor = last["cursor"].as_str().unwrap_or("").to_owned();
    // Version 2 only declares one more optional Field: no stored value changes.
    let mut v2 = v1_tasks();
    v2["version"] = json!(2);
    v2["schema"]["properties"]["note"] = json!({"type": "string"});
    register(ctx, &space, &token, &v2)?;
    let page = ctx.get(
        &format!("/v1/spaces/{space}/pull?cursor={cursor}"),
        Some(&token),
    )?;
    ctx.expect(&page, 200, "the pull after registering version 2")?;
    let records = page.body["records"].as_array().cloned().unwrap_or_default();
    let find = |id: &str| records.iter().find(|r| r["id"] == id).cloned();
    check(
        find("t1")
            .is_some_and(|r| r["schema_version"] == 2 && r["value"] == json!({"name": "same"})),
        || {
            format!(
                "the unchanged record did not come with version 2: {}",
                page.text
            )
        },
    )?;
    check(find("t2").is_some_and(|r| r["deleted"] == true), || {
        format!("the tombstone was not re-sequenced: {}", page.text)
    })
}

fn schema_rename_collision(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    register(ctx, &space, &token, &v1_tasks())?;
    register(ctx, &space, &token, &v2_tasks())?;
    // An old Client preserves `title`, unknown to version 1 ([EVO-10]), beside its own edit.
    let put = task(
        ctx,
        "t1",
        1,
        json!({"kind": "put", "value": {"title": "preserved", "name": "edited"}}),
    );
    let patch = task(
        ctx,
        "t2",
        1,
        json!({"kind": "patch", "set": {"title": "preserved", "name": "edited"}}),
    );
    ctx.push_applied(&space, &token, C, &[put, patch])?;
    for id in ["t1", "t2"] {
        let r = ctx.record(&space, &token, "tasks", id)?;
        ctx.expect(&r, 200, "the record written under both names")?;
        check(r.body["value"]["title"] == "edited", || {
            format!(
                "tasks/{id} written as title \"preserved\" and name \"edited\" reads {}",
                r.body["value"]
            )
        })?;
    }
    Ok(())
}

fn schema_check_order(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    register(ctx, &space, &token, &v1_tasks())?;
    let put = |ctx: &Ctx, doc: &serde_json::Value| {
        let path = format!(
            "/v1/spaces/{space}/collections/tasks/schemas/{}",
            doc["version"]
        );
        ctx.send("PUT", &path, Some(&token), doc)
    };
    // Not a draft 2020-12 schema: step 3, before the registered version (4) and the gap (5).
    let mut broken = v1_tasks();
    broken["schema"]["type"] = json!(5);
    let r = put(ctx, &broken)?;
    ctx.expect_problem(&r, 422, "invalid-schema")?;
    broken["version"] = json!(3);
    let r = put(ctx, &broken)?;
    ctx.expect_problem(&r, 422, "invalid-schema")?;
    // A counter in `required` (step 6) loses to the registered version and to the gap.
    let mut required_counter = v1_tasks();
    required_counter["fields"] = json!({"name": {"policy": "counter"}});
    let r = put(ctx, &required_counter)?;
    ctx.expect_problem(&r, 409, "schema-conflict")?;
    required_counter["version"] = json!(3);
    let r = put(ctx, &required_counter)?;
    ctx.expect_problem(&r, 409, "schema-version-gap")
}

fn schema_violations(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    register(ctx, &space, &token, &v1_tasks())?;
    let seed = task(ctx, "t1", 1, json!({"kind": "put", "value": {"name": "x"}}));
    ctx.push_applied(&space, &token, C, &[seed])?;
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
    ctx.push_applied(&space, &token, C, &[seed])?;
    let before = ctx.record(&space, &token, "tasks", "t1")?;
    ctx.expect(&before, 200, "the seeded record")?;
    check(
        before.body["value"]["title"] == "x" && before.body["value"].get("color").is_none(),
        || {
            format!(
                "the seed put {{\"title\": \"x\"}} reads as {}",
                before.body["value"]
            )
        },
    )?;
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
    ctx.expect(&after, 200, "the record after the write to a removed field")?;
    check(after.body["value"] == before.body["value"], || {
        format!("the record changed to {}", after.body["value"])
    })
}
