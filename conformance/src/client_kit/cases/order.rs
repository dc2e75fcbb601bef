//! Order and rejection: per-Record order, dead letters, `mutation-too-old` (`[CLIENT-4..6]`, `[CLIENT-10]`, `[CLIENT-21]`).

use super::*;

pub(super) fn per_record_order(k: &mut Kit) -> CaseResult {
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

pub(super) fn poison_never_blocks(k: &mut Kit) -> CaseResult {
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
pub(super) fn too_old(e: &Exchange) -> Action {
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

pub(super) fn no_reissue_after_sent(k: &mut Kit) -> CaseResult {
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

pub(super) fn deleted_record_stays_deleted(k: &mut Kit) -> CaseResult {
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
