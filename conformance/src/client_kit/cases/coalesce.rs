//! What a Client may and may not coalesce (`[CLIENT-11]`, `[CLIENT-12]`).

use super::*;

pub(super) fn never_merges_increments(k: &mut Kit) -> CaseResult {
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

pub(super) fn coalesce_only_as_allowed(k: &mut Kit) -> CaseResult {
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
