//! Configuration of the recorder: flags with `TUCDESK_RECORDER_*` environment variables (and
//! the shared `TUCDESK_BUS_URL`, `TUCDESK_AUTH_*`, and the standard `AWS_*` for S3).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tucdesk_proto::limits::MAX_RECORDING_LEN;
use tucdesk_svc::config::parse_duration;

use crate::error::StartError;

/// Most uploads one replica receives at once (each buffers up to one part in memory).
pub const MAX_CONCURRENT_UPLOADS: usize = 1024;

/// Where the service keeps recordings, whom it trusts, and its limits.
#[derive(Clone, clap::Args)]
pub struct RecorderConfig {
    /// SQL database: `postgres://…` in production, `sqlite://…` embedded.
    #[arg(
        long,
        env = "TUCDESK_RECORDER_DATABASE_URL",
        default_value = "sqlite://tucdesk-recorder.db"
    )]
    pub database_url: String,

    /// Apply the schema migrations at start.
    #[arg(long, env = "TUCDESK_RECORDER_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate: bool,

    /// Event bus the audit events go to: `nats://…` (JetStream) or `memory://`.
    #[arg(long, env = "TUCDESK_BUS_URL", default_value = "memory://")]
    pub bus_url: String,

    /// gRPC listener (RecorderService).
    #[arg(
        long,
        env = "TUCDESK_RECORDER_GRPC_ADDR",
        default_value = "127.0.0.1:7440"
    )]
    pub grpc_addr: SocketAddr,

    /// Object store: `file:///absolute/dir` (a local directory) or `s3://bucket` (any S3 API;
    /// endpoint, region and credentials from the `--s3-*` flags / `AWS_*` variables).
    #[arg(
        long,
        env = "TUCDESK_RECORDER_STORE",
        default_value = "file://tucdesk-recordings"
    )]
    pub store: String,

    /// S3 endpoint (MinIO, R2, …); unset for AWS. Plain `http://` only to a loopback address.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub s3_endpoint: Option<String>,

    /// S3 region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// S3 access key id (unset: the instance's or container's credentials).
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,

    /// S3 secret access key.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,

    /// S3 session token (temporary credentials).
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true)]
    pub s3_session_token: Option<String>,

    /// Rendezvous's internal gRPC endpoint (RendezvousInternal: agent keys, sessions).
    #[arg(
        long,
        env = "TUCDESK_RENDEZVOUS_INTERNAL_URL",
        default_value = "http://127.0.0.1:7411"
    )]
    pub rendezvous_internal_url: String,

    /// The recorder's service identity (Ed25519, mode 0600), created on first start; add
    /// `recorder=<public key>` (printed at creation, and by `tucdesk-recorder public-key`) to
    /// rendezvous's TUCDESK_RENDEZVOUS_SERVICE_KEYS.
    #[arg(
        long,
        env = "TUCDESK_RECORDER_SERVICE_KEY_FILE",
        default_value = "tucdesk-recorder-keys/service.key"
    )]
    pub service_key_file: PathBuf,

    /// The auth service's gRPC endpoint (JWKS for verifying access tokens).
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

    /// `aud` of operator access tokens.
    #[arg(long, env = "TUCDESK_AUTH_AUDIENCE", default_value = "tucdesk")]
    pub token_audience: String,

    /// How long to keep trying to reach auth at startup.
    #[arg(long, env = "TUCDESK_RECORDER_AUTH_STARTUP_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub auth_startup_timeout: Duration,

    /// Largest recording accepted, in bytes (at most 2 GiB), checked against the manifest
    /// before any byte is accepted.
    #[arg(long, env = "TUCDESK_RECORDER_MAX_RECORDING_BYTES", default_value_t = MAX_RECORDING_LEN)]
    pub max_recording_bytes: u64,

    /// Uploads one replica receives at once; more wait.
    #[arg(
        long,
        env = "TUCDESK_RECORDER_MAX_CONCURRENT_UPLOADS",
        default_value_t = 32
    )]
    pub max_concurrent_uploads: usize,
}

/// Where recordings go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Dir(PathBuf),
    S3 { bucket: String },
}

impl RecorderConfig {
    /// Every default, with the backends given (tests and the standalone stack).
    pub fn embedded(database_url: &str, bus_url: &str, store: &str) -> Self {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: RecorderConfig,
        }
        let mut config = Defaults::try_parse_from(["tucdesk-recorder"])
            .map(|d| d.config)
            .unwrap_or_else(|_| unreachable_defaults());
        config.database_url = database_url.to_owned();
        config.bus_url = bus_url.to_owned();
        config.store = store.to_owned();
        // The machine's AWS_* variables never leak into an embedded configuration.
        config.s3_endpoint = None;
        config.s3_access_key_id = None;
        config.s3_secret_access_key = None;
        config.s3_session_token = None;
        config
    }

    /// The object store named by `--store`.
    pub fn store_url(&self) -> Result<StoreUrl, StartError> {
        let bad = |what: &str| Err(StartError::Config(what.to_owned()));
        if let Some(path) = self.store.strip_prefix("file://") {
            if path.is_empty() {
                return bad("--store file:// needs a directory");
            }
            return Ok(StoreUrl::Dir(PathBuf::from(path)));
        }
        if let Some(bucket) = self.store.strip_prefix("s3://") {
            let bucket = bucket.trim_end_matches('/');
            if bucket.is_empty()
                || bucket.len() > 63
                || !bucket
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            {
                return bad("--store s3://BUCKET needs a valid bucket name");
            }
            return Ok(StoreUrl::S3 {
                bucket: bucket.to_owned(),
            });
        }
        bad("--store must be file:///dir or s3://bucket")
    }

    /// Refuses values that cannot work, before anything is connected.
    pub fn check(&self) -> Result<(), StartError> {
        let bad = |what: &str| Err(StartError::Config(what.to_owned()));
        self.store_url()?;
        if self.max_recording_bytes == 0 || self.max_recording_bytes > MAX_RECORDING_LEN {
            return bad("max-recording-bytes must be 1..=2147483648");
        }
        if self.max_concurrent_uploads == 0 || self.max_concurrent_uploads > MAX_CONCURRENT_UPLOADS
        {
            return bad("max-concurrent-uploads must be 1..=1024");
        }
        if let Some(endpoint) = &self.s3_endpoint {
            crate::objects::check_endpoint(endpoint)?;
        }
        if self.s3_access_key_id.is_some() != self.s3_secret_access_key.is_some() {
            return bad("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither");
        }
        Ok(())
    }
}

#[cold]
fn unreachable_defaults() -> RecorderConfig {
    panic!("recorder configuration defaults do not parse")
}

/// Never prints a password inside a URL, nor S3 credentials.
impl std::fmt::Debug for RecorderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use tucdesk_svc::redact::redact_url;
        f.debug_struct("RecorderConfig")
            .field("database_url", &redact_url(&self.database_url))
            .field("migrate", &self.migrate)
            .field("bus_url", &redact_url(&self.bus_url))
            .field("grpc_addr", &self.grpc_addr)
            .field("store", &self.store)
            .field("s3_endpoint", &self.s3_endpoint.as_deref().map(redact_url))
            .field("s3_region", &self.s3_region)
            .field("s3_credentials", &self.s3_access_key_id.is_some())
            .field("rendezvous_internal_url", &self.rendezvous_internal_url)
            .field("service_key_file", &self.service_key_file)
            .field("auth_url", &self.auth_url)
            .field("token_issuer", &self.token_issuer)
            .field("token_audience", &self.token_audience)
            .field("max_recording_bytes", &self.max_recording_bytes)
            .field("max_concurrent_uploads", &self.max_concurrent_uploads)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_check() {
        let config = RecorderConfig::embedded("sqlite::memory:", "memory://", "file:///tmp/r");
        assert!(config.check().is_ok());
        assert_eq!(config.grpc_addr.port(), 7440);
        assert_eq!(config.max_recording_bytes, MAX_RECORDING_LEN);
        assert_eq!(
            config.store_url().ok(),
            Some(StoreUrl::Dir("/tmp/r".into()))
        );
    }

    #[test]
    fn bad_settings_are_refused_and_secrets_hidden() {
        let mut config =
            RecorderConfig::embedded("sqlite::memory:", "memory://", "s3://Bad_Bucket");
        assert!(config.check().is_err());
        config.store = "ftp://x".into();
        assert!(config.check().is_err());
        config.store = "s3://recordings".into();
        assert!(config.check().is_ok());
        config.max_recording_bytes = MAX_RECORDING_LEN + 1;
        assert!(config.check().is_err());
        config.max_recording_bytes = 10;
        config.s3_endpoint = Some("http://s3.example.com".into());
        assert!(config.check().is_err(), "plain http to a remote endpoint");
        config.s3_endpoint = Some("http://127.0.0.1:9000".into());
        assert!(config.check().is_ok());
        config.s3_access_key_id = Some("AKIA".into());
        assert!(config.check().is_err(), "a key id without its secret");
        config.s3_secret_access_key = Some("s3cr3t-value".into());
        assert!(config.check().is_ok());
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }
}
