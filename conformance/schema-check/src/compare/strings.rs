//! Strings: code-point length bounds and pattern languages (inclusion by DFA, `regular.rs`).
//!
//! One `impl Walk` block of the inclusion walk in [`super`].

use super::*;

impl<'r> Walk<'r> {
    pub(super) fn compare_strings(&mut self, c: &Conj<'r>, n: &Node<'r>, instance: &str) {
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
}
