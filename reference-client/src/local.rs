//! The optimistic view: a pending Effect applied to the Mirror's value of its Record.
//!
//! This is what the user sees before the Server acknowledges a write. It applies each Effect
//! as if nothing concurrent happened (a put replaces, a patch assigns, an increment adds, set
//! operations add or remove, a resolve assigns, a delete removes). Concurrent writes of other
//! Clients are merged by the Server with the full rules of chapter 03, and the next pull brings
//! that result into the Mirror, where the remaining pending Effects are applied again.

use driftless_protocol::canonical::to_canonical_string;
use serde_json::{Map, Value};

fn add(base: Option<&Value>, by: i64) -> Value {
    match base {
        Some(Value::Number(n)) if n.is_i64() => {
            Value::from(n.as_i64().unwrap_or(0).saturating_add(by))
        }
        Some(Value::Number(n)) => serde_json::json!(n.as_f64().unwrap_or(0.0) + by as f64),
        _ => Value::from(by),
    }
}

/// `value` (None: absent or deleted) after `effect`.
pub fn apply(value: Option<Map<String, Value>>, effect: &Value) -> Option<Map<String, Value>> {
    let field = effect["field"].as_str().unwrap_or("").to_owned();
    match effect["kind"].as_str().unwrap_or("") {
        "put" => effect["value"].as_object().cloned(),
        "delete" => None,
        "patch" => {
            let mut v = value.unwrap_or_default();
            for (k, x) in effect["set"].as_object().into_iter().flatten() {
                v.insert(k.clone(), x.clone());
            }
            for k in effect["unset"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                v.remove(k);
            }
            Some(v)
        }
        "increment" => {
            let mut v = value.unwrap_or_default();
            let by = effect["by"].as_i64().unwrap_or(0);
            let next = add(v.get(&field), by);
            v.insert(field, next);
            Some(v)
        }
        kind @ ("set_add" | "set_remove") => {
            let mut v = value.unwrap_or_default();
            let mut elems: Vec<Value> = v
                .get(&field)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for e in effect["elements"].as_array().into_iter().flatten() {
                let key = to_canonical_string(e);
                elems.retain(|x| to_canonical_string(x) != key);
                if kind == "set_add" {
                    elems.push(e.clone());
                }
            }
            elems.sort_by_key(to_canonical_string);
            v.insert(field, Value::Array(elems));
            Some(v)
        }
        "resolve" => {
            let mut v = value.unwrap_or_default();
            v.insert(field, effect["value"].clone());
            Some(v)
        }
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn effects_apply_in_order() {
        let v = apply(
            None,
            &json!({"kind": "put", "value": {"n": 1, "tags": ["b"]}}),
        );
        let v = apply(v, &json!({"kind": "increment", "field": "n", "by": 2}));
        let v = apply(
            v,
            &json!({"kind": "set_add", "field": "tags", "elements": ["a", "b"]}),
        );
        let v = apply(
            v,
            &json!({"kind": "patch", "set": {"t": "x"}, "unset": ["n"]}),
        );
        assert_eq!(
            Value::Object(v.clone().unwrap()),
            json!({"tags": ["a", "b"], "t": "x"})
        );
        assert_eq!(apply(v, &json!({"kind": "delete"})), None);
    }
}
