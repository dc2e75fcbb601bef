//! Sync traffic for the dashboard tests, made with the reference client's CLI against a real
//! server: Client A (User ada) writes, has one write rejected by the Collection Schema and keeps
//! pulling; Client B (User bob) pulls once and then falls behind.
#![allow(dead_code)] // each test file uses part of this module

use std::path::Path;

use super::server::{client_cli, token, ServerProcess};

/// Text that appears only inside pushed values: it must never reach the dashboard.
pub const VALUE_MARKERS: [&str; 3] = ["SECRET-VALUE-1", "SECRET-VALUE-2", "SECRET-VALUE-3"];

/// What [`generate`] made.
pub struct Traffic {
    pub server: ServerProcess,
    /// An admin Token on `demo` (User ada).
    pub admin: String,
    /// A write Token on `demo` (User bob).
    pub writer: String,
}

fn cli(store: &Path, base: &str, token: &str, args: &[&str]) -> String {
    let out = client_cli(store, base, token, "demo")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "client {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Starts a server over `dir` and makes the traffic: in Space `demo`, 3 writes applied, 1
/// rejected (`schema-violation`), Client B two changes behind.
pub fn generate(dir: &Path) -> Traffic {
    let data = dir.join("server");
    let admin = token(&data, "ada", "demo", "admin");
    let writer = token(&data, "bob", "demo", "write");
    let server = ServerProcess::start(&data, &[]);
    let base = server.base.clone();
    let (a, b) = (dir.join("client-a"), dir.join("client-b"));
    let schema = dir.join("tasks.json");
    std::fs::write(
        &schema,
        r#"{"collection": "tasks", "version": 1,
            "schema": {"type": "object", "properties": {"title": {"type": "string"}}}}"#,
    )
    .unwrap();
    cli(
        &a,
        &base,
        &admin,
        &["schema", "put", "tasks", schema.to_str().unwrap()],
    );
    let put = |store: &Path, t: &str, id: &str, value: &str| {
        cli(store, &base, t, &["put", "tasks", id, value]);
    };
    put(
        &a,
        &admin,
        "t1",
        &format!(r#"{{"title":"{}"}}"#, VALUE_MARKERS[0]),
    );
    // Rejected: the schema wants a string title. Its value must not appear either.
    put(&a, &admin, "bad", r#"{"title":4242424242}"#);
    cli(&a, &base, &admin, &["sync"]);
    cli(&b, &base, &writer, &["sync"]);
    put(
        &a,
        &admin,
        "t2",
        &format!(r#"{{"title":"{}"}}"#, VALUE_MARKERS[1]),
    );
    put(
        &a,
        &admin,
        "t3",
        &format!(r#"{{"title":"{}"}}"#, VALUE_MARKERS[2]),
    );
    cli(&a, &base, &admin, &["sync"]);
    Traffic {
        server,
        admin,
        writer,
    }
}
