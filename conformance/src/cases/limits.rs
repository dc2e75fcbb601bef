//! Cases of spec chapter 11, Limits, retention and compaction
//! (`spec/11-limits-and-retention.md`): JSON depth, body size, rate limits, and writes older than
//! retention.
//!
//! Requirement IDs its cases check: `[IDEM-7]`, `[LIM-2]`, `[LIM-5]`, `[LIM-13]`, `[LIM-14]`,
//! `[RET-2]`.

use serde_json::json;

use super::support::{case, put, space, C};
use crate::client::{check, fail, mutation, now_ms, Ctx};
use crate::Level::{Must, Should};
use crate::{Case, CaseResult, Verdict};

/// The cases of this chapter, in suite order.
pub fn cases() -> Vec<Case> {
    vec![
        case(
            "limits.deep-nesting",
            &["LIM-14"],
            Must,
            "a body nested deeper than json_depth_max is invalid-json",
            deep_nesting,
        ),
        case(
            "limits.depth-boundary",
            &["LIM-14"],
            Must,
            "a push of depth exactly json_depth_max is served; one level more is invalid-json",
            depth_boundary,
        ),
        case(
            "limits.oversized-body",
            &["LIM-2"],
            Must,
            "a body over body_bytes_max is payload-too-large",
            oversized_body,
        ),
        case(
            "limits.refused-head-is-a-problem",
            &["LIM-13", "ERR-1"],
            Must,
            "a malformed or oversized request head is answered with a Problem, not a bare status",
            refused_head,
        ),
        case(
            "retention.too-old",
            &["RET-2", "IDEM-7"],
            Must,
            "a mutation older than retention is mutation-too-old",
            too_old,
        ),
        case(
            "limits.rate-limited",
            &["LIM-5"],
            Should,
            "a burst from one user is eventually rate-limited",
            rate_limited,
        ),
    ]
}

fn deep_nesting(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let depth = ctx.limit("json_depth_max") as usize + 2;
    let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let r = ctx.push_text(&space, &token, body)?;
    ctx.expect_problem(&r, 400, "invalid-json")
}

/// A push body of the given depth (`[LIM-14]`: the outermost object is depth 1): the push
/// object, `mutations`, the Mutation, its Effect and the `put` value take 5 levels, and the value
/// nests single-member objects for the rest.
fn push_of_depth(ctx: &mut Ctx, depth: usize) -> String {
    let mut value = json!({});
    for _ in 5..depth {
        value = json!({ "a": value });
    }
    let m = put(ctx, "deep", value);
    json!({"client_id": C, "mutations": [m]}).to_string()
}

fn depth_boundary(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let max = ctx.limit("json_depth_max") as usize;
    if !(5..=100).contains(&max) {
        return Err(Verdict::Skip(format!(
            "json_depth_max {max} leaves no push body at exactly that depth to send"
        )));
    }
    let at_max = push_of_depth(ctx, max);
    let r = ctx.push_text(&space, &token, at_max)?;
    check(r.status == 200, || {
        format!(
            "a push of depth {max} (json_depth_max, the outermost object counted as 1) answered {}: {}",
            r.status, r.text
        )
    })?;
    let over = push_of_depth(ctx, max + 1);
    let r = ctx.push_text(&space, &token, over)?;
    ctx.expect_problem(&r, 400, "invalid-json")
}

fn oversized_body(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let max = ctx.limit("body_bytes_max") as usize;
    if max > 16 * 1024 * 1024 {
        return Err(Verdict::Skip(format!(
            "body_bytes_max {max} is too large to exceed cheaply"
        )));
    }
    let filler = "x".repeat(max + 1);
    let m = put(ctx, "big", json!({ "filler": filler }));
    let body = json!({"client_id": C, "mutations": [m]})
        .to_string()
        .into_bytes();
    let r = ctx.post_oversized(&format!("/v1/spaces/{space}/push"), &token, body)?;
    ctx.expect_problem(&r, 413, "payload-too-large")?;
    let (records, _) = ctx.pull_all(&space, &token, 10)?;
    check(records.is_empty(), || {
        "part of an oversized request was applied".into()
    })
}

fn too_old(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let retention = ctx.discovery()["retention"]["op_ids_s"]
        .as_u64()
        .unwrap_or(0)
        .min(
            ctx.discovery()["retention"]["history_s"]
                .as_u64()
                .unwrap_or(0),
        );
    let at = now_ms().saturating_sub((retention + 86_400) * 1000);
    let op = ctx.op();
    let m = mutation(
        &op,
        1,
        "things",
        "r1",
        &Ctx::hlc_at(at, 0, C),
        json!({"kind": "put", "value": {}}),
    );
    let r = ctx.push_ok(&space, &token, C, &[m])?;
    check(
        r[0]["problem"]["type"] == "urn:driftless:problem:mutation-too-old",
        || format!("answered {}", r[0]),
    )
}

fn rate_limited(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    // Eight connections at once, so that a slow or loaded machine reaches the limit too.
    let path = format!("/v1/spaces/{space}/checksums");
    if ctx.get_until_status(&path, &token, 429, 8, 4000)? {
        return Ok(());
    }
    Err(fail(
        "4000 requests from one user on eight connections at once were never rate-limited",
    ))
}

/// A request head the Server refuses must still get a Problem (`[LIM-13]`): HTTP libraries
/// answer these themselves, often with an empty body, before any handler runs.
fn refused_head(ctx: &mut Ctx) -> CaseResult {
    let host = ctx.base().trim_start_matches("http://").to_owned();
    let malformed = format!(
        "GET /.well-known/driftless HTTP/1.1\r\nHost: {host}\r\nthis line is no header\r\n\r\n"
    );
    let oversized = format!(
        "GET /.well-known/driftless HTTP/1.1\r\nHost: {host}\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(256 * 1024)
    );
    let mut refused = 0;
    for (what, request) in [
        ("a malformed header line", malformed),
        ("a 256 KiB header", oversized),
    ] {
        let Some(r) = ctx.raw_exchange(request.into_bytes())? else {
            return Err(fail(format!(
                "{what}: the connection was closed without an answer"
            )));
        };
        if r.status < 400 {
            continue; // accepted: nothing was refused
        }
        refused += 1;
        let code = match r.status {
            414 => "uri-too-long",
            431 => "headers-too-large",
            _ => "invalid-request",
        };
        ctx.expect_problem(&r, r.status, code)
            .map_err(|v| match v {
                Verdict::Fail(m) => fail(format!("{what}: {m}")),
                other => other,
            })?;
    }
    check(refused > 0, || {
        "the Server accepted a header line without a colon; RFC 9112 requires a 400".into()
    })
}
