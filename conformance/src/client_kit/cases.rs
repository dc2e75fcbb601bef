//! The client cases, one or more per Client duty, named `client.<area>.<behaviour>`, and the
//! Client MUSTs the kit cannot check from outside, with the reason.

use std::time::Duration;

use serde_json::{json, Value};

use super::layer::{on, Action, Exchange, Response};
use super::{ensure, CaseResult, ClientCase, Kit};
use crate::{Level, Verdict};

macro_rules! case {
    ($id:literal, [$($r:literal),*], $level:ident, $desc:literal, $run:expr) => {
        ClientCase { id: $id, requirements: &[$($r),*], level: Level::$level, description: $desc, run: $run }
    };
}

/// Every client case, in kit order.
pub fn all() -> Vec<ClientCase> {
    vec![
        case!("client.outbox.durable-across-sigkill", ["CLIENT-1", "CLIENT-2", "HLC-10", "ID-2"], Must,
            "writes the adapter reported done survive SIGKILL and restart, and are all sent", durable_across_sigkill),
        case!("client.outbox.acknowledgement-survives-sigkill", ["CLIENT-2", "CLIENT-13"], Must,
            "a write acknowledged by a sync, then SIGKILL: the restarted Client still has it in the Outbox or acknowledged", acknowledgement_survives_sigkill),
        case!("client.outbox.unknown-fate-kept-across-restart", ["CLIENT-2", "CLIENT-7", "MAN-5"], Must,
            "a push cut off unforwarded, then SIGKILL: the restarted Client still delivers the write", unknown_fate_kept),
        case!("client.retry.same-op-id-and-body", ["CLIENT-3", "ID-5", "RETRY-3", "MUT-2", "PUSH-8"], Must,
            "after a lost acknowledgement the Mutation is retried with the same Op ID and body, and applied once", same_op_id_and_body),
        case!("client.retry.retry-after-floor", ["RETRY-2", "RETRY-3", "ERR-7"], Must,
            "after 503 (a Problem type the Client cannot know) with Retry-After: 1 the next request waits at least one second", retry_after_floor),
        case!("client.retry.rate-limited-like-unavailable", ["RETRY-2", "RETRY-3", "CLIENT-3", "LIM-5"], Must,
            "after 429 rate-limited with Retry-After: 1 the push is resent with the same Op ID and body, no sooner than a second later", rate_limited_like_unavailable),
        case!("client.retry.slow-answer-unknown-fate", ["CLIENT-3", "RETRY-3", "CLIENT-7", "ID-5"], Must,
            "a push answered after the Client's timeout is of unknown fate: resent with the same Op ID and body or asked of the manifest, applied once", slow_answer_unknown_fate),
        case!("client.retry.full-jitter", ["RETRY-1"], Must,
            "delays between failed attempts stay within the announced bound and are spread, not constant", full_jitter),
        case!("client.retry.failure-count-reset", ["RETRY-7", "RETRY-1"], Must,
            "after a success the next failures wait by the first bounds of the policy again", failure_count_reset),
        case!("client.retry.not-retryable-not-resent", ["RETRY-4", "CLIENT-19"], Must,
            "a push refused as payload-too-large is never resent unchanged", not_retryable_not_resent),
        case!("client.order.per-record-across-lanes", ["CLIENT-6", "ORD-4"], Must,
            "one Record's Mutations are sent in creation order whatever their priority lanes", per_record_order),
        case!("client.dead-letter.poison-never-blocks", ["CLIENT-4", "CLIENT-5"], Must,
            "a rejected Mutation is dead-lettered with its Problem and later writes still sync", poison_never_blocks),
        case!("client.too-old.no-reissue-after-sent", ["CLIENT-10", "CLIENT-14", "ERR-6"], Must,
            "a Mutation sent before and then refused as mutation-too-old is dead-lettered, never re-issued", no_reissue_after_sent),
        case!("client.too-old.deleted-record-stays-deleted", ["CLIENT-21"], Must,
            "a never-sent edit refused as too old for a Record deleted meanwhile is dead-lettered; the delete stands", deleted_record_stays_deleted),
        case!("client.hlc.stamps", ["HLC-11", "ID-3", "ID-4"], Must,
            "HLCs increase with seq, their node is the Client ID, seq counts from 1 by one, Op IDs are unique", hlc_stamps),
        case!("client.hlc.merges-server-clock", ["HLC-5"], Must,
            "after a response whose Driftless-Clock is ahead, the next Mutation's HLC is greater", merges_server_clock),
        case!("client.coalesce.never-merges-increments", ["CLIENT-12"], Must,
            "increments and set additions are each sent, none combined or dropped", never_merges_increments),
        case!("client.coalesce.only-never-sent-puts-and-patches", ["CLIENT-11", "CLIENT-12", "CLIENT-2"], Must,
            "only never-sent puts and patches wholly overwritten by a later write are dropped; a sent one is resent or asked for, and the Server ends as if all were applied", coalesce_only_as_allowed),
        case!("client.hlc.step-back-bounded-by-applied", ["HLC-12", "HLC-11", "HLC-9"], Must,
            "after clock-skew with a Driftless-Clock far below the Client's applied Stamps, the re-issued HLC is above every HLC the Client had applied", step_back_bounded_by_applied),
        case!("client.view.pending-rebased-and-equal-when-drained", ["CLIENT-8", "CLIENT-22", "MERGE-3"], Must,
            "a pending write shows over another Client's change, and the view equals the Server once drained", view_rebase),
        case!("client.view.acknowledged-stays-until-pulled", ["CLIENT-23"], Should,
            "a write acknowledged before a failed pull stays in the view", acknowledged_stays),
        case!("client.compat.unknown-members-ignored", ["HTTP-10", "DISC-5"], Must,
            "unknown members in every answer and an unknown feature name change nothing", unknown_members_ignored),
        case!("client.compat.uncoded-after-415", ["HTTP-19"], Must,
            "a gzip-coded push answered 415 unsupported-media-type is sent again without the coding", uncoded_after_415),
        case!("client.pull.resync-after-cursor-expired", ["PULL-15", "PULL-1", "CLIENT-2"], Must,
            "after cursor-expired the Client pulls from no Cursor, drops what the Mirror held, keeps its writes", resync_after_cursor_expired),
        case!("client.limits.pushes-within-announced-limits", ["LIM-7", "CLIENT-17"], Must,
            "with mutations_per_push_max 2 announced, no push carries more than 2 Mutations", pushes_within_limits),
        case!("client.limits.too-deep-write-never-sent", ["CLIENT-18", "CLIENT-5"], Must,
            "a write nesting deeper than the announced json_depth_max is dead-lettered unsent; the writes made with it still sync", too_deep_write_never_sent),
        case!("client.version.v1-paths", ["VER-1"], Must,
            "every request goes to the discovery document or under the /v1/ prefix", v1_paths),
        case!("client.evolution.schema-version-set", ["EVO-1"], Must,
            "Mutations of a Collection whose Collection Schema the Client knows carry its version", schema_version_set),
        case!("client.evolution.old-version-writes-upcast", ["EVO-1", "EVO-4", "EVO-9", "CLIENT-22"], Must,
            "a Client that knows version 1 writes under it after version 2 (a rename) is registered; its writes are upcast and its view ends equal to the Server's", old_version_writes_upcast),
        case!("client.evolution.unknown-fields-kept", ["EVO-10"], Must,
            "a read-modify-write keeps a Field the Client does not know", unknown_fields_kept),
    ]
}

/// Client MUSTs the kit cannot check through an adapter, and why.
pub const NOT_CHECKABLE: &[(&str, &str)] = &[
    ("ORD-3", "a Client relying on arrival order is a design property, not visible in its traffic"),
    ("INT-9", "the adapter protocol has no audit operation; the reference client's tests check it"),
    ("PRIV-4", "the adapter protocol has no sign-out operation; what a Client deletes on sign-out is an application flow"),
    ("VER-5", "needs a Server announcing a lower minor version than the Client knows; the reference Server knows only 1.0"),
    ("CLIENT-20", "needs a Server that answers before reading a large body; covered by the reference client's tests"),
];

fn ops(pushes: &[Exchange]) -> Vec<Value> {
    pushes
        .iter()
        .flat_map(|p| p.body["mutations"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn problem(status: u16, code: &str, detail: &str) -> Value {
    json!({"type": format!("urn:driftless:problem:{code}"), "title": code, "status": status, "detail": detail})
}

fn durable_across_sigkill(k: &mut Kit) -> CaseResult {
    k.start()?;
    let mut ops = Vec::new();
    for i in 0..3 {
        ops.push(k.write(
            "notes",
            &format!("n{i}"),
            json!({"kind": "put", "value": {"i": i}}),
        )?);
    }
    k.kill();
    k.start()?;
    let status = k.call(json!({"op": "status", "op_ids": ops}))?;
    ensure(status["pending"] == 3, || {
        format!(
            "[CLIENT-1] after SIGKILL the Outbox holds {} of 3 writes",
            status["pending"]
        )
    })?;
    k.sync()?;
    for i in 0..3 {
        let v = k.server_value("notes", &format!("n{i}"))?;
        ensure(v == Some(json!({"i": i})), || {
            format!("[CLIENT-2] n{i} on the Server is {v:?}")
        })?;
    }
    Ok(())
}

fn acknowledgement_survives_sigkill(k: &mut Kit) -> CaseResult {
    k.start()?;
    let op = k.write("notes", "n1", json!({"kind": "put", "value": {"a": 1}}))?;
    k.sync()?;
    // Killed right after the sync that was acknowledged: nothing else ran in between.
    k.kill();
    k.start()?;
    let status = k.call(json!({"op": "status", "op_ids": [op]}))?;
    let Some(receipts) = status["receipts"].as_object() else {
        return Err(Verdict::Skip(
            "the Client reports no receipts in status".into(),
        ));
    };
    let receipt = receipts
        .get(&op)
        .map_or(Value::Null, |r| r["status"].clone());
    ensure(status["pending"] == 1 || receipt == "acknowledged", || {
        format!(
            "[CLIENT-2] after an acknowledged sync and SIGKILL the write is neither in the Outbox ({} pending) nor acknowledged (receipt {receipt})",
            status["pending"]
        )
    })
}

fn unknown_fate_kept(k: &mut Kit) -> CaseResult {
    // A short policy, so that a Client that ignores attempts_per_sync still gives up soon.
    k.announce_backoff(5, 2, 20);
    k.options(json!({"attempts_per_sync": 1}));
    k.start()?;
    k.write(
        "notes",
        "n1",
        json!({"kind": "put", "value": {"t": "kept"}}),
    )?;
    k.layer
        .script(on("POST", "/push", usize::MAX, |_| Action::Reset));
    let _ = k.try_sync()?;
    ensure(!k.layer.pushes().is_empty(), || {
        "the Client never pushed".into()
    })?;
    let cut = ops(&k.layer.pushes())[0].clone();
    k.kill();
    k.layer.clear();
    k.start()?;
    k.sync()?;
    let again: Vec<Value> = ops(&k.layer.pushes())
        .into_iter()
        .filter(|m| m["op_id"] == cut["op_id"])
        .collect();
    ensure(again.iter().all(|m| m == &cut), || {
        format!("[MAN-5] the write was pushed again with another body: {again:?} vs {cut}")
    })?;
    let v = k.server_value("notes", "n1")?;
    ensure(v == Some(json!({"t": "kept"})), || {
        format!("[CLIENT-2] a write whose push was cut off is not on the Server after a restart and sync: {v:?}")
    })
}

fn same_op_id_and_body(k: &mut Kit) -> CaseResult {
    k.start()?;
    k.write(
        "likes",
        "l1",
        json!({"kind": "increment", "field": "n", "by": 1}),
    )?;
    k.layer.script(on("POST", "/push", 1, |_| Action::Drop));
    k.sync()?;
    let pushed = ops(&k.layer.pushes());
    ensure(pushed.len() >= 2, || {
        format!(
            "the Mutation was sent {} time(s) after a lost acknowledgement",
            pushed.len()
        )
    })?;
    for p in &pushed[1..] {
        ensure(p == &pushed[0], || {
            format!(
                "[CLIENT-3] the retry differs from the first attempt: {} vs {}",
                p, pushed[0]
            )
        })?;
    }
    let status = k.call(json!({"op": "status"}))?;
    ensure(status["pending"] == 0, || {
        format!(
            "[PUSH-8] {} Mutations still pending after the retry was acknowledged",
            status["pending"]
        )
    })?;
    let v = k.server_value("likes", "l1")?;
    ensure(v == Some(json!({"n": 1})), || {
        format!("the increment was applied other than once: {v:?}")
    })
}

fn retry_after_floor(k: &mut Kit) -> CaseResult {
    k.start()?;
    k.write("notes", "n1", json!({"kind": "put", "value": {}}))?;
    k.layer.script(on("POST", "/push", 1, |_| {
        Action::Answer(Response::json(
            503,
            &problem(
                503,
                "kit-future-outage",
                "kit: a Problem type no Client knows",
            ),
            &[("Retry-After", "1")],
        ))
    }));
    k.sync()?;
    let log = k.layer.log();
    let refused = log
        .iter()
        .position(|e| e.status == 503)
        .ok_or_else(|| Verdict::Error("no push was refused".into()))?;
    let next = log
        .get(refused + 1)
        .ok_or_else(|| Verdict::Fail("[RETRY-3] nothing was sent after the 503".into()))?;
    let waited = next.at.duration_since(log[refused].at);
    ensure(waited >= Duration::from_millis(1000), || {
        format!(
            "[RETRY-2] the next request came {} ms after Retry-After: 1",
            waited.as_millis()
        )
    })
}

/// The gaps between consecutive failed pushes and the attempt after each.
fn push_gaps(k: &Kit) -> Vec<u64> {
    let pushes = k.layer.pushes();
    pushes
        .windows(2)
        .filter(|w| w[0].status == 503)
        .map(|w| w[1].at.duration_since(w[0].at).as_millis() as u64)
        .collect()
}

/// Slack for scheduling and loopback latency on a busy machine, in milliseconds.
const SLACK_MS: u64 = 150;

fn full_jitter(k: &mut Kit) -> CaseResult {
    let (cap, failures) = (60, 24);
    k.announce_backoff(cap, 1, cap);
    k.options(json!({"attempts_per_sync": failures + 5}));
    k.start()?;
    k.write("notes", "n1", json!({"kind": "put", "value": {}}))?;
    k.layer.script(on("POST", "/push", failures, |_| {
        Action::Answer(Response::json(
            503,
            &problem(503, "unavailable", "kit"),
            &[],
        ))
    }));
    k.sync()?;
    let gaps = push_gaps(k);
    ensure(gaps.len() >= failures - 1, || {
        format!(
            "[RETRY-3] only {} retries after {failures} failures",
            gaps.len()
        )
    })?;
    // A busy machine can delay a wake-up now and then; a Client that waits past the bound does
    // so every time.
    let over = gaps.iter().filter(|g| **g > cap + SLACK_MS).count();
    ensure(over * 10 <= gaps.len(), || {
        format!(
            "[RETRY-1] {over} of {} delays exceed the announced bound {cap} ms: {gaps:?}",
            gaps.len()
        )
    })?;
    // Uniform draws from [0, 60]: half fall below 30 ms, and fewer than two of 24 has a
    // probability below 1e-5. A Client without jitter never waits less than the bound.
    let low = gaps.iter().filter(|g| **g < cap / 2).count();
    ensure(low >= 2, || {
        format!("[RETRY-1] only {low} of {} delays fall in the lower half of [0, {cap}] ms: not full jitter: {gaps:?}", gaps.len())
    })
}

fn failure_count_reset(k: &mut Kit) -> CaseResult {
    // Bounds 10, 80, 640, then 3000 ms.
    k.announce_backoff(10, 8, 3000);
    k.options(json!({"attempts_per_sync": 10}));
    k.start()?;
    let unavailable = || {
        Action::Answer(Response::json(
            503,
            &problem(503, "unavailable", "kit"),
            &[],
        ))
    };
    k.write("notes", "n1", json!({"kind": "put", "value": {}}))?;
    k.layer
        .script(on("POST", "/push", 3, move |_| unavailable()));
    k.sync()?;
    k.layer.clear();
    k.announce_backoff(10, 8, 3000);
    let before = k.layer.pushes().len();
    k.write("notes", "n2", json!({"kind": "put", "value": {}}))?;
    k.layer
        .script(on("POST", "/push", 3, move |_| unavailable()));
    k.sync()?;
    let all = push_gaps(k);
    let second = k.layer.pushes().len() - before;
    ensure(second >= 4, || {
        format!("expected four pushes in the second sync, saw {second}")
    })?;
    let gaps: Vec<u64> = all[all.len().saturating_sub(3)..].to_vec();
    // With the reset the bounds are 10, 80 and 640 ms; without it 3000 ms each, and all three
    // this short has a probability below 1%.
    let slack = 2 * SLACK_MS;
    let reset =
        gaps.len() == 3 && gaps[0] <= 10 + slack && gaps[1] <= 80 + slack && gaps[2] <= 640 + slack;
    ensure(reset, || {
        format!("[RETRY-7] after a success the delays were {gaps:?} ms; the policy's first bounds are 10, 80 and 640 ms")
    })
}

fn not_retryable_not_resent(k: &mut Kit) -> CaseResult {
    k.start()?;
    k.write("notes", "n1", json!({"kind": "put", "value": {"t": 1}}))?;
    k.layer.script(on("POST", "/push", 1, |_| {
        Action::Answer(Response::json(
            413,
            &problem(413, "payload-too-large", "kit: too large"),
            &[],
        ))
    }));
    let _ = k.try_sync()?;
    let pushes = k.layer.pushes();
    let refused = &pushes
        .first()
        .ok_or_else(|| Verdict::Error("nothing was pushed".into()))?
        .body;
    let resent = pushes.iter().skip(1).filter(|p| &p.body == refused).count();
    ensure(resent == 0, || {
        format!("[RETRY-4] the request refused as payload-too-large was resent unchanged {resent} time(s)")
    })
}

fn per_record_order(k: &mut Kit) -> CaseResult {
    k.start()?;
    let a = k.write_lane("notes", "r1", json!({"kind": "put", "value": {"v": 1}}), 0)?;
    k.write_lane("notes", "r2", json!({"kind": "put", "value": {"v": 1}}), 5)?;
    let b = k.write_lane(
        "notes",
        "r1",
        json!({"kind": "increment", "field": "n", "by": 1}),
        10,
    )?;
    let c = k.write_lane("notes", "r1", json!({"kind": "patch", "set": {"w": 2}}), 0)?;
    k.sync()?;
    let sent: Vec<String> = ops(&k.layer.pushes())
        .iter()
        .filter(|m| m["record_id"] == "r1")
        .filter_map(|m| m["op_id"].as_str().map(str::to_owned))
        .collect();
    let mut first = Vec::new();
    for o in sent {
        if !first.contains(&o) {
            first.push(o);
        }
    }
    ensure(first == vec![a.clone(), b.clone(), c.clone()], || {
        format!(
            "[CLIENT-6] r1's Mutations were sent as {first:?}, created as {:?}",
            [a, b, c]
        )
    })
}

fn poison_never_blocks(k: &mut Kit) -> CaseResult {
    k.start()?;
    // A Field name no Server accepts (chapter 03): rejected as invalid-mutation.
    let bad = k.write(
        "notes",
        "bad",
        json!({"kind": "put", "value": {"x-bad": 1}}),
    );
    let bad = match bad {
        Ok(op) => op,
        Err(Verdict::Fail(_)) => {
            return Err(Verdict::Skip(
                "the Client refuses the poison write locally; nothing to dead-letter".into(),
            ))
        }
        Err(e) => return Err(e),
    };
    k.write("notes", "ok1", json!({"kind": "put", "value": {"v": 1}}))?;
    k.sync()?;
    let dead = k.call(json!({"op": "dead_letters"}))?;
    let entry = dead["dead_letters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["op_id"] == bad.as_str())
        .cloned();
    let entry = entry.ok_or_else(|| {
        Verdict::Fail(format!(
            "[CLIENT-4] the rejected Mutation {bad} is not in the dead letters: {dead}"
        ))
    })?;
    ensure(
        entry["problem"]["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("invalid-mutation")),
        || format!("[CLIENT-4] the dead letter lacks its Problem: {entry}"),
    )?;
    k.write("notes", "ok2", json!({"kind": "put", "value": {"v": 2}}))?;
    k.sync()?;
    for (id, v) in [("ok1", 1), ("ok2", 2)] {
        let got = k.server_value("notes", id)?;
        ensure(got == Some(json!({"v": v})), || {
            format!("[CLIENT-5] {id} is not on the Server after the poison write: {got:?}")
        })?;
    }
    let status = k.call(json!({"op": "status"}))?;
    ensure(status["pending"] == 0, || {
        format!("[CLIENT-5] {} Mutations still pending", status["pending"])
    })
}

/// A push answer refusing every Mutation of the request as `mutation-too-old`.
fn too_old(e: &Exchange) -> Action {
    let results: Vec<Value> = e.body["mutations"].as_array().into_iter().flatten().map(|m| {
        // The title says clock-skew: a Client must react to the type ([ERR-6]).
        json!({"status": "rejected", "op_id": m["op_id"], "problem": {"type": "urn:driftless:problem:mutation-too-old", "title": "Clock skew too large", "status": 422, "detail": "kit: older than the Horizon"}})
    }).collect();
    Action::Answer(Response::json(
        200,
        &json!({"server_clock": e.body["mutations"][0]["hlc"], "results": results}),
        &[],
    ))
}

fn no_reissue_after_sent(k: &mut Kit) -> CaseResult {
    k.start()?;
    let op = k.write(
        "notes",
        "n1",
        json!({"kind": "patch", "set": {"late": true}}),
    )?;
    // The first attempt is lost; whatever comes next for it is refused as too old.
    k.layer.script(on("POST", "/push", 1, |_| Action::Reset));
    k.layer.script(on("POST", "/push", usize::MAX, too_old));
    k.layer.script(on("POST", "/manifest", usize::MAX, |e| {
        let entries: Vec<Value> = e.body["op_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|_| json!({"status": "unknown"}))
            .collect();
        Action::Answer(Response::json(200, &json!({"entries": entries}), &[]))
    }));
    let _ = k.try_sync()?;
    let _ = k.try_sync()?;
    let reissued: Vec<Value> = ops(&k.layer.pushes())
        .into_iter()
        .filter(|m| m["op_id"] != op.as_str())
        .collect();
    ensure(reissued.is_empty(), || {
        format!(
            "[CLIENT-10] a Mutation sent before and refused as too old was re-issued: {}",
            reissued[0]
        )
    })?;
    let dead = k.call(json!({"op": "dead_letters"}))?;
    let held = dead["dead_letters"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|d| d["op_id"] == op.as_str());
    ensure(held, || {
        format!("[CLIENT-14] the too-old Mutation is not in the dead letters: {dead}")
    })
}

fn deleted_record_stays_deleted(k: &mut Kit) -> CaseResult {
    k.other_writes(&[(
        "tasks",
        "t1",
        json!({"kind": "put", "value": {"title": "Buy milk", "done": false}}),
    )])?;
    k.start()?;
    k.sync()?;
    let op = k.write(
        "tasks",
        "t1",
        json!({"kind": "patch", "set": {"done": true}}),
    )?;
    k.other_writes(&[("tasks", "t1", json!({"kind": "delete"}))])?;
    // Refused as too old at its first send, as after a compaction; later attempts go through.
    k.layer.script(on("POST", "/push", 1, too_old));
    let _ = k.try_sync()?;
    let _ = k.try_sync()?;
    let v = k.server_value("tasks", "t1")?;
    ensure(v.is_none(), || {
        format!("[CLIENT-21] the Record deleted while the edit waited is back: {v:?}")
    })?;
    let dead = k.call(json!({"op": "dead_letters"}))?;
    let held = dead["dead_letters"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|d| d["op_id"] == op.as_str());
    ensure(held, || {
        format!("[CLIENT-21] the edit {op} is not in the dead letters: {dead}")
    })
}

/// (physical ms, logical, node) of an HLC's text.
fn hlc_parts(h: &str) -> Option<(u64, u64, &str)> {
    let mut parts = h.splitn(3, '-');
    let p = u64::from_str_radix(parts.next()?, 16).ok()?;
    let l = u64::from_str_radix(parts.next()?, 16).ok()?;
    Some((p, l, parts.next()?))
}

fn hlc_stamps(k: &mut Kit) -> CaseResult {
    k.start()?;
    for i in 0..3 {
        k.write(
            "notes",
            &format!("a{i}"),
            json!({"kind": "put", "value": {}}),
        )?;
    }
    k.sync()?;
    k.kill();
    k.start()?;
    for i in 0..3 {
        k.write(
            "notes",
            &format!("b{i}"),
            json!({"kind": "put", "value": {}}),
        )?;
    }
    k.sync()?;
    let sent = ops(&k.layer.pushes());
    let mut seen = std::collections::BTreeSet::new();
    let mut last: Option<(u64, String)> = None;
    for m in &sent {
        let (seq, hlc, op) = (
            m["seq"].as_u64().unwrap_or(0),
            m["hlc"].as_str().unwrap_or(""),
            m["op_id"].as_str().unwrap_or(""),
        );
        let (_, _, node) = hlc_parts(hlc)
            .ok_or_else(|| Verdict::Fail(format!("[HLC-11] {hlc:?} is not an HLC")))?;
        ensure(node == k.client_id, || {
            format!(
                "[HLC-11] the HLC node {node:?} is not the Client ID {:?}",
                k.client_id
            )
        })?;
        ensure(seen.insert(op.to_owned()), || {
            format!("[ID-3] Op ID {op} was used for two Mutations")
        })?;
        if let Some((s, h)) = &last {
            ensure(seq == s + 1, || format!("[ID-4] seq {seq} follows {s}"))?;
            ensure(hlc > h.as_str(), || {
                format!("[HLC-11] HLC {hlc} is not greater than the earlier {h}")
            })?;
        } else {
            ensure(seq == 1, || format!("[ID-4] the first seq is {seq}, not 1"))?;
        }
        last = Some((seq, hlc.to_owned()));
    }
    ensure(sent.len() == 6, || {
        format!("expected 6 Mutations sent, saw {}", sent.len())
    })
}

fn merges_server_clock(k: &mut Kit) -> CaseResult {
    let ahead_ms = 30_000u64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let server_clock = format!("{:012x}-0007-server", now + ahead_ms);
    let clock = server_clock.clone();
    k.layer.script(on("GET", "/pull", usize::MAX, move |_| {
        let clock = clock.clone();
        Action::Rewrite(Box::new(move |r: &mut Response| {
            r.set_header("Driftless-Clock", &clock);
            let mut b = r.json_body();
            if b.is_object() {
                b["server_clock"] = json!(clock);
                r.body = b.to_string().into_bytes();
            }
        }))
    }));
    k.start()?;
    k.sync()?;
    k.layer.clear();
    k.write("notes", "n1", json!({"kind": "put", "value": {}}))?;
    k.sync()?;
    let sent = ops(&k.layer.pushes());
    let hlc = sent
        .first()
        .and_then(|m| m["hlc"].as_str())
        .unwrap_or("")
        .to_owned();
    let (p, _, _) =
        hlc_parts(&hlc).ok_or_else(|| Verdict::Fail(format!("no HLC sent: {hlc:?}")))?;
    ensure(p >= now + ahead_ms, || {
        format!("[HLC-5] after a Driftless-Clock of {server_clock} the Client stamped {hlc}")
    })
}

fn never_merges_increments(k: &mut Kit) -> CaseResult {
    k.start()?;
    let mut mine = Vec::new();
    for _ in 0..2 {
        mine.push(k.write(
            "likes",
            "l1",
            json!({"kind": "increment", "field": "n", "by": 1}),
        )?);
    }
    mine.push(k.write(
        "likes",
        "l1",
        json!({"kind": "set_add", "field": "tags", "elements": ["a"]}),
    )?);
    mine.push(k.write(
        "likes",
        "l1",
        json!({"kind": "set_add", "field": "tags", "elements": ["b"]}),
    )?);
    k.sync()?;
    let sent: Vec<Value> = ops(&k.layer.pushes());
    for op in &mine {
        ensure(sent.iter().any(|m| m["op_id"] == op.as_str()), || {
            format!("[CLIENT-12] Mutation {op} was never sent (combined or dropped)")
        })?;
    }
    ensure(sent.len() == mine.len(), || {
        format!(
            "[CLIENT-12] {} Mutations sent for {} writes",
            sent.len(),
            mine.len()
        )
    })
}

fn view_rebase(k: &mut Kit) -> CaseResult {
    k.other_writes(&[(
        "notes",
        "r",
        json!({"kind": "put", "value": {"a": 1, "b": 1}}),
    )])?;
    k.start()?;
    k.sync()?;
    k.write("notes", "r", json!({"kind": "patch", "set": {"a": 2}}))?;
    k.write("notes", "s", json!({"kind": "put", "value": {"new": true}}))?;
    let pending = k.get("notes", "r")?;
    ensure(pending == json!({"a": 2, "b": 1}), || {
        format!("[CLIENT-22] the pending patch is not in the view: {pending}")
    })?;
    k.other_writes(&[("notes", "r", json!({"kind": "patch", "set": {"b": 2}}))])?;
    k.sync()?;
    let mine = k.call(json!({"op": "list", "collection": "notes"}))?;
    let mine: Vec<(String, Value)> = mine["records"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or("").to_owned(),
                r["value"].clone(),
            )
        })
        .collect();
    let server = k.server_list("notes")?;
    ensure(mine == server, || {
        format!("[CLIENT-8] once drained the view {mine:?} differs from the Server {server:?}")
    })?;
    ensure(
        mine.iter()
            .any(|(id, v)| id == "r" && v == &json!({"a": 2, "b": 2})),
        || format!("[MERGE-3] r is not merged: {mine:?}"),
    )
}

fn acknowledged_stays(k: &mut Kit) -> CaseResult {
    // A short policy, so that a Client that ignores attempts_per_sync still gives up soon.
    k.announce_backoff(5, 2, 20);
    k.options(json!({"attempts_per_sync": 1}));
    k.start()?;
    k.write(
        "notes",
        "n1",
        json!({"kind": "put", "value": {"t": "acked"}}),
    )?;
    k.layer.script(on("GET", "/pull", usize::MAX, |_| {
        Action::Answer(Response::json(
            503,
            &problem(503, "unavailable", "kit"),
            &[],
        ))
    }));
    let _ = k.try_sync()?;
    let on_server = k.server_value("notes", "n1")?;
    if on_server.is_none() {
        return Err(Verdict::Error(
            "the push was not applied; nothing to check".into(),
        ));
    }
    let v = k.get("notes", "n1")?;
    ensure(v == json!({"t": "acked"}), || {
        format!("[CLIENT-23] the acknowledged write vanished from the view before the pull: {v}")
    })
}

fn unknown_fields_kept(k: &mut Kit) -> CaseResult {
    k.other_writes(&[(
        "notes",
        "n1",
        json!({"kind": "put", "value": {"title": "a", "later": 7}}),
    )])?;
    k.start()?;
    k.sync()?;
    k.call(
        json!({"op": "update", "collection": "notes", "record_id": "n1", "set": {"title": "b"}}),
    )?;
    k.sync()?;
    let v = k.server_value("notes", "n1")?;
    ensure(v == Some(json!({"title": "b", "later": 7})), || {
        format!("[EVO-10] after a read-modify-write the Record is {v:?}")
    })
}

fn unknown_members_ignored(k: &mut Kit) -> CaseResult {
    k.rewrite("GET", "/.well-known/driftless", |d| {
        d["x_future"] = json!({"nested": [1, 2]});
        if let Some(f) = d["features"].as_array_mut() {
            f.push(json!("x-future-feature"));
        }
    });
    k.rewrite("GET", "/pull", |d| {
        d["x_future"] = json!(true);
        for r in d["records"].as_array_mut().into_iter().flatten() {
            r["x_future"] = json!(1);
        }
    });
    k.rewrite("POST", "/push", |d| {
        d["x_future"] = json!("later");
        for r in d["results"].as_array_mut().into_iter().flatten() {
            r["x_future"] = json!(1);
        }
    });
    k.other_writes(&[("notes", "a", json!({"kind": "put", "value": {"v": 1}}))])?;
    k.start()?;
    k.write("notes", "b", json!({"kind": "put", "value": {"v": 2}}))?;
    k.sync()?;
    let status = k.call(json!({"op": "status"}))?;
    ensure(status["pending"] == 0, || {
        format!(
            "[HTTP-10] with unknown members in the answers {} writes stay pending",
            status["pending"]
        )
    })?;
    let mine = k.call(json!({"op": "list", "collection": "notes"}))?;
    let ids: Vec<&str> = mine["records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str())
        .collect();
    ensure(ids == ["a", "b"], || {
        format!("[HTTP-10] the view holds {ids:?}, expected a and b")
    })
}

fn resync_after_cursor_expired(k: &mut Kit) -> CaseResult {
    k.other_writes(&[
        ("notes", "gone", json!({"kind": "put", "value": {"v": 1}})),
        ("notes", "kept", json!({"kind": "put", "value": {"v": 1}})),
    ])?;
    k.start()?;
    k.sync()?;
    k.other_writes(&[("notes", "gone", json!({"kind": "delete"}))])?;
    k.write("notes", "mine", json!({"kind": "put", "value": {"v": 2}}))?;
    // The Cursor expired; the tombstone of `gone` was purged by the compaction, so a pull from no
    // Cursor no longer carries it: only a Client that discards its Mirror loses `gone`.
    k.layer.script(on("GET", "cursor=", 1, |_| {
        Action::Answer(Response::json(
            410,
            &problem(410, "cursor-expired", "kit: compacted"),
            &[],
        ))
    }));
    k.rewrite("GET", "/pull", |d| {
        if let Some(rs) = d["records"].as_array_mut() {
            rs.retain(|r| r["deleted"] != true);
        }
    });
    k.sync()?;
    let log = k.layer.log();
    let expired = log
        .iter()
        .position(|e| e.status == 410)
        .ok_or_else(|| Verdict::Error("the Client never pulled with a Cursor".into()))?;
    let restarted = log[expired + 1..]
        .iter()
        .find(|e| e.method == "GET" && e.path.contains("/pull"));
    ensure(
        restarted.is_some_and(|e| !e.path.contains("cursor=")),
        || {
            format!(
                "[PULL-15] after cursor-expired the next pull was {:?}",
                restarted.map(|e| &e.path)
            )
        },
    )?;
    // [PULL-1]: every Cursor sent back is one the Server returned before.
    let mut returned = std::collections::BTreeSet::new();
    for e in log.iter().filter(|e| e.path.contains("/pull")) {
        if let Some(c) = e.path.split("cursor=").nth(1) {
            let c = c.split('&').next().unwrap_or("");
            ensure(returned.contains(c), || {
                format!("[PULL-1] the Client sent a Cursor the Server never returned: {c}")
            })?;
        }
        if let Some(c) = e.answer["cursor"].as_str() {
            returned.insert(c.to_owned());
        }
    }
    let view = k.call(json!({"op": "list", "collection": "notes"}))?;
    let ids: Vec<&str> = view["records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str())
        .collect();
    ensure(ids == ["kept", "mine"], || {
        format!("[PULL-15] after the resync the view holds {ids:?}, expected kept and mine")
    })
}

fn pushes_within_limits(k: &mut Kit) -> CaseResult {
    k.rewrite("GET", "/.well-known/driftless", |d| {
        d["limits"]["mutations_per_push_max"] = json!(2);
    });
    k.start()?;
    for i in 0..5 {
        k.write(
            "notes",
            &format!("n{i}"),
            json!({"kind": "put", "value": {"i": i}}),
        )?;
    }
    k.sync()?;
    for p in k.layer.pushes() {
        let n = p.body["mutations"].as_array().map_or(0, Vec::len);
        ensure(n <= 2, || {
            format!("[CLIENT-17] a push carried {n} Mutations; the announced limit is 2")
        })?;
    }
    for i in 0..5 {
        let v = k.server_value("notes", &format!("n{i}"))?;
        ensure(v == Some(json!({"i": i})), || {
            format!("n{i} on the Server is {v:?}")
        })?;
    }
    Ok(())
}

/// Nesting depth of a JSON value counted in brackets: a scalar is 0, `[]` and `{}` are 1.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The `json_depth_max` [`too_deep_write_never_sent`] announces and enforces.
const DEPTH_MAX: usize = 8;

fn too_deep_write_never_sent(k: &mut Kit) -> CaseResult {
    k.rewrite("GET", "/.well-known/driftless", |d| {
        d["limits"]["json_depth_max"] = json!(DEPTH_MAX);
    });
    // As a Server with that limit does: a push body nesting deeper is refused as a whole.
    k.layer.script(on("POST", "/push", usize::MAX, |e| {
        if depth(&e.body) > DEPTH_MAX {
            Action::Answer(Response::json(
                400,
                &problem(400, "invalid-json", "kit: the body nests too deep"),
                &[],
            ))
        } else {
            Action::Forward
        }
    }));
    k.start()?;
    // Made before the Client heard the limits, so it cannot refuse it when it is made
    // ([CLIENT-16]); it must not send it either ([CLIENT-18]).
    let mut deep = json!(1);
    for _ in 0..DEPTH_MAX {
        deep = json!([deep]);
    }
    let bad = match k.write(
        "notes",
        "deep",
        json!({"kind": "put", "value": {"d": deep}}),
    ) {
        Ok(op) => op,
        Err(Verdict::Fail(_)) => {
            return Err(Verdict::Skip(
                "the Client refused the deep write before it heard the limits".into(),
            ))
        }
        Err(e) => return Err(e),
    };
    k.write("notes", "ok1", json!({"kind": "put", "value": {"v": 1}}))?;
    let _ = k.try_sync()?;
    k.sync()?;
    let sent = ops(&k.layer.pushes())
        .iter()
        .any(|m| m["op_id"] == bad.as_str());
    ensure(!sent, || {
        format!("[CLIENT-18] the Mutation {bad}, too deep for any push, was sent")
    })?;
    let dead = k.call(json!({"op": "dead_letters"}))?;
    let held = dead["dead_letters"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|d| d["op_id"] == bad.as_str() && d["problem"]["type"].is_string());
    ensure(held, || {
        format!("[CLIENT-18] the too-deep Mutation {bad} is not in the dead letters with a Problem: {dead}")
    })?;
    let v = k.server_value("notes", "ok1")?;
    ensure(v == Some(json!({"v": 1})), || {
        format!("[CLIENT-5] ok1, written with the deep write, is not on the Server: {v:?}")
    })?;
    let status = k.call(json!({"op": "status"}))?;
    ensure(status["pending"] == 0, || {
        format!("[CLIENT-5] {} Mutations still pending", status["pending"])
    })
}

fn v1_paths(k: &mut Kit) -> CaseResult {
    k.start()?;
    k.write("notes", "n1", json!({"kind": "put", "value": {}}))?;
    k.sync()?;
    for e in k.layer.log() {
        ensure(
            e.path.starts_with("/v1/") || e.path.starts_with("/.well-known/driftless"),
            || format!("[VER-1] {} {} is outside the /v1/ prefix", e.method, e.path),
        )?;
    }
    ensure(!k.layer.pushes().is_empty(), || "nothing was pushed".into())
}

fn schema_version_set(k: &mut Kit) -> CaseResult {
    k.register_schema("tasks", &json!({"collection": "tasks", "version": 1, "schema": {"type": "object"}, "fields": {}, "migration": []}))?;
    k.register_schema("tasks", &json!({"collection": "tasks", "version": 2, "schema": {"type": "object"}, "fields": {}, "migration": [{"op": "add_field", "field": "due", "default": null}]}))?;
    k.other_writes(&[(
        "tasks",
        "t1",
        json!({"kind": "put", "value": {"title": "a"}}),
    )])?;
    k.start()?;
    // The first sync brings a tasks Record; the second lets the Client learn its Collection
    // Schema, as a Client fetches the schemas of the Collections it holds.
    k.sync()?;
    k.sync()?;
    k.write(
        "tasks",
        "t2",
        json!({"kind": "put", "value": {"title": "b"}}),
    )?;
    k.sync()?;
    let sent = ops(&k.layer.pushes());
    let m = sent
        .first()
        .ok_or_else(|| Verdict::Fail("nothing was pushed".into()))?;
    ensure(m["schema_version"] == 2, || {
        format!(
            "[EVO-1] the Client knew tasks' Collection Schema version 2 and sent schema_version {}",
            m["schema_version"]
        )
    })
}

/// The Mutations of `pushes` for one Record.
fn ops_of(pushes: &[Exchange], record: &str) -> Vec<Value> {
    ops(pushes)
        .into_iter()
        .filter(|m| m["record_id"] == record)
        .collect()
}

/// Every Mutation sent under `op`'s Op ID carries the same body; `Err` names the first that
/// does not.
fn same_body_per_op_id(sent: &[Value]) -> CaseResult {
    for m in sent {
        let first = sent.iter().find(|f| f["op_id"] == m["op_id"]);
        ensure(first == Some(m), || {
            format!(
                "[CLIENT-3] Op ID {} was sent with two bodies: {} and {m}",
                m["op_id"],
                first.cloned().unwrap_or_default()
            )
        })?;
    }
    Ok(())
}

fn rate_limited_like_unavailable(k: &mut Kit) -> CaseResult {
    k.start()?;
    let op = k.write("notes", "n1", json!({"kind": "put", "value": {"t": 1}}))?;
    k.layer.script(on("POST", "/push", 1, |_| {
        Action::Answer(Response::json(
            429,
            &problem(429, "rate-limited", "kit: slow down"),
            &[("Retry-After", "1")],
        ))
    }));
    k.sync()?;
    let log = k.layer.log();
    let refused = log
        .iter()
        .position(|e| e.status == 429)
        .ok_or_else(|| Verdict::Error("no push was refused".into()))?;
    let next = log
        .get(refused + 1)
        .ok_or_else(|| Verdict::Fail("[RETRY-3] nothing was sent after the 429".into()))?;
    let waited = next.at.duration_since(log[refused].at);
    ensure(waited >= Duration::from_millis(1000), || {
        format!(
            "[RETRY-2] the next request came {} ms after 429 with Retry-After: 1",
            waited.as_millis()
        )
    })?;
    let sent = ops_of(&k.layer.pushes(), "n1");
    ensure(sent.len() >= 2, || {
        format!(
            "[RETRY-3] the write was sent {} time(s) around a 429",
            sent.len()
        )
    })?;
    ensure(sent.iter().all(|m| m["op_id"] == op.as_str()), || {
        format!("[CLIENT-3] after 429 the write was resent under another Op ID: {sent:?}")
    })?;
    same_body_per_op_id(&sent)?;
    let v = k.server_value("notes", "n1")?;
    ensure(v == Some(json!({"t": 1})), || {
        format!("after the 429 and the retry n1 on the Server is {v:?}")
    })
}

fn slow_answer_unknown_fate(k: &mut Kit) -> CaseResult {
    let timeout_ms = 800;
    k.announce_backoff(5, 2, 20);
    k.options(json!({"attempts_per_sync": 5, "timeout_ms": timeout_ms}));
    k.start()?;
    let op = k.write(
        "likes",
        "l1",
        json!({"kind": "increment", "field": "n", "by": 1}),
    )?;
    // The first push reaches the Server only after the Client's timeout, and is applied then.
    k.layer.script(on("POST", "/push", 1, move |_| {
        Action::Slow(Duration::from_millis(3 * timeout_ms))
    }));
    let first = k.try_sync()?;
    if first["ok"] != true {
        // A Client may give up on this sync; the next one must settle the write.
        k.sync()?;
    }
    // Wait until the slow push was forwarded and answered, so the Server saw every attempt.
    let forwarded = k.layer.wait_for(Duration::from_secs(30), |log| {
        log.iter()
            .find(|e| e.method == "POST" && e.path.contains("/push"))
            .is_some_and(|e| e.status != 0)
    });
    if !forwarded {
        return Err(Verdict::Error("the slow push was never forwarded".into()));
    }
    let log = k.layer.log();
    let sent = ops_of(&k.layer.pushes(), "l1");
    ensure(sent.iter().all(|m| m["op_id"] == op.as_str()), || {
        format!(
            "[CLIENT-3] after a timed-out push the write was sent under another Op ID: {sent:?}"
        )
    })?;
    same_body_per_op_id(&sent)?;
    let asked = log.iter().any(|e| {
        e.path.contains("/manifest")
            && e.body["op_ids"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|i| i == op.as_str()))
    });
    ensure(sent.len() >= 2 || asked, || {
        "[CLIENT-7] after a timed-out push the write was neither resent nor asked of the manifest"
            .into()
    })?;
    let status = k.call(json!({"op": "status"}))?;
    ensure(status["pending"] == 0, || {
        format!(
            "[CLIENT-2] {} Mutations pending after the sync",
            status["pending"]
        )
    })?;
    let v = k.server_value("likes", "l1")?;
    ensure(v == Some(json!({"n": 1})), || {
        format!("[ID-5] the increment sent into a timeout was applied other than once: {v:?}")
    })
}

fn coalesce_only_as_allowed(k: &mut Kit) -> CaseResult {
    k.announce_backoff(5, 2, 20);
    k.options(json!({"attempts_per_sync": 1}));
    k.start()?;
    // A put that is sent (its push cut off unforwarded), so its fate is unknown.
    let sent_put = k.write("notes", "r1", json!({"kind": "put", "value": {"a": 1}}))?;
    k.layer
        .script(on("POST", "/push", usize::MAX, |_| Action::Reset));
    let _ = k.try_sync()?;
    let cut = k.layer.log().len();
    ensure(!k.layer.pushes().is_empty(), || {
        "the Client never pushed".into()
    })?;
    k.layer.clear();
    k.announce_backoff(5, 2, 20);
    let put = |v: Value| json!({"kind": "put", "value": v});
    let patch = |v: Value| json!({"kind": "patch", "set": v});
    let inc = |by: i64| json!({"kind": "increment", "field": "n", "by": by});
    // Each write with whether [CLIENT-11] lets it be dropped: never a sent one (r1's first), an
    // increment (r4), or a patch that a later one does not wholly overwrite (r5).
    let writes: [(&str, Value, bool); 9] = [
        ("r1", put(json!({"b": 2})), false),
        ("r2", patch(json!({"x": 1})), true),
        ("r2", patch(json!({"x": 2, "y": 1})), false),
        ("r3", put(json!({"v": 1})), true),
        ("r3", json!({"kind": "delete"}), false),
        ("r4", inc(1), false),
        ("r4", inc(2), false),
        ("r5", patch(json!({"x": 1})), false),
        ("r5", patch(json!({"y": 1})), false),
    ];
    let mut must_send = Vec::new();
    for (id, effect, droppable) in writes {
        let op = k.write("notes", id, effect)?;
        if !droppable {
            must_send.push(op);
        }
    }
    k.sync()?;
    let log = k.layer.log();
    let after = &log[cut.min(log.len())..];
    let pushes: Vec<Exchange> = k.layer.pushes();
    let sent = ops(&pushes);
    let names = |e: &Exchange, key: &str| {
        e.body[key].as_array().is_some_and(|xs| {
            xs.iter()
                .any(|x| x == sent_put.as_str() || x["op_id"] == sent_put.as_str())
        })
    };
    let followed_up = after.iter().any(|e| {
        (e.path.contains("/push") && names(e, "mutations"))
            || (e.path.contains("/manifest") && names(e, "op_ids"))
    });
    ensure(followed_up, || {
        format!("[CLIENT-11] the put {sent_put} was sent, then dropped when a later put of its Record came: never resent nor asked of the manifest")
    })?;
    for op in &must_send {
        ensure(sent.iter().any(|m| m["op_id"] == op.as_str()), || {
            format!("[CLIENT-11] [CLIENT-12] Mutation {op} was never sent (combined or dropped) though no rule lets it be")
        })?;
    }
    same_body_per_op_id(&sent)?;
    let status = k.call(json!({"op": "status"}))?;
    ensure(status["pending"] == 0, || {
        format!(
            "[CLIENT-2] {} Mutations pending after the sync",
            status["pending"]
        )
    })?;
    let expect = [
        ("r1", Some(json!({"b": 2}))),
        ("r2", Some(json!({"x": 2, "y": 1}))),
        ("r3", None),
        ("r5", Some(json!({"x": 1, "y": 1}))),
    ];
    for (id, want) in expect {
        let got = k.server_value("notes", id)?;
        ensure(got == want, || {
            format!("[CLIENT-11] {id} on the Server is {got:?}, as if every write were applied it is {want:?}")
        })?;
    }
    let r4 = k.server_value("notes", "r4")?.unwrap_or_default();
    ensure(r4["n"] == 3, || {
        format!("[CLIENT-12] r4 on the Server is {r4}; its two increments make n 3")
    })
}

fn step_back_bounded_by_applied(k: &mut Kit) -> CaseResult {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    // Within the reference Server's skew bound (60 s): Mutations stamped after it are applied.
    let ahead_ms = 30_000u64;
    let ahead = format!("{:012x}-0000-server", now + ahead_ms);
    k.layer.script(on("GET", "/pull", usize::MAX, move |_| {
        let ahead = ahead.clone();
        Action::Rewrite(Box::new(move |r: &mut Response| {
            r.set_header("Driftless-Clock", &ahead)
        }))
    }));
    k.start()?;
    k.sync()?;
    k.layer.clear();
    k.write("notes", "a", json!({"kind": "put", "value": {"v": 1}}))?;
    k.sync()?;
    // Every HLC of the Client's that the Server answered as applied.
    let mut applied: Vec<(u64, u64)> = Vec::new();
    for p in k.layer.pushes() {
        let results = p.answer["results"].as_array().cloned().unwrap_or_default();
        for (m, r) in ops(std::slice::from_ref(&p)).iter().zip(results) {
            let ok = r["status"] == "applied" || r["original"]["status"] == "applied";
            if let (true, Some((pm, l, _))) = (ok, hlc_parts(m["hlc"].as_str().unwrap_or(""))) {
                applied.push((pm, l));
            }
        }
    }
    let top = applied.iter().max().copied().ok_or_else(|| {
        Verdict::Error("no Mutation of the Client was applied; nothing to step back from".into())
    })?;
    if top.0 < now + ahead_ms {
        return Err(Verdict::Error(format!(
            "the Client's applied Stamp {top:?} is not ahead of the wall clock ([HLC-5] is checked elsewhere); nothing to check"
        )));
    }
    // The next push is refused as clock-skew with a Server clock an hour behind: stepping back
    // to it alone would stamp the re-issued write at the wall clock, below the applied one.
    let below = format!("{:012x}-0000-server", now.saturating_sub(3_600_000));
    k.layer.clear();
    let clock = below.clone();
    k.layer.script(on("POST", "/push", 1, move |e| {
        let results: Vec<Value> = e.body["mutations"].as_array().into_iter().flatten().map(|m| {
            json!({"status": "rejected", "op_id": m["op_id"], "problem": problem(422, "clock-skew", "kit: ahead of the Server's clock")})
        }).collect();
        Action::Answer(Response::json(
            200,
            &json!({"server_clock": clock, "results": results}),
            &[("Driftless-Clock", clock.as_str())],
        ))
    }));
    let skewed = k.write("notes", "b", json!({"kind": "put", "value": {"v": 2}}))?;
    let _ = k.try_sync()?;
    let reissued: Vec<Value> = ops_of(&k.layer.pushes(), "b")
        .into_iter()
        .filter(|m| m["op_id"] != skewed.as_str())
        .collect();
    let Some(m) = reissued.first() else {
        return Err(Verdict::Skip(
            "the Client did not re-issue after clock-skew ([HLC-9] is a SHOULD); no step back to check".into(),
        ));
    };
    let hlc = m["hlc"].as_str().unwrap_or("");
    let (p, l, _) =
        hlc_parts(hlc).ok_or_else(|| Verdict::Fail(format!("[HLC-11] {hlc:?} is not an HLC")))?;
    ensure((p, l) > top, || {
        format!(
            "[HLC-12] after clock-skew with Driftless-Clock {below} the re-issued write was stamped {hlc}, not above the Client's applied Stamp {:012x}-{:04x}",
            top.0, top.1
        )
    })
}

fn old_version_writes_upcast(k: &mut Kit) -> CaseResult {
    let v1 = json!({"collection": "tasks", "version": 1, "schema": {"type": "object"}, "fields": {}, "migration": []});
    let v2 = json!({"collection": "tasks", "version": 2, "schema": {"type": "object"}, "fields": {}, "migration": [{"op": "rename_field", "from": "title", "to": "name"}]});
    k.register_schema("tasks", &v1)?;
    k.other_writes(&[(
        "tasks",
        "t1",
        json!({"kind": "put", "value": {"title": "a"}}),
    )])?;
    k.start()?;
    // The Client learns version 1, as it fetches the schemas of the Collections it holds.
    k.sync()?;
    k.sync()?;
    // Version 2 comes while the Client knows only version 1; it keeps writing in its shape.
    k.register_schema("tasks", &v2)?;
    let put = k.write(
        "tasks",
        "t2",
        json!({"kind": "put", "value": {"title": "b"}}),
    )?;
    let patch = k.write(
        "tasks",
        "t1",
        json!({"kind": "patch", "set": {"title": "c", "done": true}}),
    )?;
    k.sync()?;
    for m in ops(&k.layer.pushes()) {
        if m["op_id"] == put.as_str() || m["op_id"] == patch.as_str() {
            // Absent is version 1 too ([EVO-2]), for a Client that fetches no schemas.
            ensure(
                m["schema_version"] == 1 || m["schema_version"].is_null(),
                || {
                    format!(
                        "[EVO-1] a write made under version 1 was sent with schema_version {}",
                        m["schema_version"]
                    )
                },
            )?;
        }
    }
    for (id, want) in [
        ("t1", json!({"name": "c", "done": true})),
        ("t2", json!({"name": "b"})),
    ] {
        let got = k.server_value("tasks", id)?;
        ensure(got.as_ref() == Some(&want), || {
            format!("[EVO-4] the version-1 write of {id} was not upcast: the Server holds {got:?}, expected {want}")
        })?;
    }
    k.sync()?;
    let mine = k.call(json!({"op": "list", "collection": "tasks"}))?;
    let mine: Vec<(String, Value)> = mine["records"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or("").to_owned(),
                r["value"].clone(),
            )
        })
        .collect();
    let server = k.server_list("tasks")?;
    ensure(mine == server, || {
        format!("[CLIENT-22] [EVO-9] after version 2 the view {mine:?} differs from the Server's upcast state {server:?}")
    })
}

fn uncoded_after_415(k: &mut Kit) -> CaseResult {
    k.start()?;
    // A body of a few KiB, which a Client that codes request bodies codes.
    let text = "kit ".repeat(1024);
    k.write(
        "notes",
        "n1",
        json!({"kind": "put", "value": {"text": text}}),
    )?;
    let mut refused = false;
    k.layer.script(Box::new(move |e: &Exchange| {
        if refused || e.method != "POST" || !e.path.contains("/push") || e.coding.is_none() {
            return None;
        }
        refused = true;
        Some(Action::Answer(Response::json(
            415,
            &problem(
                415,
                "unsupported-media-type",
                "kit: this Server takes no coded bodies",
            ),
            &[("Accept-Encoding", "")],
        )))
    }));
    let synced = k.try_sync()?;
    let pushes = k.layer.pushes();
    let Some(at) = pushes.iter().position(|p| p.coding.is_some()) else {
        return Err(Verdict::Skip(
            "the Client sends no coded request bodies ([HTTP-16] is optional)".into(),
        ));
    };
    let again = pushes.get(at + 1).ok_or_else(|| {
        Verdict::Fail(format!(
            "[HTTP-19] after 415 to a coded push nothing was pushed again (sync answered {synced})"
        ))
    })?;
    ensure(again.coding.is_none(), || {
        format!(
            "[HTTP-19] after 415 the push was sent again with Content-Encoding {:?}",
            again.coding
        )
    })?;
    ensure(
        again.body["mutations"] == pushes[at].body["mutations"],
        || "[HTTP-19] the uncoded push carries other Mutations than the coded one".into(),
    )?;
    let v = k.server_value("notes", "n1")?;
    ensure(v == Some(json!({"text": text})), || {
        "[HTTP-19] after 415 and the uncoded push the write is not on the Server".into()
    })
}
