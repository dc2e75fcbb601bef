//! Cases of spec chapter 01, Foundations (`spec/01-foundations.md`): discovery and its features,
//! protocol versions, and the HTTP rules every endpoint shares (unknown paths, wrong methods,
//! content types, malformed or wrongly shaped bodies).
//!
//! Requirement IDs its cases check: `[DISC-1]`, `[DISC-2]`, `[DISC-4]`, `[DISC-7]`, `[ERR-8]`,
//! `[HTTP-2]`, `[HTTP-5]`, `[HTTP-6]`, `[HTTP-15]`, `[HTTP-8]`, `[HTTP-9]`, `[HTTP-12]`,
//! `[HTTP-14]`, `[LIM-1]`,
//! `[RET-1]`, `[RET-11]`, `[VER-3]`, `[VER-4]`, `[VER-6]`.

use serde_json::json;

use super::support::{case, space, C};
use crate::client::{check, fail, Ctx};
use crate::Level::Must;
use crate::{Case, CaseResult, Verdict};

/// The cases of this chapter, in suite order.
pub fn cases() -> Vec<Case> {
    vec![
        case(
            "http.check-order",
            &["HTTP-14", "AUTH-6"],
            Must,
            "a request breaking several rules gets the Problem of the first check in the spec's order",
            check_order,
        ),
        case(
            "discovery.shape",
            &["DISC-1", "DISC-2", "LIM-1", "RET-1"],
            Must,
            "discovery needs no token and is a valid discovery document",
            discovery_shape,
        ),
        case(
            "discovery.clock-header",
            &["HTTP-9"],
            Must,
            "every response carries a Driftless-Clock HLC",
            clock_header,
        ),
        case(
            "version.unsupported-major",
            &["VER-3"],
            Must,
            "a major version the server lacks is unsupported-version with supported_versions",
            unsupported_major,
        ),
        case(
            "version.response-header",
            &["VER-4"],
            Must,
            "responses under /v1 carry Driftless-Version",
            version_header,
        ),
        case(
            "http.unknown-path",
            &["HTTP-8"],
            Must,
            "an unknown path is not-found",
            unknown_path,
        ),
        case(
            "http.wrong-method",
            &["HTTP-12"],
            Must,
            "a wrong method is method-not-allowed with Allow",
            wrong_method,
        ),
        case(
            "http.wrong-content-type",
            &["HTTP-2"],
            Must,
            "a non-JSON body is unsupported-media-type",
            wrong_content_type,
        ),
        case(
            "http.malformed-json",
            &["HTTP-5", "ERR-8"],
            Must,
            "malformed JSON is invalid-json and the server keeps serving",
            malformed_json,
        ),
        case(
            "http.invalid-utf8",
            &["HTTP-5"],
            Must,
            "a body that is not UTF-8 is invalid-json",
            invalid_utf8,
        ),
        case(
            "push.unknown-member",
            &["HTTP-15"],
            Must,
            "an unknown member in a push is invalid-request",
            push_unknown_member,
        ),
        case(
            "http.wrong-shape",
            &["HTTP-6"],
            Must,
            "valid JSON of the wrong shape is invalid-request",
            wrong_shape,
        ),
        case(
            "discovery.features-truthful",
            &["DISC-4", "DISC-7", "RET-11"],
            Must,
            "compaction works exactly when compaction-trigger is listed",
            features_truthful,
        ),
        case(
            "version.absent-header",
            &["VER-6"],
            Must,
            "a request without Driftless-Version is served as 1.0",
            absent_version,
        ),
    ]
}

fn discovery_shape(ctx: &mut Ctx) -> CaseResult {
    let r = ctx.get("/.well-known/driftless", None)?;
    ctx.expect(&r, 200, "discovery")?;
    ctx.validate("discovery", &r.body)?;
    check(
        r.body["protocol_versions"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x == "1.0")),
        || "protocol_versions lacks 1.0".into(),
    )
}

fn clock_header(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    for r in [
        ctx.get("/.well-known/driftless", None)?,
        ctx.get(&format!("/v1/spaces/{space}/pull"), Some(&token))?,
        ctx.get("/v1/nope", None)?,
    ] {
        let h = r.header("driftless-clock").unwrap_or("");
        check(h.parse::<driftless_protocol::hlc::Hlc>().is_ok(), || {
            format!("Driftless-Clock {h:?} is not an HLC (status {})", r.status)
        })?;
    }
    Ok(())
}

fn unsupported_major(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    let r = ctx.request(
        "GET",
        &format!("/v1/spaces/{space}/pull"),
        Some(&token),
        &[("driftless-version", "99.0")],
        None,
    )?;
    ctx.expect_problem(&r, 400, "unsupported-version")?;
    check(
        r.body["supported_versions"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x == "1.0")),
        || {
            format!(
                "unsupported-version lists supported_versions {} without 1.0",
                r.body["supported_versions"]
            )
        },
    )
}

fn version_header(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    let r = ctx.get(&format!("/v1/spaces/{space}/pull"), Some(&token))?;
    let v = r.header("driftless-version").unwrap_or("");
    check(v.starts_with("1."), || {
        format!("Driftless-Version is {v:?}")
    })
}

fn unknown_path(ctx: &mut Ctx) -> CaseResult {
    let r = ctx.get("/v1/no/such/endpoint", None)?;
    ctx.expect_problem(&r, 404, "not-found")
}

fn wrong_method(ctx: &mut Ctx) -> CaseResult {
    let r = ctx.request("DELETE", "/.well-known/driftless", None, &[], None)?;
    ctx.expect_problem(&r, 405, "method-not-allowed")?;
    check(r.header("allow").is_some_and(|a| a.contains("GET")), || {
        "405 without Allow: GET".into()
    })
}

fn wrong_content_type(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let r = ctx.request(
        "POST",
        &format!("/v1/spaces/{space}/push"),
        Some(&token),
        &[("content-type", "text/plain")],
        Some(b"{}".to_vec()),
    )?;
    ctx.expect_problem(&r, 415, "unsupported-media-type")
}

fn malformed_json(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let r = ctx.push_text(&space, &token, "{\"client_id\":")?;
    ctx.expect_problem(&r, 400, "invalid-json")?;
    let again = ctx.get("/.well-known/driftless", None)?;
    ctx.expect(&again, 200, "discovery after bad input")
}

fn invalid_utf8(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let r = ctx.push_text(&space, &token, vec![b'"', 0xff, 0xfe, b'"'])?;
    ctx.expect_problem(&r, 400, "invalid-json")
}

fn push_unknown_member(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let r = ctx.send(
        "POST",
        &format!("/v1/spaces/{space}/push"),
        Some(&token),
        &json!({"client_id": C, "mutations": [], "surprise": true}),
    )?;
    ctx.expect_problem(&r, 400, "invalid-request")
}

fn wrong_shape(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    for body in [
        json!({"op_ids": "one"}),
        json!([1, 2]),
        json!({"op_ids": [], "x": 1}),
    ] {
        let r = ctx.send(
            "POST",
            &format!("/v1/spaces/{space}/manifest"),
            Some(&token),
            &body,
        )?;
        ctx.expect_problem(&r, 400, "invalid-request")
            .map_err(|v| match v {
                Verdict::Fail(d) => fail(format!("{body}: {d}")),
                other => other,
            })?;
    }
    Ok(())
}

fn features_truthful(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    let r = ctx.request(
        "POST",
        &format!("/v1/spaces/{space}/compact"),
        Some(&token),
        &[],
        None,
    )?;
    if ctx.has_feature("compaction-trigger") {
        ctx.expect(&r, 200, "compaction with compaction-trigger listed")?;
        ctx.validate("compaction-response", &r.body)
    } else {
        ctx.expect_problem(&r, 404, "not-found")
    }
}

fn absent_version(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    let r = ctx.request(
        "GET",
        &format!("/v1/spaces/{space}/pull"),
        Some(&token),
        &[("driftless-version", "")],
        None,
    )?;
    ctx.expect(&r, 200, "pull without Driftless-Version")?;
    let v = r.header("driftless-version").unwrap_or("");
    check(v.starts_with("1."), || format!("served as version {v:?}"))
}

/// One request of `http.check-order`: what it breaks, method, path, Token, headers, and the
/// status and Problem code of the check that must answer.
type Step<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    &'a [(&'a str, &'a str)],
    u16,
    &'a str,
);

/// `[HTTP-14]`: each request breaks two rules; the answer must be the earlier check's.
fn check_order(ctx: &mut Ctx) -> CaseResult {
    let (space, write) = space(ctx, "write")?;
    let read = ctx.token(&ctx.user(), &space, "read")?;
    let push = format!("/v1/spaces/{space}/push");
    let text = [("content-type", "text/plain")];
    let steps: [Step; 5] = [
        (
            "an unknown path without a Token",
            "GET",
            "/v1/no/such/endpoint",
            None,
            &[],
            404,
            "not-found",
        ),
        (
            "a wrong method without a Token",
            "DELETE",
            &push,
            None,
            &[],
            405,
            "method-not-allowed",
        ),
        (
            "an unsupported version without a Token",
            "POST",
            &push,
            None,
            &[("driftless-version", "9.0"), ("content-type", "text/plain")],
            400,
            "unsupported-version",
        ),
        (
            "no Token and a body that is not JSON",
            "POST",
            &push,
            None,
            &text,
            401,
            "unauthorized",
        ),
        (
            "a read Token on push and a body that is not JSON",
            "POST",
            &push,
            Some(&read),
            &text,
            403,
            "forbidden",
        ),
    ];
    for (what, method, path, token, headers, status, code) in steps {
        let r = ctx.request(method, path, token, headers, Some(b"not json".to_vec()))?;
        ctx.expect_problem(&r, status, code).map_err(|v| match v {
            Verdict::Fail(m) => fail(format!("{what}: {m}")),
            other => other,
        })?;
    }
    // The last step before the message: a write Token, text/plain and a body that is not JSON.
    let r = ctx.request(
        "POST",
        &push,
        Some(&write),
        &text,
        Some(b"not json".to_vec()),
    )?;
    ctx.expect_problem(&r, 415, "unsupported-media-type")
}
