//! The invariants of an in-process scenario, checked after quiescence.

use super::*;
use std::collections::BTreeMap;

use driftless_client::inject::HttpRequest;
use driftless_protocol::collection_schema::Policy;
use driftless_protocol::merge::RecordState;
use driftless_protocol::messages::Mutation;
use serde_json::Value;

impl Sim {
    pub(super) fn check(&mut self) -> Result<(), Violation> {
        let fail = |invariant, detail: String| Err(Violation { invariant, detail });
        if let Some(v) = self.refused.take() {
            return Err(v);
        }
        // The truth: a fresh Client's pull of the Server.
        self.reseed(QUIESCE_STREAM - 1);
        let n = self.clients.len();
        self.skews.push(0);
        self.world.offline.borrow_mut().push(false);
        self.world.hold.borrow_mut().push(false);
        let mut observer = self.open_client(n).map_err(|e| Violation {
            invariant: Invariant::SyncCompletes,
            detail: e,
        })?;
        if let Err(e) = observer.sync() {
            return fail(Invariant::SyncCompletes, format!("observer: {e}"));
        }
        let truth = listing(&observer);
        self.trace(format!("truth {}", truth));
        for coll in [DOCS, TALLY] {
            for (id, v) in observer.list(coll).map_err(store_violation)? {
                self.end
                    .records
                    .insert(format!("{coll}/{id}"), Value::Object(v));
            }
        }
        for c in 0..n {
            let status = self.client(c).status().map_err(store_violation)?;
            if status.pending > 0 {
                return fail(
                    Invariant::NoWedgedClient,
                    format!("client {c} keeps {} pending writes", status.pending),
                );
            }
        }
        for c in 0..n {
            let mine = listing(self.client(c));
            if mine != truth {
                return fail(
                    Invariant::ReplicaEqualsServer,
                    format!("client {c} sees {mine}, the server {truth}"),
                );
            }
        }
        check_merge_model(
            &self.world.applied.borrow(),
            self.world.v2_at.get(),
            &observer,
        )?;
        // The fate of every write reported done.
        let mut applied: BTreeMap<String, i64> = BTreeMap::new();
        for d in self.done.clone() {
            self.check_no_resurrection(&d)?;
            let fate = fate(self.client(d.client), &d.op_id, d.tally.is_some())?;
            match fate {
                Fate::Applied => {
                    if let Some((id, by)) = &d.tally {
                        *applied.entry(id.clone()).or_default() += by;
                    }
                }
                Fate::Dead(problem) => {
                    self.end.tainted.insert(d.target.clone());
                    let too_old = problem.contains("mutation-too-old");
                    // A write that waited longer than retention may be refused as too old
                    // ([CLIENT-10], [CLIENT-21]): the time steps make that common.
                    if !d.poison && !too_old {
                        return fail(
                            Invariant::NoValidWriteRejected,
                            format!(
                                "client {} write {} dead-lettered: {problem}",
                                d.client, d.op_id
                            ),
                        );
                    }
                }
                Fate::Superseded => {}
                Fate::Unknown(state) => {
                    return fail(
                        Invariant::WriteFateKnown,
                        format!("client {} write {} ends {state}", d.client, d.op_id),
                    )
                }
            }
        }
        for r in 0..RECORDS {
            let id = format!("r{r}");
            let want = applied.get(&id).copied();
            let got = observer
                .get(TALLY, &id)
                .map_err(store_violation)?
                .and_then(|v| v.get("n").and_then(Value::as_i64));
            if want.unwrap_or(0) != got.unwrap_or(0) {
                return fail(
                    Invariant::CounterEqualsAppliedIncrements,
                    format!(
                        "{TALLY}/{id}.n is {got:?} on the server; acknowledged increments sum to {want:?}"
                    ),
                );
            }
        }
        self.check_applied_once()?;
        for c in 0..n {
            match self.client(c).audit() {
                Ok(a) if a.repaired.is_empty() => {}
                Ok(a) => {
                    return fail(
                        Invariant::ChecksumsEqual,
                        format!("client {c}: audit repaired buckets {:?}", a.repaired),
                    )
                }
                Err(e) => {
                    return fail(Invariant::ChecksumsEqual, format!("client {c}: audit: {e}"))
                }
            }
        }
        Ok(())
    }

    /// No Op ID is applied twice: the Server's audit history of every Record holds at most one
    /// `applied` entry per Op ID (`[IDEM-2]`, `[AUDIT-1]`).
    pub(super) fn check_applied_once(&self) -> Result<(), Violation> {
        for coll in [DOCS, TALLY] {
            for r in 0..RECORDS {
                let mut seen: BTreeMap<String, u32> = BTreeMap::new();
                let mut after = 0u64;
                for _ in 0..1000 {
                    let req = HttpRequest {
                        method: "GET".into(),
                        path: format!(
                            "/v1/spaces/{SPACE}/records/{coll}/r{r}/history?after={after}"
                        ),
                        headers: vec![
                            ("authorization".into(), format!("Bearer {}", self.token)),
                            ("driftless-version".into(), "1.0".into()),
                        ],
                        body: None,
                    };
                    let resp = self.world.deliver(&req).map_err(|e| Violation {
                        invariant: Invariant::AppliedOnce,
                        detail: format!("history of {coll}/r{r}: {e}"),
                    })?;
                    let page: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
                    if resp.status == 404 {
                        break;
                    }
                    let entries = page["entries"].as_array().cloned().unwrap_or_default();
                    for e in &entries {
                        if e["status"] == "applied" {
                            let op = e["op_id"].as_str().unwrap_or("").to_owned();
                            let count = seen.entry(op.clone()).or_default();
                            *count += 1;
                            if *count > 1 {
                                return Err(Violation {
                                    invariant: Invariant::AppliedOnce,
                                    detail: format!("{coll}/r{r}: op {op} applied {count} times"),
                                });
                            }
                        }
                        after = after.max(e["position"].as_u64().unwrap_or(0));
                    }
                    if page["has_more"] != true || entries.is_empty() {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// `[CLIENT-21]`: if `d` was written while its Client saw the Record and re-issued after
    /// `mutation-too-old`, the Mutation applied before its re-issue's is not a delete.
    pub(super) fn check_no_resurrection(&mut self, d: &Done) -> Result<(), Violation> {
        let Some((coll, id)) = &d.seen else {
            return Ok(());
        };
        let mut op = d.op_id.clone();
        while let Some((_, Some(detail))) = self
            .client(d.client)
            .receipt(&op)
            .map_err(store_violation)?
        {
            let Some((why, next)) = detail.split_once("; re-issued as ") else {
                break;
            };
            op = next.trim().to_owned();
            if why != "mutation-too-old" {
                continue;
            }
            let applied = self.world.applied.borrow();
            let mine = |m: &&Mutation| m.collection.as_str() == coll && m.record_id.as_str() == id;
            let Some(at) = applied
                .iter()
                .position(|m| mine(&m) && m.op_id.as_str() == op)
            else {
                continue;
            };
            // The Record as the Server held it when the re-issue landed: deleted if it had
            // Mutations and does not exist (`[MERGE-2]`).
            let mut state = RecordState::default();
            let mut deleter = None;
            for m in applied[..at].iter().filter(mine) {
                state.apply(m);
                if matches!(
                    m.effect,
                    driftless_protocol::messages::Effect::Delete { .. }
                ) {
                    deleter = Some(m.op_id.as_str().to_owned());
                }
            }
            let exists = state
                .materialize(
                    |f: &str| match f {
                        "n" | "likes" => Policy::Counter,
                        "tags" => Policy::AddWinsSet,
                        _ => Policy::Lww,
                    },
                    &BTreeMap::new(),
                )
                .exists;
            if let (false, Some(by)) = (exists, deleter) {
                return Err(Violation {
                    invariant: Invariant::NoResurrection,
                    detail: format!(
                        "client {} write {} to {coll}/{id}, re-issued as {op}, brought back the Record deleted by {by}",
                        d.client, d.op_id
                    ),
                });
            }
        }
        Ok(())
    }
}
