//! Pushing the Outbox (spec chapter 04 and chapter 08, "The Outbox"): the sending order of
//! priority lanes that never reorders one Record's Mutations (`[CLIENT-6]`, `[ORD-4]`), batches
//! within the Server's limit, marked as sent before they go so a crash leaves a fate to ask about
//! (`[CLIENT-3]`), and the settling of every Outcome (`[PUSH-8]`): acknowledged Mutations leave
//! the Outbox (`[CLIENT-2]`), rejected ones go to the dead-letter list (`[CLIENT-4]`,
//! `[CLIENT-5]`, `[CLIENT-14]`), `clock-skew` and never-sent `mutation-too-old` are re-issued
//! (`[HLC-9]`, `[CLIENT-9]`, `[CLIENT-10]`) after the clock may step back (`[HLC-12]`); a
//! never-sent `mutation-too-old` of a Record the Mirror holds waits for the sync's pull and is
//! re-issued only if the Record is still there (`[CLIENT-21]`).

use std::collections::VecDeque;

use driftless_protocol::hlc::Hlc;
use serde_json::{json, Value};

use crate::clock::random_hex;
use crate::store::{self, receipt, Pending, Store};
use crate::transport::{Json, Reply};
use crate::{Client, ClientError, Event, SyncReport};

/// Re-issues of one Mutation within one sync before it waits for the next sync ([HLC-9]).
const REISSUES_PER_SYNC_MAX: u32 = 3;

impl Client {
    /// The Outbox in sending order: priority lanes, but never a Mutation ahead of an earlier one
    /// of the same Record (`[CLIENT-6]`): an earlier Mutation inherits the highest priority of
    /// the later Mutations of its Record, so sorting by (priority, seq) keeps each Record's order.
    fn send_order(&self) -> Result<VecDeque<Pending>, ClientError> {
        let outbox = self.store.outbox(&self.cfg.space)?;
        let mut effective = vec![0i64; outbox.len()];
        let mut lifted: std::collections::HashMap<(&str, &str), i64> =
            std::collections::HashMap::new();
        for (i, p) in outbox.iter().enumerate().rev() {
            let e = lifted
                .get(&(p.collection.as_str(), p.record_id.as_str()))
                .copied()
                .unwrap_or(i64::MIN)
                .max(p.priority);
            lifted.insert((p.collection.as_str(), p.record_id.as_str()), e);
            effective[i] = if crate::faults::fault!(ReordersAcrossLanes) {
                p.priority
            } else {
                e
            };
        }
        let mut order: Vec<usize> = (0..outbox.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(effective[i]), outbox[i].seq));
        let mut slots: Vec<Option<Pending>> = outbox.into_iter().map(Some).collect();
        Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
    }

    pub(crate) fn push_all(&mut self, report: &mut SyncReport) -> Result<(), ClientError> {
        let mut settled = None;
        let out = self.push_passes(report, &mut settled);
        // The last answer's settling, still open: committed now (or, after a failure, rolled
        // back: its Mutations stay in the Outbox marked sent and are settled by a later sync,
        // as after a crash).
        if let Some((acknowledged, rejected)) = settled {
            self.store.finish(out.is_ok())?;
            if out.is_ok() {
                self.emit(Event::Pushed {
                    acknowledged,
                    rejected,
                });
            }
        }
        out
    }

    /// The passes of [`Client::push_all`]. The settling of an answer is left open in
    /// `settled` (acknowledged, rejected) and committed together with the marking of the next
    /// batch as sent, just before that batch goes: one commit (one fsync) per push, not two.
    fn push_passes(
        &mut self,
        report: &mut SyncReport,
        settled: &mut Option<(usize, usize)>,
    ) -> Result<(), ClientError> {
        let limits = self.limits()?;
        let server_max = limits.map_or(100, |l| l.mutations_per_push_max);
        let size_max = self.cfg.batch_max.min(server_max).max(1);
        // Bisection ([CLIENT-19]): a push refused as a whole halves `size` until the Mutation
        // it refuses is alone; every acknowledged push doubles it again, up to `size_max`.
        let mut size = size_max;
        let envelope = crate::limits::Limits::push_envelope_bytes(&self.client_id);
        // The Outbox is read and ordered once per pass, not once per batch (a backlog of n
        // would cost n²/size rows). It is read again when the pass is done (re-issued Mutations
        // go again) and whenever a newer write appeared meanwhile, so that a new high-priority
        // write still goes first.
        let mut queue: VecDeque<Pending> = VecDeque::new();
        let mut newest: Option<u64> = None;
        // A re-issued Mutation goes again in this sync; re-issued a second time with no step back
        // of the clock in between, it waits for the next sync: if the Server's own clock runs
        // ahead of its wall clock, neither re-issuing nor stepping back helps, and this would
        // otherwise loop forever ([HLC-9], [HLC-12]).
        let mut reissued_at: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
        let mut held: std::collections::HashSet<u64> = std::collections::HashSet::new();
        let mut reissues: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
        if crate::faults::fault!(StopsAfterPoison) && !self.store.dead(&self.cfg.space)?.is_empty()
        {
            return Ok(());
        }
        loop {
            let latest = self.store.newest_seq()?;
            if queue.is_empty() || latest > newest {
                queue = self.send_order()?;
                let waiting: std::collections::HashSet<u64> =
                    self.too_old_waiting.iter().map(|p| p.seq).collect();
                queue.retain(|p| !held.contains(&p.seq) && !waiting.contains(&p.seq));
                newest = latest;
            }
            let Some(first) = queue.front() else {
                return Ok(());
            };
            // A Mutation that cannot fit in any push within the announced limits is never sent:
            // it is dead-lettered here, with the Problem the Server would answer ([CLIENT-18]).
            if let Some(problem) = limits.and_then(|l| l.refuse(&self.client_id, first.body())) {
                let p = first.clone();
                let problem = serde_json::to_value(&problem).unwrap_or(Value::Null);
                self.dead_letter(&p, &problem, report)?;
                queue.pop_front();
                continue;
            }
            // The batch: at most `size` Mutations whose push body stays within the byte limit.
            let mut front: Vec<Pending> = Vec::new();
            let mut bytes = envelope;
            for p in queue.iter().take(size) {
                let add = p.text.len() + usize::from(!front.is_empty());
                if !front.is_empty() && limits.is_some_and(|l| bytes + add > l.body_bytes_max) {
                    break;
                }
                bytes += add;
                front.push(p.clone());
            }
            // Mark as sent before sending: a crash after this point leaves a fate to ask about.
            // A Mutation another handle coalesced away since the Outbox was read is not sent.
            let entries: Vec<(u64, &str)> =
                front.iter().map(|p| (p.seq, p.op_id.as_str())).collect();
            let marked = self.store.tx(|tx| Store::mark_sent(tx, &entries))?;
            let batch: Vec<Pending> = front
                .iter()
                .filter(|p| marked.contains(&p.seq))
                .map(|p| {
                    let mut sent = p.clone();
                    sent.attempts += 1;
                    sent
                })
                .collect();
            if batch.is_empty() {
                queue.drain(..front.len());
                continue;
            }
            // The marks (and the last answer's settling) are durable before the batch goes.
            if let Some((acknowledged, rejected)) = settled.take() {
                self.store.finish(true)?;
                self.emit(Event::Pushed {
                    acknowledged,
                    rejected,
                });
            }
            let path = format!("/v1/spaces/{}/push", self.cfg.space);
            let body = push_body(&self.client_id, &batch);
            let r = self.call_json("POST", &path, Json::Text(&body))?;
            self.check_auth(&r)?;
            // An answer that came on a retry of the request: every Mutation in it was sent
            // before, whatever the first attempt did ([CLIENT-10], "sent before").
            let mut batch = batch;
            for p in &mut batch {
                p.attempts += u64::from(r.attempts.saturating_sub(1));
            }
            match r.status {
                200 => {
                    let results = r.body["results"].as_array().cloned().unwrap_or_default();
                    if results.len() != batch.len() {
                        return Err(ClientError::Protocol(
                            "push answered a different number of results".into(),
                        ));
                    }
                    let (mut acked, mut rejected) = (0, 0);
                    let outcomes: Vec<(&Pending, &Value)> = batch
                        .iter()
                        .zip(&results)
                        .map(|(p, res)| {
                            let outcome = if res["status"] == "duplicate" {
                                &res["original"]
                            } else {
                                res
                            };
                            (p, outcome)
                        })
                        .collect();
                    // Refused as clock-skew: settled last, after the clock may step back.
                    let (skewed, others): (Vec<_>, Vec<_>) = outcomes
                        .into_iter()
                        .partition(|(_, o)| Self::problem_code(o) == "clock-skew");
                    // The whole response is settled in one transaction, committed with the
                    // next batch's marks (one fsync, not one per Mutation); a crash before it
                    // leaves sent Mutations for the manifest. Applied ones first, together.
                    self.store.begin()?;
                    let (applied, others): (Vec<_>, Vec<_>) = others
                        .into_iter()
                        .partition(|(_, o)| o["status"] == "applied");
                    if let Err(e) = self.settle_applied(&applied, report) {
                        self.store.finish(false)?;
                        return Err(e);
                    }
                    acked += applied.len();
                    // What is left was refused (applied ones were settled above).
                    let mut settle = |me: &mut Self, p: &Pending, outcome: &Value| {
                        rejected += 1;
                        // op-id-reused is not an Outcome, but the Mutation is just as stuck.
                        let reissued = report.reissued;
                        me.settle(p, outcome, report)?;
                        let epoch = me.clock.epoch;
                        if report.reissued > reissued {
                            // A wall clock ahead of the Server's by more than the skew bound
                            // stamps past it again after every step back: bounded too.
                            let n = reissues.entry(p.seq).or_insert(0u32);
                            *n += 1;
                            if reissued_at.insert(p.seq, epoch) == Some(epoch)
                                || *n >= REISSUES_PER_SYNC_MAX
                            {
                                held.insert(p.seq);
                            }
                        }
                        Ok::<(), ClientError>(())
                    };
                    let settling = (|me: &mut Self| {
                        for (p, outcome) in &others {
                            settle(me, p, outcome)?;
                        }
                        if !skewed.is_empty() {
                            // After the others: applied ones have left the Outbox, so only
                            // Mutations of truly unknown fate bound the step back.
                            me.step_back(r.clock.as_deref(), &skewed)?;
                        }
                        for (p, outcome) in &skewed {
                            settle(me, p, outcome)?;
                        }
                        Ok::<(), ClientError>(())
                    })(self);
                    if let Err(e) = settling {
                        self.store.finish(false)?;
                        return Err(e);
                    }
                    *settled = Some((acked, rejected));
                    queue.drain(..front.len());
                }
                400 if Self::problem_of(&r) == "invalid-request"
                    && Self::named_mutations(&r, batch.len()).next().is_some() =>
                {
                    // Dead-letter the Mutations the pointers name ([CLIENT-5]); the rest go again.
                    for i in Self::named_mutations(&r, batch.len()).collect::<Vec<_>>() {
                        self.dead_letter(&batch[i], &r.body, report)?;
                    }
                    queue.clear(); // the rest go again, from a fresh read
                }
                // Refused as a whole without naming a Mutation: never resent unchanged
                // ([RETRY-4]). The front goes again in halves until the offending Mutation is
                // alone, and then only it is dead-lettered ([CLIENT-19]).
                s if Self::refused_whole(s, &Self::problem_of(&r)) => {
                    if batch.len() > 1 && crate::faults::fault!(DeepWriteWedge) {
                        // Not bisected: the whole batch waits for the next sync, unchanged.
                        return Ok(());
                    }
                    if batch.len() > 1 {
                        size = batch.len() / 2;
                        queue.clear(); // re-read: the same front goes again, in halves
                    } else {
                        let p = batch[0].clone();
                        self.dead_letter(&p, &r.body, report)?;
                        queue.drain(..front.len());
                    }
                    continue;
                }
                _ => {
                    return Err(ClientError::Protocol(format!(
                        "push answered {}: {}",
                        r.status, r.body
                    )))
                }
            }
            size = (size * 2).min(size_max);
        }
    }

    /// Whether a push answer refuses the request as a whole for something a Mutation in it may
    /// carry (its size, its depth, its JSON), so that bisecting the batch finds it.
    fn refused_whole(status: u16, problem: &str) -> bool {
        match status {
            413 => true,
            400 => matches!(problem, "invalid-json" | "invalid-request" | ""),
            _ => false,
        }
    }

    /// The indexes of batch Mutations an `invalid-request` answer names in its `errors`.
    fn named_mutations(r: &Reply, len: usize) -> impl Iterator<Item = usize> + '_ {
        r.body["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                e["pointer"]
                    .as_str()
                    .and_then(|p| p.strip_prefix("/mutations/"))
                    .and_then(|p| p.split('/').next())
                    .and_then(|i| i.parse::<usize>().ok())
            })
            .filter(move |i| *i < len)
    }

    /// After `clock-skew`, sets the clock back to the greatest of the Server's clock, this
    /// Client's applied Mutations and its Mutations of unknown fate, other than `skewed`
    /// (`[HLC-12]`): a clock that once ran ahead then stamps Mutations the Server accepts.
    fn step_back(
        &mut self,
        server_clock: Option<&str>,
        skewed: &[(&Pending, &Value)],
    ) -> Result<(), ClientError> {
        let Some(server) = server_clock.and_then(|c| c.parse::<Hlc>().ok()) else {
            return Ok(());
        };
        let refused: std::collections::HashSet<&str> =
            skewed.iter().map(|(p, _)| p.op_id.as_str()).collect();
        let applied = self
            .store
            .meta("hlc_applied_max")?
            .and_then(|h| h.parse::<Hlc>().ok());
        let unknown = self
            .store
            .sent(&self.cfg.space)?
            .into_iter()
            .filter(|p| !refused.contains(p.op_id.as_str()))
            .filter_map(|p| p.hlc());
        let counted: Vec<Hlc> = if crate::faults::fault!(StepsBackBelowApplied) {
            Vec::new()
        } else {
            applied.into_iter().chain(unknown).collect()
        };
        let clock = &mut self.clock;
        self.store
            .tx(|tx| clock.step_back_in(tx, &server, &counted))?; // counted as clock_step_backs
        Ok(())
    }

    fn problem_code(outcome: &Value) -> &str {
        outcome["problem"]["type"]
            .as_str()
            .unwrap_or("")
            .rsplit(':')
            .next()
            .unwrap_or("")
    }

    /// Applies a known Outcome to an Outbox entry.
    pub(crate) fn settle(
        &mut self,
        p: &Pending,
        outcome: &Value,
        report: &mut SyncReport,
    ) -> Result<(), ClientError> {
        if outcome["status"] == "applied" {
            return self.settle_applied(&[(p, outcome)], report);
        }
        let code = Self::problem_code(outcome).to_owned();
        // clock-skew: re-issue after merging the Server clock ([HLC-9]); mutation-too-old: only
        // if this was the first send ([CLIENT-9], [CLIENT-10]).
        let reissue = code == "clock-skew"
            || (code == "mutation-too-old"
                && (p.attempts <= 1 || crate::faults::fault!(ReissuesSentTooOld)));
        if reissue
            && code == "mutation-too-old"
            && !crate::faults::fault!(ReissuesBeforePull)
            && self.mirror_holds(p)?
        {
            // The Record may have been deleted while this waited, and the tombstone purged:
            // re-issued with a fresh clock it would bring the Record back. Decide after the
            // pull of this sync ([CLIENT-21]).
            self.too_old_waiting.push(p.clone());
            return Ok(());
        }
        if reissue {
            self.reissue(p, &code, report)
        } else {
            let problem = outcome.get("problem").cloned().unwrap_or(outcome.clone());
            self.dead_letter(p, &problem, report)
        }
    }

    /// Settles Mutations the Server applied (each with its `applied` Outcome): out of the
    /// Outbox, kept in the view until the pull reaches them ([CLIENT-23]), receipts
    /// acknowledged; in one transaction that reads the pull position and writes the newest
    /// applied Stamp and the counter once, not once per Mutation.
    pub(crate) fn settle_applied(
        &mut self,
        applied: &[(&Pending, &Value)],
        report: &mut SyncReport,
    ) -> Result<(), ClientError> {
        if applied.is_empty() {
            return Ok(());
        }
        report.acknowledged += applied.len();
        let deferred = crate::faults::fault!(DropsOutboxBeforeDurableAck);
        if deferred {
            self.unacked
                .extend(applied.iter().map(|(p, _)| p.op_id.clone()));
        }
        // The latest applied Stamp bounds a step back ([HLC-12]).
        let newest = applied.iter().filter_map(|(p, _)| p.hlc()).max();
        let space = self.cfg.space.clone();
        let entries: Vec<(u64, &str, Option<u64>)> = applied
            .iter()
            .map(|(p, o)| (p.seq, p.op_id.as_str(), o["change_seq"].as_u64()))
            .collect();
        self.store.tx(|tx| {
            let through = Store::through_in(tx, &space)?;
            Store::settle_acked(tx, &entries, through, !deferred)?;
            if let Some(h) = newest {
                let max =
                    Store::meta_in(tx, "hlc_applied_max")?.and_then(|m| m.parse::<Hlc>().ok());
                if max.is_none_or(|m| m < h) {
                    Store::set_meta(tx, "hlc_applied_max", &h.to_string())?;
                }
            }
            Store::count(tx, "acknowledged", applied.len() as i64)
        })
    }

    /// Whether the Mirror holds `p`'s Record, existing (not a tombstone).
    fn mirror_holds(&self, p: &Pending) -> Result<bool, ClientError> {
        Ok(self
            .store
            .mirrored(&self.cfg.space, &p.collection, &p.record_id)?
            .is_some_and(|m| !m.deleted))
    }

    /// Settles the Mutations refused as `mutation-too-old` whose Records the Mirror held, now
    /// that the pull has brought the Mirror up to date ([CLIENT-21]): a Record still there gets
    /// its Mutation re-issued ([CLIENT-9]); a Record gone was deleted while the Mutation waited,
    /// so the Mutation is dead-lettered and the delete stands, as it would had the Server not
    /// compacted yet. Returns how many were re-issued.
    pub(crate) fn settle_too_old_waiting(
        &mut self,
        report: &mut SyncReport,
    ) -> Result<usize, ClientError> {
        let waiting = std::mem::take(&mut self.too_old_waiting);
        let mut reissued = 0;
        for p in waiting {
            if self.mirror_holds(&p)? {
                self.reissue(&p, "mutation-too-old", report)?;
                reissued += 1;
            } else {
                let problem = json!({
                    "type": "urn:driftless:problem:mutation-too-old",
                    "title": "Mutation too old",
                    "status": 422,
                    "detail": "the Record was deleted while this write waited longer than the \
                        Server's retention; it was not re-issued, so the delete stands \
                        ([CLIENT-21])",
                });
                self.dead_letter(&p, &problem, report)?;
            }
        }
        Ok(reissued)
    }

    /// Re-issues `p` as a new Mutation: a new Op ID and a fresh HLC at the same seq.
    fn reissue(
        &mut self,
        p: &Pending,
        code: &str,
        report: &mut SyncReport,
    ) -> Result<(), ClientError> {
        report.reissued += 1;
        let new_op = format!("{}-{}-{}", self.client_id, p.seq, random_hex(4));
        let (old, seq) = (p.op_id.clone(), p.seq as i64);
        let mut clock = self.clock.clone();
        self.store.tx(|tx| {
            let mut body = p.body().clone();
            body["op_id"] = json!(new_op);
            body["hlc"] = json!(clock.stamp_in(tx)?.to_string());
            // Same seq: the re-issued Mutation keeps its place among its Record's Mutations.
            tx.execute(
                "UPDATE outbox SET op_id = ?1, body = ?2, attempts = 0 WHERE seq = ?3",
                rusqlite::params![new_op, body.to_string(), seq],
            )
            .map_err(store::sql_error)?;
            receipt(
                tx,
                &old,
                "rejected",
                Some(&format!("{code}; re-issued as {new_op}")),
            )?;
            receipt(tx, &new_op, "pending", None)?;
            Store::count(tx, "reissued", 1)
        })?;
        self.clock = clock;
        Ok(())
    }

    fn dead_letter(
        &mut self,
        p: &Pending,
        problem: &Value,
        report: &mut SyncReport,
    ) -> Result<(), ClientError> {
        report.rejected += 1;
        report.dead_lettered.push(p.op_id.clone());
        let at = crate::clock::now_ms() as i64;
        let (op, space, body, pr) = (
            p.op_id.clone(),
            self.cfg.space.clone(),
            p.text.to_string(),
            problem.to_string(),
        );
        let code = problem["type"].as_str().unwrap_or("").to_owned();
        self.store.tx(|tx| {
            tx.execute("DELETE FROM outbox WHERE op_id = ?1", [&op])
                .map_err(store::sql_error)?;
            tx.execute(
                "INSERT OR REPLACE INTO dead (op_id, space, body, problem, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![op, space, body, pr, at],
            )
            .map_err(store::sql_error)?;
            receipt(tx, &op, "rejected", Some(&code))?;
            Store::count(tx, "rejected", 1)
        })
    }

    /// Removes a dead letter for good (the user gave up on the write); its receipt says so.
    pub(crate) fn discard_dead_letter(&mut self, op_id: &str) -> Result<(), ClientError> {
        let op = op_id.to_owned();
        let removed = self.store.tx(|tx| {
            let n = tx
                .execute("DELETE FROM dead WHERE op_id = ?1", [&op])
                .map_err(store::sql_error)?;
            if n == 1 {
                receipt(tx, &op, "rejected", Some("discarded"))?;
            }
            Ok(n)
        })?;
        if removed == 0 {
            return Err(ClientError::Invalid(format!(
                "{op_id} is not in the dead-letter list"
            )));
        }
        Ok(())
    }

    /// Moves a dead letter back into the Outbox as a new Mutation of the same Effect.
    pub(crate) fn reissue_dead(&mut self, op_id: &str) -> Result<String, ClientError> {
        let (_, body, _) = self
            .store
            .dead(&self.cfg.space)?
            .into_iter()
            .find(|(o, _, _)| o == op_id)
            .ok_or_else(|| {
                ClientError::Invalid(format!("{op_id} is not in the dead-letter list"))
            })?;
        let new = self.write(
            body["collection"].as_str().unwrap_or(""),
            body["record_id"].as_str().unwrap_or(""),
            body["effect"].clone(),
            0,
        )?;
        let op = op_id.to_owned();
        self.store.tx(|tx| {
            tx.execute("DELETE FROM dead WHERE op_id = ?1", [&op])
                .map(|_| ())
                .map_err(store::sql_error)
        })?;
        Ok(new)
    }
}

/// The push request body `{"client_id":…,"mutations":[…]}` joined from the Mutations' stored
/// JSON texts (each the compact serialization of its tree, as `json!` would write it).
fn push_body(client_id: &str, batch: &[Pending]) -> String {
    let id = Value::String(client_id.to_owned()).to_string();
    let len = batch.iter().map(|p| p.text.len() + 1).sum::<usize>();
    let mut body = String::with_capacity(len + id.len() + 32);
    body.push_str("{\"client_id\":");
    body.push_str(&id);
    body.push_str(",\"mutations\":[");
    for (i, p) in batch.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&p.text);
    }
    body.push_str("]}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The joined body is byte for byte what serializing the tree of the same push writes, for
    /// texts stored the way the Outbox stores them (escapes and non-ASCII included).
    #[test]
    fn a_push_body_joined_from_stored_texts_is_the_serialized_tree() {
        let bodies = [
            json!({"op_id": "a-1", "seq": 1, "effect": {"kind": "put", "value": {"t": "é \"q\" \u{1}"}}}),
            json!({"op_id": "a-2", "seq": 2, "effect": {"kind": "increment", "field": "n", "by": -3}}),
        ];
        let batch: Vec<Pending> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                Pending::new(
                    i as u64 + 1,
                    b["op_id"].as_str().unwrap().to_owned(),
                    "c".into(),
                    "r".into(),
                    b.to_string().into(),
                    0,
                    0,
                )
            })
            .collect();
        let client_id = "client \"x\"";
        let tree = json!({"client_id": client_id, "mutations": bodies});
        assert_eq!(push_body(client_id, &batch), tree.to_string());
        assert_eq!(
            push_body(client_id, &[]),
            r#"{"client_id":"client \"x\"","mutations":[]}"#
        );
    }
}
