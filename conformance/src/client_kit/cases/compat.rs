//! Compatibility: unknown members, the /v1/ prefix, coded bodies (`[HTTP-10]`, `[VER-1]`, `[HTTP-19]`).

use super::*;

pub(super) fn unknown_members_ignored(k: &mut Kit) -> CaseResult {
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

pub(super) fn v1_paths(k: &mut Kit) -> CaseResult {
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

pub(super) fn uncoded_after_415(k: &mut Kit) -> CaseResult {
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
