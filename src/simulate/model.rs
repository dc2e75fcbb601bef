//! What both modes of `driftless simulate` share: the seeded generator, the random writes, the
//! Collections they write, the merge model the Server's state is checked against, and the fate
//! of a write a Client reported done.

use std::collections::BTreeMap;

use driftless_client::{Client, ClientError};
use driftless_protocol::collection_schema::{Policy, SchemaHistory};
use driftless_protocol::merge::RecordState;
use driftless_protocol::messages::Mutation;
use serde_json::{json, Map, Value};

use super::{Invariant, Violation};

/// The Collection of plain documents (every Effect kind; schema v2 renames `title`).
pub(super) const DOCS: &str = "docs";
/// The Collection of counters.
pub(super) const TALLY: &str = "tally";
/// Records per Collection (`r0`, `r1`, ...).
pub(super) const RECORDS: u64 = 3;

/// SplitMix64: a tiny, fixed, portable generator, so that a seed gives the same scenario on
/// every machine and every Rust version (the standard library's hashers promise neither).
#[derive(Debug, Clone)]
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n` > 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `pct` percent.
    pub(super) fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// A random Effect of any kind on a random Record of either Collection, as (collection, Record
/// ID, Effect): a quarter are increments of the tally's counter `n` (by -3..=5, never 0), the
/// rest one of the seven kinds on `docs`. Both modes draw their writes here.
pub(super) fn random_effect(rng: &mut Rng) -> (String, String, Value) {
    let record = format!("r{}", rng.below(RECORDS));
    let word = |rng: &mut Rng| json!(["a", "b", "c", "d"][rng.below(4) as usize]);
    if rng.chance(25) {
        let by = rng.below(9) as i64 - 3;
        let by = if by == 0 { 1 } else { by };
        return (
            TALLY.into(),
            record,
            json!({"kind": "increment", "field": "n", "by": by}),
        );
    }
    let effect = match rng.below(7) {
        0 => json!({"kind": "put", "value": {"title": word(rng), "body": rng.below(100)}}),
        1 => json!({"kind": "patch", "set": {"title": word(rng)}}),
        2 => json!({"kind": "patch", "unset": ["body"]}),
        3 => json!({"kind": "delete"}),
        4 => json!({"kind": "increment", "field": "likes", "by": rng.below(5) as i64 + 1}),
        5 => json!({"kind": "set_add", "field": "tags", "elements": [word(rng)]}),
        _ => json!({"kind": "set_remove", "field": "tags", "elements": [word(rng)]}),
    };
    (DOCS.into(), record, effect)
}

/// For a write of `effect` to `collection/record`: (Record ID, amount) if it increments the
/// tally's counter `n`, whose final value the checks compare with the acknowledged increments.
pub(super) fn tally_increment(
    collection: &str,
    record: &str,
    effect: &Value,
) -> Option<(String, i64)> {
    (collection == TALLY && effect["field"] == "n")
        .then(|| effect["by"].as_i64().map(|by| (record.to_owned(), by)))
        .flatten()
}

/// The Collection Schema document of `collection` at `version`: version 1 declares the
/// counters and the set; `docs` version 2 renames `title` to `heading` and adds `rank`
/// (default 0), a backward-compatible change (`[EVO-11]`).
pub(super) fn schema_doc(collection: &str, version: u32) -> Value {
    let mut doc = json!({"collection": collection, "version": version,
        "schema": {"type": "object"},
        "fields": {"n": {"policy": "counter"}, "likes": {"policy": "counter"},
                   "tags": {"policy": "add_wins_set"}}});
    if version == 2 {
        doc["migration"] = json!([
            {"op": "rename_field", "from": "title", "to": "heading"},
            {"op": "add_field", "field": "rank", "default": 0}
        ]);
    }
    doc
}

/// The `docs` schema history up to `latest`, for the merge model's upcast and defaults.
pub(super) fn docs_history(latest: u32) -> SchemaHistory {
    let versions = (1..=latest)
        .map(|v| serde_json::from_value(schema_doc(DOCS, v)).expect("the simulated schemas parse"))
        .collect();
    SchemaHistory::new(versions).expect("the simulated schemas are numbered 1, 2")
}

/// The Server's state (a fresh Client's pull) equals the protocol's merge rules folded over
/// every Mutation the Server answered as applied (`[MERGE-1]`, `[MERGE-2]`), in the order
/// applied. `v2_at`: how many of them were applied before `docs` schema v2 was registered
/// (`None`: never); from there on the Server upcast them (`[EVO-4]`) and migrated the stored
/// Records (`[SCHEMA-7]`). Errors name `server-equals-merge-model`, or `sync-completes` when
/// the observer's store cannot be read.
pub(super) fn check_merge_model(
    applied: &[Mutation],
    v2_at: Option<usize>,
    observer: &Client,
) -> Result<(), Violation> {
    let policy = |f: &str| match f {
        "n" | "likes" => Policy::Counter,
        "tags" => Policy::AddWinsSet,
        _ => Policy::Lww,
    };
    let docs = docs_history(if v2_at.is_some() { 2 } else { 1 });
    let mut states: BTreeMap<(String, String), RecordState> = BTreeMap::new();
    for (i, m) in applied.iter().enumerate() {
        if v2_at == Some(i) {
            // Registering v2 migrated the stored Records ([SCHEMA-7]).
            for ((coll, _), state) in states.iter_mut() {
                if coll == DOCS {
                    state.rename_field("title", "heading");
                }
            }
        }
        let mut m = m.clone();
        if m.collection.as_str() == DOCS && v2_at.is_some_and(|at| i >= at) {
            // Applied after v2: the Server upcast it from the version it was written
            // under ([EVO-4]); one that upcasts to nothing changed nothing ([EVO-5]).
            match docs.upcast(&m.effect, m.schema_version.unwrap_or(1)) {
                Ok(Some(e)) => m.effect = e,
                Ok(None) => continue,
                Err(e) => {
                    return Err(Violation {
                        invariant: Invariant::ServerEqualsMergeModel,
                        detail: format!("applied {}: {e}", m.op_id.as_str()),
                    })
                }
            }
        }
        states
            .entry((
                m.collection.as_str().to_owned(),
                m.record_id.as_str().to_owned(),
            ))
            .or_default()
            .apply(&m);
    }
    if v2_at == Some(applied.len()) {
        for ((coll, _), state) in states.iter_mut() {
            if coll == DOCS {
                state.rename_field("title", "heading");
            }
        }
    }
    for coll in [DOCS, TALLY] {
        for r in 0..RECORDS {
            let id = format!("r{r}");
            let model = states
                .get(&(coll.to_owned(), id.clone()))
                .map(|s| {
                    let defaults = if coll == DOCS {
                        docs.defaults()
                    } else {
                        BTreeMap::new()
                    };
                    s.materialize(policy, &defaults)
                })
                .filter(|m| m.exists)
                .map(|m| Value::Object(m.value));
            let server = observer
                .get(coll, &id)
                .map_err(store_violation)?
                .map(Value::Object);
            if model != server {
                return Err(Violation {
                    invariant: Invariant::ServerEqualsMergeModel,
                    detail: format!(
                        "{coll}/{id} is {} on the server; the merge of its applied Mutations gives {}",
                        server.unwrap_or(Value::Null),
                        model.unwrap_or(Value::Null)
                    ),
                });
            }
        }
    }
    Ok(())
}

/// A write a Client reported done.
#[derive(Debug, Clone)]
pub(super) struct Done {
    pub(super) client: usize,
    pub(super) op_id: String,
    /// For increments of the tally: (Record ID, amount).
    pub(super) tally: Option<(String, i64)>,
    /// Written with a value no push can carry: expected in the dead letters.
    pub(super) poison: bool,
    /// In-process mode: the Record (collection, ID) if the Client's Mirror held it when written (its view showed
    /// it, right after a finished sync, with nothing pending).
    pub(super) seen: Option<(String, String)>,
    /// `collection/record`.
    pub(super) target: String,
}

/// Where a write a Client reported done ended.
pub(super) enum Fate {
    Applied,
    Dead(String),
    Superseded,
    Unknown(String),
}

/// Follows the receipts of the write `op_id` of `client` through re-issues and coalescing to
/// its end (`[CLIENT-1]`, `[CLIENT-4]`); `increment`: the write is an increment of the tally,
/// which is never superseded.
pub(super) fn fate(client: &mut Client, op_id: &str, increment: bool) -> Result<Fate, Violation> {
    let mut op = op_id.to_owned();
    for _ in 0..1000 {
        let receipt = client.receipt(&op).map_err(store_violation)?;
        match receipt {
            Some((state, _)) if state == "acknowledged" => return Ok(Fate::Applied),
            Some((state, Some(detail)))
                if state == "rejected" && detail.contains("re-issued as ") =>
            {
                op = detail
                    .rsplit("re-issued as ")
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned();
            }
            Some((state, Some(next))) if state == "superseded" => {
                if increment {
                    // An increment is never superseded: its amount would be lost.
                    return Ok(Fate::Unknown(format!("superseded by {next}")));
                }
                return Ok(Fate::Superseded);
            }
            Some((state, detail)) if state == "rejected" => {
                let dead = client
                    .dead_letters()
                    .map_err(store_violation)?
                    .into_iter()
                    .find(|(o, _, _)| *o == op);
                return Ok(match dead {
                    Some((_, _, problem)) => Fate::Dead(problem.to_string()),
                    None => Fate::Unknown(format!(
                        "rejected ({}) but not in the dead letters",
                        detail.unwrap_or_default()
                    )),
                });
            }
            Some((state, _)) => return Ok(Fate::Unknown(state)),
            None => return Ok(Fate::Unknown("without a receipt".into())),
        }
    }
    Ok(Fate::Unknown("a re-issue loop".into()))
}

/// A Client store that cannot be read: the Client cannot go on syncing.
pub(super) fn store_violation(e: ClientError) -> Violation {
    Violation {
        invariant: Invariant::SyncCompletes,
        detail: e.to_string(),
    }
}

/// A Client's optimistic view of both Collections, as canonical text.
pub(super) fn listing(c: &Client) -> String {
    let mut all = Map::new();
    for coll in [DOCS, TALLY] {
        let records: Map<String, Value> = c
            .list(coll)
            .unwrap_or_default()
            .into_iter()
            .map(|(id, v)| (id, Value::Object(v)))
            .collect();
        all.insert(coll.to_owned(), Value::Object(records));
    }
    Value::Object(all).to_string()
}

/// The Clients of a scenario, as the shared checks reach them.
pub(super) trait Fleet {
    /// How many Clients the scenario has (the observer not counted).
    fn clients(&self) -> usize;
    /// Client `i`, with the environment (its clock skew) set for it.
    fn client(&mut self, i: usize) -> &mut Client;
    /// Checked for each write before its fate is followed (the in-process mode checks
    /// `no-resurrection` here).
    fn before_fate(&mut self, _d: &Done) -> Result<(), Violation> {
        Ok(())
    }
    /// Notes a write that ended in its Client's dead letters.
    fn dead(&mut self, _d: &Done) {}
    /// `applied-once` over the Server's audit history, as this mode reaches it (see
    /// [`applied_once`]).
    fn check_applied_once(&self) -> Result<(), Violation>;
}

/// The invariants both modes check after quiescence, in this order: `no-wedged-client`,
/// `replica-equals-server` (each Client's view is `truth`, the [`listing`] of `observer`, a
/// fresh Client's pull), `server-equals-merge-model` (over `applied`, see
/// [`check_merge_model`]), `write-fate-known` and `no-valid-write-rejected` (over `done`),
/// `counter-equals-applied-increments`, `applied-once`, `checksums-equal`. The first broken
/// one is returned.
pub(super) fn check_after_quiescence(
    fleet: &mut impl Fleet,
    observer: &Client,
    truth: &str,
    applied: &[Mutation],
    v2_at: Option<usize>,
    done: &[Done],
) -> Result<(), Violation> {
    let n = fleet.clients();
    check_replicas(fleet, n, truth)?;
    check_merge_model(applied, v2_at, observer)?;
    let acknowledged = check_fates(fleet, done)?;
    check_counters(observer, &acknowledged)?;
    fleet.check_applied_once()?;
    check_audits(fleet, n)
}

/// `no-wedged-client` and `replica-equals-server` over Clients `0..n`: none keeps pending
/// writes, and each one's view (see [`listing`]) is `truth`, a fresh Client's pull.
fn check_replicas(fleet: &mut impl Fleet, n: usize, truth: &str) -> Result<(), Violation> {
    let fail = |invariant, detail: String| Err(Violation { invariant, detail });
    for c in 0..n {
        let status = fleet.client(c).status().map_err(store_violation)?;
        if status.pending > 0 {
            return fail(
                Invariant::NoWedgedClient,
                format!("client {c} keeps {} pending writes", status.pending),
            );
        }
    }
    for c in 0..n {
        let mine = listing(fleet.client(c));
        if mine != truth {
            return fail(
                Invariant::ReplicaEqualsServer,
                format!("client {c} sees {mine}, the server {truth}"),
            );
        }
    }
    Ok(())
}

/// `write-fate-known` and `no-valid-write-rejected` over every write reported done: each ends
/// applied, superseded or dead-lettered, and only a write no push can carry or one refused as
/// `mutation-too-old` is dead-lettered. Returns the increments acknowledged per tally Record.
fn check_fates(fleet: &mut impl Fleet, done: &[Done]) -> Result<BTreeMap<String, i64>, Violation> {
    let fail = |invariant, detail: String| Err(Violation { invariant, detail });
    let mut acknowledged: BTreeMap<String, i64> = BTreeMap::new();
    for d in done {
        fleet.before_fate(d)?;
        match fate(fleet.client(d.client), &d.op_id, d.tally.is_some())? {
            Fate::Applied => {
                if let Some((id, by)) = &d.tally {
                    *acknowledged.entry(id.clone()).or_default() += by;
                }
            }
            Fate::Dead(problem) => {
                fleet.dead(d);
                // A write that waited longer than retention may be refused as too old
                // ([CLIENT-10], [CLIENT-21]): the time steps make that common.
                if !d.poison && !problem.contains("mutation-too-old") {
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
    Ok(acknowledged)
}

/// `counter-equals-applied-increments`: each tally Record's counter `n`, as `observer` pulled
/// it, is the sum of the increments `acknowledged` to its Clients (`[IDEM-3]`, `[MERGE-1]`).
fn check_counters(
    observer: &Client,
    acknowledged: &BTreeMap<String, i64>,
) -> Result<(), Violation> {
    for r in 0..RECORDS {
        let id = format!("r{r}");
        let want = acknowledged.get(&id).copied();
        let got = observer
            .get(TALLY, &id)
            .map_err(store_violation)?
            .and_then(|v| v.get("n").and_then(Value::as_i64));
        if want.unwrap_or(0) != got.unwrap_or(0) {
            return Err(Violation {
                invariant: Invariant::CounterEqualsAppliedIncrements,
                detail: format!(
                    "{TALLY}/{id}.n is {got:?} on the server; acknowledged increments sum to {want:?}"
                ),
            });
        }
    }
    Ok(())
}

/// `checksums-equal`: an audit of each of Clients `0..n` repairs nothing (`[INT-9]`).
fn check_audits(fleet: &mut impl Fleet, n: usize) -> Result<(), Violation> {
    for c in 0..n {
        let detail = match fleet.client(c).audit() {
            Ok(a) if a.repaired.is_empty() => continue,
            Ok(a) => format!("client {c}: audit repaired buckets {:?}", a.repaired),
            Err(e) => format!("client {c}: audit: {e}"),
        };
        return Err(Violation {
            invariant: Invariant::ChecksumsEqual,
            detail,
        });
    }
    Ok(())
}

/// `applied-once`: the Server's audit history of each of `records` (collection, Record ID)
/// holds at most one `applied` entry per Op ID (`[IDEM-2]`, `[AUDIT-1]`). `page(collection, id,
/// after)` fetches one page of `GET …/records/{collection}/{id}/history?after={after}`: `None`
/// for 404 (a Record without history), an error text for what cannot be read. At most 1000
/// pages a Record.
pub(super) fn applied_once<'r>(
    records: impl IntoIterator<Item = (&'r str, String)>,
    mut page: impl FnMut(&str, &str, u64) -> Result<Option<Value>, String>,
) -> Result<(), Violation> {
    let fail = |detail: String| Violation {
        invariant: Invariant::AppliedOnce,
        detail,
    };
    for (coll, id) in records {
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        let mut after = 0u64;
        for _ in 0..1000 {
            let Some(page) =
                page(coll, &id, after).map_err(|e| fail(format!("history of {coll}/{id}: {e}")))?
            else {
                break;
            };
            let entries = page["entries"].as_array().cloned().unwrap_or_default();
            for e in &entries {
                if e["status"] == "applied" {
                    let op = e["op_id"].as_str().unwrap_or("").to_owned();
                    let count = seen.entry(op.clone()).or_default();
                    *count += 1;
                    if *count > 1 {
                        return Err(fail(format!("{coll}/{id}: op {op} applied {count} times")));
                    }
                }
                after = after.max(e["position"].as_u64().unwrap_or(0));
            }
            if page["has_more"] != true || entries.is_empty() {
                break;
            }
        }
    }
    Ok(())
}
