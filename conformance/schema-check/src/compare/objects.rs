//! Objects by property name: named, pattern and additional property schemas, `required`,
//! `dependentRequired`/`dependentSchemas`, `propertyNames` and size bounds.
//!
//! One `impl Walk` block of the inclusion walk in [`super`].

use super::*;

impl<'r> Walk<'r> {
    /// The schemas that apply to property `name` of `x`: `None` if the name is not allowed.
    pub(super) fn property(&mut self, s: S, x: &Node<'r>, name: &str) -> Option<Vec<Node<'r>>> {
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
    pub(super) fn extra(&self, x: &Node<'r>) -> Option<Node<'r>> {
        let m = x.obj()?;
        if m.contains_key("additionalProperties") {
            return self.child(x, &["additionalProperties"]);
        }
        if m.contains_key("unevaluatedProperties") && !has_in_place(m) {
            return self.child(x, &["unevaluatedProperties"]);
        }
        None
    }

    pub(super) fn closed(&self, x: &Node<'r>) -> bool {
        self.extra(x).is_some_and(|e| e.v == &Value::Bool(false))
            && x.get("patternProperties").is_none()
    }

    pub(super) fn compare_objects(&mut self, c: &Conj<'r>, n: &Node<'r>, instance: &str) {
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
    pub(super) fn compare_other_names(&mut self, c: &Conj<'r>, n: &Node<'r>, instance: &str) {
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
