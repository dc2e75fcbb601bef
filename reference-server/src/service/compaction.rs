//! Compaction, spec chapter 11: `POST /v1/spaces/{space}/compact` (the optional
//! `compaction-trigger` feature, `[RET-10]`, `[RET-11]`) and the periodic compaction of every
//! Space past retention (`[RET-4]`, `[RET-5]`, `[RET-8]`, `[RET-9]`, `[RET-12]`).

use std::sync::Arc;

use driftless_protocol::hlc::Hlc;
use driftless_protocol::messages::CompactionResponse;
use driftless_protocol::problem::{Problem, ProblemType};

use super::{internal, Answer, Service};
use crate::storage::{Storage, StorageError};

impl<S: Storage> Service<S> {
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
