//! The Driftless reference server: every requirement of protocol v1, on hyper + tokio, durable
//! on embedded SQLite.
//!
//! Layers, outermost first (each knows only the next):
//! - [`http`]: routing, headers, limits, authentication, problem+json. The only hyper code.
//! - [`service`]: the protocol handlers. Knows the spec, the storage traits and nothing of HTTP.
//! - [`storage`]: the [`storage::Storage`] trait with its written contracts, and the SQLite
//!   backend, the only code that knows SQL.
//!
//! [`run`] serves until a shutdown future completes, then lets in-flight requests finish.

// Handlers return `Result<_, Problem>`; a Problem is ~150 bytes and only built on the error
// path, so boxing it would add noise to every handler for no measurable gain.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod faults;
pub mod http;
pub mod metrics;
pub mod service;
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
    std::fs::create_dir_all(data_dir).map_err(|source| StartError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    let key = TokenKey::load_or_create(data_dir)?;
    let storage = Arc::new(SqliteStorage::open(data_dir)?);
    let limiter = RateLimiter::new(config.rate_limit_per_s);
    let service = Arc::new(Service::new(
        storage,
        config,
        wall,
        Arc::new(Metrics::default()),
        faults,
    )?);
    Ok(Arc::new(App {
        service,
        key,
        limiter,
    }))
}

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
/// expired history every `compact_every`.
pub async fn run_tls<S: storage::Storage>(
    app: Arc<App<S>>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    compact_every: Duration,
    drain: Duration,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and similar: keep serving the others.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let app = app.clone();
                let service = service_fn(move |req| app.clone().handle(req));
                match &tls {
                    None => {
                        let conn = graceful.watch(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                        });
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        let watcher = graceful.watcher();
                        tokio::spawn(async move {
                            let stream = match acceptor.accept(stream).await {
                                Ok(s) => s,
                                Err(e) => {
                                    tracing::debug!(error = %e, "TLS handshake failed");
                                    return;
                                }
                            };
                            let conn = watcher.watch(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
                            if let Err(e) = conn.await {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                        });
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    compactor.abort();
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after the drain period");
    }
    Ok(())
}
