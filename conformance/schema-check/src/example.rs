//! Counterexamples: concrete instances that one schema accepts and the other rejects.
//!
//! A counterexample is built from a minimal valid instance of the wider schema, with a candidate
//! value placed (or a property removed) at the finding's instance path. Candidates come from the
//! two subschemas around the finding (their enumerations and bounds) and from a fixed list of
//! ordinary values. Only a candidate that the `jsonschema` crate confirms is returned.

use serde_json::{json, Map, Value};

use super::{Direction, Finding};

fn resolve(root: &Value, s: &Value) -> Map<String, Value> {
    super::resolve_ref(root, s)
}

/// A small instance valid under `schema` in most practical cases (not guaranteed: patterns and
/// combinators can defeat it; callers validate).
pub fn minimal(schema: &Value, root: &Value, depth: usize) -> Value {
    if depth > 8 {
        return Value::Null;
    }
    let mut m = resolve(root, schema);
    if let Some(c) = m.get("const") {
        return c.clone();
    }
    if let Some(first) = m
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    if let Some(Value::Array(parts)) = m.remove("allOf") {
        for p in parts {
            for (k, v) in resolve(root, &p) {
                m.entry(k).or_insert(v);
            }
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(first) = m
            .get(key)
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .cloned()
        {
            let mut base = m.clone();
            base.remove(key);
            for (k, v) in resolve(root, &first) {
                base.insert(k, v);
            }
            return minimal(&Value::Object(base), root, depth + 1);
        }
    }
    let types: Vec<String> = match m.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ if m.contains_key("properties") || m.contains_key("required") => vec!["object".into()],
        _ if m.contains_key("items") => vec!["array".into()],
        _ => vec!["null".into()],
    };
    let pick = [
        "object", "array", "string", "integer", "number", "boolean", "null",
    ]
    .into_iter()
    .find(|t| types.iter().any(|x| x == t))
    .unwrap_or("null");
    let bound = |lo: Option<f64>, xlo: Option<f64>, step: f64| -> f64 {
        let mut v = lo.or(xlo.map(|x| x + step)).unwrap_or(0.0);
        if let Some(hi) = m.get("maximum").and_then(Value::as_f64) {
            v = v.min(hi);
        }
        if let Some(mult) = m.get("multipleOf").and_then(Value::as_f64) {
            v = (v / mult).ceil() * mult;
        }
        v
    };
    match pick {
        "object" => {
            let props = m
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let extra = m.get("additionalProperties").cloned().unwrap_or(json!({}));
            let mut out = Map::new();
            for r in super::required_names(&m) {
                let s = props.get(r).unwrap_or(&extra);
                out.insert(r.to_owned(), minimal(s, root, depth + 1));
            }
            Value::Object(out)
        }
        "array" => {
            let n = m.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let item = minimal(m.get("items").unwrap_or(&json!({})), root, depth + 1);
            Value::Array((0..n).map(|_| item.clone()).collect())
        }
        "string" => Value::String(
            "x".repeat(m.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize),
        ),
        "integer" => json!(bound(
            m.get("minimum").and_then(Value::as_f64),
            m.get("exclusiveMinimum").and_then(Value::as_f64),
            1.0
        ) as i64),
        "number" => json!(bound(
            m.get("minimum").and_then(Value::as_f64),
            m.get("exclusiveMinimum").and_then(Value::as_f64),
            0.5
        )),
        "boolean" => Value::Bool(false),
        _ => Value::Null,
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// `base` with `value` at `path` (`None`: removed), creating objects on the way.
fn place(base: &Value, path: &str, value: Option<&Value>) -> Value {
    let mut out = base.clone();
    let segs = segments(path);
    if segs.is_empty() {
        return value.cloned().unwrap_or(Value::Null);
    }
    let mut cur = &mut out;
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        if let Ok(idx) = seg.parse::<usize>() {
            if !cur.is_array() {
                *cur = Value::Array(Vec::new());
            }
            let arr = cur.as_array_mut().expect("made an array");
            while arr.len() <= idx {
                arr.push(Value::Null);
            }
            if last {
                match value {
                    Some(v) => arr[idx] = v.clone(),
                    None => {
                        arr.remove(idx);
                    }
                }
                return out;
            }
            cur = &mut arr[idx];
        } else {
            if !cur.is_object() {
                *cur = Value::Object(Map::new());
            }
            let obj = cur.as_object_mut().expect("made an object");
            if last {
                match value {
                    Some(v) => {
                        obj.insert(seg.clone(), v.clone());
                    }
                    None => {
                        obj.remove(seg);
                    }
                }
                return out;
            }
            cur = obj.entry(seg.clone()).or_insert(Value::Null);
        }
    }
    out
}

/// The subschema a pointer (into the file) ends in, minus the file prefix and trailing keyword.
fn subschema<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    let p = pointer.strip_prefix("/schema").unwrap_or(pointer);
    let mut parts: Vec<&str> = p.split('/').collect();
    while !parts.is_empty() {
        let joined = parts.join("/");
        if let Some(v) = root.pointer(&joined).filter(|v| v.is_object()) {
            return Some(v);
        }
        parts.pop();
    }
    Some(root)
}

fn candidates(root: &Value, sub: Option<&Value>, out: &mut Vec<Value>) {
    let Some(s) = sub.and_then(Value::as_object) else {
        return;
    };
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        out.extend(e.iter().cloned());
    }
    if let Some(c) = s.get("const") {
        out.push(c.clone());
    }
    if let Some(p) = s.get("pattern").and_then(Value::as_str) {
        out.extend(pattern_samples(p, 32).into_iter().map(Value::String));
    }
    for k in [
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
    ] {
        if let Some(v) = s.get(k).and_then(Value::as_f64) {
            for d in [-1.0, -0.5, 0.0, 0.5, 1.0] {
                let x = v + d;
                out.push(if x.fract() == 0.0 {
                    json!(x as i64)
                } else {
                    json!(x)
                });
            }
        }
    }
    for k in ["minLength", "maxLength"] {
        if let Some(n) = s.get(k).and_then(Value::as_u64) {
            for len in [n.saturating_sub(1), n, n + 1] {
                out.push(Value::String("x".repeat(len as usize)));
            }
        }
    }
    for k in ["minItems", "maxItems"] {
        if let Some(n) = s.get(k).and_then(Value::as_u64) {
            let item = minimal(s.get("items").unwrap_or(&json!({})), root, 1);
            for len in [n.saturating_sub(1), n, n + 1] {
                out.push(Value::Array(vec![item.clone(); len as usize]));
            }
        }
    }
    out.push(minimal(&Value::Object(s.clone()), root, 1));
}

/// Up to `n` strings matching `pattern`, drawn with a fixed seed (the same schemas always give
/// the same counterexample). None where the pattern is not one proptest can generate from.
fn pattern_samples(pattern: &str, n: usize) -> Vec<String> {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    // A JSON Schema pattern is unanchored and the generator takes no anchors: strings that match
    // the body in full match the pattern with or without its outer `^` and `$` (callers
    // validate each sample anyway).
    let body = pattern.strip_prefix('^').unwrap_or(pattern);
    let body = match body.strip_suffix('$') {
        Some(b) if !b.ends_with('\\') => b,
        _ => body,
    };
    let Ok(strategy) = proptest::string::string_regex(&crate::regular::ascii_classes(body)) else {
        return Vec::new();
    };
    // The generator's classes are Unicode (`\\d` includes other scripts' digits) where
    // ECMA-262's are ASCII: keep only what the schema's own regex engine accepts.
    let Ok(accepts) = jsonschema::validator_for(&json!({ "pattern": pattern })) else {
        return Vec::new();
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    (0..n)
        .filter_map(|_| strategy.new_tree(&mut runner).ok().map(|t| t.current()))
        .filter(|s| accepts.is_valid(&json!(s)))
        .collect()
}

const ORDINARY: &str = r#"[null, true, false, 0, 1, -1, 2, 1.5, 1000000000, -1000000000, "", "x", "xx", "0", "A", "a b", "2026-01-01", [], [null], [1, 1], ["x"], {}, {"extra_property": null}]"#;

/// A confirmed counterexample for `finding`, or `None`.
/// `wide_v` and `narrow_v` are the compiled `wide` and `narrow` (compiled once per check).
pub fn counterexample(
    wide: &Value,
    narrow: &Value,
    wide_v: &jsonschema::Validator,
    narrow_v: &jsonschema::Validator,
    finding: &Finding,
) -> Option<Value> {
    // The base must be valid under both schemas, so that only the change at the finding's path
    // makes the difference; fall back to the wide schema's minimal instance.
    let (mw, mn) = (minimal(wide, wide, 0), minimal(narrow, narrow, 0));
    let overlay = match (&mw, &mn) {
        (Value::Object(a), Value::Object(b)) => {
            let mut m = a.clone();
            m.extend(b.clone());
            Value::Object(m)
        }
        _ => mn.clone(),
    };
    let both = [mn.clone(), overlay, mw.clone()]
        .into_iter()
        .find(|c| wide_v.is_valid(c) && narrow_v.is_valid(c));
    let base = both.clone().unwrap_or(mw);
    let (wide_ptr, narrow_ptr) = match finding.direction {
        Direction::Backward => (&finding.old_pointer, &finding.new_pointer),
        Direction::Forward => (&finding.new_pointer, &finding.old_pointer),
    };
    let mut values = Vec::new();
    candidates(wide, subschema(wide, wide_ptr), &mut values);
    candidates(narrow, subschema(narrow, narrow_ptr), &mut values);
    // For overlapping alternatives, what each alternative is bounded by.
    if let Some(alts) = narrow
        .pointer(narrow_ptr.strip_prefix("/schema").unwrap_or(narrow_ptr))
        .and_then(Value::as_array)
    {
        for alt in alts {
            candidates(narrow, Some(alt), &mut values);
        }
    }
    values.extend(serde_json::from_str::<Vec<Value>>(ORDINARY).unwrap_or_default());
    // Each rule's own kind of change first: a removed property, an undeclared property, or a
    // value at the path.
    let mut tries: Vec<Value> = Vec::new();
    if let Some(h) = &finding.hint {
        tries.push(place(&base, &finding.instance_path, Some(h)));
        tries.push(place(
            &minimal(wide, wide, 0),
            &finding.instance_path,
            Some(h),
        ));
    }
    if finding.rule.starts_with("required-property")
        || finding.rule == "required-field-without-default"
    {
        tries.push(place(&base, &finding.instance_path, None));
    }
    if finding.rule.starts_with("additional-properties") {
        tries.push(place(
            &base,
            &format!("{}/extra_property", finding.instance_path),
            Some(&Value::Null),
        ));
    }
    tries.extend(
        values
            .iter()
            .map(|v| place(&base, &finding.instance_path, Some(v))),
    );
    if both.is_none() {
        tries.push(base.clone());
    }
    tries
        .into_iter()
        .find(|t| wide_v.is_valid(t) && !narrow_v.is_valid(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_instances_are_valid() {
        for schema in [
            json!({"type": "object", "required": ["a", "b"], "properties": {"a": {"type": "string", "minLength": 3}, "b": {"type": "integer", "minimum": 5, "multipleOf": 4}}}),
            json!({"type": "array", "minItems": 2, "items": {"enum": ["x", "y"]}}),
            json!({"anyOf": [{"type": "null"}, {"type": "string"}]}),
            json!({"$defs": {"n": {"type": "number", "exclusiveMinimum": 1}}, "$ref": "#/$defs/n"}),
        ] {
            let v = minimal(&schema, &schema, 0);
            assert!(
                jsonschema::is_valid(&schema, &v),
                "{v} is not valid under {schema}"
            );
        }
    }

    #[test]
    fn pattern_samples_match_their_pattern() {
        for p in ["^b", "^[a-d]+$", "x[0-9]{2}", "^\\d{4}-\\d{2}$"] {
            let samples = pattern_samples(p, 8);
            assert!(!samples.is_empty(), "{p}");
            let v = jsonschema::validator_for(&json!({"pattern": p})).unwrap();
            for s in samples {
                assert!(v.is_valid(&json!(s)), "{p}: {s:?}");
            }
        }
    }

    #[test]
    fn place_builds_paths() {
        assert_eq!(
            place(&json!({}), "/a/0/b", Some(&json!(1))),
            json!({"a": [{"b": 1}]})
        );
        assert_eq!(place(&json!({"a": 1, "b": 2}), "/a", None), json!({"b": 2}));
    }
}
