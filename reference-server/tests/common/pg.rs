//! A throwaway PostgreSQL cluster for the tests of the PostgreSQL backend: one per test binary,
//! a fresh database per test.
//!
//! With `DRIFTLESS_TEST_POSTGRES` set (`postgres://USER@HOST:PORT`, a role that may create
//! databases), its server is used. Otherwise the system's own `initdb` and `pg_ctl` start a
//! cluster in a temporary folder on a free loopback port (as the `postgres` user when the tests
//! run as root, since `initdb` refuses root), stopped when the test binary exits. `fsync=off`
//! there: the tests kill server instances, never PostgreSQL, so flushing to the disk proves
//! nothing and only slows the shared machine.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

struct Cluster {
    /// `postgres://USER@HOST:PORT` without a database.
    server: String,
    /// Where `psql` lives.
    bin: PathBuf,
}

/// The folder of the cluster this process started, to stop at exit.
static STARTED: Mutex<Option<(PathBuf, PathBuf)>> = Mutex::new(None);

fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    versions.sort();
    if let Some(v) = versions.pop() {
        return v.join("bin");
    }
    let out = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .expect("sh runs");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        !path.is_empty(),
        "PostgreSQL is not installed (no initdb): install it (apt-get install -y postgresql) or set DRIFTLESS_TEST_POSTGRES"
    );
    Path::new(&path).parent().unwrap().to_path_buf()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a PostgreSQL tool, as `postgres` when we are root.
fn run_pg(bin: &Path, tool: &str, args: &[&str]) {
    let exe = bin.join(tool);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let out = cmd.args(args).output().expect("the PostgreSQL tool starts");
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

extern "C" fn stop_cluster() {
    let started = STARTED.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some((bin, data)) = started {
        let data = data.display().to_string();
        run_pg(
            &bin,
            "pg_ctl",
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(Path::new(&data).parent().unwrap());
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let bin = bin_dir();
        if let Ok(server) = std::env::var("DRIFTLESS_TEST_POSTGRES") {
            return Cluster {
                server: server.trim_end_matches('/').to_owned(),
                bin,
            };
        }
        let dir = tempfile::Builder::new()
            .prefix("driftless-pg-")
            .tempdir()
            .unwrap()
            .keep();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown of the cluster folder failed");
        }
        let data = dir.join("data");
        let data_s = data.display().to_string();
        run_pg(
            &bin,
            "initdb",
            &[
                "-D",
                &data_s,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=500",
            dir.display()
        );
        *STARTED.lock().unwrap() = Some((bin.clone(), data.clone()));
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(stop_cluster) };
        let log = dir.join("log").display().to_string();
        run_pg(
            &bin,
            "pg_ctl",
            &["-D", &data_s, "-o", &options, "-l", &log, "-w", "start"],
        );
        Cluster {
            server: format!("postgres://postgres@127.0.0.1:{port}"),
            bin,
        }
    })
}

/// A fresh, empty database; returns its URL.
pub fn fresh_database() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let c = cluster();
    let name = format!(
        "driftless_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let out = Command::new(c.bin.join("psql"))
        .args([
            &format!("{}/postgres", c.server),
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .expect("psql starts");
    assert!(
        out.status.success(),
        "CREATE DATABASE failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{}/{name}", c.server)
}

/// The database `name` (ASCII lower-case letters, digits and `_`), created empty if it does not
/// exist yet; returns its URL. The same name gives the same database, so a test that restarts
/// its server instances reconnects them to what they wrote before.
pub fn database_named(name: &str) -> String {
    assert!(
        !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "not a plain database name: {name:?}"
    );
    let c = cluster();
    let admin = format!("{}/postgres", c.server);
    let exists = psql(
        &admin,
        &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
    );
    if exists.is_empty() {
        psql(&admin, &format!("CREATE DATABASE {name}"));
    }
    format!("{}/{name}", c.server)
}

/// Runs one SQL statement on `url` and returns its output, unaligned and without headers.
pub fn psql(url: &str, sql: &str) -> String {
    let c = cluster();
    let out = Command::new(c.bin.join("psql"))
        .args([url, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
        .output()
        .expect("psql starts");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
