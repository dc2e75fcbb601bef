//! Schema evolution from the Client side (`[EVO-*]`).

use super::*;

pub(super) fn unknown_fields_kept(k: &mut Kit) -> CaseResult {
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

pub(super) fn schema_version_set(k: &mut Kit) -> CaseResult {
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

pub(super) fn old_version_writes_upcast(k: &mut Kit) -> CaseResult {
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
