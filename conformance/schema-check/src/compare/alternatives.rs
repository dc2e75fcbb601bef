//! Alternatives: `anyOf`, `oneOf` and `if`/`then`/`else` distributed on the wide side and
//! checked per JSON type on the narrow side, and the disjointness of alternatives (rule
//! `alternatives-overlap`).
//!
//! One `impl Walk` block of the inclusion walk in [`super`].

use super::*;

impl<'r> Walk<'r> {
    /// Splits the wide side at its first `anyOf`, `oneOf` or `if`; `false` if it has none.
    pub(super) fn distribute(&mut self, c: &Conj<'r>, n: &Node<'r>, instance: &str) -> bool {
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

    pub(super) fn pairwise_disjoint(&self, s: S, alts: &[Node<'r>]) -> bool {
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
    pub(super) fn disjoint(&mut self, c: &Conj<'r>, x: &Node<'r>) -> bool {
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
    pub(super) fn wide_misses_overlaps(
        &mut self,
        c: &Conj<'r>,
        alts: &[Node<'r>],
        instance: &str,
    ) -> bool {
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
    pub(super) fn narrow_alternatives(
        &mut self,
        c: &Conj<'r>,
        n: &Node<'r>,
        key: &str,
        instance: &str,
    ) {
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
}
