//! The client cases, one or more per Client duty, named `client.<area>.<behaviour>`, and the
//! Client MUSTs the kit cannot check from outside, with the reason.

use std::time::Duration;

use serde_json::{json, Value};

use super::layer::{on, Action, Exchange, Response};
use super::{ensure, CaseResult, ClientCase, Kit};
use crate::{Level, Verdict};

mod coalesce;
mod compat;
mod evolution;
mod hlc;
mod limits;
mod order;
mod outbox;
mod pull;
mod retry;
mod view;

use coalesce::*;
use compat::*;
use evolution::*;
use hlc::*;
use limits::*;
use order::*;
use outbox::*;
use pull::*;
use retry::*;
use view::*;

macro_rules! case {
    ($id:literal, [$($r:literal),*], $level:ident, $desc:literal, $run:expr) => {
        ClientCase { id: $id, requirements: &[$($r),*], level: Level::$level, description: $desc, run: $run }
    };
}

/// Every client case, in kit order.
pub fn all() -> Vec<ClientCase> {
    vec![
        case!("client.outbox.durable-across-sigkill", ["CLIENT-1", "CLIENT-2", "HLC-10", "ID-2"], Must,
            "writes the adapter reported done survive SIGKILL and restart, and are all sent", durable_across_sigkill),
        case!("client.outbox.acknowledgement-survives-sigkill", ["CLIENT-2", "CLIENT-13"], Must,
            "a write acknowledged by a sync, then SIGKILL: the restarted Client still has it in the Outbox or acknowledged", acknowledgement_survives_sigkill),
        case!("client.outbox.unknown-fate-kept-across-restart", ["CLIENT-2", "CLIENT-7", "MAN-5"], Must,
            "a push cut off unforwarded, then SIGKILL: the restarted Client still delivers the write", unknown_fate_kept),
        case!("client.retry.same-op-id-and-body", ["CLIENT-3", "ID-5", "RETRY-3", "MUT-2", "PUSH-8"], Must,
            "after a lost acknowledgement the Mutation is retried with the same Op ID and body, and applied once", same_op_id_and_body),
        case!("client.retry.retry-after-floor", ["RETRY-2", "RETRY-3", "ERR-7"], Must,
            "after 503 (a Problem type the Client cannot know) with Retry-After: 1 the next request waits at least one second", retry_after_floor),
        case!("client.retry.rate-limited-like-unavailable", ["RETRY-2", "RETRY-3", "CLIENT-3", "LIM-5"], Must,
            "after 429 rate-limited with Retry-After: 1 the push is resent with the same Op ID and body, no sooner than a second later", rate_limited_like_unavailable),
        case!("client.retry.slow-answer-unknown-fate", ["CLIENT-3", "RETRY-3", "CLIENT-7", "ID-5"], Must,
            "a push answered after the Client's timeout is of unknown fate: resent with the same Op ID and body or asked of the manifest, applied once", slow_answer_unknown_fate),
        case!("client.retry.full-jitter", ["RETRY-1"], Must,
            "delays between failed attempts stay within the announced bound and are spread, not constant", full_jitter),
        case!("client.retry.failure-count-reset", ["RETRY-7", "RETRY-1"], Must,
            "after a success the next failures wait by the first bounds of the policy again", failure_count_reset),
        case!("client.retry.not-retryable-not-resent", ["RETRY-4", "CLIENT-19"], Must,
            "a push refused as payload-too-large is never resent unchanged", not_retryable_not_resent),
        case!("client.order.per-record-across-lanes", ["CLIENT-6", "ORD-4"], Must,
            "one Record's Mutations are sent in creation order whatever their priority lanes", per_record_order),
        case!("client.dead-letter.poison-never-blocks", ["CLIENT-4", "CLIENT-5"], Must,
            "a rejected Mutation is dead-lettered with its Problem and later writes still sync", poison_never_blocks),
        case!("client.too-old.no-reissue-after-sent", ["CLIENT-10", "CLIENT-14", "ERR-6"], Must,
            "a Mutation sent before and then refused as mutation-too-old is dead-lettered, never re-issued", no_reissue_after_sent),
        case!("client.too-old.deleted-record-stays-deleted", ["CLIENT-21"], Must,
            "a never-sent edit refused as too old for a Record deleted meanwhile is dead-lettered; the delete stands", deleted_record_stays_deleted),
        case!("client.hlc.stamps", ["HLC-11", "ID-3", "ID-4"], Must,
            "HLCs increase with seq, their node is the Client ID, seq counts from 1 by one, Op IDs are unique", hlc_stamps),
        case!("client.hlc.merges-server-clock", ["HLC-5"], Must,
            "after a response whose Driftless-Clock is ahead, the next Mutation's HLC is greater", merges_server_clock),
        case!("client.coalesce.never-merges-increments", ["CLIENT-12"], Must,
            "increments and set additions are each sent, none combined or dropped", never_merges_increments),
        case!("client.coalesce.only-never-sent-puts-and-patches", ["CLIENT-11", "CLIENT-12", "CLIENT-2"], Must,
            "only never-sent puts and patches wholly overwritten by a later write are dropped; a sent one is resent or asked for, and the Server ends as if all were applied", coalesce_only_as_allowed),
        case!("client.hlc.step-back-bounded-by-applied", ["HLC-12", "HLC-11", "HLC-9"], Must,
            "after clock-skew with a Driftless-Clock far below the Client's applied Stamps, the re-issued HLC is above every HLC the Client had applied", step_back_bounded_by_applied),
        case!("client.view.pending-rebased-and-equal-when-drained", ["CLIENT-8", "CLIENT-22", "MERGE-3"], Must,
            "a pending write shows over another Client's change, and the view equals the Server once drained", view_rebase),
        case!("client.view.acknowledged-stays-until-pulled", ["CLIENT-23"], Should,
            "a write acknowledged before a failed pull stays in the view", acknowledged_stays),
        case!("client.compat.unknown-members-ignored", ["HTTP-10", "DISC-5"], Must,
            "unknown members in every answer and an unknown feature name change nothing", unknown_members_ignored),
        case!("client.compat.uncoded-after-415", ["HTTP-19"], Must,
            "a gzip-coded push answered 415 unsupported-media-type is sent again without the coding", uncoded_after_415),
        case!("client.pull.resync-after-cursor-expired", ["PULL-15", "PULL-1", "CLIENT-2"], Must,
            "after cursor-expired the Client pulls from no Cursor, drops what the Mirror held, keeps its writes", resync_after_cursor_expired),
        case!("client.limits.pushes-within-announced-limits", ["LIM-7", "CLIENT-17"], Must,
            "with mutations_per_push_max 2 announced, no push carries more than 2 Mutations", pushes_within_limits),
        case!("client.limits.too-deep-write-never-sent", ["CLIENT-18", "CLIENT-5"], Must,
            "a write nesting deeper than the announced json_depth_max is dead-lettered unsent; the writes made with it still sync", too_deep_write_never_sent),
        case!("client.version.v1-paths", ["VER-1"], Must,
            "every request goes to the discovery document or under the /v1/ prefix", v1_paths),
        case!("client.evolution.schema-version-set", ["EVO-1"], Must,
            "Mutations of a Collection whose Collection Schema the Client knows carry its version", schema_version_set),
        case!("client.evolution.old-version-writes-upcast", ["EVO-1", "EVO-4", "EVO-9", "CLIENT-22"], Must,
            "a Client that knows version 1 writes under it after version 2 (a rename) is registered; its writes are upcast and its view ends equal to the Server's", old_version_writes_upcast),
        case!("client.evolution.unknown-fields-kept", ["EVO-10"], Must,
            "a read-modify-write keeps a Field the Client does not know", unknown_fields_kept),
    ]
}

/// Client MUSTs the kit cannot check through an adapter, and why.
pub const NOT_CHECKABLE: &[(&str, &str)] = &[
    ("ORD-3", "a Client relying on arrival order is a design property, not visible in its traffic"),
    ("INT-9", "the adapter protocol has no audit operation; the reference client's tests check it"),
    ("PRIV-4", "the adapter protocol has no sign-out operation; what a Client deletes on sign-out is an application flow"),
    ("VER-5", "needs a Server announcing a lower minor version than the Client knows; the reference Server knows only 1.0"),
    ("CLIENT-20", "needs a Server that answers before reading a large body; covered by the reference client's tests"),
];

pub(super) fn ops(pushes: &[Exchange]) -> Vec<Value> {
    pushes
        .iter()
        .flat_map(|p| p.body["mutations"].as_array().cloned().unwrap_or_default())
        .collect()
}

pub(super) fn problem(status: u16, code: &str, detail: &str) -> Value {
    json!({"type": format!("urn:driftless:problem:{code}"), "title": code, "status": status, "detail": detail})
}

/// The Mutations of `pushes` for one Record.
pub(super) fn ops_of(pushes: &[Exchange], record: &str) -> Vec<Value> {
    ops(pushes)
        .into_iter()
        .filter(|m| m["record_id"] == record)
        .collect()
}

/// Every Mutation sent under `op`'s Op ID carries the same body; `Err` names the first that
/// does not.
pub(super) fn same_body_per_op_id(sent: &[Value]) -> CaseResult {
    for m in sent {
        let first = sent.iter().find(|f| f["op_id"] == m["op_id"]);
        ensure(first == Some(m), || {
            format!(
                "[CLIENT-3] Op ID {} was sent with two bodies: {} and {m}",
                m["op_id"],
                first.cloned().unwrap_or_default()
            )
        })?;
    }
    Ok(())
}
