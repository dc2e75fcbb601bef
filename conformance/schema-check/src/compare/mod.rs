//! The inclusion decision (spec chapter 10, Compatibility): is every instance the wider of two
//! JSON Schemas accepts also accepted by the narrower one, and where not, why.
//!
//! [`compare`] decides `wide ⊆ narrow` as sets of instances, not as spellings. The wide side is
//! a conjunction of subschemas ([`Conj`]: `allOf` and `$ref` flattened), its `anyOf`, `oneOf` and
//! `if`/`then`/`else` distributed into cases; the narrow side is taken apart the same way
//! (`allOf` and `$ref` as conjuncts, `anyOf`/`oneOf` per JSON type, `not` as disjointness,
//! `if`/`then`/`else` as the two implications). What remains is compared per JSON type on its
//! canonical form: numbers as intervals with integer-ness and `multipleOf`, strings by
//! code-point length and pattern language (DFA inclusion, `regular.rs`), arrays by position,
//! objects by property name (named, pattern and additional schemas, `required`,
//! `propertyNames`, `dependentRequired`). A finite wide side (`enum`/`const`) is decided by
//! validating each value against the narrow side with the `jsonschema` crate.
//!
//! References are resolved by the `referencing` crate (the `jsonschema` crate's own resolver:
//! `$id`, `$anchor`, percent-encoded pointers). Recursion terminates because a pair already
//! being compared is assumed included (a visited set of pairs); inputs whose `$ref`s cycle with
//! no keyword between are refused at load ([`progress_free_cycle`]), and the work is bounded
//! ([`STEPS_MAX`], [`DEPTH_MAX`]).
//!
//! Every finding is exact or suspected. A suspected one (the wide side was over-approximated,
//! or the question is outside what is decided) stands only with a confirmed counterexample;
//! otherwise it becomes rule `undecidable`, which fails the check by default: what is not
//! decided is never called compatible. Pointers name subschemas that exist in the files.

use std::collections::{BTreeSet, HashMap, HashSet};

use referencing::{Draft, Registry, Resolver, ResourceRef};
use serde_json::{json, Map, Value};

use super::{Direction, Finding, Severity};
use crate::regular;

/// Inclusion questions asked per check before the rest is reported as not decided.
pub(crate) const STEPS_MAX: usize = 200_000;
/// Nested inclusion questions before the rest is reported as not decided.
pub(crate) const DEPTH_MAX: usize = 400;

const NULL: u8 = 1;
const BOOL: u8 = 2;
const OBJ: u8 = 4;
const ARR: u8 = 8;
const STR: u8 = 16;
const INT: u8 = 32;
/// Numbers that are not integers.
const FRAC: u8 = 64;
const ANY: u8 = 127;
const TYPE_BITS: [u8; 7] = [NULL, BOOL, OBJ, ARR, STR, INT, FRAC];

// Keywords of a wide subschema already distributed into cases.
const SKIP_ANYOF: u8 = 1;
const SKIP_ONEOF: u8 = 2;
const SKIP_IF: u8 = 4;

const URI_WIDE: &str = "urn:driftless:wide";
const URI_NARROW: &str = "urn:driftless:narrow";

fn type_bits(name: &str) -> u8 {
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

fn value_bits(v: &Value) -> u8 {
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

fn bits_names(b: u8) -> String {
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

fn schema_type_bits(m: &Map<String, Value>) -> u8 {
    match m.get("type") {
        Some(Value::String(t)) => type_bits(t),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .fold(0, |b, t| b | type_bits(t)),
        _ => ANY,
    }
}

/// The longest prefix of `pointer` that exists in `root`.
pub(crate) fn existing(root: &Value, pointer: &str) -> String {
    let mut p = pointer.to_owned();
    while !p.is_empty() && root.pointer(&p).is_none() {
        p.truncate(p.rfind('/').unwrap_or(0));
    }
    p
}

fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn finite(m: &Map<String, Value>) -> Option<Vec<Value>> {
    if let Some(c) = m.get("const") {
        return Some(vec![c.clone()]);
    }
    m.get("enum").and_then(Value::as_array).cloned()
}

fn has_ref(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| {
            matches!(
                k.as_str(),
                "$ref" | "$dynamicRef" | "$id" | "$anchor" | "$dynamicAnchor"
            ) || has_ref(v)
        }),
        Value::Array(a) => a.iter().any(has_ref),
        _ => false,
    }
}

/// Keywords that apply subschemas in place; `unevaluated*` depends on them.
const IN_PLACE: [&str; 8] = [
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "$ref",
    "$dynamicRef",
    "dependentSchemas",
];

fn has_in_place(m: &Map<String, Value>) -> bool {
    IN_PLACE.iter().any(|k| m.contains_key(*k))
}

/// One side of the comparison: a schema file's root, its pointers and its resolver.
struct Side<'r> {
    root: &'r Value,
    prefix: &'r str,
    uri: &'static str,
    registry: &'r Registry<'r>,
    pointers: HashMap<usize, String>,
    validators: HashMap<String, Option<jsonschema::Validator>>,
}

fn index_pointers(v: &Value, at: String, out: &mut HashMap<usize, String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                index_pointers(c, format!("{at}/{}", escape(k)), out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                index_pointers(c, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.insert(v as *const Value as usize, at);
}

/// Percent-encodes a JSON pointer for a URI fragment.
fn fragment(pointer: &str) -> String {
    let mut out = String::new();
    for b in pointer.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl<'r> Side<'r> {
    fn new(
        root: &'r Value,
        prefix: &'r str,
        uri: &'static str,
        registry: &'r Registry<'r>,
    ) -> Self {
        let mut pointers = HashMap::new();
        index_pointers(root, String::new(), &mut pointers);
        Side {
            root,
            prefix,
            uri,
            registry,
            pointers,
            validators: HashMap::new(),
        }
    }

    fn root_node(&self, side: S) -> Option<Node<'r>> {
        let base = referencing::uri::from_str(self.uri).ok()?;
        let res = self.registry.resolver(base);
        let res = res
            .in_subresource(ResourceRef::new(self.root, Draft::Draft202012))
            .ok()?;
        Some(Node {
            v: self.root,
            ptr: String::new(),
            res,
            skip: 0,
            side,
        })
    }

    /// Whether the subschema at `ptr` accepts `v`; `None` if it cannot be compiled.
    fn accepts(&mut self, ptr: &str, v: &Value) -> Option<bool> {
        let (uri, registry) = (self.uri, self.registry);
        let validator = self.validators.entry(ptr.to_owned()).or_insert_with(|| {
            jsonschema::options()
                .with_registry(registry)
                .build(&json!({ "$ref": format!("{uri}#{}", fragment(ptr)) }))
                .ok()
        });
        validator.as_ref().map(|val| val.is_valid(v))
    }
}

/// A subschema with the resolver of its scope.
#[derive(Clone)]
struct Node<'r> {
    v: &'r Value,
    ptr: String,
    res: Resolver<'r>,
    skip: u8,
    /// The file it is in (a narrow `if` joins the wide side as a condition).
    side: S,
}

impl Node<'_> {
    fn obj(&self) -> Option<&Map<String, Value>> {
        self.v.as_object()
    }

    fn get(&self, k: &str) -> Option<&Value> {
        self.v.as_object().and_then(|m| m.get(k))
    }

    /// The pointer of keyword `k` of this subschema if it has it, else of the subschema.
    fn at(&self, k: &str) -> String {
        if self.get(k).is_some() {
            format!("{}/{}", self.ptr, escape(k))
        } else {
            self.ptr.clone()
        }
    }

    fn key(&self) -> (usize, u8) {
        (
            self.v as *const Value as usize,
            self.skip | ((self.side as u8) << 7),
        )
    }
}

/// The wide side: instances valid under every node and of a type in `only`.
#[derive(Clone)]
struct Conj<'r> {
    nodes: Vec<Node<'r>>,
    only: u8,
    /// Where the wide side is when it has no node (it accepts everything there).
    at: String,
}

impl Conj<'_> {
    fn ptr(&self) -> String {
        self.nodes
            .iter()
            .rev()
            .find(|w| w.side == S::Wide)
            .map_or(self.at.clone(), |w| w.ptr.clone())
    }
}

type Key = (Vec<(usize, u8)>, u8, (usize, u8));

/// Which side a subschema belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum S {
    Wide,
    Narrow,
}

struct Walk<'r> {
    wide: Side<'r>,
    narrow: Side<'r>,
    direction: Direction,
    findings: Vec<Finding>,
    seen: HashSet<Key>,
    seen_log: Vec<Key>,
    /// What was reported, so that each finding is reported once.
    reported: HashSet<(&'static str, String, String, String, String)>,
    steps: usize,
    depth: usize,
    /// Above zero while the wide side is over-approximated: findings are suspected.
    approx: usize,
    exhausted: bool,
    same_roots: bool,
}

/// What a finding says: rule names per direction, exactness, where, why, and a value that
/// shows it at the instance path (tried first as counterexample).
struct Say {
    rules: (&'static str, &'static str),
    exact: bool,
    wide: String,
    narrow: String,
    instance: String,
    message: String,
    hint: Option<Value>,
}

/// Every place where `narrow` rejects something `wide` accepts (see the module docs).
pub fn compare(
    wide: &Value,
    wide_prefix: &str,
    narrow: &Value,
    narrow_prefix: &str,
    direction: Direction,
) -> Vec<Finding> {
    // Deeply nested schemas recurse deeply; the walk is bounded by DEPTH_MAX frames, which
    // this stack holds with room to spare.
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn_scoped(s, || {
                compare_here(wide, wide_prefix, narrow, narrow_prefix, direction)
            })
            .expect("a thread for the comparison")
            .join()
            .expect("the comparison does not panic")
    })
}

fn registry<'a>(root: &'a Value, uri: &str) -> Option<Registry<'a>> {
    Registry::new().add(uri, root).ok()?.prepare().ok()
}

fn compare_here(
    wide: &Value,
    wide_prefix: &str,
    narrow: &Value,
    narrow_prefix: &str,
    direction: Direction,
) -> Vec<Finding> {
    let unresolved = |name: &str| {
        vec![Finding {
            rule: "undecidable",
            severity: Severity::Error,
            direction,
            old_pointer: String::new(),
            new_pointer: String::new(),
            instance_path: String::new(),
            message: format!("the {name} schema's references cannot be resolved; not decided"),
            counterexample: None,
            accepted_by: None,
            suspected: false,
            hint: None,
        }]
    };
    let Some(wr) = registry(wide, URI_WIDE) else {
        return unresolved("wide");
    };
    let Some(nr) = registry(narrow, URI_NARROW) else {
        return unresolved("narrow");
    };
    let mut w = Walk {
        wide: Side::new(wide, wide_prefix, URI_WIDE, &wr),
        narrow: Side::new(narrow, narrow_prefix, URI_NARROW, &nr),
        direction,
        findings: Vec::new(),
        seen: HashSet::new(),
        seen_log: Vec::new(),
        reported: HashSet::new(),
        steps: 0,
        depth: 0,
        approx: 0,
        exhausted: false,
        same_roots: wide == narrow,
    };
    match (w.wide.root_node(S::Wide), w.narrow.root_node(S::Narrow)) {
        (Some(a), Some(b)) => w.incl(
            Conj {
                nodes: vec![a],
                only: ANY,
                at: String::new(),
            },
            b,
            "",
        ),
        _ => return unresolved("either"),
    }
    w.findings
}

impl<'r> Walk<'r> {
    fn push(&mut self, say: Say) {
        // A wide conjunct may come from the narrow file (a narrow `if` as a condition): its
        // pointer is cut back to the nearest subschema of the wide file.
        let (wp, np) = (
            format!(
                "{}{}",
                self.wide.prefix,
                existing(self.wide.root, &say.wide)
            ),
            format!(
                "{}{}",
                self.narrow.prefix,
                existing(self.narrow.root, &say.narrow)
            ),
        );
        let (old_pointer, new_pointer, rule) = match self.direction {
            Direction::Backward => (wp, np, say.rules.0),
            Direction::Forward => (np, wp, say.rules.1),
        };
        let f = Finding {
            rule,
            severity: Severity::Error,
            direction: self.direction,
            old_pointer,
            new_pointer,
            instance_path: say.instance,
            message: say.message,
            counterexample: None,
            accepted_by: None,
            suspected: !say.exact || self.approx > 0,
            hint: say.hint,
        };
        let key = (
            f.rule,
            f.old_pointer.clone(),
            f.new_pointer.clone(),
            f.instance_path.clone(),
            f.message.clone(),
        );
        if self.reported.insert(key) {
            self.findings.push(f);
        }
    }

    /// An undecided question: rule `undecidable` outright.
    fn undecided(&mut self, wide: String, narrow: String, instance: &str, why: String) {
        self.push(Say {
            rules: ("undecidable", "undecidable"),
            exact: true,
            wide,
            narrow,
            instance: instance.to_owned(),
            message: format!("{why}; not decided"),
            hint: None,
        });
    }

    /// "old ... new ..." in the words of the change from OLD to NEW.
    fn old_new(&self, wide: &str, narrow: &str) -> String {
        match self.direction {
            Direction::Backward => format!("old {wide}; new {narrow}"),
            Direction::Forward => format!("old {narrow}; new {wide}"),
        }
    }

    fn child(&self, n: &Node<'r>, path: &[&str]) -> Option<Node<'r>> {
        let mut v = n.v;
        let mut ptr = n.ptr.clone();
        for seg in path {
            v = match v {
                Value::Object(m) => m.get(*seg)?,
                Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
            ptr = format!("{ptr}/{}", escape(seg));
        }
        let res = n
            .res
            .in_subresource(ResourceRef::new(v, Draft::Draft202012))
            .ok()?;
        Some(Node {
            v,
            ptr,
            res,
            skip: 0,
            side: n.side,
        })
    }

    fn lookup(&self, _: S, n: &Node<'r>, reference: &str) -> Option<Node<'r>> {
        let s = n.side;
        let resolved = n.res.lookup(reference).ok()?;
        let (v, res, _) = resolved.into_inner();
        let side = match s {
            S::Wide => &self.wide,
            S::Narrow => &self.narrow,
        };
        let ptr = side.pointers.get(&(v as *const Value as usize))?.clone();
        let res = res
            .in_subresource(ResourceRef::new(v, Draft::Draft202012))
            .ok()?;
        Some(Node {
            v,
            ptr,
            res,
            skip: 0,
            side: s,
        })
    }

    /// The wide side with `$ref`, `allOf` and booleans flattened into plain conjuncts; `None`
    /// when it accepts nothing (or after reporting what cannot be resolved).
    fn flatten(&mut self, c: Conj<'r>, instance: &str) -> Option<Conj<'r>> {
        let mut out: Vec<Node<'r>> = Vec::new();
        let mut keys = HashSet::new();
        let mut stack: Vec<Node<'r>> = c.nodes.into_iter().rev().collect();
        while let Some(w) = stack.pop() {
            let Some(m) = w.obj() else {
                if w.v == &Value::Bool(false) {
                    return None;
                }
                continue;
            };
            if !keys.insert(w.key()) || keys.len() > 10_000 {
                continue;
            }
            if matches!(m.get("not"), Some(Value::Bool(true))) || m.get("not") == Some(&json!({})) {
                return None;
            }
            let mut more = Vec::new();
            for k in ["$ref", "$dynamicRef"] {
                if let Some(Value::String(r)) = m.get(k) {
                    match self.lookup(S::Wide, &w, r) {
                        Some(t) if k == "$ref" => more.push(t),
                        _ => {
                            self.undecided(
                                w.at(k),
                                String::new(),
                                instance,
                                format!("`{k}` {r} is not followed"),
                            );
                            return None;
                        }
                    }
                }
            }
            if let Some(Value::Array(parts)) = m.get("allOf") {
                for i in 0..parts.len() {
                    more.extend(self.child(&w, &["allOf", &i.to_string()]));
                }
            }
            out.push(w);
            stack.extend(more.into_iter().rev());
        }
        Some(Conj {
            nodes: out,
            only: c.only,
            at: c.at,
        })
    }

    /// The types the wide side can have, shallowly (its `type`s, `enum`s and `only`).
    fn wide_types(&self, c: &Conj<'r>) -> u8 {
        let mut b = c.only;
        for w in &c.nodes {
            b &= self.shallow_types(S::Wide, w, 0);
        }
        b
    }

    fn shallow_types(&self, _: S, n: &Node<'r>, depth: usize) -> u8 {
        let s = n.side;
        let Some(m) = n.obj() else {
            return if n.v == &Value::Bool(false) { 0 } else { ANY };
        };
        if depth > 16 {
            return ANY;
        }
        let mut b = schema_type_bits(m);
        if let Some(vs) = finite(m) {
            b &= vs.iter().fold(0, |acc, v| acc | value_bits(v));
        }
        if let Some(Value::String(r)) = m.get("$ref") {
            if let Some(t) = self.lookup(s, n, r) {
                b &= self.shallow_types(s, &t, depth + 1);
            }
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            if let Some(Value::Array(parts)) = m.get(key) {
                let kids: Vec<u8> = (0..parts.len())
                    .filter_map(|i| self.child(n, &[key, &i.to_string()]))
                    .map(|c| self.shallow_types(s, &c, depth + 1))
                    .collect();
                b &= if key == "allOf" {
                    kids.iter().fold(ANY, |a, k| a & k)
                } else {
                    kids.iter().fold(0, |a, k| a | k)
                };
            }
        }
        if let Some(x) = n.get("not").and_then(Value::as_object) {
            if x.keys().all(|k| k == "type" || k == "description") {
                b &= !schema_type_bits(x);
            }
        }
        b
    }

    /// The members of a wide side of nulls, booleans and a bounded integer range (at most
    /// 10,000 of them), so that an `enum` on the other side can be checked value by value.
    fn enumerate(&mut self, c: &Conj<'r>) -> Option<Vec<Value>> {
        let t = self.wide_types(c);
        if t & !(NULL | BOOL | INT) != 0 {
            return None;
        }
        let mut out = Vec::new();
        if t & NULL != 0 {
            out.push(Value::Null);
        }
        if t & BOOL != 0 {
            out.extend([json!(false), json!(true)]);
        }
        if t & INT != 0 {
            let bound = |keys: [&str; 2]| {
                c.nodes
                    .iter()
                    .flat_map(|w| keys.map(|k| w.get(k).and_then(Value::as_f64)))
                    .flatten()
                    .collect::<Vec<f64>>()
            };
            let lo = bound(["minimum", "exclusiveMinimum"])
                .into_iter()
                .reduce(f64::max)?;
            let hi = bound(["maximum", "exclusiveMaximum"])
                .into_iter()
                .reduce(f64::min)?;
            if (hi - lo).is_nan() || hi - lo > 10_000.0 {
                return None;
            }
            let mut i = lo.floor() as i64;
            while (i as f64) <= hi.ceil() {
                out.push(json!(i));
                i += 1;
            }
        }
        let mut kept = Vec::new();
        for v in out {
            if self.wide_accepts(c, &v)? {
                kept.push(v);
            }
        }
        Some(kept)
    }

    /// Whether the wide side has no instance, as far as its types, bounds and values show.
    fn empty(&mut self, c: &Conj<'r>, instance: &str) -> bool {
        let Some(c) = self.flatten(c.clone(), instance) else {
            return true;
        };
        let mut t = self.wide_types(&c);
        if let Some(vs) = c.nodes.iter().find_map(|w| w.obj().and_then(finite)) {
            return vs.iter().all(|v| self.wide_accepts(&c, v) == Some(false));
        }
        let num = |k: &str, max: bool| {
            c.nodes
                .iter()
                .filter_map(|w| w.get(k).and_then(Value::as_f64))
                .reduce(if max { f64::max } else { f64::min })
        };
        if let (Some(a), Some(b)) = (num("minLength", true), num("maxLength", false)) {
            if a > b {
                t &= !STR;
            }
        }
        if let (Some(a), Some(b)) = (num("minItems", true), num("maxItems", false)) {
            if a > b {
                t &= !ARR;
            }
        }
        if let (Some(a), Some(b)) = (num("minimum", true), num("maximum", false)) {
            if a > b {
                t &= !(INT | FRAC);
            }
        }
        t == 0
    }

    /// Whether the wide side accepts `v` (every conjunct does, and its type is allowed).
    fn wide_accepts(&mut self, c: &Conj<'r>, v: &Value) -> Option<bool> {
        if value_bits(v) & c.only == 0 {
            return Some(false);
        }
        for w in &c.nodes {
            let side = match w.side {
                S::Wide => &mut self.wide,
                S::Narrow => &mut self.narrow,
            };
            if !side.accepts(&w.ptr, v)? {
                return Some(false);
            }
        }
        Some(true)
    }

    /// Whether `wide ⊆ narrow` without reporting (the visited pairs it added are forgotten).
    fn scratch(&mut self, c: &Conj<'r>, n: &Node<'r>, instance: &str) -> bool {
        let (findings, log, exhausted) = (self.findings.len(), self.seen_log.len(), self.exhausted);
        self.incl(c.clone(), n.clone(), instance);
        let ok = self.findings.len() == findings;
        for f in self.findings.drain(findings..) {
            self.reported.remove(&(
                f.rule,
                f.old_pointer,
                f.new_pointer,
                f.instance_path,
                f.message,
            ));
        }
        for k in self.seen_log.drain(log..) {
            self.seen.remove(&k);
        }
        if !exhausted && self.exhausted && ok {
            self.exhausted = false;
        }
        ok
    }

    /// Decides `c ⊆ n` and reports where not.
    fn incl(&mut self, c: Conj<'r>, n: Node<'r>, instance: &str) {
        if self.exhausted {
            return;
        }
        self.steps += 1;
        if self.steps > STEPS_MAX || self.depth > DEPTH_MAX {
            self.exhausted = true;
            let bound = if self.depth > DEPTH_MAX {
                format!("the schemas nest more than {DEPTH_MAX} comparisons deep")
            } else {
                format!("the comparison needs more than {STEPS_MAX} steps")
            };
            let wp = c.ptr();
            self.undecided(wp, n.ptr.clone(), instance, bound);
            return;
        }
        let Some(c) = self.flatten(c, instance) else {
            return;
        };
        if c.only == 0 {
            return;
        }
        let wp = c.ptr();
        match n.v {
            Value::Bool(false) => {
                if self.empty(&c, instance) {
                    return;
                }
                let t = self.wide_types(&c);
                self.push(Say {
                    rules: ("type-narrowed", "type-widened"),
                    exact: true,
                    wide: wp,
                    narrow: n.ptr.clone(),
                    instance: instance.to_owned(),
                    message: format!(
                        "no value is accepted here any more ({})",
                        self.old_new(&bits_names(t), "nothing")
                    ),
                    hint: None,
                });
                return;
            }
            Value::Object(_) => {}
            _ => return,
        }
        let mut nodes: Vec<(usize, u8)> = c.nodes.iter().map(Node::key).collect();
        nodes.sort_unstable();
        let key = (nodes, c.only, n.key());
        if !self.seen.insert(key.clone()) {
            return; // being compared (assumed included) or already reported
        }
        self.seen_log.push(key);
        self.depth += 1;
        self.incl_inner(c, n, instance);
        self.depth -= 1;
    }

    fn incl_inner(&mut self, c: Conj<'r>, n: Node<'r>, instance: &str) {
        let nm = n.obj().expect("an object schema").clone();
        let wp = c.ptr();
        // The same subschema of the same schema, or the same schema text without references.
        if n.skip == 0
            && c.nodes.iter().any(|w| {
                w.skip == 0
                    && ((self.same_roots && w.ptr == n.ptr) || (w.v == n.v && !has_ref(n.v)))
            })
        {
            return;
        }
        // A finite wide side: each value is checked by validation.
        let values = c
            .nodes
            .iter()
            .find_map(|w| w.obj().and_then(finite))
            .or_else(|| {
                if finite(&nm).is_some() {
                    self.enumerate(&c)
                } else {
                    None
                }
            });
        if let Some(values) = values {
            let at = c
                .nodes
                .iter()
                .find(|w| w.obj().and_then(finite).is_some())
                .map(|w| {
                    w.at(if w.get("const").is_some() {
                        "const"
                    } else {
                        "enum"
                    })
                })
                .unwrap_or_default();
            for v in values {
                match self.wide_accepts(&c, &v) {
                    Some(false) => continue,
                    None => {
                        self.undecided(
                            at.clone(),
                            n.ptr.clone(),
                            instance,
                            "a value cannot be validated".into(),
                        );
                        continue;
                    }
                    Some(true) => {}
                }
                match self.narrow.accepts(&n.ptr, &v) {
                    Some(true) => {}
                    Some(false) => {
                        let key = if nm.contains_key("const") {
                            "const"
                        } else {
                            "enum"
                        };
                        let narrow = if finite(&nm).is_some() {
                            n.at(key)
                        } else {
                            n.ptr.clone()
                        };
                        let rules = if finite(&nm).is_some() {
                            ("enum-value-removed", "enum-value-added")
                        } else {
                            ("value-rejected", "value-accepted")
                        };
                        self.push(Say {
                            rules,
                            exact: true,
                            wide: at.clone(),
                            narrow,
                            instance: instance.to_owned(),
                            message: format!(
                                "the value {v} {}",
                                self.old_new("accepted", "rejected")
                            ),
                            hint: Some(v.clone()),
                        });
                    }
                    None => self.undecided(
                        at.clone(),
                        n.ptr.clone(),
                        instance,
                        "a value cannot be validated".into(),
                    ),
                }
            }
            return;
        }
        // The wide side's alternatives, distributed.
        if self.distribute(&c, &n, instance) {
            return;
        }
        // The narrow side's conjuncts.
        if let Some(Value::String(r)) = nm.get("$ref") {
            match self.lookup(S::Narrow, &n, r) {
                Some(t) => self.incl(c.clone(), t, instance),
                None => self.undecided(
                    wp.clone(),
                    n.at("$ref"),
                    instance,
                    format!("`$ref` {r} is not followed"),
                ),
            }
        }
        if nm.contains_key("$dynamicRef") {
            self.undecided(
                wp.clone(),
                n.at("$dynamicRef"),
                instance,
                "`$dynamicRef` is not followed".into(),
            );
        }
        if let Some(Value::Array(parts)) = nm.get("allOf") {
            for i in 0..parts.len() {
                if let Some(p) = self.child(&n, &["allOf", &i.to_string()]) {
                    self.incl(c.clone(), p, instance);
                }
            }
        }
        for key in ["anyOf", "oneOf"] {
            if nm.get(key).and_then(Value::as_array).is_some() {
                self.narrow_alternatives(&c, &n, key, instance);
            }
        }
        if let Some(x) = self.child(&n, &["not"]) {
            if !self.disjoint(&c, &x) {
                let hint = x.obj().and_then(finite).and_then(|vs| {
                    vs.into_iter()
                        .find(|v| self.wide_accepts(&c, v) == Some(true))
                });
                self.push(Say {
                    rules: ("negation-added", "negation-removed"),
                    exact: hint.is_some(),
                    wide: wp.clone(),
                    narrow: n.at("not"),
                    instance: instance.to_owned(),
                    message: "values the `not` excludes were accepted".into(),
                    hint,
                });
            }
        }
        if let Some(cond) = self.child(&n, &["if"]) {
            if let Some(then) = self.child(&n, &["then"]) {
                let mut with_if = c.clone();
                with_if.nodes.push(cond.clone());
                self.incl(with_if, then, instance);
            }
            if let Some(otherwise) = self.child(&n, &["else"]) {
                if self.disjoint(&c, &cond) {
                    self.incl(c.clone(), otherwise, instance);
                } else if !self.scratch(&c, &cond, instance) {
                    self.approx += 1;
                    self.incl(c.clone(), otherwise, instance);
                    self.approx -= 1;
                }
            }
        }
        self.compare_plain(&c, &n, instance);
    }

    /// Splits the wide side at its first `anyOf`, `oneOf` or `if`; `false` if it has none.
    fn distribute(&mut self, c: &Conj<'r>, n: &Node<'r>, instance: &str) -> bool {
        for (i, w) in c.nodes.iter().enumerate() {
            let Some(m) = w.obj() else { continue };
            for (key, bit) in [("anyOf", SKIP_ANYOF), ("oneOf", SKIP_ONEOF)] {
                let Some(Value::Array(alts)) = m.get(key) else {
                    continue;
                };
                if w.skip & bit != 0 {
                    continue;
                }
                let alts: Vec<Node<'r>> = (0..alts.len())
                    .filter_map(|j| self.child(w, &[key, &j.to_string()]))
                    .collect();
                // A oneOf is an anyOf where its alternatives cannot overlap; elsewhere the
                // anyOf is wider, and a difference found in it is only suspected.
                let exact = key == "anyOf" || self.pairwise_disjoint(S::Wide, &alts);
                let mut rest = w.clone();
                rest.skip |= bit;
                for alt in alts {
                    let mut nodes = c.nodes.clone();
                    nodes[i] = rest.clone();
                    nodes.push(alt);
                    self.approx += usize::from(!exact);
                    self.incl(
                        Conj {
                            nodes,
                            only: c.only,
                            at: c.at.clone(),
                        },
                        n.clone(),
                        instance,
                    );
                    self.approx -= usize::from(!exact);
                }
                return true;
            }
            if w.skip & SKIP_IF == 0 && m.contains_key("if") {
                let mut rest = w.clone();
                rest.skip |= SKIP_IF;
                let cond = self.child(w, &["if"]);
                let then = self.child(w, &["then"]);
                let otherwise = self.child(w, &["else"]);
                let mut nodes = c.nodes.clone();
                nodes[i] = rest.clone();
                let mut first = nodes.clone();
                first.extend(cond.clone());
                first.extend(then);
                self.incl(
                    Conj {
                        nodes: first,
                        only: c.only,
                        at: c.at.clone(),
                    },
                    n.clone(),
                    instance,
                );
                // The other case is "not if": dropping that condition widens it.
                nodes.extend(otherwise);
                self.approx += 1;
                self.incl(
                    Conj {
                        nodes,
                        only: c.only,
                        at: c.at.clone(),
                    },
                    n.clone(),
                    instance,
                );
                self.approx -= 1;
                return true;
            }
        }
        false
    }

    fn pairwise_disjoint(&self, s: S, alts: &[Node<'r>]) -> bool {
        let resolved: Vec<Map<String, Value>> = alts
            .iter()
            .map(|a| {
                let root = match s {
                    S::Wide => self.wide.root,
                    S::Narrow => self.narrow.root,
                };
                resolve_ref(root, a.v)
            })
            .collect();
        resolved
            .iter()
            .enumerate()
            .all(|(i, a)| resolved[i + 1..].iter().all(|b| disjoint_maps(a, b)))
    }

    /// Whether no wide instance is valid under `x` (as far as types and values show).
    fn disjoint(&mut self, c: &Conj<'r>, x: &Node<'r>) -> bool {
        let tw = self.wide_types(c);
        let tx = self.shallow_types(S::Narrow, x, 0);
        if tw & tx == 0 {
            return true;
        }
        if let Some(vs) = x.obj().and_then(finite) {
            return vs.iter().all(|v| self.wide_accepts(c, v) == Some(false));
        }
        if let Some(vs) = c.nodes.iter().find_map(|w| w.obj().and_then(finite)) {
            let ptr = x.ptr.clone();
            return vs.iter().all(|v| {
                self.wide_accepts(c, v) == Some(false)
                    || self.narrow.accepts(&ptr, v) == Some(false)
            });
        }
        false
    }

    /// Whether no wide instance falls in two of the narrow alternatives, as far as types,
    /// lengths and bounds show (each pair checked on the wide side's types).
    fn wide_misses_overlaps(&mut self, c: &Conj<'r>, alts: &[Node<'r>], instance: &str) -> bool {
        let tw = self.wide_types(c);
        let shallow: Vec<(u8, Map<String, Value>)> = alts
            .iter()
            .map(|a| {
                (
                    self.shallow_types(S::Narrow, a, 0),
                    resolve_ref(self.narrow.root, a.v),
                )
            })
            .collect();
        let _ = instance;
        shallow.iter().enumerate().all(|(i, (ta, a))| {
            shallow[i + 1..].iter().all(|(tb, b)| {
                let common = tw & ta & tb;
                if common == 0 || disjoint_maps(a, b) {
                    return true;
                }
                // Same single type: disjoint length or numeric ranges.
                let num = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_f64);
                let apart = |lo: &str, hi: &str| {
                    matches!((num(a, lo), num(b, hi)), (Some(x), Some(y)) if x > y)
                        || matches!((num(b, lo), num(a, hi)), (Some(x), Some(y)) if x > y)
                };
                (common & !STR == 0 && apart("minLength", "maxLength"))
                    || (common & !ARR == 0 && apart("minItems", "maxItems"))
                    || (common & !(INT | FRAC) == 0 && apart("minimum", "maximum"))
            })
        })
    }

    /// `c ⊆ anyOf/oneOf` of `n`: one alternative, or per JSON type.
    fn narrow_alternatives(&mut self, c: &Conj<'r>, n: &Node<'r>, key: &str, instance: &str) {
        let count = n.get(key).and_then(Value::as_array).map_or(0, Vec::len);
        let alts: Vec<Node<'r>> = (0..count)
            .filter_map(|j| self.child(n, &[key, &j.to_string()]))
            .collect();
        let wp = c.ptr();
        if key == "oneOf" && alts.len() > 1 {
            let same = c
                .nodes
                .iter()
                .any(|w| w.get("oneOf") == n.get("oneOf") && (self.same_roots || !has_ref(n.v)));
            let overlap = !same
                && !self.pairwise_disjoint(S::Narrow, &alts)
                && !self.wide_misses_overlaps(c, &alts, instance);
            if overlap {
                self.push(Say {
                    rules: (OVERLAP, OVERLAP),
                    exact: false,
                    wide: wp.clone(),
                    narrow: n.at("oneOf"),
                    instance: instance.to_owned(),
                    message: "a oneOf whose alternatives overlap rejects an instance that matches two of them".into(),
                    hint: None,
                });
            }
        }
        if alts.iter().any(|a| self.scratch(c, a, instance)) {
            return;
        }
        let types = self.wide_types(c);
        for t in TYPE_BITS {
            if types & t == 0 {
                continue;
            }
            let only = Conj {
                nodes: c.nodes.clone(),
                only: c.only & t,
                at: c.at.clone(),
            };
            let fits: Vec<&Node<'r>> = alts
                .iter()
                .filter(|a| self.shallow_types(S::Narrow, a, 0) & t != 0)
                .collect();
            match fits.as_slice() {
                [] => self.push(Say {
                    rules: ("alternative-removed", "alternative-added"),
                    exact: true,
                    wide: wp.clone(),
                    narrow: n.at(key),
                    instance: instance.to_owned(),
                    message: format!(
                        "no alternative accepts values of type {} any more",
                        bits_names(t)
                    ),
                    hint: None,
                }),
                [one] => {
                    // The only alternative for this type: what it rejects, no alternative
                    // accepts; the inner findings say where and why.
                    let one = (*one).clone();
                    let before = self.findings.len();
                    self.incl(only, one, instance);
                    let (rule, name) = match self.direction {
                        Direction::Backward => ("alternative-removed", bits_names(t)),
                        Direction::Forward => ("alternative-added", bits_names(t)),
                    };
                    for f in &mut self.findings[before..] {
                        if f.rule != "undecidable" {
                            f.rule = rule;
                            f.message =
                                format!("in the only alternative for type {name}: {}", f.message);
                        }
                    }
                }
                many => {
                    let many: Vec<Node<'r>> = many.iter().map(|a| (*a).clone()).collect();
                    if !many.iter().any(|a| self.scratch(&only, a, instance)) {
                        self.push(Say {
                            rules: ("alternative-removed", "alternative-added"),
                            exact: false,
                            wide: wp.clone(),
                            narrow: n.at(key),
                            instance: instance.to_owned(),
                            message: format!(
                                "no one alternative accepts every value of type {} accepted before",
                                bits_names(t)
                            ),
                            hint: None,
                        });
                    }
                }
            }
        }
    }

    /// The per-type comparison of what remains: types, numbers, strings, arrays, objects.
    fn compare_plain(&mut self, c: &Conj<'r>, n: &Node<'r>, instance: &str) {
        let nm = n.obj().expect("an object schema").clone();
        let wp = c.ptr();
        // Wide keywords this comparison does not read make the wide side larger than it is.
        let loose = c.nodes.iter().any(|w| {
            let m = w.obj().expect("flattened");
            m.contains_key("contains")
                || m.contains_key("dependentSchemas")
                || m.get("not")
                    .is_some_and(|x| !x.as_object().is_some_and(|x| x.keys().all(|k| k == "type")))
                || ((m.contains_key("unevaluatedProperties") || m.contains_key("unevaluatedItems"))
                    && has_in_place(m))
        });
        self.approx += usize::from(loose);
        let mut tw = self.wide_types(c);
        let mults: Vec<(f64, String)> = c
            .nodes
            .iter()
            .filter_map(|w| {
                w.get("multipleOf")
                    .and_then(Value::as_f64)
                    .map(|m| (m, w.at("multipleOf")))
            })
            .collect();
        if mults.iter().any(|(m, _)| m.fract() == 0.0) {
            tw &= !FRAC;
        }
        let tn = schema_type_bits(&nm);
        let lost = tw & !tn;
        if lost != 0 {
            let wat = c
                .nodes
                .iter()
                .find(|w| w.get("type").is_some())
                .map(|w| w.at("type"))
                .unwrap_or(wp.clone());
            self.push(Say {
                rules: ("type-narrowed", "type-widened"),
                exact: true,
                wide: wat,
                narrow: n.at("type"),
                instance: instance.to_owned(),
                message: format!(
                    "values of type {}: {}",
                    bits_names(lost),
                    self.old_new("accepted", "rejected")
                ),
                hint: None,
            });
        }
        let t = tw & tn;
        if t != 0 && finite(&nm).is_some() {
            // An infinite wide side (else it was enumerated) against a finite narrow one; the
            // finding stands with an instance that shows it.
            let key = if nm.contains_key("const") {
                "const"
            } else {
                "enum"
            };
            self.push(Say {
                rules: ("enum-added", "enum-removed"),
                exact: false,
                wide: wp.clone(),
                narrow: n.at(key),
                instance: instance.to_owned(),
                message: format!(
                    "values: {}",
                    self.old_new("not enumerated", "an enumeration")
                ),
                hint: None,
            });
        }
        if t & (INT | FRAC) != 0 {
            self.compare_numbers(c, n, t, &mults, instance);
        }
        if t & STR != 0 {
            self.compare_strings(c, n, instance);
        }
        if t & ARR != 0 {
            self.compare_arrays(c, n, instance);
        }
        if t & OBJ != 0 {
            self.compare_objects(c, n, instance);
        }
        self.approx -= usize::from(loose);
    }

    fn compare_numbers(
        &mut self,
        c: &Conj<'r>,
        n: &Node<'r>,
        t: u8,
        mults: &[(f64, String)],
        instance: &str,
    ) {
        let int_only = t & FRAC == 0;
        let step = match mults {
            [] if int_only => Some(1.0),
            [] => None,
            [(m, _)] if int_only && m.fract() != 0.0 => None,
            [(m, _)] => Some(*m),
            _ => None,
        };
        // The wide bounds as (value, exclusive, pointer), tightest of the conjuncts.
        let mut lo: Option<(f64, bool, String)> = None;
        let mut hi: Option<(f64, bool, String)> = None;
        for w in &c.nodes {
            for (k, excl, lower) in [
                ("minimum", false, true),
                ("exclusiveMinimum", true, true),
                ("maximum", false, false),
                ("exclusiveMaximum", true, false),
            ] {
                let Some(x) = w.get(k).and_then(Value::as_f64) else {
                    continue;
                };
                let slot = if lower { &mut lo } else { &mut hi };
                let tighter = slot.as_ref().is_none_or(|(y, e, _)| {
                    if lower {
                        x > *y || (x == *y && excl && !e)
                    } else {
                        x < *y || (x == *y && excl && !e)
                    }
                });
                if tighter {
                    *slot = Some((x, excl, w.at(k)));
                }
            }
        }
        // On a grid of `step`, a bound becomes the grid's first member inside it.
        let snap = |b: Option<(f64, bool, String)>, lower: bool| {
            b.map(|(x, e, p)| match step {
                Some(s) if s > 0.0 => {
                    let q = x / s;
                    let k = if lower {
                        if e {
                            q.floor() + 1.0
                        } else {
                            q.ceil()
                        }
                    } else if e {
                        q.ceil() - 1.0
                    } else {
                        q.floor()
                    };
                    (k * s, false, p)
                }
                _ => (x, e, p),
            })
        };
        let (lo, hi) = (snap(lo, true), snap(hi, false));
        if let (Some((a, ea, _)), Some((b, eb, _))) = (&lo, &hi) {
            if a > b || (a == b && (*ea || *eb)) {
                return; // no number at all
            }
        }
        let nm = n.obj().expect("an object schema");
        let bound = |k: &str| nm.get(k).and_then(Value::as_f64);
        for (lower, keys) in [
            (true, ["minimum", "exclusiveMinimum"]),
            (false, ["maximum", "exclusiveMaximum"]),
        ] {
            let w = if lower { &lo } else { &hi };
            for (k, excl) in [(keys[0], false), (keys[1], true)] {
                let Some(x) = bound(k) else { continue };
                let holds = w.as_ref().is_some_and(|(y, we, _)| {
                    let beyond = if lower { *y > x } else { *y < x };
                    beyond || (*y == x && (!excl || *we))
                });
                if holds {
                    continue;
                }
                let shown = w.as_ref().map_or("none".to_owned(), |(y, e, _)| {
                    format!("{}{y}", if *e { "exclusive " } else { "" })
                });
                let wat = w.as_ref().map_or(c.ptr(), |(_, _, p)| p.clone());
                let hint = if lower { x - 1.0 } else { x + 1.0 };
                self.push(Say {
                    rules: if lower {
                        ("minimum-increased", "minimum-decreased")
                    } else {
                        ("maximum-decreased", "maximum-increased")
                    },
                    exact: true,
                    wide: wat,
                    narrow: n.at(k),
                    instance: instance.to_owned(),
                    message: format!(
                        "{} bound: {}",
                        if lower { "lower" } else { "upper" },
                        self.old_new(&shown, &format!("{k} {x}"))
                    ),
                    hint: Some(if hint.fract() == 0.0 {
                        json!(hint as i64)
                    } else {
                        json!(hint)
                    }),
                });
            }
        }
        if let Some(m) = bound("multipleOf") {
            let ok = step.is_some_and(|s| {
                let q = s / m;
                (q - q.round()).abs() < 1e-9 && q.round() != 0.0
            }) || mults.iter().any(|(k, _)| {
                let q = k / m;
                (q - q.round()).abs() < 1e-9
            });
            if !ok {
                let wat = mults
                    .first()
                    .map(|(_, p)| p.clone())
                    .unwrap_or_else(|| c.ptr());
                let was = step.map_or("any number".to_owned(), |s| format!("multiples of {s}"));
                self.push(Say {
                    rules: ("multiple-of-changed", "multiple-of-relaxed"),
                    exact: !(lo.is_some() && hi.is_some()),
                    wide: wat,
                    narrow: n.at("multipleOf"),
                    instance: instance.to_owned(),
                    message: format!(
                        "values: {}",
                        self.old_new(&was, &format!("multiples of {m}"))
                    ),
                    hint: None,
                });
            }
        }
    }

    fn compare_strings(&mut self, c: &Conj<'r>, n: &Node<'r>, instance: &str) {
        let wp = c.ptr();
        let mut min = (0u64, wp.clone());
        let mut max: Option<(u64, String)> = None;
        let mut patterns: Vec<(String, String)> = Vec::new();
        for w in &c.nodes {
            if let Some(x) = w.get("minLength").and_then(Value::as_u64) {
                if x > min.0 {
                    min = (x, w.at("minLength"));
                }
            }
            if let Some(x) = w.get("maxLength").and_then(Value::as_u64) {
                if max.as_ref().is_none_or(|(y, _)| x < *y) {
                    max = Some((x, w.at("maxLength")));
                }
            }
            if let Some(p) = w.get("pattern").and_then(Value::as_str) {
                patterns.push((p.to_owned(), w.at("pattern")));
            }
        }
        if max.as_ref().is_some_and(|(m, _)| *m < min.0) {
            return; // no string at all
        }
        // Lengths a pattern implies are not read: with one, a length finding is suspected.
        let exact = patterns.is_empty();
        if let Some(x) = n.get("minLength").and_then(Value::as_u64) {
            if x > min.0 {
                self.push(Say {
                    rules: ("min-length-increased", "min-length-decreased"),
                    exact,
                    wide: min.1.clone(),
                    narrow: n.at("minLength"),
                    instance: instance.to_owned(),
                    message: format!(
                        "fewest characters: {}",
                        self.old_new(&min.0.to_string(), &x.to_string())
                    ),
                    hint: Some(Value::String("x".repeat(min.0 as usize))),
                });
            }
        }
        if let Some(x) = n.get("maxLength").and_then(Value::as_u64) {
            if max.as_ref().is_none_or(|(m, _)| *m > x) {
                let shown = max
                    .as_ref()
                    .map_or("unbounded".to_owned(), |(m, _)| m.to_string());
                self.push(Say {
                    rules: ("max-length-decreased", "max-length-increased"),
                    exact,
                    wide: max.as_ref().map_or(wp.clone(), |(_, p)| p.clone()),
                    narrow: n.at("maxLength"),
                    instance: instance.to_owned(),
                    message: format!("most characters: {}", self.old_new(&shown, &x.to_string())),
                    hint: Some(Value::String("x".repeat(x as usize + 1))),
                });
            }
        }
        if let Some(p) = n.get("pattern").and_then(Value::as_str) {
            if patterns.iter().any(|(q, _)| q == p) {
                return;
            }
            let wide: Vec<&str> = patterns.iter().map(|(q, _)| q.as_str()).collect();
            let rules = if patterns.is_empty() {
                ("pattern-added", "pattern-removed")
            } else {
                (PATTERN_CHANGED, PATTERN_CHANGED)
            };
            let wat = patterns.first().map_or(wp.clone(), |(_, at)| at.clone());
            let was = if wide.is_empty() {
                "any string".to_owned()
            } else {
                wide.join(" and ")
            };
            match regular::includes(&wide, p) {
                Some(Ok(())) => {}
                Some(Err(witness)) => self.push(Say {
                    rules,
                    exact: min.0 == 0 && max.is_none(),
                    wide: wat,
                    narrow: n.at("pattern"),
                    instance: instance.to_owned(),
                    message: format!(
                        "strings: {}",
                        self.old_new(&format!("matching {was}"), &format!("matching {p}"))
                    ),
                    hint: Some(Value::String(witness)),
                }),
                None => self.push(Say {
                    rules,
                    exact: false,
                    wide: wat,
                    narrow: n.at("pattern"),
                    instance: instance.to_owned(),
                    message: format!(
                        "strings: {} (outside the regular subset)",
                        self.old_new(&format!("matching {was}"), &format!("matching {p}"))
                    ),
                    hint: None,
                }),
            }
        }
    }

    /// The schemas that apply at array position `i` (`None`: past the prefixes, the rest).
    fn position(&self, n: &Node<'r>, i: usize) -> Option<Node<'r>> {
        let m = n.obj()?;
        let prefix = m
            .get("prefixItems")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if i < prefix {
            return self.child(n, &["prefixItems", &i.to_string()]);
        }
        if m.contains_key("items") {
            return self.child(n, &["items"]);
        }
        if m.contains_key("unevaluatedItems") && !has_in_place(m) {
            return self.child(n, &["unevaluatedItems"]);
        }
        None
    }

    fn compare_arrays(&mut self, c: &Conj<'r>, n: &Node<'r>, instance: &str) {
        let wp = c.ptr();
        let prefix_len = |x: &Node<'r>| {
            x.get("prefixItems")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        };
        let p = c.nodes.iter().chain([n]).map(prefix_len).max().unwrap_or(0);
        let mut min = (0u64, wp.clone());
        let mut max: Option<(u64, String)> = None;
        for w in &c.nodes {
            if let Some(x) = w.get("minItems").and_then(Value::as_u64) {
                if x > min.0 {
                    min = (x, w.at("minItems"));
                }
            }
            if let Some(x) = w.get("maxItems").and_then(Value::as_u64) {
                if max.as_ref().is_none_or(|(y, _)| x < *y) {
                    max = Some((x, w.at("maxItems")));
                }
            }
            // A position whose schema is false ends the array there.
            for i in 0..=prefix_len(w) {
                if let Some(s) = self.position(w, i) {
                    if s.v == &Value::Bool(false)
                        && max.as_ref().is_none_or(|(y, _)| (i as u64) < *y)
                    {
                        max = Some((i as u64, s.ptr.clone()));
                    }
                }
            }
        }
        if max.as_ref().is_some_and(|(m, _)| *m < min.0) {
            return;
        }
        let mut n_max: Option<(u64, String)> = n
            .get("maxItems")
            .and_then(Value::as_u64)
            .map(|x| (x, n.at("maxItems")));
        for i in 0..=prefix_len(n) {
            if let Some(s) = self.position(n, i) {
                if s.v == &Value::Bool(false) && n_max.as_ref().is_none_or(|(y, _)| (i as u64) < *y)
                {
                    n_max = Some((i as u64, s.ptr.clone()));
                }
            }
        }
        if let Some(x) = n.get("minItems").and_then(Value::as_u64) {
            if x > min.0 {
                self.push(Say {
                    rules: ("min-items-increased", "min-items-decreased"),
                    exact: true,
                    wide: min.1.clone(),
                    narrow: n.at("minItems"),
                    instance: instance.to_owned(),
                    message: format!(
                        "fewest items: {}",
                        self.old_new(&min.0.to_string(), &x.to_string())
                    ),
                    hint: None,
                });
            }
        }
        if let Some((x, at)) = &n_max {
            if max.as_ref().is_none_or(|(m, _)| m > x) {
                let shown = max
                    .as_ref()
                    .map_or("unbounded".to_owned(), |(m, _)| m.to_string());
                self.push(Say {
                    rules: ("max-items-decreased", "max-items-increased"),
                    exact: true,
                    wide: max.as_ref().map_or(wp.clone(), |(_, p)| p.clone()),
                    narrow: at.clone(),
                    instance: instance.to_owned(),
                    message: format!("most items: {}", self.old_new(&shown, &x.to_string())),
                    hint: None,
                });
            }
        }
        // Position by position, up to the longest prefix, then the rest.
        for i in 0..=p {
            if max.as_ref().is_some_and(|(m, _)| (i as u64) >= *m) {
                break;
            }
            let Some(ns) = self.position(n, i) else {
                continue;
            };
            if ns.v == &Value::Bool(false) {
                continue; // reported as a bound above
            }
            let ws: Vec<Node<'r>> = c.nodes.iter().filter_map(|w| self.position(w, i)).collect();
            self.incl(
                Conj {
                    nodes: ws,
                    only: ANY,
                    at: c.ptr(),
                },
                ns,
                &format!("{instance}/{i}"),
            );
        }
        if n.get("uniqueItems") == Some(&Value::Bool(true))
            && !c
                .nodes
                .iter()
                .any(|w| w.get("uniqueItems") == Some(&Value::Bool(true)))
            && max.as_ref().is_none_or(|(m, _)| *m > 1)
        {
            self.push(Say {
                rules: ("unique-items-added", "unique-items-removed"),
                exact: true,
                wide: wp.clone(),
                narrow: n.at("uniqueItems"),
                instance: instance.to_owned(),
                message: format!("repeated items: {}", self.old_new("allowed", "rejected")),
                hint: None,
            });
        }
        if let Some(contains) = n.get("contains") {
            let need_min = n.get("minContains").and_then(Value::as_u64).unwrap_or(1);
            let need_max = n.get("maxContains").and_then(Value::as_u64);
            let shown = c.nodes.iter().any(|w| {
                w.get("contains") == Some(contains)
                    && (self.same_roots || !has_ref(contains))
                    && w.get("minContains").and_then(Value::as_u64).unwrap_or(1) >= need_min
                    && need_max.is_none_or(|m| {
                        w.get("maxContains")
                            .and_then(Value::as_u64)
                            .is_some_and(|x| x <= m)
                    })
            });
            if !shown && (need_min > 0 || need_max.is_some()) {
                let item = crate::example::minimal(contains, self.narrow.root, 1);
                let have = c
                    .nodes
                    .iter()
                    .find_map(|w| {
                        w.get("contains")
                            .map(|_| w.get("minContains").and_then(Value::as_u64).unwrap_or(1))
                    })
                    .unwrap_or(0);
                let count = need_max.map_or(have.min(need_min.saturating_sub(1)), |m| m + 1);
                self.push(Say {
                    rules: ("contains-narrowed", "contains-widened"),
                    exact: false,
                    wide: wp.clone(),
                    narrow: n.at("contains"),
                    instance: instance.to_owned(),
                    message: "how many items must match `contains` differs (contains, minContains, maxContains)".into(),
                    hint: Some(Value::Array(vec![item; count as usize])),
                });
            }
        }
        if n.get("unevaluatedItems").is_some() && has_in_place(n.obj().expect("object")) {
            let same = c.nodes.iter().any(|w| w.v == n.v);
            if !same {
                self.undecided(
                    wp,
                    n.at("unevaluatedItems"),
                    instance,
                    "`unevaluatedItems` beside in-place applicators".into(),
                );
            }
        }
    }

    /// The schemas that apply to property `name` of `x`: `None` if the name is not allowed.
    fn property(&mut self, s: S, x: &Node<'r>, name: &str) -> Option<Vec<Node<'r>>> {
        let m = x.obj()?;
        let mut out = Vec::new();
        if m.get("properties").and_then(|p| p.get(name)).is_some() {
            out.extend(self.child(x, &["properties", name]));
        }
        if let Some(Value::Object(pp)) = m.get("patternProperties") {
            for p in pp.keys() {
                if regular::matches(p, name).unwrap_or(true) {
                    out.extend(self.child(x, &["patternProperties", p]));
                }
            }
        }
        if out.is_empty() {
            let extra = if m.contains_key("additionalProperties") {
                Some("additionalProperties")
            } else if m.contains_key("unevaluatedProperties") && !has_in_place(m) {
                Some("unevaluatedProperties")
            } else {
                None
            };
            if let Some(k) = extra {
                out.extend(self.child(x, &[k]));
            }
        }
        if s == S::Wide && x.get("propertyNames").is_some() {
            let ptr = format!("{}/propertyNames", x.ptr);
            if self.wide.accepts(&ptr, &json!(name)) == Some(false) {
                return None;
            }
        }
        if s == S::Wide && out.iter().any(|o| o.v == &Value::Bool(false)) {
            return None;
        }
        Some(out)
    }

    /// The schema of names no `properties` of `x` lists and no pattern matches.
    fn extra(&self, x: &Node<'r>) -> Option<Node<'r>> {
        let m = x.obj()?;
        if m.contains_key("additionalProperties") {
            return self.child(x, &["additionalProperties"]);
        }
        if m.contains_key("unevaluatedProperties") && !has_in_place(m) {
            return self.child(x, &["unevaluatedProperties"]);
        }
        None
    }

    fn closed(&self, x: &Node<'r>) -> bool {
        self.extra(x).is_some_and(|e| e.v == &Value::Bool(false))
            && x.get("patternProperties").is_none()
    }

    fn compare_objects(&mut self, c: &Conj<'r>, n: &Node<'r>, instance: &str) {
        let wp = c.ptr();
        let nm = n.obj().expect("an object schema").clone();
        let required: BTreeSet<String> = c
            .nodes
            .iter()
            .flat_map(|w| {
                required_names(w.obj().expect("object"))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        let wreq_at = c
            .nodes
            .iter()
            .find(|w| w.get("required").is_some())
            .map_or(wp.clone(), |w| w.at("required"));
        for (i, r) in nm
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(r) = r.as_str() else { continue };
            if !required.contains(r) {
                self.push(Say {
                    rules: ("required-property-added", "required-property-removed"),
                    exact: true,
                    wide: wreq_at.clone(),
                    narrow: format!("{}/required/{i}", n.ptr),
                    instance: format!("{instance}/{}", escape(r)),
                    message: format!("property {r} {}", self.old_new("optional", "required")),
                    hint: None,
                });
            }
        }
        // Named properties, on either side.
        let mut names: BTreeSet<String> = BTreeSet::new();
        for x in c.nodes.iter().chain([n]) {
            if let Some(Value::Object(p)) = x.get("properties") {
                names.extend(p.keys().cloned());
            }
        }
        // A finite `propertyNames` on the wide side lists every name its objects can have.
        let listed: Option<Vec<String>> = c.nodes.iter().find_map(|w| {
            w.get("propertyNames")
                .and_then(Value::as_object)
                .and_then(finite)
                .map(|vs| {
                    vs.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
        });
        if let Some(l) = &listed {
            names.extend(l.iter().cloned());
        }
        let mut possible: Vec<String> = Vec::new();
        for name in &names {
            let mut ws = Vec::new();
            let mut allowed = true;
            for w in &c.nodes {
                match self.property(S::Wide, w, name) {
                    Some(s) => ws.extend(s),
                    None => allowed = false,
                }
            }
            if !allowed {
                continue;
            }
            possible.push(name.clone());
            let inst = format!("{instance}/{}", escape(name));
            for ns in self.property(S::Narrow, n, name).unwrap_or_default() {
                if ns.v == &Value::Bool(false) {
                    let wat = ws.first().map_or(wp.clone(), |w| w.ptr.clone());
                    self.push(Say {
                        rules: (
                            "property-removed-from-closed-object",
                            "property-added-to-closed-object",
                        ),
                        exact: true,
                        wide: wat,
                        narrow: ns.ptr.clone(),
                        instance: inst.clone(),
                        message: format!(
                            "property {name} {}",
                            self.old_new("accepted", "not declared in a closed object")
                        ),
                        hint: None,
                    });
                    continue;
                }
                self.incl(
                    Conj {
                        nodes: ws.clone(),
                        only: ANY,
                        at: c.ptr(),
                    },
                    ns,
                    &inst,
                );
            }
        }
        if listed.is_none() {
            self.compare_other_names(c, n, instance);
        }
        // Sizes.
        let wmin = c
            .nodes
            .iter()
            .filter_map(|w| w.get("minProperties").and_then(Value::as_u64))
            .max()
            .unwrap_or(0)
            .max(required.len() as u64);
        let closed = c.nodes.iter().any(|w| self.closed(w));
        let wmax = c
            .nodes
            .iter()
            .filter_map(|w| w.get("maxProperties").and_then(Value::as_u64))
            .chain(closed.then_some(possible.len() as u64))
            .min();
        if let Some(x) = nm.get("minProperties").and_then(Value::as_u64) {
            if x > wmin {
                let wat = c
                    .nodes
                    .iter()
                    .find(|w| w.get("minProperties").is_some())
                    .map_or(wp.clone(), |w| w.at("minProperties"));
                self.push(Say {
                    rules: ("min-properties-increased", "min-properties-decreased"),
                    exact: true,
                    wide: wat,
                    narrow: n.at("minProperties"),
                    instance: instance.to_owned(),
                    message: format!(
                        "fewest properties: {}",
                        self.old_new(&wmin.to_string(), &x.to_string())
                    ),
                    hint: None,
                });
            }
        }
        if let Some(x) = nm.get("maxProperties").and_then(Value::as_u64) {
            if wmax.is_none_or(|m| m > x) {
                let wat = c
                    .nodes
                    .iter()
                    .find(|w| w.get("maxProperties").is_some())
                    .map_or(wp.clone(), |w| w.at("maxProperties"));
                let shown = wmax.map_or("unbounded".to_owned(), |m| m.to_string());
                self.push(Say {
                    rules: ("max-properties-decreased", "max-properties-increased"),
                    exact: true,
                    wide: wat,
                    narrow: n.at("maxProperties"),
                    instance: instance.to_owned(),
                    message: format!("most properties: {}", self.old_new(&shown, &x.to_string())),
                    hint: Some(Value::Object(
                        (0..=x).map(|i| (format!("p{i}"), Value::Null)).collect(),
                    )),
                });
            }
        }
        // Names.
        if let Some(pn) = self.child(n, &["propertyNames"]) {
            let closed_names = c.nodes.iter().any(|w| self.closed(w));
            if closed_names {
                for name in &possible {
                    if self.narrow.accepts(&pn.ptr, &json!(name)) == Some(false) {
                        self.push(Say {
                            rules: ("property-names-narrowed", "property-names-widened"),
                            exact: true,
                            wide: wp.clone(),
                            narrow: pn.ptr.clone(),
                            instance: format!("{instance}/{}", escape(name)),
                            message: format!(
                                "the property name {name} {}",
                                self.old_new("accepted", "rejected")
                            ),
                            hint: None,
                        });
                    }
                }
            } else {
                let names: Vec<Node<'r>> = c
                    .nodes
                    .iter()
                    .filter_map(|w| self.child(w, &["propertyNames"]))
                    .collect();
                self.incl(
                    Conj {
                        nodes: names,
                        only: STR,
                        at: c.ptr(),
                    },
                    pn,
                    instance,
                );
            }
        }
        if let Some(Value::Object(deps)) = nm.get("dependentRequired") {
            for (k, needs) in deps {
                if !possible.contains(k) && !c.nodes.iter().all(|w| !self.closed(w)) {
                    continue;
                }
                for d in needs
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    let implied = required.contains(d)
                        || c.nodes.iter().any(|w| {
                            w.get("dependentRequired")
                                .and_then(|x| x.get(k))
                                .and_then(Value::as_array)
                                .is_some_and(|a| a.iter().any(|x| x == d))
                        });
                    if !implied {
                        self.push(Say {
                            rules: ("dependent-required-added", "dependent-required-removed"),
                            exact: true,
                            wide: wp.clone(),
                            narrow: format!("{}/dependentRequired/{}", n.ptr, escape(k)),
                            instance: instance.to_owned(),
                            message: format!(
                                "with property {k}, property {d} {}",
                                self.old_new("optional", "required")
                            ),
                            hint: Some(json!({ k: null })),
                        });
                    }
                }
            }
        }
        if let Some(Value::Object(deps)) = nm.get("dependentSchemas") {
            for k in deps.keys() {
                let Some(ds) = self.child(n, &["dependentSchemas", k]) else {
                    continue;
                };
                let exact = required.contains(k);
                self.approx += usize::from(!exact);
                self.incl(c.clone(), ds, instance);
                self.approx -= usize::from(!exact);
            }
        }
        if nm.contains_key("unevaluatedProperties")
            && has_in_place(&nm)
            && !c.nodes.iter().any(|w| w.v == n.v)
        {
            self.undecided(
                wp,
                n.at("unevaluatedProperties"),
                instance,
                "`unevaluatedProperties` beside in-place applicators".into(),
            );
        }
    }

    /// Names neither side lists: the wide side's pattern and additional schemas against the
    /// narrow side's.
    fn compare_other_names(&mut self, c: &Conj<'r>, n: &Node<'r>, instance: &str) {
        let pattern_nodes = c
            .nodes
            .iter()
            .filter(|w| w.get("patternProperties").is_some())
            .count();
        // With patterns in more than one conjunct, the cases are combined one at a time: wider.
        let loose = usize::from(pattern_nodes > 1);
        self.approx += loose;
        // The wide cases: (pattern or None for "matches none", schemas that apply).
        let mut cases: Vec<(Option<String>, Vec<Node<'r>>)> = Vec::new();
        let base: Vec<Node<'r>> = c
            .nodes
            .iter()
            .filter(|w| w.get("patternProperties").is_none())
            .filter_map(|w| self.extra(w))
            .collect();
        let with_patterns: Vec<&Node<'r>> = c
            .nodes
            .iter()
            .filter(|w| w.get("patternProperties").is_some())
            .collect();
        if with_patterns.is_empty() {
            cases.push((None, base.clone()));
        }
        for w in with_patterns {
            let pp = w
                .get("patternProperties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for p in pp.keys() {
                let mut s = base.clone();
                s.extend(self.child(w, &["patternProperties", p]));
                cases.push((Some(p.clone()), s));
            }
            let mut s = base.clone();
            s.extend(self.extra(w));
            cases.push((None, s));
        }
        let npp = n
            .get("patternProperties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let n_extra = self.extra(n);
        let inst = format!("{instance}/additional_property");
        for (wpat, ws) in cases {
            if ws.iter().any(|s| s.v == &Value::Bool(false)) {
                continue;
            }
            let wat = ws.first().map_or(c.ptr(), |w| w.ptr.clone());
            for r in npp.keys() {
                if let Some(p) = &wpat {
                    if regular::intersects(p, r) == Some(false) {
                        continue;
                    }
                }
                if let Some(s) = self.child(n, &["patternProperties", r]) {
                    self.incl(
                        Conj {
                            nodes: ws.clone(),
                            only: ANY,
                            at: c.ptr(),
                        },
                        s,
                        &inst,
                    );
                }
            }
            let Some(ne) = n_extra.clone() else { continue };
            if let Some(p) = &wpat {
                let covered = npp
                    .keys()
                    .any(|r| regular::includes(&[p.as_str()], r) == Some(Ok(())));
                if covered {
                    continue;
                }
            }
            if ne.v == &Value::Bool(false) {
                let wide_open = ws.iter().all(|s| s.v != &Value::Bool(false));
                if wide_open {
                    self.push(Say {
                        rules: (
                            "additional-properties-closed",
                            "additional-properties-opened",
                        ),
                        exact: npp.is_empty(),
                        wide: wat,
                        narrow: ne.ptr.clone(),
                        instance: instance.to_owned(),
                        message: format!(
                            "properties not declared {}",
                            self.old_new("accepted", "rejected")
                        ),
                        hint: None,
                    });
                }
                continue;
            }
            self.incl(
                Conj {
                    nodes: ws,
                    only: ANY,
                    at: c.ptr(),
                },
                ne,
                &inst,
            );
        }
        self.approx -= loose;
    }
}

/// The rule of a narrow `oneOf` whose alternatives overlap where the wide side has instances.
const OVERLAP: &str = "alternatives-overlap";
/// The rule of a `pattern` that rejects a string the other side's `pattern` accepts.
const PATTERN_CHANGED: &str = "pattern-changed";

/// Whether no instance can match two of these (resolved) alternatives, as far as types,
/// `const`/`enum` and a required discriminator property show; `false` means "not shown".
fn disjoint_maps(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    let (ta, tb) = (shallow_bits(a), shallow_bits(b));
    if ta & tb == 0 {
        return true;
    }
    if let (Some(va), Some(vb)) = (finite(a), finite(b)) {
        let canonical = |v: &Value| driftless_protocol::canonical::to_canonical_string(v);
        let vb: BTreeSet<String> = vb.iter().map(canonical).collect();
        if !va.iter().any(|v| vb.contains(&canonical(v))) {
            return true;
        }
    }
    // A discriminator: both accept only objects, both require a property, and its values differ.
    if !(ta == OBJ && tb == OBJ) {
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
            (Some(pa), Some(pb)) => disjoint_maps(&pa, &pb),
            _ => false,
        })
}

fn shallow_bits(m: &Map<String, Value>) -> u8 {
    let mut b = schema_type_bits(m);
    if let Some(vs) = finite(m) {
        b &= vs.iter().fold(0, |acc, v| acc | value_bits(v));
    }
    b
}

/// A schema as an object with its local `$ref`s (`#/...` in `root`) resolved: the target's
/// keywords, overlaid by the referring schema's siblings. Shared by the counterexamples and the
/// generator, which need an approximate reading only (every counterexample is validated).
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

/// The names a schema's `required` lists (none if it has no such array).
pub(crate) fn required_names(s: &Map<String, Value>) -> impl Iterator<Item = &str> {
    s.get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// The pointer of a subschema that reaches itself through `$ref`s and in-place applicators
/// (`allOf`, `anyOf`, `oneOf`, `not`, `if`/`then`/`else`, `dependentSchemas`) with no keyword
/// between that consumes part of the instance: such a schema has no meaning to compare
/// (unreadable input). `None` if there is no such cycle or the references do not resolve.
pub(crate) fn progress_free_cycle(root: &Value) -> Option<String> {
    let registry = registry(root, URI_WIDE)?;
    let side = Side::new(root, "", URI_WIDE, &registry);
    let start = side.root_node(S::Wide)?;
    // Every subschema with its in-place successors.
    let mut edges: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut stack = vec![start];
    let mut visited = HashSet::new();
    let walk = Walk {
        wide: side,
        narrow: Side::new(root, "", URI_WIDE, &registry),
        direction: Direction::Backward,
        findings: Vec::new(),
        seen: HashSet::new(),
        seen_log: Vec::new(),
        reported: HashSet::new(),
        steps: 0,
        depth: 0,
        approx: 0,
        exhausted: false,
        same_roots: true,
    };
    while let Some(node) = stack.pop() {
        let addr = node.v as *const Value as usize;
        if !visited.insert(addr) {
            continue;
        }
        let Some(m) = node.obj() else { continue };
        let mut next = Vec::new();
        for (k, v) in m {
            let sub: Vec<Vec<String>> = match (k.as_str(), v) {
                (
                    "properties" | "patternProperties" | "$defs" | "definitions"
                    | "dependentSchemas",
                    Value::Object(o),
                ) => o.keys().map(|x| vec![k.clone(), x.clone()]).collect(),
                ("allOf" | "anyOf" | "oneOf" | "prefixItems", Value::Array(a)) => (0..a.len())
                    .map(|i| vec![k.clone(), i.to_string()])
                    .collect(),
                (
                    "not"
                    | "if"
                    | "then"
                    | "else"
                    | "items"
                    | "contains"
                    | "additionalProperties"
                    | "propertyNames"
                    | "unevaluatedItems"
                    | "unevaluatedProperties",
                    Value::Object(_),
                ) => vec![vec![k.clone()]],
                _ => Vec::new(),
            };
            for path in sub {
                let refs: Vec<&str> = path.iter().map(String::as_str).collect();
                if let Some(child) = walk.child(&node, &refs) {
                    let in_place = matches!(
                        refs[0],
                        "allOf"
                            | "anyOf"
                            | "oneOf"
                            | "not"
                            | "if"
                            | "then"
                            | "else"
                            | "dependentSchemas"
                    );
                    if in_place {
                        edges
                            .entry(addr)
                            .or_default()
                            .push(child.v as *const Value as usize);
                    }
                    next.push(child);
                }
            }
        }
        if let Some(Value::String(r)) = m.get("$ref") {
            if let Some(t) = walk.lookup(S::Wide, &node, r) {
                edges
                    .entry(addr)
                    .or_default()
                    .push(t.v as *const Value as usize);
                next.push(t);
            }
        }
        stack.extend(next);
    }
    // A cycle in the in-place graph (iterative depth-first search with colours).
    let mut colour: HashMap<usize, u8> = HashMap::new();
    for &start in edges.keys() {
        if colour.contains_key(&start) {
            continue;
        }
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        colour.insert(start, 1);
        while let Some((at, i)) = path.last().copied() {
            let succ = edges.get(&at).map_or(&[][..], Vec::as_slice);
            if i < succ.len() {
                path.last_mut().expect("non-empty").1 += 1;
                let s = succ[i];
                match colour.get(&s) {
                    Some(1) => return walk.wide.pointers.get(&s).cloned().or(Some(String::new())),
                    Some(_) => {}
                    None => {
                        colour.insert(s, 1);
                        path.push((s, 0));
                    }
                }
            } else {
                colour.insert(at, 2);
                path.pop();
            }
        }
    }
    None
}
