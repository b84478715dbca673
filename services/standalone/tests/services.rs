//! The services of one standalone process find each other: the relay's heartbeats reach
//! rendezvous over the shared bus, agents get the server info, auth trusts rendezvous's
//! service key, and a session negotiated by rendezvous flows over the in-process relay's
//! WebSocket path without any coturn.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use futures::SinkExt as _;
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message;
use tucdesk_crypto::Identity;
use tucdesk_proto::v1::agent_link_client::AgentLinkClient;
use tucdesk_proto::v1::create_session_response::Result as Created;
use tucdesk_proto::v1::operator_service_client::OperatorServiceClient;
use tucdesk_proto::v1::relay_control::Kind;
use tucdesk_proto::v1::{Frame, GetServerInfoRequest, SessionKind, Side, frame};
use tucdesk_standalone::config::DEFAULT_ADMIN_EMAIL;
use tucdesk_standalone::services::{REGION, RELAY_NODE_ID};
use tucdesk_testkit::relay_node::{join, next_binary, next_control};
use tucdesk_testkit::{SimAgent, eventually};

use support::{
    WAIT, accept_setup_token, audit_logged, enrollment_token, http_get, login, start, stop,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_heartbeat_reaches_rendezvous_and_agents_get_the_server_info() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;

    assert!(
        eventually(WAIT, || async {
            stack
                .rendezvous()
                .relays()
                .pick()
                .is_some_and(|relay| relay.node_id == RELAY_NODE_ID)
        })
        .await,
        "rendezvous never heard the in-process relay"
    );
    let relay = stack.rendezvous().relays().pick().unwrap();
    assert_eq!(relay.region, REGION);
    assert_eq!(relay.ws_url, stack.urls().relay_ws);
    assert_eq!(relay.stun_urls, vec![stack.urls().stun.clone()]);
    assert!(relay.turn_urls.is_empty(), "no coturn, so no TURN URLs");
    assert!(!relay.coturn.unwrap_or_default().healthy);

    let info = AgentLinkClient::new(support::rendezvous_channel(&stack).await)
        .get_server_info(GetServerInfoRequest {})
        .await
        .expect("AgentLink answers GetServerInfo")
        .into_inner();
    assert_eq!(info.audience, "tucdesk");
    assert_eq!(info.token_issuer, stack.urls().issuer);
    assert!(!info.jwks.unwrap_or_default().keys.is_empty());
    assert_eq!(
        info.protocol.unwrap_or_default().protocol_version,
        tucdesk_proto::PROTOCOL_VERSION
    );

    // One ops server for the stack: every service's metrics, readiness of the backends.
    let ops = stack.addresses().ops;
    assert_eq!(http_get(ops, "/healthz").await.0, 200);
    let (status, ready) = http_get(ops, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let (status, metrics) = http_get(ops, "/metrics").await;
    assert_eq!(status, 200);
    for service in ["auth", "rendezvous", "relay"] {
        let needle = format!("process_start_time_seconds{{service=\"{service}\"}}");
        assert!(metrics.contains(&needle), "{needle} missing from /metrics");
    }
    // Same-named families of the three registries are merged into one (valid exposition).
    assert_eq!(metrics.matches("# TYPE tucdesk_build_info ").count(), 1);
    stop(stack).await;
}

fn output(data: &[u8]) -> Vec<u8> {
    Frame {
        kind: Some(frame::Kind::Output(tucdesk_proto::v1::Output {
            data: data.to_vec(),
            ..Default::default()
        })),
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_negotiated_by_rendezvous_flows_over_the_in_process_relay() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;
    let token = stack.first_start().unwrap().setup_token.expose().to_owned();
    accept_setup_token(&stack, &token).await;
    let owner = login(&stack, DEFAULT_ADMIN_EMAIL, Identity::generate().unwrap()).await;
    assert!(
        eventually(WAIT, || async {
            stack.rendezvous().relays().pick().is_some()
        })
        .await,
        "rendezvous never heard the in-process relay"
    );

    // An agent enrolls and connects, as tucdesk-agent would.
    let channel = support::rendezvous_channel(&stack).await;
    let mut operator_client = OperatorServiceClient::new(channel.clone());
    let mut agent_client = AgentLinkClient::new(channel);
    let enrollment = enrollment_token(&mut operator_client, &owner).await;
    let agent = SimAgent::new("tucdesk").unwrap();
    agent
        .enroll(&mut agent_client, &enrollment, "web-1", &[])
        .await
        .unwrap();
    let mut link = agent.connect(&mut agent_client).await.unwrap();

    // CreateSession: policy, a session token minted by auth under rendezvous's service key
    // (so auth trusts the key on file), relay tickets for the in-process node.
    let ask = owner
        .session_request(&agent.public_key(), SessionKind::Shell, None)
        .unwrap();
    let session_id = ask.request.session_id.clone();
    let request = owner.request(ask.request.clone()).unwrap();
    let call = tokio::spawn(async move { operator_client.create_session(request).await });
    let offer = link
        .next_offer(WAIT)
        .await
        .expect("the agent gets the offer");
    let agent_keys = link.accept(&agent.identity, &offer).await.unwrap();
    let accepted = match call.await.unwrap().unwrap().into_inner().result {
        Some(Created::Accepted(accepted)) => accepted,
        other => panic!("expected an accepted session, got {other:?}"),
    };
    let reply = accepted.handshake.as_ref().unwrap();
    let operator_keys = ask
        .handshake
        .finish(&tucdesk_crypto::SessionAnswer {
            e_ag_pub: tucdesk_crypto::EphemeralPublic::from_slice(&reply.e_ag_pub).unwrap(),
            signature: tucdesk_crypto::Signature::from_slice(&reply.transcript_signature).unwrap(),
        })
        .unwrap();
    let operator_relay = accepted.connectivity.unwrap().relay.unwrap();
    let agent_relay = offer.connectivity.unwrap().relay.unwrap();
    assert_eq!(operator_relay.node_id, RELAY_NODE_ID);
    assert_eq!(operator_relay.ws_url, stack.urls().relay_ws);

    // Both sides pair on the WebSocket relay and sealed frames flow.
    let url = format!("{}/{session_id}", operator_relay.ws_url);
    let (mut operator_ws, waiting) =
        join(&url, &session_id, Side::Operator, &operator_relay.ticket)
            .await
            .unwrap();
    assert!(
        matches!(waiting.kind, Some(Kind::Waiting(_))),
        "{waiting:?}"
    );
    let (mut agent_ws, paired) = join(&url, &session_id, Side::Agent, &agent_relay.ticket)
        .await
        .unwrap();
    assert!(matches!(paired.kind, Some(Kind::Paired(_))), "{paired:?}");
    next_control(&mut operator_ws).await.unwrap();
    let (mut to_agent, _) = operator_keys.into_operator_channel();
    let (_, mut from_operator) = agent_keys.into_agent_channel();
    const TYPED: &[u8] = b"uptime\n";
    operator_ws
        .send(Message::Binary(
            to_agent.seal(&output(TYPED)).unwrap().into(),
        ))
        .await
        .unwrap();
    let sealed = next_binary(&mut agent_ws).await.unwrap();
    let frame = Frame::decode(from_operator.open(&sealed).unwrap().as_slice()).unwrap();
    assert!(matches!(frame.kind, Some(frame::Kind::Output(o)) if o.data == TYPED));

    assert!(audit_logged(&stack, "auth.session_token_minted").await);
    drop((operator_ws, agent_ws, link));
    stop(stack).await;
}
