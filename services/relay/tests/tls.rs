//! The WebSocket relay over TLS (rustls), and the rule that without TLS it listens on loopback
//! only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use tucdesk_proto::v1::relay_control::Kind;
use tucdesk_proto::v1::{RelayControl, Side};
use tucdesk_testkit::relay_node::{TestRelay, say_hello, test_config};
use tucdesk_testkit::{Backend, TestAuth};

/// A throwaway self-signed certificate for `localhost`, made with the openssl CLI.
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args([
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        // An end-entity certificate (rustls refuses a CA certificate serving as one).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl must be installed");
    assert!(status.success());
    (cert, key)
}

async fn wss_join(
    relay: &TestRelay,
    cert: &std::path::Path,
    session_id: &str,
    side: Side,
    ticket: &str,
) -> (
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    RelayControl,
) {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(der.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(relay.ws_addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let url = format!(
        "wss://localhost:{}/v1/pipe/{session_id}",
        relay.ws_addr.port()
    );
    let (mut socket, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    let control = say_hello(&mut socket, session_id, side, ticket)
        .await
        .unwrap();
    (socket, control)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_pair_and_forward_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let acceptor = tucdesk_relay::http::tls_acceptor(&cert, &key).unwrap();
    let auth = TestAuth::start(Backend::Embedded).await.unwrap();
    let owner = auth.new_team("owner@example.com").await.unwrap();
    let mut config = test_config("relay-tls");
    config.tls_cert = Some(cert.clone());
    config.tls_key = Some(key.clone());
    let relay = TestRelay::start_with_tls(
        &auth,
        Arc::new(tucdesk_svc::bus::MemoryBus::new()),
        config,
        Some(acceptor),
    )
    .await
    .unwrap();
    assert!(relay.relay.ws_url().starts_with("wss://"));
    let session_id = uuid::Uuid::new_v4().to_string();
    let agent = tucdesk_crypto::Identity::generate().unwrap().agent_id();
    let tickets = auth
        .mint_session(&owner, &agent, &session_id, "relay-tls", 0)
        .await
        .unwrap();
    let (mut operator, first) = wss_join(
        &relay,
        &cert,
        &session_id,
        Side::Operator,
        &tickets.operator_relay_ticket,
    )
    .await;
    assert!(matches!(first.kind, Some(Kind::Waiting(_))));
    let (mut agent_side, second) = wss_join(
        &relay,
        &cert,
        &session_id,
        Side::Agent,
        &tickets.agent_relay_ticket,
    )
    .await;
    assert!(matches!(second.kind, Some(Kind::Paired(_))));
    let _paired = operator.next().await.unwrap().unwrap();
    operator
        .send(Message::Binary(vec![42; 1000].into()))
        .await
        .unwrap();
    let got = agent_side.next().await.unwrap().unwrap();
    assert!(matches!(got, Message::Binary(b) if b.as_ref() == [42; 1000]));
    // Plain HTTP on the TLS port gets nowhere.
    let plain =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/pipe/{session_id}", relay.ws_addr))
            .await;
    assert!(plain.is_err());
}

#[test]
fn without_tls_the_relay_listens_on_loopback_only() {
    let mut config = test_config("relay-public");
    config.ws_addr = "0.0.0.0:7421".parse().unwrap();
    let err = tucdesk_relay::check_config(&config).unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
    config.ws_addr = "127.0.0.1:7421".parse().unwrap();
    assert!(tucdesk_relay::check_config(&config).is_ok());
    config.node_id = "bad.node>id".into();
    assert!(tucdesk_relay::check_config(&config).is_err());
}
