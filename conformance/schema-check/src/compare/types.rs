//! JSON types as bit sets: what a schema's `type` allows and what a value is.

use serde_json::{Map, Value};

pub(super) const NULL: u8 = 1;
pub(super) const BOOL: u8 = 2;
pub(super) const OBJ: u8 = 4;
pub(super) const ARR: u8 = 8;
pub(super) const STR: u8 = 16;
pub(super) const INT: u8 = 32;
/// Numbers that are not integers.
pub(super) const FRAC: u8 = 64;
pub(super) const ANY: u8 = 127;
pub(super) const TYPE_BITS: [u8; 7] = [NULL, BOOL, OBJ, ARR, STR, INT, FRAC];

pub(super) const URI_WIDE: &str = "urn:driftless:wide";
pub(super) const URI_NARROW: &str = "urn:driftless:narrow";

pub(super) fn type_bits(name: &str) -> u8 {
    match name {
        "null" => NULL,
        "boolean" => BOOL,
        "object" => OBJ,
        "array" => ARR,
        "string" => STR,
        "integer" => INT,
        "number" => INT | FRAC,
        _ => 0,
    }
}

pub(super) fn value_bits(v: &Value) -> u8 {
    match v {
        Value::Null => NULL,
        Value::Bool(_) => BOOL,
        Value::Number(n) if n.is_i64() || n.is_u64() => INT,
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => INT,
        Value::Number(_) => FRAC,
        Value::String(_) => STR,
        Value::Array(_) => ARR,
        Value::Object(_) => OBJ,
    }
}

pub(super) fn bits_names(b: u8) -> String {
    let mut out = Vec::new();
    for (bit, name) in [
        (NULL, "null"),
        (BOOL, "boolean"),
        (OBJ, "object"),
        (ARR, "array"),
        (STR, "string"),
    ] {
        if b & bit != 0 {
            out.push(name);
        }
    }
    match (b & INT != 0, b & FRAC != 0) {
        (true, true) => out.push("number"),
        (true, false) => out.push("integer"),
        (false, true) => out.push("non-integer number"),
        _ => {}
    }
    out.join(", ")
}

pub(super) fn schema_type_bits(m: &Map<String, Value>) -> u8 {
    match m.get("type") {
        Some(Value::String(t)) => type_bits(t),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .fold(0, |b, t| b | type_bits(t)),
        _ => ANY,
    }
}
