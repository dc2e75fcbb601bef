//! Arrays by position: `prefixItems`, `items`, `contains` with `minContains`/`maxContains`,
//! length bounds and `uniqueItems`.
//!
//! One `impl Walk` block of the inclusion walk in [`super`].

use super::*;

impl<'r> Walk<'r> {
    /// The schemas that apply at array position `i` (`None`: past the prefixes, the rest).
    pub(super) fn position(&self, n: &Node<'r>, i: usize) -> Option<Node<'r>> {
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

    pub(super) fn compare_arrays(&mut self, c: &Conj<'r>, n: &Node<'r>, instance: &str) {
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
}
