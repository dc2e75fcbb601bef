//! The Server's announced limits on the Client (spec chapter 01, "Discovery", `[DISC-3]`, and
//! chapter 08, "Staying within the limits"): remembered from the last discovery document, so
//! that a write is checked against them when it is made, offline too (`[CLIENT-16]`), and a push
//! is cut by encoded size and count (`[CLIENT-17]`), and a Mutation that fits in no push is
//! dead-lettered unsent (`[CLIENT-18]`). Whatever the Server still refuses as a
//! whole request is bisected by the push module until the offending Mutation is alone
//! (`[CLIENT-19]`).

use driftless_protocol::problem::{Problem, ProblemType};
use serde_json::{json, Value};

use crate::store::Store;
use crate::{Client, ClientError};

/// The store key of the last announced `limits` object.
const LIMITS_KEY: &str = "discovery_limits";

/// Brackets a push body adds around one Mutation: the body object and the `mutations` array.
const PUSH_DEPTH_OVERHEAD: usize = 2;

/// The limits a push must stay within, from `discovery.limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Largest request body, in bytes.
    pub(crate) body_bytes_max: usize,
    /// Deepest nesting of arrays and objects in a body, counted in brackets.
    pub(crate) json_depth_max: usize,
    /// Most Mutations in one push.
    pub(crate) mutations_per_push_max: usize,
}

impl Limits {
    fn from_json(v: &Value) -> Option<Self> {
        let get = |k: &str| v[k].as_u64().map(|n| n as usize);
        Some(Self {
            body_bytes_max: get("body_bytes_max")?,
            json_depth_max: get("json_depth_max")?,
            mutations_per_push_max: get("mutations_per_push_max").unwrap_or(100).max(1),
        })
    }

    /// Bytes of a push body from this Client with no Mutations; each Mutation adds its encoded
    /// length and, after the first, one comma.
    pub(crate) fn push_envelope_bytes(client_id: &str) -> usize {
        json!({"client_id": client_id, "mutations": []})
            .to_string()
            .len()
    }

    /// Why a Mutation (its encoded text) can never be sent within these limits, as the Problem
    /// the Server would answer; `None` if it fits in a push of its own.
    pub(crate) fn refuse(&self, client_id: &str, mutation: &Value) -> Option<Problem> {
        let depth = json_depth(mutation) + PUSH_DEPTH_OVERHEAD;
        if depth > self.json_depth_max && !crate::faults::fault!(DeepWriteWedge) {
            return Some(Problem::new(
                ProblemType::InvalidJson,
                format!(
                    "the mutation nests {depth} levels deep in a push; the server allows {} (not sent)",
                    self.json_depth_max
                ),
            ));
        }
        let bytes = Self::push_envelope_bytes(client_id) + mutation.to_string().len();
        if bytes > self.body_bytes_max {
            return Some(Problem::new(
                ProblemType::PayloadTooLarge,
                format!(
                    "the mutation needs a push body of {bytes} bytes; the server allows {} (not sent)",
                    self.body_bytes_max
                ),
            ));
        }
        None
    }
}

/// Nesting depth of a JSON value counted in brackets, as a Server's depth limit counts it:
/// a scalar is 0, `[]` and `{}` are 1, `[[1]]` is 2.
pub(crate) fn json_depth(v: &Value) -> usize {
    // Iterative, so that a value nested deeper than the stack cannot crash the Client.
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(v, 0)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(a) => {
                deepest = deepest.max(d + 1);
                stack.extend(a.iter().map(|x| (x, d + 1)));
            }
            Value::Object(o) => {
                deepest = deepest.max(d + 1);
                stack.extend(o.values().map(|x| (x, d + 1)));
            }
            _ => {}
        }
    }
    deepest
}

impl Client {
    /// Remembers the announced limits of a discovery document for later writes.
    pub(crate) fn keep_limits(&mut self, discovery: &Value) -> Result<(), ClientError> {
        let limits = discovery["limits"].to_string();
        self.store.tx(|tx| Store::set_meta(tx, LIMITS_KEY, &limits))
    }

    /// The limits of this sync's discovery document, else the last ones announced; `None` if
    /// this Client never heard from the Server.
    pub(crate) fn limits(&self) -> Result<Option<Limits>, ClientError> {
        if let Some(d) = &self.discovery {
            return Ok(Limits::from_json(&d["limits"]));
        }
        Ok(self
            .store
            .meta(LIMITS_KEY)?
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| Limits::from_json(&v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_brackets_like_the_server() {
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!([[1]])), 2);
        assert_eq!(json_depth(&json!({"a": {"b": [1]}, "c": 2})), 3);
    }

    #[test]
    fn a_mutation_too_deep_for_a_push_is_refused() {
        let l = Limits {
            body_bytes_max: 1 << 20,
            json_depth_max: 4,
            mutations_per_push_max: 10,
        };
        assert!(l.refuse("c-1", &json!({"effect": {"value": {}}})).is_some());
        assert!(l.refuse("c-1", &json!({"effect": {"value": 1}})).is_none());
    }

    #[test]
    fn a_mutation_larger_than_the_body_limit_is_refused() {
        let l = Limits {
            body_bytes_max: 100,
            json_depth_max: 32,
            mutations_per_push_max: 10,
        };
        let m = json!({"v": "x".repeat(100)});
        let p = l.refuse("c-1", &m).unwrap();
        assert_eq!(p.problem_type, ProblemType::PayloadTooLarge.uri());
    }
}
