//! Pull, spec chapter 05: `GET /v1/spaces/{space}/pull` pages the Records changed after a
//! Cursor in `change_seq` order from one snapshot, and holds a long-poll until a change arrives
//! (`[PULL-2]` to `[PULL-5]`, `[PULL-7]` to `[PULL-9]`, `[PULL-19]`, `[PULL-13]`, `[PULL-14]`, `[PULL-16]`),
//! and names the latest Collection Schema version of each Collection (`[PULL-20]`).
//! The Cursor format lives here too.

use std::sync::Arc;
use std::time::Duration;

use driftless_protocol::checksum::{self, to_hex};
use driftless_protocol::messages::PullResponse;
use driftless_protocol::problem::{Problem, ProblemType};

use super::{internal, parse_range, Answer, Service};
use crate::faults::fault;
use crate::storage::Storage;

/// A pull page with its body already written: `{"records":[...],"server_clock":...,"cursor":
/// ...,"through":...,"has_more":...,"schemas":{...}}` (a `PullResponse`; members in this order so that the
/// Records, copied out of storage as they are, go straight into the one output buffer).
#[derive(Debug, Clone)]
pub struct PullPage {
    /// The JSON body.
    pub body: Vec<u8>,
    /// The Change Sequence the page reaches.
    pub through: u64,
    /// Whether more changes follow right away.
    pub has_more: bool,
    /// How many Records the page holds.
    pub records: usize,
}

/// Where the Records of a page being written sit in its buffer.
struct PageRecords {
    /// (change_seq, offset of the Record's first byte, with its leading comma if any).
    starts: Vec<(u64, usize)>,
}

impl PageRecords {
    /// Drops every Record from the `n`th on.
    fn truncate(&mut self, body: &mut Vec<u8>, n: usize) {
        if let Some(&(_, at)) = self.starts.get(n) {
            body.truncate(at);
            self.starts.truncate(n);
        }
    }
}

impl<S: Storage> Service<S> {
    /// `GET /v1/spaces/{space}/pull`, answered as a typed message (for callers in process).
    pub async fn pull(
        self: &Arc<Self>,
        space: &str,
        cursor: Option<&str>,
        limit: Option<&str>,
        wait_ms: Option<&str>,
    ) -> Answer<PullResponse> {
        let page = self.pull_page(space, cursor, limit, wait_ms).await?;
        serde_json::from_slice(&page.body).map_err(|e| {
            tracing::error!(error = %e, "a pull page does not parse");
            Problem::new(
                ProblemType::Internal,
                "the server could not complete the request",
            )
        })
    }

    /// `GET /v1/spaces/{space}/pull`, with its query parameters: the page's body written from
    /// the stored wire form of each Record, never decoding merge state.
    pub async fn pull_page(
        self: &Arc<Self>,
        space: &str,
        cursor: Option<&str>,
        limit: Option<&str>,
        wait_ms: Option<&str>,
    ) -> Answer<PullPage> {
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
            let (meta, schemas, mut body, mut written) = self
                .blocking(move |me| {
                    me.storage
                        .read(&space_owned, |tx| {
                            let mut body = Vec::with_capacity(64 * 1024);
                            body.extend_from_slice(b"{\"records\":[");
                            let mut written = PageRecords {
                                starts: Vec::with_capacity(limit + 1),
                            };
                            tx.wire_records_changed_after(
                                position,
                                limit + 1,
                                &mut |seq, wire| {
                                    let at = body.len();
                                    if !written.starts.is_empty() {
                                        body.push(b',');
                                    }
                                    body.extend_from_slice(wire.as_bytes());
                                    written.starts.push((seq, at));
                                    Ok(())
                                },
                            )?;
                            Ok((tx.meta()?, tx.schema_versions()?, body, written))
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
            let has_more = written.starts.len() > limit;
            written.truncate(&mut body, limit);
            let through = match written.starts.last() {
                Some(&(last, _)) if has_more => last,
                _ => meta.latest_seq.max(position),
            };
            if fault!(self.faults, PageBoundarySkip) && has_more {
                // The injected bug: the last Record of a full page is dropped, yet the Cursor
                // moves past it.
                written.truncate(&mut body, limit - 1);
            }
            let waited_out = tokio::time::Instant::now() >= deadline;
            let never_hold = fault!(self.faults, NeverHoldPull);
            let records = written.starts.len();
            if records > 0 || has_more || wait_ms == 0 || waited_out || never_hold {
                self.metrics
                    .observe_pull_lag(meta.latest_seq.saturating_sub(position));
                let text = |v: String| serde_json::to_string(&v).expect("strings serialize");
                let tail = format!(
                    "],\"server_clock\":{},\"cursor\":{},\"through\":{through},\"has_more\":{has_more}",
                    text(self.clock.issue().to_string()),
                    text(encode_cursor(space, through)),
                );
                body.extend_from_slice(tail.as_bytes());
                if let Some(versions) = &schemas {
                    // [PULL-20]: a Client fetches Collection Schemas only when these change.
                    body.extend_from_slice(b",\"schemas\":");
                    serde_json::to_writer(&mut body, versions).map_err(|e| {
                        tracing::error!(error = %e, "schema versions do not serialize");
                        Problem::new(
                            ProblemType::Internal,
                            "the server could not complete the request",
                        )
                    })?;
                }
                body.push(b'}');
                return Ok(PullPage {
                    body,
                    through,
                    has_more,
                    records,
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
