//! `driftless client adapter`: the reference client behind the adapter protocol of spec chapter 13
//! (informative), so that the client conformance kit can drive it as it drives any other Client:
//! one JSON request per line on stdin, one JSON answer per line on stdout, in order.
//!
//! It exits 0 after `close` or at the end of stdin, and 1 if stdout cannot be written.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use driftless_client::{Client, ClientError, Config, Preset, RetryPolicy};
use driftless_protocol::adapter::{
    AdapterError, DeadLetter, DeadLettersResult, ErrorKind, GetResult, ListResult, Listed,
    OpenResult, Operation, Receipt, Request, Response, StatusResult, SyncMode, SyncResult,
    WriteResult,
};
use serde::Serialize;
use serde_json::{json, Value};

/// The command line of the adapter: no options; everything comes in the `open` request.
#[derive(clap::Parser)]
#[command(
    name = "driftless client adapter",
    about = "Run the reference client as a client-conformance adapter: JSON lines on stdin and \
stdout (spec/13-client-adapter.md). Try: driftless conformance client --adapter 'driftless client adapter'"
)]
struct AdapterArgs {
    /// Switch on one planted fault of the reference client (the client kit's self-check).
    /// Needs a build with the `client-fault-injection` feature.
    #[arg(long, value_name = "NAME")]
    fault: Option<String>,
    /// Print each planted fault with the requirement IDs it breaks, and exit.
    #[arg(long)]
    list_faults: bool,
}

/// Applies `--fault` and `--list-faults`; `Some(code)` when the adapter should exit.
#[cfg(feature = "client-fault-injection")]
fn faults(args: &AdapterArgs) -> Option<u8> {
    use driftless_client::faults;
    if args.list_faults {
        for (name, _, ids) in faults::ALL {
            println!("{name} {ids}");
        }
        return Some(0);
    }
    if let Some(name) = &args.fault {
        if let Err(e) = faults::switch_on(name) {
            eprintln!("driftless: {e}");
            return Some(2);
        }
    }
    None
}

#[cfg(not(feature = "client-fault-injection"))]
fn faults(args: &AdapterArgs) -> Option<u8> {
    if args.list_faults || args.fault.is_some() {
        eprintln!("driftless: this driftless was built without the client-fault-injection feature");
        return Some(2);
    }
    None
}

fn error(kind: ErrorKind, message: impl Into<String>) -> AdapterError {
    AdapterError {
        kind,
        message: message.into(),
    }
}

fn client_error(e: ClientError) -> AdapterError {
    match e {
        ClientError::Invalid(m) => error(ErrorKind::Invalid, m),
        e => error(ErrorKind::Failed, e.to_string()),
    }
}

fn result(v: impl Serialize) -> Result<Value, AdapterError> {
    serde_json::to_value(v).map_err(|e| error(ErrorKind::Failed, e.to_string()))
}

/// One adapter session: the Client once `open` succeeded.
#[derive(Default)]
struct Session {
    client: Option<Client>,
}

impl Session {
    fn client(&mut self) -> Result<&mut Client, AdapterError> {
        self.client
            .as_mut()
            .ok_or_else(|| error(ErrorKind::Invalid, "no client is open; send open first"))
    }

    /// Answers one request; `Ok(None)` for `close`'s empty result is `Some(json!({}))`.
    fn handle(&mut self, op: Operation) -> Result<Value, AdapterError> {
        match op {
            Operation::Open(o) => {
                if self.client.is_some() {
                    return Err(error(ErrorKind::Invalid, "a client is already open"));
                }
                // The adapter's own schedule is the shortest possible, so that the Client waits
                // exactly as the Server's announced policy prescribes ([RETRY-1]).
                let cfg = Config {
                    server: o.server,
                    token: o.token,
                    space: o.space,
                    retry: RetryPolicy {
                        attempts_per_sync: o.options.attempts_per_sync.unwrap_or(5),
                        ..RetryPolicy::preset(Preset::Announced)
                    },
                    batch_max: o.options.batch_max.unwrap_or(500).max(1) as usize,
                    timeout: Duration::from_millis(o.options.timeout_ms.unwrap_or(10_000)),
                };
                let client = Client::open(&PathBuf::from(o.store), cfg).map_err(client_error)?;
                let id = client.client_id().to_owned();
                self.client = Some(client);
                result(OpenResult { client_id: id })
            }
            Operation::Write(w) => {
                let effect = serde_json::to_value(&w.effect)
                    .map_err(|e| error(ErrorKind::Invalid, e.to_string()))?;
                let op_id = self
                    .client()?
                    .write(&w.collection, &w.record_id, effect, w.priority)
                    .map_err(client_error)?;
                result(WriteResult { op_id })
            }
            Operation::Update(u) => {
                let op_id = self
                    .client()?
                    .update(&u.collection, &u.record_id, |value| {
                        value.extend(u.set);
                    })
                    .map_err(client_error)?;
                result(WriteResult { op_id })
            }
            Operation::Sync(s) => {
                if s.mode == SyncMode::Step {
                    return Err(error(
                        ErrorKind::Unsupported,
                        "sync mode step is not supported",
                    ));
                }
                let report = self.client()?.sync().map_err(client_error)?;
                result(SyncResult {
                    done: true,
                    acknowledged: report.acknowledged as u64,
                    rejected: report.rejected as u64,
                })
            }
            Operation::Get(g) => {
                let value = self
                    .client()?
                    .get(&g.collection, &g.record_id)
                    .map_err(client_error)?;
                result(GetResult { value })
            }
            Operation::List(l) => {
                let records = self
                    .client()?
                    .list(&l.collection)
                    .map_err(client_error)?
                    .into_iter()
                    .map(|(id, value)| Listed { id, value })
                    .collect();
                result(ListResult { records })
            }
            Operation::Status(s) => {
                let client = self.client()?;
                let pending = client.status().map_err(client_error)?.pending as u64;
                let mut receipts = std::collections::BTreeMap::new();
                for op in s.op_ids {
                    if let Some((status, detail)) = client.receipt(&op).map_err(client_error)? {
                        receipts.insert(op, Receipt { status, detail });
                    }
                }
                result(StatusResult { pending, receipts })
            }
            Operation::DeadLetters(_) => {
                let dead_letters = self
                    .client()?
                    .dead_letter_list()
                    .map_err(client_error)?
                    .into_iter()
                    .map(|d| DeadLetter {
                        op_id: d.op_id,
                        mutation: d.mutation,
                        problem: d.problem,
                    })
                    .collect();
                result(DeadLettersResult { dead_letters })
            }
            Operation::Close(_) => {
                self.client = None;
                Ok(json!({}))
            }
        }
    }
}

/// The answer to one line of input, and whether it was `close`.
fn answer(session: &mut Session, line: &str) -> (Response, bool) {
    let request: Request = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => {
            let id = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v["id"].as_u64())
                .unwrap_or(0);
            let response = Response {
                id,
                ok: false,
                result: None,
                error: Some(error(ErrorKind::Invalid, format!("not a request: {e}"))),
            };
            return (response, false);
        }
    };
    let close = matches!(request.operation, Operation::Close(_));
    let response = match session.handle(request.operation) {
        Ok(v) => Response {
            id: request.id,
            ok: true,
            result: Some(v),
            error: None,
        },
        Err(e) => Response {
            id: request.id,
            ok: false,
            result: None,
            error: Some(e),
        },
    };
    (response, close)
}

/// Runs the adapter on stdin and stdout. `rest` are the arguments after `client adapter`.
pub fn main(rest: &[std::ffi::OsString]) -> std::process::ExitCode {
    use clap::Parser;
    let args = std::iter::once(std::ffi::OsString::from("driftless client adapter"))
        .chain(rest.iter().cloned());
    let args = match AdapterArgs::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return std::process::ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    if let Some(code) = faults(&args) {
        return std::process::ExitCode::from(code);
    }
    let mut session = Session::default();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let (response, close) = answer(&mut session, &line);
        let text = serde_json::to_string(&response).expect("a response serializes");
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            eprintln!("driftless: cannot write to stdout");
            return std::process::ExitCode::FAILURE;
        }
        if close {
            break;
        }
    }
    std::process::ExitCode::SUCCESS
}
