//! Optimistic reads (spec chapter 08, "The optimistic view", `[CLIENT-8]`, `[CLIENT-22]`,
//! `[CLIENT-23]`; chapter 03, `[MERGE-3]`): the value of a Record is its Mirror state with the
//! pending Mutations of the Outbox, and the acknowledged ones the pull has not reached yet,
//! merged on top by the protocol crate's rules, under the Collection's Field Policies,
//! recomputed on every read, so that a pull (or a resync, or a pull that failed after its push
//! was acknowledged) never hides a write of the Client's: the rebase is the read itself.

use driftless_protocol::collection_schema::{CollectionSchema, Policy};
use driftless_protocol::hlc::Hlc;
use driftless_protocol::merge::{RecordState, Stamp};
use driftless_protocol::messages::{Effect, Mutation};
use serde_json::{Map, Value};

use crate::store::Pending;
use crate::{Client, ClientError, Listed};

impl Client {
    /// The optimistic value of a Record, from its own pending Mutations.
    pub(crate) fn optimistic(
        &self,
        collection: &str,
        id: &str,
    ) -> Result<Option<Map<String, Value>>, ClientError> {
        let outbox = self
            .store
            .unreflected(&self.cfg.space, Some((collection, id)))?;
        let pending: Vec<&Pending> = outbox.iter().collect();
        let policies = self.policies(collection)?;
        self.view(collection, id, &pending, &policies)
    }

    /// The optimistic value of one Record given its pending Mutations (in creation order).
    fn view(
        &self,
        collection: &str,
        id: &str,
        pending: &[&Pending],
        policies: &std::collections::BTreeMap<String, Policy>,
    ) -> Result<Option<Map<String, Value>>, ClientError> {
        let mirrored = self.store.mirrored(&self.cfg.space, collection, id)?;
        let base = mirrored
            .and_then(|m| m.value)
            .and_then(|v| v.as_object().cloned());
        if pending.is_empty() {
            return Ok(base);
        }
        let policy = |f: &str| policies.get(f).copied().unwrap_or(Policy::Lww);
        let mut state = base_state(base.as_ref(), &policy);
        for p in pending {
            let m: Mutation = <Mutation as serde::Deserialize>::deserialize(p.body())
                .map_err(|e| ClientError::Store(e.to_string()))?;
            state.apply(&m);
        }
        let view = state.materialize(policy, &std::collections::BTreeMap::new());
        Ok(view.exists.then_some(view.value))
    }

    /// The Fields the latest known Collection Schema of a Collection declares.
    pub(crate) fn declared_fields(&self, collection: &str) -> Result<Vec<String>, ClientError> {
        Ok(self.policies(collection)?.into_keys().collect())
    }

    /// The Field Policies of a Collection, from the latest Collection Schema this Client knows.
    fn policies(
        &self,
        collection: &str,
    ) -> Result<std::collections::BTreeMap<String, Policy>, ClientError> {
        let key = format!("schemadoc:{}:{collection}", self.cfg.space);
        let doc: Option<CollectionSchema> = self
            .store
            .meta(&key)?
            .and_then(|t| serde_json::from_str(&t).ok());
        Ok(doc
            .map(|d| {
                d.fields
                    .iter()
                    .map(|(f, spec)| (f.to_string(), spec.policy))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The existing Records of a Collection, optimistically, sorted by ID.
    pub(crate) fn optimistic_list(&self, collection: &str) -> Result<Listed, ClientError> {
        // One read of the Outbox and the Policies for the whole Collection.
        let outbox = self.store.unreflected(&self.cfg.space, None)?;
        let mut pending: std::collections::BTreeMap<&str, Vec<&Pending>> =
            std::collections::BTreeMap::new();
        for p in outbox.iter().filter(|p| p.collection == collection) {
            pending.entry(p.record_id.as_str()).or_default().push(p);
        }
        let mirrored = self.store.mirrored_ids(&self.cfg.space, collection)?;
        let ids: std::collections::BTreeSet<&str> = mirrored
            .iter()
            .map(String::as_str)
            .chain(pending.keys().copied())
            .collect();
        let policies = self.policies(collection)?;
        let mut out = Vec::new();
        for id in ids {
            let mine = pending.get(id).map(Vec::as_slice).unwrap_or(&[]);
            if let Some(v) = self.view(collection, id, mine, &policies)? {
                out.push((id.to_owned(), v));
            }
        }
        Ok(out)
    }
}

/// The Mirror's value as a Record state at the smallest Stamps, so that every pending Mutation
/// (whose Stamps are all greater) merges on top of it by the spec's rules: `lww` and `keep_both`
/// Fields as a put, `counter` Fields as one increment, set Fields as adds.
fn base_state(value: Option<&Map<String, Value>>, policy: &impl Fn(&str) -> Policy) -> RecordState {
    let mut state = RecordState::default();
    let Some(value) = value else { return state };
    let stamp = |n: u16| Stamp {
        hlc: Hlc::new(0, n, "~mirror").expect("a valid node name"),
        op_id: "~mirror-base".parse().expect("a valid op ID"),
    };
    let mut assigned = Map::new();
    for (field, v) in value {
        let Ok(name) = field.parse() else { continue };
        match policy(field) {
            Policy::Counter => {
                if let Some(by) = v.as_i64() {
                    state.merge(&RecordState::from_effect(
                        stamp(1),
                        &Effect::Increment { field: name, by },
                    ));
                }
            }
            Policy::AddWinsSet => {
                let elements = v.as_array().cloned().unwrap_or_default();
                if !elements.is_empty() {
                    state.merge(&RecordState::from_effect(
                        stamp(1),
                        &Effect::SetAdd {
                            field: name,
                            elements,
                        },
                    ));
                }
            }
            Policy::Lww | Policy::KeepBoth => {
                assigned.insert(field.clone(), v.clone());
            }
        }
    }
    state.merge(&RecordState::from_effect(
        stamp(0),
        &Effect::Put { value: assigned },
    ));
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mutation(op: &str, effect: Value) -> Mutation {
        serde_json::from_value(
            json!({"op_id": op, "seq": 1, "collection": "c", "record_id": "r",
            "hlc": "019b76daa800-0000-client-a", "effect": effect}),
        )
        .unwrap()
    }

    #[test]
    fn pending_mutations_merge_onto_the_mirror_by_policy() {
        let policy = |f: &str| match f {
            "likes" => Policy::Counter,
            "tags" => Policy::AddWinsSet,
            _ => Policy::Lww,
        };
        let mirror = json!({"title": "t", "likes": 5, "tags": ["a", "b"], "n": 1});
        let mut state = base_state(mirror.as_object(), &policy);
        state.apply(&mutation(
            "op-000001",
            json!({"kind": "increment", "field": "likes", "by": 2}),
        ));
        state.apply(&mutation(
            "op-000002",
            json!({"kind": "set_remove", "field": "tags", "elements": ["a"]}),
        ));
        state.apply(&mutation(
            "op-000003",
            json!({"kind": "increment", "field": "n", "by": 10}),
        ));
        let view = state.materialize(policy, &std::collections::BTreeMap::new());
        assert_eq!(
            Value::Object(view.value),
            json!({"title": "t", "likes": 7, "tags": ["b"], "n": 11})
        );
        let mut deleted = base_state(mirror.as_object(), &policy);
        deleted.apply(&mutation("op-000004", json!({"kind": "delete"})));
        assert!(
            !deleted
                .materialize(policy, &std::collections::BTreeMap::new())
                .exists
        );
    }
}
