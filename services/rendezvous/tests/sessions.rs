//! Session negotiation (SPEC §4, §5 steps 1–2): policy first, then the offer through whichever
//! replica holds the agent, the agent's signed answer back, and every refusal path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Fixture, WAIT, accepted, exec, shell};
use tucdesk_crypto::SessionAnswer;
use tucdesk_proto::v1::server_message::Kind as ServerKind;
use tucdesk_proto::v1::session_signal::Signal;
use tucdesk_proto::v1::{
    EndSessionRequest, GetAgentRequest, GetSessionRequest, HandshakeReply, IceTransportPolicy,
    ListAgentsRequest, ListSessionsRequest, PolicyDecision, PutPolicyRequest, RejectReason,
    RenameAgentRequest, RenewConnectivityRequest, ReportSessionRequest, RevokeAgentRequest, Role,
    SessionEventKind, SessionKind, SessionReport, SessionState, TagAgentRequest,
};
use tucdesk_proto::v1::{IceCandidate, SdpType, SessionDescription, SessionSignal};
use tucdesk_testkit::{Backend, Deployment, Operator, SimAgent, on_both_backends, reason};
use tucdesk_token::{ExpectedSession, SessionKind as TokenKind};

/// Stores `yaml` as the team policy (admin with a device proof).
pub async fn put_policy(f: &Fixture, admin: &Operator, yaml: &str, expected_version: u64) -> u64 {
    let binding = tucdesk_rendezvous::policy_api::put_binding(expected_version, yaml);
    let proof = admin
        .proof(
            tucdesk_rendezvous::policy_api::PUT_METHOD,
            "policy",
            &binding,
        )
        .unwrap();
    f.rdv
        .operator_client()
        .put_policy(
            admin
                .request(PutPolicyRequest {
                    yaml: yaml.to_owned(),
                    expected_version,
                    proof: Some(proof),
                })
                .unwrap(),
        )
        .await
        .unwrap()
        .into_inner()
        .version
}

fn reply(answer: &SessionAnswer) -> HandshakeReply {
    HandshakeReply {
        e_ag_pub: answer.e_ag_pub.to_bytes().to_vec(),
        transcript_signature: answer.signature.to_bytes().to_vec(),
    }
}

fn answer_of(reply: &HandshakeReply) -> SessionAnswer {
    SessionAnswer {
        e_ag_pub: tucdesk_crypto::EphemeralPublic::from_slice(&reply.e_ag_pub).unwrap(),
        signature: tucdesk_crypto::Signature::from_slice(&reply.transcript_signature).unwrap(),
    }
}

async fn a_session_is_negotiated_and_both_sides_share_keys(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (agent, mut conn) = f.connected("web-1", &["web"]).await;
    let ask = shell(&f.owner, &agent);
    let session_id = ask.request.session_id.clone();
    let call = common::spawn_session(&f, &f.owner, ask.request.clone());
    let offer = conn.next_offer(WAIT).await.expect("the agent got no offer");
    assert_eq!(offer.session_id, session_id);
    assert_eq!(offer.kind, SessionKind::Shell as i32);
    let operator = offer.operator.clone().unwrap();
    assert_eq!(operator.user_id, f.owner.user_id);
    assert_eq!(
        operator.device_key_thumbprint,
        f.owner.device.public_key().jwk_thumbprint()
    );
    assert_eq!(
        offer.policy_result.as_ref().unwrap().decision,
        PolicyDecision::Allow as i32
    );

    // The session token is what the agent checks on its own: every binding verifies.
    let claims = f.dep.auth.auth.verifier().clone();
    let session_verifier = tucdesk_token::TokenVerifier::new(
        claims.keys().clone(),
        &f.dep.auth.issuer,
        &agent.agent_id(),
    );
    let e_op_pub = offer.handshake.as_ref().unwrap().e_op_pub.clone();
    let token = session_verifier
        .verify_session(
            &offer.session_token,
            tucdesk_token::unix_now(),
            &ExpectedSession {
                session_id: &session_id,
                agent_id: Some(&agent.agent_id()),
                team_id: Some(&f.owner.team_id),
                kind: Some(TokenKind::Shell),
                device_key_thumbprint: Some(&f.owner.device.public_key().jwk_thumbprint()),
                e_op_pub: Some(&e_op_pub),
            },
        )
        .unwrap();
    assert_eq!(token.sub, f.owner.user_id);
    // ... and it cannot be used for another session.
    let other = uuid::Uuid::new_v4().to_string();
    assert!(
        session_verifier
            .verify_session(
                &offer.session_token,
                tucdesk_token::unix_now(),
                &ExpectedSession {
                    session_id: &other,
                    agent_id: None,
                    team_id: None,
                    kind: None,
                    device_key_thumbprint: None,
                    e_op_pub: None,
                },
            )
            .is_err()
    );

    // TURN credentials follow the TURN REST scheme and name the session.
    let ice = offer.connectivity.as_ref().unwrap().ice.as_ref().unwrap();
    let turn = ice.servers.iter().find(|s| !s.username.is_empty()).unwrap();
    assert!(turn.username.ends_with(&format!(":{session_id}")));
    let relay = offer.connectivity.as_ref().unwrap().relay.as_ref().unwrap();
    assert_eq!(relay.node_id, f.relay.node_id);
    assert!(!relay.ticket.is_empty());

    let agent_keys = conn.accept(&agent.identity, &offer).await.unwrap();
    let response = call.await.unwrap().unwrap().into_inner();
    let accepted = accepted(response);
    assert_eq!(
        accepted.agent_pubkey,
        agent.public_key().to_bytes().to_vec()
    );
    assert_ne!(
        accepted
            .connectivity
            .as_ref()
            .unwrap()
            .relay
            .as_ref()
            .unwrap()
            .ticket,
        relay.ticket,
        "each side gets its own relay ticket"
    );
    let operator_keys = ask
        .handshake
        .finish(&answer_of(accepted.handshake.as_ref().unwrap()))
        .unwrap();
    // Frames sealed by the operator open on the agent.
    let (mut sealer, _) = operator_keys.into_operator_channel();
    let (_, mut opener) = agent_keys.into_agent_channel();
    let frame = sealer.seal(b"uptime\n").unwrap();
    assert_eq!(opener.open(&frame).unwrap(), b"uptime\n");

    let session = f
        .rdv
        .operator_client()
        .get_session(
            f.owner
                .request(GetSessionRequest {
                    session_id: session_id.clone(),
                })
                .unwrap(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(session.state, SessionState::Active as i32);
    assert_eq!(session.relay_node_id, f.relay.node_id);
    let actions = f.actions().await;
    for action in [
        "session.requested",
        "policy.decision",
        "session.offered",
        "session.accepted",
    ] {
        assert!(
            actions.contains(&action.to_owned()),
            "{action} missing from {actions:?}"
        );
    }
    let _ = reply;
    f.cleanup().await;
}

async fn an_offer_crosses_replicas(backend: Backend) {
    let f = Fixture::new(backend).await;
    let other = f.dep.replica().await.unwrap();
    assert!(
        tucdesk_testkit::eventually(WAIT, || async { other.rdv.relays().pick().is_some() }).await
    );
    let agent = f.enrolled("web-1", &[]).await;
    // The agent's stream is on `other`; the operator talks to the first replica.
    let mut conn = agent.connect(&mut other.agent_client()).await.unwrap();
    let ask = shell(&f.owner, &agent);
    let call = common::spawn_session(&f, &f.owner, ask.request.clone());
    let offer = conn
        .next_offer(WAIT)
        .await
        .expect("the offer did not cross replicas");
    conn.accept(&agent.identity, &offer).await.unwrap();
    let accepted = accepted(call.await.unwrap().unwrap().into_inner());
    ask.handshake
        .finish(&answer_of(accepted.handshake.as_ref().unwrap()))
        .unwrap();
    other.stop().await;
    f.cleanup().await;
}

async fn policy_denial_stops_the_session_before_the_agent_sees_an_offer(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (agent, mut conn) = f.connected("db-1", &["env=prod"]).await;
    put_policy(
        &f,
        &f.owner,
        "version: 1\nmode: allow\nrules:\n  - name: no-prod-shells\n    effect: deny\n    tags: [env=prod]\n    kinds: [shell]\n    reason: Production shells are closed\n",
        0,
    )
    .await;
    let ask = shell(&f.owner, &agent);
    let status = f
        .rdv
        .operator_client()
        .create_session(f.owner.request(ask.request.clone()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(reason(&status), RejectReason::PolicyDenied);
    let detail = tucdesk_testkit::detail(&status);
    let result = detail.policy_result.unwrap();
    assert_eq!(result.rule, "no-prod-shells");
    assert_eq!(result.policy_version, 1);
    assert!(status.message().contains("Production shells are closed"));
    // Nothing reached the agent.
    assert!(conn.next_offer(Duration::from_millis(500)).await.is_none());
    // An exec on the same agent is not covered by the rule.
    let exec_ask = f
        .owner
        .session_request(
            &agent.public_key(),
            SessionKind::Exec,
            Some(exec(&["uptime"])),
        )
        .unwrap();
    let call = common::spawn_session(&f, &f.owner, exec_ask.request.clone());
    let offer = conn.next_offer(WAIT).await.unwrap();
    assert_eq!(offer.exec.as_ref().unwrap().argv, vec!["uptime"]);
    conn.accept(&agent.identity, &offer).await.unwrap();
    accepted(call.await.unwrap().unwrap().into_inner());
    let denied = f.audit().await.into_iter().any(|e| {
        e.action == "policy.decision"
            && e.policy_result.as_ref().is_some_and(|p| {
                p.decision == PolicyDecision::Deny as i32 && p.rule == "no-prod-shells"
            })
    });
    assert!(denied, "the denial and its rule are audited");
    f.cleanup().await;
}

async fn offline_busy_refusing_and_silent_agents(backend: Backend) {
    let f = Fixture::with(backend, |config| {
        config.offer_timeout = Duration::from_secs(1)
    })
    .await;
    // Enrolled but never connected: fails at once.
    let offline = f.enrolled("off-1", &[]).await;
    let status = f
        .rdv
        .operator_client()
        .create_session(f.owner.request(shell(&f.owner, &offline).request).unwrap())
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::AgentOffline);
    assert_eq!(status.code(), tonic::Code::Unavailable);

    // The person at the host says no.
    let (agent, mut conn) = f.connected("web-1", &[]).await;
    let call = common::spawn_session(&f, &f.owner, shell(&f.owner, &agent).request);
    let offer = conn.next_offer(WAIT).await.unwrap();
    conn.refuse(&offer.session_id, RejectReason::ConsentDenied, "not now")
        .await
        .unwrap();
    let status = call.await.unwrap().unwrap_err();
    assert_eq!(reason(&status), RejectReason::ConsentDenied);
    assert!(status.message().contains("not now"));

    // The agent never answers: AGENT_TIMEOUT, and the agent is told to drop the offer.
    let call = common::spawn_session(&f, &f.owner, shell(&f.owner, &agent).request);
    let offer = conn.next_offer(WAIT).await.unwrap();
    let status = call.await.unwrap().unwrap_err();
    assert_eq!(reason(&status), RejectReason::AgentTimeout);
    let cancelled = conn.next(WAIT).await.unwrap().unwrap();
    match cancelled.kind {
        Some(ServerKind::CancelOffer(cancel)) => assert_eq!(cancel.session_id, offer.session_id),
        other => panic!("expected CancelOffer, got {other:?}"),
    }
    // A late answer changes nothing.
    conn.accept(&agent.identity, &offer).await.unwrap();
    let session = f
        .rdv
        .operator_client()
        .get_session(
            f.owner
                .request(GetSessionRequest {
                    session_id: offer.session_id.clone(),
                })
                .unwrap(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(session.state, SessionState::Failed as i32);
    assert_eq!(session.end_reason, RejectReason::AgentTimeout as i32);
    f.cleanup().await;
}

async fn bad_requests_are_refused_before_policy(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (agent, _conn) = f.connected("web-1", &[]).await;
    let mut client = f.rdv.operator_client();

    // A session id is never used twice.
    let ask = shell(&f.owner, &agent);
    let status = client
        .create_session(f.owner.request(ask.request.clone()).unwrap())
        .await;
    assert!(status.is_err()); // the agent does not answer in this test; any outcome
    let status = client
        .create_session(f.owner.request(ask.request.clone()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::AlreadyExists);

    // The handshake key must be the token's device key.
    let stranger = tucdesk_crypto::Identity::generate().unwrap();
    let impostor = Operator {
        device: stranger,
        access_token: f.owner.access_token.clone(),
        user_id: f.owner.user_id.clone(),
        team_id: f.owner.team_id.clone(),
        email: f.owner.email.clone(),
    };
    let status = client
        .create_session(impostor.request(shell(&impostor, &agent).request).unwrap())
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::DeviceKeyMismatch);

    // An offer signed for another key (a stale or poisoned known_agents pin).
    let wrong_pin = SimAgent::new("x").unwrap();
    let mut ask = shell(&f.owner, &wrong_pin);
    ask.request.agent_id = agent.agent_id();
    let status = client
        .create_session(f.owner.request(ask.request).unwrap())
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::ProofInvalid);

    // Shell with a command, exec without one, oversized argv.
    let mut with_exec = shell(&f.owner, &agent).request;
    with_exec.exec = Some(exec(&["ls"]));
    let mut bare_exec = shell(&f.owner, &agent).request;
    bare_exec.kind = SessionKind::Exec as i32;
    let mut huge = f
        .owner
        .session_request(
            &agent.public_key(),
            SessionKind::Exec,
            Some(exec(&["echo"])),
        )
        .unwrap()
        .request;
    huge.exec.as_mut().unwrap().argv.push("x".repeat(5000));
    for request in [with_exec, bare_exec, huge] {
        let status = client
            .create_session(f.owner.request(request).unwrap())
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }

    // Without a token.
    let status = client
        .create_session(tonic::Request::new(shell(&f.owner, &agent).request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    // A viewer may look but not connect.
    let viewer = f
        .dep
        .user(
            &f.owner,
            &format!("viewer-{}@example.com", common::short_id()),
            Role::Viewer,
        )
        .await
        .unwrap();
    let status = client
        .create_session(viewer.request(shell(&viewer, &agent).request).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    f.cleanup().await;
}

async fn another_teams_agents_are_not_found(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (agent, mut conn) = f.connected("web-1", &["web"]).await;
    let rival = f
        .dep
        .team(&format!("rival-{}@example.com", common::short_id()))
        .await
        .unwrap();
    let mut client = f.rdv.operator_client();
    let listed = client
        .list_agents(rival.request(ListAgentsRequest::default()).unwrap())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.agents.is_empty());
    let status = client
        .get_agent(
            rival
                .request(GetAgentRequest {
                    agent_id: agent.agent_id(),
                })
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let status = client
        .create_session(rival.request(shell(&rival, &agent).request).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert!(conn.next_offer(Duration::from_millis(300)).await.is_none());
    let status = client
        .rename_agent(
            rival
                .request(RenameAgentRequest {
                    agent_id: agent.agent_id(),
                    name: "pwned".into(),
                })
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let binding = tucdesk_rendezvous::agents_api::tag_binding(&["owned".into()], &[]);
    let proof = rival
        .proof(
            tucdesk_rendezvous::agents_api::TAG_METHOD,
            &agent.agent_id(),
            &binding,
        )
        .unwrap();
    let status = client
        .tag_agent(
            rival
                .request(TagAgentRequest {
                    agent_id: agent.agent_id(),
                    add: vec!["owned".into()],
                    remove: vec![],
                    proof: Some(proof),
                })
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let proof = rival
        .proof(
            tucdesk_rendezvous::agents_api::REVOKE_METHOD,
            &agent.agent_id(),
            b"",
        )
        .unwrap();
    let status = client
        .revoke_agent(
            rival
                .request(RevokeAgentRequest {
                    agent_id: agent.agent_id(),
                    reason: String::new(),
                    proof: Some(proof),
                })
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    // Nothing changed for the owner.
    let mine = client
        .get_agent(
            f.owner
                .request(GetAgentRequest {
                    agent_id: agent.agent_id(),
                })
                .unwrap(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.name, "web-1");
    assert_eq!(mine.tags, vec!["web"]);
    f.cleanup().await;
}

async fn sessions_are_reported_listed_and_ended(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (agent, mut conn) = f.connected("web-1", &[]).await;
    let operator = f
        .dep
        .user(
            &f.owner,
            &format!("op-{}@example.com", common::short_id()),
            Role::Operator,
        )
        .await
        .unwrap();
    let ask = shell(&operator, &agent);
    let session_id = ask.request.session_id.clone();
    let call = common::spawn_session(&f, &operator, ask.request.clone());
    let offer = conn.next_offer(WAIT).await.unwrap();
    conn.accept(&agent.identity, &offer).await.unwrap();
    accepted(call.await.unwrap().unwrap().into_inner());
    let mut client = f.rdv.operator_client();
    client
        .report_session(
            operator
                .request(ReportSessionRequest {
                    session_id: session_id.clone(),
                    report: Some(SessionReport {
                        kind: SessionEventKind::Started as i32,
                        path: tucdesk_proto::v1::Path::Ws as i32,
                        bytes_to_agent: 10,
                        bytes_to_operator: 20,
                        ..Default::default()
                    }),
                })
                .unwrap(),
        )
        .await
        .unwrap();
    // The operator sees their own session; another operator does not.
    let listed = client
        .list_sessions(
            operator
                .request(ListSessionsRequest {
                    active_only: true,
                    ..Default::default()
                })
                .unwrap(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.sessions.len(), 1);
    assert_eq!(listed.sessions[0].path, tucdesk_proto::v1::Path::Ws as i32);
    assert_eq!(listed.sessions[0].bytes_to_operator, 20);
    let colleague = f
        .dep
        .user(
            &f.owner,
            &format!("op2-{}@example.com", common::short_id()),
            Role::Operator,
        )
        .await
        .unwrap();
    let status = client
        .get_session(
            colleague
                .request(GetSessionRequest {
                    session_id: session_id.clone(),
                })
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    // Fresh credentials for a path change late in the session: new relay tickets for both
    // sides, the agent's copy pushed to it; only the session's operator may ask.
    let renewed = client
        .renew_connectivity(
            operator
                .request(RenewConnectivityRequest {
                    session_id: session_id.clone(),
                    path: tucdesk_proto::v1::Path::Turn as i32,
                })
                .unwrap(),
        )
        .await
        .unwrap()
        .into_inner();
    let ice = renewed.ice.as_ref().unwrap();
    assert_eq!(ice.transport_policy, IceTransportPolicy::Relay as i32);
    assert!(
        ice.servers
            .iter()
            .any(|s| s.username.ends_with(&session_id))
    );
    let update = conn.next(WAIT).await.unwrap().unwrap();
    match update.kind {
        Some(ServerKind::ConnectivityUpdate(update)) => {
            assert_eq!(update.session_id, session_id);
            let ticket = update.connectivity.unwrap().relay.unwrap().ticket;
            assert_ne!(ticket, renewed.relay.as_ref().unwrap().ticket);
        }
        other => panic!("expected ConnectivityUpdate, got {other:?}"),
    }
    let status = client
        .renew_connectivity(
            colleague
                .request(RenewConnectivityRequest {
                    session_id: session_id.clone(),
                    path: 0,
                })
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    // An admin ends it, with a device proof; the agent is told.
    let proof = f
        .owner
        .session_proof(tucdesk_rendezvous::sessions::END_METHOD, &session_id)
        .unwrap();
    let ended = client
        .end_session(
            f.owner
                .request(EndSessionRequest {
                    session_id: session_id.clone(),
                    reason: "maintenance".into(),
                    proof: Some(proof),
                })
                .unwrap(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ended.state, SessionState::Ended as i32);
    let terminate = conn.next(WAIT).await.unwrap().unwrap();
    match terminate.kind {
        Some(ServerKind::TerminateSession(t)) => assert_eq!(t.session_id, session_id),
        other => panic!("expected TerminateSession, got {other:?}"),
    }
    let actions = f.actions().await;
    assert!(actions.contains(&"session.start".to_owned()));
    assert!(actions.contains(&"session.terminated".to_owned()));
    f.cleanup().await;
}

/// Embedded only: on the shared NATS of the machine, concurrently running suites publish relay
/// heartbeats too, and a deployment rightly falls back to relays of other regions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_relay_sessions_fail_clearly() {
    let dep = Deployment::new(Backend::Embedded).await.unwrap();
    let rdv = dep.replica().await.unwrap();
    let owner = dep
        .team(&format!("o-{}@example.com", common::short_id()))
        .await
        .unwrap();
    let token = rdv.enrollment_token(&owner, &[]).await.unwrap();
    let agent = SimAgent::new(tucdesk_testkit::rendezvous::AUDIENCE).unwrap();
    agent
        .enroll(&mut rdv.agent_client(), &token, "a", &[])
        .await
        .unwrap();
    let mut conn = agent.connect(&mut rdv.agent_client()).await.unwrap();
    let status = rdv
        .operator_client()
        .create_session(owner.request(shell(&owner, &agent).request).unwrap())
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::NoRelay);
    assert!(conn.next_offer(Duration::from_millis(300)).await.is_none());
    rdv.stop().await;
    dep.cleanup().await;
}

async fn ice_signals_flow_between_the_two_sides_of_a_session(backend: Backend) {
    let f = Fixture::new(backend).await;
    let other = f.dep.replica().await.unwrap();
    let agent = f.enrolled("web-1", &[]).await;
    // Agent on one replica, operator on the other.
    let mut conn = agent.connect(&mut other.agent_client()).await.unwrap();
    let ask = shell(&f.owner, &agent);
    let session_id = ask.request.session_id.clone();
    let call = common::spawn_session(&f, &f.owner, ask.request.clone());
    let offer = conn.next_offer(WAIT).await.unwrap();
    conn.accept(&agent.identity, &offer).await.unwrap();
    accepted(call.await.unwrap().unwrap().into_inner());

    let (to_server, from_operator) = tokio::sync::mpsc::channel(8);
    to_server
        .send(SessionSignal {
            session_id: session_id.clone(),
            signal: Some(Signal::Description(SessionDescription {
                r#type: SdpType::Offer as i32,
                sdp: "v=0 operator".into(),
            })),
        })
        .await
        .unwrap();
    let mut from_agent = f
        .rdv
        .operator_client()
        .session_signals(
            f.owner
                .request(tokio_stream::wrappers::ReceiverStream::new(from_operator))
                .unwrap(),
        )
        .await
        .unwrap()
        .into_inner();
    // The operator's SDP reaches the agent ...
    let message = conn.next(WAIT).await.unwrap().unwrap();
    match message.kind {
        Some(ServerKind::Signal(signal)) => {
            assert_eq!(signal.session_id, session_id);
            assert!(
                matches!(signal.signal, Some(Signal::Description(d)) if d.sdp == "v=0 operator")
            );
        }
        other => panic!("expected a signal, got {other:?}"),
    }
    // ... and the agent's candidate reaches the operator.
    let candidate = |session_id: &str| {
        tucdesk_proto::v1::agent_message::Kind::Signal(SessionSignal {
            session_id: session_id.to_owned(),
            signal: Some(Signal::Candidate(IceCandidate {
                candidate: "candidate:1 1 udp 1 192.0.2.1 40000 typ host".into(),
                ..Default::default()
            })),
        })
    };
    // A signal about a session that is not the agent's goes nowhere.
    conn.send(candidate(&uuid::Uuid::new_v4().to_string()))
        .await
        .unwrap();
    conn.send(candidate(&session_id)).await.unwrap();
    let got = tokio::time::timeout(WAIT, from_agent.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.session_id, session_id);
    assert!(matches!(got.signal, Some(Signal::Candidate(_))));

    // Another team member cannot open the session's signaling.
    let colleague = f
        .dep
        .user(
            &f.owner,
            &format!("op-{}@example.com", common::short_id()),
            Role::Operator,
        )
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(SessionSignal {
        session_id: session_id.clone(),
        signal: Some(Signal::EndOfCandidates(true)),
    })
    .await
    .unwrap();
    let status = f
        .rdv
        .operator_client()
        .session_signals(
            colleague
                .request(tokio_stream::wrappers::ReceiverStream::new(rx))
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    drop(to_server);
    other.stop().await;
    f.cleanup().await;
}

on_both_backends!(
    a_session_is_negotiated_and_both_sides_share_keys,
    an_offer_crosses_replicas,
    policy_denial_stops_the_session_before_the_agent_sees_an_offer,
    offline_busy_refusing_and_silent_agents,
    bad_requests_are_refused_before_policy,
    another_teams_agents_are_not_found,
    sessions_are_reported_listed_and_ended,
    ice_signals_flow_between_the_two_sides_of_a_session,
);
