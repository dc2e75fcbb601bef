//! Record digests, buckets and Space checksums (spec chapter 06).
//!
//! A Record digest is the SHA-256 of the canonical JSON of `{"collection", "id", "value"}`.
//! Records fall into 64 buckets by the hash of `collection/id`; a bucket digest hashes the sorted
//! Record digests of its bucket, and the Space digest hashes the 64 bucket digests in order.
//! Sorting before hashing is what makes every digest independent of write order.
//!
//! ```
//! use driftless_protocol::checksum::{SpaceChecksums, BUCKET_COUNT};
//! let mut sums = SpaceChecksums::default();
//! sums.add("tasks", "t1", serde_json::json!({"title": "x"}).as_object().unwrap());
//! assert_eq!(sums.buckets().len(), BUCKET_COUNT);
//! assert_eq!(sums.buckets().iter().map(|b| b.records).sum::<u64>(), 1);
//! ```

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::canonical::record_document;

/// The number of buckets, fixed in protocol version 1 (`[INT-14]`).
pub const BUCKET_COUNT: usize = 64;

/// The `algorithm` name of version 1 checksums (`[INT-8]`).
pub const ALGORITHM: &str = "jcs-sha256-64";

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Digest {
    Sha256::digest(bytes).into()
}

/// Lowercase hexadecimal text of a digest.
pub fn to_hex(digest: &Digest) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(digest.len() * 2);
    for b in digest {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// The digest of an existing Record.
pub fn record_digest(collection: &str, id: &str, value: &Map<String, Value>) -> Digest {
    sha256(record_document(collection, id, value).as_bytes())
}

/// The bucket (0 to 63) a Record belongs to.
pub fn bucket_of(collection: &str, id: &str) -> u8 {
    sha256(format!("{collection}/{id}").as_bytes())[0] >> 2
}

/// The digest of a bucket holding Records with these digests, in any order.
pub fn bucket_digest(record_digests: &[Digest]) -> Digest {
    let mut sorted = record_digests.to_vec();
    sorted.sort_unstable();
    sha256(&sorted.concat())
}

/// One bucket's checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSum {
    /// Number of existing Records in the bucket.
    pub records: u64,
    /// The bucket digest.
    pub digest: Digest,
}

/// Accumulates the checksums of a Space from its existing Records, in any order.
#[derive(Debug, Clone, Default)]
pub struct SpaceChecksums {
    digests: Vec<Vec<Digest>>,
}

impl SpaceChecksums {
    /// Adds an existing Record.
    pub fn add(&mut self, collection: &str, id: &str, value: &Map<String, Value>) {
        self.add_digest(
            bucket_of(collection, id),
            record_digest(collection, id, value),
        );
    }

    /// Adds a Record whose bucket and digest are already known (for example, stored).
    pub fn add_digest(&mut self, bucket: u8, digest: Digest) {
        if self.digests.is_empty() {
            self.digests = vec![Vec::new(); BUCKET_COUNT];
        }
        self.digests[usize::from(bucket) % BUCKET_COUNT].push(digest);
    }

    /// The 64 bucket checksums, in bucket order.
    pub fn buckets(&self) -> Vec<BucketSum> {
        (0..BUCKET_COUNT)
            .map(|i| {
                let digests = self.digests.get(i).map(Vec::as_slice).unwrap_or(&[]);
                BucketSum {
                    records: digests.len() as u64,
                    digest: bucket_digest(digests),
                }
            })
            .collect()
    }

    /// The Space digest: SHA-256 of the 64 bucket digests in bucket order.
    pub fn space_digest(&self) -> Digest {
        space_digest(&self.buckets())
    }
}

/// The Space digest of 64 bucket checksums given in bucket order.
pub fn space_digest(buckets: &[BucketSum]) -> Digest {
    let joined: Vec<u8> = buckets.iter().flat_map(|b| b.digest).collect();
    sha256(&joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digest is over the canonical text of the whole document, written member by member
    /// without building it: the same bytes as canonicalizing the built document, for names and
    /// values that need escaping, reordering (beyond the BMP) or number rewriting.
    #[test]
    fn record_digest_hashes_the_canonical_document() {
        use crate::canonical::to_canonical_bytes;
        let cases = [
            ("tasks", "t1", serde_json::json!({"title": "x"})),
            (
                "c \"q\"\n",
                "é/\u{1}",
                serde_json::json!({"😀": 1, "\u{e000}": 2.50, "a": [1e21, -0.0]}),
            ),
            ("tasks", "empty", serde_json::json!({})),
        ];
        for (collection, id, value) in cases {
            let value = value.as_object().unwrap();
            let doc = serde_json::json!({"collection": collection, "id": id, "value": value});
            assert_eq!(
                record_digest(collection, id, value),
                sha256(&to_canonical_bytes(&doc)),
                "{doc}"
            );
        }
    }

    #[test]
    fn empty_bucket_is_hash_of_nothing() {
        assert_eq!(
            to_hex(&bucket_digest(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    /// Known (Collection, Record ID) → bucket pairs (`[INT-5]`), computed outside this crate
    /// from the rule of spec chapter 06 with
    /// `python3 -c "import hashlib; print(hashlib.sha256('tasks/r0'.encode()).digest()[0] >> 2)"`
    /// (one run per pair). `r37` and `r30` land on the first and last bucket; the accented pair
    /// checks that the hash covers the UTF-8 bytes.
    #[test]
    fn bucket_matches_independently_computed_pairs() {
        let known = [
            ("tasks", "r0", 27),
            ("tasks", "r1", 42),
            ("tasks", "t1", 56),
            ("notes", "n1", 52),
            ("things", "mine", 7),
            ("tasks", "r37", 0),
            ("tasks", "r30", 63),
            ("tâches", "é", 29),
        ];
        for (collection, id, bucket) in known {
            assert_eq!(bucket_of(collection, id), bucket, "{collection}/{id}");
        }
    }
}
