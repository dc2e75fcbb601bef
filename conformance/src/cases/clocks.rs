//! Cases of spec chapter 02, Identities and clocks (`spec/02-identities-and-clocks.md`):
//! identifiers
//! in paths, implicit Spaces, and HLCs (malformed stamps, clock skew, the Server clock merging past
//! what it applies).
//!
//! Requirement IDs its cases check: `[HLC-1]`, `[HLC-6]`, `[HLC-7]`, `[HLC-8]`, `[HLC-11]`,
//! `[ID-1]`, `[ID-6]`.

use serde_json::json;

use super::support::{case, space, C};
use crate::client::{check, fail, mutation, now_ms, Ctx};
use crate::Level::Must;
use crate::{Case, CaseResult, Verdict};

/// The cases of this chapter, in suite order.
pub fn cases() -> Vec<Case> {
    vec![
        case(
            "hlc.clock-skew",
            &["HLC-8"],
            Must,
            "a mutation an hour in the future is rejected as clock-skew",
            clock_skew,
        ),
        case(
            "id.invalid-path-identifier",
            &["ID-1"],
            Must,
            "an invalid collection or record ID in a path is invalid-request",
            invalid_path_identifier,
        ),
        case(
            "id.spaces-are-implicit",
            &["ID-6"],
            Must,
            "a space never written pulls as empty",
            spaces_are_implicit,
        ),
        case(
            "hlc.malformed",
            &["HLC-1"],
            Must,
            "a malformed hlc is invalid-mutation",
            malformed_hlc,
        ),
        case(
            "hlc.server-clock-merges",
            &["HLC-11", "HLC-6", "HLC-7"],
            Must,
            "the server clock moves past applied mutations and never goes back",
            server_clock_merges,
        ),
    ]
}

fn clock_skew(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let op = ctx.op();
    let m = mutation(
        &op,
        1,
        "things",
        "r1",
        &Ctx::hlc_at(now_ms() + 3_600_000, 0, C),
        json!({"kind": "put", "value": {}}),
    );
    let r = ctx.push_ok(&space, &token, C, &[m])?;
    check(
        r[0]["problem"]["type"] == "urn:driftless:problem:clock-skew",
        || format!("answered {}", r[0]),
    )
}

fn invalid_path_identifier(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    for path in [
        format!("/v1/spaces/{space}/records/Bad-Collection/r1"),
        format!("/v1/spaces/{space}/records/things/bad%20id"),
    ] {
        let r = ctx.get(&path, Some(&token))?;
        ctx.expect_problem(&r, 400, "invalid-request")
            .map_err(|v| match v {
                Verdict::Fail(d) => fail(format!("{path}: {d}")),
                other => other,
            })?;
    }
    Ok(())
}

fn spaces_are_implicit(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    let (records, last) = ctx.pull_all(&space, &token, 10)?;
    check(records.is_empty() && last["through"] == 0, || {
        format!("a never-written space pulled as {last}")
    })?;
    let sums = ctx.get(&format!("/v1/spaces/{space}/checksums"), Some(&token))?;
    ctx.expect(&sums, 200, "checksums of a never-written space")?;
    // The spec's checksums of a Space without Records: 64 empty buckets and their digest.
    let empty = driftless_protocol::checksum::SpaceChecksums::default();
    let expected = driftless_protocol::checksum::to_hex(&empty.space_digest());
    check(sums.body["space_digest"] == expected.as_str(), || {
        format!(
            "a never-written space has space_digest {}, not the empty space's {expected}",
            sums.body["space_digest"]
        )
    })?;
    let buckets = sums.body["buckets"].as_array().cloned().unwrap_or_default();
    let empty_buckets = empty.buckets();
    check(
        buckets.len() == 64
            && buckets.iter().zip(&empty_buckets).all(|(b, e)| {
                b["records"] == 0
                    && b["digest"] == driftless_protocol::checksum::to_hex(&e.digest).as_str()
            }),
        || format!("a never-written space has buckets {}", sums.body["buckets"]),
    )
}

fn malformed_hlc(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let op = ctx.op();
    let m = mutation(
        &op,
        1,
        "things",
        "r1",
        "yesterday-at-noon",
        json!({"kind": "delete"}),
    );
    let r = ctx.push_ok(&space, &token, C, &[m])?;
    check(
        r[0]["problem"]["type"] == "urn:driftless:problem:invalid-mutation",
        || format!("answered {}", r[0]),
    )
}

fn server_clock_merges(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    // Stamped 20 s ahead: within every allowed skew bound (at least 1 s is guaranteed; use half
    // the announced bound when it is smaller).
    let ahead = (ctx.limit("clock_skew_ms_max") / 2).min(20_000);
    let op = ctx.op();
    let stamp = Ctx::hlc_at(now_ms() + ahead, 0, C);
    let m = mutation(
        &op,
        1,
        "things",
        "r1",
        &stamp,
        json!({"kind": "put", "value": {}}),
    );
    let r = ctx.push(&space, &token, C, &[m])?;
    ctx.expect(&r, 200, "push")?;
    check(r.body["results"][0]["status"] == "applied", || {
        format!(
            "a mutation {ahead} ms ahead answered {}",
            r.body["results"][0]
        )
    })?;
    // The last value seen from each node.
    let mut last_of: std::collections::BTreeMap<String, String> = Default::default();
    for _ in 0..3 {
        let resp = ctx.get(&format!("/v1/spaces/{space}/pull"), Some(&token))?;
        let clock = resp.header("driftless-clock").unwrap_or("").to_owned();
        check(clock.as_str() > stamp.as_str(), || {
            format!("Driftless-Clock {clock} is not after the applied hlc {stamp}")
        })?;
        // `[HLC-11]` binds each node: a Server of several instances answers with several
        // node names, and each node's values must grow.
        let node = clock.splitn(3, '-').nth(2).unwrap_or("").to_owned();
        let last = last_of.get(&node).cloned().unwrap_or_default();
        check(clock > last, || {
            format!("Driftless-Clock went back from {last} to {clock}")
        })?;
        last_of.insert(node, clock);
    }
    Ok(())
}
