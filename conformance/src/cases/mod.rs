//! The cases and their registry. Each case is named `area.behaviour`, cites the requirement IDs
//! it checks, and runs in a fresh Space; invalid-input cases are named after the fault they send.
//!
//! One module per spec chapter holds the cases whose first requirement ID that chapter defines, so
//! `[PUSH-4]` in `spec/04-push-and-idempotency.md` leads to `push.rs`: 01 `foundations`,
//! 02 `clocks`, 03 `merge`, 04 `push`, 05 `pull`, 06 `integrity`, 07 `errors`, 09 `auth`,
//! 10 `schemas`, 11 `limits`. Chapter 08 binds Clients, not the Server (the reference client's
//! tests check it), and the Server MUSTs of chapter 12 are in [`NOT_CHECKABLE`]. What the case
//! modules share lives in `support`; no case module imports another. `perf` holds the cases of
//! the features that make sync cheap (issue 15), apart so that they grow without touching the
//! chapter modules.

mod auth;
mod clocks;
mod errors;
mod foundations;
mod integrity;
mod limits;
mod merge;
mod perf;
mod pull;
mod push;
mod schemas;
mod support;

use crate::Case;

/// Every case, in suite order: the chapters in spec order, each chapter's cases in its own order.
pub fn all() -> Vec<Case> {
    [
        foundations::cases(),
        clocks::cases(),
        merge::cases(),
        push::cases(),
        pull::cases(),
        perf::cases(),
        integrity::cases(),
        errors::cases(),
        auth::cases(),
        schemas::cases(),
        limits::cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Server-side MUSTs that a black-box suite cannot check, and why. The reference server covers
/// each in its own tests; a test keeps this list and the cases in step with the spec.
pub const NOT_CHECKABLE: &[(&str, &str)] = &[
    ("IDEM-1", "atomicity of outcome and write shows only under crashes; covered by the reference server's SIGKILL test"),
    ("IDEM-6", "needs days of retention and a server restart"),
    ("AUDIT-4", "needs days of retention"),
    ("AUTH-9", "a server that trusted client_id is indistinguishable over HTTP unless it also broke AUTH-4/AUTH-5, which are checked"),
    ("LIM-3", "memory use is not observable over HTTP; the 413 itself is checked (LIM-2)"),
    ("RET-4", "tombstones newer than the horizon cannot be produced on demand: the trigger uses the server's own clock"),
    ("SEC-1", "server logs are not observable over HTTP"),
    ("SEC-3", "timing side channels are not measurable reliably over a network"),
    ("SEC-4", "where the secret is stored is not observable over HTTP"),
    ("PRIV-1", "what the server keeps on disk is not observable over HTTP"),
];
