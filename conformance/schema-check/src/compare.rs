//! The structural comparison (spec chapter 10, Compatibility): every place where the narrower
//! of two JSON Schemas rejects an instance the wider one accepts.
//!
//! [`compare`] walks both schemas side by side, following local `$ref`s, `allOf`/`anyOf`/`oneOf`,
//! objects and arrays, and records a [`Finding`] with a stable rule ID per difference: types,
//! `enum`/`const`, the numeric and size bounds of the `BOUNDS` table, `pattern`, `multipleOf`,
//! `uniqueItems`, required and closed properties, and alternatives. Keywords it does not analyse
//! give `undecidable`. This file is over 600 lines because it is one cohesive thing: a single
//! recursive walk (`Walk`) with the tables and schema readers it needs; the schema readers
//! ([`resolve_ref`], [`required_names`]) are shared with the counterexamples and the generator.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::{Direction, Finding, Severity};

const ALL_TYPES: [&str; 7] = [
    "null", "boolean", "object", "array", "number", "string", "integer",
];

/// Keywords whose changes the checker does not analyse; any difference in them is undecidable.
const OPAQUE: [&str; 12] = [
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contains",
    "prefixItems",
    "patternProperties",
];

/// A numeric bound: its keyword, the types it constrains, whether it is a lower bound (a
/// greater value narrows), its rule IDs (backward, forward) and the message (`{}`: the new value).
struct Bound {
    key: &'static str,
    types: &'static [&'static str],
    lower: bool,
    backward: &'static str,
    forward: &'static str,
    message: &'static str,
}

const NUMBERS: &[&str] = &["number", "integer"];

const BOUNDS: [Bound; 10] = [
    Bound {
        key: "minimum",
        types: NUMBERS,
        lower: true,
        backward: "minimum-increased",
        forward: "minimum-decreased",
        message: "minimum is now {}",
    },
    Bound {
        key: "exclusiveMinimum",
        types: NUMBERS,
        lower: true,
        backward: "minimum-increased",
        forward: "minimum-decreased",
        message: "exclusiveMinimum is now {}",
    },
    Bound {
        key: "maximum",
        types: NUMBERS,
        lower: false,
        backward: "maximum-decreased",
        forward: "maximum-increased",
        message: "maximum is now {}",
    },
    Bound {
        key: "exclusiveMaximum",
        types: NUMBERS,
        lower: false,
        backward: "maximum-decreased",
        forward: "maximum-increased",
        message: "exclusiveMaximum is now {}",
    },
    Bound {
        key: "minLength",
        types: &["string"],
        lower: true,
        backward: "min-length-increased",
        forward: "min-length-decreased",
        message: "strings must now have at least {} characters",
    },
    Bound {
        key: "maxLength",
        types: &["string"],
        lower: false,
        backward: "max-length-decreased",
        forward: "max-length-increased",
        message: "strings may now have at most {} characters",
    },
    Bound {
        key: "minItems",
        types: &["array"],
        lower: true,
        backward: "min-items-increased",
        forward: "min-items-decreased",
        message: "arrays must now have at least {} items",
    },
    Bound {
        key: "maxItems",
        types: &["array"],
        lower: false,
        backward: "max-items-decreased",
        forward: "max-items-increased",
        message: "arrays may now have at most {} items",
    },
    Bound {
        key: "minProperties",
        types: &["object"],
        lower: true,
        backward: "min-properties-increased",
        forward: "min-properties-decreased",
        message: "minProperties is now {}",
    },
    Bound {
        key: "maxProperties",
        types: &["object"],
        lower: false,
        backward: "max-properties-decreased",
        forward: "max-properties-increased",
        message: "maxProperties is now {}",
    },
];

struct Walk<'a> {
    wide_root: &'a Value,
    narrow_root: &'a Value,
    wide_prefix: &'a str,
    narrow_prefix: &'a str,
    direction: Direction,
    findings: Vec<Finding>,
    seen: BTreeSet<(String, String)>,
}

/// Where each side of a comparison is.
#[derive(Clone)]
struct At {
    wide: String,
    narrow: String,
    instance: String,
}

impl At {
    fn both(&self, segment: &str) -> At {
        At {
            wide: format!("{}/{segment}", self.wide),
            narrow: format!("{}/{segment}", self.narrow),
            instance: self.instance.clone(),
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Every place where `narrow` rejects something `wide` accepts.
pub fn compare(
    wide: &Value,
    wide_prefix: &str,
    narrow: &Value,
    narrow_prefix: &str,
    direction: Direction,
) -> Vec<Finding> {
    let mut w = Walk {
        wide_root: wide,
        narrow_root: narrow,
        wide_prefix,
        narrow_prefix,
        direction,
        findings: Vec::new(),
        seen: BTreeSet::new(),
    };
    w.walk(
        wide,
        narrow,
        At {
            wide: String::new(),
            narrow: String::new(),
            instance: String::new(),
        },
    );
    w.findings
}

/// A schema as an object with its local `$ref`s (`#/...` in `root`) resolved: the target's
/// keywords, overlaid by the referring schema's siblings. Shared by the comparison, the
/// counterexamples and the generator.
pub(crate) fn resolve_ref(root: &Value, schema: &Value) -> Map<String, Value> {
    let mut m = as_object(schema);
    for _ in 0..32 {
        let Some(Value::String(r)) = m.get("$ref").cloned() else {
            break;
        };
        let Some(target) = r.strip_prefix('#').and_then(|p| root.pointer(p)) else {
            break;
        };
        m.remove("$ref");
        let mut merged = as_object(target);
        for (k, v) in m {
            merged.entry(k).or_insert(v);
        }
        m = merged;
    }
    m
}

fn as_object(v: &Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m.clone(),
        Value::Bool(false) => [("not".to_owned(), json!({}))].into_iter().collect(),
        _ => Map::new(),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n)
            if n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) =>
        {
            "integer"
        }
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The types a schema admits: its `type`, or the types of its `enum`/`const` values.
fn types(s: &Map<String, Value>) -> Option<BTreeSet<String>> {
    match s.get("type") {
        Some(Value::String(t)) => Some([t.clone()].into()),
        Some(Value::Array(ts)) => Some(
            ts.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => values_of(s).map(|vs| vs.iter().map(|v| json_type(v).to_owned()).collect()),
    }
}

fn allows(types: &Option<BTreeSet<String>>, t: &str) -> bool {
    types
        .as_ref()
        .is_none_or(|ts| ts.contains(t) || (t == "integer" && ts.contains("number")))
}

fn num(s: &Map<String, Value>, k: &str) -> Option<f64> {
    s.get(k).and_then(Value::as_f64)
}

/// The rule of a narrow `oneOf` whose alternatives overlap where the wide side has instances.
const OVERLAP: &str = "alternatives-overlap";
/// The rule of a `pattern` that rejects a string the other side's `pattern` accepts.
const PATTERN_CHANGED: &str = "pattern-changed";
/// Rules that stand only with a confirmed counterexample; without one, a finding of these
/// becomes `undecidable` (set inclusion of regular expressions and overlap of alternatives are
/// not decided, only shown by example).
pub(crate) const SUSPECTED: [&str; 2] = [OVERLAP, PATTERN_CHANGED];

/// Whether no instance can match two of these (resolved) alternatives, as far as types,
/// `const`/`enum` and a required discriminator property show; `false` means "not shown".
fn pairwise_disjoint(alts: &[Map<String, Value>]) -> bool {
    alts.iter()
        .enumerate()
        .all(|(i, a)| alts[i + 1..].iter().all(|b| disjoint(a, b)))
}

fn disjoint(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    let (ta, tb) = (types(a), types(b));
    if let (Some(x), Some(y)) = (&ta, &tb) {
        if !x.iter().any(|t| allows(&tb, t)) && !y.iter().any(|t| allows(&ta, t)) {
            return true;
        }
    }
    if let (Some(va), Some(vb)) = (values_of(a), values_of(b)) {
        let canonical = |v: &Value| driftless_protocol::canonical::to_canonical_string(v);
        let vb: BTreeSet<String> = vb.iter().map(canonical).collect();
        if !va.iter().any(|v| vb.contains(&canonical(v))) {
            return true;
        }
    }
    // A discriminator: both accept only objects, both require a property, and its values differ.
    let only_objects = |t: &Option<BTreeSet<String>>| {
        t.as_ref()
            .is_some_and(|t| t.len() == 1 && t.contains("object"))
    };
    if !(only_objects(&ta) && only_objects(&tb)) {
        return false;
    }
    let required = |s: &Map<String, Value>| -> BTreeSet<String> {
        required_names(s).map(str::to_owned).collect()
    };
    let property =
        |s: &Map<String, Value>, k: &str| s.get("properties").and_then(|p| p.get(k)).map(as_object);
    required(a)
        .intersection(&required(b))
        .any(|k| match (property(a, k), property(b, k)) {
            (Some(pa), Some(pb)) => disjoint(&pa, &pb),
            _ => false,
        })
}

/// The names a schema's `required` lists (none if it has no such array).
pub(crate) fn required_names(s: &Map<String, Value>) -> impl Iterator<Item = &str> {
    s.get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn values_of(s: &Map<String, Value>) -> Option<Vec<Value>> {
    if let Some(c) = s.get("const") {
        return Some(vec![c.clone()]);
    }
    s.get("enum").and_then(Value::as_array).cloned()
}

impl Walk<'_> {
    fn resolve(
        &self,
        root: &Value,
        mut s: Map<String, Value>,
        at: &mut String,
    ) -> Map<String, Value> {
        for _ in 0..32 {
            let Some(Value::String(r)) = s.get("$ref").cloned() else {
                break;
            };
            let Some(pointer) = r.strip_prefix('#') else {
                break;
            };
            let Some(target) = root.pointer(pointer) else {
                break;
            };
            s.remove("$ref");
            let mut merged = as_object(target);
            for (k, v) in s {
                merged.entry(k).or_insert(v);
            }
            s = merged;
            *at = pointer.to_owned();
        }
        s
    }

    fn push(&mut self, rule: &'static str, severity: Severity, at: &At, message: String) {
        self.findings.push(Finding {
            rule,
            severity,
            direction: self.direction,
            old_pointer: String::new(),
            new_pointer: String::new(),
            instance_path: at.instance.clone(),
            message,
            counterexample: None,
            accepted_by: None,
        });
        let (wp, np) = (
            format!("{}{}", self.wide_prefix, at.wide),
            format!("{}{}", self.narrow_prefix, at.narrow),
        );
        let last = self.findings.last_mut().expect("just pushed");
        match self.direction {
            Direction::Backward => {
                last.old_pointer = if wp.is_empty() { "/".into() } else { wp };
                last.new_pointer = if np.is_empty() { "/".into() } else { np };
            }
            Direction::Forward => {
                last.new_pointer = if wp.is_empty() { "/".into() } else { wp };
                last.old_pointer = if np.is_empty() { "/".into() } else { np };
            }
        }
    }

    /// The rule name for a narrowing, in the words of the change from OLD to NEW.
    fn name(&self, backward: &'static str, forward: &'static str) -> &'static str {
        match self.direction {
            Direction::Backward => backward,
            Direction::Forward => forward,
        }
    }

    fn walk(&mut self, wide: &Value, narrow: &Value, mut at: At) {
        let (wide_root, narrow_root) = (self.wide_root, self.narrow_root);
        let w = self.resolve(wide_root, as_object(wide), &mut at.wide);
        let n = self.resolve(narrow_root, as_object(narrow), &mut at.narrow);
        if !self
            .seen
            .insert((format!("{}|{}", at.wide, at.instance), at.narrow.clone()))
        {
            return; // a recursive schema already compared at this pair
        }
        if w.contains_key("not") && w.get("not") == Some(&json!({})) {
            return; // the wide side accepts nothing
        }
        // allOf on the narrow side: every conjunct must hold.
        if let Some(Value::Array(parts)) = n.get("allOf") {
            for (i, p) in parts.iter().enumerate() {
                let mut a = at.clone();
                a.narrow = format!("{}/allOf/{i}", at.narrow);
                self.walk(&Value::Object(w.clone()), p, a);
            }
        }
        // allOf on the wide side narrows it: decidable only when one conjunct alone fits.
        if let Some(Value::Array(parts)) = w.get("allOf") {
            let fits = parts
                .iter()
                .any(|p| compare_scratch(self, p, &Value::Object(strip(&n, &["allOf"]))));
            if !fits && !is_trivial(&strip(&n, &["allOf", "anyOf", "oneOf"])) {
                self.push(
                    "undecidable",
                    Severity::Warning,
                    &at.both("allOf"),
                    "the old side is an allOf whose conjuncts do not each fit; not decided".into(),
                );
            }
            return;
        }
        // Alternatives: each wide alternative must fit some narrow alternative (order-free).
        let n_alts = n
            .get("anyOf")
            .or_else(|| n.get("oneOf"))
            .and_then(Value::as_array)
            .cloned();
        let w_alts = w
            .get("anyOf")
            .or_else(|| w.get("oneOf"))
            .and_then(Value::as_array)
            .cloned();
        let w_key = if w.contains_key("anyOf") {
            "anyOf"
        } else {
            "oneOf"
        };
        let n_key = if n.contains_key("anyOf") {
            "anyOf"
        } else {
            "oneOf"
        };
        if w_alts.is_some() || n_alts.is_some() {
            let w_base = Value::Object(strip(&w, &["anyOf", "oneOf"]));
            let n_base = Value::Object(strip(&n, &["anyOf", "oneOf"]));
            // A narrow `oneOf` rejects an instance that matches two of its alternatives, so it is
            // an `anyOf` only where its alternatives cannot overlap. Where that is not shown,
            // the finding stands only if a counterexample confirms it (see `check`).
            if let (Some(alts), "oneOf") = (&n_alts, n_key) {
                let same = w_key == "oneOf" && w_alts.as_ref() == Some(alts) && w_base == n_base;
                let resolved: Vec<Map<String, Value>> = alts
                    .iter()
                    .map(|a| {
                        let mut scratch = String::new();
                        self.resolve(narrow_root, as_object(&merge(&n_base, a)), &mut scratch)
                    })
                    .collect();
                if alts.len() > 1 && !same && !pairwise_disjoint(&resolved) {
                    let a = At {
                        wide: at.wide.clone(),
                        narrow: format!("{}/oneOf", at.narrow),
                        instance: at.instance.clone(),
                    };
                    self.push(
                        OVERLAP,
                        Severity::Error,
                        &a,
                        "a oneOf whose alternatives overlap rejects an instance that matches two of them".into(),
                    );
                }
            }
            let w_list: Vec<(String, Value)> = match &w_alts {
                Some(alts) => alts
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (format!("{}/{w_key}/{i}", at.wide), merge(&w_base, a)))
                    .collect(),
                None => vec![(at.wide.clone(), w_base.clone())],
            };
            for (wp, walt) in w_list {
                match &n_alts {
                    Some(alts) => {
                        let hit = alts
                            .iter()
                            .any(|na| compare_scratch(self, &walt, &merge(&n_base, na)));
                        if !hit {
                            let a = At {
                                wide: wp.clone(),
                                narrow: format!("{}/{n_key}", at.narrow),
                                instance: at.instance.clone(),
                            };
                            self.push(self.name("alternative-removed", "alternative-added"), Severity::Error, &a, "no alternative on the other side accepts everything this alternative accepts".into());
                        }
                    }
                    None => {
                        let a = At {
                            wide: wp,
                            narrow: at.narrow.clone(),
                            instance: at.instance.clone(),
                        };
                        self.walk(&walt, &n_base, a);
                    }
                }
            }
            return;
        }
        self.compare_keywords(&w, &n, &at);
    }

    /// Every numeric bound of [`BOUNDS`] that the narrow side tightens (or adds).
    fn compare_bounds(
        &mut self,
        w: &Map<String, Value>,
        n: &Map<String, Value>,
        tw: &Option<BTreeSet<String>>,
        at: &At,
    ) {
        for b in BOUNDS {
            if !b.types.iter().any(|t| allows(tw, t)) {
                continue;
            }
            let Some(nb) = num(n, b.key) else { continue };
            let narrower = num(w, b.key).is_none_or(|wb| if b.lower { nb > wb } else { nb < wb });
            if narrower {
                self.push(
                    self.name(b.backward, b.forward),
                    Severity::Error,
                    &at.both(b.key),
                    b.message.replace("{}", &nb.to_string()),
                );
            }
        }
    }

    fn compare_keywords(&mut self, w: &Map<String, Value>, n: &Map<String, Value>, at: &At) {
        for k in OPAQUE {
            if n.get(k).is_some() && n.get(k) != w.get(k) {
                self.push(
                    "undecidable",
                    Severity::Warning,
                    &at.both(k),
                    format!("`{k}` differs; the checker does not analyse it"),
                );
            }
        }
        // Types.
        let (tw, tn) = (types(w), types(n));
        if tn.is_some() {
            let lost: Vec<&str> = ALL_TYPES
                .iter()
                .copied()
                .filter(|t| {
                    allows(&tw, t)
                        && !allows(&tn, t)
                        && !(tw.is_none() && *t == "integer" && allows(&tn, "number"))
                })
                .filter(|t| {
                    !(*t == "number" && tw.as_ref().is_some_and(|ts| !ts.contains("number")))
                })
                .collect();
            if !lost.is_empty() {
                self.push(
                    self.name("type-narrowed", "type-widened"),
                    Severity::Error,
                    &at.both("type"),
                    format!("values of type {} are no longer accepted", lost.join(", ")),
                );
            }
        }
        // Enumerations and constants.
        match (values_of(w), values_of(n)) {
            (Some(wv), Some(nv)) => {
                for v in wv.iter().filter(|v| !nv.contains(v)) {
                    let key = if n.contains_key("const") {
                        "const"
                    } else {
                        "enum"
                    };
                    self.push(
                        self.name("enum-value-removed", "enum-value-added"),
                        Severity::Error,
                        &at.both(key),
                        format!("the value {v} is no longer accepted"),
                    );
                }
            }
            (None, Some(_)) => {
                let key = if n.contains_key("const") {
                    "const"
                } else {
                    "enum"
                };
                self.push(
                    self.name("enum-added", "enum-removed"),
                    Severity::Error,
                    &at.both(key),
                    "values are now restricted to an enumeration".into(),
                );
            }
            _ => {}
        }
        self.compare_bounds(w, n, &tw, at);
        // Numbers.
        if allows(&tw, "number") || allows(&tw, "integer") {
            if let Some(nm) = num(n, "multipleOf") {
                let fine = num(w, "multipleOf")
                    .is_some_and(|wm| (wm / nm - (wm / nm).round()).abs() < 1e-9);
                if !fine {
                    self.push(
                        self.name("multiple-of-changed", "multiple-of-relaxed"),
                        Severity::Error,
                        &at.both("multipleOf"),
                        format!("values must now be multiples of {nm}"),
                    );
                }
            }
        }
        // Strings.
        if allows(&tw, "string") {
            match (w.get("pattern"), n.get("pattern")) {
                (None, Some(p)) => self.push(
                    self.name("pattern-added", "pattern-removed"),
                    Severity::Error,
                    &at.both("pattern"),
                    format!("strings must now match {p}"),
                ),
                (Some(a), Some(b)) if a != b => self.push(
                    PATTERN_CHANGED,
                    Severity::Error,
                    &at.both("pattern"),
                    format!("pattern changed from {a} to {b}"),
                ),
                _ => {}
            }
        }
        // Arrays.
        if allows(&tw, "array") {
            if n.get("uniqueItems") == Some(&Value::Bool(true))
                && w.get("uniqueItems") != Some(&Value::Bool(true))
            {
                self.push(
                    self.name("unique-items-added", "unique-items-removed"),
                    Severity::Error,
                    &at.both("uniqueItems"),
                    "array items must now be unique".into(),
                );
            }
            if let Some(ni) = n.get("items") {
                let wi = w.get("items").cloned().unwrap_or(json!({}));
                let a = At {
                    wide: format!("{}/items", at.wide),
                    narrow: format!("{}/items", at.narrow),
                    instance: format!("{}/0", at.instance),
                };
                self.walk(&wi, ni, a);
            }
        }
        // Objects.
        if allows(&tw, "object") {
            self.compare_objects(w, n, at);
        }
    }

    fn compare_objects(&mut self, w: &Map<String, Value>, n: &Map<String, Value>, at: &At) {
        let req = |s: &Map<String, Value>| -> BTreeSet<String> {
            required_names(s).map(str::to_owned).collect()
        };
        let (rw, rn) = (req(w), req(n));
        for (i, r) in n
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(r) = r.as_str() else { continue };
            if !rw.contains(r) {
                let a = At {
                    wide: format!("{}/required", at.wide),
                    narrow: format!("{}/required/{i}", at.narrow),
                    instance: format!("{}/{}", at.instance, escape(r)),
                };
                self.push(
                    self.name("required-property-added", "required-property-removed"),
                    Severity::Error,
                    &a,
                    format!("property {r} is now required"),
                );
            }
        }
        let _ = rn;
        let empty = Map::new();
        let pw = w
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let pn = n
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let aw = w
            .get("additionalProperties")
            .cloned()
            .unwrap_or(Value::Bool(true));
        let an = n
            .get("additionalProperties")
            .cloned()
            .unwrap_or(Value::Bool(true));
        for (name, ns) in pn {
            let inst = format!("{}/{}", at.instance, escape(name));
            let a_n = format!("{}/properties/{}", at.narrow, escape(name));
            match pw.get(name) {
                Some(ws) => {
                    let a = At {
                        wide: format!("{}/properties/{}", at.wide, escape(name)),
                        narrow: a_n,
                        instance: inst,
                    };
                    self.walk(ws, ns, a);
                }
                None if aw == Value::Bool(false) => {}
                None => {
                    let a = At {
                        wide: format!("{}/additionalProperties", at.wide),
                        narrow: a_n,
                        instance: inst,
                    };
                    self.walk(&aw, ns, a);
                }
            }
        }
        for (name, ws) in pw {
            if pn.contains_key(name) {
                continue;
            }
            let inst = format!("{}/{}", at.instance, escape(name));
            if an == Value::Bool(false) {
                let a = At {
                    wide: format!("{}/properties/{}", at.wide, escape(name)),
                    narrow: format!("{}/additionalProperties", at.narrow),
                    instance: inst,
                };
                self.push(
                    self.name(
                        "property-removed-from-closed-object",
                        "property-added-to-closed-object",
                    ),
                    Severity::Error,
                    &a,
                    format!("property {name} is no longer declared and the object is closed"),
                );
            } else if an.is_object() {
                let a = At {
                    wide: format!("{}/properties/{}", at.wide, escape(name)),
                    narrow: format!("{}/additionalProperties", at.narrow),
                    instance: inst,
                };
                self.walk(ws, &an, a);
            }
        }
        match (&aw, &an) {
            (a, Value::Bool(false)) if *a != Value::Bool(false) => {
                let at2 = At {
                    wide: format!("{}/additionalProperties", at.wide),
                    narrow: format!("{}/additionalProperties", at.narrow),
                    instance: at.instance.clone(),
                };
                self.push(
                    self.name(
                        "additional-properties-closed",
                        "additional-properties-opened",
                    ),
                    Severity::Error,
                    &at2,
                    "properties not declared are no longer accepted".into(),
                );
            }
            (Value::Bool(false), _) => {}
            (wa, na) if na.is_object() => {
                let at2 = At {
                    wide: format!("{}/additionalProperties", at.wide),
                    narrow: format!("{}/additionalProperties", at.narrow),
                    instance: format!("{}/additional_property", at.instance),
                };
                self.walk(wa, na, at2);
            }
            _ => {}
        }
    }
}

fn strip(s: &Map<String, Value>, keys: &[&str]) -> Map<String, Value> {
    s.iter()
        .filter(|(k, _)| !keys.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn merge(base: &Value, alt: &Value) -> Value {
    let mut m = as_object(base);
    for (k, v) in as_object(alt) {
        m.insert(k, v);
    }
    Value::Object(m)
}

const ANNOTATIONS: [&str; 10] = [
    "title",
    "description",
    "examples",
    "default",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$schema",
    "$id",
];

fn is_trivial(s: &Map<String, Value>) -> bool {
    s.keys()
        .all(|k| ANNOTATIONS.contains(&k.as_str()) || k == "$defs")
}

/// Whether `wide` fits inside `narrow` with no error, comparing against the same roots.
fn compare_scratch(parent: &Walk<'_>, wide: &Value, narrow: &Value) -> bool {
    let mut w = Walk {
        wide_root: parent.wide_root,
        narrow_root: parent.narrow_root,
        wide_prefix: parent.wide_prefix,
        narrow_prefix: parent.narrow_prefix,
        direction: parent.direction,
        findings: Vec::new(),
        // A fresh visited set: the scratch walk starts again at the root pair.
        seen: BTreeSet::new(),
    };
    w.walk(
        wide,
        narrow,
        At {
            wide: String::new(),
            narrow: String::new(),
            instance: String::new(),
        },
    );
    w.findings.iter().all(|f| f.severity == Severity::Warning)
}
