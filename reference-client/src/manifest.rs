//! Learning the fate of Mutations sent before whose acknowledgement never arrived (spec chapter
//! 04, the manifest; chapter 08, `[CLIENT-7]`): known Outcomes are settled as a push response's
//! would be, and `unknown` ones stay in the Outbox to be pushed again (`[MAN-5]`).

use serde_json::json;

use crate::store::Pending;
use crate::{Client, ClientError, SyncReport};

impl Client {
    /// Mutations sent before whose acknowledgement never arrived: ask the manifest (`[CLIENT-7]`).
    pub(crate) fn resolve_unknown_fates(
        &mut self,
        report: &mut SyncReport,
    ) -> Result<(), ClientError> {
        let sent: Vec<Pending> = self.store.sent(&self.cfg.space)?;
        if crate::faults::fault!(NeverSendsManifest) {
            for p in &sent {
                self.settle(p, &json!({"status": "applied", "op_id": p.op_id}), report)?;
            }
            return Ok(());
        }
        let max = self
            .discovery
            .as_ref()
            .and_then(|d| d["limits"]["op_ids_per_manifest_max"].as_u64())
            .unwrap_or(100) as usize;
        for chunk in sent.chunks(max.max(1)) {
            let ids: Vec<&str> = chunk.iter().map(|p| p.op_id.as_str()).collect();
            let path = format!("/v1/spaces/{}/manifest", self.cfg.space);
            let r = self.call("POST", &path, Some(&json!({"op_ids": ids})))?;
            self.check_auth(&r)?;
            if r.status != 200 {
                return Err(ClientError::Protocol(format!(
                    "manifest answered {}",
                    r.status
                )));
            }
            let entries = r.body["entries"].as_array().cloned().unwrap_or_default();
            for (p, e) in chunk.iter().zip(entries) {
                if e["status"] != "unknown" {
                    self.settle(p, &e, report)?; // unknown: pushed again below ([MAN-5])
                }
            }
        }
        Ok(())
    }
}
