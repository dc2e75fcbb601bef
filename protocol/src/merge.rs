//! The merge rules of spec chapter 03, as pure functions.
//!
//! A [`RecordState`] is everything the convergence rule needs to know about the set of Mutations
//! applied to one Record. It is a join-semilattice: [`RecordState::merge`] is commutative,
//! associative and idempotent, and every Mutation maps to a small state of its own
//! ([`RecordState::from_mutation`]). So the state after applying a set of Mutations is the join of
//! their states, whatever the arrival order, which is the convergence rule (`[MERGE-1]`). The
//! Server stores a `RecordState` per Record; the Client and the conformance suite's model use the
//! same functions. [`RecordState::materialize`] turns a state into the Record's value under the
//! Collection's Policies (the Definition in chapter 03).
//!
//! ```
//! use driftless_protocol::merge::RecordState;
//! use driftless_protocol::messages::Mutation;
//! use driftless_protocol::collection_schema::Policy;
//! let m = |op: &str, hlc: &str, effect: serde_json::Value| -> Mutation {
//!     serde_json::from_value(serde_json::json!({"op_id": op, "seq": 1, "collection": "stock",
//!         "record_id": "r1", "hlc": hlc, "effect": effect})).unwrap()
//! };
//! // Spec chapter 03, example 3: an increment before a put is superseded, one after it adds.
//! let put = m("op-put-0001", "019b76daa800-0005-client-a", serde_json::json!({"kind": "put", "value": {"count": 10}}));
//! let inc1 = m("op-inc-0001", "019b76daa800-0002-client-b", serde_json::json!({"kind": "increment", "field": "count", "by": 3}));
//! let inc2 = m("op-inc-0002", "019b76daabe8-0000-client-b", serde_json::json!({"kind": "increment", "field": "count", "by": 4}));
//! let mut a = RecordState::default();
//! for x in [&put, &inc1, &inc2] { a.apply(x); }
//! let mut b = RecordState::default();
//! for x in [&inc2, &put, &inc1] { b.apply(x); }
//! assert_eq!(a, b);
//! let record = a.materialize(|_| Policy::Lww, &Default::default());
//! assert_eq!(serde_json::Value::Object(record.value), serde_json::json!({"count": 14}));
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::canonical::to_canonical_string;
use crate::collection_schema::Policy;
use crate::hlc::Hlc;
use crate::ids::{FieldName, OpId};
use crate::messages::{Effect, Mutation, SAFE_INTEGER_MAX};
use crate::problem::ProblemType;

/// The total order of Mutations: HLC, then Op ID (`[HLC-3]`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// The Mutation's HLC.
    pub hlc: Hlc,
    /// The Mutation's Op ID, which breaks ties between equal HLCs.
    pub op_id: OpId,
}

impl Stamp {
    /// The Stamp of a Mutation.
    pub fn of(m: &Mutation) -> Self {
        Self {
            hlc: m.hlc.clone(),
            op_id: m.op_id.clone(),
        }
    }
}

/// One assignment to a Field: a value, or `None` for *absent*.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// The assigning Mutation.
    pub stamp: Stamp,
    /// The assigned value; `None` makes the Field absent.
    pub value: Option<Value>,
}

/// The latest add of one set element.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElementAdd {
    /// The element.
    pub element: Value,
    /// The latest `set_add` containing it.
    pub stamp: Stamp,
}

/// One increment of a Field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Increment {
    /// The incrementing Mutation.
    pub stamp: Stamp,
    /// The amount.
    pub by: i64,
}

/// What the Mutations applied to a Record say about one Field.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FieldState {
    /// Each author's latest assignment (by `put`, `patch` or `resolve`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub assigns: BTreeMap<String, Assignment>,
    /// The latest `resolve` of the Field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Stamp>,
    /// Every live increment, in Stamp order, each Stamp once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub increments: Vec<Increment>,
    /// The latest add of each element, keyed by the element's canonical JSON.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub adds: BTreeMap<String, ElementAdd>,
    /// The latest remove of each element, keyed by the element's canonical JSON.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub removes: BTreeMap<String, Stamp>,
}

/// The merged state of one Record: a join-semilattice over sets of Mutations.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RecordState {
    /// The greatest Stamp of a `delete` (`D` in the spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Stamp>,
    /// The greatest Stamp of a live Mutation that is not a `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_write: Option<Stamp>,
    /// Each author's latest live `put`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub puts: BTreeMap<String, Stamp>,
    /// Per Field.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, FieldState>,
}

/// A Record's value under its Collection's Policies.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Materialized {
    /// Whether the Record exists (otherwise it is a tombstone or was never written).
    pub exists: bool,
    /// Its Fields (empty unless it exists).
    pub value: Map<String, Value>,
    /// Sibling values of each `keep_both` Field in conflict, oldest first; `null` for absent.
    pub conflicts: BTreeMap<String, Vec<Value>>,
}

fn max_stamp(a: &mut Option<Stamp>, b: &Option<Stamp>) {
    if b.as_ref() > a.as_ref() {
        *a = b.clone();
    }
}

impl FieldState {
    fn merge(&mut self, other: &FieldState) {
        for (author, assignment) in &other.assigns {
            match self.assigns.get(author) {
                Some(mine) if mine.stamp >= assignment.stamp => {}
                _ => {
                    self.assigns.insert(author.clone(), assignment.clone());
                }
            }
        }
        max_stamp(&mut self.resolved, &other.resolved);
        for inc in &other.increments {
            if let Err(at) = self
                .increments
                .binary_search_by(|probe| probe.stamp.cmp(&inc.stamp))
            {
                self.increments.insert(at, inc.clone());
            }
        }
        for (key, add) in &other.adds {
            match self.adds.get(key) {
                Some(mine) if mine.stamp >= add.stamp => {}
                _ => {
                    self.adds.insert(key.clone(), add.clone());
                }
            }
        }
        for (key, stamp) in &other.removes {
            match self.removes.get(key) {
                Some(mine) if mine >= stamp => {}
                _ => {
                    self.removes.insert(key.clone(), stamp.clone());
                }
            }
        }
    }

    /// Drops everything at or before the latest `delete`: it can never count again (`[MERGE-4]`).
    fn prune(&mut self, deleted: &Stamp) {
        self.assigns.retain(|_, a| a.stamp > *deleted);
        if self.resolved.as_ref().is_some_and(|r| r <= deleted) {
            self.resolved = None;
        }
        self.increments.retain(|i| i.stamp > *deleted);
        self.adds.retain(|_, a| a.stamp > *deleted);
        self.removes.retain(|_, r| *r > *deleted);
    }

    fn is_empty(&self) -> bool {
        self.assigns.is_empty()
            && self.resolved.is_none()
            && self.increments.is_empty()
            && self.adds.is_empty()
            && self.removes.is_empty()
    }

    fn sum_after(&self, after: Option<&Stamp>) -> Option<i128> {
        let mut live = self
            .increments
            .iter()
            .filter(|i| after.is_none_or(|a| i.stamp > *a))
            .peekable();
        live.peek()?;
        Some(live.map(|i| i128::from(i.by)).sum())
    }
}

/// `base + sum` as the spec defines it: exact for integers, one IEEE 754 addition otherwise.
fn add_to(base: Option<&Value>, sum: i128) -> Value {
    const SAFE: i128 = SAFE_INTEGER_MAX as i128;
    // Chapter 03: a base is an integer when it has no fractional part and is at most 2^53 in
    // magnitude; any other number takes the double branch, however it was spelled.
    const INTEGER_BASE_MAX: i128 = SAFE + 1;
    let integral = |n: &serde_json::Number| -> Option<i128> {
        let exact = if let Some(i) = n.as_i64() {
            i128::from(i)
        } else if let Some(u) = n.as_u64() {
            i128::from(u)
        } else {
            let f = n.as_f64()?;
            if f.fract() != 0.0 || f.abs() > INTEGER_BASE_MAX as f64 {
                return None;
            }
            f as i128
        };
        (exact.abs() <= INTEGER_BASE_MAX).then_some(exact)
    };
    let from_f64 = |f: f64| {
        serde_json::Number::from_f64(f.clamp(f64::MIN, f64::MAX))
            .map(Value::Number)
            .unwrap_or(Value::Null)
    };
    let exact = match base {
        Some(Value::Number(n)) => match integral(n) {
            Some(i) => i + sum,
            None => return from_f64(n.as_f64().unwrap_or(0.0) + sum as f64),
        },
        _ => sum,
    };
    if (-SAFE..=SAFE).contains(&exact) {
        Value::from(exact as i64)
    } else {
        from_f64(exact as f64)
    }
}

impl RecordState {
    /// The state of a set holding only `m`.
    pub fn from_mutation(m: &Mutation) -> Self {
        Self::from_effect(Stamp::of(m), &m.effect)
    }

    /// The state of a set holding one Mutation with this Stamp and (upcast) Effect. The author
    /// is the node of the Stamp's HLC.
    pub fn from_effect(stamp: Stamp, effect: &Effect) -> Self {
        let author = stamp.hlc.node().to_owned();
        let mut state = RecordState::default();
        let assign = |state: &mut RecordState, field: &str, value: Option<Value>| {
            state.field(field).assigns.insert(
                author.clone(),
                Assignment {
                    stamp: stamp.clone(),
                    value,
                },
            );
        };
        match effect {
            Effect::Delete {} => {
                state.deleted = Some(stamp);
                return state;
            }
            Effect::Put { value } => {
                state.puts.insert(author.clone(), stamp.clone());
                for (name, v) in value {
                    assign(&mut state, name, Some(v.clone()));
                }
            }
            Effect::Patch { set, unset } => {
                for (name, v) in set {
                    assign(&mut state, name, Some(v.clone()));
                }
                for name in unset {
                    assign(&mut state, name.as_str(), None);
                }
            }
            Effect::Increment { field, by } => {
                state.field(field.as_str()).increments.push(Increment {
                    stamp: stamp.clone(),
                    by: *by,
                });
            }
            Effect::SetAdd { field, elements } => {
                let f = state.field(field.as_str());
                for e in elements {
                    f.adds.insert(
                        to_canonical_string(e),
                        ElementAdd {
                            element: e.clone(),
                            stamp: stamp.clone(),
                        },
                    );
                }
            }
            Effect::SetRemove { field, elements } => {
                let f = state.field(field.as_str());
                for e in elements {
                    f.removes.insert(to_canonical_string(e), stamp.clone());
                }
            }
            Effect::Resolve { field, value } => {
                assign(&mut state, field.as_str(), Some(value.clone()));
                state.field(field.as_str()).resolved = Some(stamp.clone());
            }
        }
        state.last_write = Some(stamp);
        state
    }

    fn field(&mut self, name: &str) -> &mut FieldState {
        self.fields.entry(name.to_owned()).or_default()
    }

    /// Joins `other` into `self`. Commutative, associative and idempotent.
    pub fn merge(&mut self, other: &RecordState) {
        max_stamp(&mut self.deleted, &other.deleted);
        max_stamp(&mut self.last_write, &other.last_write);
        for (author, stamp) in &other.puts {
            match self.puts.get(author) {
                Some(mine) if mine >= stamp => {}
                _ => {
                    self.puts.insert(author.clone(), stamp.clone());
                }
            }
        }
        for (name, fs) in &other.fields {
            self.field(name).merge(fs);
        }
        self.prune();
    }

    /// Applies one Mutation (its Effect as written; upcast it first if the Collection has
    /// Collection Schemas).
    pub fn apply(&mut self, m: &Mutation) {
        self.merge(&Self::from_mutation(m));
    }

    fn prune(&mut self) {
        let Some(deleted) = self.deleted.clone() else {
            return;
        };
        if self.last_write.as_ref().is_some_and(|w| *w <= deleted) {
            self.last_write = None;
        }
        self.puts.retain(|_, s| *s > deleted);
        for fs in self.fields.values_mut() {
            fs.prune(&deleted);
        }
        self.fields.retain(|_, fs| !fs.is_empty());
    }

    /// Whether the Record exists: some live Mutation is not a `delete`.
    pub fn exists(&self) -> bool {
        self.last_write.is_some()
    }

    /// Renames a Field in the state, for a `rename_field` migration step. What was written to
    /// `to` before is joined with what was written to `from`.
    pub fn rename_field(&mut self, from: &str, to: &str) {
        if let Some(fs) = self.fields.remove(from) {
            self.field(to).merge(&fs);
        }
    }

    /// Drops a Field from the state, for a `remove_field` migration step.
    pub fn remove_field(&mut self, field: &str) {
        self.fields.remove(field);
    }

    /// The Record as the spec's Definition gives it, with `policy` giving each Field's Policy
    /// and `defaults` the `add_field` defaults in force (`[EVO-8]`).
    pub fn materialize(
        &self,
        policy: impl Fn(&str) -> Policy,
        defaults: &BTreeMap<String, Value>,
    ) -> Materialized {
        if !self.exists() {
            return Materialized::default();
        }
        let latest_put = self.puts.values().max();
        let mut out = Materialized {
            exists: true,
            ..Materialized::default()
        };
        for (name, fs) in &self.fields {
            let value = match policy(name) {
                Policy::Lww => {
                    let assigned = fs.assigns.values().max_by(|a, b| a.stamp.cmp(&b.stamp));
                    // A put that does not name the Field assigns absent to it (rule 3).
                    let (stamp, base) = match (assigned, latest_put) {
                        (Some(a), Some(p)) if *p > a.stamp => (Some(p), None),
                        (Some(a), _) => (Some(&a.stamp), a.value.as_ref()),
                        (None, p) => (p, None),
                    };
                    match fs.sum_after(stamp) {
                        Some(sum) => Some(add_to(base, sum)),
                        None => base.cloned(),
                    }
                }
                Policy::Counter => fs.sum_after(None).map(|sum| add_to(None, sum)),
                Policy::AddWinsSet => {
                    if fs.adds.is_empty() && fs.removes.is_empty() {
                        None
                    } else {
                        let present = fs.adds.iter().filter(|(key, add)| {
                            fs.removes.get(*key).is_none_or(|r| add.stamp > *r)
                        });
                        Some(Value::Array(
                            present.map(|(_, add)| add.element.clone()).collect(),
                        ))
                    }
                }
                Policy::KeepBoth => {
                    let mut siblings: Vec<&Assignment> = fs
                        .assigns
                        .values()
                        .filter(|a| fs.resolved.as_ref().is_none_or(|z| a.stamp >= *z))
                        .collect();
                    siblings.sort_by(|a, b| a.stamp.cmp(&b.stamp));
                    if siblings.len() > 1 {
                        out.conflicts.insert(
                            name.clone(),
                            siblings
                                .iter()
                                .map(|s| s.value.clone().unwrap_or(Value::Null))
                                .collect(),
                        );
                    }
                    siblings.last().and_then(|s| s.value.clone())
                }
            };
            if let Some(v) = value {
                out.value.insert(name.clone(), v);
            }
        }
        for (name, default) in defaults {
            if !out.value.contains_key(name) {
                out.value.insert(name.clone(), default.clone());
            }
        }
        out
    }
}

/// Why an Effect cannot be applied, whatever the Record's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct EffectError {
    /// `invalid-mutation` or `policy-violation`.
    pub problem: ProblemType,
    /// A sentence for the Problem's `detail`; names Fields, never values.
    pub detail: String,
}

/// Checks the rules of spec chapter 03 that depend only on the Effect and the Field Policies
/// (`[MUT-4]` to `[MUT-11]`).
pub fn check_effect(effect: &Effect, policy: impl Fn(&str) -> Policy) -> Result<(), EffectError> {
    let invalid = |detail: String| {
        Err(EffectError {
            problem: ProblemType::InvalidMutation,
            detail,
        })
    };
    let violation = |detail: String| {
        Err(EffectError {
            problem: ProblemType::PolicyViolation,
            detail,
        })
    };
    let check_names = |map: &Map<String, Value>| -> Result<(), EffectError> {
        for name in map.keys() {
            if name.parse::<FieldName>().is_err() {
                return invalid(format!("{name:?} is not a valid field name"));
            }
        }
        Ok(())
    };
    let assignable = |name: &str| -> Result<(), EffectError> {
        match policy(name) {
            Policy::Counter | Policy::AddWinsSet => violation(format!(
                "field {name:?} has policy {:?} and cannot be assigned by put or patch",
                policy(name)
            )),
            _ => Ok(()),
        }
    };
    match effect {
        Effect::Put { value } => {
            check_names(value)?;
            value.keys().try_for_each(|n| assignable(n))
        }
        Effect::Patch { set, unset } => {
            check_names(set)?;
            if set.is_empty() && unset.is_empty() {
                return invalid("a patch must set or unset at least one field".into());
            }
            if let Some(f) = unset.iter().find(|f| set.contains_key(f.as_str())) {
                return invalid(format!("field {f:?} is both set and unset"));
            }
            set.keys()
                .map(String::as_str)
                .chain(unset.iter().map(FieldName::as_str))
                .try_for_each(assignable)
        }
        Effect::Delete {} => Ok(()),
        Effect::Increment { field, by } => {
            if by.unsigned_abs() > SAFE_INTEGER_MAX as u64 {
                return invalid("increment by must be a safe integer".into());
            }
            match policy(field.as_str()) {
                Policy::Lww | Policy::Counter => Ok(()),
                p => violation(format!(
                    "field {field:?} has policy {p:?} and cannot be incremented"
                )),
            }
        }
        Effect::SetAdd { field, elements } | Effect::SetRemove { field, elements } => {
            if elements.is_empty() {
                return invalid("elements must not be empty".into());
            }
            match policy(field.as_str()) {
                Policy::AddWinsSet => Ok(()),
                p => violation(format!(
                    "field {field:?} has policy {p:?}, not add_wins_set"
                )),
            }
        }
        Effect::Resolve { field, .. } => match policy(field.as_str()) {
            Policy::KeepBoth => Ok(()),
            p => violation(format!("field {field:?} has policy {p:?}, not keep_both")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integer_sums_are_exact_and_large_ones_become_doubles() {
        assert_eq!(add_to(Some(&json!(1.5)), 2), json!(3.5));
        assert_eq!(add_to(Some(&json!(2.0)), 1), json!(3));
        assert_eq!(add_to(Some(&json!("x")), 4), json!(4));
        assert_eq!(add_to(None, -4), json!(-4));
        assert_eq!(
            add_to(Some(&json!(SAFE_INTEGER_MAX)), 1),
            json!(9_007_199_254_740_992.0)
        );
    }

    /// Chapter 03: a base above 2^53 is not an integer base, however it was stored; the sum is
    /// `double(base) + double(Σ by)`: 9007199254740993 + 1 is 9007199254740992 (the double of
    /// the base is 2^53, and 2^53 + 1 rounds to even), not the exact 9007199254740994.
    #[test]
    fn a_base_above_2_pow_53_adds_as_a_double() {
        assert_eq!(
            add_to(Some(&json!(9_007_199_254_740_993u64)), 1),
            json!(9_007_199_254_740_992.0)
        );
        assert_eq!(
            add_to(Some(&json!(9_007_199_254_740_992u64)), -1),
            json!(9_007_199_254_740_991u64)
        );
    }

    #[test]
    fn patch_must_name_a_field_once() {
        let lww = |_: &str| Policy::Lww;
        let empty: Effect = serde_json::from_value(json!({"kind": "patch"})).unwrap();
        assert_eq!(
            check_effect(&empty, lww).unwrap_err().problem,
            ProblemType::InvalidMutation
        );
        let both: Effect =
            serde_json::from_value(json!({"kind": "patch", "set": {"a": 1}, "unset": ["a"]}))
                .unwrap();
        assert!(check_effect(&both, lww).is_err());
    }

    #[test]
    fn counters_cannot_be_put() {
        let policy = |f: &str| {
            if f == "likes" {
                Policy::Counter
            } else {
                Policy::Lww
            }
        };
        let put: Effect =
            serde_json::from_value(json!({"kind": "put", "value": {"likes": 0}})).unwrap();
        assert_eq!(
            check_effect(&put, policy).unwrap_err().problem,
            ProblemType::PolicyViolation
        );
    }
}
