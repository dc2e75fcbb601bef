//! The real `driftless serve` binary as a child process, and a small HTTP client.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub fn driftless() -> Command {
    Command::new(env!("CARGO_BIN_EXE_driftless"))
}

/// `driftless client --store STORE --server BASE --token TOKEN --space SPACE`, ready for more
/// flags and a subcommand.
pub fn client_cli(store: &Path, base: &str, token: &str, space: &str) -> Command {
    let mut cmd = driftless();
    cmd.args(["client", "--store"])
        .arg(store)
        .args(["--server", base, "--token", token, "--space", space]);
    cmd
}

/// A running server process. Dropping it kills the process.
pub struct ServerProcess {
    pub child: Child,
    pub base: String,
}

impl ServerProcess {
    /// Starts `driftless serve` on a free loopback port over `data`, and waits until it prints
    /// the address it listens on.
    pub fn start(data: &Path, extra: &[&str]) -> Self {
        Self::start_with(data, extra, &[], Stdio::inherit())
    }

    /// As [`ServerProcess::start`], with environment variables and a chosen stderr.
    pub fn start_with(data: &Path, extra: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Self {
        let mut child = driftless()
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("driftless serve starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self { child, base }
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Token from `driftless token` for `space` with `scope`.
pub fn token(data: &Path, user: &str, space: &str, scope: &str) -> String {
    let out = driftless()
        .args(["token", "--data"])
        .arg(data)
        .args(["--user", user, "--space", space, "--scope", scope, "--init"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// POSTs or GETs JSON; `Err` on a transport failure (the server is gone).
pub fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let auth = format!("Bearer {token}");
    let result = match (method, body) {
        ("GET", _) => agent.get(url).header("authorization", &auth).call(),
        (_, Some(b)) => agent.post(url).header("authorization", &auth).send_json(b),
        (_, None) => agent.post(url).header("authorization", &auth).send_empty(),
    };
    let mut resp = result.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    let value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    Ok((status, value))
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The suite's Mutation builder; one definition for the suite and these tests.
#[allow(unused_imports)] // not every test binary builds mutations
pub use driftless_conformance::client::mutation;

/// A small deterministic generator (xorshift), so a failing seed replays.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A seed from the environment (`DRIFTLESS_TEST_SEED`) or the clock, printed so it replays.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("DRIFTLESS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() | 1);
    eprintln!("{test}: DRIFTLESS_TEST_SEED={seed}");
    seed
}
