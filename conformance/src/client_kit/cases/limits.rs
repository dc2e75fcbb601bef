//! Announced limits: batch size and nesting depth (`[LIM-7]`, `[CLIENT-17]`, `[CLIENT-18]`).

use super::*;

pub(super) fn pushes_within_limits(k: &mut Kit) -> CaseResult {
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
pub(super) fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The `json_depth_max` [`too_deep_write_never_sent`] announces and enforces.
pub(super) const DEPTH_MAX: usize = 8;

pub(super) fn too_deep_write_never_sent(k: &mut Kit) -> CaseResult {
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
