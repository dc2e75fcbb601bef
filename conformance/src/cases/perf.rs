//! Cases of the features that make sync cheap (issue 15), kept apart from the chapter modules so
//! that they can grow without touching them: the schema summary of pull responses
//! (`spec/05-pull-and-records.md`, `[PULL-20]`, `[PULL-21]`) and gzip bodies
//! (`spec/01-foundations.md`, `[HTTP-16]` to `[HTTP-18]`).
//!
//! Requirement IDs its cases check: `[HTTP-16]`, `[HTTP-17]`, `[HTTP-18]`, `[PULL-20]`,
//! `[PULL-21]`.

use serde_json::json;

use super::support::{case, put, register, space, v1_tasks, v2_tasks, C};
use crate::client::{check, fail, Ctx};
use crate::Level::{Must, Should};
use crate::{Case, CaseResult, Verdict};

/// The cases of this module, in suite order.
pub fn cases() -> Vec<Case> {
    vec![
        case(
            "pull.schema-summary",
            &["PULL-20"],
            Should,
            "pull responses carry a schema summary",
            pull_schema_summary_present,
        ),
        case(
            "pull.schema-summary-complete",
            &["PULL-21"],
            Must,
            "a schema summary names the latest version of every Collection that has a schema",
            pull_schema_summary,
        ),
        case(
            "http.gzip-bodies",
            &["HTTP-16"],
            Should,
            "a gzip push body is applied and a pull accepting gzip gets a gzip page",
            gzip_bodies,
        ),
        case(
            "limits.gzip-inflating-past-the-limit",
            &["HTTP-18", "HTTP-17"],
            Must,
            "a small gzip body that decodes past body_bytes_max is payload-too-large",
            gzip_inflating_past_the_limit,
        ),
    ]
}

fn pull_schema_summary_present(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    let page = ctx.get(&format!("/v1/spaces/{space}/pull"), Some(&token))?;
    ctx.expect(&page, 200, "pulling")?;
    check(page.body.get("schemas").is_some(), || {
        "a pull response has no schemas member".into()
    })
}

fn pull_schema_summary(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    let path = format!("/v1/spaces/{space}/pull");
    let before = ctx.get(&path, Some(&token))?;
    ctx.expect(&before, 200, "pulling a Space without schemas")?;
    let Some(summary) = before.body.get("schemas") else {
        return Err(Verdict::Skip(
            "the Server sends no schema summary (optional, [PULL-20])".into(),
        ));
    };
    check(*summary == json!({}), || {
        format!("a Space without Collection Schemas has the summary {summary}, expected {{}}")
    })?;
    register(ctx, &space, &token, &v1_tasks())?;
    register(ctx, &space, &token, &v2_tasks())?;
    let after = ctx.get(&path, Some(&token))?;
    ctx.expect(&after, 200, "pulling after registering two versions")?;
    ctx.validate("pull-response", &after.body)?;
    check(after.body["schemas"] == json!({"tasks": 2}), || {
        format!(
            "after registering versions 1 and 2 of tasks the summary is {}, expected {{\"tasks\":2}}",
            after.body["schemas"]
        )
    })
}

/// `body` gzip-coded.
fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = e.write_all(body);
    e.finish().unwrap_or_default()
}

const GZIP_JSON: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("content-encoding", "gzip"),
];

/// A gzip push body is applied, and a pull that accepts gzip gets a gzip page (`[HTTP-16]`).
fn gzip_bodies(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let ms: Vec<_> = (0..20)
        .map(|i| {
            put(
                ctx,
                &format!("note-{i}"),
                json!({"title": "a note long enough that a page of them is worth compressing"}),
            )
        })
        .collect();
    let body = json!({"client_id": C, "mutations": ms}).to_string();
    let pushed = ctx.request(
        "POST",
        &format!("/v1/spaces/{space}/push"),
        Some(&token),
        GZIP_JSON,
        Some(gzip(body.as_bytes())),
    )?;
    if pushed.status == 415 {
        return Err(fail("a gzip push body was refused (415)"));
    }
    ctx.expect(&pushed, 200, "a gzip push body")?;
    let applied = pushed.body["results"]
        .as_array()
        .is_some_and(|r| r.len() == 20 && r.iter().all(|x| x["status"] == "applied"));
    check(applied, || {
        format!("a gzip push of 20 puts was not applied: {}", pushed.text)
    })?;
    // Raw, so that the coded body reaches the check as it came.
    let host = ctx.base().trim_start_matches("http://").to_owned();
    let request = format!(
        "GET /v1/spaces/{space}/pull HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
    );
    let Some(page) = ctx.raw_exchange(request.into_bytes())? else {
        return Err(fail(
            "a pull accepting gzip: the connection closed without an answer",
        ));
    };
    check(page.status == 200, || {
        format!("a pull accepting gzip answered {}", page.status)
    })?;
    check(
        page.headers.get("content-encoding").map(String::as_str) == Some("gzip"),
        || "a pull page of 20 records to a Client accepting gzip was not gzip-coded".into(),
    )
}

/// A gzip body of a few KiB that decodes past `body_bytes_max` is 413 (`[HTTP-18]`), or 415 from
/// a Server that takes no gzip at all (`[HTTP-17]`); never applied, never another answer.
fn gzip_inflating_past_the_limit(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "write")?;
    let limit = ctx.limit("body_bytes_max") as usize;
    let mut inflated = format!("{{\"client_id\":\"{C}\",\"mutations\":[").into_bytes();
    inflated.resize(limit + 1024, b' ');
    inflated.extend_from_slice(b"]}");
    let r = ctx.request(
        "POST",
        &format!("/v1/spaces/{space}/push"),
        Some(&token),
        GZIP_JSON,
        Some(gzip(&inflated)),
    )?;
    match r.status {
        413 => ctx.expect_problem(&r, 413, "payload-too-large"),
        415 => ctx.expect_problem(&r, 415, "unsupported-media-type"),
        other => Err(fail(format!(
            "a gzip body decoding to {} bytes (limit {limit}) answered {other}, expected 413",
            inflated.len()
        ))),
    }
}
