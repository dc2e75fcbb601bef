//! The Outbox across SIGKILL and restart (`[CLIENT-1]`, `[CLIENT-2]`).

use super::*;

pub(super) fn durable_across_sigkill(k: &mut Kit) -> CaseResult {
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

pub(super) fn acknowledgement_survives_sigkill(k: &mut Kit) -> CaseResult {
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

pub(super) fn unknown_fate_kept(k: &mut Kit) -> CaseResult {
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
