//! The client adapter protocol (spec chapter 13, informative): the JSON-lines messages between
//! the client conformance kit (`driftless conformance client`) and an adapter, a small program
//! that wraps one Client implementation. The kit writes one [`Request`] per line on the adapter's
//! stdin; the adapter answers each with one [`Response`] line on stdout, in order, with the same
//! `id`. `schemas/client-adapter/` is generated from these types ([`schema_files`]).

use std::collections::BTreeMap;

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::messages::Effect;

/// The folder of the adapter message schemas, relative to the repository root.
pub const ADAPTER_SCHEMA_DIR: &str = "schemas/client-adapter";

/// One line from the kit: an operation and the `id` its answer repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Request {
    /// Chosen by the kit; the answer carries the same one.
    pub id: u64,
    /// The operation and its arguments.
    #[serde(flatten)]
    pub operation: Operation,
}

/// An operation of the adapter protocol, by its `op` member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    /// Opens the Client on a store folder (created if missing). Must come first; a second
    /// `open` without `close` is `invalid`.
    Open(Open),
    /// Records a write durably (`[CLIENT-1]`): a success answer means "done" as the Client
    /// reports it to its user.
    Write(Write),
    /// Read-modify-write: reads the Record's view, assigns `set`, writes the result as a `put`
    /// (`[EVO-10]`). Optional.
    Update(Update),
    /// Syncs: pushes and pulls until done, or one step. `step` is optional.
    Sync(Sync),
    /// The Record's view (`[CLIENT-22]`).
    Get(Get),
    /// Every existing Record of a Collection, by the view.
    List(List),
    /// Pending count and receipts (`[CLIENT-13]`).
    Status(StatusRequest),
    /// The dead-letter list (`[CLIENT-4]`).
    DeadLetters(Empty),
    /// Closes the Client; the adapter answers, then exits 0.
    Close(Empty),
}

/// No arguments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Empty {}

/// `open`: where and as whom to sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Open {
    /// The store folder. The kit reuses it after killing the adapter: the Client must find its
    /// Outbox, Mirror, clock and Client ID there.
    pub store: String,
    /// The Server's base URL (`http://127.0.0.1:PORT`).
    pub server: String,
    /// The bearer Token.
    pub token: String,
    /// The Space.
    pub space: String,
    /// Hints; a Client ignores what it has no use for.
    #[serde(default)]
    pub options: OpenOptions,
}

/// Hints for `open`. Every member is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OpenOptions {
    /// Failed attempts one `sync` may make before it answers `failed` (the schedule is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts_per_sync: Option<u32>,
    /// Per-request timeout, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Most Mutations per push (the Server's limits also apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_max: Option<u64>,
}

/// `write`: one Effect of chapter 03 on one Record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Write {
    /// The Collection.
    pub collection: String,
    /// The Record ID.
    pub record_id: String,
    /// The Effect, exactly as a Mutation carries it.
    pub effect: Effect,
    /// A sending lane: higher goes first, never ahead of an earlier write of the same Record
    /// (`[CLIENT-6]`). Optional; 0 when absent.
    #[serde(default)]
    pub priority: i64,
}

/// `update`: read-modify-write of one Record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Update {
    /// The Collection.
    pub collection: String,
    /// The Record ID.
    pub record_id: String,
    /// Fields to assign in the value read; the others stay as read.
    pub set: Map<String, Value>,
}

/// How far one `sync` goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Until the Outbox is settled and the pull caught up, or the Client gives up.
    #[default]
    UntilDone,
    /// One request to the Server (optional).
    Step,
}

/// `sync`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Sync {
    /// How far to go; `until_done` when absent.
    #[serde(default)]
    pub mode: SyncMode,
}

/// `get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Get {
    /// The Collection.
    pub collection: String,
    /// The Record ID.
    pub record_id: String,
}

/// `list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct List {
    /// The Collection.
    pub collection: String,
}

/// `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusRequest {
    /// Op IDs whose receipts to return.
    #[serde(default)]
    pub op_ids: Vec<String>,
}

/// One answer line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Response {
    /// The request's `id`.
    pub id: u64,
    /// Whether the operation succeeded: then `result` is present, else `error`.
    pub ok: bool,
    /// The operation's result (see the `*-result` schemas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why it did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AdapterError>,
}

/// Why an operation did not succeed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AdapterError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// One line for a person.
    pub message: String,
}

/// The kinds of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The Client lacks this optional operation or mode: the kit skips the case.
    Unsupported,
    /// The line is not a request of this protocol, or the Client refused the input (a write
    /// no Server could accept, `[CLIENT-16]`), or the order is wrong (no `open` yet).
    Invalid,
    /// An operating failure: the Server unreachable or refusing within the Client's retry
    /// budget, the store unusable. Nothing written before is lost.
    Failed,
}

/// The result of `open`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OpenResult {
    /// The Client ID (`[ID-2]`): the same after a restart on the same store.
    pub client_id: String,
}

/// The result of `write` and `update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WriteResult {
    /// The Op ID of the new Mutation.
    pub op_id: String,
}

/// The result of `sync`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SyncResult {
    /// Whether the Outbox is settled and the pull caught up.
    pub done: bool,
    /// Mutations acknowledged as applied in this sync.
    #[serde(default)]
    pub acknowledged: u64,
    /// Mutations moved to the dead-letter list in this sync.
    #[serde(default)]
    pub rejected: u64,
}

/// The result of `get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GetResult {
    /// The Record's value in the view; `null` when absent or deleted.
    pub value: Option<Map<String, Value>>,
}

/// One Record of a `list` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Listed {
    /// The Record ID.
    pub id: String,
    /// Its value in the view.
    pub value: Map<String, Value>,
}

/// The result of `list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListResult {
    /// Existing Records, sorted by ID.
    pub records: Vec<Listed>,
}

/// A receipt (`[CLIENT-13]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Receipt {
    /// `pending`, `sent`, `acknowledged`, `rejected` or `superseded` (dropped by coalescing,
    /// `[CLIENT-11]`).
    pub status: String,
    /// Detail: a Problem type, the Op ID that superseded or re-issued it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The result of `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusResult {
    /// Mutations in the Outbox.
    pub pending: u64,
    /// Receipts of the requested Op IDs the Client knows.
    #[serde(default)]
    pub receipts: BTreeMap<String, Receipt>,
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeadLetter {
    /// The Op ID of the Mutation.
    pub op_id: String,
    /// The Mutation as sent, or as it would have been.
    pub mutation: Value,
    /// The Problem (`[CLIENT-4]`).
    pub problem: Value,
}

/// The result of `dead_letters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeadLettersResult {
    /// Oldest first.
    pub dead_letters: Vec<DeadLetter>,
}

fn schema_of<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

fn titled(name: &str, description: &str, mut schema: Value) -> Value {
    let root = schema.as_object_mut().expect("a root schema is an object");
    root.remove("title");
    root.remove("description");
    root.remove("$schema");
    let mut out = Map::new();
    out.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    out.insert(
        "$id".into(),
        json!(format!("urn:driftless:schema:client-adapter:{name}")),
    );
    out.insert("title".into(), json!(name));
    out.insert("description".into(), json!(description));
    out.extend(std::mem::take(root));
    Value::Object(out)
}

/// The schema of one request line: `T`'s members plus `id` and `op`.
fn request<T: JsonSchema>(op: &str, description: &str) -> (String, Value) {
    let mut s = schema_of::<T>();
    s["properties"]["id"] = json!({"type": "integer", "minimum": 0, "description": "Chosen by the kit; the answer carries the same one."});
    s["properties"]["op"] =
        json!({"const": op, "description": format!("Discriminator: `op` is `{op}`.")});
    let required = s["required"].as_array().cloned().unwrap_or_default();
    let mut req = vec![json!("id"), json!("op")];
    req.extend(required);
    s["required"] = Value::Array(req);
    let name = op.replace('_', "-");
    (name.clone(), titled(&name, description, s))
}

/// Every adapter message schema, as (file stem, schema), in a stable order.
pub fn message_schemas() -> Vec<(String, Value)> {
    let result =
        |name: &str, description: &str, s: Value| (name.to_owned(), titled(name, description, s));
    vec![
        request::<Open>("open", "Opens the Client on a store folder (spec chapter 13)."),
        request::<Write>("write", "Records one write durably; success means done (spec chapter 13, [CLIENT-1])."),
        request::<Update>("update", "Read-modify-write of one Record, written as a put (spec chapter 13, [EVO-10]). Optional."),
        request::<Sync>("sync", "Pushes and pulls until done, or one step (spec chapter 13)."),
        request::<Get>("get", "The view of one Record (spec chapter 13, [CLIENT-22])."),
        request::<List>("list", "The view of a Collection (spec chapter 13)."),
        request::<StatusRequest>("status", "Pending count and receipts (spec chapter 13, [CLIENT-13])."),
        request::<Empty>("dead_letters", "The dead-letter list (spec chapter 13, [CLIENT-4])."),
        request::<Empty>("close", "Closes the Client; the adapter then exits 0 (spec chapter 13)."),
        result("response", "Every answer line: the request's id, ok, and result or error (spec chapter 13).", schema_of::<Response>()),
        result("open-result", "The result of open.", schema_of::<OpenResult>()),
        result("write-result", "The result of write and update.", schema_of::<WriteResult>()),
        result("sync-result", "The result of sync.", schema_of::<SyncResult>()),
        result("get-result", "The result of get.", schema_of::<GetResult>()),
        result("list-result", "The result of list.", schema_of::<ListResult>()),
        result("status-result", "The result of status.", schema_of::<StatusResult>()),
        result("dead-letters-result", "The result of dead_letters.", schema_of::<DeadLettersResult>()),
    ]
}

/// The files of `schemas/client-adapter/`, as (file name, text).
pub fn schema_files() -> Vec<(String, String)> {
    message_schemas()
        .into_iter()
        .map(|(name, schema)| {
            let mut s = serde_json::to_string_pretty(&schema).expect("a JSON value serializes");
            s.push('\n');
            (format!("{name}.schema.json"), s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_round_trips_with_its_op_and_id() {
        let line = r#"{"id":3,"op":"write","collection":"notes","record_id":"n1","effect":{"kind":"delete"}}"#;
        let r: Request = serde_json::from_str(line).unwrap();
        assert_eq!(r.id, 3);
        assert!(matches!(
            r.operation,
            Operation::Write(Write { priority: 0, .. })
        ));
        let back: Value = serde_json::to_value(&r).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<Value>(line)
                .unwrap()
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.insert("priority".into(), json!(0));
                    Value::Object(o)
                })
                .unwrap()
        );
        let close: Request = serde_json::from_str(r#"{"id":9,"op":"close"}"#).unwrap();
        assert_eq!(close.operation, Operation::Close(Empty {}));
    }

    #[test]
    fn an_unknown_op_is_not_a_request() {
        assert!(serde_json::from_str::<Request>(r#"{"id":1,"op":"fly"}"#).is_err());
    }
}
