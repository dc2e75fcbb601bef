//! `driftless serve --database postgres://...` as real child processes on one real PostgreSQL
//! database (a throwaway cluster, see reference-server/tests/common/pg.rs): the conformance
//! suite against one instance and against three behind a round-robin proxy, and SIGKILLs of
//! instances during concurrent pushes. Built with `--features postgres`.

mod common;
#[path = "../reference-server/tests/common/pg.rs"]
mod pg;

use std::path::PathBuf;

use common::server::{driftless, ServerProcess};
use driftless_conformance::proxy::Proxy;
use serde_json::Value;

/// Server instances on one fresh database, sharing one token secret.
struct Deployment {
    url: String,
    dir: tempfile::TempDir,
    instances: Vec<Option<ServerProcess>>,
    rate_limit: u32,
}

impl Deployment {
    /// `n` instances. Each limits a User's rate on its own, so a deployment of `n` lets a User
    /// make up to `n` times `--rate-limit`: the limit is split between them (the suite's
    /// self-check wants a 429 within its 4000 requests).
    fn start(n: usize) -> Self {
        let url = pg::fresh_database();
        let dir = tempfile::tempdir().unwrap();
        let mut d = Self {
            url,
            dir,
            instances: Vec::new(),
            rate_limit: 200 / n as u32,
        };
        for i in 0..n {
            let s = d.spawn(i);
            d.instances.push(Some(s));
        }
        d
    }

    fn secret(&self) -> PathBuf {
        self.dir.path().join("token-secret")
    }

    /// Starts instance `i` (its own node name and data folder; the shared database and secret).
    fn spawn(&self, i: usize) -> ServerProcess {
        let data = self.dir.path().join(format!("data-{i}"));
        let secret = self.secret().display().to_string();
        ServerProcess::start(
            &data,
            &[
                "--database",
                &self.url,
                "--node",
                &format!("server-{i}"),
                "--token-secret",
                &secret,
                "--rate-limit",
                &self.rate_limit.to_string(),
            ],
        )
    }

    fn bases(&self) -> Vec<String> {
        self.instances
            .iter()
            .flatten()
            .map(|s| s.base.clone())
            .collect()
    }

    fn token_cmd(&self) -> String {
        format!(
            "{} token --token-secret {} --user {{user}} --space {{space}} --scope {{scope}} --ttl {{ttl}}",
            env!("CARGO_BIN_EXE_driftless"),
            self.secret().display()
        )
    }
}

fn conformance(server: &str, token_cmd: &str, seed: &str) -> (i32, Value) {
    let out = driftless()
        .args(["conformance", "--server", server, "--token-cmd", token_cmd])
        .args(["--seed", seed, "--format", "json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), report)
}

fn assert_all_pass(code: i32, report: &Value) {
    let failing: Vec<String> = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] != "pass")
        .map(|c| format!("{} {}: {}", c["id"], c["outcome"], c["detail"]))
        .collect();
    let all = driftless_conformance::cases::all().len();
    assert_eq!(report["cases"].as_array().unwrap().len(), all);
    assert_eq!(report["summary"]["passed"], all, "failing: {failing:#?}");
    assert_eq!(code, 0);
}

#[test]
fn the_conformance_suite_passes_against_one_instance_on_postgres() {
    let d = Deployment::start(1);
    let (code, report) = conformance(&d.bases()[0], &d.token_cmd(), "11");
    assert_all_pass(code, &report);
}

#[test]
fn the_conformance_suite_passes_against_three_instances_behind_a_round_robin_proxy() {
    let d = Deployment::start(3);
    let bases = d.bases();
    let refs: Vec<&str> = bases.iter().map(String::as_str).collect();
    let proxy = Proxy::round_robin(&refs).unwrap();
    let (code, report) = conformance(proxy.base(), &d.token_cmd(), "23");
    assert_all_pass(code, &report);
}
