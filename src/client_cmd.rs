//! `driftless client`: the reference client from the command line. Writes work while the server
//! is down; `sync` pushes and pulls until done, and exits non-zero if it could not finish.

use std::path::PathBuf;
use std::time::Duration;

use driftless_client::{Client, Config, Event, Preset, RetryPolicy};
use serde_json::{json, Value};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PresetArg {
    Interactive,
    Background,
    Metered,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum StatusFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// The local store folder (created if missing; one Client per folder).
    #[arg(long)]
    store: PathBuf,
    /// The server's base URL.
    #[arg(long)]
    server: String,
    /// The bearer token.
    #[arg(long)]
    token: String,
    /// The space.
    #[arg(long)]
    space: String,
    /// Retry schedule preset (never shorter than the server's announced policy).
    #[arg(long, value_enum, default_value = "interactive")]
    retry: PresetArg,
    /// Print progress events to stderr, one per line.
    #[arg(long)]
    progress: bool,
    /// Most mutations per push (the server's limit also applies).
    #[arg(long, default_value_t = 500)]
    batch_max: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Replace a record with a JSON object.
    Put {
        collection: String,
        id: String,
        json: String,
        /// Higher priority syncs first (never ahead of earlier writes to the same record).
        #[arg(long, default_value_t = 0)]
        priority: i64,
    },
    /// Set the fields of a JSON object (and unset the fields named by --unset).
    Patch {
        collection: String,
        id: String,
        json: String,
        /// A field to remove. Repeatable.
        #[arg(long)]
        unset: Vec<String>,
    },
    /// Delete a record.
    Delete { collection: String, id: String },
    /// Add BY (an integer, may be negative) to a numeric field.
    Increment {
        collection: String,
        id: String,
        field: String,
        #[arg(allow_negative_numbers = true)]
        by: i64,
    },
    /// Print a record's JSON (with pending writes applied); exit 1 if absent.
    Get { collection: String, id: String },
    /// Print every record of a collection, one JSON object per line.
    List { collection: String },
    /// Push and pull until the outbox is empty and the client is caught up.
    Sync,
    /// Pending, sent and rejected counts, the last sync and telemetry counters.
    Status {
        #[arg(long, value_enum, default_value = "text")]
        format: StatusFormat,
    },
    /// Compare bucket checksums with the server and repair drifted buckets.
    Audit,
    /// Collection schemas.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
}

#[derive(clap::Subcommand)]
enum SchemaCommand {
    /// Register a collection-schema version from FILE (needs admin scope).
    Put { collection: String, file: PathBuf },
}

fn object(text: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if !v.is_object() {
        return Err("expected a JSON object".into());
    }
    Ok(v)
}

/// Runs the command; `Ok(exit code)` or a one-line error.
pub fn main(args: Args) -> Result<u8, String> {
    let retry = RetryPolicy::preset(match args.retry {
        PresetArg::Interactive => Preset::Interactive,
        PresetArg::Background => Preset::Background,
        PresetArg::Metered => Preset::Metered,
    });
    let cfg = Config {
        server: args.server,
        token: args.token,
        space: args.space,
        retry,
        batch_max: args.batch_max.max(1),
        timeout: Duration::from_secs(60),
    };
    let mut client = Client::open(&args.store, cfg).map_err(|e| e.to_string())?;
    if args.progress {
        client.on_event(|e: &Event| eprintln!("event: {e:?}"));
    }
    let err = |e: driftless_client::ClientError| e.to_string();
    match args.command {
        Command::Put {
            collection,
            id,
            json,
            priority,
        } => {
            let value = object(&json)?;
            println!(
                "{}",
                client
                    .write(
                        &collection,
                        &id,
                        json!({"kind": "put", "value": value}),
                        priority
                    )
                    .map_err(err)?
            );
        }
        Command::Patch {
            collection,
            id,
            json,
            unset,
        } => {
            let set = object(&json)?;
            println!(
                "{}",
                client
                    .write(
                        &collection,
                        &id,
                        json!({"kind": "patch", "set": set, "unset": unset}),
                        0
                    )
                    .map_err(err)?
            );
        }
        Command::Delete { collection, id } => {
            println!(
                "{}",
                client
                    .write(&collection, &id, json!({"kind": "delete"}), 0)
                    .map_err(err)?
            );
        }
        Command::Increment {
            collection,
            id,
            field,
            by,
        } => {
            println!(
                "{}",
                client
                    .write(
                        &collection,
                        &id,
                        json!({"kind": "increment", "field": field, "by": by}),
                        0
                    )
                    .map_err(err)?
            );
        }
        Command::Get { collection, id } => match client.get(&collection, &id).map_err(err)? {
            Some(v) => println!("{}", Value::Object(v)),
            None => return Ok(1),
        },
        Command::List { collection } => {
            for (id, v) in client.list(&collection).map_err(err)? {
                println!("{}", json!({"id": id, "value": v}));
            }
        }
        Command::Sync => {
            let r = client
                .sync()
                .map_err(|e| format!("sync could not finish: {e}"))?;
            // Done means an empty Outbox; re-issued Mutations the Server refused again wait.
            let left = client.status().map_err(err)?.pending;
            if left > 0 {
                return Err(format!(
                    "sync could not finish: {left} mutation(s) still pending after {} re-issue(s); if the server answered clock-skew, check this device's clock, then sync again",
                    r.reissued
                ));
            }
            println!(
                "synced: {} acknowledged, {} rejected, {} re-issued, {} pulled{}",
                r.acknowledged,
                r.rejected,
                r.reissued,
                r.pulled,
                if r.resynced { ", resynced" } else { "" }
            );
        }
        Command::Status { format } => {
            let s = client.status().map_err(err)?;
            match format {
                StatusFormat::Json => println!(
                    "{}",
                    json!({"client_id": client.client_id(), "pending": s.pending, "sent": s.sent, "rejected": s.rejected,
                        "last_sync": s.last_sync, "counters": s.counters.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<String, Value>>()})
                ),
                StatusFormat::Text => println!(
                    "pending {}, sent {}, rejected {}, last sync {:?}",
                    s.pending, s.sent, s.rejected, s.last_sync
                ),
            }
        }
        Command::Audit => {
            let r = client.audit().map_err(err)?;
            println!(
                "audit: {} bucket(s) repaired {:?}, {} record(s) fixed",
                r.repaired.len(),
                r.repaired,
                r.records_fixed
            );
        }
        Command::Schema {
            command: SchemaCommand::Put { collection, file },
        } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
            let doc = object(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            if doc["collection"] != collection.as_str() {
                return Err(format!(
                    "{}: the document is for collection {}, not {collection}",
                    file.display(),
                    doc["collection"]
                ));
            }
            let status = client.register_schema(&doc).map_err(err)?;
            println!(
                "{}",
                if status == 201 {
                    "registered"
                } else {
                    "already registered"
                }
            );
        }
    }
    Ok(0)
}
