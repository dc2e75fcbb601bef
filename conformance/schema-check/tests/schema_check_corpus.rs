//! The schema-evolution checker against its fixture corpus: one folder per change, with the
//! expected verdict and rule IDs for each mode. Every rule appears in both directions, and every
//! counterexample printed is re-checked here with the `jsonschema` crate.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use driftless_schema_check::{self as checker, Direction, Mode};
use serde_json::Value;

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema-check");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn load(dir: &Path, file: &str) -> checker::Loaded {
    checker::load(file, &std::fs::read_to_string(dir.join(file)).unwrap()).unwrap()
}

#[test]
fn corpus_is_large_enough() {
    assert!(corpus().len() >= 40, "only {} fixtures", corpus().len());
}

#[test]
fn every_fixture_gets_its_expected_verdict_and_rules() {
    let mut failures = Vec::new();
    for dir in corpus() {
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let (old, new) = (load(&dir, "old.json"), load(&dir, "new.json"));
        for (mode, key) in [(Mode::Backward, "backward"), (Mode::Forward, "forward")] {
            let findings = checker::check(&old, &new, mode);
            let mut rules: Vec<&str> = findings.iter().map(|f| f.rule).collect();
            rules.sort_unstable();
            let want: Vec<&str> = expected[key]["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            let compatible = checker::compatible(&findings);
            if rules != want || Value::Bool(compatible) != expected[key]["compatible"] {
                let why: Vec<String> = findings
                    .iter()
                    .map(|f| {
                        format!(
                            "    {} {} {} | {}",
                            f.rule, f.old_pointer, f.new_pointer, f.message
                        )
                    })
                    .collect();
                failures.push(format!(
                    "{} {key}: got {rules:?} (compatible {compatible}), expected {want:?}\n{}",
                    dir.file_name().unwrap().to_string_lossy(),
                    why.join("\n")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every breaking direction of a plain-schema fixture names a witness: an instance the wider
/// schema accepts and the narrower rejects, checked here with the `jsonschema` crate alone, so
/// that the expected verdict is proven independently of the checker.
#[test]
fn every_breaking_fixture_has_a_witness_that_validation_confirms() {
    let mut failures = Vec::new();
    let mut witnessed = 0;
    for dir in corpus() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let (old, new) = (load(&dir, "old.json"), load(&dir, "new.json"));
        if old.document.is_some() || new.document.is_some() {
            continue; // documents are read through migrations; their rules are not plain inclusion
        }
        for (key, accepting, rejecting) in [
            ("backward", &old.schema, &new.schema),
            ("forward", &new.schema, &old.schema),
        ] {
            let e = &expected[key];
            let undecided_only = e["rules"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r == "undecidable");
            match e.get("witness") {
                Some(w) => {
                    if !jsonschema::is_valid(accepting, w) || jsonschema::is_valid(rejecting, w) {
                        failures.push(format!(
                            "{name} {key}: witness {w} does not show the difference"
                        ));
                    }
                    witnessed += 1;
                }
                None if e["compatible"] == false && !undecided_only => {
                    failures.push(format!("{name} {key}: breaking but no witness"));
                }
                None => {}
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(witnessed >= 50, "only {witnessed} witnesses");
}

/// Every pointer of every finding exists in the file it names (rewrites never show through).
#[test]
fn every_finding_pointer_exists_in_its_file() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for dir in corpus() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let file = |f: &str| -> Value {
            serde_json::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap()
        };
        let (old_file, new_file) = (file("old.json"), file("new.json"));
        let (old, new) = (load(&dir, "old.json"), load(&dir, "new.json"));
        for f in checker::check(&old, &new, Mode::Full) {
            for (which, doc, ptr) in [
                ("old", &old_file, &f.old_pointer),
                ("new", &new_file, &f.new_pointer),
            ] {
                checked += 1;
                if doc.pointer(ptr).is_none() {
                    failures.push(format!(
                        "{name}: {} {which} pointer {ptr:?} does not exist",
                        f.rule
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 100, "only {checked} pointers");
}

/// Forward findings describe the change from OLD to NEW: the message's "new" part is NEW's value.
#[test]
fn forward_messages_name_old_and_new_values_in_order() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/schema-check/max-length-increased");
    let (old, new) = (load(&dir, "old.json"), load(&dir, "new.json"));
    let new_max = new.schema["maxLength"].as_u64().unwrap();
    let old_max = old.schema["maxLength"].as_u64().unwrap();
    let findings = checker::check(&old, &new, Mode::Forward);
    let f = findings
        .iter()
        .find(|f| f.rule == "max-length-increased")
        .unwrap();
    assert!(
        f.message.contains(&format!("old {old_max}; new {new_max}")),
        "{}",
        f.message
    );
}

#[test]
fn every_counterexample_is_accepted_by_one_side_and_rejected_by_the_other() {
    let mut checked = 0;
    for dir in corpus() {
        let (old, new) = (load(&dir, "old.json"), load(&dir, "new.json"));
        if old.document.is_some() {
            continue; // documents compare migrated and opened variants; plain schemas suffice here
        }
        for f in checker::check(&old, &new, Mode::Full) {
            let Some(ce) = &f.counterexample else {
                continue;
            };
            let (accepting, rejecting) = match f.direction {
                Direction::Backward => (&old.schema, &new.schema),
                Direction::Forward => (&new.schema, &old.schema),
            };
            assert!(
                jsonschema::is_valid(accepting, ce),
                "{}: {ce} is not accepted",
                dir.display()
            );
            assert!(
                !jsonschema::is_valid(rejecting, ce),
                "{}: {ce} is not rejected",
                dir.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} counterexamples");
}

#[test]
fn most_errors_come_with_a_counterexample() {
    let (mut errors, mut with) = (0, 0);
    for dir in corpus() {
        let (old, new) = (load(&dir, "old.json"), load(&dir, "new.json"));
        for f in checker::check(&old, &new, Mode::Full)
            .into_iter()
            .filter(|f| f.severity == checker::Severity::Error)
        {
            errors += 1;
            with += usize::from(f.counterexample.is_some());
        }
    }
    assert!(
        with * 10 >= errors * 8,
        "{with} of {errors} errors have a counterexample"
    );
}

#[test]
fn every_rule_appears_in_both_directions() {
    let mut seen: BTreeSet<&'static str> = BTreeSet::new();
    for dir in corpus() {
        let (old, new) = (load(&dir, "old.json"), load(&dir, "new.json"));
        seen.extend(
            checker::check(&old, &new, Mode::Full)
                .iter()
                .map(|f| f.rule),
        );
    }
    for pair in [
        ("type-narrowed", "type-widened"),
        ("enum-value-removed", "enum-value-added"),
        ("enum-added", "enum-removed"),
        ("required-property-added", "required-property-removed"),
        ("max-length-decreased", "max-length-increased"),
        ("min-length-increased", "min-length-decreased"),
        ("pattern-added", "pattern-removed"),
        ("minimum-increased", "minimum-decreased"),
        ("maximum-decreased", "maximum-increased"),
        ("multiple-of-changed", "multiple-of-relaxed"),
        ("min-items-increased", "min-items-decreased"),
        ("max-items-decreased", "max-items-increased"),
        ("unique-items-added", "unique-items-removed"),
        (
            "additional-properties-closed",
            "additional-properties-opened",
        ),
        (
            "property-removed-from-closed-object",
            "property-added-to-closed-object",
        ),
        ("alternative-removed", "alternative-added"),
        ("min-properties-increased", "min-properties-decreased"),
        ("max-properties-decreased", "max-properties-increased"),
    ] {
        assert!(
            seen.contains(pair.0) && seen.contains(pair.1),
            "{pair:?} not both covered"
        );
    }
    for rule in [
        "undecidable",
        "alternatives-overlap",
        "pattern-changed",
        "merge-policy-changed",
        "rename-without-migration",
        "field-removed-without-migration",
        "required-field-without-default",
    ] {
        assert!(seen.contains(rule), "{rule} not covered");
    }
}

fn snapshot_inputs() -> (checker::Loaded, checker::Loaded, Vec<checker::Finding>) {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema-check/composite-release");
    let (old, new) = (load(&dir, "old.json"), load(&dir, "new.json"));
    let findings = checker::check(&old, &new, Mode::Full);
    (old, new, findings)
}

/// The composite fixture rendered in `format`.
fn rendered(render: fn(&[checker::output::Checked<'_>]) -> String) -> (String, usize) {
    let (_, _, findings) = snapshot_inputs();
    let checked = [checker::output::Checked {
        old: "old.json",
        new: "new.json",
        mode: "full",
        findings: &findings,
    }];
    (render(&checked), findings.len())
}

#[test]
fn text_output() {
    insta::assert_snapshot!(rendered(checker::output::text).0);
}

#[test]
fn json_output() {
    insta::assert_snapshot!(rendered(checker::output::json).0);
}

#[test]
fn sarif_output() {
    let (sarif, findings) = rendered(checker::output::sarif);
    let v: Value = serde_json::from_str(&sarif).unwrap();
    assert_eq!(v["version"], "2.1.0");
    assert_eq!(v["runs"][0]["results"].as_array().unwrap().len(), findings);
    insta::assert_snapshot!(sarif);
}

/// The repository's own wire schemas are decided (no `undecidable`) against a copy that differs
/// only in an annotation, so CI's loop over `schemas/v1` needs no `--allow-undecidable`.
#[test]
fn our_own_schemas_are_decided() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/v1");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".schema.json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut copy: Value = serde_json::from_str(&text).unwrap();
        copy["$comment"] = Value::String("a copy".into());
        let old = checker::load("old", &text).unwrap();
        let new = checker::load("new", &copy.to_string()).unwrap();
        let findings = checker::check(&old, &new, Mode::Full);
        assert!(findings.is_empty(), "{}: {findings:?}", path.display());
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} schemas");
}

/// A schema of 2,000 properties is compared property by property, with each narrowing found.
#[test]
fn wide_objects_are_compared_property_by_property() {
    let props = |max: u64| -> Value {
        let p: serde_json::Map<String, Value> = (0..2000)
            .map(|i| {
                (
                    format!("p{i}"),
                    serde_json::json!({"type": "string", "maxLength": max}),
                )
            })
            .collect();
        serde_json::json!({"type": "object", "properties": p})
    };
    let old = checker::load("old", &props(10).to_string()).unwrap();
    let new = checker::load("new", &props(5).to_string()).unwrap();
    let findings = checker::check(&old, &new, Mode::Backward);
    assert_eq!(findings.len(), 2000);
    assert!(findings.iter().all(|f| f.rule == "max-length-decreased"));
}
