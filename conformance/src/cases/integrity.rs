//! Cases of spec chapter 06, Integrity (`spec/06-integrity.md`): record digests and Space checksums
//! equal the spec's algorithm, and bucket pages repair exactly one bucket.
//!
//! Requirement IDs its cases check: `[INT-1]`, `[INT-2]`, `[INT-4]`, `[INT-5]`, `[INT-6]`,
//! `[INT-7]`, `[INT-8]`, `[INT-10]`, `[INT-11]`, `[INT-12]`, `[INT-14]`, `[PULL-18]`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::support::{case, put, space, C};
use crate::client::{check, fail, Ctx};
use crate::Level::Must;
use crate::{Case, CaseResult};

/// The cases of this chapter, in suite order.
pub fn cases() -> Vec<Case> {
    vec![
        case(
            "integrity.checksums-match-model",
            &[
                "INT-4", "INT-5", "INT-6", "INT-7", "PULL-18", "INT-1", "INT-2", "INT-8", "INT-14",
            ],
            Must,
            "checksums equal the spec's algorithm over the pulled records",
            checksums_match_model,
        ),
        case(
            "integrity.bucket-repair",
            &["INT-10", "INT-11", "INT-12"],
            Must,
            "bucket pages hold exactly the bucket's records, and bucket 64 is invalid",
            bucket_repair,
        ),
    ]
}

/// The canonical JSON of `v`, so values compare as the spec compares them (`1.0` equals `1`).
fn canonical(v: &Value) -> String {
    driftless_protocol::canonical::to_canonical_string(v)
}

fn checksums_match_model(ctx: &mut Ctx) -> CaseResult {
    use driftless_protocol::checksum::{to_hex, SpaceChecksums};
    let (space, token) = space(ctx, "write")?;
    let pushed: BTreeMap<String, Map<String, Value>> = (0..30)
        .map(|i| {
            let value = json!({"i": i, "f": 0.5, "whole": 1.0, "big": 1e21, "s": "é\n"});
            (
                format!("r{i}"),
                value.as_object().cloned().unwrap_or_default(),
            )
        })
        .collect();
    let ms: Vec<Value> = pushed
        .iter()
        .map(|(id, value)| put(ctx, id, Value::Object(value.clone())))
        .collect();
    ctx.push_applied(&space, &token, C, &ms)?;
    let (records, last) = ctx.pull_all(&space, &token, 100)?;
    // The model is built from what the case pushed, never from what the Server returned.
    let mut model = SpaceChecksums::default();
    for (id, value) in &pushed {
        let key = format!("things/{id}");
        let rec = records
            .get(&key)
            .ok_or_else(|| fail(format!("{key} was applied but the pull lacks it ([INT-6])")))?;
        check(
            rec["deleted"] == false && canonical(&rec["value"]) == canonical(&json!(value)),
            || format!("{key} pulled as {rec}, pushed as {}", json!(value)),
        )?;
        ctx.check_record_digest("things", id, value, &rec["digest"])?;
        model.add("things", id, value);
    }
    check(records.len() == pushed.len(), || {
        format!(
            "the pull holds {} records; {} were pushed",
            records.len(),
            pushed.len()
        )
    })?;
    let r = ctx.get(&format!("/v1/spaces/{space}/checksums"), Some(&token))?;
    ctx.expect(&r, 200, "checksums")?;
    ctx.validate("checksums-response", &r.body)?;
    check(r.body["through"] == last["through"], || {
        "checksums and pull disagree on through".into()
    })?;
    let expected = to_hex(&model.space_digest());
    ctx.check_eq("space_digest", &json!(expected), &r.body["space_digest"])
}

fn bucket_repair(ctx: &mut Ctx) -> CaseResult {
    use driftless_protocol::checksum::{bucket_of, record_digest, to_hex};
    let (space, token) = space(ctx, "write")?;
    let pushed: BTreeMap<String, Value> = (0..80)
        .map(|i| (format!("r{i}"), json!({"i": i})))
        .collect();
    let ms: Vec<Value> = pushed
        .iter()
        .map(|(id, value)| put(ctx, id, value.clone()))
        .collect();
    ctx.push_applied(&space, &token, C, &ms)?;
    // The bucket holding the most of the pushed IDs, and exactly those IDs, from what was sent.
    let mut by_bucket: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for id in pushed.keys() {
        by_bucket
            .entry(u64::from(bucket_of("things", id)))
            .or_default()
            .insert(id.clone());
    }
    let (bucket, expected) = by_bucket
        .iter()
        .max_by_key(|(_, ids)| ids.len())
        .map(|(b, ids)| (*b, ids.clone()))
        .unwrap_or_default();
    let sums = ctx.get(&format!("/v1/spaces/{space}/checksums"), Some(&token))?;
    ctx.expect(&sums, 200, "checksums")?;
    check(
        sums.body["buckets"][bucket as usize]["records"] == expected.len(),
        || {
            format!(
                "checksums count {} records in bucket {bucket}; {} were pushed there",
                sums.body["buckets"][bucket as usize]["records"],
                expected.len()
            )
        },
    )?;
    let mut got = Vec::new();
    let mut query = "?limit=1".to_owned();
    for _ in 0..1000 {
        let r = ctx.get(
            &format!("/v1/spaces/{space}/buckets/{bucket}{query}"),
            Some(&token),
        )?;
        ctx.expect(&r, 200, "bucket")?;
        ctx.validate("bucket-response", &r.body)?;
        for rec in r.body["records"].as_array().into_iter().flatten() {
            let id = rec["id"].as_str().unwrap_or("").to_owned();
            let sent = pushed.get(&id).and_then(Value::as_object);
            check(
                sent.is_some_and(|v| {
                    canonical(&rec["value"]) == canonical(&json!(v))
                        && rec["digest"] == to_hex(&record_digest("things", &id, v)).as_str()
                }),
                || format!("bucket record things/{id} is {rec}, not what was pushed"),
            )?;
            got.push(id);
        }
        if r.body["has_more"] != true {
            break;
        }
        check(r.body["next_after"].is_string(), || {
            "has_more without next_after ([INT-11])".into()
        })?;
        query = format!(
            "?limit=1&after={}",
            r.body["next_after"].as_str().unwrap_or("")
        );
    }
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    check(unique == expected && unique.len() == got.len(), || {
        format!(
            "bucket {bucket} paged {:?} ({} pages); the pushed IDs in it are {:?}",
            got,
            got.len(),
            expected
        )
    })?;
    let r = ctx.get(&format!("/v1/spaces/{space}/buckets/64"), Some(&token))?;
    ctx.expect_problem(&r, 400, "invalid-request")
}
