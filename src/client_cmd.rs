//! `driftless client`: the reference client from the command line. Writes work while the server
//! is down; `sync` pushes and pulls until done, and exits non-zero if it could not finish.
//!
//! Exit codes: 0 done; 1 an operating error (server unreachable, Token refused, schema refused,
//! store unreadable, a sync that could not finish; `get` of an absent Record); 2 a usage error
//! (bad arguments, or input no Server could accept, such as a write beyond its announced limits).

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use driftless_client::{Client, ClientError, Config, Event, Preset, RetryPolicy};
use serde_json::{json, Map, Value};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PresetArg {
    Interactive,
    Background,
    Metered,
    /// Exactly the server's announced backoff policy, with 30 attempts per sync (what the
    /// client conformance kit expects of an adapter).
    Announced,
}

/// How results are printed on stdout.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lines for a person.
    Text,
    /// One JSON document (or one JSON object per line for `list` and `dead-letters`).
    Json,
}

/// A base URL with its scheme, as `--server` needs it.
fn server_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| {
            format!("expected a URL like http://host:port or https://host, got {s:?}")
        })?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("expected a URL like http://host:port, got {s:?}"));
    }
    Ok(s.to_owned())
}

#[derive(clap::Args)]
#[command(
    after_help = "Exit codes: 0 done; 1 operating error (server unreachable, token or \
schema refused, store unreadable, sync unfinished, get of an absent record); 2 usage error (bad \
arguments, or a write no server could accept).

`driftless client adapter` (no other option) runs the client as a conformance-kit adapter: JSON \
lines on stdin and stdout, see spec/13-client-adapter.md."
)]
pub struct Args {
    /// The local store folder (created if missing; one Client per folder).
    #[arg(long)]
    store: PathBuf,
    /// The server's base URL, e.g. http://127.0.0.1:7878 or https://sync.example.
    #[arg(long, value_parser = server_url)]
    server: String,
    /// The bearer token.
    #[arg(long)]
    token: String,
    /// The space.
    #[arg(long)]
    space: String,
    /// PEM file of the only certificates to trust for https:// (a private CA); without it,
    /// the bundled Mozilla roots.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Retry schedule preset (never shorter than the server's announced policy).
    #[arg(long, value_enum, default_value = "interactive")]
    retry: PresetArg,
    /// Write progress events to stderr as JSON lines: {"event": "pushed", "acknowledged",
    /// "rejected"}, {"event": "pulled", "records", "through"}, {"event": "retrying",
    /// "failures", "delay_ms", "reason"}, {"event": "resync"}, {"event": "repaired", "bucket"}.
    #[arg(long)]
    progress: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    format: Format,
    /// Most mutations per push (the server's limits also apply).
    #[arg(long, default_value_t = 500)]
    batch_max: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Replace a record with a JSON object (JSON `-` reads it from stdin).
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
    /// Add BY (an integer, may be negative) to a counter field.
    Increment {
        collection: String,
        id: String,
        field: String,
        #[arg(allow_negative_numbers = true)]
        by: i64,
    },
    /// Add elements to an add-wins set field. Each ELEMENT is JSON; a word that is not JSON is
    /// a string.
    SetAdd {
        collection: String,
        id: String,
        field: String,
        #[arg(required = true)]
        elements: Vec<String>,
    },
    /// Remove elements from an add-wins set field (the ones this client has seen).
    SetRemove {
        collection: String,
        id: String,
        field: String,
        #[arg(required = true)]
        elements: Vec<String>,
    },
    /// Resolve a keep-both field to one JSON value, replacing the siblings this client has seen.
    Resolve {
        collection: String,
        id: String,
        field: String,
        json: String,
    },
    /// Print a record's JSON (with pending writes applied); exit 1 if absent.
    Get { collection: String, id: String },
    /// Print every record of a collection, one JSON object per line.
    List { collection: String },
    /// Push and pull until the outbox is empty and the client is caught up; prints one line per
    /// write the server rejected in this sync.
    Sync,
    /// Pending, sent and rejected counts, the last sync and telemetry counters.
    Status,
    /// Compare bucket checksums with the server and repair drifted buckets.
    Audit,
    /// List the rejected writes: Op ID, when, record, Effect, and the Problem.
    DeadLetters,
    /// Write a rejected write's Effect again, as a new write (after fixing what made it fail).
    RetryDead { op_id: String },
    /// Remove a rejected write from the dead-letter list for good.
    DiscardDead { op_id: String },
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

/// Why the command failed: a usage error (exit 2) or an operating error (exit 1).
#[derive(Debug)]
pub enum Failure {
    /// Bad arguments or input; exit code 2.
    Usage(String),
    /// Anything else: the server, the network, the store; exit code 1.
    Operating(String),
}

impl Failure {
    /// The process exit code.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Operating(_) => 1,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Operating(m) => f.write_str(m),
        }
    }
}

fn usage(m: impl Into<String>) -> Failure {
    Failure::Usage(m.into())
}

/// The JSON text of an argument; `-` reads it from stdin (values beyond the argument-length limit
/// of the system, about 128 KiB, can only come that way).
fn json_arg(text: &str) -> Result<Value, Failure> {
    let owned;
    let text = if text == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Failure::Operating(format!("cannot read stdin: {e}")))?;
        owned = s;
        owned.as_str()
    } else {
        text
    };
    serde_json::from_str(text).map_err(|e| usage(format!("not JSON: {e}")))
}

fn object(text: &str) -> Result<Map<String, Value>, Failure> {
    match json_arg(text)? {
        Value::Object(m) => Ok(m),
        _ => Err(usage("expected a JSON object")),
    }
}

/// A set element: JSON, or else the word as a string.
fn element(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms after the epoch"))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn event_json(e: &Event) -> Value {
    match e {
        Event::Pushed {
            acknowledged,
            rejected,
        } => json!({"event": "pushed", "acknowledged": acknowledged, "rejected": rejected}),
        Event::Pulled { records, through } => {
            json!({"event": "pulled", "records": records, "through": through})
        }
        Event::Retrying {
            failures,
            delay_ms,
            reason,
        } => {
            json!({"event": "retrying", "failures": failures, "delay_ms": delay_ms, "reason": reason})
        }
        Event::Resync => json!({"event": "resync"}),
        Event::Repaired { bucket } => json!({"event": "repaired", "bucket": bucket}),
    }
}

/// The short name of a Problem type URI (`urn:driftless:problem:invalid-json` → `invalid-json`).
fn problem_code(problem: &Value) -> &str {
    let t = problem["type"].as_str().unwrap_or("unknown");
    t.rsplit(':').next().unwrap_or(t)
}

/// One line about a dead letter, for a person.
fn dead_line(op_id: &str, mutation: &Value, problem: &Value, at_ms: Option<u64>) -> String {
    let mut effect = mutation["effect"].to_string();
    if effect.len() > 80 {
        let mut cut = 77;
        while !effect.is_char_boundary(cut) {
            cut -= 1;
        }
        effect.truncate(cut);
        effect.push_str("...");
    }
    format!(
        "{op_id} {} {}/{} {}: {} effect {effect}",
        at_ms.map_or_else(|| "(time unknown)".to_owned(), rfc3339),
        mutation["collection"].as_str().unwrap_or("?"),
        mutation["record_id"].as_str().unwrap_or("?"),
        problem_code(problem),
        problem["detail"]
            .as_str()
            .or(problem["title"].as_str())
            .unwrap_or("no detail"),
    )
}

/// Runs the command; `Ok(exit code)` or the failure to print in one line.
pub fn main(args: Args) -> Result<u8, Failure> {
    let retry = RetryPolicy::preset(match args.retry {
        PresetArg::Interactive => Preset::Interactive,
        PresetArg::Background => Preset::Background,
        PresetArg::Metered => Preset::Metered,
        PresetArg::Announced => Preset::Announced,
    });
    let server = args.server.clone();
    let cfg = Config {
        server: args.server,
        token: args.token,
        space: args.space,
        retry,
        batch_max: args.batch_max.max(1),
        timeout: Duration::from_secs(60),
    };
    // Errors that concern the Server name its URL; bad input is a usage error.
    let err = |e: ClientError| match e {
        ClientError::Invalid(m) => Failure::Usage(m),
        e @ ClientError::Store(_) => Failure::Operating(e.to_string()),
        e => Failure::Operating(format!("{e} (server {server})")),
    };
    let mut client = Client::open(&args.store, cfg).map_err(err)?;
    if let Some(path) = &args.ca_cert {
        let pem = std::fs::read(path)
            .map_err(|e| Failure::Operating(format!("{}: cannot read: {e}", path.display())))?;
        client
            .trust_only_pem(&pem)
            .map_err(|e| usage(format!("{}: {e}", path.display())))?;
    }
    if args.progress {
        client.on_event(|e: &Event| eprintln!("{}", event_json(e)));
    }
    let json_out = args.format == Format::Json;
    let wrote = |op: String| {
        if json_out {
            outln!("{}", json!({ "op_id": op }));
        } else {
            outln!("{op}");
        }
    };
    let is_add = matches!(args.command, Command::SetAdd { .. });
    match args.command {
        Command::Put {
            collection,
            id,
            json,
            priority,
        } => {
            let value = object(&json)?;
            let effect = json!({"kind": "put", "value": value});
            wrote(
                client
                    .write(&collection, &id, effect, priority)
                    .map_err(err)?,
            );
        }
        Command::Patch {
            collection,
            id,
            json,
            unset,
        } => {
            let set = object(&json)?;
            let effect = json!({"kind": "patch", "set": set, "unset": unset});
            wrote(client.write(&collection, &id, effect, 0).map_err(err)?);
        }
        Command::Delete { collection, id } => {
            wrote(
                client
                    .write(&collection, &id, json!({"kind": "delete"}), 0)
                    .map_err(err)?,
            );
        }
        Command::Increment {
            collection,
            id,
            field,
            by,
        } => {
            let effect = json!({"kind": "increment", "field": field, "by": by});
            wrote(client.write(&collection, &id, effect, 0).map_err(err)?);
        }
        Command::SetAdd {
            collection,
            id,
            field,
            elements,
        }
        | Command::SetRemove {
            collection,
            id,
            field,
            elements,
        } => {
            let kind = if is_add { "set_add" } else { "set_remove" };
            let elements: Vec<Value> = elements.iter().map(|e| element(e)).collect();
            let effect = json!({"kind": kind, "field": field, "elements": elements});
            wrote(client.write(&collection, &id, effect, 0).map_err(err)?);
        }
        Command::Resolve {
            collection,
            id,
            field,
            json,
        } => {
            let value = json_arg(&json)?;
            let effect = json!({"kind": "resolve", "field": field, "value": value});
            wrote(client.write(&collection, &id, effect, 0).map_err(err)?);
        }
        Command::Get { collection, id } => match client.get(&collection, &id).map_err(err)? {
            Some(v) => outln!("{}", Value::Object(v)),
            None => {
                eprintln!("driftless: {collection}/{id} is absent or deleted");
                return Ok(1);
            }
        },
        Command::List { collection } => {
            for (id, v) in client.list(&collection).map_err(err)? {
                outln!("{}", json!({"id": id, "value": v}));
            }
        }
        Command::Sync => {
            let r = client.sync().map_err(|e| match err(e) {
                Failure::Operating(m) => Failure::Operating(format!("sync could not finish: {m}")),
                usage => usage,
            })?;
            let dead = client.dead_letter_list().map_err(err)?;
            let new: Vec<_> = dead
                .iter()
                .filter(|d| r.dead_lettered.contains(&d.op_id))
                .collect();
            // Done means an empty Outbox; re-issued Mutations the Server refused again wait.
            let left = client.status().map_err(err)?.pending;
            if json_out {
                outln!(
                    "{}",
                    json!({"acknowledged": r.acknowledged, "rejected": r.rejected, "reissued": r.reissued,
                        "pulled": r.pulled, "resynced": r.resynced, "pending": left,
                        "dead_lettered": new.iter().map(|d| json!({"op_id": d.op_id, "collection": d.mutation["collection"],
                            "record_id": d.mutation["record_id"], "problem": d.problem})).collect::<Vec<_>>()})
                );
            } else {
                for d in &new {
                    outln!(
                        "rejected: {}",
                        dead_line(&d.op_id, &d.mutation, &d.problem, d.at_ms)
                    );
                }
            }
            if left > 0 {
                return Err(Failure::Operating(format!(
                    "sync could not finish: {left} mutation(s) still pending after {} re-issue(s); if the server answered clock-skew, check this device's clock, then sync again",
                    r.reissued
                )));
            }
            if !json_out {
                outln!(
                    "synced: {} acknowledged, {} rejected, {} re-issued, {} pulled{}",
                    r.acknowledged,
                    r.rejected,
                    r.reissued,
                    r.pulled,
                    if r.resynced { ", resynced" } else { "" }
                );
                if r.rejected > 0 {
                    outln!(
                        "see `driftless client ... dead-letters`; retry-dead or discard-dead each"
                    );
                }
            }
        }
        Command::Status => {
            let s = client.status().map_err(err)?;
            if json_out {
                outln!(
                    "{}",
                    json!({"client_id": client.client_id(), "pending": s.pending, "sent": s.sent, "rejected": s.rejected,
                        "last_sync": s.last_sync.map(rfc3339), "last_sync_ms": s.last_sync,
                        "counters": s.counters.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<String, Value>>()})
                );
            } else {
                outln!("client {}", client.client_id());
                outln!(
                    "{} waiting to be sent{}",
                    plural(s.pending, "write", "writes"),
                    if s.sent > 0 {
                        format!(" ({} sent before, fate unknown)", s.sent)
                    } else {
                        String::new()
                    }
                );
                outln!(
                    "{} rejected{}",
                    plural(s.rejected, "write", "writes"),
                    if s.rejected > 0 {
                        " (see dead-letters)"
                    } else {
                        ""
                    }
                );
                outln!(
                    "last complete sync: {}",
                    s.last_sync.map_or_else(|| "never".to_owned(), rfc3339)
                );
                if !s.counters.is_empty() {
                    let counters: Vec<String> =
                        s.counters.iter().map(|(k, v)| format!("{k} {v}")).collect();
                    outln!("counters: {}", counters.join(", "));
                }
            }
        }
        Command::Audit => {
            let r = client.audit().map_err(err)?;
            if json_out {
                outln!(
                    "{}",
                    json!({"buckets_compared": r.buckets_compared, "through": r.through,
                        "repaired": r.repaired, "records_fixed": r.records_fixed})
                );
            } else if r.repaired.is_empty() {
                outln!(
                    "audit: compared {} bucket checksums with the server at position {}: all match, nothing repaired",
                    r.buckets_compared, r.through
                );
            } else {
                let buckets: Vec<String> = r.repaired.iter().map(u8::to_string).collect();
                outln!(
                    "audit: compared {} bucket checksums with the server at position {}: {} differed (bucket {}), repaired by fetching them again; {} replaced or removed",
                    r.buckets_compared,
                    r.through,
                    r.repaired.len(),
                    buckets.join(", "),
                    plural(r.records_fixed, "record", "records")
                );
            }
        }
        Command::DeadLetters => {
            let dead = client.dead_letter_list().map_err(err)?;
            for d in &dead {
                if json_out {
                    outln!(
                        "{}",
                        json!({"op_id": d.op_id, "at": d.at_ms.map(rfc3339), "collection": d.mutation["collection"],
                            "record_id": d.mutation["record_id"], "effect": d.mutation["effect"], "problem": d.problem})
                    );
                } else {
                    outln!("{}", dead_line(&d.op_id, &d.mutation, &d.problem, d.at_ms));
                }
            }
            if dead.is_empty() && !json_out {
                outln!("no rejected writes");
            }
        }
        Command::RetryDead { op_id } => {
            let new = client.retry_dead(&op_id).map_err(err)?;
            if json_out {
                outln!("{}", json!({"op_id": new, "replaces": op_id}));
            } else {
                outln!("{new}");
            }
        }
        Command::DiscardDead { op_id } => {
            client.discard_dead(&op_id).map_err(err)?;
            if json_out {
                outln!("{}", json!({ "discarded": op_id }));
            } else {
                outln!("discarded {op_id}");
            }
        }
        Command::Schema {
            command: SchemaCommand::Put { collection, file },
        } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Failure::Operating(format!("{}: cannot read: {e}", file.display())))?;
            let doc = serde_json::from_str::<Value>(&text)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| usage(format!("{}: not a JSON object", file.display())))?;
            if doc["collection"] != collection.as_str() {
                return Err(usage(format!(
                    "{}: the document is for collection {}, not {collection}",
                    file.display(),
                    doc["collection"]
                )));
            }
            let status = client.register_schema(&doc).map_err(|e| match err(e) {
                Failure::Operating(m) => Failure::Operating(format!("{}: {m}", file.display())),
                u => u,
            })?;
            let done = if status == 201 {
                "registered"
            } else {
                "already registered"
            };
            if json_out {
                outln!("{}", json!({ "schema": done, "status": status }));
            } else {
                outln!("{done}");
            }
        }
    }
    Ok(0)
}
