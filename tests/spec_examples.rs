//! The spec's examples checked against the protocol's rules, not only against their JSON
//! Schemas: a schema accepts a Cursor that no Server would issue, or a Record with `conflicts`
//! but no `schema_version` (only a Collection Schema can declare a `keep_both` Field).

mod common;

use serde_json::Value;

/// Every Cursor in a JSON example or a transcript, with where it stands.
fn cursors() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in common::fences() {
        let at = format!("{}:{}", f.file, f.line);
        for piece in f.body.split(['"', '&', '?', ' ', '\n']) {
            if let Some(c) = piece.strip_prefix("cursor=") {
                out.push((at.clone(), c.to_owned()));
            }
        }
        for (i, _) in f.body.match_indices("\"cursor\":") {
            let rest = f.body[i + "\"cursor\":".len()..].trim_start();
            if let Some(value) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                out.push((at.clone(), value.to_owned()));
            }
        }
    }
    out
}

/// The examples' Space is `demo`; their Cursors must be ones a Server could have issued for it,
/// tied to it ([PULL-13]) the way the reference server ties them.
#[test]
fn example_cursors_belong_to_the_example_space() {
    let found = cursors();
    assert!(
        found.len() >= 4,
        "only {} cursors found: {found:?}",
        found.len()
    );
    for (at, cursor) in found {
        assert!(
            driftless_server::service::decode_cursor("demo", &cursor).is_some(),
            "{at}: cursor {cursor:?} is not tied to the Space demo"
        );
        assert!(
            driftless_server::service::decode_cursor("other", &cursor).is_none(),
            "{at}: cursor {cursor:?} would also be accepted for another Space"
        );
    }
}

fn records_in(v: &Value, out: &mut Vec<Value>) {
    if v.get("collection").is_some() && v.get("change_seq").is_some() {
        out.push(v.clone());
    }
    match v {
        Value::Array(items) => items.iter().for_each(|i| records_in(i, out)),
        Value::Object(m) => m.values().for_each(|i| records_in(i, out)),
        _ => {}
    }
}

/// `conflicts` come only from `keep_both` Fields, which only a Collection Schema declares, so a
/// Record with conflicts has a `schema_version` (chapter 05, record fields).
#[test]
fn example_records_with_conflicts_carry_their_schema_version() {
    let mut records = Vec::new();
    for f in common::fences()
        .iter()
        .filter(|f| f.info.starts_with("json"))
    {
        if let Ok(v) = serde_json::from_str::<Value>(&f.body) {
            records_in(&v, &mut records);
        }
    }
    let with_conflicts: Vec<&Value> = records
        .iter()
        .filter(|r| r.get("conflicts").is_some())
        .collect();
    assert!(
        !with_conflicts.is_empty(),
        "no example record with conflicts found"
    );
    for r in with_conflicts {
        assert!(
            r.get("schema_version").is_some(),
            "record with conflicts but no schema_version: {r}"
        );
    }
}
