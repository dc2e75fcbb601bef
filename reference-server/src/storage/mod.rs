//! The storage boundary of the reference server.
//!
//! Handlers see a Space through [`SpaceRead`] and [`SpaceWrite`]; only a backend knows how those
//! are kept. [`Storage::write`] and [`Storage::read`] are the whole contract:
//!
//! - **Atomic and durable writes.** Everything one `write` closure does commits together, or not
//!   at all. When `write` returns `Ok`, the commit is on stable storage (for SQLite: WAL with
//!   `synchronous=FULL`, so it survives SIGKILL and, as far as the OS honours fsync, power loss).
//!   The server acknowledges nothing before that.
//! - **Consistent reads.** A `read` closure sees one snapshot of the Space, unchanged by
//!   concurrent writes.
//! - **Bounded reads.** Every method that returns many rows takes a `limit`, except
//!   [`SpaceRead::record_digests`] and [`SpaceRead::collection_records`], which are bounded by the
//!   size of a Space or Collection and are used only by checksums and schema upcasts.
//!
//! Backends: [`sqlite`] (one file, one process) and, with the `postgres` feature,
//! [`postgres`] (one database shared by several server instances; its module docs say how it
//! keeps Change Sequences gap-free across them). Storage never sees an HTTP type.

#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

use driftless_protocol::checksum::to_hex;
use driftless_protocol::collection_schema::CollectionSchema;
use driftless_protocol::hlc::Hlc;
use driftless_protocol::merge::RecordState;
use driftless_protocol::messages::{HistoryEntry, Record};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::collections::HashMap;

/// A storage failure. The handlers turn every one into the Problem `internal` (or `unavailable`).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The backend failed (I/O, corruption, a full disk).
    #[error("storage backend: {0}")]
    Backend(String),
    /// A stored row could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// What the merge rules derive from a Record's state; stored so that reads need no merging.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordView {
    /// Whether the Record exists (false: tombstone).
    pub exists: bool,
    /// Its Fields, when it exists.
    pub value: Option<Map<String, Value>>,
    /// Its `keep_both` conflicts, when there are any.
    pub conflicts: Option<BTreeMap<String, Vec<Value>>>,
    /// Its digest, when it exists.
    pub digest: Option<[u8; 32]>,
    /// Its bucket (0 to 63).
    pub bucket: u8,
    /// The Collection Schema version its value conforms to.
    pub schema_version: Option<u32>,
}

/// A Record as stored: its semilattice state and the view derived from it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// The Collection.
    pub collection: String,
    /// The Record ID.
    pub id: String,
    /// Change Sequence of this state.
    pub change_seq: u64,
    /// The merged state of every applied Mutation.
    pub state: RecordState,
    /// What the state means under the Collection's Policies.
    pub view: RecordView,
}

/// The wire form of a stored Record (spec chapter 05, `[PULL-18]`): what pull, record reads and
/// bucket pages send.
pub fn wire_record(r: &StoredRecord) -> Record {
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

/// [`wire_record`] as JSON text: what a backend stores beside the state so that pull copies it
/// out without decoding anything.
pub fn wire_json(r: &StoredRecord) -> String {
    serde_json::to_string(&wire_record(r)).expect("records serialize")
}

/// The stored Outcome of an Op ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOp {
    /// SHA-256 (hex) of the canonical JSON of the Mutation body as first received.
    pub body_digest: String,
    /// SHA-256 (hex) of the body's text exactly as first received (`None` where not recorded):
    /// a byte-identical replay is recognised by it without canonicalising the body again.
    pub text_digest: Option<String>,
    /// The Outcome as JSON text, exactly as first sent.
    pub outcome: String,
}

/// Per-Space bookkeeping.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpaceMeta {
    /// The latest Change Sequence assigned in the Space (0: none).
    pub latest_seq: u64,
    /// Mutations stamped at or before the Horizon are refused.
    pub horizon: Option<Hlc>,
    /// Cursors before this position have expired.
    pub compaction_point: u64,
    /// The greatest server clock saved with a write to this Space by any instance sharing the
    /// store (`None` where one process owns the store: its own clock is never behind). An
    /// instance merges it before answering, so that no response of the deployment is stamped
    /// before a Mutation another instance applied (`[HLC-6]`).
    pub clock: Option<Hlc>,
}

/// Reads of one Space, all from one snapshot.
pub trait SpaceRead {
    /// The Space's bookkeeping (all zero for a Space never written).
    fn meta(&self) -> Result<SpaceMeta, StorageError>;
    /// The stored Outcomes of those of `op_ids` that are known, by Op ID. One bounded read:
    /// callers pass at most a push's or a manifest's limit of IDs.
    fn ops(&self, op_ids: &[&str]) -> Result<HashMap<String, StoredOp>, StorageError>;
    /// A Record, tombstones included.
    fn record(&self, collection: &str, id: &str) -> Result<Option<StoredRecord>, StorageError>;
    /// Records whose latest change is after `after`, in `change_seq` order, at most `limit`.
    fn records_changed_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StorageError>;
    /// The wire form (a spec chapter 05 `Record`, as JSON text) of each Record whose latest
    /// change is after `after`, in `change_seq` order, at most `limit`, handed to `each` with its
    /// `change_seq`. The pull path serves these without decoding a Record's merge state; a
    /// backend that keeps the text ready (SQLite: `records.wire`) overrides this default, which
    /// derives it from [`SpaceRead::records_changed_after`].
    fn wire_records_changed_after(
        &self,
        after: u64,
        limit: usize,
        each: &mut dyn FnMut(u64, &str) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        for r in self.records_changed_after(after, limit)? {
            each(r.change_seq, &wire_json(&r))?;
        }
        Ok(())
    }
    /// (bucket, digest) of every existing Record.
    fn record_digests(&self) -> Result<Vec<(u8, [u8; 32])>, StorageError>;
    /// Existing Records of a bucket, ordered by (collection, id), after a key, at most `limit`.
    fn bucket_records(
        &self,
        bucket: u8,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StorageError>;
    /// Every Record of a Collection, tombstones included.
    fn collection_records(&self, collection: &str) -> Result<Vec<StoredRecord>, StorageError>;
    /// The latest registered Collection Schema version of each Collection that has one, by
    /// Collection (`[PULL-20]`), or `None` if the backend does not offer this summary (the
    /// default: pull responses then go without it and Clients fetch the schemas themselves).
    fn schema_versions(&self) -> Result<Option<BTreeMap<String, u32>>, StorageError> {
        Ok(None)
    }
    /// The registered Collection Schemas of a Collection, oldest first.
    fn schemas(&self, collection: &str) -> Result<Vec<CollectionSchema>, StorageError>;
    /// History entries of a Record with a position after `after`, oldest first, at most `limit`.
    fn history(
        &self,
        collection: &str,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StorageError>;
}

/// Writes to one Space, inside one atomic transaction.
pub trait SpaceWrite: SpaceRead {
    /// Assigns the next Change Sequence of the Space.
    fn next_change_seq(&mut self) -> Result<u64, StorageError>;
    /// Inserts or replaces a Record.
    fn put_record(&mut self, record: &StoredRecord) -> Result<(), StorageError>;
    /// Stores the Outcome of an Op ID; `hlc_ms` is the physical time of its HLC (for retention).
    fn put_op(&mut self, op_id: &str, op: &StoredOp, hlc_ms: u64) -> Result<(), StorageError>;
    /// Appends a history entry (its `position` is assigned here) and returns the position.
    fn append_history(
        &mut self,
        collection: &str,
        id: &str,
        entry: &HistoryEntry,
    ) -> Result<u64, StorageError>;
    /// Registers a Collection Schema version.
    fn put_schema(&mut self, doc: &CollectionSchema) -> Result<(), StorageError>;
    /// Raises the Horizon and the compaction point (to at least `compaction_point` and past every
    /// purged tombstone) and purges tombstones whose `delete` Stamp is at or before the Horizon.
    /// Returns how many were purged. Never lowers either value (`[RET-5]`).
    fn compact(&mut self, horizon: &Hlc, compaction_point: u64) -> Result<u64, StorageError>;
    /// Persists the server clock with this transaction, so that a restart never issues an HLC
    /// smaller than one it acknowledged (`[HLC-11]`).
    fn save_clock(&mut self, clock: &Hlc) -> Result<(), StorageError>;
    /// Forgets Op IDs whose HLC is older than `before_ms` and history entries whose HLC is older
    /// than `history_before_ms`.
    fn expire(&mut self, before_ms: u64, history_before_ms: u64) -> Result<(), StorageError>;
}

/// Called with a Space after another process committed a write to it, or with `None` when
/// writes may have been missed (every waiter looks again).
pub type ChangeListener = Box<dyn Fn(Option<&str>) + Send + Sync + 'static>;

/// A store of Spaces.
pub trait Storage: Send + Sync + 'static {
    /// Runs `f` in one atomic transaction on `space`, durable when this returns `Ok`. Nothing
    /// `f` wrote is visible if `f` or the commit fails.
    fn write<T>(
        &self,
        space: &str,
        f: impl FnOnce(&mut dyn SpaceWrite) -> Result<T, StorageError>,
    ) -> Result<T, StorageError>;

    /// Runs `f` on a consistent snapshot of `space`.
    fn read<T>(
        &self,
        space: &str,
        f: impl FnOnce(&dyn SpaceRead) -> Result<T, StorageError>,
    ) -> Result<T, StorageError>;

    /// Every Space that has been written (for periodic compaction).
    fn spaces(&self) -> Result<Vec<String>, StorageError>;

    /// The greatest server clock value persisted by [`SpaceWrite::save_clock`].
    fn load_clock(&self) -> Result<Option<Hlc>, StorageError>;

    /// Asks to be told of writes committed by other processes sharing this store (long-polls
    /// of one instance wake on pushes that landed on another, `[PULL-8]`). A store only one
    /// process writes never calls `listener`; that is the default.
    fn on_change(&self, listener: ChangeListener) {
        drop(listener);
    }
}
