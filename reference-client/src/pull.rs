//! Pulling (spec chapter 05, "Pull"): pages are pulled into the Mirror until `has_more` is
//! false, with the Cursor and `through` stored in the same transaction as the page; an expired
//! or invalid Cursor makes a resync that discards the Mirror and keeps the Outbox (`[PULL-15]`);
//! live sync long-polls (`[PULL-17]`). Pending writes stay visible through all of it, because
//! reads rebase them on every call (`[CLIENT-8]`, see the view module).

use crate::store::{self, put_mirror, Store};
use crate::{Client, ClientError, Event, SyncReport};

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
        for _ in 0..1_000_000 {
            let cursor = self.store.meta(&cursor_key)?;
            let wait = wait_ms.map(|w| format!("wait_ms={w}&")).unwrap_or_default();
            let path = match &cursor {
                Some(c) => format!("/v1/spaces/{space}/pull?{wait}cursor={c}"),
                None => format!("/v1/spaces/{space}/pull?{wait}"),
            };
            let r = self.call("GET", &path, None)?;
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
            let records = r.body["records"].as_array().cloned().unwrap_or_default();
            let (next, through) = (
                r.body["cursor"].as_str().unwrap_or("").to_owned(),
                r.body["through"].as_u64().unwrap_or(0),
            );
            let conflicts = records
                .iter()
                .filter(|x| x.get("conflicts").is_some_and(|c| !c.is_null()))
                .count() as i64;
            let (s, ck, tk) = (space.clone(), cursor_key.clone(), through_key.clone());
            self.store.tx(|tx| {
                for rec in &records {
                    put_mirror(tx, &s, rec)?;
                }
                Store::set_meta(tx, &ck, &next)?;
                Store::set_meta(tx, &tk, &through.to_string())?;
                Store::forget_acked(tx, &s, through)?;
                Store::count(tx, "pulled", records.len() as i64)?;
                Store::count(tx, "conflicts_seen", conflicts)
            })?;
            report.pulled += records.len();
            self.emit(Event::Pulled {
                records: records.len(),
                through,
            });
            if r.body["has_more"] != true {
                return Ok(());
            }
        }
        Err(ClientError::Protocol("pull never caught up".into()))
    }
}
