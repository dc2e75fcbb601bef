//! The test vectors of spec chapter 06, recomputed from their inputs.
//!
//! The vectors block is fenced as ```` ```json test-vectors ````. On a mismatch this test prints
//! the block as the code computes it, so a deliberate algorithm change (which is a spec change)
//! can update the spec in the same commit.

mod common;

use driftless_protocol::canonical::to_canonical_string;
use driftless_protocol::checksum::{
    bucket_digest, bucket_of, record_digest, to_hex, SpaceChecksums, BUCKET_COUNT,
};
use serde_json::{json, Map, Value};

fn spec_vectors() -> Value {
    let block = common::fences()
        .into_iter()
        .find(|f| f.file == "06-integrity.md" && f.info == "json test-vectors")
        .expect("06-integrity.md has a ```json test-vectors block");
    serde_json::from_str(&block.body).expect("the test vectors are JSON")
}

/// The vectors as the code computes them from the inputs in `spec`.
fn recompute(spec: &Value) -> Value {
    let canonical: Vec<Value> = spec["canonical"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let input = c["input"].as_str().unwrap();
            let parsed: Value = serde_json::from_str(input).unwrap();
            json!({ "input": input, "canonical": to_canonical_string(&parsed) })
        })
        .collect();
    let mut sums = SpaceChecksums::default();
    let records: Vec<Value> = spec["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let (c, id) = (r["collection"].as_str().unwrap(), r["id"].as_str().unwrap());
            let value: &Map<String, Value> = r["value"].as_object().unwrap();
            sums.add(c, id, value);
            let doc = json!({ "collection": c, "id": id, "value": value });
            json!({
                "collection": c,
                "id": id,
                "value": value,
                "canonical": to_canonical_string(&doc),
                "digest": to_hex(&record_digest(c, id, value)),
                "bucket": bucket_of(c, id),
            })
        })
        .collect();
    let buckets = sums.buckets();
    assert_eq!(buckets.len(), BUCKET_COUNT);
    let non_empty: Vec<Value> = buckets
        .iter()
        .enumerate()
        .filter(|(_, b)| b.records > 0)
        .map(|(i, b)| json!({ "bucket": i, "records": b.records, "digest": to_hex(&b.digest) }))
        .collect();
    json!({
        "canonical": canonical,
        "records": records,
        "non_empty_buckets": non_empty,
        "empty_bucket_digest": to_hex(&bucket_digest(&[])),
        "space_digest": to_hex(&sums.space_digest()),
    })
}

#[test]
fn spec_test_vectors_match_the_code() {
    let spec = spec_vectors();
    let computed = recompute(&spec);
    assert!(
        spec == computed,
        "the test vectors of spec/06-integrity.md differ from the code; computed:\n{}",
        serde_json::to_string_pretty(&computed).unwrap()
    );
    assert!(spec["records"].as_array().unwrap().len() >= 3);
    assert!(spec["canonical"].as_array().unwrap().len() >= 5);
}

/// The checksums-response and bucket-response examples of chapter 06 are the Space of the test
/// vectors: each bucket's number, record count and digest, and the bucket example's Records.
#[test]
fn checksum_examples_describe_the_vector_space() {
    let spec = spec_vectors();
    let computed = recompute(&spec);
    let empty = computed["empty_bucket_digest"].clone();
    let (mut checksums_examples, mut bucket_examples) = (0, 0);
    for f in common::fences()
        .into_iter()
        .filter(|f| f.file == "06-integrity.md")
    {
        let is_checksums = f.info == "json schema=checksums-response";
        if !is_checksums && f.info != "json schema=bucket-response" {
            continue;
        }
        let example: Value = serde_json::from_str(&f.body).unwrap();
        if is_checksums {
            checksums_examples += 1;
            assert_eq!(example["space_digest"], computed["space_digest"]);
            // Every bucket in order: non-empty ones as computed, the others empty.
            let expected: Vec<Value> = (0..BUCKET_COUNT)
                .map(|i| {
                    computed["non_empty_buckets"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|b| b["bucket"] == json!(i))
                        .cloned()
                        .unwrap_or_else(|| json!({"bucket": i, "records": 0, "digest": empty}))
                })
                .collect();
            let shown = example["buckets"].as_array().unwrap();
            assert_eq!(shown.len(), BUCKET_COUNT);
            for (i, (shown, expected)) in shown.iter().zip(&expected).enumerate() {
                assert_eq!(shown, expected, "the example's bucket entry {i}");
            }
        } else {
            bucket_examples += 1;
            let bucket = example["bucket"].as_u64().unwrap();
            let expected: Vec<Value> = computed["records"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["bucket"].as_u64() == Some(bucket))
                .map(|r| json!([r["collection"], r["id"], r["value"], r["digest"]]))
                .collect();
            assert!(
                !expected.is_empty(),
                "the example's bucket {bucket} is empty"
            );
            let shown: Vec<Value> = example["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| json!([r["collection"], r["id"], r["value"], r["digest"]]))
                .collect();
            assert_eq!(shown, expected, "bucket {bucket}");
        }
    }
    assert_eq!((checksums_examples, bucket_examples), (1, 1));
}
