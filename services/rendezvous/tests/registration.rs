//! Enrollment and registration (SPEC §2): every check of the proof, in order, on both
//! backends; rejections counted and audited; replays refused across replicas; a second
//! connection supersedes the first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Fixture, WAIT};
use tucdesk_proto::v1::agent_message::Kind as AgentKind;
use tucdesk_proto::v1::server_message::Kind as ServerKind;
use tucdesk_proto::v1::{
    AgentMessage, EnrollmentTokenState, ListEnrollmentTokensRequest, RejectReason,
    RevokeAgentRequest, RevokeEnrollmentTokenRequest,
};
use tucdesk_testkit::agent::ConnectError;
use tucdesk_testkit::{AgentLinkConn, Backend, SimAgent, on_both_backends, reason};

fn sim() -> SimAgent {
    SimAgent::new(tucdesk_testkit::rendezvous::AUDIENCE).unwrap()
}

async fn register_rejected(
    f: &Fixture,
    agent: &SimAgent,
    register: tucdesk_proto::v1::Register,
) -> RejectReason {
    let _ = agent;
    match AgentLinkConn::open(&mut f.rdv.agent_client(), register).await {
        Ok(_) => panic!("registration was accepted"),
        Err(err) => err.reason(),
    }
}

async fn enrollment_binds_the_key_to_the_token_team_once(backend: Backend) {
    let f = Fixture::new(backend).await;
    let token = f
        .rdv
        .enrollment_token(&f.owner, &["env=prod", "db"])
        .await
        .unwrap();
    let agent = sim();
    let enrolled = agent
        .enroll(&mut f.rdv.agent_client(), &token, "db-1", &["ignored"])
        .await
        .unwrap();
    assert_eq!(enrolled.agent_id, agent.agent_id());
    assert_eq!(enrolled.team_id, f.owner.team_id);
    assert_eq!(enrolled.fingerprint, agent.identity.fingerprint());
    // Host tags are ignored unless the token allows them.
    assert_eq!(enrolled.tags, vec!["db", "env=prod"]);

    // The token is single use: a second agent cannot use it.
    let other = sim();
    let err = other
        .enroll(&mut f.rdv.agent_client(), &token, "db-2", &[])
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::EnrollmentTokenInvalid);
    // The same key cannot enroll twice, even with a fresh token.
    let fresh = f.rdv.enrollment_token(&f.owner, &[]).await.unwrap();
    let err = agent
        .enroll(&mut f.rdv.agent_client(), &fresh, "db-1", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    // ... and that attempt did not burn the fresh token.
    other
        .enroll(&mut f.rdv.agent_client(), &fresh, "db-2", &[])
        .await
        .unwrap();
    // Unknown and malformed codes say the same thing.
    for code in ["ZZZZ-ZZZZ-ZZZZ", "not a code!"] {
        let err = sim()
            .enroll(&mut f.rdv.agent_client(), code, "x", &[])
            .await
            .unwrap_err();
        assert_eq!(reason(&err), RejectReason::EnrollmentTokenInvalid, "{code}");
    }
    let actions = f.actions().await;
    assert!(actions.contains(&"agent.enrolled".to_owned()));
    assert!(actions.contains(&"agent.enroll_failed".to_owned()));
    f.cleanup().await;
}

async fn revoked_enrollment_tokens_are_refused(backend: Backend) {
    let f = Fixture::new(backend).await;
    let token = f.rdv.enrollment_token(&f.owner, &[]).await.unwrap();
    let mut client = f.rdv.operator_client();
    let listed = client
        .list_enrollment_tokens(
            f.owner
                .request(ListEnrollmentTokensRequest::default())
                .unwrap(),
        )
        .await
        .unwrap()
        .into_inner();
    let info = listed.tokens.first().unwrap().clone();
    assert_eq!(info.state, EnrollmentTokenState::Active as i32);
    // The secret never appears in listings.
    assert!(!format!("{listed:?}").contains(&token));
    let proof = f
        .owner
        .proof(
            tucdesk_rendezvous::enrollment_api::REVOKE_METHOD,
            &info.token_id,
            b"",
        )
        .unwrap();
    let revoked = client
        .revoke_enrollment_token(
            f.owner
                .request(RevokeEnrollmentTokenRequest {
                    token_id: info.token_id.clone(),
                    proof: Some(proof),
                })
                .unwrap(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.state, EnrollmentTokenState::Revoked as i32);
    let err = sim()
        .enroll(&mut f.rdv.agent_client(), &token, "x", &[])
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::EnrollmentTokenInvalid);
    f.cleanup().await;
}

async fn a_registered_agent_gets_its_identity_and_settings(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (agent, conn) = f.connected("web-1", &["web"]).await;
    assert_eq!(conn.registered.agent_id, agent.agent_id());
    assert_eq!(conn.registered.team_id, f.owner.team_id);
    assert_eq!(conn.registered.tags, vec!["web"]);
    assert_eq!(conn.registered.heartbeat_interval_ms, 500);
    assert_eq!(conn.registered.replica_id, f.rdv.rdv.replica_id());
    assert!(f.actions().await.contains(&"agent.registered".to_owned()));
    f.cleanup().await;
}

async fn replayed_registrations_are_refused_also_on_another_replica(backend: Backend) {
    let f = Fixture::new(backend).await;
    let second = f.dep.replica().await.unwrap();
    let agent = f.enrolled("web-1", &[]).await;
    let register = agent.register().unwrap();
    let first = AgentLinkConn::open(&mut f.rdv.agent_client(), register.clone())
        .await
        .unwrap();
    drop(first);
    // The very same proof again, to the same replica and to the other one.
    let err = AgentLinkConn::open(&mut f.rdv.agent_client(), register.clone())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), RejectReason::NonceReplayed);
    let err = AgentLinkConn::open(&mut second.agent_client(), register)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), RejectReason::NonceReplayed);
    // A fresh proof works on the other replica.
    agent.connect(&mut second.agent_client()).await.unwrap();
    second.stop().await;
    f.cleanup().await;
}

async fn stale_future_forged_and_foreign_proofs_are_refused(backend: Backend) {
    let f = Fixture::new(backend).await;
    let agent = f.enrolled("web-1", &[]).await;
    let now = u64::try_from(tucdesk_svc::sql::now_ms()).unwrap();

    let mut stale = agent.register().unwrap();
    stale.proof = Some(agent.proof_at(now - 31_000).unwrap());
    assert_eq!(
        register_rejected(&f, &agent, stale).await,
        RejectReason::ClockSkew
    );

    let mut future = agent.register().unwrap();
    future.proof = Some(agent.proof_at(now + 31_000).unwrap());
    assert_eq!(
        register_rejected(&f, &agent, future).await,
        RejectReason::ClockSkew
    );

    // Within the skew on either side is fine.
    let mut early = agent.register().unwrap();
    early.proof = Some(agent.proof_at(now + 20_000).unwrap());
    AgentLinkConn::open(&mut f.rdv.agent_client(), early)
        .await
        .unwrap();

    let mut forged = agent.register().unwrap();
    if let Some(proof) = forged.proof.as_mut() {
        proof.signature[0] ^= 0x01;
    }
    assert_eq!(
        register_rejected(&f, &agent, forged).await,
        RejectReason::SignatureInvalid
    );

    // A proof made by another key for this agent's public key.
    let impostor = sim();
    let mut stolen = impostor.register().unwrap();
    if let Some(proof) = stolen.proof.as_mut() {
        proof.agent_pubkey = agent.public_key().to_bytes().to_vec();
    }
    assert_eq!(
        register_rejected(&f, &agent, stolen).await,
        RejectReason::SignatureInvalid
    );

    // A proof for another deployment.
    let foreign = SimAgent {
        identity: tucdesk_crypto::Identity::generate().unwrap(),
        audience: "some-other-deployment".into(),
    };
    let register = foreign.register().unwrap();
    assert_eq!(
        register_rejected(&f, &foreign, register).await,
        RejectReason::AudienceMismatch
    );

    // An old agent gets an explicit UPDATE_REQUIRED with the floor.
    let mut old = agent.register().unwrap();
    old.protocol_version = 0;
    match AgentLinkConn::open(&mut f.rdv.agent_client(), old).await {
        Err(ConnectError::Rejected(rejected)) => {
            assert_eq!(rejected.reason, RejectReason::UpdateRequired as i32);
            assert_eq!(
                rejected.min_protocol_version,
                tucdesk_proto::MIN_AGENT_PROTOCOL_VERSION
            );
        }
        other => panic!("expected UPDATE_REQUIRED, got {other:?}"),
    }

    // Every rejection is audited with its reason.
    let reasons: Vec<String> = f
        .audit()
        .await
        .into_iter()
        .filter(|e| e.action == "agent.registration_rejected")
        .map(|e| {
            let context: serde_json::Value = serde_json::from_str(&e.context_json).unwrap();
            context["reason"].as_str().unwrap().to_owned()
        })
        .collect();
    for expected in [
        "CLOCK_SKEW",
        "SIGNATURE_INVALID",
        "AUDIENCE_MISMATCH",
        "UPDATE_REQUIRED",
    ] {
        assert!(
            reasons.iter().any(|r| r.ends_with(expected)),
            "{expected} not audited: {reasons:?}"
        );
    }
    let counted = f
        .rdv
        .rdv
        .metrics()
        .registrations
        .with_label_values(&["clock_skew"])
        .get();
    assert_eq!(counted, 2);
    f.cleanup().await;
}

async fn unenrolled_and_revoked_keys_cannot_register(backend: Backend) {
    let f = Fixture::new(backend).await;
    let stranger = sim();
    let register = stranger.register().unwrap();
    assert_eq!(
        register_rejected(&f, &stranger, register).await,
        RejectReason::AgentNotEnrolled
    );

    let (agent, mut conn) = f.connected("web-1", &[]).await;
    let proof = f
        .owner
        .proof(
            tucdesk_rendezvous::agents_api::REVOKE_METHOD,
            &agent.agent_id(),
            b"",
        )
        .unwrap();
    f.rdv
        .operator_client()
        .revoke_agent(
            f.owner
                .request(RevokeAgentRequest {
                    agent_id: agent.agent_id(),
                    reason: "host decommissioned".into(),
                    proof: Some(proof),
                })
                .unwrap(),
        )
        .await
        .unwrap();
    // The live stream is closed with AGENT_REVOKED ...
    assert_eq!(conn.closed(WAIT).await, Some(RejectReason::AgentRevoked));
    // ... and the key can never register or enroll again.
    let register = agent.register().unwrap();
    assert_eq!(
        register_rejected(&f, &agent, register).await,
        RejectReason::AgentRevoked
    );
    let token = f.rdv.enrollment_token(&f.owner, &[]).await.unwrap();
    let err = agent
        .enroll(&mut f.rdv.agent_client(), &token, "again", &[])
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::AgentRevoked);
    // The revoked agent's attempts land in its own team's audit log.
    let rejected_in_team = f
        .audit()
        .await
        .into_iter()
        .any(|e| e.action == "agent.registration_rejected" && e.team_id == f.owner.team_id);
    assert!(rejected_in_team);
    f.cleanup().await;
}

async fn the_first_message_must_be_register(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender
        .send(AgentMessage {
            kind: Some(AgentKind::Heartbeat(Default::default())),
        })
        .await
        .unwrap();
    let mut inbound = f
        .rdv
        .agent_client()
        .connect(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    let first = inbound.message().await.unwrap().unwrap();
    match first.kind {
        Some(ServerKind::Rejected(rejected)) => {
            assert_eq!(rejected.reason, RejectReason::ProtocolViolation as i32)
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    f.cleanup().await;
}

async fn a_second_connection_supersedes_the_first_on_any_replica(backend: Backend) {
    let f = Fixture::new(backend).await;
    let second = f.dep.replica().await.unwrap();
    let (agent, mut first) = f.connected("web-1", &[]).await;
    // Same replica.
    let mut again = agent.connect(&mut f.rdv.agent_client()).await.unwrap();
    assert_eq!(first.closed(WAIT).await, Some(RejectReason::Superseded));
    // Another replica.
    let _third = agent.connect(&mut second.agent_client()).await.unwrap();
    assert_eq!(again.closed(WAIT).await, Some(RejectReason::Superseded));
    // Presence names the replica holding the newest stream.
    let presence = f
        .rdv
        .rdv
        .presence()
        .online(&[agent.agent_id()])
        .await
        .unwrap();
    assert_eq!(presence[&agent.agent_id()].replica, second.rdv.replica_id());
    second.stop().await;
    f.cleanup().await;
}

async fn a_flood_of_rejections_locks_the_source_out(backend: Backend) {
    let f = Fixture::new(backend).await;
    let agent = f.enrolled("web-1", &[]).await;
    let stranger = sim();
    let limit = tucdesk_rendezvous::registration::REJECTIONS_PER_SOURCE.max_failures;
    let mut last = RejectReason::Unspecified;
    for _ in 0..=limit {
        let register = stranger.register().unwrap();
        last = register_rejected(&f, &stranger, register).await;
    }
    assert_eq!(last, RejectReason::RateLimited);
    // Locked out: even a valid agent from the same source waits.
    let err = agent.connect(&mut f.rdv.agent_client()).await.unwrap_err();
    assert_eq!(err.reason(), RejectReason::RateLimited);
    // Only the counted rejections were audited: the audit log did not grow with the flood.
    let audited = f
        .audit()
        .await
        .into_iter()
        .filter(|e| e.action == "agent.registration_rejected")
        .count();
    assert!(audited <= limit as usize, "{audited} rejections audited");
    f.cleanup().await;
}

on_both_backends!(
    enrollment_binds_the_key_to_the_token_team_once,
    revoked_enrollment_tokens_are_refused,
    a_registered_agent_gets_its_identity_and_settings,
    replayed_registrations_are_refused_also_on_another_replica,
    stale_future_forged_and_foreign_proofs_are_refused,
    unenrolled_and_revoked_keys_cannot_register,
    the_first_message_must_be_register,
    a_second_connection_supersedes_the_first_on_any_replica,
    a_flood_of_rejections_locks_the_source_out,
);
