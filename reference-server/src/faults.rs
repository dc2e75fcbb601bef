//! Deliberate bugs for the conformance suite's self-check (cargo feature `fault-injection`).
//!
//! `driftless serve --fault NAME` turns one on; `driftless serve --list-faults` prints each name
//! with the requirement IDs it breaks. Without the feature, [`Faults`] is empty, the `fault!`
//! macro is the constant `false`, and none of the faulty code is compiled.

/// Whether a fault is switched on: `fault!(faults, NoDedup)`. Always `false` without the
/// `fault-injection` feature.
#[cfg(feature = "fault-injection")]
macro_rules! fault {
    ($faults:expr, $name:ident) => {
        $faults.has($crate::faults::Fault::$name)
    };
}

#[cfg(not(feature = "fault-injection"))]
macro_rules! fault {
    ($faults:expr, $name:ident) => {{
        let _ = &$faults;
        false
    }};
}

pub(crate) use fault;

/// The faults switched on for this server (none without the feature).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    #[cfg(feature = "fault-injection")]
    on: Vec<Fault>,
}

#[cfg(feature = "fault-injection")]
pub use enabled::*;

#[cfg(feature = "fault-injection")]
mod enabled {
    use super::Faults;
    use driftless_protocol::merge::RecordState;

    /// One deliberate bug. Each breaks the listed requirements in a way a black-box suite can see.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fault {
        /// Replays are applied again instead of answered from the stored Outcome.
        NoDedup,
        /// The push response is sent before the write commits; the write lands once the next
        /// request's answer is computed, so that answer cannot see it.
        AckBeforeDurable,
        /// Merging lets a late-arriving older write overwrite newer ones.
        WrongTieBreak,
        /// The last Record of a full pull page is dropped while the Cursor moves past it.
        PageBoundarySkip,
        /// Record digests are computed with one bit flipped.
        WrongChecksum,
        /// The checksums endpoint ignores the Token's Grants.
        AuthIgnoredOnChecksums,
        /// Fields a Collection Schema does not declare are dropped from written values.
        UnknownFieldsDropped,
        /// The manifest reports rejected Op IDs as unknown.
        ManifestForgetsRejections,
        /// Rejected Outcomes are not stored, so a replay is judged again.
        RejectionNotAcknowledged,
        /// A replayed increment is applied again (the duplicate answer is still sent).
        IncrementTwiceOnReplay,
        /// A known Op ID with a different body is answered as a duplicate.
        MismatchAccepted,
        /// Replays are compared by their bytes, not their canonical JSON, so a Client that
        /// serializes the same Mutation differently gets `op-id-reused`.
        DedupByBytes,
        /// Cursors older than the compaction point keep working.
        NoCursorExpiry,
        /// Mutations stamped far in the future are accepted.
        SkewUnchecked,
        /// The dedup record of an Op ID is not written in its write's transaction but in one of
        /// its own after the answer (it lands once the next request's answer is computed), so a
        /// replay that comes first, or any replay after a restart in between, is applied again.
        /// Breaks `[IDEM-1]`, `[IDEM-2]`, `[IDEM-3]`.
        DedupNotAtomic,
        /// Every Mutation is rejected, valid or not: a Server that never changes a Space.
        RejectEverything,
        /// A Mutation to a Record that already exists is rejected: the first write of each
        /// Record wins, whatever the stamps say.
        FirstWriterWins,
        /// Every Record's value is blanked to `{}`; its digest is computed from the blank value,
        /// so a model built from what the Server returns agrees with it.
        BlankValues,
        /// A pull with `wait_ms` is answered at once, never held.
        NeverHoldPull,
        /// `unsupported-version` Problems list no supported version.
        NoSupportedVersions,
        /// The checksums endpoint answers `500 internal`.
        ChecksumsUnavailable,
    }

    /// Every fault: name, the requirements it breaks, and the fault.
    pub const ALL: &[(&str, &str, Fault)] = &[
        ("no-dedup", "IDEM-2 IDEM-3", Fault::NoDedup),
        (
            "ack-before-durable",
            "PUSH-2 PULL-12",
            Fault::AckBeforeDurable,
        ),
        (
            "wrong-lww-tiebreak",
            "MERGE-1 MERGE-2",
            Fault::WrongTieBreak,
        ),
        (
            "pull-page-boundary-skip",
            "PULL-2 PULL-6",
            Fault::PageBoundarySkip,
        ),
        (
            "wrong-checksum",
            "INT-4 INT-5 PULL-18",
            Fault::WrongChecksum,
        ),
        (
            "auth-ignored-on-checksums",
            "AUTH-4 AUTH-5",
            Fault::AuthIgnoredOnChecksums,
        ),
        (
            "unknown-fields-dropped",
            "EVO-10 MERGE-9",
            Fault::UnknownFieldsDropped,
        ),
        (
            "manifest-forgets-rejections",
            "MAN-2",
            Fault::ManifestForgetsRejections,
        ),
        (
            "rejection-not-acknowledged",
            "PUSH-3 IDEM-2",
            Fault::RejectionNotAcknowledged,
        ),
        (
            "increment-twice-on-replay",
            "IDEM-3 MERGE-1",
            Fault::IncrementTwiceOnReplay,
        ),
        ("op-id-mismatch-accepted", "IDEM-4", Fault::MismatchAccepted),
        ("dedup-by-bytes", "IDEM-5", Fault::DedupByBytes),
        (
            "dedup-not-atomic",
            "IDEM-1 IDEM-2 IDEM-3",
            Fault::DedupNotAtomic,
        ),
        ("no-cursor-expiry", "PULL-14 RET-7", Fault::NoCursorExpiry),
        ("clock-skew-unchecked", "HLC-8", Fault::SkewUnchecked),
        (
            "reject-everything",
            "MERGE-2 PUSH-3",
            Fault::RejectEverything,
        ),
        (
            "first-writer-wins",
            "MERGE-1 MERGE-2",
            Fault::FirstWriterWins,
        ),
        ("blank-values", "MERGE-2", Fault::BlankValues),
        ("never-hold-pull", "PULL-8", Fault::NeverHoldPull),
        ("no-supported-versions", "VER-3", Fault::NoSupportedVersions),
        (
            "checksums-unavailable",
            "INT-7",
            Fault::ChecksumsUnavailable,
        ),
    ];

    impl Faults {
        /// The faults with these names; an unknown name is an error naming it.
        pub fn parse(names: &[String]) -> Result<Self, String> {
            let mut on = Vec::new();
            for name in names {
                let fault = ALL
                    .iter()
                    .find(|(n, _, _)| n == name)
                    .map(|(_, _, f)| *f)
                    .ok_or_else(|| format!("unknown fault {name:?}; see --list-faults"))?;
                on.push(fault);
            }
            Ok(Self { on })
        }

        /// Whether `fault` is on.
        pub fn has(&self, fault: Fault) -> bool {
            self.on.contains(&fault)
        }
    }

    /// The merge of [`Fault::WrongTieBreak`]: the arriving state replaces what it touches.
    pub fn merge_with_wrong_tiebreak(mut record: RecordState, delta: RecordState) -> RecordState {
        for (name, fs) in delta.fields {
            record.fields.insert(name, fs);
        }
        record.deleted = delta.deleted.or(record.deleted);
        record.last_write = delta.last_write.or(record.last_write);
        record.puts.extend(delta.puts);
        record
    }
}
