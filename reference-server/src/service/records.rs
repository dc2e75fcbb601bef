//! Records and their history, spec chapter 05: `GET .../records/{collection}/{id}` answers one
//! Record's current state (`[REC-1]`, `[REC-2]`), and `GET .../records/{collection}/{id}/history`
//! pages its audit history (`[AUDIT-1]` to `[AUDIT-5]`; the entries are written by push).

use std::sync::Arc;

use driftless_protocol::ids::{CollectionName, RecordId};
use driftless_protocol::messages::{HistoryResponse, Record};
use driftless_protocol::problem::{Problem, ProblemType};

use super::{internal, invalid_request, parse_collection, parse_range, to_wire, Answer, Service};
use crate::storage::Storage;

impl<S: Storage> Service<S> {
    /// `GET /v1/spaces/{space}/records/{collection}/{id}`.
    pub async fn record(
        self: &Arc<Self>,
        space: &str,
        collection: &str,
        id: &str,
    ) -> Answer<Record> {
        let (collection, id) = parse_record_key(collection, id)?;
        let space = space.to_owned();
        let (c, i) = (collection.to_string(), id.to_string());
        let found = self
            .blocking(move |me| {
                me.storage
                    .read(&space, |tx| tx.record(&c, &i))
                    .map_err(internal)
            })
            .await?;
        found.map(|r| to_wire(&r)).ok_or_else(|| {
            Problem::new(
                ProblemType::RecordNotFound,
                format!("{collection}/{id} does not exist in this space"),
            )
        })
    }

    /// `GET /v1/spaces/{space}/records/{collection}/{id}/history`.
    pub async fn history(
        self: &Arc<Self>,
        space: &str,
        collection: &str,
        id: &str,
        after: Option<&str>,
        limit: Option<&str>,
    ) -> Answer<HistoryResponse> {
        let (collection, id) = parse_record_key(collection, id)?;
        let page_max = self.config.limits.page_records_max as u64;
        let limit = parse_range("limit", limit, 1, page_max, page_max)? as usize;
        let after = parse_range("after", after, 0, u64::MAX, 0)?;
        let space = space.to_owned();
        let (c, i) = (collection.to_string(), id.to_string());
        let mut entries = self
            .blocking(move |me| {
                me.storage
                    .read(&space, |tx| tx.history(&c, &i, after, limit + 1))
                    .map_err(internal)
            })
            .await?;
        let has_more = entries.len() > limit;
        entries.truncate(limit);
        Ok(HistoryResponse {
            server_clock: self.clock.issue(),
            collection,
            id,
            has_more,
            entries,
        })
    }
}

fn parse_record_key(collection: &str, id: &str) -> Answer<(CollectionName, RecordId)> {
    let collection = parse_collection(collection)?;
    let id = id.parse().map_err(|_| {
        invalid_request(
            "/path/id",
            "does not match ^[A-Za-z0-9._~-]{1,128}$",
            "the record ID is not valid",
        )
    })?;
    Ok((collection, id))
}
