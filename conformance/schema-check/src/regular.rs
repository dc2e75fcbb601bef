//! Regular-language questions about JSON Schema `pattern`s (spec chapter 10, Compatibility):
//! whether every string one set of patterns accepts is accepted by another pattern
//! ([`includes`]), whether two patterns share a string ([`intersects`]), and whether a name
//! matches a pattern ([`matches`]).
//!
//! A `pattern` is an unanchored ECMA-262 regular expression. Where it is in the regular subset
//! (no backreference, no lookaround), it becomes a `regex-automata` DFA that accepts exactly the
//! strings containing a match, and inclusion is decided by walking the product of the DFAs
//! breadth first: a reachable state where every left DFA accepts and the right one does not
//! gives the shortest string that shows the difference. Outside the regular subset, or past
//! [`PRODUCT_STATES_MAX`] product states, the answer is `None` (not decided).

use std::collections::{HashMap, VecDeque};

use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::util::primitives::StateID;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind};

/// Product states explored before a question is given up as not decided.
pub(crate) const PRODUCT_STATES_MAX: usize = 50_000;

/// The bytes a DFA may take per pattern (each DFA, and its determinisation).
const DFA_BYTES_MAX: usize = 4 << 20;

type Dfa = dense::DFA<Vec<u32>>;

/// `\d`, `\w`, `\s` and their negations as the ASCII classes ECMA-262 means by them.
pub(crate) fn ascii_classes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str("[0-9]"),
            Some('D') => out.push_str("[^0-9]"),
            Some('w') => out.push_str("[A-Za-z0-9_]"),
            Some('W') => out.push_str("[^A-Za-z0-9_]"),
            Some('s') => out.push_str("[ \\t\\n\\r\\x0B\\x0C]"),
            Some('S') => out.push_str("[^ \\t\\n\\r\\x0B\\x0C]"),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// A DFA accepting exactly the strings in which `pattern` finds a match; `None` outside the
/// regular subset or past the size bound.
fn dfa(pattern: Option<&str>) -> Option<Dfa> {
    let body = match pattern {
        Some(p) => format!("(?s:.)*(?:{})(?s:.)*", ascii_classes(p)),
        None => "(?s:.)*".to_owned(),
    };
    dense::Builder::new()
        .configure(
            dense::Config::new()
                .match_kind(MatchKind::All)
                .start_kind(StartKind::Anchored)
                .dfa_size_limit(Some(DFA_BYTES_MAX))
                .determinize_size_limit(Some(DFA_BYTES_MAX)),
        )
        .syntax(syntax::Config::new().unicode(true).utf8(true))
        .build(&body)
        .ok()
}

/// Breadth-first search of the product of `dfas` for a state where `goal` holds of the
/// per-DFA "accepts here" flags; the bytes leading there, `Some(None)` if none is reachable,
/// `None` past the bound. `alive` says which DFAs must stay out of their dead state.
fn search(dfas: &[Dfa], alive: &[bool], goal: impl Fn(&[bool]) -> bool) -> Option<Option<Vec<u8>>> {
    let start: Vec<StateID> = dfas
        .iter()
        .map(|d| d.start_state_forward(&Input::new("").anchored(Anchored::Yes)))
        .collect::<Result<_, _>>()
        .ok()?;
    let mut parent: HashMap<Vec<StateID>, Option<(Vec<StateID>, u8)>> = HashMap::new();
    parent.insert(start.clone(), None);
    let mut queue = VecDeque::from([start]);
    while let Some(state) = queue.pop_front() {
        let accepts: Vec<bool> = dfas
            .iter()
            .zip(&state)
            .map(|(d, s)| d.is_match_state(d.next_eoi_state(*s)))
            .collect();
        if goal(&accepts) {
            let mut bytes = Vec::new();
            let mut at = state;
            while let Some(Some((prev, b))) = parent.get(&at) {
                bytes.push(*b);
                at = prev.clone();
            }
            bytes.reverse();
            return Some(Some(bytes));
        }
        for b in 0..=255u8 {
            let next: Vec<StateID> = dfas
                .iter()
                .zip(&state)
                .map(|(d, s)| d.next_state(*s, b))
                .collect();
            let dead = dfas
                .iter()
                .zip(&next)
                .zip(alive)
                .any(|((d, s), must)| *must && (d.is_dead_state(*s) || d.is_quit_state(*s)));
            if dead || parent.contains_key(&next) {
                continue;
            }
            if parent.len() >= PRODUCT_STATES_MAX {
                return None;
            }
            parent.insert(next.clone(), Some((state.clone(), b)));
            queue.push_back(next);
        }
    }
    Some(None)
}

/// Whether every string matching all of `wide` matches `narrow`: `Some(Ok(()))` if so,
/// `Some(Err(s))` with the shortest string `s` that shows it is not, `None` if not decided.
pub(crate) fn includes(wide: &[&str], narrow: &str) -> Option<Result<(), String>> {
    // The unrestricted string language keeps the left side to valid UTF-8.
    let mut dfas = vec![dfa(None)?];
    for p in wide {
        dfas.push(dfa(Some(p))?);
    }
    dfas.push(dfa(Some(narrow))?);
    let k = dfas.len();
    let alive: Vec<bool> = (0..k).map(|i| i + 1 < k).collect();
    let found = search(&dfas, &alive, |acc| {
        acc[..k - 1].iter().all(|a| *a) && !acc[k - 1]
    })?;
    match found {
        None => Some(Ok(())),
        Some(bytes) => String::from_utf8(bytes).ok().map(Err),
    }
}

/// Whether some string matches both patterns; `None` if not decided.
pub(crate) fn intersects(a: &str, b: &str) -> Option<bool> {
    let dfas = [dfa(Some(a))?, dfa(Some(b))?];
    search(&dfas, &[true, true], |acc| acc.iter().all(|x| *x)).map(|f| f.is_some())
}

/// Whether `pattern` finds a match in `s`; `None` outside the regular subset.
pub(crate) fn matches(pattern: &str, s: &str) -> Option<bool> {
    regex_automata::meta::Regex::new(&ascii_classes(pattern))
        .ok()
        .map(|r| r.is_match(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchoring_a_pattern_narrows_it() {
        assert_eq!(includes(&["^abc$"], "abc"), Some(Ok(())));
        let Some(Err(w)) = includes(&["abc"], "^abc$") else {
            panic!("not shown")
        };
        assert!(w.contains("abc") && w != "abc", "{w:?}");
    }

    #[test]
    fn class_inclusion_is_decided() {
        assert_eq!(includes(&["^[a-c]+$"], "^[a-z]+$"), Some(Ok(())));
        assert!(matches!(includes(&["^[a-z]+$"], "^[a-c]+$"), Some(Err(_))));
        assert_eq!(includes(&[], "^.*$"), Some(Err("\n".into())));
        assert_eq!(includes(&["^\\d{4}$", "^1"], "^[0-9]+$"), Some(Ok(())));
    }

    #[test]
    fn backreferences_are_not_decided() {
        assert_eq!(includes(&["(a)\\1"], "a"), None);
        assert_eq!(intersects("^a", "(?=b)"), None);
    }

    #[test]
    fn intersection_and_matching() {
        assert_eq!(intersects("^a", "b$"), Some(true));
        assert_eq!(intersects("^a$", "^b$"), Some(false));
        assert_eq!(matches("^x-", "x-y"), Some(true));
    }
}
