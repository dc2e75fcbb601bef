//! Reporting: how the walk words and records a finding (each once, per direction).

use super::*;

/// What a finding says: rule names per direction, exactness, where, why, and a value that
/// shows it at the instance path (tried first as counterexample).
pub(super) struct Say {
    pub(super) rules: (&'static str, &'static str),
    pub(super) exact: bool,
    pub(super) wide: String,
    pub(super) narrow: String,
    pub(super) instance: String,
    pub(super) message: String,
    pub(super) hint: Option<Value>,
}

impl Walk<'_> {
    pub(super) fn push(&mut self, say: Say) {
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
    pub(super) fn undecided(&mut self, wide: String, narrow: String, instance: &str, why: String) {
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
    pub(super) fn old_new(&self, wide: &str, narrow: &str) -> String {
        match self.direction {
            Direction::Backward => format!("old {wide}; new {narrow}"),
            Direction::Forward => format!("old {narrow}; new {wide}"),
        }
    }
}
