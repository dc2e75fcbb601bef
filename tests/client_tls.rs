//! HTTPS end to end (fault 3 of issue 11): `driftless serve --tls-cert/--tls-key` with a
//! certificate from a CA generated here; the client and the conformance suite trust it through
//! `--ca-cert` and refuse it without.

mod common;

use std::path::Path;

use common::server::{client_cli, driftless, token, ServerProcess};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// Writes `ca.pem`, `cert.pem` and `key.pem` into `dir`: a CA, and a certificate it signed for
/// 127.0.0.1 and localhost.
fn private_ca(dir: &Path) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), leaf_cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
}

fn tls_server(dir: &Path) -> ServerProcess {
    private_ca(dir);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let server = ServerProcess::start(
        &dir.join("server"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(server.base.starts_with("https://"), "{}", server.base);
    server
}

#[test]
fn the_client_syncs_over_https_with_a_private_ca_and_refuses_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = tls_server(dir.path());
    let t = token(&dir.path().join("server"), "ada", "demo", "write");
    let ca = dir.path().join("ca.pem");
    let store = dir.path().join("c");
    let with_ca = |args: &[&str]| {
        client_cli(&store, &server.base, &t, "demo")
            .arg("--ca-cert")
            .arg(&ca)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(with_ca(&["put", "notes", "n1", r#"{"v":1}"#])
        .status
        .success());
    let out = with_ca(&["sync"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 acknowledged"));

    // Without --ca-cert the bundled public roots do not know this CA: an operating error.
    let out = client_cli(&dir.path().join("c2"), &server.base, &t, "demo")
        .args(["--retry", "interactive", "audit"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    assert!(
        stderr.contains("cannot connect"),
        "refused at once, not retried: {stderr}"
    );
}

#[test]
fn conformance_runs_against_an_https_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = tls_server(dir.path());
    let token_cmd = format!(
        "{} token --data {} --user {{user}} --space {{space}} --scope {{scope}} --ttl {{ttl}}",
        env!("CARGO_BIN_EXE_driftless"),
        dir.path().join("server").display()
    );
    let out = driftless()
        .args([
            "conformance",
            "--server",
            &server.base,
            "--token-cmd",
            &token_cmd,
        ])
        .arg("--ca-cert")
        .arg(dir.path().join("ca.pem"))
        .args(["--run", "discovery.*", "--run", "push.*", "--run", "auth.*"])
        .args(["--format", "json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert!(
        report["summary"]["passed"].as_u64().unwrap() >= 10,
        "{report:#}"
    );
}
