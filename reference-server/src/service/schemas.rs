//! Collection Schemas, spec chapter 10: `GET .../collections/{collection}/schemas` lists the
//! registered versions and `PUT .../schemas/{version}` registers one, upcasting every stored Record
//! to it (`[SCHEMA-1]` to `[SCHEMA-8]`, `[SCHEMA-10]`, `[EVO-12]`). Push uses the compiled schemas and
//! [`conforms`] to validate an upcast Effect (`[EVO-6]`, `[EVO-7]`).

use std::sync::Arc;

use driftless_protocol::canonical::to_canonical_string;
use driftless_protocol::collection_schema::{
    CollectionSchema, CollectionSchemaList, MigrationStep, SchemaHistory,
};
use driftless_protocol::messages::Effect;
use driftless_protocol::problem::{Problem, ProblemType};
use serde_json::{Map, Value};

use super::{
    internal, invalid_request, parse_collection, schema_errors, view_of, Answer, CompiledSchema,
    Service,
};
use crate::storage::{SpaceWrite, Storage, StorageError};

impl<S: Storage> Service<S> {
    /// `GET /v1/spaces/{space}/collections/{collection}/schemas`.
    pub async fn list_schemas(
        self: &Arc<Self>,
        space: &str,
        collection: &str,
    ) -> Answer<CollectionSchemaList> {
        let collection = parse_collection(collection)?;
        let space = space.to_owned();
        let c = collection.to_string();
        let versions = self
            .blocking(move |me| {
                me.storage
                    .read(&space, |tx| tx.schemas(&c))
                    .map_err(internal)
            })
            .await?;
        Ok(CollectionSchemaList {
            collection,
            versions,
        })
    }

    /// `PUT /v1/spaces/{space}/collections/{collection}/schemas/{version}`. Returns whether the
    /// version was newly registered (201) or already registered (200), and the stored document.
    pub async fn put_schema(
        self: &Arc<Self>,
        space: &str,
        collection: &str,
        version: &str,
        body: Value,
    ) -> Answer<(bool, CollectionSchema)> {
        let collection = parse_collection(collection)?;
        let version: u32 = version.parse().ok().filter(|v| *v >= 1).ok_or_else(|| {
            invalid_request(
                "/path/version",
                "expected a positive integer",
                "version must be a positive integer",
            )
        })?;
        let doc: CollectionSchema = serde_json::from_value(body).map_err(|e| {
            invalid_request(
                "",
                &e.to_string(),
                "the body is not a valid collection-schema document",
            )
        })?;
        if doc.collection != collection {
            return Err(invalid_request(
                "/collection",
                "differs from the path",
                "the document's collection differs from the path",
            ));
        }
        if doc.version != version {
            return Err(invalid_request(
                "/version",
                "differs from the path",
                "the document's version differs from the path",
            ));
        }
        let schema = Value::Object(doc.schema.clone());
        if let Err(e) = jsonschema::meta::validate(&schema) {
            return Err(Problem::new(
                ProblemType::InvalidSchema,
                format!("the schema is not a valid JSON Schema: {e}"),
            ));
        }
        if let Err(e) = jsonschema::validator_for(&schema) {
            return Err(Problem::new(
                ProblemType::InvalidSchema,
                format!("the schema cannot be compiled: {e}"),
            ));
        }
        let space = space.to_owned();
        let result = self
            .blocking(move |me| {
                me.storage
                    .write(&space, |tx| {
                        let existing = tx.schemas(doc.collection.as_str())?;
                        let latest = existing.len() as u32;
                        if doc.version <= latest {
                            let stored = &existing[doc.version as usize - 1];
                            let same = to_canonical_string(&serde_json::to_value(stored).unwrap_or_default())
                                == to_canonical_string(&serde_json::to_value(&doc).unwrap_or_default());
                            return Ok(if same {
                                Ok((false, stored.clone()))
                            } else {
                                Err(Problem::new(
                                    ProblemType::SchemaConflict,
                                    format!("version {} of {} is registered with a different document", doc.version, doc.collection),
                                ))
                            });
                        }
                        if doc.version > latest + 1 {
                            return Ok(Err(Problem::new(
                                ProblemType::SchemaVersionGap,
                                format!("the latest registered version of {} is {latest}; register version {} next", doc.collection, latest + 1),
                            )));
                        }
                        if let Err(e) = doc.check(existing.last()) {
                            return Ok(Err(Problem::new(ProblemType::InvalidSchema, e.to_string())));
                        }
                        tx.put_schema(&doc)?;
                        let mut versions = existing;
                        versions.push(doc.clone());
                        let history = SchemaHistory::new(versions).map_err(|e| StorageError::Corrupt(e.to_string()))?;
                        me.upcast_records(tx, &doc, &history)?;
                        tx.save_clock(&me.clock.last())?;
                        Ok(Ok((true, doc)))
                    })
                    .map_err(internal)?
            })
            .await?;
        Ok(result)
    }

    /// Migrates the stored state of every Record of a Collection to a newly registered version
    /// (`[SCHEMA-7]`). Every Record, tombstones included, takes a new Change Sequence, because
    /// its `schema_version` changes even when its value does not (`[SCHEMA-10]`).
    fn upcast_records(
        &self,
        tx: &mut dyn SpaceWrite,
        doc: &CollectionSchema,
        history: &SchemaHistory,
    ) -> Result<(), StorageError> {
        for mut record in tx.collection_records(doc.collection.as_str())? {
            for step in &doc.migration {
                match step {
                    MigrationStep::RenameField { from, to } => {
                        record.state.rename_field(from.as_str(), to.as_str())
                    }
                    MigrationStep::RemoveField { field } => {
                        record.state.remove_field(field.as_str())
                    }
                    MigrationStep::AddField { .. } => {}
                }
            }
            let view = view_of(
                &record.collection,
                &record.id,
                &record.state,
                history,
                &self.faults,
            );
            if view != record.view {
                record.change_seq = tx.next_change_seq()?;
                record.view = view;
            }
            tx.put_record(&record)?;
        }
        Ok(())
    }

    /// The validators of one registered version, compiled once per Space, Collection and version;
    /// push checks upcast Effects with them.
    pub(super) fn compiled(
        &self,
        space: &str,
        doc: &CollectionSchema,
    ) -> Result<Arc<CompiledSchema>, StorageError> {
        let key = (space.to_owned(), doc.collection.to_string(), doc.version);
        let mut cache = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let full_schema = Value::Object(doc.schema.clone());
        let mut partial_schema = doc.schema.clone();
        let required = partial_schema
            .remove("required")
            .and_then(|r| r.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let compile = |s: &Value| {
            jsonschema::validator_for(s).map_err(|e| {
                StorageError::Corrupt(format!("registered schema does not compile: {e}"))
            })
        };
        let compiled = Arc::new(CompiledSchema {
            full: compile(&full_schema)?,
            partial: compile(&Value::Object(partial_schema))?,
            required,
        });
        cache.insert(key, compiled.clone());
        Ok(compiled)
    }
}

/// The Effect of [`crate::faults::Fault::UnknownFieldsDropped`]: Fields the latest schema does not
/// declare are silently dropped from put and patch values.
#[cfg(feature = "fault-injection")]
pub(super) fn drop_undeclared(effect: Effect, history: &SchemaHistory) -> Effect {
    let Some(props) = history
        .latest()
        .and_then(|s| s.schema.get("properties"))
        .and_then(Value::as_object)
    else {
        return effect;
    };
    let keep = |m: Map<String, Value>| {
        m.into_iter()
            .filter(|(k, _)| props.contains_key(k))
            .collect()
    };
    match effect {
        Effect::Put { value } => Effect::Put { value: keep(value) },
        Effect::Patch { set, unset } => Effect::Patch {
            set: keep(set),
            unset,
        },
        other => other,
    }
}

/// Validates an upcast Effect against the latest Collection Schema (`[EVO-6]`, `[EVO-7]`).
pub(super) fn conforms(
    compiled: &CompiledSchema,
    effect: &Effect,
    history: &SchemaHistory,
) -> Result<(), String> {
    let fail = |v: &jsonschema::Validator, instance: &Value| {
        let pointers = schema_errors(v, instance);
        if pointers.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the value does not conform to the collection schema at {}",
                pointers.join(", ")
            ))
        }
    };
    match effect {
        Effect::Put { value } => {
            let mut filled = value.clone();
            for (field, default) in history.defaults() {
                filled.entry(field).or_insert(default);
            }
            fail(&compiled.full, &Value::Object(filled))
        }
        Effect::Patch { set, unset } => {
            if let Some(f) = unset
                .iter()
                .find(|f| compiled.required.iter().any(|r| r == f.as_str()))
            {
                return Err(format!("field {f} is required and cannot be unset"));
            }
            fail(&compiled.partial, &Value::Object(set.clone()))
        }
        Effect::SetAdd { field, elements } => {
            let instance: Map<String, Value> =
                [(field.to_string(), Value::Array(elements.clone()))]
                    .into_iter()
                    .collect();
            fail(&compiled.partial, &Value::Object(instance))
        }
        Effect::Resolve { field, value } => {
            let instance: Map<String, Value> =
                [(field.to_string(), value.clone())].into_iter().collect();
            fail(&compiled.partial, &Value::Object(instance))
        }
        Effect::Delete {} | Effect::Increment { .. } | Effect::SetRemove { .. } => Ok(()),
    }
}
