//! Configuration of the audit service: flags with `TUCDESK_AUDIT_*` environment variables (and
//! the shared `TUCDESK_BUS_URL`, `TUCDESK_AUTH_*`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tucdesk_svc::bus::StreamSpec;
use tucdesk_svc::config::parse_duration;

use crate::error::StartError;
use crate::syslog::{SeverityMode, SyslogFormat, SyslogUrl};

/// Most events taken from the stream and appended in one transaction.
pub const MAX_BATCH_SIZE: usize = 1000;
/// Most entries between two count-triggered checkpoints.
pub const MAX_CHECKPOINT_EVERY: u64 = 1_000_000;
/// Shortest time-triggered checkpoint interval.
pub const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);
/// Shortest and longest redelivery wait for an unacknowledged event.
pub const MIN_ACK_WAIT: Duration = Duration::from_secs(1);
pub const MAX_ACK_WAIT: Duration = Duration::from_secs(3600);

/// Where the service keeps its log, what it signs with, whom it trusts, and its pacing.
#[derive(Clone, clap::Args)]
pub struct AuditConfig {
    /// SQL database: `postgres://…` in production, `sqlite://…` embedded.
    #[arg(
        long,
        env = "TUCDESK_AUDIT_DATABASE_URL",
        default_value = "sqlite://tucdesk-audit.db"
    )]
    pub database_url: String,

    /// Apply the schema migrations at start. Turn off when the service runs as a role that
    /// may only SELECT and INSERT (run `tucdesk-audit migrate` as the owner role instead).
    #[arg(long, env = "TUCDESK_AUDIT_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate: bool,

    /// Event bus carrying the `AUDIT` stream: `nats://…` (JetStream) or `memory://`.
    #[arg(long, env = "TUCDESK_BUS_URL", default_value = "memory://")]
    pub bus_url: String,

    /// gRPC listener (AuditService).
    #[arg(
        long,
        env = "TUCDESK_AUDIT_GRPC_ADDR",
        default_value = "127.0.0.1:7431"
    )]
    pub grpc_addr: SocketAddr,

    /// HTTP listener (`GET /v1/audit/export`: NDJSON or OCSF for SIEMs; same tokens and roles
    /// as the gRPC API).
    #[arg(
        long,
        env = "TUCDESK_AUDIT_HTTP_ADDR",
        default_value = "127.0.0.1:7432"
    )]
    pub http_addr: SocketAddr,

    /// The audit signing key (Ed25519 seed, 32 bytes base64, one line, mode 0600). Every
    /// replica must use the same file. Created with a warning when missing, unless
    /// --require-key-file is set; `tucdesk-audit public-key` prints the public key verifiers
    /// need.
    #[arg(
        long,
        env = "TUCDESK_AUDIT_KEY_FILE",
        default_value = "tucdesk-audit-keys/audit.key"
    )]
    pub key_file: PathBuf,

    /// Refuse to start when the key file is missing instead of generating a key (production:
    /// a replica with a fresh key would sign part of the log with a key nobody trusts).
    #[arg(long, env = "TUCDESK_AUDIT_REQUIRE_KEY_FILE", default_value_t = false, action = clap::ArgAction::Set)]
    pub require_key_file: bool,

    /// The auth service's gRPC endpoint (JWKS for verifying access tokens).
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
    #[arg(long, env = "TUCDESK_AUDIT_AUTH_STARTUP_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub auth_startup_timeout: Duration,

    /// Durable consumer name on the `AUDIT` stream; every replica uses the same one, so each
    /// event goes to one replica at a time.
    #[arg(long, env = "TUCDESK_AUDIT_CONSUMER", default_value = "tucdesk-audit")]
    pub consumer_name: String,

    /// Events fetched and appended per transaction (1..=1000).
    #[arg(long, env = "TUCDESK_AUDIT_BATCH_SIZE", default_value_t = 100)]
    pub batch_size: usize,

    /// An event not acknowledged within this time (a replica died mid-batch) is delivered
    /// again; the stored event id makes the redelivery harmless.
    #[arg(long, env = "TUCDESK_AUDIT_ACK_WAIT", default_value = "30s", value_parser = parse_duration)]
    pub ack_wait: Duration,

    /// A team's log gets a signed checkpoint after this many new entries…
    #[arg(long, env = "TUCDESK_AUDIT_CHECKPOINT_EVERY", default_value_t = 1000)]
    pub checkpoint_every: u64,

    /// …or this long after its last checkpoint when it has new entries.
    #[arg(long, env = "TUCDESK_AUDIT_CHECKPOINT_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub checkpoint_interval: Duration,

    /// Push the live log to a syslog collector: `tcp://host:port` (RFC 6587) or
    /// `tls://host:port` (RFC 5425), octet-counted RFC 5424 messages, every entry and signed
    /// checkpoint at least once. Unset: no push (SIEMs can still pull the HTTP export).
    #[arg(long, env = "TUCDESK_AUDIT_SYSLOG_URL", value_parser = crate::syslog::parse_url)]
    pub syslog_url: Option<SyslogUrl>,

    /// The message body: `ndjson` (the signed entry line or checkpoint) or `ocsf` (its OCSF
    /// object).
    #[arg(long, env = "TUCDESK_AUDIT_SYSLOG_FORMAT", value_enum, default_value_t = SyslogFormat::Ndjson)]
    pub syslog_format: SyslogFormat,

    /// Extra CA certificates (PEM) trusted for a `tls://` collector, besides the platform's.
    #[arg(long, env = "TUCDESK_AUDIT_SYSLOG_CA_FILE")]
    pub syslog_ca_file: Option<PathBuf>,

    /// HOSTNAME of the messages (default: this machine's host name).
    #[arg(long, env = "TUCDESK_AUDIT_SYSLOG_HOSTNAME")]
    pub syslog_hostname: Option<String>,

    /// Syslog facility: a name (`local0`) or code (0..=23).
    #[arg(long, env = "TUCDESK_AUDIT_SYSLOG_FACILITY", default_value = "local0", value_parser = crate::syslog::parse_facility)]
    pub syslog_facility: u8,

    /// Syslog severity: `ocsf` (from the entry's OCSF severity: info, notice, warning, err)
    /// or a fixed one for every message (`notice`, or a code 0..=7).
    #[arg(long, env = "TUCDESK_AUDIT_SYSLOG_SEVERITY", default_value = "ocsf", value_parser = crate::syslog::parse_severity)]
    pub syslog_severity: SeverityMode,

    /// Start each message body with the UTF-8 byte order mark, as RFC 5424 asks of UTF-8
    /// messages; turn off for collectors that parse the body as JSON without stripping it.
    #[arg(long, env = "TUCDESK_AUDIT_SYSLOG_BOM", default_value_t = true, action = clap::ArgAction::Set)]
    pub syslog_bom: bool,

    /// The stream consumed (tests use streams of their own; production keeps `AUDIT`).
    #[arg(skip = tucdesk_svc::audit_events::audit_stream())]
    pub stream: StreamSpec,
}

impl AuditConfig {
    /// A configuration for tests and the standalone stack: every default, with the backends
    /// given.
    pub fn embedded(database_url: &str, bus_url: &str) -> Self {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: AuditConfig,
        }
        // Parsing no arguments cannot fail: every field has a default.
        let mut config = Defaults::try_parse_from(["tucdesk-audit"])
            .map(|d| d.config)
            .unwrap_or_else(|_| unreachable_defaults());
        config.database_url = database_url.to_owned();
        config.bus_url = bus_url.to_owned();
        config
    }

    /// The subjects the consumer takes from the stream: all of them.
    pub fn filter_subject(&self) -> Option<String> {
        match self.stream.subjects.as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        }
    }

    /// Refuses values that cannot work, before anything is connected.
    pub fn check(&self) -> Result<(), StartError> {
        let bad = |what: &str| Err(StartError::Config(what.to_owned()));
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            return bad("batch size must be 1..=1000");
        }
        if self.checkpoint_every == 0 || self.checkpoint_every > MAX_CHECKPOINT_EVERY {
            return bad("checkpoint-every must be 1..=1000000");
        }
        if self.checkpoint_interval < MIN_CHECKPOINT_INTERVAL {
            return bad("checkpoint-interval must be at least 100ms");
        }
        if self.ack_wait < MIN_ACK_WAIT || self.ack_wait > MAX_ACK_WAIT {
            return bad("ack-wait must be between 1s and 1h");
        }
        if self.consumer_name.is_empty()
            || self.consumer_name.len() > 64
            || !self
                .consumer_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return bad("consumer name must be 1..=64 of [A-Za-z0-9_-]");
        }
        if self.syslog_ca_file.is_some() && !self.syslog_url.as_ref().is_some_and(|url| url.tls) {
            return bad("syslog-ca-file needs a tls:// syslog-url");
        }
        if let Some(name) = &self.syslog_hostname
            && (name.is_empty()
                || name.len() > crate::syslog::message::MAX_HOSTNAME_LEN
                || !name.bytes().all(|b| b.is_ascii_graphic()))
        {
            return bad("syslog-hostname must be 1..=255 printable ASCII characters");
        }
        Ok(())
    }
}

#[cold]
fn unreachable_defaults() -> AuditConfig {
    // Only reachable if a default above stops parsing; make that loud in every test.
    panic!("audit configuration defaults do not parse")
}

/// Never prints a password inside a backend URL.
impl std::fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use tucdesk_svc::redact::redact_url;
        f.debug_struct("AuditConfig")
            .field("database_url", &redact_url(&self.database_url))
            .field("migrate", &self.migrate)
            .field("bus_url", &redact_url(&self.bus_url))
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("key_file", &self.key_file)
            .field("require_key_file", &self.require_key_file)
            .field("auth_url", &self.auth_url)
            .field("token_issuer", &self.token_issuer)
            .field("token_audience", &self.token_audience)
            .field("auth_startup_timeout", &self.auth_startup_timeout)
            .field("consumer_name", &self.consumer_name)
            .field("batch_size", &self.batch_size)
            .field("ack_wait", &self.ack_wait)
            .field("checkpoint_every", &self.checkpoint_every)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field(
                "syslog_url",
                &self.syslog_url.as_ref().map(ToString::to_string),
            )
            .field("syslog_format", &self.syslog_format)
            .field("syslog_ca_file", &self.syslog_ca_file)
            .field("syslog_hostname", &self.syslog_hostname)
            .field("syslog_facility", &self.syslog_facility)
            .field("syslog_severity", &self.syslog_severity)
            .field("syslog_bom", &self.syslog_bom)
            .field("stream", &self.stream.name)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_parse_check_and_hide_passwords() {
        let config = AuditConfig::embedded("postgres://u:db-hunter2@h/x", "memory://");
        assert!(config.check().is_ok());
        assert_eq!(config.checkpoint_every, 1000);
        assert_eq!(config.checkpoint_interval, Duration::from_secs(60));
        assert_eq!(config.stream.name, "AUDIT");
        assert_eq!(config.grpc_addr.port(), 7431);
        assert_eq!(config.http_addr.port(), 7432);
        assert_eq!(config.filter_subject().as_deref(), Some("audit.>"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn out_of_range_settings_are_refused() {
        let mut config = AuditConfig::embedded("sqlite::memory:", "memory://");
        config.batch_size = MAX_BATCH_SIZE + 1;
        assert!(config.check().is_err());
        let mut config = AuditConfig::embedded("sqlite::memory:", "memory://");
        config.checkpoint_every = 0;
        assert!(config.check().is_err());
        let mut config = AuditConfig::embedded("sqlite::memory:", "memory://");
        config.consumer_name = "a.b".into();
        assert!(config.check().is_err());
        let mut config = AuditConfig::embedded("sqlite::memory:", "memory://");
        config.syslog_url = Some("tcp://127.0.0.1:514".parse().unwrap_or_else(|_| panic!()));
        config.syslog_ca_file = Some("ca.pem".into());
        assert!(
            config.check().is_err(),
            "a CA file without TLS is a mistake"
        );
        let mut config = AuditConfig::embedded("sqlite::memory:", "memory://");
        config.syslog_hostname = Some("two words".into());
        assert!(config.check().is_err());
    }

    #[test]
    fn syslog_push_is_off_by_default_and_defaults_to_local0_and_ocsf_severity() {
        let config = AuditConfig::embedded("sqlite::memory:", "memory://");
        assert!(config.syslog_url.is_none());
        assert_eq!(config.syslog_format, SyslogFormat::Ndjson);
        assert_eq!(config.syslog_facility, 16);
        assert_eq!(config.syslog_severity, SeverityMode::Ocsf);
        assert!(config.syslog_bom);
    }
}
