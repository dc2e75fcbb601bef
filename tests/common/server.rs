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

/// How many server instances an e2e test's server is: `DRIFTLESS_E2E_INSTANCES` (1 when unset).
/// Above 1, [`ServerProcess::start_with`] starts that many `driftless serve --database`
/// instances on one PostgreSQL database behind a round-robin proxy, which needs a build with
/// the `postgres` feature.
pub fn instances() -> usize {
    let n = match std::env::var("DRIFTLESS_E2E_INSTANCES") {
        Err(_) => 1,
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .unwrap_or_else(|| {
                panic!("DRIFTLESS_E2E_INSTANCES={v:?}: expected a number of instances, 1 or more")
            }),
    };
    assert!(
        n == 1 || cfg!(feature = "postgres"),
        "DRIFTLESS_E2E_INSTANCES={n} needs a build with --features postgres"
    );
    n
}

/// A running server: one process, or (see [`instances`]) several instances behind a
/// round-robin proxy, `base` being the proxy's. Dropping it kills every process.
pub struct ServerProcess {
    /// The process (the first instance when there are several).
    pub child: Child,
    pub base: String,
    /// The other instances.
    rest: Vec<ServerProcess>,
    /// The round-robin proxy in front of the instances; stops when dropped.
    #[allow(dead_code)] // held for its Drop
    proxy: Option<driftless_conformance::proxy::Proxy>,
}

impl ServerProcess {
    /// Starts `driftless serve` on a free loopback port over `data`, and waits until it prints
    /// the address it listens on.
    pub fn start(data: &Path, extra: &[&str]) -> Self {
        Self::start_with(data, extra, &[], Stdio::inherit())
    }

    /// As [`ServerProcess::start`], with environment variables and a chosen stderr.
    ///
    /// With `DRIFTLESS_E2E_INSTANCES=N` (N > 1, feature `postgres`), starts N instances over
    /// the data folder `data` (layout in tests/common/instances.rs: one database named after
    /// `data`, DATA/node-I, DATA/token-secret) with `extra` and `env` each; the first instance
    /// gets `stderr`, the others inherit the test's. Started again on the same `data`, they
    /// reconnect to the same database.
    pub fn start_with(data: &Path, extra: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Self {
        let n = instances();
        if n == 1 {
            return Self::start_one(data, extra, env, stderr);
        }
        Self::start_instances(n, data, extra, env, stderr)
    }

    #[cfg(feature = "postgres")]
    fn start_instances(
        n: usize,
        data: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Self {
        use super::instances::{database_for, spawn_instance};
        let url = database_for(data);
        let mut first = spawn_instance(&url, data, 0, extra, env, stderr);
        first.rest = (1..n)
            .map(|i| spawn_instance(&url, data, i, extra, env, Stdio::inherit()))
            .collect();
        let bases: Vec<&str> = std::iter::once(first.base.as_str())
            .chain(first.rest.iter().map(|s| s.base.as_str()))
            .collect();
        let proxy = driftless_conformance::proxy::Proxy::round_robin(&bases).unwrap();
        first.base = proxy.base().to_owned();
        first.proxy = Some(proxy);
        first
    }

    #[cfg(not(feature = "postgres"))]
    fn start_instances(_: usize, _: &Path, _: &[&str], _: &[(&str, &str)], _: Stdio) -> Self {
        unreachable!("instances() allows more than one only with the postgres feature")
    }

    /// One `driftless serve` process, whatever `DRIFTLESS_E2E_INSTANCES` says.
    pub fn start_one(data: &Path, extra: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Self {
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
        Self {
            child,
            base,
            rest: Vec::new(),
            proxy: None,
        }
    }

    /// SIGKILL of every process: no chance to flush or clean up.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        for other in std::mem::take(&mut self.rest) {
            other.kill();
        }
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets the stored clock of the Server over `data` (which must not be running; started once
/// before, so its storage exists) to `hlc`, as if its wall clock had been set back after it ran
/// at that time. One SQLite server: the `clock` row of its `meta` table. Several instances (see
/// [`instances`]): every instance's clock row of the Space `space` in PostgreSQL, since each
/// instance keeps its own clock.
#[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
pub fn set_server_clock(data: &Path, space: &str, hlc: &str) {
    let n = instances();
    if n == 1 {
        rusqlite::Connection::open(data.join(driftless_server::storage::sqlite::DB_FILE))
            .unwrap()
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('clock', ?1)",
                [hlc],
            )
            .unwrap();
    }
    #[cfg(feature = "postgres")]
    if n > 1 {
        for i in 0..n {
            super::instances::sql(
                data,
                &format!(
                    "INSERT INTO clocks (node, space, value) VALUES ('server-{i}', '{space}', '{hlc}') \
                     ON CONFLICT (node, space) DO UPDATE SET value = EXCLUDED.value"
                ),
            );
        }
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
