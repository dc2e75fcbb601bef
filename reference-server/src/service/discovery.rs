//! Discovery, spec chapter 01: `GET /.well-known/driftless` tells a Client the protocol versions,
//! limits, retention, backoff policy and optional features of this Server (`[DISC-1]` to
//! `[DISC-4]`, `[DISC-7]`).

use driftless_protocol::messages::{Discovery, PROTOCOL_VERSIONS};

use super::Service;
use crate::storage::Storage;

/// The optional feature name of `POST /v1/spaces/{space}/compact`.
pub const FEATURE_COMPACTION_TRIGGER: &str = "compaction-trigger";

impl<S: Storage> Service<S> {
    /// `GET /.well-known/driftless`.
    pub fn discovery(&self) -> Discovery {
        let mut features = Vec::new();
        if self.config.compaction_trigger {
            features.push(FEATURE_COMPACTION_TRIGGER.to_owned());
        }
        Discovery {
            protocol_versions: PROTOCOL_VERSIONS.iter().map(|v| v.to_string()).collect(),
            server_clock: self.clock.issue(),
            limits: self.config.limits.clone(),
            retention: self.config.retention.clone(),
            backoff: self.config.backoff.clone(),
            features,
        }
    }
}
