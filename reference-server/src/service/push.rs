//! Push, spec chapter 04: `POST /v1/spaces/{space}/push` takes a batch of Mutations from one
//! Client and answers one result per Mutation, each durable before the answer (`[PUSH-1]` to
//! `[PUSH-14]`).
//!
//! The steps, in order: the envelope is checked (`[PUSH-6]`, `[PUSH-7]`); each Mutation's Op ID
//! is looked up first, so a replay gets its stored Outcome (`[IDEM-1]` to `[IDEM-8]`); a new
//! Mutation is judged by every per-Mutation check (`[MUT-1]`, `[RET-2]`, `[RET-3]`, `[HLC-8]`,
//! `[EVO-2]` to `[EVO-7]`) and, if it passes, merged into its Record (`[MERGE-1]`, `[HLC-6]`);
//! its Outcome and history entry are stored in the same transaction (`[PUSH-3]`, `[AUDIT-1]`,
//! `[AUDIT-2]`, `[AUDIT-5]`). It also holds the `AckBeforeDurable` fault path of the
//! conformance self-check.
//!
//! Over 600 lines, kept whole because it is one cohesive thing: the path of one push batch from
//! request bytes to durable Outcomes, whose steps share the batch's transaction and [`BatchCtx`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use driftless_protocol::canonical::{
    first_duplicate_member, first_inexact_number, to_canonical_string,
};
use driftless_protocol::checksum::{self, to_hex};
use driftless_protocol::collection_schema::SchemaHistory;
use driftless_protocol::ids::{ClientId, OpId};
use driftless_protocol::merge::{check_effect, RecordState, Stamp};
use driftless_protocol::messages::{
    Applied, Duplicate, Effect, HistoryEntry, HistoryStatus, Mutation, MutationResult, Outcome,
    PushResponse, Rejected,
};
use driftless_protocol::problem::{Problem, ProblemType};
use serde::Deserialize;
use serde_json::Value;

use super::schemas::conforms;
#[cfg(feature = "fault-injection")]
use super::schemas::drop_undeclared;
use super::{
    internal, invalid_request, parse_json, schema_errors, view_of, Answer, Caller, Service,
};
use crate::faults::fault;
use crate::storage::{SpaceRead, SpaceWrite, Storage, StorageError, StoredOp, StoredRecord};

mod parse;

use parse::*;

/// The detail of a Mutation refused under `[PUSH-14]` (it names no member: `[SEC-1]`).
const DUPLICATE_MEMBER: &str = "an object in the mutation holds the same member name twice; \
     which one a receiver keeps is not defined (I-JSON, RFC 7493), so neither is ([PUSH-14])";

/// The detail of a Mutation refused under `[PUSH-12]` (it names no value: `[SEC-1]`).
const INEXACT_NUMBER: &str = "the mutation holds a number that an IEEE 754 double cannot hold \
     exactly (beyond its range, or more digits than it keeps); send such values as strings \
     ([PUSH-12])";

/// What a push batch reads once: within one write transaction neither the Collection Schemas
/// nor the Horizon can change.
struct BatchCtx {
    meta: crate::storage::SpaceMeta,
    schemas: HashMap<String, Arc<SchemaHistory>>,
    /// Stored Outcomes of the batch's Op IDs: read in one go, then kept up to date as the batch
    /// stores new ones (an Op ID may come twice in one batch).
    known: HashMap<String, StoredOp>,
}

impl BatchCtx {
    fn load(tx: &dyn SpaceRead, items: &[(OpId, String)]) -> Result<Self, StorageError> {
        let ids: Vec<&str> = items.iter().map(|(op_id, _)| op_id.as_str()).collect();
        Ok(Self {
            meta: tx.meta()?,
            schemas: HashMap::new(),
            known: tx.ops(&ids)?,
        })
    }

    fn schemas(
        &mut self,
        tx: &dyn SpaceRead,
        collection: &str,
    ) -> Result<Arc<SchemaHistory>, StorageError> {
        if let Some(h) = self.schemas.get(collection) {
            return Ok(h.clone());
        }
        let history = Arc::new(
            SchemaHistory::new(tx.schemas(collection)?)
                .map_err(|e| StorageError::Corrupt(e.to_string()))?,
        );
        self.schemas.insert(collection.to_owned(), history.clone());
        Ok(history)
    }
}

/// A write a planted fault answered before making it; it lands once the next request's answer
/// is computed, and a Server restart before then loses it.
#[cfg(feature = "fault-injection")]
#[derive(Debug)]
pub(crate) enum DelayedWrite {
    /// A push [`crate::faults::Fault::AckBeforeDurable`] acknowledged and has not written yet.
    Push {
        space: String,
        user: String,
        client_id: ClientId,
        items: Vec<(OpId, String)>,
    },
    /// The dedup record of an Op ID that [`crate::faults::Fault::DedupNotAtomic`] left out of
    /// its write's transaction.
    Op {
        space: String,
        op_id: String,
        stored: StoredOp,
        hlc_ms: u64,
    },
}

/// Writes taken by [`Service::take_delayed_writes`], to land after an answer.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Default)]
pub struct DelayedWrites(Vec<DelayedWrite>);

/// What one push Mutation turned into.
struct Decided {
    result: MutationResult,
    applied: bool,
}

impl<S: Storage> Service<S> {
    /// `POST /v1/spaces/{space}/push`, with the body already parsed as JSON.
    pub async fn push(
        self: &Arc<Self>,
        space: &str,
        caller: &Caller,
        body: &[u8],
    ) -> Answer<PushResponse> {
        let (client_id, items) = self.parse_push(body)?;
        // Op IDs identify Mutations in logs; values never appear there (`[SEC-1]`).
        let op_ids: Vec<&str> = items.iter().map(|(op, _)| op.as_str()).collect();
        tracing::info!(client_id = %client_id, op_ids = %op_ids.join(","), "push");
        let space_owned = space.to_owned();
        let user = caller.user.clone();
        #[cfg(feature = "fault-injection")]
        if fault!(self.faults, AckBeforeDurable) {
            return self
                .push_acked_before_durable(space, user, client_id, items)
                .await;
        }
        let client = client_id.as_str().to_owned();
        let results = self
            .blocking(move |me| {
                me.push_batch(&space_owned, &user, &client_id, &items)
                    .map_err(internal)
            })
            .await?;
        // The dashboard's hook: results, Op IDs and Problem types only, never values.
        self.stats.note_push(
            space,
            &caller.user,
            &client,
            results.iter().map(|d| &d.result),
            self.clock.now_ms(),
        );
        let mut any_applied = false;
        for d in &results {
            any_applied |= d.applied;
            self.metrics.count_result(&d.result);
        }
        if any_applied {
            self.notifier(space).notify_waiters();
        }
        Ok(PushResponse {
            server_clock: self.clock.issue(),
            results: results.into_iter().map(|d| d.result).collect(),
        })
    }

    /// Applies a batch in one durable transaction (`[PUSH-2]`, `[PUSH-10]`).
    fn push_batch(
        &self,
        space: &str,
        user: &str,
        client_id: &ClientId,
        items: &[(OpId, String)],
    ) -> Result<Vec<Decided>, StorageError> {
        let now_ms = self.clock.now_ms();
        self.storage.write(space, |tx| {
            let mut out = Vec::with_capacity(items.len());
            let mut ctx = BatchCtx::load(tx, items)?;
            for (op_id, raw) in items {
                out.push(self.push_one(tx, &mut ctx, space, user, client_id, op_id, raw, now_ms)?);
            }
            // An all-duplicate batch writes nothing, so its commit needs no fsync.
            if out
                .iter()
                .any(|d: &Decided| d.applied || matches!(d.result, MutationResult::Rejected(_)))
            {
                tx.save_clock(&self.clock.last())?;
            }
            Ok(out)
        })
    }

    /// The push of [`crate::faults::Fault::AckBeforeDurable`]: the results of a rolled-back dry
    /// run are sent at once, and the real write waits for the next request: it lands after that
    /// request's answer is computed (see [`Self::take_delayed_writes`]), so a pull right after
    /// the acknowledgement misses it, whatever the timing.
    #[cfg(feature = "fault-injection")]
    async fn push_acked_before_durable(
        self: &Arc<Self>,
        space: &str,
        user: String,
        client_id: ClientId,
        items: Vec<(OpId, String)>,
    ) -> Answer<PushResponse> {
        let (space_dry, user_dry, client_dry, items_dry) = (
            space.to_owned(),
            user.clone(),
            client_id.clone(),
            items.clone(),
        );
        let dry = self
            .blocking(move |me| {
                let mut kept = None;
                let now_ms = me.clock.now_ms();
                let _ = me.storage.write(&space_dry, |tx| {
                    let mut out = Vec::new();
                    let mut ctx = BatchCtx::load(tx, &items_dry)?;
                    for (op_id, raw) in &items_dry {
                        out.push(
                            me.push_one(
                                tx,
                                &mut ctx,
                                &space_dry,
                                &user_dry,
                                &client_dry,
                                op_id,
                                raw,
                                now_ms,
                            )?
                            .result,
                        );
                    }
                    kept = Some(out);
                    Err::<(), _>(StorageError::Backend("dry run".into()))
                });
                kept.ok_or_else(|| Problem::new(ProblemType::Internal, "dry run failed"))
            })
            .await?;
        self.delayed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(DelayedWrite::Push {
                space: space.to_owned(),
                user,
                client_id,
                items,
            });
        Ok(PushResponse {
            server_clock: self.clock.issue(),
            results: dry,
        })
    }

    /// The writes [`crate::faults::Fault::AckBeforeDurable`] acknowledged before this call.
    /// The HTTP edge takes them when a request arrives and lands them with
    /// [`Self::land_delayed_writes`] once that request's answer is computed.
    #[cfg(feature = "fault-injection")]
    pub fn take_delayed_writes(&self) -> DelayedWrites {
        DelayedWrites(std::mem::take(
            &mut *self.delayed.lock().unwrap_or_else(|p| p.into_inner()),
        ))
    }

    /// Keeps the dedup record of [`crate::faults::Fault::DedupNotAtomic`] for later: it is
    /// written once the next request's answer is computed, and lost if the Server restarts first.
    #[cfg(feature = "fault-injection")]
    fn delay_op(&self, space: &str, op_id: &str, stored: &StoredOp, hlc_ms: u64) {
        self.delayed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(DelayedWrite::Op {
                space: space.to_owned(),
                op_id: op_id.to_owned(),
                stored: stored.clone(),
                hlc_ms,
            });
    }

    /// Makes the delayed writes, in the order they were acknowledged, and wakes held pulls.
    #[cfg(feature = "fault-injection")]
    pub async fn land_delayed_writes(self: &Arc<Self>, writes: DelayedWrites) {
        for w in writes.0 {
            match w {
                DelayedWrite::Push {
                    space,
                    user,
                    client_id,
                    items,
                } => {
                    let notify = self.notifier(&space);
                    let _ = self
                        .blocking(move |me| {
                            me.push_batch(&space, &user, &client_id, &items)
                                .map_err(internal)
                        })
                        .await;
                    notify.notify_waiters();
                }
                DelayedWrite::Op {
                    space,
                    op_id,
                    stored,
                    hlc_ms,
                } => {
                    let _ = self
                        .blocking(move |me| {
                            me.storage
                                .write(&space, |tx| {
                                    // A replay that came first was applied again and left a
                                    // record of its own to land: the first one to land stays.
                                    if tx.ops(&[op_id.as_str()])?.is_empty() {
                                        tx.put_op(&op_id, &stored, hlc_ms)?;
                                    }
                                    Ok(())
                                })
                                .map_err(internal)
                        })
                        .await;
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push_one(
        &self,
        tx: &mut dyn SpaceWrite,
        ctx: &mut BatchCtx,
        space: &str,
        user: &str,
        client_id: &ClientId,
        op_id: &OpId,
        text: &str,
        now_ms: u64,
    ) -> Result<Decided, StorageError> {
        let text_digest = to_hex(&checksum::sha256(text.as_bytes()));
        // The Mutation as a JSON tree, built at most once and not at all for a byte-identical
        // replay. It fails only for JSON this server cannot represent (a number beyond f64).
        let mut tree: Option<Result<Value, String>> = None;
        let parse = |text: &str| serde_json::from_str::<Value>(text).map_err(|e| e.to_string());
        let canonical = |v: &Value| to_hex(&checksum::sha256(to_canonical_string(v).as_bytes()));
        // Dedup first (`[IDEM-8]`).
        if !fault!(self.faults, NoDedup) {
            if let Some(stored) = ctx.known.get(op_id.as_str()).cloned() {
                // Equal bodies ([IDEM-5]): the same bytes, or else the same canonical JSON.
                let same = stored.text_digest.as_deref() == Some(text_digest.as_str())
                    || !fault!(self.faults, DedupByBytes) && {
                        let parsed = tree.get_or_insert_with(|| parse(text));
                        parsed
                            .as_ref()
                            .is_ok_and(|v| canonical(v) == stored.body_digest)
                    };
                if !same && !fault!(self.faults, MismatchAccepted) {
                    let problem = Problem::new(
                        ProblemType::OpIdReused,
                        "this op ID was first used with a different mutation body",
                    );
                    return Ok(Decided {
                        result: MutationResult::Rejected(Rejected {
                            op_id: op_id.clone(),
                            problem,
                        }),
                        applied: false,
                    });
                }
                let original: Outcome = serde_json::from_str(&stored.outcome)
                    .map_err(|e| StorageError::Corrupt(format!("stored outcome: {e}")))?;
                #[cfg(feature = "fault-injection")]
                if fault!(self.faults, IncrementTwiceOnReplay) {
                    // A naive counter adds `by` again, as a contribution of its own.
                    if let Ok(mut m) = serde_json::from_str::<Mutation>(text) {
                        if matches!(m.effect, Effect::Increment { .. }) {
                            if let Ok(again) =
                                format!("{}~replay{}", m.op_id, tx.meta()?.latest_seq).parse()
                            {
                                m.op_id = again;
                                self.apply(tx, ctx, &m, Some(&m.effect.clone()))?;
                            }
                        }
                    }
                }
                return Ok(Decided {
                    result: MutationResult::Duplicate(Duplicate {
                        op_id: op_id.clone(),
                        original,
                    }),
                    applied: false,
                });
            }
        }
        // A number that a double cannot hold exactly would be stored as another value: the
        // Mutation is refused alone (`[PUSH-11]`, `[PUSH-12]`), like any other invalid one.
        let tree = if first_inexact_number(text).is_some() {
            Err(INEXACT_NUMBER.to_owned())
        } else if first_duplicate_member(text).is_some() {
            Err(DUPLICATE_MEMBER.to_owned())
        } else {
            tree.unwrap_or_else(|| parse(text))
                .map_err(|e| format!("the mutation holds JSON this server cannot represent: {e}"))
        };
        let body_digest = match &tree {
            Ok(v) => canonical(v),
            Err(_) => text_digest.clone(),
        };
        let (outcome, history) = match tree.as_ref().map(|v| (v, Mutation::deserialize(v))) {
            Err(e) => (
                Outcome::Rejected(Rejected {
                    op_id: op_id.clone(),
                    problem: Problem::new(ProblemType::InvalidMutation, e.clone()),
                }),
                None,
            ),
            Ok((raw, Err(_))) => {
                let pointers = schema_errors(mutation_validator(), raw);
                let detail = if pointers.is_empty() {
                    "the mutation does not match the mutation schema".to_owned()
                } else {
                    format!(
                        "the mutation does not match the mutation schema at {}",
                        pointers.join(", ")
                    )
                };
                let problem = Problem::new(ProblemType::InvalidMutation, detail);
                (
                    Outcome::Rejected(Rejected {
                        op_id: op_id.clone(),
                        problem,
                    }),
                    None,
                )
            }
            Ok((_, Ok(m))) => {
                let outcome = match self.judge(tx, ctx, space, &m, client_id, now_ms)? {
                    Err(problem) => Outcome::Rejected(Rejected {
                        op_id: op_id.clone(),
                        problem,
                    }),
                    Ok(upcast) => {
                        let change_seq = self.apply(tx, ctx, &m, upcast.as_ref())?;
                        self.clock.merge(&m.hlc);
                        Outcome::Applied(Applied {
                            op_id: op_id.clone(),
                            change_seq,
                        })
                    }
                };
                (outcome, Some(m))
            }
        };
        let rejected_not_stored = fault!(self.faults, RejectionNotAcknowledged)
            && matches!(outcome, Outcome::Rejected(_));
        // Under `NoDedup` a replay is applied again; its Op ID keeps its first stored Outcome.
        let rejected_not_stored = rejected_not_stored
            || fault!(self.faults, NoDedup) && ctx.known.contains_key(op_id.as_str());
        let outcome_text =
            serde_json::to_string(&outcome).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        if !rejected_not_stored {
            let hlc_ms = history
                .as_ref()
                .map(|m| m.hlc.physical_ms())
                .unwrap_or(now_ms);
            let stored = StoredOp {
                body_digest,
                text_digest: Some(text_digest),
                outcome: outcome_text,
            };
            if fault!(self.faults, DedupNotAtomic) {
                // Written in a transaction of its own after the answer: the write commits
                // without it, and a replay that comes first is applied again.
                #[cfg(feature = "fault-injection")]
                self.delay_op(space, op_id.as_str(), &stored, hlc_ms);
            } else {
                tx.put_op(op_id.as_str(), &stored, hlc_ms)?;
            }
            ctx.known.insert(op_id.as_str().to_owned(), stored);
        }
        if let Some(m) = history {
            let (status, change_seq, problem_type) = match &outcome {
                Outcome::Applied(a) => (HistoryStatus::Applied, Some(a.change_seq), None),
                Outcome::Rejected(r) => (
                    HistoryStatus::Rejected,
                    None,
                    Some(r.problem.problem_type.clone()),
                ),
            };
            let entry = HistoryEntry {
                position: 0,
                op_id: op_id.clone(),
                client_id: client_id.clone(),
                user: user.to_owned(),
                kind: m.effect.kind(),
                fields: m.effect.fields(),
                hlc: m.hlc.clone(),
                received_at: rfc3339(now_ms),
                status,
                change_seq,
                problem_type,
            };
            tx.append_history(m.collection.as_str(), m.record_id.as_str(), &entry)?;
        }
        let applied = matches!(outcome, Outcome::Applied(_));
        let result = match outcome {
            Outcome::Applied(a) => MutationResult::Applied(a),
            Outcome::Rejected(r) => MutationResult::Rejected(r),
        };
        Ok(Decided { result, applied })
    }

    /// Every per-Mutation check of the spec, in order. `Ok(Some(effect))` is the upcast Effect to
    /// apply; `Ok(None)` an upcast Effect that changes nothing (`[EVO-5]`).
    fn judge(
        &self,
        tx: &dyn SpaceRead,
        ctx: &mut BatchCtx,
        space: &str,
        m: &Mutation,
        client_id: &ClientId,
        now_ms: u64,
    ) -> Result<Result<Option<Effect>, Problem>, StorageError> {
        let reject = |t: ProblemType, detail: String| Ok(Err(Problem::new(t, detail)));
        if fault!(self.faults, RejectEverything) {
            return reject(
                ProblemType::InvalidMutation,
                "this server rejects every write".into(),
            );
        }
        if fault!(self.faults, FirstWriterWins)
            && tx
                .record(m.collection.as_str(), m.record_id.as_str())?
                .is_some()
        {
            return reject(
                ProblemType::InvalidMutation,
                "the record was written first".into(),
            );
        }
        if m.hlc.node() != client_id.as_str() {
            return reject(
                ProblemType::InvalidMutation,
                "the hlc node differs from the client_id of the push".to_owned(),
            );
        }
        let retention_ms = self
            .config
            .retention
            .op_ids_s
            .min(self.config.retention.history_s)
            * 1000;
        if m.hlc.physical_ms() + retention_ms < now_ms {
            return reject(
                ProblemType::MutationTooOld,
                format!(
                    "the mutation is older than the retention of {} s",
                    retention_ms / 1000
                ),
            );
        }
        if ctx.meta.horizon.as_ref().is_some_and(|h| m.hlc <= *h) {
            return reject(
                ProblemType::MutationTooOld,
                "the mutation is at or before the space's compaction horizon".to_owned(),
            );
        }
        let skew = self.config.limits.clock_skew_ms_max;
        if m.hlc.physical_ms() > now_ms + skew && !fault!(self.faults, SkewUnchecked) {
            let ahead = m.hlc.physical_ms() - now_ms;
            return reject(
                ProblemType::ClockSkew,
                format!("hlc is {ahead} ms ahead of the server clock; the bound is {skew} ms"),
            );
        }
        let history = ctx.schemas(tx, m.collection.as_str())?;
        let effect = if history.latest().is_none() {
            if let Some(v) = m.schema_version {
                return reject(
                    ProblemType::UnknownSchemaVersion,
                    format!(
                        "collection {} has no registered schema, so version {v} is unknown",
                        m.collection
                    ),
                );
            }
            m.effect.clone()
        } else {
            match history.upcast(&m.effect, m.schema_version.unwrap_or(1)) {
                Err(e) => return reject(ProblemType::UnknownSchemaVersion, e.to_string()),
                Ok(None) => return Ok(Ok(None)),
                Ok(Some(e)) => e,
            }
        };
        #[cfg(feature = "fault-injection")]
        let effect = if fault!(self.faults, UnknownFieldsDropped) {
            drop_undeclared(effect, &history)
        } else {
            effect
        };
        let policy = |f: &str| history.policy(f);
        if let Err(e) = check_effect(&effect, policy) {
            return reject(e.problem, e.detail);
        }
        if let Some(latest) = history.latest() {
            let compiled = self.compiled(space, latest)?;
            if let Err(detail) = conforms(&compiled, &effect, &history) {
                return reject(ProblemType::SchemaViolation, detail);
            }
        }
        Ok(Ok(Some(effect)))
    }

    /// Applies a Mutation's upcast Effect to its Record and returns the Change Sequence its
    /// `applied` result reports (`[PUSH-15]`): the next one of the Space, now carried by the
    /// Record. `None` is an upcast Effect that changes nothing (`[EVO-5]`): it takes no Change
    /// Sequence and reports the Space's latest (0 before the first change), so that every
    /// reported Change Sequence is one a pull reaches and no Record is missing for it.
    fn apply(
        &self,
        tx: &mut dyn SpaceWrite,
        ctx: &mut BatchCtx,
        m: &Mutation,
        effect: Option<&Effect>,
    ) -> Result<u64, StorageError> {
        let Some(effect) = effect else {
            return Ok(tx.meta()?.latest_seq);
        };
        let change_seq = tx.next_change_seq()?;
        let history = ctx.schemas(tx, m.collection.as_str())?;
        let mut record = tx
            .record(m.collection.as_str(), m.record_id.as_str())?
            .map(|r| r.state)
            .unwrap_or_default();
        let delta = RecordState::from_effect(Stamp::of(m), effect);
        #[cfg(feature = "fault-injection")]
        if fault!(self.faults, WrongTieBreak) {
            record = crate::faults::merge_with_wrong_tiebreak(record, delta.clone());
        }
        if !fault!(self.faults, WrongTieBreak) {
            record.merge(&delta);
        }
        let view = view_of(
            m.collection.as_str(),
            m.record_id.as_str(),
            &record,
            &history,
            &self.faults,
        );
        if !view.conflicts.as_ref().is_none_or(BTreeMap::is_empty) {
            self.metrics.count_conflict();
        }
        tx.put_record(&StoredRecord {
            collection: m.collection.to_string(),
            id: m.record_id.to_string(),
            change_seq,
            state: record,
            view,
        })?;
        Ok(change_seq)
    }
}

/// RFC 3339 UTC time with milliseconds.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_767_225_600_125), "2026-01-01T00:00:00.125Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
