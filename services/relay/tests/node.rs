//! The node around the pipe: STUN over UDP, heartbeats on NATS, draining (in-process and on
//! SIGTERM to the real binary), the admin API, and coturn with credentials minted the way
//! rendezvous mints them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::SinkExt as _;
use prost::Message as _;
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;
use tucdesk_crypto::{Identity, ServiceSigner};
use tucdesk_proto::v1::relay_admin_client::RelayAdminClient;
use tucdesk_proto::v1::relay_control::Kind;
use tucdesk_proto::v1::{DrainRequest, RelayCloseCode, RelayHeartbeat, RelayStatusRequest, Side};
use tucdesk_stun as stun;
use tucdesk_svc::bus::Bus;
use tucdesk_svc::testing::{nats_url, unique_name};
use tucdesk_testkit::relay_node::{TestRelay, close_code, join, next_control, test_config};
use tucdesk_testkit::{Backend, TestAuth};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stun_binding_requests_get_the_reflexive_address_within_the_rate() {
    let auth = TestAuth::start(Backend::Embedded).await.unwrap();
    let mut config = test_config("relay-stun");
    config.stun_per_source_per_sec = 5;
    let relay = TestRelay::start(&auth, Arc::new(tucdesk_svc::bus::MemoryBus::new()), config)
        .await
        .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(relay.stun_addr).await.unwrap();
    let mut buffer = [0u8; 1500];
    for fingerprint in [false, true] {
        client
            .send(&stun::binding_request([fingerprint as u8; 12], fingerprint))
            .await
            .unwrap();
        let len = tokio::time::timeout(WAIT, client.recv(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stun::parse_xor_mapped_address(&buffer[..len]),
            Some(client.local_addr().unwrap())
        );
    }
    // Junk gets nothing back.
    client.send(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), client.recv(&mut buffer))
            .await
            .is_err()
    );
    // A burst beyond the per-source rate is answered only up to the rate.
    for i in 0..20u8 {
        client
            .send(&stun::binding_request([i; 12], false))
            .await
            .unwrap();
    }
    let mut answered = 0;
    while tokio::time::timeout(Duration::from_millis(300), client.recv(&mut buffer))
        .await
        .is_ok()
    {
        answered += 1;
    }
    assert!(answered <= 5, "{answered} answers to a burst of 20 at 5/s");
    let limited = relay
        .relay
        .metrics()
        .stun
        .with_label_values(&["rate_limited"])
        .get();
    assert!(limited >= 15, "{limited}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_reach_nats_subscribers_and_announce_draining() {
    let auth = TestAuth::start(Backend::Embedded).await.unwrap();
    let bus: Arc<dyn Bus> = tucdesk_svc::bus::connect(&nats_url(), "relay-test")
        .await
        .unwrap();
    let node = unique_name("node-").replace('.', "-");
    let mut subscription = bus
        .subscribe(&format!("relay.heartbeat.{node}"))
        .await
        .unwrap();
    let relay = TestRelay::start(&auth, bus.clone(), test_config(&node))
        .await
        .unwrap();
    let message = tokio::time::timeout(WAIT, subscription.next())
        .await
        .unwrap()
        .unwrap();
    let heartbeat = RelayHeartbeat::decode(message.payload).unwrap();
    assert_eq!(heartbeat.node_id, node);
    assert_eq!(heartbeat.ws_url, format!("ws://{}/v1/pipe", relay.ws_addr));
    assert_eq!(
        heartbeat.stun_urls,
        vec![format!("stun:{}", relay.stun_addr)]
    );
    assert!(!heartbeat.draining);
    assert_eq!(heartbeat.capacity_sessions, 10_000);
    relay.shut_down();
    let draining = tokio::time::timeout(WAIT, async {
        loop {
            let message = subscription.next().await.unwrap();
            let heartbeat = RelayHeartbeat::decode(message.payload).unwrap();
            if heartbeat.draining {
                return heartbeat;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(draining.node_id, node);
    relay.stopped(WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_refuses_new_pairings_and_ends_live_sessions_at_the_deadline() {
    let auth = TestAuth::start(Backend::Embedded).await.unwrap();
    let owner = auth.new_team("owner@example.com").await.unwrap();
    let relay = TestRelay::start(
        &auth,
        Arc::new(tucdesk_svc::bus::MemoryBus::new()),
        test_config("relay-drain"),
    )
    .await
    .unwrap();
    let mint = |sid: String| {
        let agent = Identity::generate().unwrap().agent_id();
        let (auth, owner) = (&auth, &owner);
        async move {
            auth.mint_session(owner, &agent, &sid, "relay-drain", 0)
                .await
                .unwrap()
        }
    };
    let live = uuid::Uuid::new_v4().to_string();
    let tickets = mint(live.clone()).await;
    let (mut operator, _) = join(
        &relay.url(&live),
        &live,
        Side::Operator,
        &tickets.operator_relay_ticket,
    )
    .await
    .unwrap();
    let (mut agent, _) = join(
        &relay.url(&live),
        &live,
        Side::Agent,
        &tickets.agent_relay_ticket,
    )
    .await
    .unwrap();
    next_control(&mut operator).await.unwrap();

    relay.shut_down();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New pairings are refused ...
    let fresh = uuid::Uuid::new_v4().to_string();
    let tickets = mint(fresh.clone()).await;
    let (mut refused, control) = join(
        &relay.url(&fresh),
        &fresh,
        Side::Operator,
        &tickets.operator_relay_ticket,
    )
    .await
    .unwrap();
    assert!(
        matches!(control.kind, Some(Kind::Rejected(_))),
        "{control:?}"
    );
    assert_eq!(
        close_code(&mut refused, WAIT).await,
        Some(RelayCloseCode::Draining as u16)
    );
    // ... the live session goes on until the deadline (2 s in tests) ...
    operator
        .send(Message::Binary(vec![1; 8].into()))
        .await
        .unwrap();
    let echoed = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut agent))
        .await
        .unwrap();
    assert!(matches!(echoed, Some(Ok(Message::Binary(b))) if b.as_ref() == [1; 8]));
    // ... and is then closed with DRAINING, and the node stops.
    assert_eq!(
        close_code(&mut agent, WAIT).await,
        Some(RelayCloseCode::Draining as u16)
    );
    relay.stopped(WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_an_assertion_for_this_node() {
    let auth = TestAuth::start(Backend::Embedded).await.unwrap();
    let seed = tucdesk_crypto::rng::random_secret::<32>().unwrap();
    let ops = Identity::from_seed(&seed);
    let mut config = test_config("relay-admin");
    config.service_keys = vec![format!("ops={}", ops.agent_id())];
    let relay = TestRelay::start(&auth, Arc::new(tucdesk_svc::bus::MemoryBus::new()), config)
        .await
        .unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", relay.admin_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut admin = RelayAdminClient::new(channel);
    let status = admin.status(RelayStatusRequest {}).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let assertion = |audience: &str| {
        let identity = Identity::from_seed(&seed);
        let kid = identity.fingerprint();
        ServiceSigner::new("ops", &kid, identity)
            .unwrap()
            .issue(audience, tucdesk_token::unix_now())
            .unwrap()
    };
    let with = |token: String, body: DrainRequest| {
        let mut request = tonic::Request::new(body);
        request.metadata_mut().insert(
            tucdesk_proto::metadata::SERVICE_ASSERTION,
            token.parse().unwrap(),
        );
        request
    };
    // Addressed to another node.
    let status = admin
        .drain(with(
            assertion("relay-other"),
            DrainRequest {
                drain: true,
                deadline_seconds: 1,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(!relay.relay.is_draining());
    let drained = admin
        .drain(with(
            assertion("relay-admin"),
            DrainRequest {
                drain: true,
                deadline_seconds: 1,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(drained.heartbeat.unwrap().draining);
    assert!(drained.drain_deadline_ms > 0);
    assert!(relay.relay.is_draining());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_drains_and_exits_on_sigterm() {
    let auth = TestAuth::start(Backend::Embedded).await.unwrap();
    let free = |proto: &str| {
        if proto == "udp" {
            std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        } else {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        }
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tucdesk-relay"))
        .args(["--node-id", "relay-sigterm", "--log", "warn"])
        .args(["--ws-addr", &free("tcp").to_string()])
        .args(["--stun-addr", &free("udp").to_string()])
        .args(["--admin-addr", &free("tcp").to_string()])
        .args(["--ops-addr", &free("tcp").to_string()])
        .args(["--auth-url", &auth.url(), "--token-issuer", &auth.issuer])
        .args(["--drain-deadline", "1s"])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Running: still alive after a moment.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the relay exited early"
    );
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// coturn on loopback with the configuration `coturn-config` renders, on free ports.
struct Coturn {
    child: tokio::process::Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

async fn start_coturn(secret: &str) -> Coturn {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let relay_base = 40_000 + (port % 20_000);
    let options = tucdesk_relay::coturn::CoturnOptions {
        listening_port: port,
        listening_ip: "127.0.0.1".parse().unwrap(),
        relay_ip: Some("127.0.0.1".parse().unwrap()),
        min_port: relay_base,
        max_port: relay_base + 50,
        pidfile: Some(dir.path().join("turnserver.pid")),
        userdb: Some(dir.path().join("turndb")),
        ..Default::default()
    };
    let conf = dir.path().join("turnserver.conf");
    tucdesk_relay::coturn::write_config(
        &conf,
        &tucdesk_relay::coturn::render(&options, secret).unwrap(),
    )
    .unwrap();
    let mode = std::fs::metadata(&conf).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let child = tokio::process::Command::new("turnserver")
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("coturn (turnserver) must be installed: apt-get install coturn");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // Ready when it answers a STUN binding request.
    let probe = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buffer = [0u8; 512];
    for _ in 0..50 {
        let _ = probe
            .send_to(&stun::binding_request([5; 12], false), addr)
            .await;
        if tokio::time::timeout(Duration::from_millis(100), probe.recv_from(&mut buffer))
            .await
            .is_ok()
        {
            return Coturn {
                child,
                addr,
                _dir: dir,
            };
        }
    }
    panic!("coturn did not come up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_allocates_with_rendezvous_credentials_and_refuses_expired_ones() {
    let secret = "coturn-test-secret";
    let mut coturn = start_coturn(secret).await;
    let session_id = uuid::Uuid::new_v4().to_string();
    let now = tucdesk_token::unix_now();
    // Minted exactly as rendezvous mints a session's TURN credentials.
    let fresh =
        tucdesk_crypto::turn::turn_credential(secret.as_bytes(), &session_id, now + 300).unwrap();
    let relayed =
        tucdesk_relay::turn_client::allocate(coturn.addr, &fresh.username, &fresh.password)
            .await
            .unwrap();
    assert_eq!(relayed.ip(), std::net::IpAddr::from([127, 0, 0, 1]));
    assert_ne!(relayed.port(), 0);

    let expired =
        tucdesk_crypto::turn::turn_credential(secret.as_bytes(), &session_id, now - 10).unwrap();
    let err =
        tucdesk_relay::turn_client::allocate(coturn.addr, &expired.username, &expired.password)
            .await
            .unwrap_err();
    assert!(
        matches!(
            err,
            tucdesk_relay::turn_client::TurnError::Refused { code: 401, .. }
        ),
        "{err:?}"
    );
    let wrong =
        tucdesk_crypto::turn::turn_credential(b"another-secret", &session_id, now + 300).unwrap();
    let err = tucdesk_relay::turn_client::allocate(coturn.addr, &wrong.username, &wrong.password)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            tucdesk_relay::turn_client::TurnError::Refused { code: 401, .. }
        ),
        "{err:?}"
    );

    // The node's health check, pointed at it, reports it healthy; at a dead port, not.
    let healthy = tucdesk_relay::coturn::check(coturn.addr, secret, "relay-coturn").await;
    assert!(healthy.healthy, "{}", healthy.message);
    let dead =
        tucdesk_relay::coturn::check("127.0.0.1:9".parse().unwrap(), secret, "relay-coturn").await;
    assert!(!dead.healthy);
    let _ = coturn.child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_reports_coturn_health() {
    let secret = "coturn-heartbeat-secret";
    let mut coturn = start_coturn(secret).await;
    let auth = TestAuth::start(Backend::Embedded).await.unwrap();
    let mut config = test_config("relay-hc");
    config.turn_secret = Some(secret.to_owned());
    config.coturn_addr = Some(coturn.addr);
    let relay = TestRelay::start(&auth, Arc::new(tucdesk_svc::bus::MemoryBus::new()), config)
        .await
        .unwrap();
    assert!(
        tucdesk_testkit::eventually(WAIT, || async { relay.relay.coturn_health().healthy }).await,
        "{}",
        relay.relay.coturn_health().message
    );
    let _ = coturn.child.kill().await;
    assert!(
        tucdesk_testkit::eventually(WAIT, || async { !relay.relay.coturn_health().healthy }).await,
        "a dead coturn must be reported"
    );
}
