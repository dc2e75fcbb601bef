//! Numbers as sets: intervals with exclusive bounds, integer-ness and `multipleOf`, bounds
//! snapped to the `multipleOf` grid, small integer ranges listed value by value.
//!
//! One `impl Walk` block of the inclusion walk in [`super`].

use super::*;

impl<'r> Walk<'r> {
    pub(super) fn compare_numbers(
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
}
