//! TucDesk relay node (SPEC §1 relay, §5 paths): STUN binding for ICE, the WebSocket relay for
//! networks without UDP (sealed session frames only, paired by session and ticket), coturn as
//! the TURN engine beside it, and heartbeats on the bus so rendezvous can choose relays.
//! Nothing durable: a node can be replaced at any time.
//!
//! Library first: [`serve`] runs the node on given listeners, so tests and
//! `tucdesk-standalone` run it in-process exactly as `main.rs` does.
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod coturn;
pub mod heartbeat;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod pairing;
pub mod pipe;
pub mod service;
pub mod stun_server;
pub mod tickets;
pub mod turn_client;

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tucdesk_proto::v1::relay_admin_server::RelayAdminServer;

pub use config::RelayConfig;
pub use service::Relay;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// How often draining checks whether every session has ended.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// Refuses settings that cannot work, at startup.
pub fn check_config(config: &RelayConfig) -> Result<(), RelayError> {
    let bad = |what: &str| Err(RelayError::Config(what.to_owned()));
    let subject_safe = !config.node_id.is_empty()
        && config.node_id.len() <= 128
        && config
            .node_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !subject_safe {
        return bad("the node id must be 1..=128 characters of [A-Za-z0-9_-]");
    }
    if config.region.len() > 64 {
        return bad("the region must be at most 64 bytes");
    }
    if config.tls_cert.is_none() && !config.ws_addr.ip().is_loopback() {
        return bad(
            "without TLS (--tls-cert/--tls-key) the WebSocket relay only listens on loopback",
        );
    }
    if config.pairing_timeout < Duration::from_millis(100)
        || config.idle_timeout < Duration::from_secs(1)
    {
        return bad("the pairing timeout must be ≥ 100 ms and the idle timeout ≥ 1 s");
    }
    if config.heartbeat_interval < Duration::from_millis(100)
        || config.heartbeat_interval > Duration::from_secs(60)
    {
        return bad("the heartbeat interval must be between 100 ms and 60 s");
    }
    if config.max_sessions == 0 {
        return bad("max sessions must be at least 1");
    }
    Ok(())
}

/// The listeners a node serves on.
#[derive(Debug)]
pub struct Listeners {
    pub ws: TcpListener,
    pub stun: UdpSocket,
    pub admin: TcpListener,
}

/// Runs the node until `shutdown`, then drains: stops advertising and pairing, lets live
/// sessions finish up to the drain deadline, closes the rest, and returns.
pub async fn serve(
    relay: Relay,
    listeners: Listeners,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let max_connections = relay.config().max_sockets();
    let ws = http::serve(
        listeners.ws,
        tls,
        http::router(relay.clone()),
        max_connections,
        stop.clone(),
    );
    let stun = stun_server::run(relay.clone(), listeners.stun, stop.clone());
    let admin = tonic::transport::Server::builder()
        .add_service(
            RelayAdminServer::new(admin::RelayAdminGrpc::new(relay.clone()))
                .max_decoding_message_size(64 * 1024),
        )
        .serve_with_incoming_shutdown(
            tucdesk_svc::net::nodelay_incoming(listeners.admin),
            stop.clone().cancelled_owned(),
        );
    let heartbeat = relay.run_heartbeat(stop.clone());
    let coturn = relay.run_coturn_checks(stop.clone());
    let drain = {
        let relay = relay.clone();
        let stop = stop.clone();
        async move {
            tokio::select! {
                () = shutdown.cancelled() => relay.drain(relay.config().drain_deadline),
                () = relay.inner.draining.cancelled() => {}
            }
            // Drained: every session ended, or the deadline closed what was left.
            loop {
                let idle = relay.stats().active_sessions.load(Ordering::Relaxed) == 0
                    && relay.stats().waiting.load(Ordering::Relaxed) == 0;
                if idle || relay.inner.drain_deadline_passed.is_cancelled() {
                    break;
                }
                tokio::time::sleep(DRAIN_POLL).await;
            }
            // Let the closing handshakes of the last sessions go out.
            tokio::time::sleep(DRAIN_POLL).await;
            // Only stop once shutdown was asked for (an admin Drain alone keeps the node up
            // until it is stopped, so its status stays readable).
            shutdown.cancelled().await;
            stop.cancel();
        }
    };
    let (admin_result, (), (), (), (), ()) =
        tokio::join!(admin, ws, stun, heartbeat, coturn, drain);
    admin_result?;
    Ok(())
}

/// Builds a node from its configuration: bus, and the link to auth's keys.
pub async fn build(config: RelayConfig) -> anyhow::Result<Relay> {
    let bus = tucdesk_svc::bus::connect(&config.bus_url, "tucdesk-relay").await?;
    let channel = tucdesk_svc::auth_keys::auth_channel(&config.auth_url)?;
    let keys = tucdesk_svc::auth_keys::AuthKeys::connect(
        channel,
        &config.token_issuer,
        config.auth_startup_timeout,
    )
    .await?;
    let tickets = tickets::Tickets::new(keys.verifier(&config.node_id));
    let relay = Relay::new(config, bus, tickets)?;
    let refresh = relay.clone();
    tokio::spawn(async move {
        keys.run_refresh(refresh.inner.drain_deadline_passed.clone())
            .await;
    });
    Ok(relay)
}

/// Binds the node's listeners from its configuration.
pub async fn bind(config: &RelayConfig) -> anyhow::Result<Listeners> {
    use anyhow::Context as _;
    Ok(Listeners {
        ws: TcpListener::bind(config.ws_addr)
            .await
            .with_context(|| format!("binding the WebSocket relay on {}", config.ws_addr))?,
        stun: UdpSocket::bind(config.stun_addr)
            .await
            .with_context(|| format!("binding STUN on {}", config.stun_addr))?,
        admin: TcpListener::bind(config.admin_addr)
            .await
            .with_context(|| format!("binding RelayAdmin on {}", config.admin_addr))?,
    })
}
