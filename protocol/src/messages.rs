//! Every wire message of protocol v1, as serde + schemars types.
//!
//! The JSON Schemas in `schemas/v1/` are generated from these types (see [`crate::export`]), so
//! the Rust code, the schemas and the spec's examples describe one format. Request messages are
//! closed (`additionalProperties: false`, spec `[HTTP-15]`); response messages are open, because
//! minor versions may add members and Clients ignore what they do not know (`[HTTP-10]`).
//!
//! A push, as a Client builds it and a Server reads it:
//!
//! ```
//! use driftless_protocol::messages::{Effect, Mutation, PushRequest};
//! let body = r#"{"client_id":"client-a","mutations":[{"op_id":"op-00000001","seq":1,
//!   "collection":"tasks","record_id":"t1","hlc":"019b76daa87b-0000-client-a",
//!   "effect":{"kind":"increment","field":"likes","by":2}}]}"#;
//! let push: PushRequest = serde_json::from_str(body).unwrap();
//! assert!(matches!(push.mutations[0].effect, Effect::Increment { by: 2, .. }));
//! // Unknown members in a request are refused.
//! assert!(serde_json::from_str::<PushRequest>(r#"{"client_id":"client-a","mutations":[],"x":1}"#).is_err());
//! ```

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::hlc::Hlc;
use crate::ids::{ClientId, CollectionName, FieldName, OpId, RecordId, SpaceId};
use crate::problem::Problem;

/// The protocol versions this crate implements.
pub const PROTOCOL_VERSIONS: &[&str] = &["1.0"];

/// Largest magnitude of an `increment`'s `by`: the IEEE 754 safe integers (`[MUT-6]`).
pub const SAFE_INTEGER_MAX: i64 = 9_007_199_254_740_991;

// ---------------------------------------------------------------------------------------------
// Discovery

/// The discovery document served at `GET /.well-known/driftless` (spec chapter 01).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Discovery document")]
pub struct Discovery {
    /// Every protocol version the Server supports, as `MAJOR.MINOR`.
    #[schemars(length(min = 1), inner(regex(pattern = r"^[0-9]+\.[0-9]+$")))]
    pub protocol_versions: Vec<String>,
    /// The Server's clock when it answered.
    pub server_clock: Hlc,
    /// The limits the Server enforces (spec chapter 11).
    pub limits: Limits,
    /// How long the Server remembers Op IDs and keeps history (spec chapter 11).
    pub retention: Retention,
    /// The backoff policy Clients must follow when retrying (spec chapter 08).
    pub backoff: BackoffPolicy,
    /// The optional features the Server offers, e.g. `compaction-trigger`.
    pub features: Vec<String>,
}

/// The limits a Server announces and enforces. Each has a floor (spec chapter 11).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Limits {
    /// Largest request body, in bytes.
    #[schemars(range(min = 65536))]
    pub body_bytes_max: u64,
    /// Most Mutations in one push request.
    #[schemars(range(min = 100))]
    pub mutations_per_push_max: u32,
    /// Most Op IDs in one manifest request.
    #[schemars(range(min = 100))]
    pub op_ids_per_manifest_max: u32,
    /// Most Records in one pull, bucket or history page.
    #[schemars(range(min = 100))]
    pub page_records_max: u32,
    /// Longest long-poll wait of a pull, in milliseconds.
    #[schemars(range(min = 10000))]
    pub pull_wait_ms_max: u64,
    /// Largest accepted lead of a Mutation's HLC over the Server's clock, in milliseconds.
    #[schemars(range(min = 1000))]
    pub clock_skew_ms_max: u64,
    /// Deepest nesting of arrays and objects in a request body.
    #[schemars(range(min = 16))]
    pub json_depth_max: u32,
}

impl Limits {
    /// The limits the reference Server announces unless configured otherwise. The OpenAPI
    /// document states them as the bounds of its parameters and bodies, so that generated
    /// clients and fuzzers agree with the reference Server; another Server announces its own in
    /// discovery (spec chapter 11, each at least its floor, `[LIM-1]`).
    pub const REFERENCE: Limits = Limits {
        body_bytes_max: 1_048_576,
        mutations_per_push_max: 1000,
        op_ids_per_manifest_max: 1000,
        page_records_max: 1000,
        pull_wait_ms_max: 30_000,
        clock_skew_ms_max: 60_000,
        json_depth_max: 32,
    };
}

/// How long a Server keeps what deduplication and history need (spec chapter 11).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Retention {
    /// Seconds an Op ID is remembered, counted from the physical time of the Mutation's HLC.
    #[schemars(range(min = 86400))]
    pub op_ids_s: u64,
    /// Seconds tombstones and audit history are kept, counted from the physical time of the HLC.
    #[schemars(range(min = 86400))]
    pub history_s: u64,
}

/// The retry schedule Clients follow (spec chapter 08).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackoffPolicy {
    /// Upper bound of the first delay, in milliseconds.
    #[schemars(range(min = 1))]
    pub initial_delay_ms: u64,
    /// Largest upper bound of any delay, in milliseconds.
    #[schemars(range(min = 1))]
    pub delay_ms_cap: u64,
    /// Factor by which the upper bound grows after each consecutive failure.
    #[schemars(range(min = 1))]
    pub multiplier: u32,
    /// How a delay is drawn below its upper bound; `full` draws uniformly from zero.
    pub jitter: Jitter,
}

/// Jitter strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// Uniform in `[0, bound]`.
    Full,
}

// ---------------------------------------------------------------------------------------------
// Mutations

/// One change to one Record (spec chapter 03). Closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Mutation")]
pub struct Mutation {
    /// Names this Mutation's body forever; the key of deduplication.
    pub op_id: OpId,
    /// The Client's sequence number for this Mutation, from 1, one more than its previous one.
    #[schemars(range(min = 1))]
    pub seq: u64,
    /// The Collection of the Record.
    pub collection: CollectionName,
    /// The Record this Mutation changes.
    pub record_id: RecordId,
    /// When and by which Client the Mutation was made; its node is the author's Client ID.
    pub hlc: Hlc,
    /// The Collection Schema version the Mutation was written under; absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub schema_version: Option<u32>,
    /// What the Mutation does.
    pub effect: Effect,
}

/// What a Mutation does to its Record (spec chapter 03).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Effect {
    /// Replace the Record's content: named Fields get their values, other `lww` Fields become absent.
    Put {
        /// The Record's new content.
        value: Map<String, Value>,
    },
    /// Assign some Fields and unset others, leaving the rest untouched.
    Patch {
        /// Fields to assign, with their new values.
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        set: Map<String, Value>,
        /// Fields to make absent.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unset: Vec<FieldName>,
    },
    /// Delete the Record and everything written to it before.
    Delete {},
    /// Add `by` to a numeric Field.
    Increment {
        /// The Field to increment.
        field: FieldName,
        /// The amount, a safe integer (may be negative).
        #[schemars(range(min = -9007199254740991i64, max = 9007199254740991i64))]
        by: i64,
    },
    /// Add elements to an `add_wins_set` Field.
    SetAdd {
        /// The set Field.
        field: FieldName,
        /// The elements to add, compared by canonical JSON.
        #[schemars(length(min = 1))]
        elements: Vec<Value>,
    },
    /// Remove elements from an `add_wins_set` Field.
    SetRemove {
        /// The set Field.
        field: FieldName,
        /// The elements to remove, compared by canonical JSON.
        #[schemars(length(min = 1))]
        elements: Vec<Value>,
    },
    /// Replace every older sibling of a `keep_both` Field with one value.
    Resolve {
        /// The `keep_both` Field.
        field: FieldName,
        /// The winning value.
        value: Value,
    },
}

/// The `kind` of an Effect, as the audit history names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EffectKind {
    /// `put`
    Put,
    /// `patch`
    Patch,
    /// `delete`
    Delete,
    /// `increment`
    Increment,
    /// `set_add`
    SetAdd,
    /// `set_remove`
    SetRemove,
    /// `resolve`
    Resolve,
}

impl Effect {
    /// The kind of this Effect.
    pub fn kind(&self) -> EffectKind {
        match self {
            Effect::Put { .. } => EffectKind::Put,
            Effect::Patch { .. } => EffectKind::Patch,
            Effect::Delete {} => EffectKind::Delete,
            Effect::Increment { .. } => EffectKind::Increment,
            Effect::SetAdd { .. } => EffectKind::SetAdd,
            Effect::SetRemove { .. } => EffectKind::SetRemove,
            Effect::Resolve { .. } => EffectKind::Resolve,
        }
    }

    /// The names of the Fields this Effect touches, sorted (empty for `delete`).
    pub fn fields(&self) -> Vec<String> {
        let mut names: Vec<String> = match self {
            Effect::Put { value } => value.keys().cloned().collect(),
            Effect::Patch { set, unset } => set
                .keys()
                .cloned()
                .chain(unset.iter().map(|f| f.to_string()))
                .collect(),
            Effect::Delete {} => Vec::new(),
            Effect::Increment { field, .. }
            | Effect::SetAdd { field, .. }
            | Effect::SetRemove { field, .. }
            | Effect::Resolve { field, .. } => vec![field.to_string()],
        };
        names.sort();
        names.dedup();
        names
    }
}

// ---------------------------------------------------------------------------------------------
// Push and manifest

/// The body of `POST /v1/spaces/{space}/push` (spec chapter 04). Closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Push request")]
pub struct PushRequest {
    /// The pushing Client; every Mutation's HLC node must equal it.
    pub client_id: ClientId,
    /// The Mutations, applied in this order.
    pub mutations: Vec<Mutation>,
}

/// The answer to a push: one result per Mutation, in request order (spec chapter 04).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Push response")]
pub struct PushResponse {
    /// The Server's clock when it answered; the Client merges it.
    pub server_clock: Hlc,
    /// One result per Mutation of the request, in the same order.
    pub results: Vec<MutationResult>,
}

/// An `applied` Outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Applied {
    /// The Mutation.
    pub op_id: OpId,
    /// Change Sequence of the first Record state that includes the Mutation; for a Mutation
    /// that changes no Record, the Space's position when it was applied, 0 before the Space's
    /// first change (spec `[PUSH-15]`).
    #[schemars(range(min = 0))]
    pub change_seq: u64,
}

/// A `rejected` Outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Rejected {
    /// The Mutation.
    pub op_id: OpId,
    /// Why it can never be applied.
    pub problem: Problem,
}

/// The stored Outcome of a Mutation: what replays and the manifest return, byte for byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The Mutation was applied.
    Applied(Applied),
    /// The Mutation was permanently rejected.
    Rejected(Rejected),
}

impl Outcome {
    /// The Op ID this Outcome belongs to.
    pub fn op_id(&self) -> &OpId {
        match self {
            Outcome::Applied(a) => &a.op_id,
            Outcome::Rejected(r) => &r.op_id,
        }
    }
}

/// A `duplicate` result: the Op ID was seen before with the same body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Duplicate {
    /// The Mutation.
    pub op_id: OpId,
    /// The stored Outcome, exactly as first sent.
    pub original: Outcome,
}

/// The result of one Mutation of a push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum MutationResult {
    /// Applied now.
    Applied(Applied),
    /// Rejected: permanent, and itself the Outcome (or, for `op-id-reused`, a refusal of a
    /// second body that leaves the stored Outcome alone).
    Rejected(Rejected),
    /// Seen before with the same body; carries the stored Outcome.
    Duplicate(Duplicate),
}

impl MutationResult {
    /// The Op ID this result belongs to.
    pub fn op_id(&self) -> &OpId {
        match self {
            MutationResult::Applied(a) => &a.op_id,
            MutationResult::Rejected(r) => &r.op_id,
            MutationResult::Duplicate(d) => &d.op_id,
        }
    }
}

/// The body of `POST /v1/spaces/{space}/manifest` (spec chapter 04). Closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Manifest request")]
pub struct ManifestRequest {
    /// The Op IDs whose fate the Client wants to learn.
    #[schemars(length(min = 1))]
    pub op_ids: Vec<OpId>,
}

/// An Op ID the Server has no Outcome for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Unknown {
    /// The Op ID.
    pub op_id: OpId,
}

/// The fate of one Op ID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ManifestEntry {
    /// Applied; as the push response first said.
    Applied(Applied),
    /// Rejected; as the push response first said.
    Rejected(Rejected),
    /// Never seen, or forgotten after retention.
    Unknown(Unknown),
}

/// The answer to a manifest request (spec chapter 04).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Manifest response")]
pub struct ManifestResponse {
    /// The Server's clock when it answered.
    pub server_clock: Hlc,
    /// One entry per requested Op ID, in request order.
    pub entries: Vec<ManifestEntry>,
}

// ---------------------------------------------------------------------------------------------
// Pull and records

/// A Record's state as the Server serves it (spec chapter 05).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Record")]
pub struct Record {
    /// The Collection of the Record.
    pub collection: CollectionName,
    /// The Record ID.
    pub id: RecordId,
    /// Change Sequence of this state.
    #[schemars(range(min = 1))]
    pub change_seq: u64,
    /// Whether the Record is a tombstone.
    pub deleted: bool,
    /// Version of the Collection Schema the value conforms to; absent without a schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub schema_version: Option<u32>,
    /// The Record's Fields; absent for a tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Map<String, Value>>,
    /// The sibling values of each `keep_both` Field in conflict, oldest first; absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflicts: Option<BTreeMap<String, Vec<Value>>>,
    /// The Record digest (spec chapter 06) as 64 lowercase hex digits; absent for a tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[0-9a-f]{64}$"))]
    pub digest: Option<String>,
}

/// A page of `GET /v1/spaces/{space}/pull` (spec chapter 05).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Pull response")]
pub struct PullResponse {
    /// The Server's clock when it answered.
    pub server_clock: Hlc,
    /// Opaque Cursor for the next pull.
    #[schemars(length(min = 1))]
    pub cursor: String,
    /// The Change Sequence this page reaches.
    pub through: u64,
    /// Whether more changes follow right away.
    pub has_more: bool,
    /// Records whose latest change is in this page, in ascending `change_seq` order.
    pub records: Vec<Record>,
    /// The latest registered Collection Schema version of each Collection of the Space that has
    /// one, from the page's snapshot (`[PULL-20]`); absent when the Server does not offer it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schemas: Option<BTreeMap<CollectionName, u32>>,
}

/// A history entry's Outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HistoryStatus {
    /// The Mutation was applied.
    Applied,
    /// The Mutation was rejected.
    Rejected,
}

/// One Mutation in a Record's audit history. Never holds values (`[AUDIT-3]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryEntry {
    /// Position of the entry in the Record's history, increasing; the `after` of the next page.
    #[schemars(range(min = 1))]
    pub position: u64,
    /// The Mutation's Op ID.
    pub op_id: OpId,
    /// The Client that pushed it.
    pub client_id: ClientId,
    /// The User of the Token that pushed it.
    pub user: String,
    /// The kind of its Effect.
    pub kind: EffectKind,
    /// The Fields it touched, sorted.
    pub fields: Vec<String>,
    /// Its HLC.
    pub hlc: Hlc,
    /// When the Server received it (RFC 3339, UTC).
    #[schemars(extend("format" = "date-time"))]
    pub received_at: String,
    /// Its Outcome.
    pub status: HistoryStatus,
    /// For an applied Mutation: the Change Sequence of the state that first included it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_seq: Option<u64>,
    /// For a rejected Mutation: the Problem type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<String>,
}

/// A page of a Record's audit history (spec chapter 05).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "History response")]
pub struct HistoryResponse {
    /// The Server's clock when it answered.
    pub server_clock: Hlc,
    /// The Collection of the Record.
    pub collection: CollectionName,
    /// The Record ID.
    pub id: RecordId,
    /// Whether more entries follow.
    pub has_more: bool,
    /// Entries, oldest first.
    pub entries: Vec<HistoryEntry>,
}

// ---------------------------------------------------------------------------------------------
// Integrity

/// One bucket's checksum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BucketChecksum {
    /// The bucket number.
    #[schemars(range(max = 63))]
    pub bucket: u8,
    /// Number of existing Records in the bucket.
    pub records: u64,
    /// The bucket digest as 64 lowercase hex digits.
    #[schemars(regex(pattern = "^[0-9a-f]{64}$"))]
    pub digest: String,
}

/// The answer to `GET /v1/spaces/{space}/checksums` (spec chapter 06).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Checksums response")]
pub struct ChecksumsResponse {
    /// The Server's clock when it answered.
    pub server_clock: Hlc,
    /// The Change Sequence the checksums reflect.
    pub through: u64,
    /// The checksum algorithm; `jcs-sha256-64` in version 1.
    #[schemars(extend("const" = "jcs-sha256-64"))]
    pub algorithm: String,
    /// The Space digest as 64 lowercase hex digits.
    #[schemars(regex(pattern = "^[0-9a-f]{64}$"))]
    pub space_digest: String,
    /// All 64 buckets, in bucket order.
    #[schemars(length(min = 64, max = 64))]
    pub buckets: Vec<BucketChecksum>,
}

/// A page of `GET /v1/spaces/{space}/buckets/{bucket}` (spec chapter 06).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Bucket response")]
pub struct BucketResponse {
    /// The Server's clock when it answered.
    pub server_clock: Hlc,
    /// The Change Sequence the page reflects.
    pub through: u64,
    /// The bucket number.
    #[schemars(range(max = 63))]
    pub bucket: u8,
    /// Whether more Records of the bucket follow.
    pub has_more: bool,
    /// When `has_more`: the `after` parameter of the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
    /// Existing Records of the bucket, ordered by Collection name and then Record ID.
    pub records: Vec<Record>,
}

// ---------------------------------------------------------------------------------------------
// Compaction

/// The answer to `POST /v1/spaces/{space}/compact` (spec chapter 11).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Compaction response")]
pub struct CompactionResponse {
    /// The Server's clock when it answered.
    pub server_clock: Hlc,
    /// The Space's new Horizon: Mutations stamped at or before it are refused.
    pub horizon: Hlc,
    /// The Space's new compaction point: Cursors before it have expired.
    pub compaction_point: u64,
    /// How many tombstones were purged.
    pub tombstones_purged: u64,
}

// ---------------------------------------------------------------------------------------------
// Auth

/// A Scope on one Space; each includes the ones before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Pull and read.
    Read,
    /// Read, push and manifest.
    Write,
    /// Write, register schemas, audit history, compaction.
    Admin,
}

/// The claims of a reference-format Token (spec chapter 09, informative).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Token claims")]
pub struct TokenClaims {
    /// The User.
    #[schemars(length(min = 1, max = 128))]
    pub sub: String,
    /// The Scope the User holds on each Space.
    pub grants: BTreeMap<SpaceId, Scope>,
    /// Issued at, in seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, in seconds since the Unix epoch.
    pub exp: u64,
}
