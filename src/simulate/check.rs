//! The invariants of an in-process scenario, checked after quiescence.

use super::*;
use std::collections::BTreeMap;

use driftless_client::inject::HttpRequest;
use driftless_client::Client;
use driftless_protocol::collection_schema::Policy;
use driftless_protocol::merge::RecordState;
use driftless_protocol::messages::Mutation;
use serde_json::Value;

impl Fleet for Sim {
    fn clients(&self) -> usize {
        self.clients.len()
    }
    fn client(&mut self, i: usize) -> &mut Client {
        Sim::client(self, i)
    }
    fn before_fate(&mut self, d: &Done) -> Result<(), Violation> {
        self.check_no_resurrection(d)
    }
    fn dead(&mut self, d: &Done) {
        self.end.tainted.insert(d.target.clone());
    }
    fn check_applied_once(&self) -> Result<(), Violation> {
        Sim::check_applied_once(self)
    }
}

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
        let applied = self.world.applied.borrow().clone();
        let v2_at = self.world.v2_at.get();
        let done = self.done.clone();
        check_after_quiescence(self, &observer, &truth, &applied, v2_at, &done)
    }

    /// No Op ID is applied twice: the Server's audit history of every Record holds at most one
    /// `applied` entry per Op ID (`[IDEM-2]`, `[AUDIT-1]`).
    pub(super) fn check_applied_once(&self) -> Result<(), Violation> {
        let records = [DOCS, TALLY]
            .into_iter()
            .flat_map(|coll| (0..RECORDS).map(move |r| (coll, format!("r{r}"))));
        applied_once(records, |coll, id, after| {
            let req = HttpRequest {
                method: "GET".into(),
                path: format!("/v1/spaces/{SPACE}/records/{coll}/{id}/history?after={after}"),
                headers: vec![
                    ("authorization".into(), format!("Bearer {}", self.token)),
                    ("driftless-version".into(), "1.0".into()),
                ],
                body: None,
            };
            let resp = self.world.deliver(&req)?;
            if resp.status == 404 {
                return Ok(None);
            }
            Ok(Some(
                serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
            ))
        })
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
