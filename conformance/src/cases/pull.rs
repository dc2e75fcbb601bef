//! Cases of spec chapter 05, Pull, records and audit history (`spec/05-pull-and-records.md`):
//! paging and its parameters, cursors (invalid, expired after compaction), own writes, long-poll,
//! paging under writes, single records and tombstones, and the audit history.
//!
//! Requirement IDs its cases check: `[AUDIT-1]`, `[AUDIT-2]`, `[AUDIT-3]`, `[AUDIT-5]`,
//! `[AUTH-10]`, `[IDEM-8]`, `[PULL-2]`, `[PULL-3]`, `[PULL-4]`, `[PULL-5]`, `[PULL-6]`, `[PULL-7]`,
//! `[PULL-8]`, `[PULL-9]`, `[PULL-11]`, `[PULL-12]`, `[PULL-13]`, `[PULL-14]`,
//! `[PULL-16]`, `[PULL-19]`, `[PUSH-2]`, `[REC-1]`, `[REC-2]`, `[RET-3]`, `[RET-5]`, `[RET-6]`, `[RET-7]`,
//! `[RET-9]`, `[RET-10]`, `[RET-12]`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::support::{case, fresh, put, space, C};
use crate::client::{check, fail, mutation, now_ms, precondition, Ctx};
use crate::Level::Must;
use crate::{Case, CaseResult, Verdict};

/// The cases of this chapter, in suite order.
pub fn cases() -> Vec<Case> {
    vec![
        case(
            "pull.pages",
            &["PULL-2", "PULL-4", "PULL-5"],
            Must,
            "pages hold limit records in change_seq order with has_more",
            pull_pages,
        ),
        case(
            "pull.own-writes",
            &["PULL-11", "PULL-12", "PUSH-2"],
            Must,
            "a pull after an acknowledgement reflects the write",
            pull_own_writes,
        ),
        case(
            "pull.invalid-cursor",
            &["PULL-13"],
            Must,
            "a cursor the server did not issue for the space is invalid-cursor",
            pull_invalid_cursor,
        ),
        case(
            "pull.parameter-ranges",
            &["PULL-16"],
            Must,
            "limit and wait_ms out of range are invalid-request",
            pull_parameter_ranges,
        ),
        case(
            "pull.resync-after-compaction",
            &[
                "PULL-14", "RET-7", "RET-10", "RET-3", "RET-5", "RET-6", "RET-9", "RET-12",
                "IDEM-8",
            ],
            Must,
            "after compaction an old cursor is cursor-expired and late writes are too old",
            resync_after_compaction,
        ),
        case(
            "record.not-found",
            &["REC-2"],
            Must,
            "a record never written is record-not-found",
            record_not_found,
        ),
        case(
            "audit.history",
            &["AUDIT-1", "AUDIT-2", "AUDIT-3", "AUDIT-5", "AUTH-10"],
            Must,
            "history lists applied and rejected mutations with user and client, without values or duplicates",
            audit_history,
        ),
        case(
            "record.tombstone",
            &["REC-1", "PULL-7"],
            Must,
            "a deleted record reads and pulls as a tombstone without value",
            tombstone,
        ),
        case(
            "pull.long-poll",
            &["PULL-8", "PULL-9"],
            Must,
            "a held pull answers when a change arrives",
            long_poll,
        ),
        case(
            "pull.empty-page-position",
            &["PULL-19", "PULL-4"],
            Must,
            "an empty page keeps the request's position",
            empty_page_position,
        ),
        case(
            "pull.consistent-under-writes",
            &["PULL-3", "PULL-6"],
            Must,
            "paging while records change ends with exactly the space's state",
            pull_consistent_under_writes,
        ),
    ]
}

fn pull_pages(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let ms: Vec<Value> = (0..7)
        .map(|i| put(ctx, &format!("r{i}"), json!({"i": i})))
        .collect();
    ctx.push_applied(&space, &token, C, &ms)?;
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
    let results = ctx.push_applied(&space, &token, C, &[m])?;
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
    let other = ctx.space();
    let t2 = ctx.token(&ctx.user(), &other, "read")?;
    let foreign = ctx.get(&format!("/v1/spaces/{other}/pull"), Some(&t2))?;
    ctx.expect(
        &foreign,
        200,
        "the pull of another space that gives a foreign cursor",
    )?;
    let cursor = foreign.body["cursor"].as_str().unwrap_or("").to_owned();
    precondition(!cursor.is_empty(), || {
        format!("the other space's pull gave no cursor: {}", foreign.text)
    })?;
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
    ctx.push_applied(&space, &token, C, &[a, b.clone()])?;
    let first = ctx.get(&format!("/v1/spaces/{space}/pull"), Some(&token))?;
    ctx.expect(&first, 200, "the pull that gives the old cursor")?;
    let old = first.body["cursor"].as_str().unwrap_or("").to_owned();
    precondition(!old.is_empty(), || {
        format!("the first pull gave no cursor: {}", first.text)
    })?;
    let (op, hlc) = (ctx.op(), ctx.hlc(C));
    let deleted = ctx.push_applied(
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
    ctx.expect(&sums_before, 200, "checksums before compaction")?;
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
    ctx.expect(&sums_after, 200, "checksums after compaction")?;
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

fn audit_history(ctx: &mut Ctx) -> CaseResult {
    let (space, admin) = space(ctx, "admin")?;
    let good = put(ctx, "r1", json!({"secret": "AUDIT-VALUE-MARKER"}));
    ctx.push_applied(&space, &admin, C, std::slice::from_ref(&good))?;
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

fn tombstone(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let m = put(ctx, "r1", json!({"a": 1}));
    let (op, hlc) = (ctx.op(), ctx.hlc(C));
    ctx.push_applied(
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
    ctx.expect(&first, 200, "the pull that gives the long-poll its cursor")?;
    let cursor = first.body["cursor"].as_str().unwrap_or("").to_owned();
    precondition(!cursor.is_empty(), || {
        format!("the first pull gave no cursor: {}", first.text)
    })?;
    let wait = ctx.limit("pull_wait_ms_max").min(20_000);
    precondition(wait > 0, || {
        "discovery announces no pull_wait_ms_max above 0".into()
    })?;
    // Order by a signal, not by time: the held pull is written in full before the push is
    // sent, so the change arrives after the request; a Server that holds it answers with the
    // change, one that answers at once answers with an empty page.
    let authority = ctx.authority().unwrap_or("").to_owned();
    let held = ctx.raw_send(
        format!(
            "GET /v1/spaces/{space}/pull?wait_ms={wait}&cursor={cursor} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nDriftless-Version: 1.0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )?;
    // One round trip on another connection, so the held request has been at the Server for
    // at least that long before the change is made.
    ctx.get("/.well-known/driftless", None)?;
    let m = put(ctx, "live", json!({"live": true}));
    ctx.push_applied(&space, &token, C, &[m])?;
    let page = held
        .response()
        .ok_or_else(|| fail("the server closed the held pull without answering"))?;
    ctx.expect(&page, 200, "long-poll")?;
    ctx.validate("pull-response", &page.body)?;
    let has_live = page.body["records"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["id"] == "live" && r["value"] == json!({"live": true}));
    check(has_live, || {
        format!(
            "a pull held for up to {wait} ms answered without the change pushed meanwhile: {}",
            page.text
        )
    })
}

fn empty_page_position(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let m = put(ctx, "r1", json!({}));
    ctx.push_applied(&space, &token, C, &[m])?;
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
    ctx.push_applied(&space, &token, C, &ms)?;
    let mut mirror = BTreeMap::new();
    let mut query = "?limit=4".to_owned();
    let mut last_round = 0;
    for round in 1..1000 {
        last_round = round;
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
        ctx.push_applied(&space, &token, C, &edits)?;
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
    // The values the case wrote last, not whatever the Server holds.
    for id in ["r00", "r11"] {
        check(fresh.get(id) == Some(&json!({"v": last_round})), || {
            format!(
                "{id} is {:?} after its last applied write of v = {last_round}",
                fresh.get(id)
            )
        })?;
    }
    check(fresh.len() == 12 + last_round, || {
        format!(
            "the space holds {} records; the case wrote {}",
            fresh.len(),
            12 + last_round
        )
    })?;
    check(mirror == fresh, || {
        format!(
            "the paged mirror ({} records) differs from the space ({} records)",
            mirror.len(),
            fresh.len()
        )
    })
}
