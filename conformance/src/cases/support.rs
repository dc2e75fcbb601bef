//! What the case modules share and none of them owns: the Client ID [`C`] the cases write as, the
//! [`case`] constructor, fresh Mutations ([`fresh`], [`put`]), a fresh Space with a Token
//! ([`space`]), the `tasks` Collection Schema documents of chapter 10 and their registration, and
//! pushes and pulls through the fault-injecting proxy. It checks no requirement itself: the
//! builders follow chapter 03's Mutation shape (`[MUT-1]`) and chapter 10's schema documents
//! (`[SCHEMA-2]`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::client::{fail, mutation, Ctx};
use crate::{Case, CaseResult, Level, Verdict};

/// The Client ID the cases write as; a case that needs a second Client names it itself.
pub(super) const C: &str = "cf-client-a";

/// A case: its ID, the requirement IDs it checks, their level, one line on what it checks, and
/// the check.
pub(super) fn case(
    id: &'static str,
    requirements: &'static [&'static str],
    level: Level,
    description: &'static str,
    run: fn(&mut Ctx) -> CaseResult,
) -> Case {
    Case {
        id,
        requirements,
        level,
        description,
        run,
    }
}

/// A Mutation of Client C with a fresh Op ID and HLC.
pub(super) fn fresh(ctx: &mut Ctx, collection: &str, id: &str, effect: Value) -> Value {
    let (op, hlc) = (ctx.op(), ctx.hlc(C));
    mutation(&op, 1, collection, id, &hlc, effect)
}

/// A fresh `put` of Client C in `things`.
pub(super) fn put(ctx: &mut Ctx, id: &str, value: Value) -> Value {
    fresh(ctx, "things", id, json!({"kind": "put", "value": value}))
}

/// A fresh Space and a Token on it.
pub(super) fn space(ctx: &mut Ctx, scope: &str) -> Result<(String, String), Verdict> {
    let space = ctx.space();
    let token = ctx.token(&ctx.user(), &space, scope)?;
    Ok((space, token))
}

/// Registers a Collection Schema version and requires 201.
pub(super) fn register(ctx: &Ctx, space: &str, token: &str, doc: &Value) -> CaseResult {
    let path = format!(
        "/v1/spaces/{space}/collections/{}/schemas/{}",
        doc["collection"].as_str().unwrap_or(""),
        doc["version"]
    );
    let r = ctx.send("PUT", &path, Some(token), doc)?;
    ctx.expect(&r, 201, "registering a collection schema")?;
    ctx.validate("collection-schema", &r.body)
}

/// Version 1 of the `tasks` Collection Schema: `name` required, `color` optional.
pub(super) fn v1_tasks() -> Value {
    json!({"collection": "tasks", "version": 1, "schema": {"type": "object", "properties": {"name": {"type": "string"}, "color": {"type": "string"}}, "required": ["name"]}, "fields": {}, "migration": []})
}

/// Version 2 of `tasks`: `name` renamed to `title`, `priority` added (default 0), `color` removed.
pub(super) fn v2_tasks() -> Value {
    json!({"collection": "tasks", "version": 2,
        "schema": {"type": "object", "properties": {"title": {"type": "string"}, "priority": {"type": "integer"}}, "required": ["title"]},
        "fields": {}, "migration": [{"op": "rename_field", "from": "name", "to": "title"}, {"op": "add_field", "field": "priority", "default": 0}, {"op": "remove_field", "field": "color"}]})
}

/// A Mutation of Client C on `tasks/{id}` written against schema version `version`.
pub(super) fn task(ctx: &mut Ctx, id: &str, version: u32, effect: Value) -> Value {
    let (op, hlc) = (ctx.op(), ctx.hlc(C));
    let mut m = mutation(&op, 1, "tasks", id, &hlc, effect);
    m["schema_version"] = json!(version);
    m
}

pub(super) fn push_via(
    ctx: &Ctx,
    base: &str,
    space: &str,
    token: &str,
    client: &str,
    mutations: &[Value],
) -> Result<crate::client::Resp, Verdict> {
    let body = json!({"client_id": client, "mutations": mutations})
        .to_string()
        .into_bytes();
    ctx.request_at(
        base,
        "POST",
        &format!("/v1/spaces/{space}/push"),
        Some(token),
        &[("content-type", "application/json")],
        Some(body),
    )
}

/// A Client's mirror (`id` -> value, tombstones as null) pulled page by page through `base`,
/// retrying a page whose response was lost.
pub(super) fn pull_via(
    ctx: &Ctx,
    base: &str,
    space: &str,
    token: &str,
) -> Result<BTreeMap<String, Value>, Verdict> {
    let mut mirror = BTreeMap::new();
    let mut query = "?limit=3".to_owned();
    for _ in 0..1000 {
        let page = (0..50)
            .find_map(|_| {
                match ctx.request_at(
                    base,
                    "GET",
                    &format!("/v1/spaces/{space}/pull{query}"),
                    Some(token),
                    &[],
                    None,
                ) {
                    Ok(r) if r.status == 200 => Some(r.body),
                    _ => None,
                }
            })
            .ok_or_else(|| Verdict::Error("a pull page was never answered in 50 tries".into()))?;
        for rec in page["records"].as_array().into_iter().flatten() {
            let value = if rec["deleted"] == true {
                Value::Null
            } else {
                rec["value"].clone()
            };
            mirror.insert(rec["id"].as_str().unwrap_or("").to_owned(), value);
        }
        if page["has_more"] != true {
            return Ok(mirror);
        }
        query = format!("?limit=3&cursor={}", page["cursor"].as_str().unwrap_or(""));
    }
    Err(fail("pull never reached has_more = false"))
}
