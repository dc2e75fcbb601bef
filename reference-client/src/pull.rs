//! Pulling (spec chapter 05, "Pull"): pages are pulled into the Mirror until `has_more` is
//! false, with the Cursor and `through` stored in the same transaction as the page; an expired
//! or invalid Cursor makes a resync that discards the Mirror and keeps the Outbox (`[PULL-15]`);
//! live sync long-polls (`[PULL-17]`). Pending writes stay visible through all of it, because
//! reads rebase them on every call (`[CLIENT-8]`, see the view module).

use crate::store::{self, put_mirror_row, MirrorRow, Store};
use crate::{Client, ClientError, Event, SyncReport};

/// A pull page (spec chapter 05 `PullResponse`), parsed without building JSON trees: each
/// Record's value stays the text that arrived, borrowed from the response.
#[derive(serde::Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    records: Vec<MirrorRow<'a>>,
    #[serde(borrow)]
    cursor: std::borrow::Cow<'a, str>,
    through: u64,
    #[serde(default)]
    has_more: bool,
    /// The latest Collection Schema version of each Collection (`[PULL-20]`), if sent.
    #[serde(default)]
    schemas: Option<std::collections::BTreeMap<String, u32>>,
}

impl Client {
    /// Syncs and long-polls in turn until `stop` is set, adding up the reports.
    pub(crate) fn live_sync(
        &mut self,
        stop: &std::sync::atomic::AtomicBool,
        wait_ms: u64,
    ) -> Result<SyncReport, ClientError> {
        let mut total = SyncReport::default();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let r = self.sync()?;
            total.acknowledged += r.acknowledged;
            total.rejected += r.rejected;
            total.reissued += r.reissued;
            total.pulled += r.pulled;
            total.resynced |= r.resynced;
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            self.pull_all(&mut total, Some(wait_ms))?;
        }
        Ok(total)
    }

    pub(crate) fn pull_all(
        &mut self,
        report: &mut SyncReport,
        wait_ms: Option<u64>,
    ) -> Result<(), ClientError> {
        let space = self.cfg.space.clone();
        let cursor_key = format!("cursor:{space}");
        let through_key = format!("through:{space}");
        let wait = wait_ms.map(|w| format!("wait_ms={w}&")).unwrap_or_default();
        let path_of = |cursor: Option<&str>| match cursor {
            Some(c) => format!("/v1/spaces/{space}/pull?{wait}cursor={c}"),
            None => format!("/v1/spaces/{space}/pull?{wait}"),
        };
        // The next page, asked for while this one is stored: storing a page waits on the disk
        // (its commit fsyncs), and the Server can write the next page meanwhile.
        let mut prefetch: Option<crate::transport::Prefetch> = None;
        for _ in 0..1_000_000 {
            let cursor = self.store.meta(&cursor_key)?;
            let path = path_of(cursor.as_deref());
            let r = self.call_text(&path, prefetch.take())?;
            self.check_auth(&r)?;
            if r.status == 410 || (r.status == 400 && Self::problem_of(&r) == "invalid-cursor") {
                // Resync: rebuild the Mirror, keep the Outbox ([PULL-15]).
                report.resynced = true;
                self.emit(Event::Resync);
                let (s, ck, tk) = (space.clone(), cursor_key.clone(), through_key.clone());
                self.store.tx(|tx| {
                    tx.execute("DELETE FROM mirror WHERE space = ?1", [&s])
                        .map_err(store::sql_error)?;
                    tx.execute("DELETE FROM meta WHERE key = ?1 OR key = ?2", [&ck, &tk])
                        .map_err(store::sql_error)?;
                    Store::count(tx, "resyncs", 1)
                })?;
                continue;
            }
            if r.status != 200 {
                return Err(ClientError::Protocol(format!(
                    "pull answered {}: {}",
                    r.status, r.body
                )));
            }
            let page: Page<'_> = serde_json::from_str(&r.text).map_err(|e| {
                ClientError::Protocol(format!("a pull page is not a pull response: {e}"))
            })?;
            let records = &page.records;
            let (next, through) = (page.cursor.as_ref(), page.through);
            if page.has_more {
                prefetch = self.prefetch(&path_of(Some(next)));
            }
            let conflicts = records.iter().filter(|x| x.conflicts.is_some()).count() as i64;
            let (s, ck, tk) = (space.as_str(), cursor_key.as_str(), through_key.as_str());
            self.store.tx(|tx| {
                for rec in records {
                    put_mirror_row(tx, s, rec)?;
                }
                Store::set_meta(tx, ck, next)?;
                Store::set_meta(tx, tk, &through.to_string())?;
                Store::forget_acked(tx, s, through)?;
                Store::count(tx, "pulled", records.len() as i64)?;
                Store::count(tx, "conflicts_seen", conflicts)
            })?;
            report.pulled += records.len();
            self.emit(Event::Pulled {
                records: records.len(),
                through,
            });
            if !page.has_more {
                if let Some(versions) = &page.schemas {
                    self.refresh_named_schemas(versions)?;
                }
                return Ok(());
            }
        }
        Err(ClientError::Protocol("pull never caught up".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::put_mirror;
    use serde_json::Value;

    /// A page parsed into borrowed rows mirrors exactly what the JSON-tree path mirrors:
    /// escaped IDs (copied, not borrowed), values with escapes and exponents, conflicts, and
    /// tombstones with a `null` or an absent value.
    #[test]
    fn a_borrowed_page_mirrors_what_the_tree_path_mirrors() {
        let text = r#"{"records":[
            {"collection":"notes","id":"a\u0062c","change_seq":3,"deleted":false,
             "value":{"t":"x\"y","n":1.5e3,"z":[1,{"k":null}]},"conflicts":{"t":["p","q"]},"digest":"ab"},
            {"collection":"notes","id":"gone","change_seq":4,"deleted":true,"value":null},
            {"collection":"notes","id":"old","change_seq":5,"deleted":true}],
            "cursor":"c1.5.x","through":5,"has_more":false}"#;
        let page: Page<'_> = serde_json::from_str(text).unwrap();
        assert_eq!(
            (page.through, page.has_more, page.cursor.as_ref()),
            (5, false, "c1.5.x")
        );
        let tree: Value = serde_json::from_str(text).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut borrowed = Store::open(&dir.path().join("borrowed")).unwrap();
        let mut trees = Store::open(&dir.path().join("trees")).unwrap();
        borrowed
            .tx(|tx| {
                page.records
                    .iter()
                    .try_for_each(|r| put_mirror_row(tx, "s", r))
            })
            .unwrap();
        trees
            .tx(|tx| {
                tree["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .try_for_each(|r| put_mirror(tx, "s", r))
            })
            .unwrap();
        let keys = trees.mirror_keys("s").unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(borrowed.mirror_keys("s").unwrap(), keys);
        for (c, id) in &keys {
            let (b, t) = (
                borrowed.mirrored("s", c, id).unwrap(),
                trees.mirrored("s", c, id).unwrap(),
            );
            assert!(t.is_some());
            assert_eq!(b, t, "{c}/{id}");
        }
        let abc = borrowed.mirrored("s", "notes", "abc").unwrap().unwrap();
        assert_eq!(abc.conflicts, Some(serde_json::json!({"t": ["p", "q"]})));
    }
}
