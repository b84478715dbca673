//! TucDesk auth service (SPEC §3): users, teams and roles, password + TOTP login, EdDSA access
//! tokens bound to device keys, refresh-token families, support codes, session tokens for
//! rendezvous, and OAuth 2.1 + PKCE for AI agents.
//!
//! Library first: [`serve`] builds the gRPC and HTTP routers on given listeners, so tests and
//! `tucdesk-standalone` run the service in-process exactly as `main.rs` does.
#![forbid(unsafe_code)]

pub mod account;
pub mod admin;
pub mod authz;
pub mod challenge;
pub mod config;
pub mod error;
pub mod grpc;
pub mod http;
pub mod internal;
pub mod keys;
pub mod login;
pub mod metrics;
pub mod oauth;
pub mod password;
pub mod refresh;
pub mod secrets;
pub mod service;
pub mod session;
pub mod store;
pub mod support_codes;
pub mod totp;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tucdesk_proto::v1::auth_internal_server::AuthInternalServer;
use tucdesk_proto::v1::auth_service_server::AuthServiceServer;

pub use config::AuthConfig;
pub use error::AuthError;
pub use service::{Auth, Backends};

/// Largest gRPC message accepted; auth requests are small.
pub const MAX_GRPC_MESSAGE: usize = 64 * 1024;

/// The key-encryption key from the configuration, or the development key file.
pub fn load_kek(config: &AuthConfig) -> Result<secrets::Kek, secrets::SecretsError> {
    match config.kek.as_deref() {
        Some(text) if !text.trim().is_empty() => secrets::Kek::from_base64(text),
        _ => {
            tracing::warn!(
                key_dir = %config.key_dir.display(),
                "TUCDESK_AUTH_KEK is not set: using a development key-encryption key from a \
                 local file; set TUCDESK_AUTH_KEK in production"
            );
            secrets::Kek::load_or_create_dev(&config.key_dir)
        }
    }
}

/// Serves gRPC on `grpc` and HTTP (JWKS) on `http` until `shutdown`, running
/// the background work (audit outbox, key reloads) alongside.
pub async fn serve(
    auth: Auth,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let service = AuthServiceServer::new(grpc::AuthGrpc::new(auth.clone()))
        .max_decoding_message_size(MAX_GRPC_MESSAGE);
    let grpc_shutdown = shutdown.clone();
    let internal = AuthInternalServer::new(internal::AuthInternalGrpc::new(auth.clone()))
        .max_decoding_message_size(MAX_GRPC_MESSAGE);
    let grpc_server = tonic::transport::Server::builder()
        .add_service(service)
        .add_service(internal)
        .serve_with_incoming_shutdown(tucdesk_svc::net::nodelay_incoming(grpc), async move {
            grpc_shutdown.cancelled().await
        });
    let router = http::router(auth.clone());
    // With peer addresses: the OAuth endpoints rate-limit by source.
    let http_server = oauth::peer::serve(http, router, shutdown.clone());
    let background = auth.run_background(shutdown.clone());
    let (grpc_result, http_result, ()) = tokio::join!(grpc_server, http_server, background);
    grpc_result?;
    http_result?;
    Ok(())
}

/// Builds the service from its configuration: backends, KEK, keys.
pub async fn build(config: AuthConfig) -> anyhow::Result<Auth> {
    let backends = Backends::connect(&config).await?;
    let kek = load_kek(&config)?;
    let passwords = password::PasswordHasher::new();
    // The dummy hash for unknown users is computed now, not on the first such login (which
    // would then cost two hashes and be told apart by its timing).
    passwords.warm_up().await?;
    Ok(Auth::new(config, backends, kek, passwords).await?)
}
