//! `schemas/v1/` against the types, the spec's examples and the spec's endpoints.

mod common;

use std::collections::BTreeSet;

use common::{fences, read, root};
use driftless_protocol::checksum::{record_digest, to_hex};
use driftless_protocol::collection_schema::{CollectionSchema, CollectionSchemaList};
use driftless_protocol::export;
use driftless_protocol::messages::*;
use driftless_protocol::problem::Problem;
use serde_json::Value;

fn committed(name: &str) -> Value {
    let path = root().join(export::SCHEMA_DIR).join(name);
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn committed_schemas_match_the_types() {
    let mut stale = Vec::new();
    for (name, text) in export::files() {
        let path = root().join(export::SCHEMA_DIR).join(&name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(name);
        }
    }
    let expected: BTreeSet<String> = export::files().into_iter().map(|(n, _)| n).collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(root().join(export::SCHEMA_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let extra: Vec<&String> = on_disk.difference(&expected).collect();
    assert!(
        stale.is_empty() && extra.is_empty(),
        "schemas/v1 is out of date (stale: {stale:?}, not generated: {extra:?}); run `cargo run -- schema export`"
    );
}

fn walk_properties(schema: &Value, at: &str, found: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                for (name, prop) in props {
                    if prop
                        .get("description")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        found.push(format!("{at}/properties/{name}"));
                    }
                }
            }
            for (k, v) in map {
                walk_properties(v, &format!("{at}/{k}"), found);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk_properties(v, &format!("{at}/{i}"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn every_schema_is_valid_2020_12_with_id_title_and_described_properties() {
    for (name, schema) in export::message_schemas() {
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{name}"
        );
        assert_eq!(schema["$id"], export::schema_id(&name), "{name}");
        assert!(
            schema["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{name} has no title"
        );
        jsonschema::meta::validate(&schema)
            .unwrap_or_else(|e| panic!("{name} is not a valid schema: {e}"));
        jsonschema::validator_for(&schema)
            .unwrap_or_else(|e| panic!("{name} does not compile: {e}"));
        let mut undescribed = Vec::new();
        walk_properties(&schema, "#", &mut undescribed);
        assert!(
            undescribed.is_empty(),
            "{name}: properties without description: {undescribed:?}"
        );
    }
}

#[test]
fn request_messages_are_closed_and_responses_open() {
    for name in [
        "push-request",
        "manifest-request",
        "mutation",
        "collection-schema",
    ] {
        assert_eq!(
            committed(&format!("{name}.schema.json"))["additionalProperties"],
            Value::Bool(false),
            "{name}"
        );
    }
    for name in [
        "push-response",
        "pull-response",
        "record",
        "discovery",
        "problem",
    ] {
        assert_ne!(
            committed(&format!("{name}.schema.json"))["additionalProperties"],
            Value::Bool(false),
            "{name}"
        );
    }
}

/// Deserializes an example into the Rust type of its schema, so the examples, the schemas and
/// the types agree three ways.
fn parse_as(name: &str, v: &Value) -> Result<(), String> {
    fn p<T: serde::de::DeserializeOwned>(v: &Value) -> Result<(), String> {
        serde_json::from_value::<T>(v.clone())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    match name {
        "discovery" => p::<Discovery>(v),
        "mutation" => p::<Mutation>(v),
        "push-request" => p::<PushRequest>(v),
        "push-response" => p::<PushResponse>(v),
        "manifest-request" => p::<ManifestRequest>(v),
        "manifest-response" => p::<ManifestResponse>(v),
        "pull-response" => p::<PullResponse>(v),
        "record" => p::<Record>(v),
        "history-response" => p::<HistoryResponse>(v),
        "checksums-response" => p::<ChecksumsResponse>(v),
        "bucket-response" => p::<BucketResponse>(v),
        "collection-schema" => p::<CollectionSchema>(v),
        "collection-schema-list" => p::<CollectionSchemaList>(v),
        "compaction-response" => p::<CompactionResponse>(v),
        "problem" => p::<Problem>(v),
        "token-claims" => p::<TokenClaims>(v),
        other => Err(format!("no Rust type for schema {other}")),
    }
}

#[test]
fn every_spec_example_validates_and_every_schema_has_one() {
    let mut covered = BTreeSet::new();
    let mut failures = Vec::new();
    for f in fences() {
        let Some(name) = f.info.strip_prefix("json schema=") else {
            continue;
        };
        let schema = committed(&format!("{name}.schema.json"));
        let instance: Value = match serde_json::from_str(&f.body) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{}:{} is not JSON: {e}", f.file, f.line));
                continue;
            }
        };
        let validator = jsonschema::validator_for(&schema).unwrap();
        for error in validator.iter_errors(&instance) {
            failures.push(format!(
                "{}:{} ({name}): {error} at {}",
                f.file,
                f.line,
                error.instance_path()
            ));
        }
        if let Err(e) = parse_as(name, &instance) {
            failures.push(format!(
                "{}:{} ({name}) does not deserialize: {e}",
                f.file, f.line
            ));
        }
        covered.insert(name.to_owned());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for (name, _) in export::message_schemas() {
        assert!(
            covered.contains(&name),
            "no example in the spec for schema {name}"
        );
    }
}

/// Wherever an example shows a Record with a value and a digest, the digest is right.
#[test]
fn record_digests_in_examples_are_correct() {
    fn check(v: &Value, at: &str, bad: &mut Vec<String>, checked: &mut usize) {
        match v {
            Value::Object(m) => {
                if let (Some(c), Some(id), Some(Value::Object(value)), Some(d)) = (
                    m.get("collection").and_then(Value::as_str),
                    m.get("id").and_then(Value::as_str),
                    m.get("value"),
                    m.get("digest").and_then(Value::as_str),
                ) {
                    let expected = to_hex(&record_digest(c, id, value));
                    *checked += 1;
                    if d != expected {
                        bad.push(format!(
                            "{at}: {c}/{id} has digest {d}, expected {expected}"
                        ));
                    }
                }
                m.values().for_each(|x| check(x, at, bad, checked));
            }
            Value::Array(items) => items.iter().for_each(|x| check(x, at, bad, checked)),
            _ => {}
        }
    }
    let (mut bad, mut checked) = (Vec::new(), 0);
    for f in fences()
        .into_iter()
        .filter(|f| f.info.starts_with("json schema="))
    {
        let v: Value = serde_json::from_str(&f.body).unwrap();
        check(
            &v,
            &format!("{}:{}", f.file, f.line),
            &mut bad,
            &mut checked,
        );
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // The examples show at least three Records with digests (pull, record, bucket responses).
    assert!(checked >= 3, "only {checked} digests were checked");
}

#[test]
fn openapi_covers_exactly_the_spec_endpoints() {
    let openapi = committed("openapi.json");
    assert_eq!(openapi["openapi"], "3.1.0");
    let paths = openapi["paths"].as_object().unwrap();
    let spec: Vec<(String, String)> = common::endpoints();
    assert!(
        spec.len() >= 11,
        "the spec names only {} endpoints",
        spec.len()
    );
    for (method, path) in &spec {
        assert!(
            paths
                .get(path)
                .and_then(|p| p.get(method.to_lowercase()))
                .is_some(),
            "openapi.json lacks {method} {path}"
        );
    }
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            assert!(
                spec.contains(&(method.to_uppercase(), path.clone())),
                "openapi.json has {method} {path}, which the spec does not name"
            );
        }
    }
}

#[test]
fn openapi_references_resolve() {
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let openapi = committed("openapi.json");
    let mut all = Vec::new();
    refs(&openapi, &mut all);
    assert!(!all.is_empty());
    for r in all {
        if let Some(pointer) = r.strip_prefix('#') {
            assert!(openapi.pointer(pointer).is_some(), "dangling {r}");
        } else {
            assert!(
                root().join(export::SCHEMA_DIR).join(&r).is_file(),
                "missing file {r}"
            );
        }
    }
}
