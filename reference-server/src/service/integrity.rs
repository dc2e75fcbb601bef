//! Integrity, spec chapter 06: `GET .../checksums` answers the 64 bucket digests and the Space
//! digest from one snapshot, and `GET .../buckets/{bucket}` pages the Records of one bucket for
//! repair (`[INT-4]` to `[INT-8]`, `[INT-10]` to `[INT-12]`, `[INT-14]`).

use std::sync::Arc;

use driftless_protocol::checksum::{self, to_hex, SpaceChecksums};
use driftless_protocol::ids::{CollectionName, RecordId};
use driftless_protocol::messages::{BucketChecksum, BucketResponse, ChecksumsResponse};

use super::{internal, invalid_request, parse_range, to_wire, Answer, Service};
use crate::faults::fault;
use crate::storage::Storage;
use driftless_protocol::problem::{Problem, ProblemType};

impl<S: Storage> Service<S> {
    /// `GET /v1/spaces/{space}/checksums`.
    pub async fn checksums(self: &Arc<Self>, space: &str) -> Answer<ChecksumsResponse> {
        if fault!(self.faults, ChecksumsUnavailable) {
            return Err(Problem::new(
                ProblemType::Internal,
                "checksums are unavailable",
            ));
        }
        let space = space.to_owned();
        let (meta, digests) = self
            .blocking(move |me| {
                me.storage
                    .read(&space, |tx| Ok((tx.meta()?, tx.record_digests()?)))
                    .map_err(internal)
            })
            .await?;
        let mut sums = SpaceChecksums::default();
        for (bucket, digest) in digests {
            sums.add_digest(bucket, digest);
        }
        let buckets = sums.buckets();
        Ok(ChecksumsResponse {
            server_clock: self.clock.issue(),
            through: meta.latest_seq,
            algorithm: checksum::ALGORITHM.to_owned(),
            space_digest: to_hex(&checksum::space_digest(&buckets)),
            buckets: buckets
                .iter()
                .enumerate()
                .map(|(i, b)| BucketChecksum {
                    bucket: i as u8,
                    records: b.records,
                    digest: to_hex(&b.digest),
                })
                .collect(),
        })
    }

    /// `GET /v1/spaces/{space}/buckets/{bucket}`.
    pub async fn bucket(
        self: &Arc<Self>,
        space: &str,
        bucket: &str,
        after: Option<&str>,
        limit: Option<&str>,
    ) -> Answer<BucketResponse> {
        let bucket: u8 = bucket.parse().ok().filter(|b| *b < 64).ok_or_else(|| {
            invalid_request(
                "/path/bucket",
                "out of range",
                "bucket must be an integer from 0 to 63",
            )
        })?;
        let page_max = self.config.limits.page_records_max as u64;
        let limit = parse_range("limit", limit, 1, page_max, page_max)? as usize;
        let after = match after {
            None => None,
            Some(a) => {
                // A `next_after` is a Collection name and a Record ID; anything else was never
                // one, and the OpenAPI document says so.
                let (c, i) = a
                    .split_once('/')
                    .filter(|(c, i)| {
                        c.parse::<CollectionName>().is_ok() && i.parse::<RecordId>().is_ok()
                    })
                    .ok_or_else(|| {
                        invalid_request(
                            "/query/after",
                            "expected collection/id",
                            "after must be the next_after of a previous page",
                        )
                    })?;
                Some((c.to_owned(), i.to_owned()))
            }
        };
        let space = space.to_owned();
        let (meta, mut records) = self
            .blocking(move |me| {
                me.storage
                    .read(&space, |tx| {
                        let after = after.as_ref().map(|(c, i)| (c.as_str(), i.as_str()));
                        Ok((tx.meta()?, tx.bucket_records(bucket, after, limit + 1)?))
                    })
                    .map_err(internal)
            })
            .await?;
        let has_more = records.len() > limit;
        records.truncate(limit);
        let next_after = has_more
            .then(|| records.last().map(|r| format!("{}/{}", r.collection, r.id)))
            .flatten();
        Ok(BucketResponse {
            server_clock: self.clock.issue(),
            through: meta.latest_seq,
            bucket,
            has_more,
            next_after,
            records: records.iter().map(to_wire).collect(),
        })
    }
}
