//! Configuration of a relay node: flags with `TUCDESK_RELAY_*` environment variables (and the
//! shared `TUCDESK_BUS_URL`, `TUCDESK_AUTH_*`, `TUCDESK_TURN_SECRET`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tucdesk_svc::config::parse_duration;

/// A relay node's identity, listeners and limits.
#[derive(Clone, clap::Args)]
pub struct RelayConfig {
    /// This node's id: the audience of the relay tickets it accepts and its name in
    /// heartbeats. Unique per node.
    #[arg(long, env = "TUCDESK_RELAY_NODE_ID", default_value = "relay-1")]
    pub node_id: String,

    /// Region label rendezvous uses to prefer nearby relays.
    #[arg(long, env = "TUCDESK_RELAY_REGION", default_value = "local")]
    pub region: String,

    /// WebSocket relay listener (HTTP/1.1; TLS when a certificate is configured).
    #[arg(long, env = "TUCDESK_RELAY_WS_ADDR", default_value = "127.0.0.1:7421")]
    pub ws_addr: SocketAddr,

    /// STUN (UDP) listener.
    #[arg(
        long,
        env = "TUCDESK_RELAY_STUN_ADDR",
        default_value = "127.0.0.1:3478"
    )]
    pub stun_addr: SocketAddr,

    /// RelayAdmin gRPC listener (status, drain; service assertions only).
    #[arg(
        long,
        env = "TUCDESK_RELAY_ADMIN_ADDR",
        default_value = "127.0.0.1:7423"
    )]
    pub admin_addr: SocketAddr,

    /// Public base URL of the WebSocket relay, advertised to rendezvous; clients connect to
    /// `<ws-url>/<session_id>`. Default: derived from the listener.
    #[arg(long, env = "TUCDESK_RELAY_WS_URL")]
    pub ws_url: Option<String>,

    /// Public STUN URLs advertised (`stun:host:port`, comma separated). Default: the listener.
    #[arg(long, env = "TUCDESK_RELAY_STUN_URLS", value_delimiter = ',')]
    pub stun_urls: Vec<String>,

    /// Public TURN URLs of this node's coturn (`turn:host:port?transport=udp`, …).
    #[arg(long, env = "TUCDESK_RELAY_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Vec<String>,

    /// TLS certificate chain (PEM) for the WebSocket listener. Without TLS the relay only
    /// listens on loopback (development and tests).
    #[arg(long, env = "TUCDESK_RELAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) for the WebSocket listener.
    #[arg(long, env = "TUCDESK_RELAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Event bus for heartbeats: `nats://…` or `memory://`.
    #[arg(long, env = "TUCDESK_BUS_URL", default_value = "memory://")]
    pub bus_url: String,

    /// The auth service's gRPC endpoint (JWKS for relay tickets).
    #[arg(
        long,
        env = "TUCDESK_AUTH_URL",
        default_value = "http://127.0.0.1:7401"
    )]
    pub auth_url: String,

    /// `iss` of the tokens auth signs.
    #[arg(
        long,
        env = "TUCDESK_AUTH_ISSUER",
        default_value = "http://127.0.0.1:7402"
    )]
    pub token_issuer: String,

    /// How long to keep trying to reach auth at startup.
    #[arg(long, env = "TUCDESK_RELAY_AUTH_STARTUP_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub auth_startup_timeout: Duration,

    /// Services allowed to call RelayAdmin, as `name=<base64url Ed25519 public key>`.
    #[arg(long, env = "TUCDESK_RELAY_SERVICE_KEYS", value_delimiter = ',')]
    pub service_keys: Vec<String>,

    /// Paired sessions this node forwards at most; more are refused.
    #[arg(long, env = "TUCDESK_RELAY_MAX_SESSIONS", default_value_t = 10_000)]
    pub max_sessions: u32,

    /// Connections waiting for their peer at most (unpaired connections cost memory too).
    #[arg(long, env = "TUCDESK_RELAY_MAX_WAITING", default_value_t = 10_000)]
    pub max_waiting: u32,

    /// How long the first side waits for the second.
    #[arg(long, env = "TUCDESK_RELAY_PAIRING_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub pairing_timeout: Duration,

    /// A paired session with no message in either direction for this long is closed.
    #[arg(long, env = "TUCDESK_RELAY_IDLE_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Sustained bytes per second each direction of a session may send (0 = no limit).
    #[arg(long = "session-rate", env = "TUCDESK_RELAY_SESSION_RATE", default_value_t = 64 * 1024 * 1024)]
    pub session_bytes_per_sec: u64,

    /// Burst each direction of a session may send above the sustained rate.
    #[arg(long = "session-burst", env = "TUCDESK_RELAY_SESSION_BURST", default_value_t = 128 * 1024 * 1024)]
    pub session_burst_bytes: u64,

    /// A direction throttled without pause for this long is a flood: the session is closed.
    #[arg(long, env = "TUCDESK_RELAY_FLOOD_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub flood_grace: Duration,

    /// Bytes per second the whole node forwards at most (all sessions share it; 0 = no limit).
    #[arg(long = "node-rate", env = "TUCDESK_RELAY_NODE_RATE", default_value_t = 1024 * 1024 * 1024)]
    pub node_bytes_per_sec: u64,

    /// STUN Binding answers per second per source address (IPv6: per /64).
    #[arg(
        long = "stun-rate",
        env = "TUCDESK_RELAY_STUN_RATE",
        default_value_t = 20
    )]
    pub stun_per_source_per_sec: u32,

    /// Heartbeat interval on the bus.
    #[arg(long, env = "TUCDESK_RELAY_HEARTBEAT_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,

    /// On shutdown, how long live sessions may go on before they are closed.
    #[arg(long, env = "TUCDESK_RELAY_DRAIN_DEADLINE", default_value = "10m", value_parser = parse_duration)]
    pub drain_deadline: Duration,

    /// coturn's shared secret (`static-auth-secret`), used for the coturn health check (the
    /// same secret rendezvous mints TURN credentials with).
    #[arg(long, env = "TUCDESK_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,

    /// Address of this node's coturn for the health check (its listening UDP port).
    #[arg(long, env = "TUCDESK_RELAY_COTURN_ADDR")]
    pub coturn_addr: Option<SocketAddr>,

    /// coturn's realm (must match its `realm`).
    #[arg(long, env = "TUCDESK_RELAY_COTURN_REALM", default_value = "tucdesk")]
    pub coturn_realm: String,

    /// How often coturn is health-checked with a real allocation.
    #[arg(long, env = "TUCDESK_RELAY_COTURN_CHECK_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub coturn_check_interval: Duration,
}

impl RelayConfig {
    /// Every default, for tests and the standalone stack.
    pub fn embedded() -> Self {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: RelayConfig,
        }
        match Defaults::try_parse_from(["tucdesk-relay"]) {
            Ok(defaults) => defaults.config,
            // Only reachable if a default above stops parsing; loud in every test.
            Err(err) => panic!("relay configuration defaults do not parse: {err}"),
        }
    }

    /// WebSockets (and TCP connections) open at once at most: two per paired session plus
    /// the ones waiting for their peer.
    pub fn max_sockets(&self) -> usize {
        let sessions = usize::try_from(self.max_sessions).unwrap_or(usize::MAX);
        let waiting = usize::try_from(self.max_waiting).unwrap_or(usize::MAX);
        sessions.saturating_mul(2).saturating_add(waiting)
    }
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("node_id", &self.node_id)
            .field("region", &self.region)
            .field("ws_addr", &self.ws_addr)
            .field("stun_addr", &self.stun_addr)
            .field("admin_addr", &self.admin_addr)
            .field("ws_url", &self.ws_url)
            .field("tls", &self.tls_cert.is_some())
            .field("bus_url", &tucdesk_svc::redact::redact_url(&self.bus_url))
            .field("auth_url", &self.auth_url)
            .field("max_sessions", &self.max_sessions)
            .field("session_bytes_per_sec", &self.session_bytes_per_sec)
            .field(
                "turn_secret",
                &self.turn_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("coturn_addr", &self.coturn_addr)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_hide_the_turn_secret() {
        let mut config = RelayConfig::embedded();
        config.turn_secret = Some("turn-hunter2".into());
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(config.pairing_timeout, Duration::from_secs(30));
    }
}
