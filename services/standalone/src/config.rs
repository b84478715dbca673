//! Configuration of the standalone stack: flags with `TUCDESK_STANDALONE_*` environment
//! variables. Everything else (token lifetimes, timeouts, limits) is each service's default.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Default data directory (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "./tucdesk-data";
/// Default listen address of the public listeners.
pub const DEFAULT_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Default base port: every listener is the base plus its offset below.
pub const DEFAULT_BASE_PORT: u16 = 7400;
/// Name of the team created on first start.
pub const DEFAULT_TEAM: &str = "default";
/// Email of the owner created on first start.
pub const DEFAULT_ADMIN_EMAIL: &str = "admin@tucdesk.local";

/// Each listener's offset from the base port.
pub const OPS_PORT_OFFSET: u16 = 0;
pub const AUTH_GRPC_PORT_OFFSET: u16 = 1;
pub const AUTH_HTTP_PORT_OFFSET: u16 = 2;
pub const RENDEZVOUS_PORT_OFFSET: u16 = 10;
pub const RENDEZVOUS_INTERNAL_PORT_OFFSET: u16 = 11;
pub const RELAY_WS_PORT_OFFSET: u16 = 20;
pub const RELAY_STUN_PORT_OFFSET: u16 = 21;
pub const RELAY_ADMIN_PORT_OFFSET: u16 = 22;
pub const AUDIT_PORT_OFFSET: u16 = 30;
pub const AUDIT_HTTP_PORT_OFFSET: u16 = 31;
pub const RECORDER_PORT_OFFSET: u16 = 40;
pub const TURN_PORT_OFFSET: u16 = 78;
/// The coturn program `--turn` runs (looked up on `PATH`).
pub const DEFAULT_TURNSERVER: &str = "turnserver";

/// Where the stack keeps its state, where it listens and whom it creates on first start.
///
/// Ports: every listener defaults to `--base-port` plus a fixed offset (7400 → ops 7400, auth
/// gRPC 7401, auth HTTP 7402, rendezvous 7410, rendezvous internal 7411, relay WebSocket 7420,
/// relay STUN 7421/udp, relay admin 7422, audit gRPC 7430, audit HTTP export 7431, recorder
/// 7440, coturn 7478/udp with `--turn`). A per-listener flag overrides its port; port 0 (or
/// `--base-port 0`) picks a free ephemeral port.
#[derive(Debug, Clone, clap::Args)]
pub struct StandaloneConfig {
    /// Directory for the databases (the audit log's included), the development keys (the
    /// audit signing key's included), the setup token and the interim audit file. Created
    /// (mode 0700) when missing.
    #[arg(long, env = "TUCDESK_STANDALONE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// Address the public listeners (auth, rendezvous, relay) bind to. The internal ones
    /// (rendezvous internal, relay admin, ops) always stay on loopback. A non-loopback address
    /// needs --relay-tls-cert/--relay-tls-key (the relay refuses plaintext off loopback).
    #[arg(long, env = "TUCDESK_STANDALONE_HOST", default_value_t = DEFAULT_HOST)]
    pub host: IpAddr,

    /// Host name clients use to reach this machine, in the auth issuer, the relay URL and the
    /// printed commands. Default: --host (127.0.0.1 when --host is 0.0.0.0 or ::).
    #[arg(long, env = "TUCDESK_STANDALONE_PUBLIC_HOST")]
    pub public_host: Option<String>,

    /// Base of the default ports (each listener is base + a fixed offset); 0 makes every
    /// port not set explicitly ephemeral.
    #[arg(long, env = "TUCDESK_STANDALONE_BASE_PORT", default_value_t = DEFAULT_BASE_PORT)]
    pub base_port: u16,

    /// Auth gRPC port (AuthService, AuthInternal). Default: base + 1.
    #[arg(long, env = "TUCDESK_STANDALONE_AUTH_PORT")]
    pub auth_port: Option<u16>,

    /// Auth HTTP port (JWKS, OAuth; the token issuer). Default: base + 2.
    #[arg(long, env = "TUCDESK_STANDALONE_AUTH_HTTP_PORT")]
    pub auth_http_port: Option<u16>,

    /// Rendezvous public gRPC port (AgentLink, OperatorService). Default: base + 10.
    #[arg(long, env = "TUCDESK_STANDALONE_RENDEZVOUS_PORT")]
    pub rendezvous_port: Option<u16>,

    /// Rendezvous internal gRPC port (loopback only). Default: base + 11.
    #[arg(long, env = "TUCDESK_STANDALONE_RENDEZVOUS_INTERNAL_PORT")]
    pub rendezvous_internal_port: Option<u16>,

    /// Relay WebSocket port. Default: base + 20.
    #[arg(long, env = "TUCDESK_STANDALONE_RELAY_PORT")]
    pub relay_port: Option<u16>,

    /// Relay STUN port (UDP). Default: base + 21.
    #[arg(long, env = "TUCDESK_STANDALONE_STUN_PORT")]
    pub stun_port: Option<u16>,

    /// Relay admin gRPC port (loopback only). Default: base + 22.
    #[arg(long, env = "TUCDESK_STANDALONE_RELAY_ADMIN_PORT")]
    pub relay_admin_port: Option<u16>,

    /// Audit gRPC port (AuditService: query, export, checkpoints, proofs). Default: base + 30.
    #[arg(long, env = "TUCDESK_STANDALONE_AUDIT_PORT")]
    pub audit_port: Option<u16>,

    /// Audit HTTP export port (`GET /v1/audit/export`, NDJSON or OCSF). Default: base + 31.
    #[arg(long, env = "TUCDESK_STANDALONE_AUDIT_HTTP_PORT")]
    pub audit_http_port: Option<u16>,

    /// Recorder gRPC port (RecorderService: agents upload recordings, operators list and
    /// download them). Default: base + 40.
    #[arg(long, env = "TUCDESK_STANDALONE_RECORDER_PORT")]
    pub recorder_port: Option<u16>,

    /// Ops HTTP port (`/metrics`, `/healthz`, `/readyz`; loopback only). Default: base + 0.
    #[arg(long, env = "TUCDESK_STANDALONE_OPS_PORT")]
    pub ops_port: Option<u16>,

    /// TLS certificate chain (PEM) for the relay's WebSocket listener (`wss://`).
    #[arg(
        long,
        env = "TUCDESK_STANDALONE_RELAY_TLS_CERT",
        requires = "relay_tls_key"
    )]
    pub relay_tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) for the relay's WebSocket listener.
    #[arg(
        long,
        env = "TUCDESK_STANDALONE_RELAY_TLS_KEY",
        requires = "relay_tls_cert"
    )]
    pub relay_tls_key: Option<PathBuf>,

    /// Run coturn (`turnserver`) beside the relay, so sessions get a TURN path: a random
    /// TURN secret is made at every start (rendezvous mints credentials with it) and the relay
    /// advertises `turn:<public host>:<turn port>?transport=udp`.
    #[arg(
        long,
        env = "TUCDESK_STANDALONE_TURN",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub turn: bool,

    /// coturn's UDP port (with --turn), on --host. Default: base + 78.
    #[arg(long, env = "TUCDESK_STANDALONE_TURN_PORT")]
    pub turn_port: Option<u16>,

    /// A peer range coturn may relay to although its deny list (loopback, private,
    /// link-local, …) covers it: a CIDR (`10.0.0.0/8`) or an address; repeatable or comma
    /// separated. For labs and tests only; never open private ranges on a shared server.
    #[arg(
        long,
        env = "TUCDESK_STANDALONE_TURN_ALLOW_PEER",
        value_delimiter = ','
    )]
    pub turn_allow_peer: Vec<crate::turn::PeerRange>,

    /// The coturn program (with --turn).
    #[arg(long, env = "TUCDESK_STANDALONE_TURNSERVER", default_value = DEFAULT_TURNSERVER)]
    pub turnserver: PathBuf,

    /// Name of the team created on first start.
    #[arg(long, env = "TUCDESK_STANDALONE_TEAM", default_value = DEFAULT_TEAM)]
    pub team: String,

    /// Email of the owner created on first start.
    #[arg(long, env = "TUCDESK_STANDALONE_ADMIN_EMAIL", default_value = DEFAULT_ADMIN_EMAIL)]
    pub admin_email: String,
}

/// The port of every listener, resolved from the base port and the overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub ops: u16,
    pub auth_grpc: u16,
    pub auth_http: u16,
    pub rendezvous: u16,
    pub rendezvous_internal: u16,
    pub relay_ws: u16,
    pub relay_stun: u16,
    pub relay_admin: u16,
    pub audit: u16,
    pub audit_http: u16,
    pub recorder: u16,
    /// coturn's UDP port (used with --turn only).
    pub turn: u16,
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--base-port {base} + {offset} is above 65535; choose a lower base port")]
    PortOverflow { base: u16, offset: u16 },
    #[error(
        "--host {host} is not loopback: the relay serves plaintext WebSockets only on loopback, \
         so give --relay-tls-cert and --relay-tls-key (or keep --host on loopback)"
    )]
    RelayNeedsTls { host: IpAddr },
    #[error("--public-host must be a host name or address without scheme, port or path")]
    BadPublicHost,
}

impl StandaloneConfig {
    /// Every default, with `data_dir`; reads no environment variable (for tests and tools).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            host: DEFAULT_HOST,
            public_host: None,
            base_port: DEFAULT_BASE_PORT,
            auth_port: None,
            auth_http_port: None,
            rendezvous_port: None,
            rendezvous_internal_port: None,
            relay_port: None,
            stun_port: None,
            relay_admin_port: None,
            audit_port: None,
            audit_http_port: None,
            recorder_port: None,
            ops_port: None,
            relay_tls_cert: None,
            relay_tls_key: None,
            turn: false,
            turn_port: None,
            turn_allow_peer: Vec::new(),
            turnserver: PathBuf::from(DEFAULT_TURNSERVER),
            team: DEFAULT_TEAM.to_owned(),
            admin_email: DEFAULT_ADMIN_EMAIL.to_owned(),
        }
    }

    /// The same with every port ephemeral (tests).
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            base_port: 0,
            ..Self::new(data_dir)
        }
    }

    /// Refuses combinations that cannot work, before anything is bound or written.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.ports()?;
        if !self.host.is_loopback() && self.relay_tls_cert.is_none() {
            return Err(ConfigError::RelayNeedsTls { host: self.host });
        }
        if let Some(host) = &self.public_host {
            let bad = host.is_empty()
                || host.len() > 253
                || host.contains(['/', '@', '?', '#', ' '])
                || (host.contains(':') && host.parse::<Ipv6Addr>().is_err());
            if bad {
                return Err(ConfigError::BadPublicHost);
            }
        }
        Ok(())
    }

    /// The port of every listener.
    pub fn ports(&self) -> Result<Ports, ConfigError> {
        let port = |explicit: Option<u16>, offset: u16| match (explicit, self.base_port) {
            (Some(port), _) => Ok(port),
            (None, 0) => Ok(0),
            (None, base) => base
                .checked_add(offset)
                .ok_or(ConfigError::PortOverflow { base, offset }),
        };
        Ok(Ports {
            ops: port(self.ops_port, OPS_PORT_OFFSET)?,
            auth_grpc: port(self.auth_port, AUTH_GRPC_PORT_OFFSET)?,
            auth_http: port(self.auth_http_port, AUTH_HTTP_PORT_OFFSET)?,
            rendezvous: port(self.rendezvous_port, RENDEZVOUS_PORT_OFFSET)?,
            rendezvous_internal: port(
                self.rendezvous_internal_port,
                RENDEZVOUS_INTERNAL_PORT_OFFSET,
            )?,
            relay_ws: port(self.relay_port, RELAY_WS_PORT_OFFSET)?,
            relay_stun: port(self.stun_port, RELAY_STUN_PORT_OFFSET)?,
            relay_admin: port(self.relay_admin_port, RELAY_ADMIN_PORT_OFFSET)?,
            audit: port(self.audit_port, AUDIT_PORT_OFFSET)?,
            audit_http: port(self.audit_http_port, AUDIT_HTTP_PORT_OFFSET)?,
            recorder: port(self.recorder_port, RECORDER_PORT_OFFSET)?,
            turn: port(self.turn_port, TURN_PORT_OFFSET)?,
        })
    }

    /// Loopback of the host's address family: where the internal listeners bind.
    pub fn loopback(&self) -> IpAddr {
        match self.host {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        }
    }

    /// The host as it appears in URLs (IPv6 in brackets).
    pub fn url_host(&self) -> String {
        match &self.public_host {
            Some(host) => bracket(host),
            None if self.host.is_unspecified() => bracket(&self.loopback().to_string()),
            None => bracket(&self.host.to_string()),
        }
    }

    /// A file or directory inside the data directory.
    pub fn data_path(&self, name: impl AsRef<Path>) -> PathBuf {
        self.data_dir.join(name)
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// The address to dial a listener bound at `addr` from this process (loopback for a wildcard
/// bind).
pub fn dial_addr(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let ip = match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: StandaloneConfig,
    }

    #[test]
    fn default_ports_follow_the_base_and_overrides_win() {
        let config = StandaloneConfig::new("d");
        let ports = config.ports().unwrap();
        assert_eq!(
            (
                ports.ops,
                ports.auth_grpc,
                ports.auth_http,
                ports.rendezvous
            ),
            (7400, 7401, 7402, 7410)
        );
        assert_eq!(
            (
                ports.rendezvous_internal,
                ports.relay_ws,
                ports.relay_stun,
                ports.relay_admin
            ),
            (7411, 7420, 7421, 7422)
        );
        assert_eq!((ports.audit, ports.audit_http), (7430, 7431));
        assert_eq!((ports.recorder, ports.turn), (7440, 7478));
        let cli = Cli::try_parse_from(["t", "--base-port", "9000", "--auth-port", "1234"]).unwrap();
        let ports = cli.config.ports().unwrap();
        assert_eq!((ports.auth_grpc, ports.auth_http), (1234, 9002));
    }

    #[test]
    fn turn_is_off_by_default_and_takes_repeatable_peer_ranges() {
        let cli = Cli::try_parse_from(["t"]).unwrap();
        assert!(!cli.config.turn);
        let cli = Cli::try_parse_from([
            "t",
            "--turn",
            "--turn-port",
            "3478",
            "--turn-allow-peer",
            "10.0.1.0/24,10.0.2.0/24",
            "--turn-allow-peer",
            "203.0.113.7",
        ])
        .unwrap();
        assert!(cli.config.turn);
        assert_eq!(cli.config.ports().unwrap().turn, 3478);
        let ranges: Vec<String> = cli
            .config
            .turn_allow_peer
            .iter()
            .map(crate::turn::PeerRange::coturn)
            .collect();
        assert_eq!(
            ranges,
            ["10.0.1.0-10.0.1.255", "10.0.2.0-10.0.2.255", "203.0.113.7"]
        );
        assert!(Cli::try_parse_from(["t", "--turn-allow-peer", "10.0.0.0/99"]).is_err());
    }

    #[test]
    fn base_port_zero_makes_every_unset_port_ephemeral() {
        let mut config = StandaloneConfig::ephemeral("d");
        config.rendezvous_port = Some(5555);
        let ports = config.ports().unwrap();
        assert_eq!((ports.auth_grpc, ports.rendezvous), (0, 5555));
    }

    #[test]
    fn an_overflowing_base_port_is_refused() {
        let mut config = StandaloneConfig::new("d");
        config.base_port = 65_530;
        assert!(matches!(
            config.check(),
            Err(ConfigError::PortOverflow { .. })
        ));
    }

    #[test]
    fn a_public_bind_without_relay_tls_is_refused() {
        let mut config = StandaloneConfig::new("d");
        config.host = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        assert!(matches!(
            config.check(),
            Err(ConfigError::RelayNeedsTls { .. })
        ));
        assert_eq!(config.url_host(), "127.0.0.1");
    }

    #[test]
    fn url_hosts_bracket_ipv6_and_reject_urls() {
        let mut config = StandaloneConfig::new("d");
        config.public_host = Some("::1".into());
        assert_eq!(config.url_host(), "[::1]");
        config.public_host = Some("http://evil".into());
        assert!(matches!(config.check(), Err(ConfigError::BadPublicHost)));
        config.public_host = Some("desk.example.com".into());
        assert!(config.check().is_ok());
    }
}
