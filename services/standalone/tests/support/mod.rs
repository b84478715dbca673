//! Shared by the standalone tests: starting a stack on port 0, logging in through the real
//! gRPC with a setup token and a device key, reading the interim audit log, plain HTTP GETs.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::transport::Channel;
use tucdesk_crypto::Identity;
use tucdesk_proto::v1::auth_service_client::AuthServiceClient;
use tucdesk_proto::v1::{
    AcceptInviteRequest, BeginDeviceBindingRequest, LoginRequest, login_response,
};
use tucdesk_standalone::{Standalone, StandaloneConfig};
use tucdesk_testkit::Operator;
use tucdesk_testkit::operator::device_proof;

/// How long state that settles asynchronously (heartbeats, audit delivery) may take.
pub const WAIT: Duration = Duration::from_secs(20);
/// The password the tests give the first owner.
pub const PASSWORD: &str = "correct horse battery staple";

/// A stack on ephemeral ports with its data in `dir`.
pub async fn start(dir: &Path) -> Standalone {
    Standalone::start(StandaloneConfig::ephemeral(dir))
        .await
        .expect("the standalone stack starts")
}

/// Stops `stack` gracefully and checks that it stopped cleanly.
pub async fn stop(stack: Standalone) {
    stack.shutdown();
    tokio::time::timeout(Duration::from_secs(60), stack.wait())
        .await
        .expect("the stack stops within its deadline")
        .expect("every service stopped cleanly");
}

pub async fn auth_client(stack: &Standalone) -> AuthServiceClient<Channel> {
    let channel = Channel::from_shared(stack.urls().auth.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    AuthServiceClient::new(channel)
}

pub async fn rendezvous_channel(stack: &Standalone) -> Channel {
    Channel::from_shared(stack.urls().rendezvous.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Sets the owner's password with the setup token (AcceptInvite over gRPC).
pub async fn accept_setup_token(stack: &Standalone, token: &str) {
    auth_client(stack)
        .await
        .accept_invite(AcceptInviteRequest {
            invite_token: token.to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .expect("the setup token sets the password");
}

/// Logs `email` in with [`PASSWORD`] on `device`, as the viewer does: a challenge, a device
/// proof over it, then Login; the access token must verify and be bound to the team.
pub async fn login(stack: &Standalone, email: &str, device: Identity) -> Operator {
    let mut client = auth_client(stack).await;
    let challenge = client
        .begin_device_binding(BeginDeviceBindingRequest {})
        .await
        .unwrap()
        .into_inner()
        .challenge;
    let proof = device_proof(
        &device,
        tucdesk_auth::login::LOGIN_METHOD,
        &email.trim().to_lowercase(),
        "",
        b"",
        &challenge,
    )
    .unwrap();
    let response = client
        .login(LoginRequest {
            protocol_version: tucdesk_proto::PROTOCOL_VERSION,
            email: email.to_owned(),
            password: PASSWORD.to_owned(),
            totp_code: String::new(),
            device_proof: Some(proof),
            client: None,
        })
        .await
        .expect("login succeeds")
        .into_inner();
    let tokens = match response.result {
        Some(login_response::Result::Tokens(tokens)) => tokens,
        other => panic!("login did not return tokens: {other:?}"),
    };
    let claims = stack
        .auth()
        .verifier()
        .verify_access(
            &tokens.access_token,
            tucdesk_token::unix_now(),
            tucdesk_token::RequireCnf::No,
        )
        .expect("the access token verifies");
    Operator {
        device,
        access_token: tokens.access_token,
        user_id: claims.sub,
        team_id: claims.team_id,
        email: email.to_owned(),
    }
}

/// The actions in the interim audit log, in file order (every line must be a JSON object).
pub fn audit_actions(stack: &Standalone) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(stack.audit_log()) else {
        return Vec::new();
    };
    text.lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("one JSON per line");
            value["action"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

/// Waits until the audit log holds an event with `action`.
pub async fn audit_logged(stack: &Standalone, action: &str) -> bool {
    tucdesk_testkit::eventually(WAIT, || async {
        audit_actions(stack).iter().any(|a| a == action)
    })
    .await
}

/// `GET path` over plain HTTP/1.0: the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Creates an enrollment token (tag `web`) as `admin`, with the device proof the call needs.
pub async fn enrollment_token(
    client: &mut tucdesk_proto::v1::operator_service_client::OperatorServiceClient<Channel>,
    admin: &Operator,
) -> String {
    let tags = vec!["web".to_owned()];
    let binding = tucdesk_rendezvous::enrollment_api::create_binding(&tags, false, 0);
    let proof = admin
        .proof(
            tucdesk_rendezvous::enrollment_api::CREATE_METHOD,
            "",
            &binding,
        )
        .unwrap();
    client
        .create_enrollment_token(
            admin
                .request(tucdesk_proto::v1::CreateEnrollmentTokenRequest {
                    description: "test".into(),
                    tags,
                    allow_host_tags: false,
                    ttl_seconds: 0,
                    proof: Some(proof),
                })
                .unwrap(),
        )
        .await
        .unwrap()
        .into_inner()
        .token
}
