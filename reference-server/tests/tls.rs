//! HTTPS with `--tls-cert/--tls-key`: a real TLS handshake on 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use driftless_server::faults::Faults;
use driftless_server::service::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn discovery_is_served_over_tls_and_plain_http_gets_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let acceptor = driftless_server::tls_acceptor(&cert_path, &key_path).unwrap();
    let app = driftless_server::open(
        &dir.path().join("data"),
        Config::default(),
        Faults::default(),
    )
    .unwrap();
    let rt = rt();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(driftless_server::run_tls(
        app,
        listener,
        Some(acceptor),
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(3600),
        Duration::from_secs(5),
    ));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let response = rt.block_on(async {
        // A plain-HTTP client first: the handshake fails for it, and the server keeps serving.
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"GET /.well-known/driftless HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = plain.read_to_end(&mut buf).await;
        // Whatever the server sends (a TLS alert, or nothing), it is not an HTTP answer.
        assert!(
            !String::from_utf8_lossy(&buf).contains("HTTP/"),
            "plain HTTP got an HTTP answer: {:?}",
            String::from_utf8_lossy(&buf)
        );

        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(
            b"GET /.well-known/driftless HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        tls.read_to_end(&mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    });
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.contains("\"protocol_versions\":[\"1.0\"]"),
        "{response}"
    );
    let _ = stop.send(());
    rt.shutdown_timeout(Duration::from_secs(5));
}

#[test]
fn a_missing_certificate_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let Err(err) =
        driftless_server::tls_acceptor(&dir.path().join("nope.pem"), &dir.path().join("nope.key"))
    else {
        panic!("a missing certificate was accepted");
    };
    assert!(
        err.to_string()
            .starts_with("cannot load TLS certificate from"),
        "{err}"
    );
}
