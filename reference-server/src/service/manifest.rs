//! The manifest, spec chapter 04: `POST /v1/spaces/{space}/manifest` tells a Client the stored
//! Outcome of each Op ID it asks about, or that the Server does not know it (`[MAN-1]` to
//! `[MAN-4]`).

use std::sync::Arc;

use driftless_protocol::ids::OpId;
use driftless_protocol::messages::{ManifestEntry, ManifestResponse, Outcome, Unknown};
use driftless_protocol::problem::{Problem, ProblemType};
use serde_json::Value;

use super::{internal, invalid_request, Answer, Service};
use crate::faults::fault;
use crate::storage::{Storage, StorageError};

impl<S: Storage> Service<S> {
    /// `POST /v1/spaces/{space}/manifest`.
    pub async fn manifest(self: &Arc<Self>, space: &str, body: Value) -> Answer<ManifestResponse> {
        let op_ids = match body {
            Value::Object(mut obj) => {
                // The count comes before the other members and the elements (`[PUSH-16]`).
                if let Some(Value::Array(ids)) = obj.get("op_ids") {
                    self.check_manifest_size(ids.len())?;
                }
                if let Some(k) = obj.keys().find(|k| *k != "op_ids") {
                    return Err(invalid_request(
                        &format!("/{k}"),
                        "unknown member",
                        "the body is not a valid manifest-request",
                    ));
                }
                match obj.remove("op_ids") {
                    Some(Value::Array(ids)) if !ids.is_empty() => ids,
                    _ => {
                        return Err(invalid_request(
                            "/op_ids",
                            "expected a non-empty array",
                            "op_ids must be a non-empty array of op IDs",
                        ))
                    }
                }
            }
            _ => {
                return Err(invalid_request(
                    "",
                    "expected an object",
                    "the body must be a manifest-request object",
                ))
            }
        };
        let mut parsed = Vec::with_capacity(op_ids.len());
        let mut problem = Problem::new(ProblemType::InvalidRequest, "op_ids holds invalid op IDs");
        let mut bad = false;
        for (i, id) in op_ids.iter().enumerate() {
            match id.as_str().and_then(|s| s.parse::<OpId>().ok()) {
                Some(op) => parsed.push(op),
                None => {
                    problem = problem.with_error(format!("/op_ids/{i}"), "not a valid op ID");
                    bad = true;
                }
            }
        }
        if bad {
            return Err(problem);
        }
        let space = space.to_owned();
        let entries = self
            .blocking(move |me| {
                me.storage
                    .read(&space, |tx| {
                        let ids: Vec<&str> = parsed.iter().map(OpId::as_str).collect();
                        let known = tx.ops(&ids)?;
                        parsed
                            .into_iter()
                            .map(|op_id| {
                                Ok(match known.get(op_id.as_str()).cloned() {
                                    None => ManifestEntry::Unknown(Unknown { op_id }),
                                    Some(stored) => {
                                        match serde_json::from_str::<Outcome>(&stored.outcome)
                                            .map_err(|e| StorageError::Corrupt(e.to_string()))?
                                        {
                                            Outcome::Applied(a) => ManifestEntry::Applied(a),
                                            Outcome::Rejected(r)
                                                if fault!(me.faults, ManifestForgetsRejections) =>
                                            {
                                                ManifestEntry::Unknown(Unknown { op_id: r.op_id })
                                            }
                                            Outcome::Rejected(r) => ManifestEntry::Rejected(r),
                                        }
                                    }
                                })
                            })
                            .collect::<Result<Vec<_>, StorageError>>()
                    })
                    .map_err(internal)
            })
            .await?;
        Ok(ManifestResponse {
            server_clock: self.clock.issue(),
            entries,
        })
    }

    /// `batch-too-large` for a manifest over `op_ids_per_manifest_max` (`[MAN-4]`, `[PUSH-16]`).
    fn check_manifest_size(&self, n: usize) -> Answer<()> {
        let max = self.config.limits.op_ids_per_manifest_max as usize;
        if n > max {
            return Err(Problem::new(
                ProblemType::BatchTooLarge,
                format!("{n} op IDs exceed the limit of {max}"),
            ));
        }
        Ok(())
    }
}
