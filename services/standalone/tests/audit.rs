//! The audit service runs in the stack: the services' events become a signed chain per team
//! in `audit.db`, which the team's owner queries and exports over gRPC and HTTP and verifies
//! with the printed public key, while the NDJSON copy keeps being written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{WAIT, accept_setup_token, audit_logged, login, start, stop};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::transport::Channel;
use tucdesk_audit::convert::{checkpoint_from_proto, entry_from_proto};
use tucdesk_crypto::Identity;
use tucdesk_crypto::audit::verify_chain;
use tucdesk_proto::v1 as pb;
use tucdesk_proto::v1::audit_service_client::AuditServiceClient;
use tucdesk_standalone::config::DEFAULT_ADMIN_EMAIL;

fn req<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stacks_events_become_a_signed_chain_the_owner_can_export_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let stack = start(&data).await;
    let first = stack.first_start().expect("first start").clone();
    accept_setup_token(&stack, first.setup_token.expose()).await;
    let owner = login(&stack, DEFAULT_ADMIN_EMAIL, Identity::generate().unwrap()).await;
    assert!(
        audit_logged(&stack, "auth.login").await,
        "the NDJSON copy is kept"
    );
    let key = stack.audit().key();
    assert!(stack.summary().contains(&key.public_key_base64url()));

    let channel = Channel::from_shared(stack.urls().audit.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AuditServiceClient::new(channel);
    let query = || async {
        AuditServiceClient::new(
            Channel::from_shared(stack.urls().audit.clone())
                .unwrap()
                .connect()
                .await
                .unwrap(),
        )
        .query(req(
            pb::QueryAuditRequest {
                oldest_first: true,
                ..Default::default()
            },
            &owner.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .entries
    };
    assert!(
        tucdesk_testkit::eventually(WAIT, || async {
            query()
                .await
                .iter()
                .any(|e| e.event.as_ref().is_some_and(|e| e.action == "auth.login"))
        })
        .await,
        "the owner's login reaches the signed log"
    );
    let entries = query().await;
    assert!(
        entries
            .iter()
            .all(|e| e.event.as_ref().unwrap().team_id == owner.team_id)
    );

    let mut stream = client
        .export(req(pb::ExportAuditRequest::default(), &owner.access_token))
        .await
        .unwrap()
        .into_inner();
    let (mut chain, mut checkpoints) = (Vec::new(), Vec::new());
    while let Some(item) = stream.message().await.unwrap() {
        match item.item.unwrap() {
            pb::export_item::Item::Entry(e) => chain.push(entry_from_proto(&e).unwrap()),
            pb::export_item::Item::Checkpoint(c) => {
                checkpoints.push(checkpoint_from_proto(&c).unwrap())
            }
        }
    }
    verify_chain(&chain, &key.verifying_key()).unwrap();
    let last = checkpoints
        .last()
        .expect("the export ends with a checkpoint");
    last.verify(&key.verifying_key()).unwrap();
    assert_eq!(last.checkpoint.tree_size, chain.len() as u64);

    // The HTTP export serves the same log as a file `tucdesk audit verify` accepts as it is.
    assert!(
        stack
            .summary()
            .contains(&format!("{}/v1/audit/export", stack.urls().audit_http))
    );
    let (status, body) = http_export(stack.addresses().audit_http, &owner.access_token).await;
    assert_eq!(status, 200);
    let summary = tucdesk_crypto::audit::export::verify_export(
        || Ok(std::io::Cursor::new(body.clone())),
        &key.verifying_key(),
    )
    .unwrap();
    assert_eq!(summary.team_id, owner.team_id);
    assert!(summary.entries >= chain.len() as u64);
    stop(stack).await;
}

/// `GET /v1/audit/export` over HTTP/1.0 (the body ends when the connection closes).
async fn http_export(addr: std::net::SocketAddr, token: &str) -> (u16, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /v1/audit/export HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, raw[split + 4..].to_vec())
}
