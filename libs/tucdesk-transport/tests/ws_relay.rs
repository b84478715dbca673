//! The WebSocket-relay path against a real relay node: both sides pair with their tickets and
//! sealed frames flow; a wrong or spent ticket and a third party are refused with a reason;
//! plain ws:// is only dialled on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tucdesk_proto::v1::{Frame, Output, RelayEndpoint, Side, frame};
use tucdesk_svc::bus::MemoryBus;
use tucdesk_testkit::relay_node::{TestRelay, test_config};
use tucdesk_testkit::{Backend, TestAuth};
use tucdesk_transport::{DialOptions, MessagePipe, RelayDialError, dial_relay, establish};

const NODE: &str = "transport-test-relay";

struct Fixture {
    auth: TestAuth,
    owner: tucdesk_testkit::Operator,
    relay: TestRelay,
}

async fn fixture() -> Fixture {
    let auth = TestAuth::start(Backend::Embedded).await.unwrap();
    let owner = auth.new_team("owner@example.com").await.unwrap();
    let relay = TestRelay::start(&auth, Arc::new(MemoryBus::new()), test_config(NODE))
        .await
        .unwrap();
    Fixture { auth, owner, relay }
}

/// A session id and both sides' endpoints.
async fn endpoints(f: &Fixture) -> (String, RelayEndpoint, RelayEndpoint) {
    let session_id = uuid::Uuid::new_v4().to_string();
    let agent = tucdesk_crypto::Identity::generate().unwrap().agent_id();
    let minted = f
        .auth
        .mint_session(&f.owner, &agent, &session_id, NODE, 0)
        .await
        .unwrap();
    let endpoint = |ticket: String| RelayEndpoint {
        node_id: NODE.into(),
        region: String::new(),
        ws_url: format!("ws://{}/v1/pipe", f.relay.ws_addr),
        ticket,
    };
    (
        session_id,
        endpoint(minted.operator_relay_ticket),
        endpoint(minted.agent_relay_ticket),
    )
}

fn keys(session_id: &str) -> (tucdesk_crypto::SessionKeys, tucdesk_crypto::SessionKeys) {
    let operator = tucdesk_crypto::Identity::generate().unwrap();
    let agent = tucdesk_crypto::Identity::generate().unwrap();
    let (start, offer) =
        tucdesk_crypto::OperatorHandshake::start(&operator, session_id, agent.public_key())
            .unwrap();
    let (answer, agent_keys) = tucdesk_crypto::agent_respond(&agent, &offer).unwrap();
    (start.finish(&answer).unwrap(), agent_keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sides_pair_and_sealed_frames_flow() {
    let f = fixture().await;
    let (session_id, operator_end, agent_end) = endpoints(&f).await;
    let options = DialOptions::default();
    let (operator_pipe, agent_pipe) = tokio::join!(
        dial_relay(&operator_end, &session_id, Side::Operator, &options),
        dial_relay(&agent_end, &session_id, Side::Agent, &options),
    );
    let (operator_pipe, agent_pipe) = (operator_pipe.unwrap(), agent_pipe.unwrap());
    assert_eq!(operator_pipe.path(), tucdesk_proto::v1::Path::Ws);

    // A third party with a spent ticket is refused and does not disturb the pair.
    let third = dial_relay(&agent_end, &session_id, Side::Agent, &options).await;
    assert!(
        matches!(
            third,
            Err(RelayDialError::Refused { .. } | RelayDialError::Closed(_))
        ),
        "{third:?}"
    );

    let (operator_keys, agent_keys) = keys(&session_id);
    let (operator, agent) = tokio::join!(
        establish(
            Arc::new(operator_pipe),
            operator_keys.into_operator_channel(),
            Side::Operator,
            None
        ),
        establish(
            Arc::new(agent_pipe),
            agent_keys.into_agent_channel(),
            Side::Agent,
            None
        ),
    );
    let (mut operator, mut agent) = (operator.unwrap(), agent.unwrap());
    let big = Frame {
        kind: Some(frame::Kind::Output(Output {
            seq: 1,
            data: vec![b'x'; 32 * 1024],
        })),
    };
    for _ in 0..50 {
        agent.sender.send(&big).await.unwrap();
    }
    for _ in 0..50 {
        assert_eq!(operator.receiver.recv().await.unwrap().unwrap(), big);
    }
    operator
        .sender
        .close(tucdesk_proto::v1::CloseReason::Normal, "bye")
        .await;
    let closing = agent.receiver.recv().await.unwrap().unwrap();
    assert!(matches!(closing.kind, Some(frame::Kind::Close(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_for_the_other_side_is_refused_with_its_reason() {
    let f = fixture().await;
    let (session_id, operator_end, _) = endpoints(&f).await;
    let err = dial_relay(
        &operator_end,
        &session_id,
        Side::Agent,
        &DialOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            RelayDialError::Refused { .. } | RelayDialError::Closed(_)
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("relay"), "{err}");
}

#[tokio::test]
async fn plain_ws_is_only_dialled_on_loopback() {
    let endpoint = RelayEndpoint {
        node_id: NODE.into(),
        region: String::new(),
        ws_url: "ws://relay.example.com/v1/pipe".into(),
        ticket: "t".into(),
    };
    let err = dial_relay(
        &endpoint,
        "6f1c5e0a-8a47-4b52-9d6a-0c6a3b1f2e11",
        Side::Agent,
        &DialOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RelayDialError::BadUrl(..)), "{err:?}");
    let bad_scheme = RelayEndpoint {
        ws_url: "http://127.0.0.1:1/v1/pipe".into(),
        ..endpoint
    };
    assert!(matches!(
        dial_relay(&bad_scheme, "x", Side::Agent, &DialOptions::default()).await,
        Err(RelayDialError::BadUrl(..))
    ));
}
