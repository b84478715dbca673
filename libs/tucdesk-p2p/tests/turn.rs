//! The TURN path through a real coturn on 127.0.0.1, with TURN REST credentials minted the way
//! rendezvous mints them (`tucdesk_crypto::turn`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::net::UdpSocket;
use tucdesk_p2p::{IceConfig, P2pError, P2pOptions};
use tucdesk_proto::limits::MAX_SEALED_FRAME_LEN;
use tucdesk_proto::v1::{IceServer, IceTransportPolicy, Path};
use tucdesk_transport::{MessagePipe, PipeError};

const SECRET: &str = "p2p-test-turn-secret";

/// coturn on loopback with a REST secret, on free ports; killed on drop.
struct Coturn {
    _child: tokio::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A STUN binding request (RFC 8489 header only) to see whether coturn is up.
fn binding_request() -> [u8; 20] {
    let mut request = [0u8; 20];
    request[..2].copy_from_slice(&0x0001u16.to_be_bytes());
    request[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    request[8..].copy_from_slice(b"tucdesk-p2p!");
    request
}

async fn start_coturn() -> Coturn {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let relay_base = 40_000 + (port % 20_000);
    // The production configuration (`tucdesk-relay coturn-config`) plus what a test on one
    // machine needs. Both peers run here, so every peer address coturn relays to is
    // 127.0.0.1: coturn refuses loopback peers unless `allow-loopback-peers` is given (and the
    // production config also lists 127.0.0.0/8 in `denied-peer-ip`), so this instance allows
    // exactly 127.0.0.1 and nothing else. Never do this on a real relay node: a TURN server
    // that relays to loopback is a door into the node itself.
    let conf = format!(
        "listening-ip=127.0.0.1\n\
         listening-port={port}\n\
         relay-ip=127.0.0.1\n\
         min-port={relay_base}\n\
         max-port={max_port}\n\
         realm=tucdesk\n\
         use-auth-secret\n\
         static-auth-secret={SECRET}\n\
         fingerprint\n\
         no-cli\n\
         no-tls\n\
         no-dtls\n\
         no-tcp\n\
         no-multicast-peers\n\
         allow-loopback-peers\n\
         allowed-peer-ip=127.0.0.1\n\
         pidfile={pid}\n\
         userdb={db}\n\
         log-file=stdout\n\
         simple-log\n",
        max_port = relay_base + 50,
        pid = dir.path().join("turnserver.pid").display(),
        db = dir.path().join("turndb").display(),
    );
    let path = dir.path().join("turnserver.conf");
    std::fs::write(&path, conf).unwrap();
    let child = tokio::process::Command::new("turnserver")
        .arg("-c")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("coturn (turnserver) must be installed: apt-get install coturn");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let probe = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buffer = [0u8; 512];
    for _ in 0..100 {
        let _ = probe.send_to(&binding_request(), addr).await;
        if tokio::time::timeout(Duration::from_millis(100), probe.recv_from(&mut buffer))
            .await
            .is_ok()
        {
            return Coturn {
                _child: child,
                addr,
                _dir: dir,
            };
        }
    }
    panic!("coturn did not come up");
}

/// The session's ICE configuration as rendezvous would send it: coturn as STUN and TURN,
/// credentials minted from `secret` for this session.
fn ice_config(coturn: &Coturn, secret: &str, policy: IceTransportPolicy) -> IceConfig {
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let credential =
        tucdesk_crypto::turn::turn_credential(secret.as_bytes(), SESSION, expires).unwrap();
    IceConfig {
        servers: vec![
            IceServer {
                urls: vec![format!("stun:{}", coturn.addr)],
                ..Default::default()
            },
            IceServer {
                urls: vec![format!("turn:{}?transport=udp", coturn.addr)],
                username: credential.username.clone(),
                credential: credential.password.to_string(),
            },
        ],
        expires_at_ms: expires * 1000,
        transport_policy: policy as i32,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_policy_connects_through_coturn() {
    let coturn = start_coturn().await;
    let ice = ice_config(&coturn, SECRET, IceTransportPolicy::Relay);
    let (operator, agent) = connect(&ice, &ice, &loopback_options(), &loopback_options()).await;
    assert_eq!(operator.path(), Path::Turn);
    assert_eq!(agent.path(), Path::Turn);

    for seq in 0..20u64 {
        operator
            .send(numbered(seq, 1000 + seq as usize))
            .await
            .unwrap();
        agent.send(numbered(seq, 2000)).await.unwrap();
    }
    operator
        .send(numbered(99, MAX_SEALED_FRAME_LEN))
        .await
        .unwrap();
    for seq in 0..20u64 {
        let at_agent = tokio::time::timeout(GUARD, agent.recv()).await.unwrap();
        assert_eq!(check_numbered(&at_agent.unwrap().unwrap()), seq);
        let at_operator = tokio::time::timeout(GUARD, operator.recv()).await.unwrap();
        assert_eq!(check_numbered(&at_operator.unwrap().unwrap()), seq);
    }
    let large = tokio::time::timeout(GUARD, agent.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(large.len(), MAX_SEALED_FRAME_LEN);
    assert_eq!(check_numbered(&large), 99);
    operator.close().await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_path_allowed_the_direct_one_wins() {
    let coturn = start_coturn().await;
    let ice = ice_config(&coturn, SECRET, IceTransportPolicy::All);
    let (operator, agent) = connect(&ice, &ice, &loopback_options(), &loopback_options()).await;
    assert_eq!(operator.path(), Path::Direct);
    assert_eq!(agent.path(), Path::Direct);
    operator.send(b"direct".to_vec()).await.unwrap();
    let received = tokio::time::timeout(GUARD, agent.recv()).await.unwrap();
    assert_eq!(received.unwrap().unwrap(), b"direct");
    operator.close().await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_coturn_refuses_end_in_the_deadline_error() {
    let coturn = start_coturn().await;
    // Minted with another secret: coturn answers 401, no relay candidate, relay-only policy.
    let ice = ice_config(&coturn, "not-the-secret", IceTransportPolicy::Relay);
    let options = P2pOptions {
        connect_deadline: Duration::from_secs(3),
        ..loopback_options()
    };
    let (mut to_agent, mut to_operator) = tucdesk_p2p::memory_pair(SIGNAL_CAPACITY);
    let (dialed, accepted) = tokio::time::timeout(GUARD, async {
        tokio::join!(
            tucdesk_p2p::dial(SESSION, &ice, &options, &mut to_agent),
            tucdesk_p2p::accept(SESSION, &ice, &options, &mut to_operator),
        )
    })
    .await
    .unwrap();
    for result in [dialed, accepted] {
        assert!(
            matches!(result, Err(P2pError::Deadline(_) | P2pError::Failed)),
            "{result:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_turn_server_surfaces_as_a_pipe_error() {
    let coturn = start_coturn().await;
    let ice = ice_config(&coturn, SECRET, IceTransportPolicy::Relay);
    let (operator, agent) = connect(&ice, &ice, &loopback_options(), &loopback_options()).await;
    assert_eq!(agent.path(), Path::Turn);
    operator.send(b"before".to_vec()).await.unwrap();
    let received = tokio::time::timeout(GUARD, agent.recv()).await.unwrap();
    assert_eq!(received.unwrap().unwrap(), b"before");

    // The relay goes away mid-session (coturn killed): no clean close reaches either side.
    drop(coturn);
    let lost = tokio::time::timeout(GUARD, agent.recv()).await.unwrap();
    assert!(matches!(lost, Err(PipeError::Io(_))), "{lost:?}");
    let lost = tokio::time::timeout(GUARD, async {
        loop {
            if let Err(err) = operator.send(b"after".to_vec()).await {
                return err;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap();
    assert!(matches!(lost, PipeError::Io(_)), "{lost:?}");
    operator.close().await;
    agent.close().await;
}

/// Bulk data through TURN arrives whole and in order, with the sender held to its bounded
/// buffer throughout (what a shell's `cat` of a large file does). webrtc-rs 0.21.1 as
/// released stalled such a stream for a timer tick at every acknowledgement (see
/// vendor/webrtc/PATCHED.md); the speed is measured by the path benchmark, not here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_data_through_turn_arrives_whole_and_in_order() {
    let coturn = start_coturn().await;
    let ice = ice_config(&coturn, SECRET, IceTransportPolicy::Relay);
    let (operator, agent) = connect(&ice, &ice, &loopback_options(), &loopback_options()).await;
    assert_eq!(agent.path(), Path::Turn);
    const COUNT: u64 = 160; // 160 sealed frames of 64 KiB: 10 MiB
    let sender = agent.clone();
    let send = tokio::spawn(async move {
        for seq in 0..COUNT {
            sender
                .send(numbered(seq, MAX_SEALED_FRAME_LEN))
                .await
                .unwrap();
            assert!(
                sender.buffered_amount().await <= sender.send_buffer_limit() + MAX_SEALED_FRAME_LEN
            );
        }
    });
    for seq in 0..COUNT {
        let message = tokio::time::timeout(GUARD, operator.recv())
            .await
            .unwrap_or_else(|_| panic!("message {seq} never arrived"))
            .unwrap()
            .unwrap();
        assert_eq!(message.len(), MAX_SEALED_FRAME_LEN);
        assert_eq!(check_numbered(&message), seq);
    }
    send.await.unwrap();
    operator.close().await;
    agent.close().await;
}

/// The agent sends its first frame (the session Hello) the moment its end of the channel
/// opens, which can be before the viewer's end reports open; that message must not be lost
/// (it was, through TURN: "first frame is not Hello").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_the_moment_the_channel_opens_arrives() {
    let coturn = start_coturn().await;
    for policy in [IceTransportPolicy::Relay, IceTransportPolicy::All] {
        let ice = ice_config(&coturn, SECRET, policy);
        let (mut to_agent, mut to_operator) = tucdesk_p2p::memory_pair(SIGNAL_CAPACITY);
        let options = loopback_options();
        let (dialed, first_sent) = tokio::time::timeout(GUARD, async {
            tokio::join!(
                tucdesk_p2p::dial(SESSION, &ice, &options, &mut to_agent),
                async {
                    let agent = tucdesk_p2p::accept(SESSION, &ice, &options, &mut to_operator)
                        .await
                        .unwrap();
                    agent.send(b"hello first".to_vec()).await.unwrap();
                    agent
                },
            )
        })
        .await
        .unwrap();
        let operator = dialed.unwrap();
        let first = tokio::time::timeout(GUARD, operator.recv()).await.unwrap();
        assert_eq!(first.unwrap().unwrap(), b"hello first", "{policy:?}");
        operator.close().await;
        first_sent.close().await;
    }
}
