//! The client adapter protocol (spec chapter 13): its committed schemas against the types, the
//! chapter's example against the schemas, and `driftless client adapter` as a real child process
//! against the real server.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use common::server::{driftless, token, ServerProcess};
use common::{fences, root};
use driftless_protocol::adapter::{self, ADAPTER_SCHEMA_DIR};
use serde_json::{json, Value};

/// `DRIFTLESS_BLESS=1` writes the files instead of comparing them.
#[test]
fn committed_adapter_schemas_match_the_types() {
    let dir = root().join(ADAPTER_SCHEMA_DIR);
    let files = adapter::schema_files();
    if std::env::var_os("DRIFTLESS_BLESS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in &files {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }
    let stale: Vec<&str> = files
        .iter()
        .filter(|(name, text)| std::fs::read_to_string(dir.join(name)).ok().as_ref() != Some(text))
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(
        stale.is_empty(),
        "stale in {ADAPTER_SCHEMA_DIR}: {stale:?}; run DRIFTLESS_BLESS=1 cargo test --test client_adapter"
    );
    let on_disk = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(on_disk, files.len(), "extra files in {ADAPTER_SCHEMA_DIR}");
}

fn schema(name: &str) -> jsonschema::Validator {
    let path = root()
        .join(ADAPTER_SCHEMA_DIR)
        .join(format!("{name}.schema.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::validator_for(&v).unwrap()
}

/// Every line of the chapter's example is valid: a request by the schema of its `op`, an answer
/// by the response schema and its result by the schema of the request's result.
#[test]
fn the_chapter_example_validates_against_the_schemas() {
    let example: Vec<_> = fences()
        .into_iter()
        .filter(|f| f.info == "jsonl adapter")
        .collect();
    assert_eq!(example.len(), 1, "chapter 13 has one adapter example");
    let mut failures = Vec::new();
    let mut last_op = String::new();
    let mut lines = 0;
    for line in example[0].body.lines() {
        lines += 1;
        let (side, text) = line.split_at(2);
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{line}: {e}"));
        let mut check = |name: &str, v: &Value| {
            for e in schema(name).iter_errors(v) {
                failures.push(format!("{line}: {name}: {e}"));
            }
        };
        if side == "> " {
            last_op = v["op"].as_str().unwrap().to_owned();
            if last_op == "fly" {
                continue; // the example of an invalid request
            }
            check(&last_op.replace('_', "-"), &v);
            if let Err(e) = serde_json::from_value::<adapter::Request>(v.clone()) {
                failures.push(format!("{line}: does not deserialize: {e}"));
            }
        } else {
            check("response", &v);
            if v["ok"] == true {
                let result = match last_op.as_str() {
                    "update" => "write-result".to_owned(),
                    "close" => continue,
                    op => format!("{}-result", op.replace('_', "-")),
                };
                check(&result, &v["result"]);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(lines >= 10, "only {lines} lines");
}

struct Adapter {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    id: u64,
}

impl Adapter {
    fn start() -> Self {
        let mut child = driftless()
            .args(["client", "adapter"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
            id: 0,
        }
    }

    fn send_line(&mut self, line: &str) -> Value {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        let v: Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{answer:?}: {e}"));
        if let Some(e) = schema("response").iter_errors(&v).next() {
            panic!("{answer}: {e}");
        }
        v
    }

    fn call(&mut self, mut request: Value) -> Value {
        self.id += 1;
        request["id"] = json!(self.id);
        let v = self.send_line(&request.to_string());
        assert_eq!(v["id"], self.id, "{v}");
        v
    }
}

#[test]
fn the_reference_adapter_answers_every_operation_and_keeps_its_store_across_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let t = token(&data, "ada", "demo", "write");
    let server = ServerProcess::start(&data, &[]);
    let store = dir.path().join("c").display().to_string();
    let open =
        json!({"op": "open", "store": store, "server": server.base, "token": t, "space": "demo"});
    let mut a = Adapter::start();
    let before = a.call(json!({"op": "get", "collection": "notes", "record_id": "n1"}));
    assert_eq!(before["error"]["kind"], "invalid", "{before}");
    let opened = a.call(open.clone());
    let client_id = opened["result"]["client_id"].clone();
    assert!(client_id.is_string(), "{opened}");
    let w = a.call(
        json!({"op": "write", "collection": "notes", "record_id": "n1",
        "effect": {"kind": "put", "value": {"title": "a", "later": 1}}}),
    );
    let op = w["result"]["op_id"].as_str().unwrap().to_owned();
    // SIGKILL right after the answer: the write is durable, the Client ID the same.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let mut a = Adapter::start();
    assert_eq!(a.call(open)["result"]["client_id"], client_id);
    let status = a.call(json!({"op": "status", "op_ids": [op]}));
    assert_eq!(status["result"]["pending"], 1, "{status}");
    assert_eq!(status["result"]["receipts"][&op]["status"], "pending");
    let u = a.call(
        json!({"op": "update", "collection": "notes", "record_id": "n1", "set": {"title": "b"}}),
    );
    assert_eq!(u["ok"], true, "{u}");
    let synced = a.call(json!({"op": "sync"}));
    assert_eq!(synced["result"]["done"], true, "{synced}");
    let got = a.call(json!({"op": "get", "collection": "notes", "record_id": "n1"}));
    assert_eq!(got["result"]["value"], json!({"title": "b", "later": 1}));
    let listed = a.call(json!({"op": "list", "collection": "notes"}));
    assert_eq!(listed["result"]["records"][0]["id"], "n1", "{listed}");
    let bad = a.call(
        json!({"op": "write", "collection": "notes", "record_id": "n2",
        "effect": {"kind": "increment", "field": "n", "by": 1}}),
    );
    assert_eq!(bad["ok"], true, "{bad}");
    let step = a.call(json!({"op": "sync", "mode": "step"}));
    assert_eq!(step["error"]["kind"], "unsupported", "{step}");
    let dead = a.call(json!({"op": "dead_letters"}));
    assert_eq!(dead["result"]["dead_letters"], json!([]), "{dead}");
    assert_eq!(a.send_line("not json")["error"]["kind"], "invalid");
    let unknown = a.call(json!({"op": "fly"}));
    assert_eq!(unknown["error"]["kind"], "invalid", "{unknown}");
    assert_eq!(a.call(json!({"op": "close"}))["ok"], true);
    assert!(a.child.wait().unwrap().success());
}
