//! The Mirror: pulled Records as the store keeps them, and reading them back.

use super::*;

/// A mirrored Record.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirrored {
    /// Change Sequence of the pulled state.
    pub change_seq: u64,
    /// Tombstone?
    pub deleted: bool,
    /// The value (None for a tombstone).
    pub value: Option<Value>,
    /// keep_both conflicts.
    pub conflicts: Option<Value>,
    /// The server's digest.
    pub digest: Option<String>,
}

impl Store {
    /// A mirrored Record.
    pub fn mirrored(
        &self,
        space: &str,
        collection: &str,
        id: &str,
    ) -> Result<Option<Mirrored>, ClientError> {
        self.conn
            .query_row(
                "SELECT change_seq, deleted, value, conflicts, digest FROM mirror WHERE space = ?1 AND collection = ?2 AND id = ?3",
                params![space, collection, id],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?, r.get::<_, Option<String>>(2)?, r.get::<_, Option<String>>(3)?, r.get::<_, Option<String>>(4)?)),
            )
            .optional()
            .map_err(sql_error)?
            .map(|(seq, deleted, value, conflicts, digest)| {
                Ok(Mirrored {
                    change_seq: seq as u64,
                    deleted,
                    value: value.map(|v| serde_json::from_str(&v)).transpose().map_err(|e| ClientError::Store(e.to_string()))?,
                    conflicts: conflicts.map(|v| serde_json::from_str(&v)).transpose().map_err(|e| ClientError::Store(e.to_string()))?,
                    digest,
                })
            })
            .transpose()
    }

    /// Calls `f` with the Collection, Record ID and value of each existing (not deleted)
    /// Record the Mirror holds for `space`, in one scan. Errors: the store's, a value that is
    /// not JSON (a damaged row).
    pub fn for_each_mirrored_value(
        &self,
        space: &str,
        mut f: impl FnMut(&str, &str, &serde_json::Map<String, Value>),
    ) -> Result<(), ClientError> {
        let mut st = self
            .conn
            .prepare("SELECT collection, id, value FROM mirror WHERE space = ?1 AND deleted = 0")
            .map_err(sql_error)?;
        let mut rows = st.query([space]).map_err(sql_error)?;
        while let Some(row) = rows.next().map_err(sql_error)? {
            let (collection, id) = (
                row.get_ref(0)
                    .and_then(|v| Ok(v.as_str()?))
                    .map_err(sql_error)?,
                row.get_ref(1)
                    .and_then(|v| Ok(v.as_str()?))
                    .map_err(sql_error)?,
            );
            let Some(text) = row
                .get_ref(2)
                .and_then(|v| Ok(v.as_str_or_null()?))
                .map_err(sql_error)?
            else {
                continue;
            };
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(value)) => f(collection, id, &value),
                Ok(_) => {}
                Err(e) => {
                    return Err(ClientError::Store(format!(
                        "mirrored value of {collection}/{id}: {e}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// IDs of mirrored Records of a Collection (tombstones included).
    pub fn mirrored_ids(&self, space: &str, collection: &str) -> Result<Vec<String>, ClientError> {
        let mut st = self
            .conn
            .prepare("SELECT id FROM mirror WHERE space = ?1 AND collection = ?2 ORDER BY id")
            .map_err(sql_error)?;
        let rows = st
            .query_map(params![space, collection], |r| r.get(0))
            .map_err(sql_error)?;
        rows.map(|r| r.map_err(sql_error)).collect()
    }

    /// The Collections of a Space's mirrored Records (tombstones included), each once.
    pub fn mirror_collections(&self, space: &str) -> Result<Vec<String>, ClientError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT DISTINCT collection FROM mirror WHERE space = ?1")
            .map_err(sql_error)?;
        let rows = st.query_map([space], |r| r.get(0)).map_err(sql_error)?;
        rows.map(|r| r.map_err(sql_error)).collect()
    }

    /// (collection, id) of every mirrored Record of a Space, tombstones included.
    pub fn mirror_keys(&self, space: &str) -> Result<Vec<(String, String)>, ClientError> {
        let mut st = self
            .conn
            .prepare("SELECT collection, id FROM mirror WHERE space = ?1 ORDER BY collection, id")
            .map_err(sql_error)?;
        let rows = st
            .query_map([space], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql_error)?;
        rows.map(|r| r.map_err(sql_error)).collect()
    }

    /// (bucket, hex digest) of every existing mirrored Record of a Space.
    pub fn mirror_digests(&self, space: &str) -> Result<Vec<(u8, String)>, ClientError> {
        let mut st = self
            .conn
            .prepare("SELECT bucket, digest FROM mirror WHERE space = ?1 AND deleted = 0")
            .map_err(sql_error)?;
        let rows = st
            .query_map([space], |r| {
                Ok((r.get::<_, i64>(0)? as u8, r.get::<_, String>(1)?))
            })
            .map_err(sql_error)?;
        rows.map(|r| r.map_err(sql_error)).collect()
    }
}

/// A pulled Record as the Mirror keeps it: its value and conflicts as JSON text, ready to
/// store, borrowed from the page it was parsed from (strings are copied only when they hold
/// escapes).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct MirrorRow<'a> {
    /// The Collection.
    #[serde(borrow, default)]
    pub collection: Cow<'a, str>,
    /// The Record ID.
    #[serde(borrow, default)]
    pub id: Cow<'a, str>,
    /// Its Change Sequence.
    #[serde(default)]
    pub change_seq: i64,
    /// Whether it is a tombstone.
    #[serde(default)]
    pub deleted: bool,
    /// Its Fields as JSON text; `None` for a tombstone (or `null`).
    #[serde(borrow, default)]
    pub value: Option<&'a RawValue>,
    /// Its `keep_both` conflicts as JSON text, when there are any.
    #[serde(borrow, default)]
    pub conflicts: Option<&'a RawValue>,
    /// The Server's digest (64 hex digits).
    #[serde(borrow, default)]
    pub digest: Option<Cow<'a, str>>,
}

/// The value and conflicts of a Record given as a JSON tree, as JSON text.
pub(super) type RowTexts = (Option<Box<RawValue>>, Option<Box<RawValue>>);

pub(super) fn row_texts(rec: &Value) -> RowTexts {
    let raw = |v: Option<&Value>| {
        v.filter(|v| !v.is_null())
            .map(|v| serde_json::value::to_raw_value(v).expect("JSON values serialize"))
    };
    (raw(rec.get("value")), raw(rec.get("conflicts")))
}

/// The row of a Record given as a JSON tree (absent members read as empty, as on a page).
pub(super) fn row_of<'a>(rec: &'a Value, texts: &'a RowTexts) -> MirrorRow<'a> {
    let text = |k: &str| Cow::Borrowed(rec[k].as_str().unwrap_or(""));
    MirrorRow {
        collection: text("collection"),
        id: text("id"),
        change_seq: rec["change_seq"].as_i64().unwrap_or(0),
        deleted: rec["deleted"].as_bool().unwrap_or(false),
        value: texts.0.as_deref(),
        conflicts: texts.1.as_deref(),
        digest: rec["digest"].as_str().map(Cow::Borrowed),
    }
}

/// Writes a pulled Record, given as a JSON tree, into the Mirror.
pub fn put_mirror(tx: &Connection, space: &str, rec: &Value) -> Result<(), ClientError> {
    let texts = row_texts(rec);
    put_mirror_row(tx, space, &row_of(rec, &texts))
}

/// Writes a pulled Record into the Mirror, its value and conflicts stored as the text that
/// arrived (one cached statement; the caller holds the page's transaction).
pub fn put_mirror_row(
    tx: &Connection,
    space: &str,
    rec: &MirrorRow<'_>,
) -> Result<(), ClientError> {
    #[cfg(not(feature = "fault-injection"))]
    let merged: Option<String> = None;
    #[cfg(feature = "fault-injection")]
    let merged = if crate::faults::fault!(KeepsDroppedFields) {
        keep_dropped_fields(tx, space, rec)?
    } else {
        None
    };
    let value = merged.as_deref().or(rec.value.as_ref().map(|v| v.get()));
    tx.prepare_cached(
        "INSERT OR REPLACE INTO mirror (space, collection, id, change_seq, deleted, value, conflicts, digest, bucket)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .map_err(sql_error)?
    .execute(params![
        space,
        rec.collection,
        rec.id,
        rec.change_seq,
        rec.deleted,
        value,
        rec.conflicts.as_ref().map(|v| v.get()),
        rec.digest,
        i64::from(driftless_protocol::checksum::bucket_of(&rec.collection, &rec.id)),
    ])
    .map_err(sql_error)?;
    Ok(())
}

#[cfg(feature = "fault-injection")]
/// The planted fault `keeps-dropped-fields`: the pulled value laid over the Mirror's, so Fields
/// the pulled value lacks stay.
fn keep_dropped_fields(
    tx: &Connection,
    space: &str,
    rec: &MirrorRow<'_>,
) -> Result<Option<String>, ClientError> {
    let held: Option<String> = tx
        .query_row(
            "SELECT value FROM mirror WHERE space = ?1 AND collection = ?2 AND id = ?3",
            params![space, rec.collection, rec.id],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql_error)?
        .flatten();
    let (Some(held), Some(new)) = (held, rec.value.as_ref()) else {
        return Ok(None);
    };
    let mut merged: Value = serde_json::from_str(&held).unwrap_or(Value::Null);
    let new: Value = serde_json::from_str(new.get()).unwrap_or(Value::Null);
    match (merged.as_object_mut(), new.as_object()) {
        (Some(m), Some(n)) => {
            m.extend(n.clone());
            Ok(Some(merged.to_string()))
        }
        _ => Ok(None),
    }
}
