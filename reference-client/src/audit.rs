//! The integrity audit (spec chapter 06): the Mirror's bucket checksums, recomputed from its
//! values, are compared with the Server's at the same `through` only (`[INT-9]`), and only the
//! buckets that differ are fetched again and repaired, and reported (`[INT-13]`).

use driftless_protocol::checksum::{bucket_of, record_digest, to_hex, SpaceChecksums};
use serde_json::Value;

use crate::store::{self, put_mirror, Store};
use crate::{AuditReport, Client, ClientError, Event, SyncReport};

impl Client {
    /// Compares bucket digests at one `through` and repairs those that differ.
    pub(crate) fn audit_buckets(&mut self) -> Result<AuditReport, ClientError> {
        self.discover()?;
        let space = self.cfg.space.clone();
        for _ in 0..5 {
            let mut scratch = SyncReport::default();
            self.pull_all(&mut scratch, None)?;
            let r = self.call("GET", &format!("/v1/spaces/{space}/checksums"), None)?;
            self.check_auth(&r)?;
            let local_through = self.store.through(&space)?;
            if r.body["through"].as_u64() != Some(local_through) {
                continue; // the space moved on; pull again and compare at the same position
            }
            let local = self.local_checksums()?;
            let mut report = AuditReport {
                buckets_compared: local.buckets().len(),
                through: local_through,
                ..AuditReport::default()
            };
            for (i, b) in local.buckets().iter().enumerate() {
                if r.body["buckets"][i]["digest"].as_str() != Some(to_hex(&b.digest).as_str()) {
                    report.records_fixed += self.repair_bucket(i as u8)?;
                    report.repaired.push(i as u8);
                    self.emit(Event::Repaired { bucket: i as u8 });
                }
            }
            return Ok(report);
        }
        Err(ClientError::Unavailable(
            "the space kept changing during the audit".into(),
        ))
    }

    /// Checksums recomputed from the Mirror's values (not the stored digests), so local
    /// corruption shows.
    fn local_checksums(&self) -> Result<SpaceChecksums, ClientError> {
        let mut sums = SpaceChecksums::default();
        self.store
            .for_each_mirrored_value(&self.cfg.space, |c, id, value| {
                sums.add_digest(bucket_of(c, id), record_digest(c, id, value));
            })?;
        Ok(sums)
    }

    fn repair_bucket(&mut self, bucket: u8) -> Result<usize, ClientError> {
        let space = self.cfg.space.clone();
        let mut fetched: Vec<Value> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/v1/spaces/{space}/buckets/{bucket}?after={a}"),
                None => format!("/v1/spaces/{space}/buckets/{bucket}"),
            };
            let r = self.call("GET", &path, None)?;
            self.check_auth(&r)?;
            fetched.extend(r.body["records"].as_array().cloned().unwrap_or_default());
            if r.body["has_more"] != true {
                break;
            }
            after = r.body["next_after"].as_str().map(str::to_owned);
        }
        let keep: Vec<(String, String)> = fetched
            .iter()
            .map(|r| {
                (
                    r["collection"].as_str().unwrap_or("").to_owned(),
                    r["id"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let local: Vec<(String, String)> = self
            .store
            .mirror_keys(&space)?
            .into_iter()
            .filter(|(c, i)| bucket_of(c, i) == bucket)
            .collect();
        let mut fixed = 0;
        self.store.tx(|tx| {
            for (c, i) in &local {
                if !keep.contains(&(c.clone(), i.clone())) {
                    tx.execute("DELETE FROM mirror WHERE space = ?1 AND collection = ?2 AND id = ?3 AND deleted = 0", rusqlite::params![space, c, i])
                        .map_err(store::sql_error)?;
                    fixed += 1;
                }
            }
            for rec in &fetched {
                put_mirror(tx, &space, rec)?;
                fixed += 1;
            }
            Store::count(tx, "repaired_buckets", 1)
        })?;
        Ok(fixed)
    }
}
