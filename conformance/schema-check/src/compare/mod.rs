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
//!
//! Per JSON type the comparison lives in `numbers`, `strings`, `arrays` and `objects`; the
//! alternatives (`anyOf`, `oneOf`, `if`) in `alternatives`; type bit sets in `types`; schema
//! reading helpers in `refs`; the two sides and their subschemas (`Side`, `Node`, `Conj`) in
//! `node`; how a finding is worded and recorded in `report`. What stays here is the walk's core
//! (flattening of conjunctions, enumeration of finite sides, and the inclusion question with its
//! visited set and work bounds), which every part above calls.

mod alternatives;
mod arrays;
mod node;
mod numbers;
mod objects;
mod refs;
mod report;
mod strings;
mod types;

pub(crate) use node::existing;
use node::*;
use refs::as_object;
pub(crate) use refs::{progress_free_cycle, required_names, resolve_ref};
use report::*;
use types::*;

use std::collections::{BTreeSet, HashMap, HashSet};

use referencing::{Draft, Registry, Resolver, ResourceRef};
use serde_json::{json, Map, Value};

use super::{Direction, Finding, Severity};
use crate::regular;

/// Inclusion questions asked per check before the rest is reported as not decided.
pub(crate) const STEPS_MAX: usize = 200_000;
/// Nested inclusion questions before the rest is reported as not decided.
pub(crate) const DEPTH_MAX: usize = 400;

// Keywords of a wide subschema already distributed into cases.
const SKIP_ANYOF: u8 = 1;
const SKIP_ONEOF: u8 = 2;
const SKIP_IF: u8 = 4;

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
}

/// The rule of a narrow `oneOf` whose alternatives overlap where the wide side has instances.
const OVERLAP: &str = "alternatives-overlap";
/// The rule of a `pattern` that rejects a string the other side's `pattern` accepts.
const PATTERN_CHANGED: &str = "pattern-changed";
