//! The reference server's dashboard over real HTTP: `GET /dashboard/api/stats` after traffic
//! made with the reference client's CLI, its authorization, and that neither it nor the page
//! ever holds a value or a Token. The page in a real browser: `tests/browser.rs`.

mod common;

use common::server::{agent, call};
use common::traffic::{generate, VALUE_MARKERS};
use serde_json::Value;

fn stats(base: &str, token: &str) -> (u16, Value) {
    call(
        &agent(),
        "GET",
        &format!("{base}/dashboard/api/stats"),
        token,
        None,
    )
    .unwrap()
}

#[test]
fn stats_show_clients_lag_and_rejections_by_type_and_never_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let t = generate(dir.path());
    let (status, body) = stats(&t.server.base, &t.admin);
    assert_eq!(status, 200, "{body:#}");
    let space = &body["spaces"][0];
    assert_eq!(space["space"], "demo");
    assert_eq!(
        (space["applied"].as_u64(), space["rejected"].as_u64()),
        (Some(3), Some(1)),
        "{space:#}"
    );
    assert_eq!(
        space["rejections_by_type"]["urn:driftless:problem:schema-violation"], 1,
        "{space:#}"
    );
    let latest = &space["latest_rejections"][0];
    assert!(
        latest["op_id"].is_string() && latest["at_ms"].is_u64(),
        "{latest:#}"
    );
    let clients = space["clients"].as_array().unwrap();
    let by_user = |u: &str| {
        clients
            .iter()
            .find(|c| c["user"] == u)
            .unwrap_or_else(|| panic!("{u}: {clients:#?}"))
    };
    let (a, b) = (by_user("ada"), by_user("bob"));
    assert_eq!(clients.len(), 2, "one row per Client: {clients:#?}");
    assert_eq!(a["lag_changes"], 0, "A pulled last: {a:#}");
    assert!(a["last_push_ms"].is_u64() && a["last_pull_ms"].is_u64());
    assert_eq!(a["applied"], 3);
    assert_eq!(b["lag_changes"], 2, "B missed t2 and t3: {b:#}");
    assert!(b["lag_s"].is_u64(), "{b:#}");
    assert!(b["last_push_ms"].is_null(), "B never pushed");
    let facts = &space["facts"];
    assert_eq!(
        (facts["records"].as_u64(), facts["tombstones"].as_u64()),
        (Some(3), Some(0)),
        "{facts:#}"
    );
    assert_eq!(
        facts["latest_change_seq"], a["through"],
        "A is caught up: {space:#}"
    );
    assert_eq!(body["overall"]["rejected"], 1);
    let text = body.to_string();
    for marker in VALUE_MARKERS {
        assert!(
            !text.contains(marker),
            "a pushed value in the stats: {text}"
        );
    }
    assert!(
        !text.contains("4242424242"),
        "the rejected value in the stats"
    );
    assert!(
        !text.contains(&t.admin) && !text.contains("dl1."),
        "a Token in the stats"
    );
}

#[test]
fn stats_need_a_token_with_admin_on_some_space() {
    let dir = tempfile::tempdir().unwrap();
    let t = generate(dir.path());
    let (status, body) = stats(&t.server.base, &t.writer);
    assert_eq!(
        (status, body["type"].as_str()),
        (403, Some("urn:driftless:problem:forbidden"))
    );
    let (status, body) = stats(&t.server.base, "dl1.not.valid");
    assert_eq!(
        (status, body["type"].as_str()),
        (401, Some("urn:driftless:problem:unauthorized"))
    );
}

#[test]
fn the_page_is_self_contained_and_holds_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let t = generate(dir.path());
    let mut resp = agent()
        .get(format!("{}/dashboard", t.server.base))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let header = |n: &str| resp.headers().get(n).unwrap().to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert!(header("content-security-policy").contains("default-src 'none'"));
    // The SVG namespace is a name, not something fetched.
    let page = resp
        .body_mut()
        .read_to_string()
        .unwrap()
        .replace("'http://www.w3.org/2000/svg'", "");
    assert!(page.contains("sessionStorage") && page.contains("'Authorization': 'Bearer '"));
    for external in ["http://", "https://", "<link", "src=\"", "@import", "url("] {
        assert!(!page.contains(external), "the page fetches {external}");
    }
    assert!(
        !page.contains("innerHTML"),
        "server text must never be parsed as HTML"
    );
    for marker in VALUE_MARKERS {
        assert!(!page.contains(marker));
    }
}
