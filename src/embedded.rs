//! The reference server in this process, on a free loopback port with a temporary data folder.
//! The default `driftless conformance` run and the benchmarks use it; it stops when dropped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use driftless_protocol::messages::{Scope, TokenClaims};
use driftless_server::auth::TokenKey;

/// A running embedded server.
pub struct Embedded {
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its Token key.
    pub key: TokenKey,
    _dir: tempfile::TempDir,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Mints a Token with `key` for `user` with `scope` on `space`, valid for `ttl_s` seconds
/// (zero or negative: already expired).
pub fn mint(
    key: &TokenKey,
    user: &str,
    space: &str,
    scope: Scope,
    ttl_s: i64,
) -> Result<String, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let space = space
        .parse()
        .map_err(|e: driftless_protocol::ids::InvalidId| e.to_string())?;
    Ok(key.mint(&TokenClaims {
        sub: user.to_owned(),
        grants: BTreeMap::from([(space, scope)]),
        iat: now,
        exp: (now as i64).saturating_add(ttl_s).max(0) as u64,
    }))
}

impl Embedded {
    /// Starts a server with `config`.
    pub fn start(config: driftless_server::service::Config) -> Result<Self, String> {
        let dir = tempfile::tempdir()
            .map_err(|e| format!("cannot create a temporary data folder: {e}"))?;
        let app = driftless_server::open(
            dir.path(),
            config,
            driftless_server::faults::Faults::default(),
        )
        .map_err(|e| e.to_string())?;
        let key = app.key.clone();
        let (runtime, listener, base) = loopback_runtime()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(driftless_server::run(
            Arc::clone(&app),
            listener,
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(3600),
            Duration::from_secs(5),
        ));
        Ok(Self {
            base,
            key,
            _dir: dir,
            runtime: Some(runtime),
            stop: Some(stop),
        })
    }

    /// A Token for `user` with `scope` on `space`, valid for an hour.
    pub fn token(&self, user: &str, space: &str, scope: Scope) -> Result<String, String> {
        mint(&self.key, user, space, scope, 3600)
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// A two-thread tokio runtime and a listener on a free 127.0.0.1 port, with its `http://` base
/// URL: where the in-process servers of the CLI (embedded reference server, benchmark ceiling)
/// run.
pub fn loopback_runtime(
) -> Result<(tokio::runtime::Runtime, tokio::net::TcpListener, String), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| e.to_string())?;
    let base = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    Ok((runtime, listener, base))
}
