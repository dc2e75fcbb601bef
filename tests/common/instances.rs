//! Server instances of one deployment: `driftless serve --database URL` child processes on one
//! real PostgreSQL database (see reference-server/tests/common/pg.rs), sharing one token secret.
//! Built with `--features postgres`.
//!
//! The layout of a deployment over a data folder DATA: instance `i` runs with
//! `--database URL --node server-i --data DATA/node-i --token-secret DATA/token-secret`.
//! DATA/token-secret is the file `driftless token --data DATA --init` writes, so Tokens minted
//! for a single SQLite server on DATA are accepted by every instance.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::pg;
use super::server::{driftless, ServerProcess};

/// The database of the deployment over `data`: named after the folder, created on first use, so
/// a restart on the same data folder reconnects to the same database.
pub fn database_for(data: &Path) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    pg::database_named(&format!("driftless_e2e_{:016x}", h.finish()))
}

/// The data folder of instance `i` of the deployment over `data`.
pub fn node_data(data: &Path, i: usize) -> PathBuf {
    data.join(format!("node-{i}"))
}

/// The flags (before `extra`) that make instance `i` part of the deployment over `data` on `url`.
pub fn instance_flags(url: &str, data: &Path, i: usize) -> Vec<String> {
    vec![
        "--database".into(),
        url.into(),
        "--node".into(),
        format!("server-{i}"),
        "--token-secret".into(),
        data.join("token-secret").display().to_string(),
    ]
}

/// Starts instance `i` of the deployment over `data` on `url`: its own node name and data
/// folder, the shared database and secret, then `extra`.
pub fn spawn_instance(
    url: &str,
    data: &Path,
    i: usize,
    extra: &[&str],
    env: &[(&str, &str)],
    stderr: Stdio,
) -> ServerProcess {
    let mut flags = instance_flags(url, data, i);
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    ServerProcess::start_one(&node_data(data, i), &flags, env, stderr)
}

/// Runs one SQL statement on the database of the deployment over `data` (no instance needs to
/// run); returns its unaligned output.
pub fn sql(data: &Path, statement: &str) -> String {
    pg::psql(&database_for(data), statement)
}

/// Instances on one fresh database in a temporary data folder, each started and killed on its
/// own.
pub struct Deployment {
    pub url: String,
    dir: tempfile::TempDir,
    pub instances: Vec<Option<ServerProcess>>,
    extra: Vec<String>,
}

impl Deployment {
    /// `n` instances, each with `extra` flags.
    pub fn start(n: usize, extra: &[&str]) -> Self {
        let mut d = Self {
            url: pg::fresh_database(),
            dir: tempfile::tempdir().unwrap(),
            instances: Vec::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..n {
            let s = d.spawn(i);
            d.instances.push(Some(s));
        }
        d
    }

    /// The shared token-signing secret file (created by the first instance).
    pub fn secret(&self) -> PathBuf {
        self.dir.path().join("token-secret")
    }

    /// Starts instance `i` again (or for the first time).
    pub fn spawn(&self, i: usize) -> ServerProcess {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        spawn_instance(&self.url, self.dir.path(), i, &extra, &[], Stdio::inherit())
    }

    /// The base URLs of the running instances, in instance order.
    pub fn bases(&self) -> Vec<String> {
        self.instances
            .iter()
            .flatten()
            .map(|s| s.base.clone())
            .collect()
    }

    /// A write Token for `space` from `driftless token --token-secret`.
    pub fn token(&self, space: &str) -> String {
        self.token_scoped(space, "write")
    }

    /// A Token for `space` with `scope` from `driftless token --token-secret`.
    pub fn token_scoped(&self, space: &str, scope: &str) -> String {
        let out = driftless()
            .args(["token", "--token-secret"])
            .arg(self.secret())
            .args(["--user", "crasher", "--space", space, "--scope", scope])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A `--token-cmd` for the conformance suite that mints Tokens with the shared secret.
    pub fn token_cmd(&self) -> String {
        format!(
            "{} token --token-secret {} --user {{user}} --space {{space}} --scope {{scope}} --ttl {{ttl}}",
            env!("CARGO_BIN_EXE_driftless"),
            self.secret().display()
        )
    }
}
