//! The recorder runs in the stack on base + 40: operators list recordings with their access
//! token, and uploads are checked against rendezvous over its internal listener under the
//! recorder's service key (which rendezvous trusts in standalone).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{accept_setup_token, login, start, stop};
use tonic::transport::Channel;
use tucdesk_crypto::Identity;
use tucdesk_proto::v1 as pb;
use tucdesk_proto::v1::recorder_service_client::RecorderServiceClient;
use tucdesk_standalone::config::DEFAULT_ADMIN_EMAIL;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorder_serves_operators_and_asks_rendezvous_about_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let stack = start(&data).await;
    let first = stack.first_start().expect("first start").clone();
    accept_setup_token(&stack, first.setup_token.expose()).await;
    let owner = login(&stack, DEFAULT_ADMIN_EMAIL, Identity::generate().unwrap()).await;
    assert!(stack.summary().contains(&stack.urls().recorder));
    assert!(data.join("keys/recorder/service.key").is_file());
    assert!(data.join("recordings").is_dir());

    let channel = Channel::from_shared(stack.urls().recorder.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = RecorderServiceClient::new(channel);
    let mut list = tonic::Request::new(pb::ListRecordingsRequest::default());
    list.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", owner.access_token).parse().unwrap(),
    );
    let listed = client.list(list).await.unwrap().into_inner();
    assert!(listed.recordings.is_empty());
    let err = client
        .list(pb::ListRecordingsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    // An upload by an agent rendezvous never enrolled: rendezvous answers (so the recorder's
    // service assertion is trusted) that it does not know the agent.
    let agent = Identity::generate().unwrap();
    let team_key = age::x25519::Identity::generate();
    let plaintext = b"{\"version\": 2, \"width\": 80, \"height\": 24}\n";
    let ciphertext =
        tucdesk_recording::crypt::encrypt_bytes(&[team_key.to_public()], plaintext).unwrap();
    let session_id = uuid::Uuid::new_v4().to_string();
    let meta = tucdesk_recording::SpoolMeta {
        session_id: session_id.clone(),
        agent_id: agent.agent_id(),
        team_id: owner.team_id.clone(),
        operator_user_id: owner.user_id.clone(),
        operator_display: String::new(),
        kind: pb::SessionKind::Shell as i32,
        started_at_ms: 1_735_775_999_000,
        recipients: vec![team_key.to_public().to_string()],
    };
    let finished = tucdesk_recording::FinishedRecording {
        path: std::path::PathBuf::new(),
        plaintext_size: plaintext.len() as u64,
        plaintext_sha256: tucdesk_recording::crypt::sha256(plaintext),
        ciphertext_size: ciphertext.len() as u64,
        ciphertext_sha256: tucdesk_recording::crypt::sha256(&ciphertext),
    };
    let manifest =
        tucdesk_recording::manifest::build_manifest(&meta, &finished, 1_735_776_000_000, "test");
    let signed = tucdesk_recording::manifest::sign_manifest(&agent, &manifest).unwrap();
    let now = u64::try_from(tucdesk_svc::sql::now_ms()).unwrap();
    let proof = tucdesk_recording::manifest::make_upload_proof(
        &agent,
        tucdesk_recording::manifest::UPLOAD_METHOD,
        &session_id,
        &finished.ciphertext_sha256,
        0,
        now,
    )
    .unwrap();
    let start_message = pb::UploadRequest {
        kind: Some(pb::upload_request::Kind::Start(pb::UploadStart {
            protocol_version: tucdesk_proto::PROTOCOL_VERSION,
            manifest: Some(signed),
            offset: 0,
            proof: Some(proof),
        })),
    };
    let err = client
        .upload(tokio_stream::iter(vec![start_message]))
        .await
        .unwrap_err();
    assert_eq!(
        tucdesk_testkit::reason(&err),
        pb::RejectReason::AgentNotEnrolled,
        "{err:?}"
    );
    stop(stack).await;
}
