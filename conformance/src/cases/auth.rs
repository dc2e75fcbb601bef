//! Cases of spec chapter 09, Auth and access (`spec/09-auth.md`): missing, expired and tampered
//! Tokens, Spaces without a grant, and the scopes (read cannot write, admin-only endpoints).
//!
//! Requirement IDs its cases check: `[AUTH-1]`, `[AUTH-2]`, `[AUTH-3]`, `[AUTH-4]`, `[AUTH-5]`,
//! `[AUTH-6]`, `[AUTH-7]`, `[ERR-5]`.

use serde_json::json;

use super::support::{case, put, space, C};
use crate::client::{check, Ctx};
use crate::Level::Must;
use crate::{Case, CaseResult};

/// The cases of this chapter, in suite order.
pub fn cases() -> Vec<Case> {
    vec![
        case(
            "auth.missing-token",
            &["AUTH-1", "AUTH-2", "ERR-5"],
            Must,
            "no token is unauthorized with WWW-Authenticate",
            missing_token,
        ),
        case(
            "auth.expired-token",
            &["AUTH-2", "AUTH-3"],
            Must,
            "an expired token is unauthorized",
            expired_token,
        ),
        case(
            "auth.tampered-token",
            &["AUTH-2", "AUTH-7"],
            Must,
            "a changed token is unauthorized",
            tampered_token,
        ),
        case(
            "auth.no-grant-leaks-nothing",
            &["AUTH-4", "AUTH-5"],
            Must,
            "a space without grant is forbidden, identically whether it holds data or not",
            no_grant_leaks_nothing,
        ),
        case(
            "auth.read-cannot-write",
            &["AUTH-4", "AUTH-6"],
            Must,
            "a read token cannot push, and gets forbidden before validation",
            read_cannot_write,
        ),
        case(
            "auth.admin-only-endpoints",
            &["AUTH-4"],
            Must,
            "history, schema registration and compaction need admin",
            admin_only,
        ),
    ]
}

fn missing_token(ctx: &mut Ctx) -> CaseResult {
    let space = ctx.space();
    let r = ctx.get(&format!("/v1/spaces/{space}/pull"), None)?;
    ctx.expect_problem(&r, 401, "unauthorized")?;
    check(
        r.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer")),
        || "401 without WWW-Authenticate: Bearer".into(),
    )
}

fn expired_token(ctx: &mut Ctx) -> CaseResult {
    let space = ctx.space();
    let token = ctx.token_ttl(&ctx.user(), &space, "read", -60)?;
    let r = ctx.get(&format!("/v1/spaces/{space}/pull"), Some(&token))?;
    ctx.expect_problem(&r, 401, "unauthorized")
}

fn tampered_token(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "read")?;
    let mut bytes = token.into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8_lossy(&bytes).into_owned();
    let r = ctx.get(&format!("/v1/spaces/{space}/pull"), Some(&tampered))?;
    ctx.expect_problem(&r, 401, "unauthorized")
}

fn no_grant_leaks_nothing(ctx: &mut Ctx) -> CaseResult {
    let (full, owner) = space(ctx, "write")?;
    let m = put(ctx, "secret", json!({"s": 1}));
    ctx.push_applied(&full, &owner, C, &[m])?;
    let empty = ctx.space();
    let (mine, stranger) = space(ctx, "admin")?;
    let _ = mine;
    let a = ctx.get(&format!("/v1/spaces/{full}/checksums"), Some(&stranger))?;
    let b = ctx.get(&format!("/v1/spaces/{empty}/checksums"), Some(&stranger))?;
    ctx.expect_problem(&a, 403, "forbidden")?;
    ctx.expect_problem(&b, 403, "forbidden")?;
    let strip = |s: &str, space: &str| s.replace(space, "SPACE");
    check(strip(&a.text, &full) == strip(&b.text, &empty), || {
        format!("the answers differ: {} vs {}", a.text, b.text)
    })
}

fn read_cannot_write(ctx: &mut Ctx) -> CaseResult {
    let (space, reader) = space(ctx, "read")?;
    let r = ctx.send(
        "POST",
        &format!("/v1/spaces/{space}/push"),
        Some(&reader),
        &json!({"garbage": true}),
    )?;
    ctx.expect_problem(&r, 403, "forbidden")
}

fn admin_only(ctx: &mut Ctx) -> CaseResult {
    let (space, writer) = space(ctx, "write")?;
    let doc = json!({"collection": "things", "version": 1, "schema": {"type": "object"}});
    let checks = [
        ctx.get(
            &format!("/v1/spaces/{space}/records/things/r/history"),
            Some(&writer),
        )?,
        ctx.send(
            "PUT",
            &format!("/v1/spaces/{space}/collections/things/schemas/1"),
            Some(&writer),
            &doc,
        )?,
    ];
    for r in checks {
        ctx.expect_problem(&r, 403, "forbidden")?;
    }
    if ctx.has_feature("compaction-trigger") {
        let r = ctx.request(
            "POST",
            &format!("/v1/spaces/{space}/compact"),
            Some(&writer),
            &[],
            None,
        )?;
        ctx.expect_problem(&r, 403, "forbidden")?;
    }
    Ok(())
}
