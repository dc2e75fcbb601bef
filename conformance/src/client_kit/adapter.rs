//! The adapter under test as a child process (spec chapter 13): one JSON request per line on its
//! stdin, one answer per line on its stdout, read by a thread so that a silent adapter times out
//! instead of hanging the kit. It can be killed with SIGKILL and started again.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use serde_json::{json, Value};

use crate::Verdict;

/// How long one answer may take (a `sync` may wait out a whole retry schedule).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// A running adapter.
pub struct Adapter {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    next_id: u64,
}

impl Adapter {
    /// Starts `command` (words split on whitespace: the program, then its arguments).
    pub fn start(command: &str) -> Result<Self, Verdict> {
        let mut words = command.split_whitespace();
        let program = words
            .next()
            .ok_or_else(|| Verdict::Error("--adapter is empty".into()))?;
        let mut child = Command::new(program)
            .args(words)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Verdict::Error(format!("cannot start the adapter {program:?}: {e}")))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            stdin,
            lines,
            next_id: 0,
        })
    }

    /// Sends one request (its `id` is set here) and returns the whole answer line as JSON.
    /// A broken protocol (no answer, not JSON, another `id`) is a failure of the adapter.
    pub fn call(&mut self, mut request: Value) -> Result<Value, Verdict> {
        self.next_id += 1;
        request["id"] = json!(self.next_id);
        let op = request["op"].as_str().unwrap_or("?").to_owned();
        writeln!(self.stdin, "{request}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| Verdict::Error(format!("adapter {op}: cannot write its stdin: {e}")))?;
        let line = match self.lines.recv_timeout(ANSWER_TIMEOUT) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => {
                return Err(Verdict::Error(format!(
                    "adapter {op}: no answer within {} s",
                    ANSWER_TIMEOUT.as_secs()
                )))
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Verdict::Error(format!(
                    "adapter {op}: it exited without answering"
                )))
            }
        };
        let answer: Value = serde_json::from_str(&line).map_err(|e| {
            Verdict::Error(format!("adapter {op}: answer is not JSON ({e}): {line}"))
        })?;
        if answer["id"] != json!(self.next_id) || !answer["ok"].is_boolean() {
            return Err(Verdict::Error(format!(
                "adapter {op}: answer without the request's id and ok: {line}"
            )));
        }
        Ok(answer)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Adapter {
    fn drop(&mut self) {
        self.kill();
    }
}
