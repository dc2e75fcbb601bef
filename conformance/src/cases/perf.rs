//! Cases of the features that make sync cheap (issue 15), kept apart from the chapter modules so
//! that they can grow without touching them: the schema summary of pull responses
//! (`spec/05-pull-and-records.md`, `[PULL-19]`, `[PULL-20]`).
//!
//! Requirement IDs its cases check: `[PULL-19]`, `[PULL-20]`.

use serde_json::json;

use super::support::{case, register, space, v1_tasks, v2_tasks};
use crate::client::{check, fail, Ctx};
use crate::Level::Should;
use crate::{Case, CaseResult};

/// The cases of this module, in suite order.
pub fn cases() -> Vec<Case> {
    vec![case(
        "pull.schema-summary",
        &["PULL-19", "PULL-20"],
        Should,
        "pull responses name the latest Collection Schema version of every Collection that has one",
        pull_schema_summary,
    )]
}

fn pull_schema_summary(ctx: &mut Ctx) -> CaseResult {
    let (space, token) = space(ctx, "admin")?;
    let path = format!("/v1/spaces/{space}/pull");
    let before = ctx.get(&path, Some(&token))?;
    ctx.expect(&before, 200, "pulling a Space without schemas")?;
    let Some(summary) = before.body.get("schemas") else {
        return Err(fail("a pull response has no schemas member"));
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
