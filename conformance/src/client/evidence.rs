//! A case's evidence: its last HTTP exchanges and its last failed comparison, kept by [`Ctx`]
//! for the report (JSON, JUnit and HTML; see [`crate::report::Evidence`]).

use std::collections::VecDeque;

use serde_json::{json, Value};

use super::{truncate, Ctx};
use crate::report::{Evidence, Exchange, Mismatch, EXCHANGES_KEPT};
use crate::{CaseResult, Verdict};

impl Ctx {
    /// Called before each case: forgets the previous case's evidence.
    pub fn begin_case(&mut self, id: &str) {
        self.case = id.to_owned();
        *self.evidence_mut() = Default::default();
    }

    /// The current case's evidence (its last exchanges, the last failed comparison), taken
    /// away, for its report.
    pub fn take_evidence(&mut self) -> Evidence {
        let (exchanges, mismatch) = std::mem::take(&mut *self.evidence_mut());
        Evidence {
            exchanges: exchanges.into(),
            mismatch,
        }
    }

    pub(super) fn evidence_mut(
        &self,
    ) -> std::sync::MutexGuard<'_, (VecDeque<Exchange>, Option<Mismatch>)> {
        // A poisoned lock only means a case thread panicked; the log itself is still whole.
        self.evidence.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn record_exchange(&self, exchange: Exchange) {
        let mut ev = self.evidence_mut();
        if ev.0.len() == EXCHANGES_KEPT {
            ev.0.pop_front();
        }
        ev.0.push_back(exchange);
    }

    /// The failure of a comparison: `what` was expected to be `expected` and is `actual`. The
    /// pair goes to the case's report (`mismatch`); the verdict's text says the same in a line.
    pub fn mismatch(
        &self,
        what: &str,
        expected: impl std::fmt::Display,
        actual: impl std::fmt::Display,
    ) -> Verdict {
        self.mismatch_with_canonical(what, expected, actual, None)
    }

    fn mismatch_with_canonical(
        &self,
        what: &str,
        expected: impl std::fmt::Display,
        actual: impl std::fmt::Display,
        canonical: Option<String>,
    ) -> Verdict {
        let (expected, actual) = (expected.to_string(), actual.to_string());
        let line = format!(
            "{what}: expected {}, got {}",
            truncate(&expected),
            truncate(&actual)
        );
        self.evidence_mut().1 = Some(Mismatch {
            what: what.to_owned(),
            expected,
            actual,
            canonical,
        });
        Verdict::Fail(line)
    }

    /// `Ok` when `actual == expected`, else a failure carrying both ([`Ctx::mismatch`]).
    pub fn check_eq(&self, what: &str, expected: &Value, actual: &Value) -> CaseResult {
        if expected == actual {
            Ok(())
        } else {
            Err(self.mismatch(what, expected, actual))
        }
    }

    /// `Ok` when the Server's `actual` digest (a JSON string) is the Record digest of
    /// `collection`/`id` holding `value` (`[INT-1]`), else a failure carrying both digests and
    /// the canonical text the expected digest hashes.
    pub fn check_record_digest(
        &self,
        collection: &str,
        id: &str,
        value: &serde_json::Map<String, Value>,
        actual: &Value,
    ) -> CaseResult {
        use driftless_protocol::checksum::{record_digest, to_hex};
        let expected = to_hex(&record_digest(collection, id, value));
        if actual == expected.as_str() {
            return Ok(());
        }
        let canonical = driftless_protocol::canonical::to_canonical_string(
            &json!({"collection": collection, "id": id, "value": value}),
        );
        Err(self.mismatch_with_canonical(
            &format!("digest of {collection}/{id}"),
            json!(expected),
            actual,
            Some(canonical),
        ))
    }

    /// Records a failed comparison for the report without making a verdict (for checks that
    /// keep their own failure text).
    pub(super) fn note_mismatch(
        &self,
        what: &str,
        expected: impl std::fmt::Display,
        actual: impl std::fmt::Display,
    ) {
        self.evidence_mut().1 = Some(Mismatch {
            what: what.to_owned(),
            expected: expected.to_string(),
            actual: actual.to_string(),
            canonical: None,
        });
    }
}
