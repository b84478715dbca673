//! The recorder end to end over gRPC: uploads verified against the (fake) rendezvous
//! directory and the signed manifest, resumable, never overwriting, stored under the tenant's
//! prefix; operators list and download only what they may see.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use tonic::Code;
use tucdesk_proto::v1::{
    GetUploadStatusRequest, ListRecordingsRequest, RejectReason, UploadRequest, upload_request,
};
use tucdesk_recording::manifest::{UPLOAD_STATUS_METHOD, make_upload_proof};
use tucdesk_token::Role;

fn reason(status: &tonic::Status) -> RejectReason {
    tucdesk_testkit::reason(status)
}

async fn roundtrip(db: Db, store: StoreKind) {
    let h = Harness::start(db, store).await;
    let mut client = h.client().await;
    let agent = Agent::new(&h, "team-a");
    let made = record(&h, &agent, "op-1", 600 * 1024);
    let done = upload(&mut client, &agent, &made).await.unwrap();
    assert!(done.complete);
    assert_eq!(done.bytes_received, made.ciphertext.len() as u64);
    assert_eq!(
        done.object_key,
        format!(
            "tenants/team-a/recordings/2025/01/01/{}.cast.age",
            made.session_id
        )
    );
    if store == StoreKind::Dir {
        let files = stored_files(&h);
        assert_eq!(
            files,
            vec![
                format!(
                    "tenants/team-a/recordings/2025/01/01/{}.cast.age",
                    made.session_id
                ),
                format!(
                    "tenants/team-a/recordings/2025/01/01/{}.manifest.pb",
                    made.session_id
                ),
            ],
            "only the final objects remain; the staging is gone"
        );
    }
    let admin = h.token("team-a", "admin-1", Role::Admin);
    let (info, bytes) = download(&mut client, &admin, &made.session_id)
        .await
        .unwrap();
    assert_eq!(bytes, made.ciphertext);
    assert_eq!(info.object_key, done.object_key);
    let signed = info.signed_manifest.unwrap();
    let key = agent.identity.public_key();
    assert_eq!(
        tucdesk_recording::manifest::verify_manifest(&signed, &key).unwrap(),
        made.manifest
    );
    let cast = tucdesk_recording::read_cast(
        bytes.as_slice(),
        std::slice::from_ref(&made.team_key),
        Default::default(),
    )
    .unwrap();
    assert!(!cast.events.is_empty());
    let listed = client
        .list(req(ListRecordingsRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.recordings.len(), 1);
    assert_eq!(listed.recordings[0].session_id, made.session_id);
    assert_eq!(
        h.audit_actions().await,
        vec!["recording.upload", "recording.download"]
    );
    if store == StoreKind::Dir {
        // The store's retention removed the object: still listed, but a clean NOT_FOUND.
        std::fs::remove_file(h.store_dir.join(&done.object_key)).unwrap();
        let status = download(&mut client, &admin, &made.session_id)
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_and_download_roundtrip_on_sqlite_and_a_directory() {
    roundtrip(Db::Sqlite, StoreKind::Dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_and_download_roundtrip_on_postgres_and_s3() {
    roundtrip(Db::Postgres, StoreKind::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_team_never_lists_or_downloads_a_recording() {
    let h = Harness::start(Db::Sqlite, StoreKind::Dir).await;
    let mut client = h.client().await;
    let agent = Agent::new(&h, "team-a");
    let made = record(&h, &agent, "op-1", 10_000);
    assert!(upload(&mut client, &agent, &made).await.unwrap().complete);
    let foreign = h.token("team-b", "admin-b", Role::Owner);
    let listed = client
        .list(req(ListRecordingsRequest::default(), &foreign))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.recordings.is_empty());
    let err = download(&mut client, &foreign, &made.session_id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .list(tonic::Request::new(ListRecordingsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_only_the_recordings_of_their_own_sessions() {
    let h = Harness::start(Db::Postgres, StoreKind::Dir).await;
    let mut client = h.client().await;
    let agent = Agent::new(&h, "team-a");
    let mine = record(&h, &agent, "op-1", 5_000);
    let theirs = record(&h, &agent, "op-2", 5_000);
    assert!(upload(&mut client, &agent, &mine).await.unwrap().complete);
    assert!(upload(&mut client, &agent, &theirs).await.unwrap().complete);
    let operator = h.token("team-a", "op-1", Role::Operator);
    // Asking for someone else's recordings changes nothing for an operator.
    let listed = client
        .list(req(
            ListRecordingsRequest {
                user_id: "op-2".into(),
                ..Default::default()
            },
            &operator,
        ))
        .await
        .unwrap()
        .into_inner();
    let sessions: Vec<_> = listed
        .recordings
        .iter()
        .map(|r| r.session_id.clone())
        .collect();
    assert_eq!(sessions, vec![mine.session_id.clone()]);
    assert!(
        download(&mut client, &operator, &mine.session_id)
            .await
            .is_ok()
    );
    let err = download(&mut client, &operator, &theirs.session_id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let auditor = h.token("team-a", "aud-1", Role::Auditor);
    let all = client
        .list(req(ListRecordingsRequest::default(), &auditor))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.recordings.len(), 2);
    // Paging: one per page, then the second, then nothing.
    let page = |token: String| ListRecordingsRequest {
        page: Some(tucdesk_proto::v1::PageRequest {
            page_size: 1,
            page_token: token,
        }),
        ..Default::default()
    };
    let first = client
        .list(req(page(String::new()), &auditor))
        .await
        .unwrap()
        .into_inner();
    let next = first.page.unwrap().next_page_token;
    assert!(!next.is_empty());
    let second = client
        .list(req(page(next), &auditor))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.recordings.len(), 1);
    assert_ne!(
        first.recordings[0].session_id,
        second.recordings[0].session_id
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_manifests_are_refused_before_any_byte() {
    let h = Harness::start(Db::Sqlite, StoreKind::Dir).await;
    let mut client = h.client().await;
    let agent = Agent::new(&h, "team-a");
    let other = Agent::new(&h, "team-a");
    let made = record(&h, &agent, "op-1", 5_000);

    // A bad signature: one byte of the manifest changed.
    let mut bad = made.signed.clone();
    bad.signature[0] ^= 1;
    let forged = Made {
        signed: bad,
        ..make(&agent.identity, "team-a", &made.session_id, "op-1", 10)
    };
    let err = send(
        &mut client,
        start(&agent.identity, &forged, 0, now_ms()),
        &[1],
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&err), RejectReason::SignatureInvalid);

    // Signed by another agent's key while naming this agent.
    let mut stolen = made.signed.clone();
    stolen.signature = tucdesk_crypto::recording::sign_manifest(&other.identity, &stolen.manifest)
        .unwrap()
        .to_bytes()
        .to_vec();
    let stolen = Made {
        signed: stolen,
        ..make(&agent.identity, "team-a", &made.session_id, "op-1", 10)
    };
    let err = send(
        &mut client,
        start(&other.identity, &stolen, 0, now_ms()),
        &[1],
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&err), RejectReason::SignatureInvalid);

    // A session of another agent (same team).
    let foreign_session = record(&h, &other, "op-1", 10);
    let hijack = make(
        &agent.identity,
        "team-a",
        &foreign_session.session_id,
        "op-1",
        10,
    );
    let err = upload(&mut client, &agent, &hijack).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // A session rendezvous does not know in this team.
    let unknown = make(
        &agent.identity,
        "team-a",
        &uuid::Uuid::new_v4().to_string(),
        "op-1",
        10,
    );
    let err = upload(&mut client, &agent, &unknown).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // A manifest naming another team than the agent's enrollment.
    h.directory.add_session(
        &made.session_id,
        "team-b",
        &agent.identity.agent_id(),
        "op-1",
    );
    let cross = make(&agent.identity, "team-b", &made.session_id, "op-1", 10);
    let err = upload(&mut client, &agent, &cross).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // A revoked or unknown agent.
    let stranger = Agent {
        identity: tucdesk_crypto::Identity::generate().unwrap(),
        team: "team-a".into(),
    };
    let unknown_agent = make(&stranger.identity, "team-a", &made.session_id, "op-1", 10);
    let err = upload(&mut client, &stranger, &unknown_agent)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::AgentNotEnrolled);
    h.directory.add_agent(&other.identity, "team-a", true);
    let err = upload(&mut client, &other, &foreign_session)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::AgentRevoked);

    // None of it left a trace in the store or a row.
    assert!(stored_files(&h).is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_ciphertext_is_refused_and_nothing_becomes_visible() {
    let h = Harness::start(Db::Sqlite, StoreKind::Dir).await;
    let mut client = h.client().await;
    let agent = Agent::new(&h, "team-a");
    let made = record(&h, &agent, "op-1", 300 * 1024);
    let mut tampered = made.ciphertext.clone();
    tampered[1000] ^= 0x80;
    let err = send(
        &mut client,
        start(&agent.identity, &made, 0, now_ms()),
        &tampered,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(stored_files(&h).is_empty(), "{:?}", stored_files(&h));
    let admin = h.token("team-a", "admin", Role::Admin);
    let listed = client
        .list(req(ListRecordingsRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.recordings.is_empty());
    assert_eq!(
        download(&mut client, &admin, &made.session_id)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(h.audit_actions().await, vec!["recording.upload_rejected"]);
    // The staging was discarded: the genuine bytes upload again from 0.
    assert!(upload(&mut client, &agent, &made).await.unwrap().complete);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_upload_resumes_at_bytes_received() {
    let h = Harness::start(Db::Postgres, StoreKind::Dir).await;
    let mut client = h.client().await;
    let agent = Agent::new(&h, "team-a");
    let made = record(&h, &agent, "op-1", 700 * 1024);
    let cut = 300 * 1024 + 17;
    let partial = send(
        &mut client,
        start(&agent.identity, &made, 0, now_ms()),
        &made.ciphertext[..cut],
    )
    .await
    .unwrap();
    assert!(!partial.complete);
    assert_eq!(partial.bytes_received, cut as u64);
    // Nothing is visible yet.
    let admin = h.token("team-a", "admin", Role::Admin);
    assert_eq!(
        download(&mut client, &admin, &made.session_id)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    let sha: [u8; 32] = made.manifest.ciphertext_sha256.clone().try_into().unwrap();
    let status_request = |at: u64| GetUploadStatusRequest {
        session_id: made.session_id.clone(),
        agent_id: agent.identity.agent_id(),
        ciphertext_sha256: sha.to_vec(),
        proof: Some(
            make_upload_proof(
                &agent.identity,
                UPLOAD_STATUS_METHOD,
                &made.session_id,
                &sha,
                0,
                at,
            )
            .unwrap(),
        ),
    };
    let status = client
        .get_upload_status(status_request(now_ms()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (status.bytes_received, status.complete),
        (cut as u64, false)
    );

    // Resuming anywhere else is a version conflict.
    let err = send(
        &mut client,
        start(&agent.identity, &made, 0, now_ms()),
        &made.ciphertext,
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&err), RejectReason::VersionConflict);
    assert_eq!(err.code(), Code::Aborted);

    let done = send(
        &mut client,
        start(&agent.identity, &made, cut as u64, now_ms()),
        &made.ciphertext[cut..],
    )
    .await
    .unwrap();
    assert!(done.complete);
    let (_, bytes) = download(&mut client, &admin, &made.session_id)
        .await
        .unwrap();
    assert_eq!(bytes, made.ciphertext);
    let status = client
        .get_upload_status(status_request(now_ms()))
        .await
        .unwrap()
        .into_inner();
    assert!(status.complete);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_stale_upload_proofs_are_refused() {
    let h = Harness::start(Db::Sqlite, StoreKind::Dir).await;
    let mut client = h.client().await;
    let agent = Agent::new(&h, "team-a");
    let made = record(&h, &agent, "op-1", 5_000);
    let first = start(&agent.identity, &made, 0, now_ms());
    let partial = send(&mut client, first.clone(), &made.ciphertext[..100])
        .await
        .unwrap();
    assert_eq!(partial.bytes_received, 100);
    // The same proof again (offset 0 is no longer current anyway, but the nonce is checked
    // first): refused as a replay.
    let err = send(&mut client, first, &[]).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::NonceReplayed);
    // A proof 31 s old or 31 s ahead.
    for skew in [-31_000i64, 31_000] {
        let at = now_ms().checked_add_signed(skew).unwrap();
        let err = send(
            &mut client,
            start(&agent.identity, &made, 100, at),
            &made.ciphertext[100..],
        )
        .await
        .unwrap_err();
        assert_eq!(reason(&err), RejectReason::ClockSkew);
    }
    // A proof for another offset than the one in start.
    let mut wrong = start(&agent.identity, &made, 0, now_ms());
    if let Some(upload_request::Kind::Start(s)) = wrong.kind.as_mut() {
        s.offset = 100;
    }
    let err = send(&mut client, wrong, &[]).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::ProofInvalid);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_recording_is_never_overwritten() {
    let h = Harness::start(Db::Sqlite, StoreKind::Dir).await;
    let mut client = h.client().await;
    let agent = Agent::new(&h, "team-a");
    let made = record(&h, &agent, "op-1", 5_000);
    assert!(upload(&mut client, &agent, &made).await.unwrap().complete);
    // The same recording again (a retry after a lost answer): reported stored.
    let again = upload(&mut client, &agent, &made).await.unwrap();
    assert!(again.complete);
    // A different file for the same session: refused.
    let other = make(&agent.identity, "team-a", &made.session_id, "op-1", 6_000);
    let err = upload(&mut client, &agent, &other).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let admin = h.token("team-a", "admin", Role::Admin);
    let (_, bytes) = download(&mut client, &admin, &made.session_id)
        .await
        .unwrap();
    assert_eq!(bytes, made.ciphertext);
    assert_eq!(
        h.audit_actions()
            .await
            .iter()
            .filter(|a| *a == "recording.upload")
            .count(),
        1
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_recordings_and_extra_bytes_are_refused() {
    let h = Harness::start(Db::Sqlite, StoreKind::Dir).await;
    let mut client = h.client().await;
    let agent = Agent::new(&h, "team-a");
    // Above the configured 8 MiB: refused from the manifest, before a byte.
    let big = record(&h, &agent, "op-1", 9 * 1024 * 1024);
    let err = send(&mut client, start(&agent.identity, &big, 0, now_ms()), &[])
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::LimitExceeded);
    // More bytes than the manifest announced.
    let made = record(&h, &agent, "op-1", 1_000);
    let mut longer = made.ciphertext.clone();
    longer.push(0);
    let err = send(
        &mut client,
        start(&agent.identity, &made, 0, now_ms()),
        &longer,
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&err), RejectReason::LimitExceeded);
    // An empty chunk.
    let err = client
        .upload(tokio_stream::iter(vec![
            start(&agent.identity, &made, 0, now_ms()),
            UploadRequest {
                kind: Some(upload_request::Kind::Chunk(Vec::new())),
            },
        ]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    h.stop().await;
}
