//! `driftless schema migrate-check`: property-based verification of declared migrations.
//!
//! For each pair of consecutive Collection Schema versions, proptest generates instances from the
//! older schema (a strategy built from the schema itself, shrinking included), keeps those the
//! older schema accepts, upcasts each exactly as a Server would (the protocol crate's
//! [`SchemaHistory::upcast`] plus `add_field` defaults), and requires the result to be valid under
//! the newer schema. A failure reports the smallest failing instance proptest finds.

use driftless_protocol::collection_schema::{CollectionSchema, SchemaHistory};
use driftless_protocol::messages::Effect;
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union};
use proptest::test_runner::{Config, TestError, TestRunner};
use serde_json::{json, Map, Value};

fn resolve(root: &Value, s: &Value) -> Map<String, Value> {
    super::resolve_ref(root, s)
}

/// A strategy for instances of `schema` (most are valid; callers filter with a validator).
pub fn strategy(schema: &Value, root: &Value, depth: usize) -> BoxedStrategy<Value> {
    let m = resolve(root, schema);
    if depth > 6 {
        return Just(Value::Null).boxed();
    }
    if let Some(c) = m.get("const") {
        return Just(c.clone()).boxed();
    }
    if let Some(e) = m
        .get("enum")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
    {
        return proptest::sample::select(e.clone()).boxed();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = m
            .get(key)
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        {
            let mut base = m.clone();
            base.remove(key);
            let options: Vec<BoxedStrategy<Value>> = alts
                .iter()
                .map(|a| {
                    let mut merged = base.clone();
                    merged.extend(resolve(root, a));
                    strategy(&Value::Object(merged), root, depth + 1)
                })
                .collect();
            return Union::new(options).boxed();
        }
    }
    let types: Vec<String> = match m.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ if m.contains_key("properties") => vec!["object".into()],
        _ => vec![
            "null".into(),
            "boolean".into(),
            "integer".into(),
            "string".into(),
        ],
    };
    let per_type: Vec<BoxedStrategy<Value>> =
        types.iter().map(|t| typed(t, &m, root, depth)).collect();
    Union::new(per_type).boxed()
}

fn typed(t: &str, m: &Map<String, Value>, root: &Value, depth: usize) -> BoxedStrategy<Value> {
    let f = |k: &str| m.get(k).and_then(Value::as_f64);
    match t {
        "null" => Just(Value::Null).boxed(),
        "boolean" => any::<bool>().prop_map(Value::Bool).boxed(),
        "integer" => {
            let lo = f("minimum")
                .or(f("exclusiveMinimum").map(|x| x + 1.0))
                .unwrap_or(-1000.0) as i64;
            let hi = f("maximum")
                .or(f("exclusiveMaximum").map(|x| x - 1.0))
                .unwrap_or(1000.0) as i64;
            let step = f("multipleOf")
                .map(|x| x as i64)
                .filter(|x| *x > 0)
                .unwrap_or(1);
            if lo > hi {
                return Just(json!(lo)).boxed();
            }
            (lo.div_euclid(step)..=hi.div_euclid(step))
                .prop_map(move |k| json!(k * step))
                .boxed()
        }
        "number" => {
            let lo = f("minimum").or(f("exclusiveMinimum")).unwrap_or(-1000.0);
            let hi = f("maximum")
                .or(f("exclusiveMaximum"))
                .unwrap_or(1000.0)
                .max(lo);
            (lo..=hi).prop_map(|x| json!(x)).boxed()
        }
        "string" => {
            let min = f("minLength").unwrap_or(0.0) as usize;
            let max = f("maxLength")
                .map(|x| x as usize)
                .unwrap_or(min + 8)
                .max(min);
            if let Some(p) = m.get("pattern").and_then(Value::as_str) {
                if let Ok(s) = proptest::string::string_regex(p) {
                    return s.prop_map(Value::String).boxed();
                }
            }
            proptest::string::string_regex(&format!("[a-z ]{{{min},{max}}}"))
                .map(|s| s.prop_map(Value::String).boxed())
                .unwrap_or_else(|_| Just(Value::String("x".repeat(min))).boxed())
        }
        "array" => {
            let item = strategy(m.get("items").unwrap_or(&json!({})), root, depth + 1);
            let min = f("minItems").unwrap_or(0.0) as usize;
            let max = f("maxItems")
                .map(|x| x as usize)
                .unwrap_or(min + 3)
                .max(min);
            prop::collection::vec(item, min..=max)
                .prop_map(Value::Array)
                .boxed()
        }
        _ => {
            let props = m
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let required: Vec<String> = super::required_names(m).map(str::to_owned).collect();
            let mut acc: BoxedStrategy<Map<String, Value>> = Just(Map::new()).boxed();
            for (name, s) in props {
                let field = strategy(&s, root, depth + 1);
                let must = required.contains(&name);
                let maybe: BoxedStrategy<Option<Value>> = if must {
                    field.prop_map(Some).boxed()
                } else {
                    prop::option::weighted(0.6, field).boxed()
                };
                acc = (acc, maybe)
                    .prop_map(move |(mut obj, v)| {
                        if let Some(v) = v {
                            obj.insert(name.clone(), v);
                        }
                        obj
                    })
                    .boxed();
            }
            for name in required.into_iter() {
                acc = acc
                    .prop_map(move |mut obj| {
                        obj.entry(name.clone()).or_insert(Value::Null);
                        obj
                    })
                    .boxed();
            }
            acc.prop_map(Value::Object).boxed()
        }
    }
}

/// A migration that produced an invalid instance.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationFailure {
    /// The older version.
    pub from: u32,
    /// The newer version.
    pub to: u32,
    /// The (shrunk) instance of the older version.
    pub instance: Value,
    /// What it became.
    pub migrated: Value,
}

/// Upcasts an instance of `version` to the latest version of `history`, as a Server upcasts a
/// `put` (`[EVO-4]`) and fills `add_field` defaults (`[EVO-6]`).
pub fn migrate(history: &SchemaHistory, version: u32, instance: &Value) -> Option<Value> {
    let value = instance.as_object()?.clone();
    let Ok(Some(Effect::Put { mut value })) = history.upcast(&Effect::Put { value }, version)
    else {
        return None;
    };
    for (field, default) in history.defaults() {
        value.entry(field).or_insert(default);
    }
    Some(Value::Object(value))
}

/// Checks every migration of a history; `cases` instances per pair.
pub fn migrate_check(
    versions: &[CollectionSchema],
    cases: u32,
) -> Result<Vec<MigrationFailure>, String> {
    let mut failures = Vec::new();
    for i in 1..versions.len() {
        let history = SchemaHistory::new(versions[..=i].to_vec()).map_err(|e| e.to_string())?;
        let old = Value::Object(versions[i - 1].schema.clone());
        let new = Value::Object(versions[i].schema.clone());
        let old_v = jsonschema::validator_for(&old).map_err(|e| e.to_string())?;
        let new_v = jsonschema::validator_for(&new).map_err(|e| e.to_string())?;
        let from = versions[i - 1].version;
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&strategy(&old, &old, 0), |instance| {
            prop_assume!(old_v.is_valid(&instance));
            let migrated = migrate(&history, from, &instance).unwrap_or(Value::Null);
            prop_assert!(new_v.is_valid(&migrated), "migrated to {}", migrated);
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(TestError::Fail(_, instance)) => {
                let migrated = migrate(&history, from, &instance).unwrap_or(Value::Null);
                failures.push(MigrationFailure {
                    from,
                    to: versions[i].version,
                    instance,
                    migrated,
                });
            }
            Err(TestError::Abort(reason)) => {
                return Err(format!(
                    "versions {from} -> {}: could not generate valid instances ({reason})",
                    versions[i].version
                ));
            }
        }
    }
    Ok(failures)
}
