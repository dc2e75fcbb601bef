//! The local view over pending and acknowledged writes (`[CLIENT-8]`, `[CLIENT-22]`, `[CLIENT-23]`).

use super::*;

pub(super) fn view_rebase(k: &mut Kit) -> CaseResult {
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

pub(super) fn acknowledged_stays(k: &mut Kit) -> CaseResult {
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
