//! The rules for Collection Schema documents (spec chapter 10, The Collection Schema document
//! and Compatibility), beside the structural comparison of their `schema`s.
//!
//! The backward check reads OLD's instances as NEW's migration leaves them ([`migrate_schema`]:
//! `rename_field`, `remove_field`, `add_field` as in `[EVO-4]`); the forward check reads OLD's
//! root as open, because old Clients preserve the Fields they do not know ([`open_root`],
//! `[EVO-10]`). [`sync_rules`] reports what breaks sync rather than validation: a changed Policy
//! (`[EVO-12]`), a Field renamed or removed without a migration step, and a Field that becomes
//! required without an `add_field` default.

use std::collections::BTreeSet;

use driftless_protocol::collection_schema::{CollectionSchema, MigrationStep, Policy};
use serde_json::{json, Map, Value};

use super::{required_names, Direction, Finding, Severity};

/// OLD's schema as OLD instances look after NEW's migration: renamed, removed and added Fields.
pub(crate) fn migrate_schema(old: &Value, new_doc: &CollectionSchema) -> Value {
    let mut s = old.clone();
    let Some(obj) = s.as_object_mut() else {
        return s;
    };
    let mut props = obj
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut required: Vec<String> = required_names(obj).map(str::to_owned).collect();
    for step in &new_doc.migration {
        match step {
            MigrationStep::RenameField { from, to } => {
                if let Some(p) = props.remove(from.as_str()) {
                    props.insert(to.to_string(), p);
                }
                for r in &mut required {
                    if r == from.as_str() {
                        *r = to.to_string();
                    }
                }
            }
            MigrationStep::RemoveField { field } => {
                props.remove(field.as_str());
                required.retain(|r| r != field.as_str());
            }
            MigrationStep::AddField { field, default } => {
                props.insert(field.to_string(), json!({ "const": default }));
                if !required.iter().any(|r| r == field.as_str()) {
                    required.push(field.to_string());
                }
            }
        }
    }
    obj.insert("properties".into(), Value::Object(props));
    obj.insert("required".into(), json!(required));
    s
}

pub(crate) fn open_root(schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Some(o) = s.as_object_mut() {
        o.remove("additionalProperties");
        o.remove("unevaluatedProperties");
    }
    s
}

pub(crate) fn sync_rules(old: &CollectionSchema, new: &CollectionSchema) -> Vec<Finding> {
    let mut out = Vec::new();
    let finding =
        |rule, severity, old_p: String, new_p: String, path: String, message: String| Finding {
            rule,
            severity,
            direction: Direction::Backward,
            old_pointer: old_p,
            new_pointer: new_p,
            instance_path: path,
            message,
            counterexample: None,
            accepted_by: None,
            suspected: false,
            hint: None,
        };
    let renamed = |name: &str| -> Option<String> {
        let mut n = name.to_owned();
        for step in &new.migration {
            match step {
                MigrationStep::RenameField { from, to } if from.as_str() == n => n = to.to_string(),
                MigrationStep::RemoveField { field } if field.as_str() == n => return None,
                _ => {}
            }
        }
        Some(n)
    };
    let props = |d: &CollectionSchema| -> Map<String, Value> {
        d.schema
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (old_props, new_props) = (props(old), props(new));
    let known: BTreeSet<String> = old
        .fields
        .keys()
        .map(|f| f.to_string())
        .chain(old_props.keys().cloned())
        .collect();
    for name in &known {
        let Some(new_name) = renamed(name) else {
            continue;
        };
        let (po, pn) = (old.policy(name), new.policy(&new_name));
        if po != pn
            && (new_props.contains_key(&new_name)
                || new.fields.contains_key(new_name.as_str())
                || po != Policy::Lww)
        {
            out.push(finding(
                "merge-policy-changed",
                Severity::Error,
                format!("/fields/{name}"),
                format!("/fields/{new_name}"),
                format!("/{new_name}"),
                format!("field {name} changes policy from {po:?} to {pn:?}; clients in the field would merge it differently"),
            ));
        }
        if !new_props.contains_key(&new_name) && old_props.contains_key(name) {
            let twin = new_props
                .iter()
                .find(|(k, v)| !old_props.contains_key(*k) && Some(*v) == old_props.get(name))
                .map(|(k, _)| k.clone());
            if let Some(twin) = twin {
                out.push(finding(
                    "rename-without-migration",
                    Severity::Error,
                    format!("/schema/properties/{name}"),
                    format!("/schema/properties/{twin}"),
                    format!("/{name}"),
                    format!("field {name} looks renamed to {twin}, but no rename_field migration says so; old clients' writes would not be upcast"),
                ));
            } else if new.schema.get("additionalProperties") == Some(&Value::Bool(false)) {
                out.push(finding(
                    "field-removed-without-migration",
                    Severity::Error,
                    format!("/schema/properties/{name}"),
                    "/schema/additionalProperties".into(),
                    format!("/{name}"),
                    format!("field {name} is gone from a closed schema without a remove_field migration; old clients still write it"),
                ));
            }
        }
    }
    let defaults: BTreeSet<String> = new
        .migration
        .iter()
        .filter_map(|s| match s {
            MigrationStep::AddField { field, .. } => Some(field.to_string()),
            _ => None,
        })
        .collect();
    let old_required: BTreeSet<String> = old
        .schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(|s| renamed(s).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    for (i, r) in new
        .schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(r) = r.as_str() else { continue };
        if !old_required.contains(r) && !defaults.contains(r) {
            out.push(finding(
                "required-field-without-default",
                Severity::Error,
                "/schema/required".into(),
                format!("/schema/required/{i}"),
                format!("/{r}"),
                format!("field {r} becomes required without an add_field default; old clients' records lack it"),
            ));
        }
    }
    out
}
