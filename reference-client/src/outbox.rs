//! The Outbox side of writing (spec chapter 08, "The Outbox"): a write is validated, stamped
//! and committed durably before it returns (`[CLIENT-1]`, `[HLC-10]`), carries the Collection
//! Schema version it was written under (`[EVO-1]`), coalesces never-sent `put`s and `patch`es it
//! supersedes (`[CLIENT-11]`, never `[CLIENT-12]` kinds), and leaves a receipt (`[CLIENT-13]`),
//! whose counts [`Client::status`] reads.

use driftless_protocol::ids::{CollectionName, RecordId};
use serde_json::{json, Value};

use crate::clock::random_hex;
use crate::store::{self, receipt, Pending, Store};
use crate::{Client, ClientError, Status};

impl Client {
    /// Stamps a valid write and appends it to the Outbox in one durable transaction
    /// (`[CLIENT-1]`, `[HLC-10]`), dropping the never-sent Mutations it supersedes.
    pub(crate) fn enqueue(
        &mut self,
        collection: &str,
        id: &str,
        effect: Value,
        priority: i64,
    ) -> Result<String, ClientError> {
        collection
            .parse::<CollectionName>()
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        id.parse::<RecordId>()
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let parsed: Result<driftless_protocol::messages::Effect, _> =
            serde_json::from_value(effect.clone());
        parsed.map_err(|e| ClientError::Invalid(format!("not a valid effect: {e}")))?;
        let version_key = format!("schema:{}:{collection}", self.cfg.space);
        let schema_version = self
            .store
            .meta(&version_key)?
            .and_then(|v| v.parse::<u64>().ok());
        let space = self.cfg.space.clone();
        let (client_id, mut clock) = (self.client_id.clone(), self.clock.clone());
        let limits = self.limits()?;
        let self_check = |body: &Value| match limits.and_then(|l| l.refuse(&client_id, body)) {
            Some(p) => Err(ClientError::Invalid(format!(
                "{collection}/{id}: {}",
                p.detail.unwrap_or_default().trim_end_matches(" (not sent)")
            ))),
            None => Ok(()),
        };
        // Sequence number, Stamp and coalescing are decided under the write lock, from what is
        // stored: another handle on the same store may have written since this one last looked.
        let op_id = self.store.tx(|tx| {
            let seq = Store::meta_in(tx, "seq")?
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            let hlc = clock.stamp_in(tx)?;
            let op_id = format!("{client_id}-{seq}-{}", random_hex(4));
            let mut body = json!({"op_id": op_id, "seq": seq, "collection": collection, "record_id": id, "hlc": hlc.to_string(), "effect": effect});
            if let Some(v) = schema_version {
                body["schema_version"] = json!(v);
            }
            // Checked inside the transaction, with the real Op ID and Stamp, so the check sees
            // the bytes that will be sent; refusing rolls the transaction back ([CLIENT-16]).
            self_check(&body)?;
            let outbox = Store::record_outbox_in(tx, &space, collection, id)?;
            for op in superseded_by(&outbox, collection, id, &body["effect"]) {
                let sql = if crate::faults::fault!(CoalescesSentWrites) {
                    "DELETE FROM outbox WHERE op_id = ?1"
                } else {
                    "DELETE FROM outbox WHERE op_id = ?1 AND attempts = 0"
                };
                tx.execute(sql, [op]).map_err(store::sql_error)?;
                receipt(tx, op, "superseded", Some(&op_id))?;
                Store::count(tx, "coalesced", 1)?;
            }
            if crate::faults::fault!(CoalescesIncrements) && body["effect"]["kind"] == "increment" {
                let field = body["effect"]["field"].clone();
                let earlier = outbox.iter().rev().find(|p| {
                    p.attempts == 0 && p.body()["effect"]["kind"] == "increment" && p.body()["effect"]["field"] == field
                });
                if let Some(prev) = earlier {
                    let by = prev.body()["effect"]["by"].as_i64().unwrap_or(0)
                        + body["effect"]["by"].as_i64().unwrap_or(0);
                    body["effect"]["by"] = json!(by);
                    tx.execute("DELETE FROM outbox WHERE op_id = ?1", [&prev.op_id]).map_err(store::sql_error)?;
                }
            }
            tx.execute(
                "INSERT INTO outbox (seq, space, op_id, collection, record_id, body, priority) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                rusqlite::params![seq as i64, space, op_id, collection, id, body.to_string(), priority],
            )
            .map_err(store::sql_error)?;
            Store::set_meta(tx, "seq", &seq.to_string())?;
            receipt(tx, &op_id, "pending", None)?;
            Store::count(tx, "writes", 1)?;
            Ok(op_id)
        })?;
        self.clock = clock;
        Ok(op_id)
    }

    /// The counts of [`Client::status`], read from the store.
    pub(crate) fn read_status(&self) -> Result<Status, ClientError> {
        let (pending, sent) = self.store.outbox_counts(&self.cfg.space)?;
        Ok(Status {
            pending,
            sent,
            rejected: self.store.dead(&self.cfg.space)?.len(),
            last_sync: self
                .store
                .meta(&format!("last_sync:{}", self.cfg.space))?
                .and_then(|v| v.parse().ok()),
            counters: self.store.counters()?,
        })
    }
}

/// Never-sent `put`s and `patch`es of the Record that a new Effect makes irrelevant
/// (`[CLIENT-11]`): a later `delete` or `put` covers them all; a later `patch` covers a
/// `patch` whose Fields it all assigns. Increments, set operations and resolves are never
/// dropped (`[CLIENT-12]`), and anything sent before stays, since it may have been applied.
fn superseded_by<'a>(
    outbox: &'a [Pending],
    collection: &str,
    id: &str,
    effect: &Value,
) -> Vec<&'a str> {
    let fields = |e: &Value| -> Vec<String> {
        let mut f: Vec<String> = e["set"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        f.extend(
            e["unset"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_owned)),
        );
        f
    };
    let new_kind = effect["kind"].as_str().unwrap_or("");
    let new_fields = fields(effect);
    let mut out = Vec::new();
    for p in outbox.iter().rev() {
        if p.collection != collection || p.record_id != id {
            continue;
        }
        let old = &p.body()["effect"];
        let old_kind = old["kind"].as_str().unwrap_or("");
        let sent = p.attempts > 0 && !crate::faults::fault!(CoalescesSentWrites);
        if sent || !matches!(old_kind, "put" | "patch") {
            // Anything between that is not droppable keeps everything before it in place.
            break;
        }
        let covered = match new_kind {
            "delete" | "put" => true,
            "patch" => old_kind == "patch" && fields(old).iter().all(|f| new_fields.contains(f)),
            _ => false,
        };
        if !covered {
            break;
        }
        out.push(p.op_id.as_str());
    }
    out
}
