//! The protocol handlers: every endpoint of spec v1 as a function from parsed input to a message
//! or a [`Problem`]. This layer knows the spec and the storage traits; it knows nothing of HTTP.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use driftless_protocol::canonical::to_canonical_string;
use driftless_protocol::checksum::{self, bucket_of, record_digest, to_hex, SpaceChecksums};
use driftless_protocol::collection_schema::{
    CollectionSchema, CollectionSchemaList, MigrationStep, SchemaHistory,
};
use driftless_protocol::hlc::{Clock, Hlc};
use driftless_protocol::ids::{ClientId, CollectionName, OpId, RecordId};
use driftless_protocol::merge::{check_effect, RecordState, Stamp};
use driftless_protocol::messages::{
    Applied, BackoffPolicy, BucketChecksum, BucketResponse, ChecksumsResponse, CompactionResponse,
    Discovery, Duplicate, Effect, HistoryEntry, HistoryResponse, HistoryStatus, Jitter, Limits,
    ManifestEntry, ManifestResponse, Mutation, MutationResult, Outcome, PullResponse, PushResponse,
    Record, Rejected, Retention, Unknown, PROTOCOL_VERSIONS,
};
use driftless_protocol::problem::{Problem, ProblemType};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::Notify;

use crate::faults::{fault, Faults};
use crate::metrics::Metrics;
use crate::storage::{
    RecordView, SpaceRead, SpaceWrite, Storage, StorageError, StoredOp, StoredRecord,
};

/// The optional feature name of `POST /v1/spaces/{space}/compact`.
pub const FEATURE_COMPACTION_TRIGGER: &str = "compaction-trigger";

/// Server settings. The defaults are what `driftless serve` uses.
#[derive(Debug, Clone)]
pub struct Config {
    /// The limits announced in discovery and enforced.
    pub limits: Limits,
    /// Retention announced in discovery and enforced.
    pub retention: Retention,
    /// The backoff policy announced to Clients.
    pub backoff: BackoffPolicy,
    /// The node name in the Server's HLCs.
    pub node: String,
    /// Requests per second each User may make (token bucket of this size).
    pub rate_limit_per_s: u32,
    /// Whether `POST /v1/spaces/{space}/compact` is offered.
    pub compaction_trigger: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits {
                body_bytes_max: 1_048_576,
                mutations_per_push_max: 1000,
                op_ids_per_manifest_max: 1000,
                page_records_max: 1000,
                pull_wait_ms_max: 30_000,
                clock_skew_ms_max: 60_000,
                json_depth_max: 32,
            },
            retention: Retention {
                op_ids_s: 30 * 86_400,
                history_s: 30 * 86_400,
            },
            backoff: BackoffPolicy {
                initial_delay_ms: 500,
                delay_ms_cap: 60_000,
                multiplier: 2,
                jitter: Jitter::Full,
            },
            node: "server".into(),
            rate_limit_per_s: 500,
            compaction_trigger: true,
        }
    }
}

/// The source of wall-clock time, injected so tests can move it.
pub trait WallClock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The operating system's clock.
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// The Server's hybrid logical clock.
pub struct ServerClock {
    clock: Mutex<Clock>,
    wall: Arc<dyn WallClock>,
}

impl ServerClock {
    fn new(node: &str, last: Option<Hlc>, wall: Arc<dyn WallClock>) -> Self {
        let clock = match last {
            // Resume after the persisted value, under our own node name.
            Some(h) => Clock::resume(&Hlc::new(h.physical_ms(), h.logical(), node).unwrap_or(h)),
            None => Clock::new(node).expect("the configured node name is valid"),
        };
        Self {
            clock: Mutex::new(clock),
            wall,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Clock> {
        self.clock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a new value (for a response or a Horizon).
    pub fn issue(&self) -> Hlc {
        let now = self.wall.now_ms();
        self.lock().issue(now)
    }

    /// Merges a Mutation's HLC (`[HLC-6]`).
    pub fn merge(&self, remote: &Hlc) {
        let now = self.wall.now_ms();
        self.lock().merge(remote, now);
    }

    /// The latest value issued or merged.
    pub fn last(&self) -> Hlc {
        self.lock().last()
    }

    /// Wall-clock milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.wall.now_ms()
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The Token's User.
    pub user: String,
}

/// A successful answer: a status (200 or 201) and a JSON body.
pub type Answer<T> = Result<T, Problem>;

fn internal(e: StorageError) -> Problem {
    tracing::error!(error = %e, "storage failure");
    Problem::new(
        ProblemType::Internal,
        "the server could not complete the request",
    )
}

fn invalid_request(pointer: &str, message: &str, detail: &str) -> Problem {
    Problem::new(ProblemType::InvalidRequest, detail).with_error(pointer, message)
}

/// Compiled validators of one Collection Schema version.
struct CompiledSchema {
    full: jsonschema::Validator,
    /// The same schema without its root `required`, for validating the Fields a patch sets.
    partial: jsonschema::Validator,
    required: Vec<String>,
}

/// The reference server's behaviour, over any [`Storage`].
pub struct Service<S: Storage> {
    storage: Arc<S>,
    config: Config,
    clock: ServerClock,
    notifiers: Mutex<HashMap<String, Arc<Notify>>>,
    compiled: Mutex<HashMap<(String, String, u32), Arc<CompiledSchema>>>,
    metrics: Arc<Metrics>,
    faults: Faults,
}

/// Pointers of the members of a value that do not match a schema (no values: `[ERR-9]`).
/// A push body as read by [`Service::parse_push`]: exactly the two members, each Mutation kept
/// as the text it was sent as.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushText<'a> {
    client_id: String,
    #[serde(borrow)]
    mutations: Vec<&'a serde_json::value::RawValue>,
}

/// The `op_id` of a Mutation's text; every other member is skipped unread.
#[derive(Deserialize)]
struct OpIdOf<'a> {
    #[serde(borrow)]
    op_id: Option<std::borrow::Cow<'a, str>>,
}

/// Parses a request body, or gives the Problem `invalid-json` (`[HTTP-5]`).
pub fn parse_json(bytes: &[u8]) -> Result<Value, Problem> {
    serde_json::from_slice(bytes).map_err(|e| {
        Problem::new(
            ProblemType::InvalidJson,
            format!(
                "the body is not UTF-8 JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

fn schema_errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    let mut pointers: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.instance_path().to_string())
        .collect();
    pointers.sort();
    pointers.dedup();
    pointers
}

fn mutation_validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let schema = driftless_protocol::export::message_schemas()
            .into_iter()
            .find(|(n, _)| n == "mutation")
            .expect("the mutation schema exists")
            .1;
        jsonschema::validator_for(&schema).expect("the mutation schema compiles")
    })
}

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

/// What one push Mutation turned into.
struct Decided {
    result: MutationResult,
    applied: bool,
}

impl<S: Storage> Service<S> {
    /// A service over `storage`; the clock resumes after the persisted value.
    pub fn new(
        storage: Arc<S>,
        config: Config,
        wall: Arc<dyn WallClock>,
        metrics: Arc<Metrics>,
        faults: Faults,
    ) -> Result<Self, StorageError> {
        let last = storage.load_clock()?;
        let clock = ServerClock::new(&config.node, last, wall);
        Ok(Self {
            storage,
            config,
            clock,
            notifiers: Mutex::new(HashMap::new()),
            compiled: Mutex::new(HashMap::new()),
            metrics,
            faults,
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The Server's clock.
    pub fn clock(&self) -> &ServerClock {
        &self.clock
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The faults in force (empty unless built with `fault-injection` and asked for).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    fn notifier(&self, space: &str) -> Arc<Notify> {
        let mut map = self.notifiers.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(space.to_owned()).or_default().clone()
    }

    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Self) -> Result<T, Problem> + Send + 'static,
    ) -> Result<T, Problem> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "handler task failed");
                Err(Problem::new(
                    ProblemType::Internal,
                    "the server could not complete the request",
                ))
            })
    }

    // -----------------------------------------------------------------------------------------
    // Discovery

    /// `GET /.well-known/driftless`.
    pub fn discovery(&self) -> Discovery {
        let mut features = Vec::new();
        if self.config.compaction_trigger {
            features.push(FEATURE_COMPACTION_TRIGGER.to_owned());
        }
        Discovery {
            protocol_versions: PROTOCOL_VERSIONS.iter().map(|v| v.to_string()).collect(),
            server_clock: self.clock.issue(),
            limits: self.config.limits.clone(),
            retention: self.config.retention.clone(),
            backoff: self.config.backoff.clone(),
            features,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Push

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
        let results = self
            .blocking(move |me| {
                me.push_batch(&space_owned, &user, &client_id, &items)
                    .map_err(internal)
            })
            .await?;
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
    /// run are sent at once, and the real write lands 300 ms later.
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
        let me = self.clone();
        let space_later = space.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let notify = me.notifier(&space_later);
            let _ = me
                .blocking(move |me| {
                    me.push_batch(&space_later, &user, &client_id, &items)
                        .map_err(internal)
                })
                .await;
            notify.notify_waiters();
        });
        Ok(PushResponse {
            server_clock: self.clock.issue(),
            results: dry,
        })
    }

    /// Checks the envelope of a push (`[PUSH-6]`, `[PUSH-7]`): everything that fails the whole
    /// request. Each Mutation with a valid `op_id` is judged on its own later, from its text.
    ///
    /// A well-formed body is read without building a JSON tree: each Mutation stays the text
    /// the Client sent, so that a byte-identical replay is recognised without parsing it. Any
    /// other body takes [`Self::parse_push_tree`], which names every error.
    fn parse_push(&self, body: &[u8]) -> Answer<(ClientId, Vec<(OpId, String)>)> {
        if let Ok(push) = serde_json::from_slice::<PushText<'_>>(body) {
            if let Ok(client_id) = push.client_id.parse::<ClientId>() {
                self.check_batch_size(push.mutations.len())?;
                let items: Option<Vec<(OpId, String)>> = push
                    .mutations
                    .iter()
                    .map(|m| {
                        let head: OpIdOf<'_> = serde_json::from_str(m.get()).ok()?;
                        Some((head.op_id?.parse::<OpId>().ok()?, m.get().to_owned()))
                    })
                    .collect();
                if let Some(items) = items {
                    return Ok((client_id, items));
                }
            }
        }
        let (client_id, items) = self.parse_push_tree(parse_json(body)?)?;
        let items = items
            .into_iter()
            .map(|(op_id, m)| (op_id, m.to_string()))
            .collect();
        Ok((client_id, items))
    }

    fn check_batch_size(&self, n: usize) -> Answer<()> {
        let max = self.config.limits.mutations_per_push_max;
        if n > max as usize {
            return Err(Problem::new(
                ProblemType::BatchTooLarge,
                format!("{n} mutations exceed the limit of {max} per push"),
            ));
        }
        Ok(())
    }

    fn parse_push_tree(&self, body: Value) -> Answer<(ClientId, Vec<(OpId, Value)>)> {
        let Value::Object(mut obj) = body else {
            return Err(invalid_request(
                "",
                "expected an object",
                "the body must be a push-request object",
            ));
        };
        let mut problem = Problem::new(
            ProblemType::InvalidRequest,
            "the body is not a valid push-request",
        );
        let mut bad = false;
        for key in obj.keys() {
            if key != "client_id" && key != "mutations" {
                problem = problem.with_error(format!("/{key}"), "unknown member");
                bad = true;
            }
        }
        let client_id = match obj.remove("client_id") {
            Some(Value::String(s)) => s.parse::<ClientId>().ok(),
            _ => None,
        };
        if client_id.is_none() {
            problem = problem.with_error("/client_id", "a client ID is required");
            bad = true;
        }
        let mutations = match obj.remove("mutations") {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(problem.with_error("/mutations", "expected an array of mutations"));
            }
        };
        self.check_batch_size(mutations.len())?;
        let mut items = Vec::with_capacity(mutations.len());
        for (i, m) in mutations.into_iter().enumerate() {
            match m
                .get("op_id")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<OpId>().ok())
            {
                Some(op_id) => items.push((op_id, m)),
                None => {
                    problem = problem
                        .with_error(format!("/mutations/{i}/op_id"), "a valid op ID is required");
                    bad = true;
                }
            }
        }
        match client_id {
            Some(c) if !bad => Ok((c, items)),
            _ => Err(problem),
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
        let tree = tree.unwrap_or_else(|| parse(text));
        let body_digest = match &tree {
            Ok(v) => canonical(v),
            Err(_) => text_digest.clone(),
        };
        let (outcome, history) = match tree.as_ref().map(|v| (v, Mutation::deserialize(v))) {
            Err(e) => (
                Outcome::Rejected(Rejected {
                    op_id: op_id.clone(),
                    problem: Problem::new(
                        ProblemType::InvalidMutation,
                        format!("the mutation holds JSON this server cannot represent: {e}"),
                    ),
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
            tx.put_op(op_id.as_str(), &stored, hlc_ms)?;
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

    fn compiled(
        &self,
        space: &str,
        doc: &CollectionSchema,
    ) -> Result<Arc<CompiledSchema>, StorageError> {
        let key = (space.to_owned(), doc.collection.to_string(), doc.version);
        let mut cache = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let full_schema = Value::Object(doc.schema.clone());
        let mut partial_schema = doc.schema.clone();
        let required = partial_schema
            .remove("required")
            .and_then(|r| r.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let compile = |s: &Value| {
            jsonschema::validator_for(s).map_err(|e| {
                StorageError::Corrupt(format!("registered schema does not compile: {e}"))
            })
        };
        let compiled = Arc::new(CompiledSchema {
            full: compile(&full_schema)?,
            partial: compile(&Value::Object(partial_schema))?,
            required,
        });
        cache.insert(key, compiled.clone());
        Ok(compiled)
    }

    /// Applies a Mutation's upcast Effect to its Record and returns the new Change Sequence.
    /// `None` is an upcast Effect that changes nothing (`[EVO-5]`): it still gets a Change
    /// Sequence, so that its `applied` Outcome has one, but no Record changes.
    fn apply(
        &self,
        tx: &mut dyn SpaceWrite,
        ctx: &mut BatchCtx,
        m: &Mutation,
        effect: Option<&Effect>,
    ) -> Result<u64, StorageError> {
        let change_seq = tx.next_change_seq()?;
        let Some(effect) = effect else {
            return Ok(change_seq);
        };
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

    // -----------------------------------------------------------------------------------------
    // Manifest

    /// `POST /v1/spaces/{space}/manifest`.
    pub async fn manifest(self: &Arc<Self>, space: &str, body: Value) -> Answer<ManifestResponse> {
        let op_ids = match body {
            Value::Object(mut obj) => {
                if let Some(k) = obj.keys().find(|k| *k != "op_ids") {
                    return Err(invalid_request(
                        &format!("/{k}"),
                        "unknown member",
                        "the body is not a valid manifest-request",
                    ));
                }
                match obj.remove("op_ids") {
                    Some(Value::Array(ids)) if !ids.is_empty() => ids,
                    _ => {
                        return Err(invalid_request(
                            "/op_ids",
                            "expected a non-empty array",
                            "op_ids must be a non-empty array of op IDs",
                        ))
                    }
                }
            }
            _ => {
                return Err(invalid_request(
                    "",
                    "expected an object",
                    "the body must be a manifest-request object",
                ))
            }
        };
        if op_ids.len() > self.config.limits.op_ids_per_manifest_max as usize {
            return Err(Problem::new(
                ProblemType::BatchTooLarge,
                format!(
                    "{} op IDs exceed the limit of {}",
                    op_ids.len(),
                    self.config.limits.op_ids_per_manifest_max
                ),
            ));
        }
        let mut parsed = Vec::with_capacity(op_ids.len());
        let mut problem = Problem::new(ProblemType::InvalidRequest, "op_ids holds invalid op IDs");
        let mut bad = false;
        for (i, id) in op_ids.iter().enumerate() {
            match id.as_str().and_then(|s| s.parse::<OpId>().ok()) {
                Some(op) => parsed.push(op),
                None => {
                    problem = problem.with_error(format!("/op_ids/{i}"), "not a valid op ID");
                    bad = true;
                }
            }
        }
        if bad {
            return Err(problem);
        }
        let space = space.to_owned();
        let entries = self
            .blocking(move |me| {
                me.storage
                    .read(&space, |tx| {
                        let ids: Vec<&str> = parsed.iter().map(OpId::as_str).collect();
                        let known = tx.ops(&ids)?;
                        parsed
                            .into_iter()
                            .map(|op_id| {
                                Ok(match known.get(op_id.as_str()).cloned() {
                                    None => ManifestEntry::Unknown(Unknown { op_id }),
                                    Some(stored) => {
                                        match serde_json::from_str::<Outcome>(&stored.outcome)
                                            .map_err(|e| StorageError::Corrupt(e.to_string()))?
                                        {
                                            Outcome::Applied(a) => ManifestEntry::Applied(a),
                                            Outcome::Rejected(r)
                                                if fault!(me.faults, ManifestForgetsRejections) =>
                                            {
                                                ManifestEntry::Unknown(Unknown { op_id: r.op_id })
                                            }
                                            Outcome::Rejected(r) => ManifestEntry::Rejected(r),
                                        }
                                    }
                                })
                            })
                            .collect::<Result<Vec<_>, StorageError>>()
                    })
                    .map_err(internal)
            })
            .await?;
        Ok(ManifestResponse {
            server_clock: self.clock.issue(),
            entries,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Pull

    /// `GET /v1/spaces/{space}/pull`, with its query parameters.
    pub async fn pull(
        self: &Arc<Self>,
        space: &str,
        cursor: Option<&str>,
        limit: Option<&str>,
        wait_ms: Option<&str>,
    ) -> Answer<PullResponse> {
        let page_max = self.config.limits.page_records_max as u64;
        let limit = parse_range("limit", limit, 1, page_max, page_max)? as usize;
        let wait_max = self.config.limits.pull_wait_ms_max;
        let wait_ms = parse_range("wait_ms", wait_ms, 0, wait_max, 0)?;
        let position = match cursor {
            None => 0,
            Some(c) => decode_cursor(space, c).ok_or_else(|| {
                Problem::new(
                    ProblemType::InvalidCursor,
                    "the cursor was not issued for this space by this server",
                )
            })?,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        let notify = self.notifier(space);
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let space_owned = space.to_owned();
            let (meta, mut records) = self
                .blocking(move |me| {
                    me.storage
                        .read(&space_owned, |tx| {
                            Ok((tx.meta()?, tx.records_changed_after(position, limit + 1)?))
                        })
                        .map_err(internal)
                })
                .await?;
            if cursor.is_some()
                && position < meta.compaction_point
                && !fault!(self.faults, NoCursorExpiry)
            {
                return Err(Problem::new(
                    ProblemType::CursorExpired,
                    format!(
                        "the space was compacted through change {}; resync from no cursor",
                        meta.compaction_point
                    ),
                ));
            }
            let has_more = records.len() > limit;
            records.truncate(limit);
            let through = match records.last() {
                Some(last) if has_more => last.change_seq,
                _ => meta.latest_seq.max(position),
            };
            if fault!(self.faults, PageBoundarySkip) && has_more {
                // The injected bug: the last Record of a full page is dropped, yet the Cursor
                // moves past it.
                records.pop();
            }
            let waited_out = tokio::time::Instant::now() >= deadline;
            if !records.is_empty() || has_more || wait_ms == 0 || waited_out {
                self.metrics
                    .observe_pull_lag(meta.latest_seq.saturating_sub(position));
                return Ok(PullResponse {
                    server_clock: self.clock.issue(),
                    cursor: encode_cursor(space, through),
                    through,
                    has_more,
                    records: records.iter().map(to_wire).collect(),
                });
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    // -----------------------------------------------------------------------------------------
    // Records and history

    /// `GET /v1/spaces/{space}/records/{collection}/{id}`.
    pub async fn record(
        self: &Arc<Self>,
        space: &str,
        collection: &str,
        id: &str,
    ) -> Answer<Record> {
        let (collection, id) = parse_record_key(collection, id)?;
        let space = space.to_owned();
        let (c, i) = (collection.to_string(), id.to_string());
        let found = self
            .blocking(move |me| {
                me.storage
                    .read(&space, |tx| tx.record(&c, &i))
                    .map_err(internal)
            })
            .await?;
        found.map(|r| to_wire(&r)).ok_or_else(|| {
            Problem::new(
                ProblemType::RecordNotFound,
                format!("{collection}/{id} does not exist in this space"),
            )
        })
    }

    /// `GET /v1/spaces/{space}/records/{collection}/{id}/history`.
    pub async fn history(
        self: &Arc<Self>,
        space: &str,
        collection: &str,
        id: &str,
        after: Option<&str>,
        limit: Option<&str>,
    ) -> Answer<HistoryResponse> {
        let (collection, id) = parse_record_key(collection, id)?;
        let page_max = self.config.limits.page_records_max as u64;
        let limit = parse_range("limit", limit, 1, page_max, page_max)? as usize;
        let after = parse_range("after", after, 0, u64::MAX, 0)?;
        let space = space.to_owned();
        let (c, i) = (collection.to_string(), id.to_string());
        let mut entries = self
            .blocking(move |me| {
                me.storage
                    .read(&space, |tx| tx.history(&c, &i, after, limit + 1))
                    .map_err(internal)
            })
            .await?;
        let has_more = entries.len() > limit;
        entries.truncate(limit);
        Ok(HistoryResponse {
            server_clock: self.clock.issue(),
            collection,
            id,
            has_more,
            entries,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Integrity

    /// `GET /v1/spaces/{space}/checksums`.
    pub async fn checksums(self: &Arc<Self>, space: &str) -> Answer<ChecksumsResponse> {
        let space = space.to_owned();
        let (meta, digests) = self
            .blocking(move |me| {
                me.storage
                    .read(&space, |tx| Ok((tx.meta()?, tx.record_digests()?)))
                    .map_err(internal)
            })
            .await?;
        let mut sums = SpaceChecksums::default();
        for (bucket, digest) in digests {
            sums.add_digest(bucket, digest);
        }
        let buckets = sums.buckets();
        Ok(ChecksumsResponse {
            server_clock: self.clock.issue(),
            through: meta.latest_seq,
            algorithm: checksum::ALGORITHM.to_owned(),
            space_digest: to_hex(&checksum::space_digest(&buckets)),
            buckets: buckets
                .iter()
                .enumerate()
                .map(|(i, b)| BucketChecksum {
                    bucket: i as u8,
                    records: b.records,
                    digest: to_hex(&b.digest),
                })
                .collect(),
        })
    }

    /// `GET /v1/spaces/{space}/buckets/{bucket}`.
    pub async fn bucket(
        self: &Arc<Self>,
        space: &str,
        bucket: &str,
        after: Option<&str>,
        limit: Option<&str>,
    ) -> Answer<BucketResponse> {
        let bucket: u8 = bucket.parse().ok().filter(|b| *b < 64).ok_or_else(|| {
            invalid_request(
                "/path/bucket",
                "out of range",
                "bucket must be an integer from 0 to 63",
            )
        })?;
        let page_max = self.config.limits.page_records_max as u64;
        let limit = parse_range("limit", limit, 1, page_max, page_max)? as usize;
        let after = match after {
            None => None,
            Some(a) => {
                let (c, i) = a.split_once('/').ok_or_else(|| {
                    invalid_request(
                        "/query/after",
                        "expected collection/id",
                        "after must be the next_after of a previous page",
                    )
                })?;
                Some((c.to_owned(), i.to_owned()))
            }
        };
        let space = space.to_owned();
        let (meta, mut records) = self
            .blocking(move |me| {
                me.storage
                    .read(&space, |tx| {
                        let after = after.as_ref().map(|(c, i)| (c.as_str(), i.as_str()));
                        Ok((tx.meta()?, tx.bucket_records(bucket, after, limit + 1)?))
                    })
                    .map_err(internal)
            })
            .await?;
        let has_more = records.len() > limit;
        records.truncate(limit);
        let next_after = has_more
            .then(|| records.last().map(|r| format!("{}/{}", r.collection, r.id)))
            .flatten();
        Ok(BucketResponse {
            server_clock: self.clock.issue(),
            through: meta.latest_seq,
            bucket,
            has_more,
            next_after,
            records: records.iter().map(to_wire).collect(),
        })
    }

    // -----------------------------------------------------------------------------------------
    // Collection schemas

    /// `GET /v1/spaces/{space}/collections/{collection}/schemas`.
    pub async fn list_schemas(
        self: &Arc<Self>,
        space: &str,
        collection: &str,
    ) -> Answer<CollectionSchemaList> {
        let collection = parse_collection(collection)?;
        let space = space.to_owned();
        let c = collection.to_string();
        let versions = self
            .blocking(move |me| {
                me.storage
                    .read(&space, |tx| tx.schemas(&c))
                    .map_err(internal)
            })
            .await?;
        Ok(CollectionSchemaList {
            collection,
            versions,
        })
    }

    /// `PUT /v1/spaces/{space}/collections/{collection}/schemas/{version}`. Returns whether the
    /// version was newly registered (201) or already registered (200), and the stored document.
    pub async fn put_schema(
        self: &Arc<Self>,
        space: &str,
        collection: &str,
        version: &str,
        body: Value,
    ) -> Answer<(bool, CollectionSchema)> {
        let collection = parse_collection(collection)?;
        let version: u32 = version.parse().ok().filter(|v| *v >= 1).ok_or_else(|| {
            invalid_request(
                "/path/version",
                "expected a positive integer",
                "version must be a positive integer",
            )
        })?;
        let doc: CollectionSchema = serde_json::from_value(body).map_err(|e| {
            invalid_request(
                "",
                &e.to_string(),
                "the body is not a valid collection-schema document",
            )
        })?;
        if doc.collection != collection {
            return Err(invalid_request(
                "/collection",
                "differs from the path",
                "the document's collection differs from the path",
            ));
        }
        if doc.version != version {
            return Err(invalid_request(
                "/version",
                "differs from the path",
                "the document's version differs from the path",
            ));
        }
        let schema = Value::Object(doc.schema.clone());
        if let Err(e) = jsonschema::meta::validate(&schema) {
            return Err(Problem::new(
                ProblemType::InvalidSchema,
                format!("the schema is not a valid JSON Schema: {e}"),
            ));
        }
        if let Err(e) = jsonschema::validator_for(&schema) {
            return Err(Problem::new(
                ProblemType::InvalidSchema,
                format!("the schema cannot be compiled: {e}"),
            ));
        }
        let space = space.to_owned();
        let result = self
            .blocking(move |me| {
                me.storage
                    .write(&space, |tx| {
                        let existing = tx.schemas(doc.collection.as_str())?;
                        let latest = existing.len() as u32;
                        if doc.version <= latest {
                            let stored = &existing[doc.version as usize - 1];
                            let same = to_canonical_string(&serde_json::to_value(stored).unwrap_or_default())
                                == to_canonical_string(&serde_json::to_value(&doc).unwrap_or_default());
                            return Ok(if same {
                                Ok((false, stored.clone()))
                            } else {
                                Err(Problem::new(
                                    ProblemType::SchemaConflict,
                                    format!("version {} of {} is registered with a different document", doc.version, doc.collection),
                                ))
                            });
                        }
                        if doc.version > latest + 1 {
                            return Ok(Err(Problem::new(
                                ProblemType::SchemaVersionGap,
                                format!("the latest registered version of {} is {latest}; register version {} next", doc.collection, latest + 1),
                            )));
                        }
                        if let Err(e) = doc.check(existing.last()) {
                            return Ok(Err(Problem::new(ProblemType::InvalidSchema, e.to_string())));
                        }
                        tx.put_schema(&doc)?;
                        let mut versions = existing;
                        versions.push(doc.clone());
                        let history = SchemaHistory::new(versions).map_err(|e| StorageError::Corrupt(e.to_string()))?;
                        me.upcast_records(tx, &doc, &history)?;
                        tx.save_clock(&me.clock.last())?;
                        Ok(Ok((true, doc)))
                    })
                    .map_err(internal)?
            })
            .await?;
        Ok(result)
    }

    /// Migrates the stored state of every Record of a Collection to a newly registered version
    /// (`[SCHEMA-7]`, `[SCHEMA-9]`).
    fn upcast_records(
        &self,
        tx: &mut dyn SpaceWrite,
        doc: &CollectionSchema,
        history: &SchemaHistory,
    ) -> Result<(), StorageError> {
        for mut record in tx.collection_records(doc.collection.as_str())? {
            for step in &doc.migration {
                match step {
                    MigrationStep::RenameField { from, to } => {
                        record.state.rename_field(from.as_str(), to.as_str())
                    }
                    MigrationStep::RemoveField { field } => {
                        record.state.remove_field(field.as_str())
                    }
                    MigrationStep::AddField { .. } => {}
                }
            }
            let view = view_of(
                &record.collection,
                &record.id,
                &record.state,
                history,
                &self.faults,
            );
            if view != record.view {
                record.change_seq = tx.next_change_seq()?;
                record.view = view;
            }
            tx.put_record(&record)?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Compaction

    /// `POST /v1/spaces/{space}/compact` (`[RET-10]`).
    pub async fn compact(self: &Arc<Self>, space: &str) -> Answer<CompactionResponse> {
        if !self.config.compaction_trigger {
            return Err(Problem::new(
                ProblemType::NotFound,
                "this server does not offer compaction-trigger",
            ));
        }
        let space = space.to_owned();
        let (horizon, point, purged) = self
            .blocking(move |me| {
                me.storage
                    .write(&space, |tx| {
                        let horizon = me.clock.issue();
                        let point = tx.meta()?.latest_seq;
                        let purged = tx.compact(&horizon, point)?;
                        tx.save_clock(&me.clock.last())?;
                        Ok((horizon, point, purged))
                    })
                    .map_err(internal)
            })
            .await?;
        Ok(CompactionResponse {
            server_clock: self.clock.issue(),
            horizon,
            compaction_point: point,
            tombstones_purged: purged,
        })
    }

    /// Periodic compaction of every Space past the retention horizon (`[RET-8]`).
    pub async fn compact_expired(self: &Arc<Self>) -> Result<(), StorageError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let now = me.clock.now_ms();
            let history_before = now.saturating_sub(me.config.retention.history_s * 1000);
            let ops_before = now.saturating_sub(me.config.retention.op_ids_s * 1000);
            for space in me.storage.spaces()? {
                me.storage.write(&space, |tx| {
                    let horizon = Hlc::new(history_before, 0, &me.config.node)
                        .map_err(|e| StorageError::Corrupt(e.to_string()))?;
                    let meta = tx.meta()?;
                    if meta.horizon.as_ref().is_none_or(|h| *h < horizon) {
                        // Tombstones purged here may be newer than some Cursors: compact() raises
                        // the compaction point past every purged tombstone.
                        tx.compact(&horizon, meta.compaction_point)?;
                    }
                    tx.expire(ops_before, history_before)
                })?;
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(StorageError::Backend(e.to_string())))
    }
}

/// The Effect of [`crate::faults::Fault::UnknownFieldsDropped`]: Fields the latest schema does not
/// declare are silently dropped from put and patch values.
#[cfg(feature = "fault-injection")]
fn drop_undeclared(effect: Effect, history: &SchemaHistory) -> Effect {
    let Some(props) = history
        .latest()
        .and_then(|s| s.schema.get("properties"))
        .and_then(Value::as_object)
    else {
        return effect;
    };
    let keep = |m: Map<String, Value>| {
        m.into_iter()
            .filter(|(k, _)| props.contains_key(k))
            .collect()
    };
    match effect {
        Effect::Put { value } => Effect::Put { value: keep(value) },
        Effect::Patch { set, unset } => Effect::Patch {
            set: keep(set),
            unset,
        },
        other => other,
    }
}

/// Validates an upcast Effect against the latest Collection Schema (`[EVO-6]`, `[EVO-7]`).
fn conforms(
    compiled: &CompiledSchema,
    effect: &Effect,
    history: &SchemaHistory,
) -> Result<(), String> {
    let fail = |v: &jsonschema::Validator, instance: &Value| {
        let pointers = schema_errors(v, instance);
        if pointers.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the value does not conform to the collection schema at {}",
                pointers.join(", ")
            ))
        }
    };
    match effect {
        Effect::Put { value } => {
            let mut filled = value.clone();
            for (field, default) in history.defaults() {
                filled.entry(field).or_insert(default);
            }
            fail(&compiled.full, &Value::Object(filled))
        }
        Effect::Patch { set, unset } => {
            if let Some(f) = unset
                .iter()
                .find(|f| compiled.required.iter().any(|r| r == f.as_str()))
            {
                return Err(format!("field {f} is required and cannot be unset"));
            }
            fail(&compiled.partial, &Value::Object(set.clone()))
        }
        Effect::SetAdd { field, elements } => {
            let instance: Map<String, Value> =
                [(field.to_string(), Value::Array(elements.clone()))]
                    .into_iter()
                    .collect();
            fail(&compiled.partial, &Value::Object(instance))
        }
        Effect::Resolve { field, value } => {
            let instance: Map<String, Value> =
                [(field.to_string(), value.clone())].into_iter().collect();
            fail(&compiled.partial, &Value::Object(instance))
        }
        Effect::Delete {} | Effect::Increment { .. } | Effect::SetRemove { .. } => Ok(()),
    }
}

/// What a Record's state means under the Collection's current schema history.
pub fn view_of(
    collection: &str,
    id: &str,
    state: &RecordState,
    history: &SchemaHistory,
    faults: &Faults,
) -> RecordView {
    let defaults = history.defaults();
    let m = state.materialize(|f| history.policy(f), &defaults);
    let bucket = bucket_of(collection, id);
    if !m.exists {
        return RecordView {
            exists: false,
            value: None,
            conflicts: None,
            digest: None,
            bucket,
            schema_version: history.latest().map(|s| s.version),
        };
    }
    let mut digest = record_digest(collection, id, &m.value);
    if fault!(faults, WrongChecksum) {
        digest[31] ^= 1;
    }
    RecordView {
        exists: true,
        digest: Some(digest),
        conflicts: (!m.conflicts.is_empty()).then_some(m.conflicts),
        value: Some(m.value),
        bucket,
        schema_version: history.latest().map(|s| s.version),
    }
}

/// The wire form of a stored Record.
pub fn to_wire(r: &StoredRecord) -> Record {
    Record {
        collection: r
            .collection
            .parse()
            .unwrap_or_else(|_| "invalid".parse().expect("valid name")),
        id: r
            .id
            .parse()
            .unwrap_or_else(|_| "invalid".parse().expect("valid id")),
        change_seq: r.change_seq.max(1),
        deleted: !r.view.exists,
        schema_version: r.view.schema_version,
        value: r.view.value.clone(),
        conflicts: r.view.conflicts.clone(),
        digest: r.view.digest.as_ref().map(to_hex),
    }
}

fn parse_collection(collection: &str) -> Answer<CollectionName> {
    collection.parse().map_err(|_| {
        invalid_request(
            "/path/collection",
            &format!("does not match {}", "^[a-z][a-z0-9_]{0,63}$"),
            &format!("{collection:?} is not a collection name"),
        )
    })
}

fn parse_record_key(collection: &str, id: &str) -> Answer<(CollectionName, RecordId)> {
    let collection = parse_collection(collection)?;
    let id = id.parse().map_err(|_| {
        invalid_request(
            "/path/id",
            "does not match ^[A-Za-z0-9._~-]{1,128}$",
            "the record ID is not valid",
        )
    })?;
    Ok((collection, id))
}

fn parse_range(name: &str, value: Option<&str>, min: u64, max: u64, default: u64) -> Answer<u64> {
    match value {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                invalid_request(
                    &format!("/query/{name}"),
                    &format!("expected an integer from {min} to {max}"),
                    &format!("{name} must be an integer from {min} to {max}"),
                )
            }),
    }
}

fn space_tag(space: &str) -> String {
    to_hex(&checksum::sha256(space.as_bytes()))[..8].to_owned()
}

/// A Cursor: `c1.POSITION.TAG`, where TAG ties it to its Space (`[PULL-13]`).
pub fn encode_cursor(space: &str, position: u64) -> String {
    format!("c1.{position}.{}", space_tag(space))
}

/// The position of a Cursor issued for `space`, if it is one.
pub fn decode_cursor(space: &str, cursor: &str) -> Option<u64> {
    let rest = cursor.strip_prefix("c1.")?;
    let (position, tag) = rest.split_once('.')?;
    (tag == space_tag(space)).then_some(())?;
    position.parse().ok()
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

    #[test]
    fn cursors_are_tied_to_their_space() {
        let c = encode_cursor("demo", 42);
        assert_eq!(decode_cursor("demo", &c), Some(42));
        assert_eq!(decode_cursor("other", &c), None);
        assert_eq!(decode_cursor("demo", "garbage"), None);
    }
}
