//! Cases of spec chapter 07, Errors (`spec/07-errors.md`): the problem+json shape, Retry-After on
//! 429, and problem details that never echo record values.
//!
//! Requirement IDs its cases check: `[ERR-1]`, `[ERR-2]`, `[ERR-3]`, `[ERR-4]`, `[ERR-9]`,
//! `[HTTP-3]`, `[HTTP-4]`, `[LIM-6]`.

use serde_json::json;

use super::support::{case, put, register, space, task, v1_tasks, C};
use crate::client::{check, mutation, Ctx};
use crate::Level::Must;
use crate::{Case, CaseResult, Verdict};

/// The cases of this chapter, in suite order.
pub fn cases() -> Vec<Case> {
    vec![
        case(
            "http.problem-shape",
            &["ERR-1", "ERR-2", "ERR-3", "HTTP-4", "HTTP-3"],
            Must,
            "errors are problem+json with type, title and status; successes are JSON",
            problem_shape,
        ),
        case(
            "limits.retry-after",
            &["ERR-4", "LIM-6"],
            Must,
            "429 carries Retry-After and applies nothing",
            retry_after,
        ),
        case(
            "errors.detail-without-values",
            &["ERR-9"],
            Must,
            "problem details never echo record values",
            detail_without_values,
        ),
    ]
}

fn problem_shape(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    let ok = ctx.get(&format!("/v1/spaces/{space}/pull"), Some(&token))?;
    let ct = ok.header("content-type").unwrap_or("");
    check(ct.starts_with("application/json"), || {
        format!("a success has content type {ct:?}")
    })?;
    let bad = ctx.get(&format!("/v1/spaces/{space}/pull?limit=0"), Some(&token))?;
    ctx.expect_problem(&bad, 400, "invalid-request")?;
    check(
        bad.body["title"].as_str().is_some_and(|t| !t.is_empty()),
        || "a Problem without title".into(),
    )
}

fn retry_after(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    // Empty the User's allowance with cheap reads (from eight connections at once, so that a
    // loaded machine gets there too), then send the push that must be refused.
    let path = format!("/v1/spaces/{space}/checksums");
    for _ in 0..10 {
        if !ctx.get_until_status(&path, &token, 429, 8, 4000)? {
            break;
        }
        let m = put(ctx, "limited", json!({}));
        let r = ctx.push(&space, &token, C, std::slice::from_ref(&m))?;
        if r.status != 429 {
            continue; // the bucket refilled in between; drain it again
        }
        ctx.expect_problem(&r, 429, "rate-limited")?;
        check(
            r.header("retry-after")
                .is_some_and(|v| v.trim().parse::<u64>().is_ok()),
            || "429 without a Retry-After in seconds".into(),
        )?;
        // Honour each Retry-After ([RETRY-2]) and ask again while the answer is 429, a bounded
        // number of times: the limit may still hold after one wait under a slow clock.
        let mut wait = retry_after_s(&r);
        for _ in 0..RETRIES_MAX {
            std::thread::sleep(std::time::Duration::from_secs(
                wait.clamp(1, RETRY_AFTER_S_CAP),
            ));
            let manifest = ctx.send(
                "POST",
                &format!("/v1/spaces/{space}/manifest"),
                Some(&token),
                &json!({"op_ids": [m["op_id"]]}),
            )?;
            if manifest.status == 429 {
                wait = retry_after_s(&manifest);
                continue;
            }
            ctx.expect(&manifest, 200, "manifest after Retry-After")?;
            return check(manifest.body["entries"][0]["status"] == "unknown", || {
                "a rate-limited push was applied ([LIM-6])".into()
            });
        }
        return Err(Verdict::Error(format!(
            "the server still answered 429 after {RETRIES_MAX} waits of Retry-After"
        )));
    }
    Err(Verdict::Skip(
        "the server did not rate-limit 4000 requests from one user".into(),
    ))
}

/// How often `limits.retry-after` waits for Retry-After before the case is errored.
const RETRIES_MAX: u32 = 10;
/// The longest single wait `limits.retry-after` honours, in seconds.
const RETRY_AFTER_S_CAP: u64 = 60;

/// The Retry-After of a response in seconds (1 when absent or not a number).
fn retry_after_s(r: &crate::client::Resp) -> u64 {
    r.header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1)
}

fn detail_without_values(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    register(ctx, &space, &token, &v1_tasks())?;
    let marker = "DETAIL-MARKER-8472";
    let wrong_type = task(
        ctx,
        "t1",
        1,
        json!({"kind": "put", "value": {"name": 7, "color": [marker]}}),
    );
    let op = ctx.op();
    let bad_shape = mutation(
        &op,
        2,
        "things",
        "r1",
        &ctx.hlc(C),
        json!({"kind": "put", "value": marker}),
    );
    let r = ctx.push_ok(&space, &token, C, &[wrong_type, bad_shape])?;
    for result in &r {
        check(result["status"] == "rejected", || {
            format!("expected a rejection, got {result}")
        })?;
        check(!result["problem"].to_string().contains(marker), || {
            format!("a Problem echoes a value: {}", result["problem"])
        })?;
    }
    Ok(())
}
