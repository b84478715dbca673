//! The WebSocket relay: pairing by session and ticket, ticket checks, a third party, limits
//! that close only the offending session, backpressure, and ciphertext only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::SinkExt as _;
use tokio_tungstenite::tungstenite::Message;
use tucdesk_proto::v1::relay_control::Kind;
use tucdesk_proto::v1::{RejectReason, RelayCloseCode, Side};
use tucdesk_svc::bus::MemoryBus;
use tucdesk_testkit::relay_node::{Socket, TestRelay, close_code, join, next_control, test_config};
use tucdesk_testkit::{Backend, Operator, TestAuth};

const WAIT: Duration = Duration::from_secs(10);

struct Fixture {
    auth: TestAuth,
    owner: Operator,
    relay: TestRelay,
}

async fn fixture(adjust: impl FnOnce(&mut tucdesk_relay::RelayConfig)) -> Fixture {
    let auth = TestAuth::start(Backend::Embedded).await.unwrap();
    let owner = auth.new_team("owner@example.com").await.unwrap();
    let mut config = test_config("relay-test-1");
    adjust(&mut config);
    let relay = TestRelay::start(&auth, Arc::new(MemoryBus::new()), config)
        .await
        .unwrap();
    Fixture { auth, owner, relay }
}

/// A fresh session id and its two tickets for `node`.
async fn tickets(f: &Fixture, node: &str, ttl: u32) -> (String, String, String) {
    let session_id = uuid::Uuid::new_v4().to_string();
    let agent = tucdesk_crypto::Identity::generate().unwrap().agent_id();
    let minted = f
        .auth
        .mint_session(&f.owner, &agent, &session_id, node, ttl)
        .await
        .unwrap();
    (
        session_id,
        minted.operator_relay_ticket,
        minted.agent_relay_ticket,
    )
}

/// Both sides of a fresh session, paired.
async fn paired(f: &Fixture) -> (String, Socket, Socket) {
    let (session_id, operator_ticket, agent_ticket) = tickets(f, "relay-test-1", 0).await;
    let url = f.relay.url(&session_id);
    let (mut operator, first) = join(&url, &session_id, Side::Operator, &operator_ticket)
        .await
        .unwrap();
    assert!(matches!(first.kind, Some(Kind::Waiting(_))), "{first:?}");
    let (agent, second) = join(&url, &session_id, Side::Agent, &agent_ticket)
        .await
        .unwrap();
    assert!(matches!(second.kind, Some(Kind::Paired(_))), "{second:?}");
    let paired = next_control(&mut operator).await.unwrap();
    assert!(matches!(paired.kind, Some(Kind::Paired(_))), "{paired:?}");
    (session_id, operator, agent)
}

async fn next_binary(socket: &mut tucdesk_testkit::relay_node::Socket) -> Vec<u8> {
    tucdesk_testkit::relay_node::next_binary(socket)
        .await
        .unwrap()
}

fn rejected_reason(control: &tucdesk_proto::v1::RelayControl) -> RejectReason {
    match &control.kind {
        Some(Kind::Rejected(rejected)) => {
            RejectReason::try_from(rejected.reason).unwrap_or(RejectReason::Unspecified)
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paired_sides_exchange_binary_messages_unchanged() {
    let f = fixture(|_| {}).await;
    let (_sid, mut operator, mut agent) = paired(&f).await;
    for size in [
        1usize,
        100,
        16 * 1024,
        tucdesk_proto::limits::MAX_SEALED_FRAME_LEN,
    ] {
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        operator
            .send(Message::Binary(payload.clone().into()))
            .await
            .unwrap();
        assert_eq!(next_binary(&mut agent).await, payload);
        agent
            .send(Message::Binary(payload.clone().into()))
            .await
            .unwrap();
        assert_eq!(next_binary(&mut operator).await, payload);
    }
    // One side leaving closes the other with PEER_GONE.
    operator.close(None).await.unwrap();
    assert_eq!(
        close_code(&mut agent, WAIT).await,
        Some(RelayCloseCode::PeerGone as u16)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tickets_are_refused() {
    let f = fixture(|_| {}).await;
    let (session_id, operator_ticket, agent_ticket) = tickets(&f, "relay-test-1", 0).await;
    let url = f.relay.url(&session_id);

    // For another node.
    let (other_sid, other_ticket, _) = tickets(&f, "relay-elsewhere", 0).await;
    let (mut socket, control) = join(
        &f.relay.url(&other_sid),
        &other_sid,
        Side::Operator,
        &other_ticket,
    )
    .await
    .unwrap();
    assert_eq!(rejected_reason(&control), RejectReason::TokenInvalid);
    assert_eq!(
        close_code(&mut socket, WAIT).await,
        Some(RelayCloseCode::TicketInvalid as u16)
    );

    // For another session (a ticket of session B presented for session A).
    let (b_sid, b_ticket, _) = tickets(&f, "relay-test-1", 0).await;
    let (_, control) = join(&url, &session_id, Side::Operator, &b_ticket)
        .await
        .unwrap();
    assert_eq!(rejected_reason(&control), RejectReason::TokenInvalid);
    let _ = b_sid;

    // The operator's ticket presented as the agent.
    let (_, control) = join(&url, &session_id, Side::Agent, &operator_ticket)
        .await
        .unwrap();
    assert_eq!(rejected_reason(&control), RejectReason::TokenInvalid);

    // Garbage.
    let (_, control) = join(&url, &session_id, Side::Agent, "not.a.ticket")
        .await
        .unwrap();
    assert_eq!(rejected_reason(&control), RejectReason::TokenInvalid);

    // A valid ticket works once; its second use is refused even after the first left.
    let (first, control) = join(&url, &session_id, Side::Agent, &agent_ticket)
        .await
        .unwrap();
    assert!(matches!(control.kind, Some(Kind::Waiting(_))));
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, control) = join(&url, &session_id, Side::Agent, &agent_ticket)
        .await
        .unwrap();
    assert_eq!(rejected_reason(&control), RejectReason::TokenReused);

    // Expired (minted for one second; this node allows no clock leeway).
    let (exp_sid, exp_ticket, _) = tickets(&f, "relay-test-1", 1).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, control) = join(
        &f.relay.url(&exp_sid),
        &exp_sid,
        Side::Operator,
        &exp_ticket,
    )
    .await
    .unwrap();
    assert_eq!(rejected_reason(&control), RejectReason::TokenExpired);

    let refused = f
        .relay
        .relay
        .stats()
        .rejected
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(refused >= 6, "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_connection_is_refused() {
    let f = fixture(|_| {}).await;
    let (session_id, mut operator, mut agent) = paired(&f).await;
    // Fresh, valid tickets for the same session (as RenewConnectivity gives) do not get a
    // third party in.
    let agent_key = tucdesk_crypto::Identity::generate().unwrap().agent_id();
    let renewed = f
        .auth
        .mint_session(&f.owner, &agent_key, &session_id, "relay-test-1", 0)
        .await
        .unwrap();
    let (_, control) = join(
        &f.relay.url(&session_id),
        &session_id,
        Side::Operator,
        &renewed.operator_relay_ticket,
    )
    .await
    .unwrap();
    assert_eq!(rejected_reason(&control), RejectReason::AlreadyExists);
    // The pair is unaffected.
    operator
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(next_binary(&mut agent).await, vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_message_closes_only_its_session() {
    let f = fixture(|_| {}).await;
    let (_a, mut a_operator, mut a_agent) = paired(&f).await;
    let (_b, mut b_operator, mut b_agent) = paired(&f).await;
    let too_big = vec![0u8; tucdesk_proto::limits::MAX_SEALED_FRAME_LEN + 1];
    let _ = a_operator.send(Message::Binary(too_big.into())).await;
    assert_eq!(
        close_code(&mut a_agent, WAIT).await,
        Some(RelayCloseCode::PeerGone as u16)
    );
    b_operator
        .send(Message::Binary(vec![9; 10].into()))
        .await
        .unwrap();
    assert_eq!(next_binary(&mut b_agent).await, vec![9; 10]);
    let ended = f
        .relay
        .relay
        .metrics()
        .sessions
        .with_label_values(&["frame_too_large"])
        .get();
    assert_eq!(ended, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_closes_only_its_session() {
    let f = fixture(|config| {
        config.session_bytes_per_sec = 64 * 1024;
        config.session_burst_bytes = 64 * 1024;
        config.flood_grace = Duration::from_millis(500);
    })
    .await;
    let (_a, mut a_operator, mut a_agent) = paired(&f).await;
    let (_b, mut b_operator, mut b_agent) = paired(&f).await;
    // Session A floods; the agent side drains so only the rate limit can stop it.
    let flooder = tokio::spawn(async move {
        for _ in 0..256 {
            if a_operator
                .send(Message::Binary(vec![0u8; 16 * 1024].into()))
                .await
                .is_err()
            {
                break;
            }
        }
        a_operator
    });
    let code = close_code(&mut a_agent, WAIT).await;
    assert_eq!(code, Some(RelayCloseCode::PeerGone as u16));
    let mut a_operator = flooder.await.unwrap();
    assert_eq!(
        close_code(&mut a_operator, WAIT).await,
        Some(RelayCloseCode::RateLimited as u16)
    );
    // Session B is unaffected.
    b_operator
        .send(Message::Binary(vec![7; 100].into()))
        .await
        .unwrap();
    assert_eq!(next_binary(&mut b_agent).await, vec![7; 100]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_slows_its_sender_instead_of_growing_relay_memory() {
    let f = fixture(|_| {}).await;
    let (_sid, operator, _agent_never_reads) = paired(&f).await;
    let frame = vec![0u8; 60 * 1024];
    let sender = tokio::spawn(async move {
        let mut operator = operator;
        let mut sent = 0usize;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(
                Duration::from_millis(200),
                operator.send(Message::Binary(frame.clone().into())),
            )
            .await
            {
                Ok(Ok(())) => sent += frame.len(),
                Ok(Err(_)) => break,
                // Blocked: the relay stopped reading from us.
                Err(_) => {}
            }
        }
        sent
    });
    let sent = sender.await.unwrap();
    let taken_in = f
        .relay
        .relay
        .stats()
        .bytes_in
        .load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("slow reader: sender got {sent} bytes out, the relay read {taken_in}");
    // Without backpressure the relay would read everything offered (hundreds of MiB in 3 s on
    // loopback); with it, what it read is bounded by socket buffers and two queued frames.
    assert!(
        taken_in < 48 * 1024 * 1024,
        "the relay read {taken_in} bytes"
    );
    assert!(sent < 96 * 1024 * 1024, "the sender got {sent} bytes out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_only_ever_handles_ciphertext() {
    let f = fixture(|_| {}).await;
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::new(Mutex::new(Vec::new()));
    let tap = seen.clone();
    f.relay.relay.set_tap(Arc::new(move |payload: &[u8]| {
        tap.lock().unwrap().push(payload.to_vec());
    }));
    // Real session keys from the handshake, as viewer and agent derive them.
    let device = tucdesk_crypto::Identity::generate().unwrap();
    let agent_identity = tucdesk_crypto::Identity::generate().unwrap();
    let session_id = uuid::Uuid::new_v4().to_string();
    let (handshake, offer) =
        tucdesk_crypto::OperatorHandshake::start(&device, &session_id, agent_identity.public_key())
            .unwrap();
    let (answer, agent_keys) = tucdesk_crypto::agent_respond(&agent_identity, &offer).unwrap();
    let operator_keys = handshake.finish(&answer).unwrap();
    let (mut seal_to_agent, mut open_from_agent) = operator_keys.into_operator_channel();
    let (mut seal_to_operator, mut open_from_operator) = agent_keys.into_agent_channel();

    let (_sid, mut operator, mut agent) = paired(&f).await;
    const SECRET: &[u8] = b"rm -rf /srv/customer-data # the password is hunter2";
    for _ in 0..5 {
        let sealed = seal_to_agent.seal(SECRET).unwrap();
        operator.send(Message::Binary(sealed.into())).await.unwrap();
        let received = next_binary(&mut agent).await;
        assert_eq!(open_from_operator.open(&received).unwrap(), SECRET);
        let sealed = seal_to_operator.seal(SECRET).unwrap();
        agent.send(Message::Binary(sealed.into())).await.unwrap();
        let received = next_binary(&mut operator).await;
        assert_eq!(open_from_agent.open(&received).unwrap(), SECRET);
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 10, "every forwarded frame was observed");
    for payload in seen.iter() {
        assert!(
            !payload.windows(SECRET.len()).any(|w| w == SECRET),
            "plaintext reached the relay"
        );
        assert!(!payload.windows(7).any(|w| w == b"hunter2"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaired_side_times_out() {
    let f = fixture(|config| config.pairing_timeout = Duration::from_millis(300)).await;
    let (session_id, operator_ticket, _) = tickets(&f, "relay-test-1", 0).await;
    let (mut socket, control) = join(
        &f.relay.url(&session_id),
        &session_id,
        Side::Operator,
        &operator_ticket,
    )
    .await
    .unwrap();
    assert!(matches!(control.kind, Some(Kind::Waiting(w)) if w.timeout_ms == 300));
    assert_eq!(
        close_code(&mut socket, WAIT).await,
        Some(RelayCloseCode::PairingTimeout as u16)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_refuses_without_spending_the_ticket() {
    let f = fixture(|config| config.max_sessions = 1).await;
    let (_a, mut a_operator, mut a_agent) = paired(&f).await;
    let (session_id, operator_ticket, _) = tickets(&f, "relay-test-1", 0).await;
    let url = f.relay.url(&session_id);
    let (mut refused, control) = join(&url, &session_id, Side::Operator, &operator_ticket)
        .await
        .unwrap();
    assert_eq!(rejected_reason(&control), RejectReason::LimitExceeded);
    assert_eq!(
        close_code(&mut refused, WAIT).await,
        Some(RelayCloseCode::RateLimited as u16)
    );
    // Once the first session ends there is room, and the same ticket still works.
    a_operator.close(None).await.unwrap();
    let _ = close_code(&mut a_agent, WAIT).await;
    assert!(
        tucdesk_testkit::eventually(WAIT, || async {
            f.relay
                .relay
                .stats()
                .active_sessions
                .load(std::sync::atomic::Ordering::Relaxed)
                == 0
        })
        .await
    );
    let (_socket, control) = join(&url, &session_id, Side::Operator, &operator_ticket)
        .await
        .unwrap();
    assert!(
        matches!(control.kind, Some(Kind::Waiting(_))),
        "{control:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_say_hello_are_bounded() {
    // Two sockets per session plus the waiting ones: 1 × 2 + 1 = 3.
    let f = fixture(|config| {
        config.max_sessions = 1;
        config.max_waiting = 1;
    })
    .await;
    let url = f.relay.url(&uuid::Uuid::new_v4().to_string());
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(tokio_tungstenite::connect_async(&url).await.unwrap().0);
    }
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("a fourth connection must be refused, got {other:?}"),
    }
    // A silent socket that goes away frees its place.
    drop(silent.pop());
    assert!(
        tucdesk_testkit::eventually(WAIT, || async {
            tokio_tungstenite::connect_async(&url).await.is_ok()
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_stream_is_not_idle_but_silence_is() {
    let idle = Duration::from_secs(1);
    let f = fixture(|config| config.idle_timeout = idle).await;
    let (_session, mut operator, mut agent) = paired(&f).await;
    // Only the operator speaks, for 2.5 idle periods: the agent's direction being silent
    // must not end the session.
    for round in 0..10u8 {
        operator
            .send(Message::Binary(vec![round; 4].into()))
            .await
            .unwrap();
        assert_eq!(next_binary(&mut agent).await, vec![round; 4]);
        tokio::time::sleep(idle / 4).await;
    }
    // Then nobody speaks.
    let started = std::time::Instant::now();
    assert_eq!(
        close_code(&mut agent, WAIT).await,
        Some(RelayCloseCode::IdleTimeout as u16)
    );
    assert!(started.elapsed() >= idle / 2, "closed before going idle");
    assert_eq!(
        close_code(&mut operator, WAIT).await,
        Some(RelayCloseCode::IdleTimeout as u16)
    );
}
