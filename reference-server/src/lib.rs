//! The Driftless reference server: every requirement of protocol v1, on hyper + tokio, durable
//! on embedded SQLite.
//!
//! Layers, outermost first (each knows only the next):
//! - [`conn`]: accepting, bounding and closing connections: timeouts, the connection bound,
//!   lingering close, problem+json for hyper's own refusals.
//! - [`http`]: routing, headers, limits, authentication, problem+json. With `conn`, the only
//!   hyper code.
//! - [`service`]: the protocol handlers. Knows the spec, the storage traits and nothing of HTTP.
//! - [`storage`]: the [`storage::Storage`] trait with its written contracts, and the SQLite and
//!   (feature `postgres`) PostgreSQL backends, the only code that knows SQL.
//!
//! [`run`] serves until a shutdown future completes, then lets in-flight requests finish.

// Handlers return `Result<_, Problem>`; a Problem is ~150 bytes and only built on the error
// path, so boxing it would add noise to every handler for no measurable gain.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod conn;
pub mod dashboard;
pub mod encoding;
pub mod faults;
pub mod http;
pub mod metrics;
pub mod rate_limit;
pub mod service;
pub mod stats;
pub mod storage;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::auth::TokenKey;
use crate::conn::{Admission, ConnInfo, ConnState, EdgeConfig, Registry};
use crate::faults::Faults;
use crate::http::{App, RateLimiter};
use crate::metrics::Metrics;
use crate::service::{Config, Service, SystemClock, WallClock};
use crate::storage::sqlite::SqliteStorage;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data folder could not be created.
    #[error("cannot create data folder {path}: {source}")]
    DataDir {
        /// The folder.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The token secret could not be read or created.
    #[error(transparent)]
    Secret(#[from] auth::SecretError),
    /// The database could not be opened.
    #[error("cannot open the database: {0}")]
    Storage(#[from] storage::StorageError),
}

/// The server over the SQLite store in `data_dir` (created if missing).
pub fn open(
    data_dir: &Path,
    config: Config,
    faults: Faults,
) -> Result<Arc<App<SqliteStorage>>, StartError> {
    open_with_clock(data_dir, config, faults, Arc::new(SystemClock))
}

/// As [`open`], with an injected wall clock (tests).
pub fn open_with_clock(
    data_dir: &Path,
    config: Config,
    faults: Faults,
    wall: Arc<dyn WallClock>,
) -> Result<Arc<App<SqliteStorage>>, StartError> {
    open_with_edge(data_dir, config, EdgeConfig::default(), faults, wall)
}

/// As [`open`], with the connection layer's bounds and an injected wall clock.
pub fn open_with_edge(
    data_dir: &Path,
    config: Config,
    edge: EdgeConfig,
    faults: Faults,
    wall: Arc<dyn WallClock>,
) -> Result<Arc<App<SqliteStorage>>, StartError> {
    std::fs::create_dir_all(data_dir).map_err(|source| StartError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    let key = TokenKey::load_or_create(data_dir)?;
    let storage = Arc::new(SqliteStorage::open(data_dir)?);
    open_storage(storage, key, config, edge, faults, wall)
}

/// The server over the PostgreSQL database at `url` (`postgres://USER@HOST:PORT/DB`), signing
/// Tokens with `key`. Any number of instances may share the database; each needs its own
/// `config.node` (its clock is persisted under that name).
#[cfg(feature = "postgres")]
pub fn open_postgres(
    url: &str,
    key: TokenKey,
    config: Config,
    edge: EdgeConfig,
    faults: Faults,
    wall: Arc<dyn WallClock>,
) -> Result<Arc<App<storage::postgres::PgStorage>>, StartError> {
    let storage = Arc::new(storage::postgres::PgStorage::open(url, &config.node)?);
    open_storage(storage, key, config, edge, faults, wall)
}

/// The server over an opened store.
pub fn open_storage<S: storage::Storage>(
    storage: Arc<S>,
    key: TokenKey,
    config: Config,
    edge: EdgeConfig,
    faults: Faults,
    wall: Arc<dyn WallClock>,
) -> Result<Arc<App<S>>, StartError> {
    let limiter = RateLimiter::new(config.rate_limit_per_s);
    let service = Arc::new(Service::new(
        storage,
        config,
        wall,
        Arc::new(Metrics::default()),
        faults,
    )?);
    let auth_failures = http::RateLimiter::with_burst(
        f64::from(edge.auth_failures_per_min) / 60.0,
        f64::from(edge.auth_failures_burst),
    );
    let long_polls = tokio::sync::Semaphore::new(edge.long_polls_max);
    Ok(Arc::new(App {
        service,
        key,
        limiter,
        auth_failures,
        registry: Registry::new(edge),
        long_polls,
        long_polls_taken: tokio::sync::watch::Sender::new(0),
    }))
}

pub use tokio_rustls::TlsAcceptor;

/// Why a TLS certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("cannot load TLS {what} from {path}: {reason}")]
pub struct TlsError {
    what: &'static str,
    path: String,
    reason: String,
}

/// A TLS acceptor from PEM files: a certificate chain and its private key.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let err = |what, path: &Path, reason: String| TlsError {
        what,
        path: path.display().to_string(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err("certificate", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err("certificate", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(err(
            "certificate",
            cert,
            "no certificate in the file".into(),
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| err("key", key, e.to_string()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err("configuration", cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| err("key", key, e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves plain HTTP on `listener` until `shutdown` completes; see [`run_tls`].
pub async fn run<S: storage::Storage>(
    app: Arc<App<S>>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    compact_every: Duration,
    drain: Duration,
) -> std::io::Result<()> {
    run_tls(app, listener, None, shutdown, compact_every, drain).await
}

/// Serves `listener` (over TLS when `tls` is given) until `shutdown` completes; then stops
/// accepting, lets in-flight requests finish (at most `drain` long), and returns. Compacts
/// expired history every `compact_every`. Connections are bounded and timed out as
/// [`conn::EdgeConfig`] (the App's) says.
pub async fn run_tls<S: storage::Storage>(
    app: Arc<App<S>>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    compact_every: Duration,
    drain: Duration,
) -> std::io::Result<()> {
    let registry = app.registry.clone();
    let compactor = {
        let service = app.service.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(compact_every);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = service.compact_expired().await {
                    tracing::error!(error = %e, "periodic compaction failed");
                }
            }
        })
    };
    let sweeper = {
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(registry.sweep_every());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                registry.sweep();
                registry.trim_memory();
            }
        })
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and similar: keep serving the others.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Answers go out as soon as they are written: a streamed pull page ends in a
                // small last chunk that Nagle's algorithm would hold back until the Client's
                // delayed ACK (up to 40 ms on Linux). Failing to set it only costs latency.
                let _ = stream.set_nodelay(true);
                let (id, state) = match registry.admit() {
                    Admission::Serve(id, state) => (id, state),
                    Admission::Refuse => {
                        // Every connection is busy (`[LIM-11]`). Over TLS no answer can be
                        // written before a handshake, so the connection is just closed.
                        if tls.is_none() {
                            registry.refuse(stream, app.refusal(503));
                        }
                        continue;
                    }
                };
                let info = ConnInfo { peer: peer.ip(), state };
                let app = app.clone();
                let registry = registry.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve_connection(&app, &registry, info, stream).await,
                        Some(acceptor) => {
                            // The handshake is part of the request head's time (`[LIM-8]`).
                            let timeout = registry.config().header_read_timeout;
                            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => {
                                    serve_connection(&app, &registry, info, stream).await
                                }
                                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!("TLS handshake timed out"),
                            }
                        }
                    }
                    registry.remove(id);
                });
            }
            () = &mut shutdown => break,
        }
    }
    compactor.abort();
    drop(listener);
    registry.shut_down();
    if tokio::time::timeout(drain, registry.drained())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after the drain period");
    }
    sweeper.abort();
    Ok(())
}

/// Serves one connection until it ends, or until the registry asks it to close: at once when
/// no request is in progress, after the request in progress otherwise.
async fn serve_connection<S, IO>(app: &Arc<App<S>>, registry: &Registry, info: ConnInfo, io: IO)
where
    S: storage::Storage,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let state: Arc<ConnState> = info.state.clone();
    let render = {
        let app = app.clone();
        Arc::new(move |status: u16| app.refusal(status))
    };
    let tracked = registry.track(io, state.clone(), render);
    let service = {
        let app = app.clone();
        service_fn(move |mut req| {
            let app = app.clone();
            let info = info.clone();
            async move {
                info.state.begin_request();
                req.extensions_mut().insert(info.clone());
                let response = app.handle(req).await;
                info.state.end_request();
                response
            }
        })
    };
    let mut builder = http1::Builder::new();
    // The connection layer times request heads itself (hyper's timer would also close idle
    // keep-alive connections at the header timeout) and rewrites hyper's 431 as problem+json.
    builder
        .header_read_timeout(None)
        .max_header_size(registry.config().header_bytes_max);
    let conn = builder.serve_connection(TokioIo::new(tracked), service);
    tokio::pin!(conn);
    let mut finishing = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = state.close_requested(), if !finishing => {
                if !state.busy() {
                    return; // idle: dropping the connection closes it
                }
                conn.as_mut().graceful_shutdown();
                finishing = true;
            }
        }
    }
}

/// Serves the metrics listener (`[SEC-5]`) until `shutdown` completes: `GET /metrics` only, no
/// authentication, meant for an address that only operators reach.
pub async fn run_metrics<S: storage::Storage>(
    app: Arc<App<S>>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let app = app.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| app.clone().handle_metrics(req));
                    let mut builder = http1::Builder::new();
                    builder.keep_alive(false);
                    let _ = tokio::time::timeout(
                        Duration::from_secs(10),
                        builder.serve_connection(TokioIo::new(stream), service),
                    )
                    .await;
                });
            }
            () = &mut shutdown => return Ok(()),
        }
    }
}
