//! `driftless`: the one command-line tool of Driftless.
//!
//! - `serve`: the reference server on an embedded SQLite database.
//! - `token`: mint a Token for the reference server.
//! - `schema export`: regenerate `schemas/v1/` from the protocol crate's types.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[macro_use]
mod out;

mod bench;
mod bench_converge;
mod bench_load;
#[cfg(feature = "postgres")]
mod bench_pg;
mod client_adapter;
mod client_cmd;
mod conformance;
mod conformance_client;
mod embedded;
mod schema_check;
mod simulate;
use driftless_protocol::ids::SpaceId;
use driftless_protocol::messages::{Scope, TokenClaims};

#[derive(Parser)]
#[command(
    name = "driftless",
    version,
    about = "Driftless: offline-first sync protocol tooling",
    after_help = "Exit codes: 0 success; 1 operating error (server unreachable, token or schema \
refused, store or file unreadable, a check that failed); 2 usage error (bad arguments or input). \
`conformance`: 0 every MUST case passed, 1 a MUST case failed, 2 usage or setup error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The reference client: offline writes, sync, status, audit.
    Client(client_cmd::Args),
    /// Run the conformance suite against a server (by default, the embedded reference server).
    Conformance(conformance::Args),
    /// Run the reference server on an embedded SQLite database.
    Serve(ServeArgs),
    /// Run seeded, deterministic scenarios of the reference server and Clients under simulated
    /// time and network faults, and check the sync invariants after each.
    Simulate(simulate::Args),
    /// Print a signed, short-lived Token for the reference server, alone, on stdout.
    Token(TokenArgs),
    /// Work with the protocol's JSON Schemas.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Measure the reference server against a raw-SQLite baseline from the same run.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Push N puts over HTTP in batches of 1, 100 and 1000, then re-push them as duplicates.
    Push {
        /// How many mutations to push per batch size.
        #[arg(long, default_value_t = 10_000)]
        mutations: usize,
        /// Batch sizes to measure.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 100, 1000])]
        batches: Vec<usize>,
        /// Measure the PostgreSQL backend on this database (postgres://USER@HOST:PORT/DB)
        /// beside a raw PostgreSQL insert and the SQLite backend. Needs `--features postgres`.
        /// Writes Spaces named bench-<run>-... into it.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// With --database: server instances on it; a write mix over many Spaces is pushed
        /// through one and through all of them.
        #[arg(long, default_value_t = 1, requires = "database")]
        instances: usize,
    },
    /// N offline writes through the reference client and the sync that pushes them, beside
    /// raw-SQLite writes of the same rows and a raw HTTP push of the same mutations.
    Backlog {
        /// How many offline writes.
        #[arg(long, default_value_t = 10_000)]
        mutations: usize,
        /// Timed rounds, each on a fresh Client and Space; the medians are compared.
        #[arg(long, default_value_t = bench::BENCH_ROUNDS, value_parser = clap::value_parser!(u64).range(1..=20))]
        rounds: u64,
    },
    /// Initial sync of N records into an empty client store, beside a raw-SQLite insert rate.
    Sync {
        /// How many records.
        #[arg(long, default_value_t = 100_000)]
        records: usize,
        /// Timed rounds, each into fresh stores; the medians are compared.
        #[arg(long, default_value_t = bench::BENCH_ROUNDS, value_parser = clap::value_parser!(u64).range(1..=20))]
        rounds: u64,
    },
    /// N Clients x W offline writes each, synced at once to a `driftless serve` child: whether
    /// they converge, client-to-server bytes, requests per idle sync, peak server memory.
    Converge {
        /// How many Clients.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=500))]
        clients: u64,
        /// Offline writes per Client.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        writes: u64,
    },
    /// N pushers and M pullers beside a raw-hyper ceiling, or idle/slowloris connections
    /// beside a normal Client.
    Load(bench_load::Args),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: String,
    /// Data folder (created if missing): the database and the token-signing secret.
    #[arg(long, default_value = "./driftless-data")]
    data: PathBuf,
    /// Keep the Spaces in PostgreSQL (postgres://USER@HOST:PORT/DB) instead of SQLite in
    /// DATA; several instances may share one database (give each its own --node). Needs a
    /// build with the `postgres` feature.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// This instance's node name in the Server's HLCs; unique per instance on one database.
    #[arg(long, default_value = "server")]
    node: String,
    /// The token-signing secret file (64 hex digits; created if missing) instead of
    /// DATA/token-secret: give every instance of a deployment the same file.
    #[arg(long, value_name = "FILE")]
    token_secret: Option<PathBuf>,
    /// Requests per second each User may make before getting 429.
    #[arg(long, default_value_t = 500)]
    rate_limit: u32,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds Op IDs are remembered (at least 86400, `[RET-1]`).
    #[arg(long, default_value_t = 30 * 86_400)]
    op_retention_s: u64,
    /// Seconds tombstones and audit history are kept (at least 86400, `[RET-1]`).
    #[arg(long, default_value_t = 30 * 86_400)]
    history_retention_s: u64,
    /// Seconds between periodic compactions past the retention horizon.
    #[arg(long, default_value_t = 3600)]
    compact_every_s: u64,
    /// Serve Prometheus metrics at GET /metrics on this separate address, without
    /// authentication (spec [SEC-5]); off by default. Give it an address only operators reach.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Milliseconds a request head may take to arrive before the connection is closed ([LIM-8]).
    #[arg(long, default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// Milliseconds a connection may stay idle between requests before it is closed ([LIM-8]).
    #[arg(long, default_value_t = 60_000)]
    idle_timeout_ms: u64,
    /// Milliseconds a request body may take to arrive before it is answered 408 ([LIM-9]).
    #[arg(long, default_value_t = 60_000)]
    body_timeout_ms: u64,
    /// Most open connections; at the bound idle ones are closed first, then 503 ([LIM-11]).
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Most long-poll pulls held at once; beyond it 503 ([LIM-12]).
    #[arg(long, default_value_t = 5_000)]
    max_long_polls: usize,
    /// Switch on a deliberate bug (see --list-faults). Repeatable.
    #[cfg(feature = "fault-injection")]
    #[arg(long = "fault", value_name = "NAME")]
    faults: Vec<String>,
    /// Print every fault, one per line: its name, then the requirement IDs it breaks.
    #[cfg(feature = "fault-injection")]
    #[arg(long)]
    list_faults: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ScopeArg {
    Read,
    Write,
    Admin,
}

#[derive(clap::Args)]
struct TokenArgs {
    /// The server's data folder (holds the signing secret).
    #[arg(long, default_value = "./driftless-data")]
    data: PathBuf,
    /// The signing secret file the servers were given with --token-secret (instead of
    /// DATA/token-secret).
    #[arg(long, value_name = "FILE")]
    token_secret: Option<PathBuf>,
    /// The User the Token names.
    #[arg(long)]
    user: String,
    /// A Space the Token grants access to. Repeatable.
    #[arg(long, required = true)]
    space: Vec<String>,
    /// The Scope on those Spaces; repeated values grant the highest. Default: write.
    #[arg(long, value_enum)]
    scope: Vec<ScopeArg>,
    /// Lifetime in seconds, at most 3600 unless --allow-long-ttl ([AUTH-8]). Zero or negative
    /// mints an already expired Token, which the conformance suite asks for to check expiry.
    #[arg(long, default_value_t = 3600, allow_negative_numbers = true)]
    ttl: i64,
    /// Allow --ttl above one hour (spec [AUTH-8] wants short-lived Tokens).
    #[arg(long)]
    allow_long_ttl: bool,
    /// Create the signing secret (and DATA) if DATA holds none. Without it, a DATA with no
    /// secret is refused: a mistyped path would mint Tokens the server refuses.
    #[arg(long)]
    init: bool,
}

/// Longest Token lifetime without --allow-long-ttl, in seconds ([AUTH-8]).
const TOKEN_TTL_S_MAX: i64 = 3600;

#[derive(Subcommand)]
enum SchemaCommand {
    /// Check whether NEW is backward, forward or fully compatible with OLD; exit 1 if not.
    Check(schema_check::CheckArgs),
    /// Verify each declared migration of a folder of collection-schema versions, property-based.
    MigrateCheck(schema_check::MigrateArgs),
    /// Write the JSON Schemas of every wire message and the OpenAPI document to a folder.
    Export {
        /// The folder to write into (created if missing).
        #[arg(long, default_value = driftless_protocol::export::SCHEMA_DIR)]
        out: PathBuf,
        /// Do not write; exit 1 if any file in the folder differs from what would be written.
        #[arg(long)]
        check: bool,
    },
}

/// A failure the CLI reports in one line.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{count} schema file(s) in {dir} differ from the protocol types: {names}; run `driftless schema export`")]
    Stale {
        count: usize,
        dir: PathBuf,
        names: String,
    },
    #[error("{0}")]
    Start(#[from] driftless_server::StartError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Tls(#[from] driftless_server::TlsError),
    #[error("benchmark failed: {0}")]
    Bench(String),
    #[error("{} holds no token-signing secret; check --data (the server's data folder), or add --init to create one", .0.display())]
    NoSecret(PathBuf),
    #[error("{} does not exist; check --token-secret (the file the servers were given), or add --init to create it", .0.display())]
    NoSecretFile(PathBuf),
}

fn export(out: &Path, check: bool) -> Result<(), CliError> {
    let files = driftless_protocol::export::files();
    if check {
        let stale: Vec<&str> = files
            .iter()
            .filter(|(name, text)| {
                std::fs::read_to_string(out.join(name)).ok().as_ref() != Some(text)
            })
            .map(|(name, _)| name.as_str())
            .collect();
        if stale.is_empty() {
            println!(
                "{} schema files in {} are current",
                files.len(),
                out.display()
            );
            return Ok(());
        }
        return Err(CliError::Stale {
            count: stale.len(),
            dir: out.to_owned(),
            names: stale.join(", "),
        });
    }
    std::fs::create_dir_all(out).map_err(|source| CliError::CreateDir {
        path: out.to_owned(),
        source,
    })?;
    for (name, text) in &files {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|source| CliError::Write { path, source })?;
    }
    println!("wrote {} files to {}", files.len(), out.display());
    Ok(())
}

fn token(args: TokenArgs) -> Result<(), CliError> {
    let scope = args
        .scope
        .iter()
        .map(|s| match s {
            ScopeArg::Read => Scope::Read,
            ScopeArg::Write => Scope::Write,
            ScopeArg::Admin => Scope::Admin,
        })
        .max()
        .unwrap_or(Scope::Write);
    let mut grants = BTreeMap::new();
    for space in &args.space {
        let id: SpaceId = space
            .parse()
            .map_err(|e: driftless_protocol::ids::InvalidId| CliError::Usage(e.to_string()))?;
        grants.insert(id, scope);
    }
    if args.user.is_empty() || args.user.len() > 128 {
        return Err(CliError::Usage("--user must be 1 to 128 characters".into()));
    }
    if args.ttl > TOKEN_TTL_S_MAX && !args.allow_long_ttl {
        return Err(CliError::Usage(format!(
            "--ttl {} is above one hour; Tokens should be short-lived (spec [AUTH-8]); add --allow-long-ttl to mint it anyway",
            args.ttl
        )));
    }
    let key = match &args.token_secret {
        Some(file) => {
            if !args.init && !file.is_file() {
                return Err(CliError::NoSecretFile(file.clone()));
            }
            driftless_server::auth::TokenKey::load_or_create_file(file)
        }
        None => {
            if !args.init
                && !args
                    .data
                    .join(driftless_server::auth::SECRET_FILE)
                    .is_file()
            {
                return Err(CliError::NoSecret(args.data.clone()));
            }
            // With --init, minting before the server's first start creates the folder and its
            // secret.
            std::fs::create_dir_all(&args.data).map_err(|source| CliError::CreateDir {
                path: args.data.clone(),
                source,
            })?;
            driftless_server::auth::TokenKey::load_or_create(&args.data)
        }
    }
    .map_err(driftless_server::StartError::from)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = TokenClaims {
        sub: args.user,
        grants,
        iat: now,
        exp: (now as i64).saturating_add(args.ttl).max(0) as u64,
    };
    println!("{}", key.mint(&claims));
    Ok(())
}

fn serve(args: ServeArgs) -> Result<(), CliError> {
    #[cfg(feature = "fault-injection")]
    if args.list_faults {
        for (name, ids, _) in driftless_server::faults::ALL {
            println!("{name} {ids}");
        }
        return Ok(());
    }
    #[cfg(feature = "fault-injection")]
    let faults = driftless_server::faults::Faults::parse(&args.faults).map_err(CliError::Usage)?;
    #[cfg(not(feature = "fault-injection"))]
    let faults = driftless_server::faults::Faults::default();
    if args.op_retention_s < 86_400 || args.history_retention_s < 86_400 {
        return Err(CliError::Usage(
            "retention must be at least 86400 seconds (spec [RET-1])".into(),
        ));
    }
    if let Err(e) = driftless_protocol::hlc::Clock::new(&args.node) {
        return Err(CliError::Usage(format!("--node {:?}: {e}", args.node)));
    }
    let config = driftless_server::service::Config {
        node: args.node.clone(),
        rate_limit_per_s: args.rate_limit,
        retention: driftless_protocol::messages::Retention {
            op_ids_s: args.op_retention_s,
            history_s: args.history_retention_s,
        },
        ..Default::default()
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(driftless_server::tls_acceptor(cert, key)?),
        _ => None,
    };
    let edge = driftless_server::conn::EdgeConfig {
        header_read_timeout: Duration::from_millis(args.header_timeout_ms.max(1)),
        idle_timeout: Duration::from_millis(args.idle_timeout_ms.max(1)),
        body_read_timeout: Duration::from_millis(args.body_timeout_ms.max(1)),
        connections_max: args.max_connections.max(1),
        long_polls_max: args.max_long_polls,
        ..Default::default()
    };
    let wall = std::sync::Arc::new(driftless_server::service::SystemClock);
    match args.database.clone() {
        None => {
            let app = match &args.token_secret {
                None => driftless_server::open_with_edge(&args.data, config, edge, faults, wall)?,
                Some(file) => {
                    let key = driftless_server::auth::TokenKey::load_or_create_file(file)
                        .map_err(driftless_server::StartError::from)?;
                    std::fs::create_dir_all(&args.data).map_err(|source| CliError::CreateDir {
                        path: args.data.clone(),
                        source,
                    })?;
                    let storage =
                        driftless_server::storage::sqlite::SqliteStorage::open(&args.data)
                            .map_err(driftless_server::StartError::from)?;
                    driftless_server::open_storage(
                        std::sync::Arc::new(storage),
                        key,
                        config,
                        edge,
                        faults,
                        wall,
                    )?
                }
            };
            serve_app(app, args, tls)
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            #[cfg(feature = "postgres")]
            {
                let key = match &args.token_secret {
                    Some(file) => driftless_server::auth::TokenKey::load_or_create_file(file),
                    None => {
                        std::fs::create_dir_all(&args.data).map_err(|source| {
                            CliError::CreateDir {
                                path: args.data.clone(),
                                source,
                            }
                        })?;
                        driftless_server::auth::TokenKey::load_or_create(&args.data)
                    }
                }
                .map_err(driftless_server::StartError::from)?;
                let app = driftless_server::open_postgres(&url, key, config, edge, faults, wall)?;
                serve_app(app, args, tls)
            }
            #[cfg(not(feature = "postgres"))]
            {
                let _ = (config, edge, faults, wall, tls);
                Err(CliError::Usage(
                    "this driftless was built without PostgreSQL; build it with --features postgres"
                        .into(),
                ))
            }
        }
        Some(url) => Err(CliError::Usage(format!(
            "--database {url:?} is not a postgres:// URL"
        ))),
    }
}

/// Serves `app` as `args` say until SIGINT or SIGTERM.
fn serve_app<S: driftless_server::storage::Storage>(
    app: std::sync::Arc<driftless_server::http::App<S>>,
    args: ServeArgs,
    tls: Option<driftless_server::TlsAcceptor>,
) -> Result<(), CliError> {
    // Pull pages and push bodies pass through buffers of a few hundred KB on whichever blocking
    // thread serves them, and glibc gives threads their own arenas (up to eight per core) that
    // keep freed memory: 50 Clients syncing at once left a 65 MB peak (46 MB with two arenas,
    // `driftless bench converge`). One arena per core is enough for this server's few threads
    // that allocate at the same time.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // SAFETY: mallopt only sets a parameter of the allocator; it takes no pointer and is
        // called before the runtime starts its threads.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, cores.clamp(2, 64) as libc::c_int);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|source| CliError::Listen {
                addr: args.listen.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| CliError::Listen {
            addr: args.listen.clone(),
            source,
        })?;
        let metrics = match &args.metrics_listen {
            None => None,
            Some(at) => Some(tokio::net::TcpListener::bind(at).await.map_err(|source| {
                CliError::Listen {
                    addr: at.clone(),
                    source,
                }
            })?),
        };
        // Tests and scripts read this line to learn the chosen port.
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("listening on {scheme}://{addr}");
        if let Some(listener) = metrics {
            if let Ok(at) = listener.local_addr() {
                println!("metrics on http://{at}/metrics");
            }
            tokio::spawn(driftless_server::run_metrics(
                app.clone(),
                listener,
                std::future::pending(),
            ));
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        driftless_server::run_tls(
            app,
            listener,
            tls,
            shutdown_signal(),
            Duration::from_secs(args.compact_every_s.max(1)),
            Duration::from_secs(30),
        )
        .await
        .map_err(CliError::Serve)
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Parses the command line. A usage error is clap's own message (what is wrong, the valid
/// values, "a similar argument exists", the usage of the subcommand that failed) and exit code 2.
fn parse() -> Result<Cli, ExitCode> {
    Cli::try_parse().map_err(|e| {
        let _ = e.print();
        ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
    })
}

fn main() -> ExitCode {
    // `driftless client adapter` takes everything from its `open` request, so it has none of
    // `driftless client`'s required options (spec chapter 13).
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.len() >= 3 && argv[1] == "client" && argv[2] == "adapter" {
        return client_adapter::main(&argv[3..]);
    }
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRIFTLESS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colour only on a terminal, and never with NO_COLOR set (https://no-color.org).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
    let exit = |r: Result<u8, String>| match r {
        Ok(c) => ExitCode::from(c),
        Err(e) => {
            eprintln!("driftless: {e}");
            ExitCode::from(2)
        }
    };
    let result = match cli.command {
        Command::Schema {
            command: SchemaCommand::Check(args),
        } => return exit(schema_check::check(args)),
        Command::Schema {
            command: SchemaCommand::MigrateCheck(args),
        } => return exit(schema_check::migrate_check(args)),
        Command::Client(args) => {
            return match client_cmd::main(args) {
                Ok(c) => ExitCode::from(c),
                Err(e) => {
                    eprintln!("driftless: {e}");
                    ExitCode::from(e.code())
                }
            }
        }
        Command::Conformance(args) => {
            return match conformance::main(args) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("driftless: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Simulate(args) => {
            return match simulate::main(args) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("driftless: {e}");
                    ExitCode::from(e.code())
                }
            }
        }
        Command::Serve(args) => serve(args),
        Command::Token(args) => token(args),
        Command::Schema {
            command: SchemaCommand::Export { out, check },
        } => export(&out, check),
        Command::Bench {
            command: BenchCommand::Backlog { mutations, rounds },
        } => bench::backlog(mutations.max(1), rounds as usize)
            .map(|r| print!("{r}"))
            .map_err(CliError::Bench),
        Command::Bench {
            command: BenchCommand::Sync { records, rounds },
        } => bench::sync(records.max(1), rounds as usize)
            .map(|r| print!("{r}"))
            .map_err(CliError::Bench),
        Command::Bench {
            command: BenchCommand::Converge { clients, writes },
        } => bench_converge::run(clients as usize, writes as usize)
            .map(|r| print!("{r}"))
            .map_err(CliError::Bench),
        Command::Bench {
            command: BenchCommand::Load(args),
        } => bench_load::run(args)
            .map(|r| print!("{r}"))
            .map_err(CliError::Bench),
        Command::Bench {
            command:
                BenchCommand::Push {
                    mutations,
                    batches,
                    database,
                    instances,
                },
        } => {
            if mutations == 0 || batches.contains(&0) || instances == 0 {
                Err(CliError::Usage(
                    "--mutations, --instances and every batch size must be at least 1".into(),
                ))
            } else if let Some(url) = database {
                #[cfg(feature = "postgres")]
                {
                    bench_pg::run(&url, mutations, &batches, instances)
                        .map(|r| print!("{r}"))
                        .map_err(CliError::Bench)
                }
                #[cfg(not(feature = "postgres"))]
                {
                    let _ = url;
                    Err(CliError::Usage(
                        "this driftless was built without PostgreSQL; build it with --features postgres"
                            .into(),
                    ))
                }
            } else {
                bench::push(mutations, &batches)
                    .map(|rows| print!("{}", bench::report(mutations, &rows)))
                    .map_err(CliError::Bench)
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ CliError::Usage(_)) => {
            eprintln!("driftless: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("driftless: {e}");
            ExitCode::FAILURE
        }
    }
}
