//! `driftless schema check` and `driftless schema migrate-check` as child processes.

mod common;

use std::path::Path;

use common::server::driftless;
use serde_json::{json, Value};

fn write(dir: &Path, name: &str, v: &Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, v.to_string()).unwrap();
    p.display().to_string()
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = driftless().arg("schema").args(args).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn compatible_is_0_and_incompatible_is_1() {
    let d = tempfile::tempdir().unwrap();
    let old = write(
        d.path(),
        "old.json",
        &json!({"type": "string", "maxLength": 10}),
    );
    let new = write(
        d.path(),
        "new.json",
        &json!({"type": "string", "maxLength": 5}),
    );
    assert_eq!(run(&["check", &old, &old, "--mode", "full"]).0, 0);
    let (code, out, _) = run(&["check", &old, &new]);
    assert_eq!(code, 1);
    assert!(
        out.contains("max-length-decreased") && out.contains("counterexample"),
        "{out}"
    );
    assert_eq!(run(&["check", &old, &new, "--mode", "forward"]).0, 0);
    let (code, out, _) = run(&["check", &old, &new, "--format", "sarif"]);
    assert_eq!(code, 1);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["runs"][0]["results"][0]["ruleId"],
        "max-length-decreased"
    );
}

#[test]
fn unreadable_inputs_are_exit_2_with_one_line_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let good = write(d.path(), "good.json", &json!({"type": "string"}));
    let not_json = d.path().join("broken.json");
    std::fs::write(&not_json, "{nope").unwrap();
    let bad_schema = write(d.path(), "bad-schema.json", &json!({"type": 12}));
    let bad_ref = write(
        d.path(),
        "bad-ref.json",
        &json!({"$ref": "#/$defs/missing"}),
    );
    let missing = d.path().join("missing.json").display().to_string();
    for (file, why) in [
        (not_json.display().to_string(), "not JSON"),
        (bad_schema, "not a valid JSON Schema"),
        (bad_ref, "cannot be compiled"),
        (missing, "cannot read"),
    ] {
        let (code, _, err) = run(&["check", &good, &file]);
        assert_eq!(code, 2, "{file}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&file) && err.contains(why), "{err}");
    }
}

#[test]
fn history_checks_each_version_against_all_earlier_ones() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "v1.json",
        &json!({"type": "object", "properties": {"a": {"type": "string"}}}),
    );
    write(
        d.path(),
        "v2.json",
        &json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {}}}),
    );
    write(
        d.path(),
        "v10.json",
        &json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {}}, "required": ["b"]}),
    );
    let (code, out, _) = run(&[
        "check",
        "--history",
        &d.path().display().to_string(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 1);
    let checks: Vec<Value> = serde_json::from_str(&out).unwrap();
    let pairs: Vec<(String, String)> = checks
        .iter()
        .map(|c| {
            (
                Path::new(c["old"].as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into(),
                Path::new(c["new"].as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into(),
            )
        })
        .collect();
    let names = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        pairs,
        vec![
            names("v1.json", "v2.json"),
            names("v1.json", "v10.json"),
            names("v2.json", "v10.json")
        ]
    );
    // v1 -> v2 adds an optional field; v10 requires it, which v1 and v2 data lack.
    let verdicts: Vec<(&Value, Vec<&Value>)> = checks
        .iter()
        .map(|c| {
            let rules = c["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| &f["rule"])
                .collect();
            (&c["compatible"], rules)
        })
        .collect();
    let rule = json!("required-property-added");
    assert_eq!(
        verdicts,
        vec![
            (&json!(true), vec![]),
            (&json!(false), vec![&rule]),
            (&json!(false), vec![&rule]),
        ],
        "{out}"
    );
}

fn doc(version: u32, schema: Value, migration: Value) -> Value {
    json!({"collection": "tasks", "version": version, "schema": schema, "fields": {}, "migration": migration})
}

#[test]
fn migrate_check_accepts_a_sound_migration() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "v1.json",
        &doc(
            1,
            json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}, "required": ["name"]}),
            json!([]),
        ),
    );
    write(
        d.path(),
        "v2.json",
        &doc(
            2,
            json!({"type": "object", "properties": {"title": {"type": "string"}, "priority": {"type": "integer"}}, "required": ["title", "priority"]}),
            json!([{"op": "rename_field", "from": "name", "to": "title"}, {"op": "add_field", "field": "priority", "default": 0}]),
        ),
    );
    let (code, out, err) = run(&[
        "migrate-check",
        &d.path().display().to_string(),
        "--cases",
        "64",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 migration(s) verified"), "{out}");
}

#[test]
fn migrate_check_prints_an_instance_that_a_migration_breaks() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "v1.json",
        &doc(
            1,
            json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
            json!([]),
        ),
    );
    // The default does not satisfy the new schema, and old values of n are not strings.
    write(
        d.path(),
        "v2.json",
        &doc(
            2,
            json!({"type": "object", "properties": {"n": {"type": "string"}, "p": {"type": "integer"}}, "required": ["p"]}),
            json!([{"op": "add_field", "field": "p", "default": "high"}]),
        ),
    );
    let (code, out, _) = run(&[
        "migrate-check",
        &d.path().display().to_string(),
        "--cases",
        "64",
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("migration 1 -> 2 FAILS: instance"), "{out}");
}

#[test]
fn undecidable_fails_by_default_and_is_a_warning_when_allowed() {
    let d = tempfile::tempdir().unwrap();
    // A backreference is outside the regular subset: inclusion is not decided.
    let old = write(
        d.path(),
        "old.json",
        &json!({"type": "string", "pattern": "^(a)\\1$"}),
    );
    let new = write(
        d.path(),
        "new.json",
        &json!({"type": "string", "pattern": "^(a)\\1b?$"}),
    );
    let (code, out, _) = run(&["check", &old, &new]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error undecidable"), "{out}");
    let (code, out, _) = run(&["check", &old, &new, "--allow-undecidable"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("warning undecidable"), "{out}");
}

#[test]
fn ref_cycle_without_progress_is_exit_2_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let good = write(d.path(), "good.json", &json!({"type": "string"}));
    let cycle = write(d.path(), "cycle.json", &json!({"$ref": "#"}));
    let (code, out, err) = run(&["check", &good, &cycle]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("cycle.json") && err.contains("refers to itself"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn recursive_schemas_are_decided_without_crashing() {
    let d = tempfile::tempdir().unwrap();
    let list =
        json!({"type": "object", "properties": {"v": {"type": "integer"}, "next": {"$ref": "#"}}});
    let old = write(d.path(), "old.json", &list);
    let (code, out, err) = run(&["check", &old, &old, "--mode", "full"]);
    assert_eq!(code, 0, "{out}{err}");
    let mut narrowed = list.clone();
    narrowed["properties"]["v"]["maximum"] = json!(10);
    let new = write(d.path(), "new.json", &narrowed);
    let (code, out, _) = run(&["check", &old, &new]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("maximum-decreased"), "{out}");
}

#[test]
fn deep_input_is_a_clear_exit_2_not_a_json_error() {
    let d = tempfile::tempdir().unwrap();
    let good = write(d.path(), "good.json", &json!({"type": "string"}));
    let deep = d.path().join("deep.json");
    let text = format!("{}{{}}{}", "{\"items\":".repeat(200), "}".repeat(200));
    std::fs::write(&deep, text).unwrap();
    let (code, _, err) = run(&["check", &good, &deep.display().to_string()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("deep.json") && err.contains("nested deeper than"),
        "{err}"
    );
}
