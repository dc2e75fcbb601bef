//! Cases of spec chapter 06, Integrity (`spec/06-integrity.md`): record digests and Space checksums
//! equal the spec's algorithm, and bucket pages repair exactly one bucket.
//!
//! Requirement IDs its cases check: `[INT-1]`, `[INT-2]`, `[INT-4]`, `[INT-5]`, `[INT-6]`,
//! `[INT-7]`, `[INT-8]`, `[INT-10]`, `[INT-11]`, `[INT-12]`, `[INT-14]`, `[PULL-18]`.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::support::{case, put, space, C};
use crate::client::{check, Ctx};
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

fn checksums_match_model(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let ms: Vec<Value> = (0..30)
        .map(|i| {
            put(
                ctx,
                &format!("r{i}"),
                json!({"i": i, "f": 0.5, "whole": 1.0, "big": 1e21, "s": "é\n"}),
            )
        })
        .collect();
    ctx.push_ok(&space, &token, C, &ms)?;
    let (records, last) = ctx.pull_all(&space, &token, 100)?;
    let mut model = driftless_protocol::checksum::SpaceChecksums::default();
    for rec in records.values().filter(|r| r["deleted"] == false) {
        let (c, id) = (
            rec["collection"].as_str().unwrap_or(""),
            rec["id"].as_str().unwrap_or(""),
        );
        let value = rec["value"].as_object().cloned().unwrap_or_default();
        let digest = driftless_protocol::checksum::to_hex(
            &driftless_protocol::checksum::record_digest(c, id, &value),
        );
        check(rec["digest"] == digest.as_str(), || {
            format!(
                "{c}/{id} digest {} differs from the spec's {digest}",
                rec["digest"]
            )
        })?;
        model.add(c, id, &value);
    }
    let r = ctx.get(&format!("/v1/spaces/{space}/checksums"), Some(&token))?;
    ctx.expect(&r, 200, "checksums")?;
    ctx.validate("checksums-response", &r.body)?;
    check(r.body["through"] == last["through"], || {
        "checksums and pull disagree on through".into()
    })?;
    let expected = driftless_protocol::checksum::to_hex(&model.space_digest());
    check(r.body["space_digest"] == expected.as_str(), || {
        format!(
            "space_digest {} differs from the model's {expected}",
            r.body["space_digest"]
        )
    })
}

fn bucket_repair(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let ms: Vec<Value> = (0..80)
        .map(|i| put(ctx, &format!("r{i}"), json!({"i": i})))
        .collect();
    ctx.push_ok(&space, &token, C, &ms)?;
    let sums = ctx.get(&format!("/v1/spaces/{space}/checksums"), Some(&token))?;
    let (records, _) = ctx.pull_all(&space, &token, 100)?;
    let bucket = (0..64u64)
        .max_by_key(|b| {
            sums.body["buckets"][*b as usize]["records"]
                .as_u64()
                .unwrap_or(0)
        })
        .unwrap_or(0);
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
            let id = rec["id"].as_str().unwrap_or("");
            let key = format!("things/{id}");
            check(
                records
                    .get(&key)
                    .is_some_and(|p| p["value"] == rec["value"] && p["digest"] == rec["digest"]),
                || format!("bucket record {key} differs from the pulled one"),
            )?;
            check(
                u64::from(driftless_protocol::checksum::bucket_of("things", id)) == bucket,
                || format!("{key} is not in bucket {bucket}"),
            )?;
            got.push(key);
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
    let expected = sums.body["buckets"][bucket as usize]["records"]
        .as_u64()
        .unwrap_or(0);
    let unique: BTreeSet<&String> = got.iter().collect();
    check(
        got.len() as u64 == expected && unique.len() == got.len(),
        || {
            format!(
                "bucket {bucket} paged {} records ({} unique); checksums say {expected}",
                got.len(),
                unique.len()
            )
        },
    )?;
    let r = ctx.get(&format!("/v1/spaces/{space}/buckets/64"), Some(&token))?;
    ctx.expect_problem(&r, 400, "invalid-request")
}
