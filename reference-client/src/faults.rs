//! Planted faults for the client conformance kit's self-check (cargo feature `fault-injection`).
//!
//! Each is a realistic Client mistake that the kit must catch. The adapter turns one on for its
//! whole process (`driftless client adapter --fault NAME`; `--list-faults` prints each name with
//! the requirement IDs it breaks; the self-check counts a fault caught only when a failing case
//! names one of them). Without the feature the `fault!` macro is the constant `false`
//! and none of the faulty code is compiled; the server's faults (reference-server/src/faults.rs)
//! work the same way.

/// Whether a fault is switched on: `fault!(NoJitter)`. Always `false` without the
/// `fault-injection` feature.
#[cfg(feature = "fault-injection")]
macro_rules! fault {
    ($name:ident) => {
        $crate::faults::is_on($crate::faults::Fault::$name)
    };
}

#[cfg(not(feature = "fault-injection"))]
macro_rules! fault {
    ($name:ident) => {
        false
    };
}

pub(crate) use fault;

#[cfg(feature = "fault-injection")]
pub use enabled::*;

#[cfg(feature = "fault-injection")]
mod enabled {
    use std::sync::OnceLock;

    /// One planted mistake.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fault {
        /// A retried push carries new Op IDs.
        NewOpIdOnRetry,
        /// `Retry-After` is ignored; only the backoff draw counts.
        IgnoresRetryAfter,
        /// Every wait is the bound itself: no jitter.
        NoJitter,
        /// A write is kept in memory and reported done; it reaches the store at the next sync.
        AckBeforeDurable,
        /// Priority lanes sort by priority alone, so a later Mutation of a Record can overtake
        /// an earlier one.
        ReordersAcrossLanes,
        /// `mutation-too-old` is re-issued whether or not the Mutation was sent before.
        ReissuesSentTooOld,
        /// Read-modify-write starts from the Fields the Collection Schema declares only.
        DropsUnknownFields,
        /// Mutations sent before are taken as applied, without asking the manifest.
        NeverSendsManifest,
        /// After one dead letter, nothing more is pushed.
        StopsAfterPoison,
        /// The `Driftless-Clock` of responses is not merged into the clock.
        IgnoresServerClock,
        /// The failure count is never reset after a success.
        NoFailureReset,
        /// A never-sent increment is folded into the next increment of the same Field.
        CoalescesIncrements,
        /// A sent `put` or `patch` is dropped when a later write of its Record overwrites it,
        /// as if it had never been sent.
        CoalescesSentWrites,
        /// After `clock-skew` the clock steps back to the Server's clock alone, below the
        /// Client's own applied Stamps.
        StepsBackBelowApplied,
        /// A pulled Record is merged into the Mirror's value instead of replacing it, so Fields
        /// the Server renamed or removed linger in the view.
        KeepsDroppedFields,
        /// A coded request body answered 415 is not sent again uncoded.
        IgnoresUnsupportedCoding,
        /// `mutation-too-old` for a never-sent Mutation is re-issued at once, without pulling
        /// first, even when the Mirror holds its Record: a Record deleted (and its tombstone
        /// compacted) while the write waited is brought back. Breaks `[CLIENT-21]`.
        ReissuesBeforePull,
        /// The deep-write wedge of commit d66cb5a, undone: the announced `json_depth_max` is not
        /// checked (neither when the write is made nor before it is sent), and a push of several
        /// Mutations refused as a whole is not bisected but left for the next sync, so one too
        /// deep write holds back every Mutation batched with it, for ever. Breaks `[CLIENT-5]`,
        /// `[CLIENT-16]`, `[CLIENT-18]`, `[CLIENT-19]`.
        DeepWriteWedge,
        /// An applied Outcome removes the Mutation from the Outbox, but its `acknowledged`
        /// receipt is kept in memory and written at the next `write` or `sync`: a crash before
        /// then leaves a write that is neither in the Outbox nor acknowledged. Breaks
        /// `[CLIENT-2]`, `[CLIENT-13]`.
        DropsOutboxBeforeDurableAck,
    }

    /// Every fault: (name, fault, requirement IDs it breaks).
    pub const ALL: &[(&str, Fault, &str)] = &[
        ("new-op-id-on-retry", Fault::NewOpIdOnRetry, "CLIENT-3,ID-5"),
        ("ignores-retry-after", Fault::IgnoresRetryAfter, "RETRY-2"),
        ("no-jitter", Fault::NoJitter, "RETRY-1"),
        ("ack-before-durable", Fault::AckBeforeDurable, "CLIENT-1"),
        (
            "reorders-across-lanes",
            Fault::ReordersAcrossLanes,
            "CLIENT-6,ORD-4",
        ),
        (
            "reissues-sent-too-old",
            Fault::ReissuesSentTooOld,
            "CLIENT-10",
        ),
        ("drops-unknown-fields", Fault::DropsUnknownFields, "EVO-10"),
        (
            "never-sends-manifest",
            Fault::NeverSendsManifest,
            "CLIENT-2,CLIENT-7",
        ),
        ("stops-after-poison", Fault::StopsAfterPoison, "CLIENT-5"),
        ("ignores-server-clock", Fault::IgnoresServerClock, "HLC-5"),
        ("no-failure-reset", Fault::NoFailureReset, "RETRY-7"),
        (
            "coalesces-increments",
            Fault::CoalescesIncrements,
            "CLIENT-12",
        ),
        (
            "coalesces-sent-writes",
            Fault::CoalescesSentWrites,
            "CLIENT-11",
        ),
        (
            "steps-back-below-applied",
            Fault::StepsBackBelowApplied,
            "HLC-12",
        ),
        (
            "keeps-dropped-fields",
            Fault::KeepsDroppedFields,
            "CLIENT-22,EVO-9",
        ),
        (
            "ignores-unsupported-coding",
            Fault::IgnoresUnsupportedCoding,
            "HTTP-19",
        ),
        (
            "reissues-before-pull",
            Fault::ReissuesBeforePull,
            "CLIENT-21",
        ),
        (
            "deep-write-wedge",
            Fault::DeepWriteWedge,
            "CLIENT-5,CLIENT-16,CLIENT-18,CLIENT-19",
        ),
        (
            "drops-outbox-before-durable-ack",
            Fault::DropsOutboxBeforeDurableAck,
            "CLIENT-2,CLIENT-13",
        ),
    ];

    static ON: OnceLock<Fault> = OnceLock::new();

    /// Switches on the fault named `name` for this process. Errors on an unknown name or a
    /// second call.
    pub fn switch_on(name: &str) -> Result<(), String> {
        let (_, f, _) = ALL
            .iter()
            .find(|(n, _, _)| *n == name)
            .ok_or_else(|| format!("no client fault named {name:?}"))?;
        ON.set(*f)
            .map_err(|_| "a client fault is already on".to_owned())
    }

    /// Whether `f` is on.
    pub fn is_on(f: Fault) -> bool {
        ON.get() == Some(&f)
    }
}
