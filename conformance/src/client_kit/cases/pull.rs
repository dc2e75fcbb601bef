//! Pulling after an expired Cursor (`[PULL-15]`).

use super::*;

pub(super) fn resync_after_cursor_expired(k: &mut Kit) -> CaseResult {
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
