//! Configuration of the auth service: flags with `TUCDESK_AUTH_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tucdesk_svc::config::parse_duration;

/// Where the service keeps its state and how it issues tokens.
#[derive(Clone, clap::Args)]
pub struct AuthConfig {
    /// SQL database: `postgres://…` in production, `sqlite://…` embedded.
    #[arg(
        long,
        env = "TUCDESK_AUTH_DATABASE_URL",
        default_value = "sqlite://tucdesk-auth.db"
    )]
    pub database_url: String,

    /// Event bus for audit events: `nats://…` or `memory://`.
    #[arg(long, env = "TUCDESK_BUS_URL", default_value = "memory://")]
    pub bus_url: String,

    /// Shared cache for challenge/nonce replay protection and rate limits: `redis://…` or
    /// `memory://` (single replica only).
    #[arg(long, env = "TUCDESK_CACHE_URL", default_value = "memory://")]
    pub cache_url: String,

    /// gRPC listener (AuthService, AuthInternal).
    #[arg(long, env = "TUCDESK_AUTH_GRPC_ADDR", default_value = "127.0.0.1:7401")]
    pub grpc_addr: SocketAddr,

    /// HTTP listener (JWKS, OAuth 2.1 endpoints, RFC 8414 metadata).
    #[arg(long, env = "TUCDESK_AUTH_HTTP_ADDR", default_value = "127.0.0.1:7402")]
    pub http_addr: SocketAddr,

    /// `iss` of every token; the public base URL of the HTTP listener.
    #[arg(
        long,
        env = "TUCDESK_AUTH_ISSUER",
        default_value = "http://127.0.0.1:7402"
    )]
    pub issuer: String,

    /// `aud` of access tokens: the TucDesk deployment's API audience.
    #[arg(long, env = "TUCDESK_AUTH_AUDIENCE", default_value = "tucdesk")]
    pub audience: String,

    /// Access-token lifetime.
    #[arg(long, env = "TUCDESK_AUTH_ACCESS_TTL", default_value = "15m", value_parser = parse_duration)]
    pub access_ttl: Duration,

    /// Absolute lifetime of a refresh-token family: after it, the user logs in again.
    #[arg(long, env = "TUCDESK_AUTH_REFRESH_LIFETIME", default_value = "30d", value_parser = parse_duration)]
    pub refresh_lifetime: Duration,

    /// Lifetime of session tokens and relay tickets minted for rendezvous.
    #[arg(long, env = "TUCDESK_AUTH_SESSION_TTL", default_value = "5m", value_parser = parse_duration)]
    pub session_ttl: Duration,

    /// Key-encryption key: 32 bytes, base64. Seals the signing keys and TOTP secrets at rest
    /// and keys the support-code hashes. Without it (development only) a random KEK is
    /// generated into `<key-dir>/kek` with mode 0600.
    #[arg(long, env = "TUCDESK_AUTH_KEK", hide_env_values = true)]
    pub kek: Option<String>,

    /// Directory for the development KEK file (used only when no KEK is configured).
    #[arg(
        long,
        env = "TUCDESK_AUTH_KEY_DIR",
        default_value = "tucdesk-auth-keys"
    )]
    pub key_dir: PathBuf,

    /// Services allowed to call AuthInternal, as `name=<base64url Ed25519 public key>`
    /// (comma separated). Rendezvous's key must be listed for MintSessionToken.
    #[arg(long, env = "TUCDESK_AUTH_SERVICE_KEYS", value_delimiter = ',')]
    pub service_keys: Vec<String>,
}

/// Never prints the KEK or a password inside a backend URL.
impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use tucdesk_svc::redact::redact_url;
        f.debug_struct("AuthConfig")
            .field("database_url", &redact_url(&self.database_url))
            .field("bus_url", &redact_url(&self.bus_url))
            .field("cache_url", &redact_url(&self.cache_url))
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("access_ttl", &self.access_ttl)
            .field("refresh_lifetime", &self.refresh_lifetime)
            .field("session_ttl", &self.session_ttl)
            .field("kek", &self.kek.as_ref().map(|_| "<redacted>"))
            .field("key_dir", &self.key_dir)
            .field("service_keys", &self.service_keys)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        auth: super::AuthConfig,
    }

    #[test]
    fn debug_hides_the_kek_and_database_password() {
        let cli = Cli::try_parse_from([
            "t",
            "--database-url",
            "postgres://auth:db-hunter2@127.0.0.1/auth",
            "--kek",
            "a2VrLWh1bnRlcjIta2VrLWh1bnRlcjIta2VrLWh1bnQ=",
        ])
        .unwrap_or_else(|err| panic!("{err}"));
        let shown = format!("{cli:?}");
        assert!(!shown.contains("db-hunter2"), "{shown}");
        assert!(!shown.contains("a2VrLWh1bnRlcjIt"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
