//! Collection Schemas: versions, Field Policies and migrations (spec chapter 10).
//!
//! A [`SchemaHistory`] holds the registered versions of one Collection and answers what the merge
//! rules and the Server need: the Policy of each Field, the defaults of `add_field` steps, and the
//! upcast of an Effect written under an older version.
//!
//! ```
//! use driftless_protocol::collection_schema::{CollectionSchema, SchemaHistory};
//! use driftless_protocol::messages::Effect;
//! let v1: CollectionSchema = serde_json::from_value(serde_json::json!({
//!     "collection": "tasks", "version": 1, "schema": {"type": "object"}})).unwrap();
//! let v2: CollectionSchema = serde_json::from_value(serde_json::json!({
//!     "collection": "tasks", "version": 2, "schema": {"type": "object"},
//!     "migration": [{"op": "rename_field", "from": "name", "to": "title"}]})).unwrap();
//! let history = SchemaHistory::new(vec![v1, v2]).unwrap();
//! let old: Effect = serde_json::from_value(serde_json::json!(
//!     {"kind": "patch", "set": {"name": "Buy milk"}})).unwrap();
//! let new = history.upcast(&old, 1).unwrap().unwrap();
//! assert_eq!(serde_json::to_value(&new).unwrap(),
//!     serde_json::json!({"kind": "patch", "set": {"title": "Buy milk"}}));
//! ```

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::{CollectionName, FieldName};
use crate::messages::Effect;

/// The conflict Policy of a Field (spec chapter 03).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Last writer wins by Stamp; increments after the winning assignment add to it.
    #[default]
    Lww,
    /// Only increments; they all add up.
    Counter,
    /// Per element, present when its latest add is newer than its latest remove.
    AddWinsSet,
    /// Each Client's latest value is kept as a sibling until a `resolve`.
    KeepBoth,
}

/// How one Field merges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// The Field's conflict Policy.
    pub policy: Policy,
}

/// One step of a migration from the previous version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum MigrationStep {
    /// A Field older versions lack; Records without it are served with `default`.
    AddField {
        /// The new Field.
        field: FieldName,
        /// Its value for Records that lack it.
        default: Value,
    },
    /// A Field renamed; older writes are upcast to the new name.
    RenameField {
        /// The old name.
        from: FieldName,
        /// The new name.
        to: FieldName,
    },
    /// A Field dropped; older writes to it are ignored.
    RemoveField {
        /// The dropped Field.
        field: FieldName,
    },
}

/// A Collection Schema document: one version of a Collection's shape (spec chapter 10). Closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Collection Schema")]
pub struct CollectionSchema {
    /// The Collection this document describes.
    pub collection: CollectionName,
    /// The version: 1 for the first, then one more for each registration.
    #[schemars(range(min = 1))]
    pub version: u32,
    /// A JSON Schema (draft 2020-12) for a Record's value; it must describe an object.
    pub schema: Map<String, Value>,
    /// The Policy of each Field that is not `lww`.
    #[serde(default)]
    pub fields: BTreeMap<FieldName, FieldSpec>,
    /// The steps from the previous version, in order; empty for version 1.
    #[serde(default)]
    pub migration: Vec<MigrationStep>,
}

/// The registered versions of one Collection, listed by
/// `GET /v1/spaces/{space}/collections/{collection}/schemas`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Collection Schema list")]
pub struct CollectionSchemaList {
    /// The Collection.
    pub collection: CollectionName,
    /// Every registered version, oldest first.
    pub versions: Vec<CollectionSchema>,
}

/// Why a Collection Schema document or history is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The versions are not 1, 2, 3, ... for one Collection.
    #[error("versions must be numbered 1, 2, 3, ... for one collection; found {0}")]
    Numbering(String),
    /// The document breaks a rule of `[SCHEMA-6]` or `[EVO-12]`.
    #[error("{0}")]
    Invalid(String),
}

impl CollectionSchema {
    /// The Policy of a Field in this version (`lww` unless declared).
    pub fn policy(&self, field: &str) -> Policy {
        self.fields
            .get(field)
            .map(|spec| spec.policy)
            .unwrap_or_default()
    }

    /// Checks the structural rules of `[SCHEMA-6]` and, given the previous version, `[EVO-12]`.
    /// Whether `schema` is a valid draft 2020-12 schema is left to a JSON Schema validator.
    pub fn check(&self, previous: Option<&CollectionSchema>) -> Result<(), SchemaError> {
        let invalid = |m: String| Err(SchemaError::Invalid(m));
        if self.schema.get("type") != Some(&Value::String("object".into())) {
            return invalid("the schema must have \"type\": \"object\" at its root".into());
        }
        if let Some(required) = self.schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if matches!(self.policy(name), Policy::Counter | Policy::AddWinsSet) {
                    return invalid(format!(
                        "field {name:?} has a counter or add_wins_set policy and cannot be required"
                    ));
                }
            }
        }
        if self.version == 1 && !self.migration.is_empty() {
            return invalid("version 1 cannot have a migration".into());
        }
        if let Some(prev) = previous {
            // Every Field the previous version knew keeps its Policy under its new name.
            let declared = prev.fields.keys().map(|f| f.to_string());
            let described = prev
                .schema
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|p| p.keys().cloned());
            let known: std::collections::BTreeSet<String> = declared.chain(described).collect();
            for old_name in known {
                if let Some(new_name) = self.renamed(&old_name) {
                    let (old, new) = (prev.policy(&old_name), self.policy(&new_name));
                    if old != new {
                        return invalid(format!(
                            "field {old_name:?} changes policy from {old:?} to {new:?}"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The name a Field of the previous version has in this version, or `None` if this version's
    /// migration removes it.
    fn renamed(&self, old: &str) -> Option<String> {
        let mut name = old.to_owned();
        for step in &self.migration {
            match step {
                MigrationStep::RenameField { from, to } if from.as_str() == name => {
                    name = to.to_string()
                }
                MigrationStep::RemoveField { field } if field.as_str() == name => return None,
                _ => {}
            }
        }
        Some(name)
    }
}

/// The registered versions of one Collection, oldest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SchemaHistory {
    versions: Vec<CollectionSchema>,
}

impl SchemaHistory {
    /// A history from its versions, which must be numbered 1, 2, 3, ... for one Collection.
    pub fn new(versions: Vec<CollectionSchema>) -> Result<Self, SchemaError> {
        for (i, v) in versions.iter().enumerate() {
            if v.version as usize != i + 1 || v.collection != versions[0].collection {
                return Err(SchemaError::Numbering(format!(
                    "version {} of {} at position {}",
                    v.version,
                    v.collection,
                    i + 1
                )));
            }
        }
        Ok(Self { versions })
    }

    /// The latest version, if any is registered.
    pub fn latest(&self) -> Option<&CollectionSchema> {
        self.versions.last()
    }

    /// All versions, oldest first.
    pub fn versions(&self) -> &[CollectionSchema] {
        &self.versions
    }

    /// The Policy of a Field under the latest version (`lww` without a schema).
    pub fn policy(&self, field: &str) -> Policy {
        self.latest()
            .map(|s| s.policy(field))
            .unwrap_or(Policy::Lww)
    }

    /// The defaults of `add_field` steps still in force at the latest version (`[EVO-8]`).
    pub fn defaults(&self) -> BTreeMap<String, Value> {
        let mut defaults = BTreeMap::new();
        for version in &self.versions {
            for step in &version.migration {
                match step {
                    MigrationStep::AddField { field, default } => {
                        defaults.insert(field.to_string(), default.clone());
                    }
                    MigrationStep::RenameField { from, to } => {
                        if let Some(d) = defaults.remove(from.as_str()) {
                            defaults.insert(to.to_string(), d);
                        }
                    }
                    MigrationStep::RemoveField { field } => {
                        defaults.remove(field.as_str());
                    }
                }
            }
        }
        defaults
    }

    /// The migration steps from version `from` to the latest, in order.
    pub fn steps_after(&self, from: u32) -> impl Iterator<Item = &MigrationStep> {
        self.versions
            .iter()
            .skip(from as usize)
            .flat_map(|v| v.migration.iter())
    }

    /// Upcasts an Effect written under `version` to the latest version (`[EVO-4]`). Returns
    /// `None` when the upcast Effect changes nothing (`[EVO-5]`), and an error when `version`
    /// is not registered (`[EVO-3]`).
    pub fn upcast(&self, effect: &Effect, version: u32) -> Result<Option<Effect>, UnknownVersion> {
        if version == 0 || version as usize > self.versions.len() {
            return Err(UnknownVersion {
                version,
                latest: self.versions.len() as u32,
            });
        }
        let mut effect = effect.clone();
        for step in self.steps_after(version) {
            match apply_step(effect, step) {
                Some(e) => effect = e,
                None => return Ok(None),
            }
        }
        Ok(Some(effect))
    }
}

/// A Mutation names a schema version that is not registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schema version {version} is not registered; the latest is {latest}")]
pub struct UnknownVersion {
    /// The version the Mutation names.
    pub version: u32,
    /// The latest registered version (0 when none is).
    pub latest: u32,
}

/// Renames `from` to `to` in a `put` value or a `patch` `set`; when both are present the value
/// under `from` wins (`[EVO-14]`).
fn rename_member(map: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = map.remove(from) {
        map.insert(to.to_owned(), v);
    }
}

/// Applies one migration step to an Effect; `None` when nothing of the Effect remains.
fn apply_step(effect: Effect, step: &MigrationStep) -> Option<Effect> {
    match step {
        MigrationStep::AddField { .. } => Some(effect),
        MigrationStep::RenameField { from, to } => Some(match effect {
            Effect::Put { mut value } => {
                rename_member(&mut value, from.as_str(), to.as_str());
                Effect::Put { value }
            }
            Effect::Patch { mut set, mut unset } => {
                // A patch naming both names says what the old name means: the new name's
                // member was preserved unknown (`[EVO-14]`).
                if set.contains_key(from.as_str()) || unset.contains(from) {
                    set.remove(to.as_str());
                    unset.retain(|f| f != to);
                }
                rename_member(&mut set, from.as_str(), to.as_str());
                let unset = unset
                    .into_iter()
                    .map(|f| if &f == from { to.clone() } else { f })
                    .collect();
                Effect::Patch { set, unset }
            }
            Effect::Delete {} => Effect::Delete {},
            Effect::Increment { field, by } => Effect::Increment {
                field: if &field == from { to.clone() } else { field },
                by,
            },
            Effect::SetAdd { field, elements } => Effect::SetAdd {
                field: if &field == from { to.clone() } else { field },
                elements,
            },
            Effect::SetRemove { field, elements } => Effect::SetRemove {
                field: if &field == from { to.clone() } else { field },
                elements,
            },
            Effect::Resolve { field, value } => Effect::Resolve {
                field: if &field == from { to.clone() } else { field },
                value,
            },
        }),
        MigrationStep::RemoveField { field: removed } => match effect {
            Effect::Put { mut value } => {
                value.remove(removed.as_str());
                Some(Effect::Put { value })
            }
            Effect::Patch { mut set, unset } => {
                set.remove(removed.as_str());
                let unset: Vec<FieldName> = unset.into_iter().filter(|f| f != removed).collect();
                if set.is_empty() && unset.is_empty() {
                    None
                } else {
                    Some(Effect::Patch { set, unset })
                }
            }
            Effect::Delete {} => Some(Effect::Delete {}),
            Effect::Increment { ref field, .. }
            | Effect::SetAdd { ref field, .. }
            | Effect::SetRemove { ref field, .. }
            | Effect::Resolve { ref field, .. } => (field != removed).then_some(effect),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> CollectionSchema {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn counter_fields_cannot_be_required() {
        let d = doc(json!({"collection": "t", "version": 1,
            "schema": {"type": "object", "required": ["likes"]},
            "fields": {"likes": {"policy": "counter"}}}));
        assert!(d.check(None).is_err());
    }

    #[test]
    fn policy_change_across_a_rename_is_refused() {
        let v1 = doc(
            json!({"collection": "t", "version": 1, "schema": {"type": "object"},
            "fields": {"likes": {"policy": "counter"}}}),
        );
        let v2 = doc(
            json!({"collection": "t", "version": 2, "schema": {"type": "object"},
            "migration": [{"op": "rename_field", "from": "likes", "to": "hearts"}]}),
        );
        assert!(v2.check(Some(&v1)).is_err());
        let v2_ok = doc(
            json!({"collection": "t", "version": 2, "schema": {"type": "object"},
            "fields": {"hearts": {"policy": "counter"}},
            "migration": [{"op": "rename_field", "from": "likes", "to": "hearts"}]}),
        );
        assert_eq!(v2_ok.check(Some(&v1)), Ok(()));
    }

    #[test]
    fn removed_field_turns_a_patch_into_nothing() {
        let v1 = doc(json!({"collection": "t", "version": 1, "schema": {"type": "object"}}));
        let v2 = doc(
            json!({"collection": "t", "version": 2, "schema": {"type": "object"},
            "migration": [{"op": "remove_field", "field": "color"}]}),
        );
        let h = SchemaHistory::new(vec![v1, v2]).unwrap();
        let patch: Effect =
            serde_json::from_value(json!({"kind": "patch", "set": {"color": "red"}})).unwrap();
        assert_eq!(h.upcast(&patch, 1), Ok(None));
        assert_eq!(h.upcast(&patch, 2), Ok(Some(patch.clone())));
        assert!(h.upcast(&patch, 3).is_err());
    }

    /// `[EVO-14]`: an old Client's Effect that names a renamed Field under both names keeps
    /// what it says under the old name.
    #[test]
    fn rename_collision_keeps_the_old_name() {
        let v1 = doc(json!({"collection": "t", "version": 1, "schema": {"type": "object"}}));
        let v2 = doc(
            json!({"collection": "t", "version": 2, "schema": {"type": "object"},
            "migration": [{"op": "rename_field", "from": "name", "to": "title"}]}),
        );
        let h = SchemaHistory::new(vec![v1, v2]).unwrap();
        let upcast = |e: Value| {
            let e: Effect = serde_json::from_value(e).unwrap();
            serde_json::to_value(h.upcast(&e, 1).unwrap().unwrap()).unwrap()
        };
        assert_eq!(
            upcast(json!({"kind": "put", "value": {"name": "new", "title": "kept"}})),
            json!({"kind": "put", "value": {"title": "new"}})
        );
        assert_eq!(
            upcast(json!({"kind": "patch", "set": {"title": "kept", "name": "new"}})),
            json!({"kind": "patch", "set": {"title": "new"}})
        );
        assert_eq!(
            upcast(json!({"kind": "patch", "set": {"title": "kept"}, "unset": ["name"]})),
            json!({"kind": "patch", "unset": ["title"]})
        );
        assert_eq!(
            upcast(json!({"kind": "patch", "set": {"name": "new"}, "unset": ["title"]})),
            json!({"kind": "patch", "set": {"title": "new"}})
        );
        // Without the old name, the new name passes through unchanged.
        assert_eq!(
            upcast(json!({"kind": "patch", "set": {"title": "kept"}})),
            json!({"kind": "patch", "set": {"title": "kept"}})
        );
    }

    #[test]
    fn defaults_follow_renames_and_removals() {
        let v1 = doc(json!({"collection": "t", "version": 1, "schema": {"type": "object"}}));
        let v2 = doc(
            json!({"collection": "t", "version": 2, "schema": {"type": "object"},
            "migration": [{"op": "add_field", "field": "prio", "default": 0},
                          {"op": "add_field", "field": "color", "default": "red"}]}),
        );
        let v3 = doc(
            json!({"collection": "t", "version": 3, "schema": {"type": "object"},
            "migration": [{"op": "rename_field", "from": "prio", "to": "priority"},
                          {"op": "remove_field", "field": "color"}]}),
        );
        let h = SchemaHistory::new(vec![v1, v2, v3]).unwrap();
        assert_eq!(
            h.defaults(),
            BTreeMap::from([("priority".to_owned(), json!(0))])
        );
    }
}
