//! `--turn`: the stack runs coturn with a secret made at start, the relay advertises it and
//! health-checks it, rendezvous puts TURN credentials into every session's ICE configuration
//! that coturn accepts, and coturn stops with the stack.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt as _;

use tucdesk_crypto::Identity;
use tucdesk_proto::v1::agent_link_client::AgentLinkClient;
use tucdesk_proto::v1::create_session_response::Result as Created;
use tucdesk_proto::v1::operator_service_client::OperatorServiceClient;
use tucdesk_proto::v1::{IceConfig, SessionKind};
use tucdesk_standalone::config::DEFAULT_ADMIN_EMAIL;
use tucdesk_standalone::{Standalone, StandaloneConfig};
use tucdesk_testkit::{SimAgent, eventually};

use support::{WAIT, accept_setup_token, enrollment_token, login, stop};

/// A stack on ephemeral ports with coturn, relaying to loopback (both test peers are here).
async fn start_with_turn(dir: &std::path::Path) -> Standalone {
    let mut config = StandaloneConfig::ephemeral(dir);
    config.turn = true;
    config.turn_allow_peer = vec!["127.0.0.1/32".parse().unwrap()];
    Standalone::start(config)
        .await
        .expect("the stack starts with coturn (apt-get install coturn)")
}

/// The TURN server of an ICE configuration: (URLs, username, credential).
fn turn_server(ice: &IceConfig) -> (Vec<String>, String, String) {
    let server = ice
        .servers
        .iter()
        .find(|server| server.urls.iter().any(|url| url.starts_with("turn:")))
        .unwrap_or_else(|| panic!("no TURN server in {:?}", ice.servers));
    (
        server.urls.clone(),
        server.username.clone(),
        server.credential.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_turn_sessions_get_credentials_the_stacks_coturn_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_with_turn(dir.path()).await;
    let turn_url = stack.urls().turn.clone().expect("a TURN URL with --turn");
    let turn_addr = stack.addresses().turn.expect("a TURN address with --turn");
    assert_eq!(
        turn_url,
        format!("turn:127.0.0.1:{}?transport=udp", turn_addr.port())
    );
    assert!(stack.summary().contains(&turn_url), "{}", stack.summary());

    // The secret lives in coturn's configuration only, private to the owner.
    let conf = dir.path().join("turn/turnserver.conf");
    let mode = std::fs::metadata(&conf).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("\nallowed-peer-ip=127.0.0.1\n"));
    assert!(text.contains("\ndenied-peer-ip=10.0.0.0-10.255.255.255\n"));

    // The relay advertises coturn and its health check (a real allocation) passes.
    assert!(
        eventually(WAIT, || async {
            stack.rendezvous().relays().pick().is_some_and(|relay| {
                relay.turn_urls == [turn_url.clone()]
                    && relay.coturn.is_some_and(|coturn| coturn.healthy)
            })
        })
        .await,
        "the relay never reported a healthy coturn: {:?}",
        stack.rendezvous().relays().pick()
    );

    // A session: both sides' ICE configurations carry TURN credentials for this session.
    let token = stack.first_start().unwrap().setup_token.expose().to_owned();
    accept_setup_token(&stack, &token).await;
    let owner = login(&stack, DEFAULT_ADMIN_EMAIL, Identity::generate().unwrap()).await;
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
    link.accept(&agent.identity, &offer).await.unwrap();
    let accepted = match call.await.unwrap().unwrap().into_inner().result {
        Some(Created::Accepted(accepted)) => accepted,
        other => panic!("expected an accepted session, got {other:?}"),
    };
    let operator_ice = accepted.connectivity.unwrap().ice.unwrap();
    let agent_ice = offer.connectivity.unwrap().ice.unwrap();
    let (urls, username, credential) = turn_server(&operator_ice);
    assert_eq!(urls, std::slice::from_ref(&turn_url));
    assert!(
        username.ends_with(&format!(":{session_id}")),
        "TURN REST username {username:?}"
    );
    assert!(!credential.is_empty());
    assert_eq!(turn_server(&agent_ice).0, [turn_url]);

    // coturn grants an allocation with rendezvous's credential: they share the secret.
    tucdesk_relay::turn_client::allocate(turn_addr, &username, &credential)
        .await
        .expect("coturn accepts the session's TURN credential");

    // coturn stops with the stack.
    drop(link);
    stop(stack).await;
    let after = tokio::time::timeout(
        WAIT,
        tucdesk_relay::turn_client::allocate(turn_addr, &username, &credential),
    )
    .await;
    assert!(
        !matches!(after, Ok(Ok(_))),
        "coturn still answers after the stack stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_turnserver_fails_the_start_with_the_install_hint() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StandaloneConfig::ephemeral(dir.path());
    config.turn = true;
    config.turnserver = dir.path().join("no-such-turnserver");
    let err = Standalone::start(config)
        .await
        .expect_err("no coturn program, no start");
    let message = format!("{err:#}");
    assert!(message.contains("apt-get install coturn"), "{message}");
}
