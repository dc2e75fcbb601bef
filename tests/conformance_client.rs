//! `driftless conformance client`, run as a real child process against the reference client's
//! adapter (`driftless client adapter`).

use std::process::Command;

fn driftless() -> Command {
    Command::new(env!("CARGO_BIN_EXE_driftless"))
}

fn adapter() -> String {
    format!("{} client adapter", env!("CARGO_BIN_EXE_driftless"))
}

#[test]
fn the_reference_client_passes_every_case_through_its_adapter() {
    let out = driftless()
        .args([
            "conformance",
            "client",
            "--seed",
            "7",
            "--format",
            "json",
            "--adapter",
        ])
        .arg(adapter())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let cases = report["cases"].as_array().unwrap();
    assert!(cases.len() >= 15, "{} cases", cases.len());
    for c in cases {
        assert_eq!(c["outcome"], "pass", "{c}");
        assert!(c["id"].as_str().unwrap().starts_with("client."), "{c}");
    }
    assert_eq!(report["seed"], 7);
}

#[test]
fn an_adapter_that_cannot_start_errors_every_case_and_exits_2() {
    let out = driftless()
        .args([
            "conformance",
            "client",
            "--run",
            "client.outbox.*",
            "--adapter",
            "/nonexistent/adapter",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("errored"), "{stdout}");
    assert!(stdout.contains("cannot start the adapter"), "{stdout}");
}

#[test]
fn a_selection_of_no_case_is_a_usage_error() {
    let out = driftless()
        .args(["conformance", "client", "--run", "nothing.*", "--adapter"])
        .arg(adapter())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no case matches"), "{stderr}");
}

#[test]
fn list_json_names_cases_and_the_not_checkable_client_musts() {
    let out = driftless()
        .args(["conformance", "client", "--list", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["cases"].as_array().unwrap().len() >= 15);
    for n in doc["not_checkable"].as_array().unwrap() {
        assert!(
            n["requirement"].is_string() && n["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{n}"
        );
    }
}

#[cfg(not(feature = "client-fault-injection"))]
#[test]
fn without_the_feature_the_self_check_is_a_setup_error() {
    let out = driftless()
        .args(["conformance", "client", "--self-check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("client-fault-injection"));
}
