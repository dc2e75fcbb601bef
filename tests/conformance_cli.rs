//! `driftless conformance` as a child process: the embedded run, a third-party style run with
//! --server and --token-cmd, exit codes, selection and case metadata.

mod common;

use std::collections::BTreeMap;

use common::server::{driftless, ServerProcess};
use serde_json::Value;

fn json_report(args: &[&str]) -> (i32, Value) {
    let out = driftless()
        .arg("conformance")
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), report)
}

#[test]
fn embedded_reference_server_passes_every_case() {
    let (code, report) = json_report(&["--seed", "7"]);
    assert_eq!(report["summary"]["failed"], 0, "{report:#}");
    assert_eq!(report["summary"]["errored"], 0, "{report:#}");
    assert_eq!(code, 0);
    assert_eq!(report["seed"], 7);
    assert_eq!(report["protocol_version"], "1.0");
    let cases = report["cases"].as_array().unwrap();
    let all = driftless_conformance::cases::all().len();
    assert_eq!(cases.len(), all, "the run reports every case of the suite");
    assert_eq!(report["summary"]["passed"], all, "{report:#}");
    for c in cases {
        assert!(
            c["id"].is_string()
                && c["requirements"].is_array()
                && c["level"].is_string()
                && c["duration_ms"].is_u64()
        );
    }
}

#[test]
fn a_server_of_our_own_with_a_token_command_passes() {
    let dir = tempfile::tempdir().unwrap();
    // The self-check's rate limit, so that limits.retry-after sees a 429 and runs.
    let server = ServerProcess::start(dir.path(), &["--rate-limit", "200"]);
    let token_cmd = format!(
        "{} token --data {} --user {{user}} --space {{space}} --scope {{scope}} --ttl {{ttl}}",
        env!("CARGO_BIN_EXE_driftless"),
        dir.path().display()
    );
    let (code, report) = json_report(&["--server", &server.base, "--token-cmd", &token_cmd]);
    assert_eq!(code, 0, "{report:#}");
    let all = driftless_conformance::cases::all().len();
    assert_eq!(report["cases"].as_array().unwrap().len(), all);
    assert_eq!(report["summary"]["passed"], all, "{report:#}");
}

#[test]
fn a_failing_token_command_errors_the_cases_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let (code, report) = json_report(&[
        "--server",
        &server.base,
        "--token-cmd",
        "exit 3",
        "--run",
        "auth.read-cannot-write",
    ]);
    assert_eq!(code, 2);
    assert_eq!(report["summary"]["errored"], 1);
    assert!(report["cases"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("token command failed"));
}

/// A token command that signs with another secret (a mistyped --data) stops the run before the
/// cases with one line, instead of failing every MUST case as if the server were broken.
#[test]
fn tokens_the_server_refuses_stop_the_run_with_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let token_cmd = format!(
        "{} token --init --data {} --user {{user}} --space {{space}} --scope {{scope}} --ttl {{ttl}}",
        env!("CARGO_BIN_EXE_driftless"),
        other.path().display()
    );
    let out = driftless()
        .args([
            "conformance",
            "--server",
            &server.base,
            "--token-cmd",
            &token_cmd,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("refuses the token command's Tokens (401"),
        "{stderr}"
    );
    assert!(String::from_utf8(out.stdout).unwrap().trim().is_empty());
}

#[test]
fn setup_and_usage_errors_are_one_line_and_exit_2() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    for args in [
        vec!["--run", "no-such-case*"],
        vec!["--server", dead.as_str(), "--token-cmd", "true"],
    ] {
        let out = driftless().arg("conformance").args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[test]
fn an_unknown_flag_gets_clap_s_own_message_and_exit_2() {
    let out = driftless()
        .args(["conformance", "--bogus-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.lines().next().unwrap().contains("--bogus-flag"),
        "{stderr}"
    );
    assert!(stderr.contains("Usage: driftless conformance"), "{stderr}");
}

#[test]
fn list_prints_case_objects_without_outcomes_and_the_not_checkable_musts() {
    let out = driftless()
        .args([
            "conformance",
            "--list",
            "--format",
            "json",
            "--run",
            "pull.*",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    let listed: Vec<&str> = doc["not_checkable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["requirement"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = driftless_conformance::NOT_CHECKABLE
        .iter()
        .map(|(r, _)| *r)
        .collect();
    assert_eq!(listed, expected);
    for c in cases {
        assert!(c["id"].as_str().unwrap().starts_with("pull."));
        assert!(c.get("outcome").is_none());
    }
}

/// A case of either suite, as far as its citations go.
struct Cited {
    id: &'static str,
    requirements: &'static [&'static str],
    level: driftless_conformance::Level,
}

/// Every case (server suite and client kit) cites requirement IDs the spec defines, and its level is that of the strongest
/// requirement it cites.
#[test]
fn cases_cite_defined_requirements_at_their_level() {
    let levels: BTreeMap<String, &str> = common::requirements()
        .into_iter()
        .map(|r| {
            let kw = common::keywords(&r.text);
            (r.id, common::level(kw.first().copied().unwrap_or("MAY")))
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    let server = driftless_conformance::cases::all();
    let client = driftless_conformance::client_kit::all();
    let all = server
        .iter()
        .map(|c| (c.id, c.requirements, c.level))
        .chain(client.iter().map(|c| (c.id, c.requirements, c.level)));
    for (id, requirements, level) in all {
        let case = Cited {
            id,
            requirements,
            level,
        };
        assert!(ids.insert(case.id), "case {} is defined twice", case.id);
        let mut strongest = "MAY";
        for req in case.requirements {
            let level = levels.get(*req).unwrap_or_else(|| {
                panic!("{} cites {req}, which the spec does not define", case.id)
            });
            if *level == "MUST" || (*level == "SHOULD" && strongest == "MAY") {
                strongest = level;
            }
        }
        assert_eq!(
            format!("{:?}", case.level).to_uppercase(),
            strongest,
            "{}",
            case.id
        );
    }
}

/// Every server-side MUST of the spec has a case, or is listed as not checkable over HTTP with a
/// reason. Client duties (requirements whose subject is a Client) are the reference client's to
/// test. This fails when the spec gains a MUST without a case.
#[test]
fn every_server_must_has_a_case_or_a_stated_reason() {
    let covered: std::collections::BTreeSet<&str> = driftless_conformance::cases::all()
        .iter()
        .flat_map(|c| c.requirements.iter().copied())
        .collect();
    let exempt: BTreeMap<&str, &str> = driftless_conformance::NOT_CHECKABLE
        .iter()
        .copied()
        .collect();
    let mut missing = Vec::new();
    for r in common::requirements() {
        let is_must = common::keywords(&r.text)
            .iter()
            .any(|k| common::level(k) == "MUST");
        let client_duty = r.text.starts_with("A Client") || r.text.starts_with("Clients");
        if !is_must || client_duty {
            assert!(
                !exempt.contains_key(r.id.as_str()),
                "{} is exempted but is not a server MUST",
                r.id
            );
            continue;
        }
        match (covered.contains(r.id.as_str()), exempt.get(r.id.as_str())) {
            (true, Some(_)) => panic!("{} has a case and is also listed as not checkable", r.id),
            (false, None) => missing.push(format!("{}: {}", r.id, r.text)),
            (false, Some(reason)) => assert!(!reason.is_empty()),
            (true, None) => {}
        }
    }
    assert!(
        missing.is_empty(),
        "server MUSTs without a case:\n{}",
        missing.join("\n")
    );
}

/// Every MUST of the spec is covered by a server case, a client-kit case, or a not-checkable
/// entry with a reason (the server suite's or the client kit's), and nothing else; prints the
/// three counts. This fails when the spec gains a MUST without a case.
#[test]
fn every_must_is_covered_by_a_server_case_a_client_case_or_a_reason() {
    use std::collections::BTreeSet;
    let server: BTreeSet<&str> = driftless_conformance::cases::all()
        .iter()
        .flat_map(|c| c.requirements.iter().copied())
        .collect();
    let client: BTreeSet<&str> = driftless_conformance::client_kit::all()
        .iter()
        .flat_map(|c| c.requirements.iter().copied())
        .collect();
    let reasons: BTreeMap<&str, &str> = driftless_conformance::NOT_CHECKABLE
        .iter()
        .chain(driftless_conformance::client_kit::NOT_CHECKABLE)
        .copied()
        .collect();
    let musts: BTreeSet<String> = common::requirements()
        .into_iter()
        .filter(|r| {
            common::keywords(&r.text)
                .iter()
                .any(|k| common::level(k) == "MUST")
        })
        .map(|r| r.id)
        .collect();
    let (mut by_server, mut by_client, mut by_reason, mut missing) = (0, 0, 0, Vec::new());
    for id in &musts {
        let id = id.as_str();
        if server.contains(id) {
            by_server += 1;
        } else if client.contains(id) {
            by_client += 1;
        } else if let Some(why) = reasons.get(id) {
            assert!(!why.trim().is_empty(), "{id} has an empty reason");
            by_reason += 1;
        } else {
            missing.push(id);
        }
        if reasons.contains_key(id) {
            assert!(
                !server.contains(id) && !client.contains(id),
                "{id} has a case and is also listed as not checkable"
            );
        }
    }
    for id in reasons.keys() {
        assert!(
            musts.contains(*id),
            "{id} is listed as not checkable but is not a MUST"
        );
    }
    println!(
        "MUSTs: {} covered by server cases, {} by client cases, {} not checkable with a reason (of {})",
        by_server,
        by_client,
        by_reason,
        musts.len()
    );
    assert!(
        missing.is_empty(),
        "MUSTs without a case or a reason: {missing:?}"
    );
}
