//! Configuration of the rendezvous service: flags with `TUCDESK_RENDEZVOUS_*` environment
//! variables (and the shared `TUCDESK_BUS_URL`, `TUCDESK_CACHE_URL`, `TUCDESK_AUTH_*`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tucdesk_svc::config::parse_duration;

/// Where the service keeps its state, whom it trusts, and its timing.
#[derive(Clone, clap::Args)]
pub struct RendezvousConfig {
    /// SQL database: `postgres://…` in production, `sqlite://…` embedded.
    #[arg(
        long,
        env = "TUCDESK_RENDEZVOUS_DATABASE_URL",
        default_value = "sqlite://tucdesk-rendezvous.db"
    )]
    pub database_url: String,

    /// Event bus for routing between replicas, relay heartbeats and audit events:
    /// `nats://…` or `memory://` (single replica only).
    #[arg(long, env = "TUCDESK_BUS_URL", default_value = "memory://")]
    pub bus_url: String,

    /// Shared cache for registration nonces, presence and rate limits: `redis://…` or
    /// `memory://` (single replica only).
    #[arg(long, env = "TUCDESK_CACHE_URL", default_value = "memory://")]
    pub cache_url: String,

    /// Public gRPC listener (AgentLink for agents, OperatorService for viewers).
    #[arg(
        long,
        env = "TUCDESK_RENDEZVOUS_GRPC_ADDR",
        default_value = "127.0.0.1:7411"
    )]
    pub grpc_addr: SocketAddr,

    /// Internal gRPC listener (RendezvousInternal, for other TucDesk services only). Keep it
    /// off the public network.
    #[arg(
        long,
        env = "TUCDESK_RENDEZVOUS_INTERNAL_ADDR",
        default_value = "127.0.0.1:7412"
    )]
    pub internal_addr: SocketAddr,

    /// This deployment's id, signed into every agent registration proof (1..=255 bytes).
    /// Give each deployment its own (e.g. its public URL) so proofs cannot cross over.
    #[arg(long, env = "TUCDESK_RENDEZVOUS_AUDIENCE", default_value = "tucdesk")]
    pub audience: String,

    /// Id of this replica in presence records and logs; a random one when unset.
    #[arg(long, env = "TUCDESK_RENDEZVOUS_REPLICA_ID")]
    pub replica_id: Option<String>,

    /// The auth service's gRPC endpoint (JWKS, session tokens).
    #[arg(
        long,
        env = "TUCDESK_AUTH_URL",
        default_value = "http://127.0.0.1:7401"
    )]
    pub auth_url: String,

    /// `iss` of the tokens auth signs (auth's TUCDESK_AUTH_ISSUER).
    #[arg(
        long,
        env = "TUCDESK_AUTH_ISSUER",
        default_value = "http://127.0.0.1:7402"
    )]
    pub token_issuer: String,

    /// `aud` of operator access tokens (auth's TUCDESK_AUTH_AUDIENCE).
    #[arg(long, env = "TUCDESK_AUTH_AUDIENCE", default_value = "tucdesk")]
    pub token_audience: String,

    /// How long to keep trying to reach auth at startup before giving up.
    #[arg(long, env = "TUCDESK_RENDEZVOUS_AUTH_STARTUP_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub auth_startup_timeout: Duration,

    /// Ed25519 key file this service signs its assertions to auth with (0600). Created when
    /// missing; `tucdesk-rendezvous service-key` prints the public key auth must trust.
    #[arg(
        long,
        env = "TUCDESK_RENDEZVOUS_SERVICE_KEY_FILE",
        default_value = "tucdesk-rendezvous-keys/service.key"
    )]
    pub service_key_file: PathBuf,

    /// Key for the enrollment-code hashes: 32 bytes, base64. Without it (development only) a
    /// random key is generated into `<service-key-file dir>/code.key` with mode 0600.
    #[arg(long, env = "TUCDESK_RENDEZVOUS_CODE_KEY", hide_env_values = true)]
    pub code_key: Option<String>,

    /// Services allowed to call RendezvousInternal, as `name=<base64url Ed25519 public key>`
    /// (comma separated), e.g. the recorder's.
    #[arg(long, env = "TUCDESK_RENDEZVOUS_SERVICE_KEYS", value_delimiter = ',')]
    pub service_keys: Vec<String>,

    /// Shared secret with coturn (`static-auth-secret`); TURN credentials are minted with
    /// it. Without it sessions get STUN and the WebSocket relay only.
    #[arg(long, env = "TUCDESK_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,

    /// Lifetime of minted TURN credentials (the negotiation window).
    #[arg(long, env = "TUCDESK_TURN_CREDENTIAL_TTL", default_value = "5m", value_parser = parse_duration)]
    pub turn_credential_ttl: Duration,

    /// gRPC endpoint of the recorder service, sent to agents with every session offer so they
    /// know where to upload recordings (e.g. `https://recorder.example.com:7440`).
    #[arg(long, env = "TUCDESK_RECORDER_URL")]
    pub recorder_url: Option<String>,

    /// Relay region to prefer when several relays are healthy.
    #[arg(long, env = "TUCDESK_RENDEZVOUS_REGION")]
    pub region: Option<String>,

    /// How often agents send a heartbeat; a stream silent for three intervals is closed and
    /// the agent's presence expires after three intervals too.
    #[arg(long, env = "TUCDESK_RENDEZVOUS_HEARTBEAT_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,

    /// How long CreateSession waits for the agent's answer.
    #[arg(long, env = "TUCDESK_RENDEZVOUS_OFFER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub offer_timeout: Duration,

    /// How long CreateSession waits when the agent reports it is asking the person at the
    /// host for consent.
    #[arg(long, env = "TUCDESK_RENDEZVOUS_CONSENT_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub consent_timeout: Duration,

    /// Upper bound on how long an approval request waits, whatever a team policy says.
    #[arg(long, env = "TUCDESK_RENDEZVOUS_MAX_APPROVAL_WAIT", default_value = "1h", value_parser = parse_duration)]
    pub max_approval_wait: Duration,

    /// Lowest agent protocol version accepted (never below the build's floor).
    #[arg(long, env = "TUCDESK_RENDEZVOUS_MIN_AGENT_VERSION", default_value_t = tucdesk_proto::MIN_AGENT_PROTOCOL_VERSION)]
    pub min_agent_version: u32,

    /// Most agent streams this replica holds; further agents are told to reconnect
    /// elsewhere.
    #[arg(long, env = "TUCDESK_RENDEZVOUS_MAX_AGENTS", default_value_t = 50_000)]
    pub max_agents: usize,
}

impl RendezvousConfig {
    /// A configuration for tests and the standalone stack: every default, with the listeners
    /// and backends given.
    pub fn embedded(database_url: &str, bus_url: &str, cache_url: &str) -> Self {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: RendezvousConfig,
        }
        // Parsing no arguments cannot fail: every field has a default or is optional.
        let mut config = Defaults::try_parse_from(["tucdesk-rendezvous"])
            .map(|d| d.config)
            .unwrap_or_else(|_| unreachable_defaults());
        config.database_url = database_url.to_owned();
        config.bus_url = bus_url.to_owned();
        config.cache_url = cache_url.to_owned();
        config
    }
}

#[cold]
fn unreachable_defaults() -> RendezvousConfig {
    // Only reachable if a default above stops parsing; make that loud in every test.
    panic!("rendezvous configuration defaults do not parse")
}

/// Never prints a secret or a password inside a backend URL.
impl std::fmt::Debug for RendezvousConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use tucdesk_svc::redact::redact_url;
        f.debug_struct("RendezvousConfig")
            .field("database_url", &redact_url(&self.database_url))
            .field("bus_url", &redact_url(&self.bus_url))
            .field("cache_url", &redact_url(&self.cache_url))
            .field("grpc_addr", &self.grpc_addr)
            .field("internal_addr", &self.internal_addr)
            .field("audience", &self.audience)
            .field("replica_id", &self.replica_id)
            .field("auth_url", &self.auth_url)
            .field("token_issuer", &self.token_issuer)
            .field("token_audience", &self.token_audience)
            .field("service_key_file", &self.service_key_file)
            .field("code_key", &self.code_key.as_ref().map(|_| "<redacted>"))
            .field("service_keys", &self.service_keys)
            .field(
                "turn_secret",
                &self.turn_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("turn_credential_ttl", &self.turn_credential_ttl)
            .field("recorder_url", &self.recorder_url)
            .field("region", &self.region)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("offer_timeout", &self.offer_timeout)
            .field("consent_timeout", &self.consent_timeout)
            .field("max_approval_wait", &self.max_approval_wait)
            .field("min_agent_version", &self.min_agent_version)
            .field("max_agents", &self.max_agents)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_parse_and_debug_hides_secrets() {
        let mut config =
            RendezvousConfig::embedded("postgres://u:db-hunter2@h/x", "memory://", "memory://");
        config.turn_secret = Some("turn-hunter2".into());
        config.code_key = Some("code-hunter2".into());
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(config.heartbeat_interval, Duration::from_secs(15));
        assert_eq!(config.audience, "tucdesk");
    }
}
