//! A session from CreateSession to frames over the WebSocket relay: rendezvous negotiates (policy,
//! session token, relay tickets, the agent's signed answer), both sides dial the relay node
//! rendezvous chose, and end-to-end sealed frames flow. The relay only ever sees ciphertext.
//! Runs on the real Postgres, Redis and NATS and on the embedded backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Stack;
use futures::SinkExt as _;
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message;
use tucdesk_proto::v1::create_session_response::Result as Created;
use tucdesk_proto::v1::relay_control::Kind;
use tucdesk_proto::v1::{Frame, RelayControl, SessionKind, Side, frame};
use tucdesk_testkit::relay_node::{join, next_control};
use tucdesk_testkit::{Backend, SimAgent, on_both_backends};

const WAIT: Duration = Duration::from_secs(10);

async fn next_binary(socket: &mut tucdesk_testkit::relay_node::Socket) -> Vec<u8> {
    tucdesk_testkit::relay_node::next_binary(socket)
        .await
        .unwrap()
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

async fn a_negotiated_session_flows_over_the_chosen_relay_as_ciphertext(backend: Backend) {
    // Auth, a rendezvous replica and a relay node in this deployment's region (so rendezvous
    // prefers it), with a tap on everything the relay forwards.
    let stack = Stack::start(backend).await;
    let (rdv, relay, owner) = (&stack.rdv, &stack.relay, &stack.owner);
    let node_id = relay.relay.config().node_id.clone();
    let token = rdv.enrollment_token(owner, &["web"]).await.unwrap();
    let agent = SimAgent::new(tucdesk_testkit::rendezvous::AUDIENCE).unwrap();
    agent
        .enroll(&mut rdv.agent_client(), &token, "web-1", &[])
        .await
        .unwrap();
    let mut link = agent.connect(&mut rdv.agent_client()).await.unwrap();

    let ask = owner
        .session_request(&agent.public_key(), SessionKind::Shell, None)
        .unwrap();
    let session_id = ask.request.session_id.clone();
    let mut client = rdv.operator_client();
    let request = owner.request(ask.request.clone()).unwrap();
    let call = tokio::spawn(async move { client.create_session(request).await });
    let offer = link.next_offer(WAIT).await.unwrap();
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

    // Each side dials the relay rendezvous gave it, with its own ticket.
    let operator_relay = accepted.connectivity.unwrap().relay.unwrap();
    let agent_relay = offer.connectivity.unwrap().relay.unwrap();
    assert_eq!(operator_relay.node_id, node_id);
    assert_eq!(operator_relay.ws_url, agent_relay.ws_url);
    let url = format!("{}/{session_id}", operator_relay.ws_url);
    let (mut operator_ws, waiting): (_, RelayControl) =
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

    let (mut to_agent, mut from_agent) = operator_keys.into_operator_channel();
    let (mut to_operator, mut from_operator) = agent_keys.into_agent_channel();
    const TYPED: &[u8] = b"cat /etc/shadow\n";
    const PRINTED: &[u8] = b"root:$6$secret-hash$:19000:0:99999:7:::\n";
    operator_ws
        .send(Message::Binary(
            to_agent.seal(&output(TYPED)).unwrap().into(),
        ))
        .await
        .unwrap();
    let frame = Frame::decode(
        from_operator
            .open(&next_binary(&mut agent_ws).await)
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    assert!(matches!(frame.kind, Some(frame::Kind::Output(o)) if o.data == TYPED));
    agent_ws
        .send(Message::Binary(
            to_operator.seal(&output(PRINTED)).unwrap().into(),
        ))
        .await
        .unwrap();
    let frame = Frame::decode(
        from_agent
            .open(&next_binary(&mut operator_ws).await)
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    assert!(matches!(frame.kind, Some(frame::Kind::Output(o)) if o.data == PRINTED));

    let seen = stack.seen_by_relay.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for payload in seen.iter() {
        for secret in [TYPED, PRINTED, b"secret-hash".as_slice()] {
            assert!(
                !payload.windows(secret.len()).any(|w| w == secret),
                "plaintext reached the relay"
            );
        }
    }
    stack.stop().await;
}

on_both_backends!(a_negotiated_session_flows_over_the_chosen_relay_as_ciphertext);
