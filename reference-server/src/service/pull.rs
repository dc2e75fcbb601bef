//! Pull, spec chapter 05: `GET /v1/spaces/{space}/pull` pages the Records changed after a
//! Cursor in `change_seq` order from one snapshot, and holds a long-poll until a change arrives
//! (`[PULL-2]` to `[PULL-5]`, `[PULL-7]` to `[PULL-9]`, `[PULL-19]`, `[PULL-13]`, `[PULL-14]`, `[PULL-16]`).
//! The Cursor format lives here too.

use std::sync::Arc;
use std::time::Duration;

use driftless_protocol::checksum::{self, to_hex};
use driftless_protocol::messages::PullResponse;
use driftless_protocol::problem::{Problem, ProblemType};

use super::{internal, parse_range, to_wire, Answer, Service};
use crate::faults::fault;
use crate::storage::Storage;

impl<S: Storage> Service<S> {
    /// `GET /v1/spaces/{space}/pull`, with its query parameters.
    pub async fn pull(
        self: &Arc<Self>,
        space: &str,
        cursor: Option<&str>,
        limit: Option<&str>,
        wait_ms: Option<&str>,
    ) -> Answer<PullResponse> {
        let page_max = self.config.limits.page_records_max as u64;
        let limit = parse_range("limit", limit, 1, page_max, page_max)? as usize;
        let wait_max = self.config.limits.pull_wait_ms_max;
        let wait_ms = parse_range("wait_ms", wait_ms, 0, wait_max, 0)?;
        let position = match cursor {
            None => 0,
            Some(c) => decode_cursor(space, c).ok_or_else(|| {
                Problem::new(
                    ProblemType::InvalidCursor,
                    "the cursor was not issued for this space by this server",
                )
            })?,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        let notify = self.notifier(space);
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let space_owned = space.to_owned();
            let (meta, mut records) = self
                .blocking(move |me| {
                    me.storage
                        .read(&space_owned, |tx| {
                            Ok((tx.meta()?, tx.records_changed_after(position, limit + 1)?))
                        })
                        .map_err(internal)
                })
                .await?;
            if let Some(clock) = &meta.clock {
                // A write through another instance of the deployment (`[HLC-6]`).
                self.clock.merge(clock);
            }
            if cursor.is_some()
                && position < meta.compaction_point
                && !fault!(self.faults, NoCursorExpiry)
            {
                return Err(Problem::new(
                    ProblemType::CursorExpired,
                    format!(
                        "the space was compacted through change {}; resync from no cursor",
                        meta.compaction_point
                    ),
                ));
            }
            let has_more = records.len() > limit;
            records.truncate(limit);
            let through = match records.last() {
                Some(last) if has_more => last.change_seq,
                _ => meta.latest_seq.max(position),
            };
            if fault!(self.faults, PageBoundarySkip) && has_more {
                // The injected bug: the last Record of a full page is dropped, yet the Cursor
                // moves past it.
                records.pop();
            }
            let waited_out = tokio::time::Instant::now() >= deadline;
            let never_hold = fault!(self.faults, NeverHoldPull);
            if !records.is_empty() || has_more || wait_ms == 0 || waited_out || never_hold {
                self.metrics
                    .observe_pull_lag(meta.latest_seq.saturating_sub(position));
                return Ok(PullResponse {
                    server_clock: self.clock.issue(),
                    cursor: encode_cursor(space, through),
                    through,
                    has_more,
                    records: records.iter().map(to_wire).collect(),
                });
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }
}

fn space_tag(space: &str) -> String {
    to_hex(&checksum::sha256(space.as_bytes()))[..8].to_owned()
}

/// A Cursor: `c1.POSITION.TAG`, where TAG ties it to its Space (`[PULL-13]`).
pub fn encode_cursor(space: &str, position: u64) -> String {
    format!("c1.{position}.{}", space_tag(space))
}

/// The position of a Cursor issued for `space`, if it is one.
pub fn decode_cursor(space: &str, cursor: &str) -> Option<u64> {
    let rest = cursor.strip_prefix("c1.")?;
    let (position, tag) = rest.split_once('.')?;
    (tag == space_tag(space)).then_some(())?;
    position.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_tied_to_their_space() {
        let c = encode_cursor("demo", 42);
        assert_eq!(decode_cursor("demo", &c), Some(42));
        assert_eq!(decode_cursor("other", &c), None);
        assert_eq!(decode_cursor("demo", "garbage"), None);
    }
}
