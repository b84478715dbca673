//! OAuth 2.1 for AI agents (MCP clients): authorization code + PKCE (S256 only) for public
//! clients, RFC 7591 dynamic registration, RFC 8414 metadata, RFC 8252 loopback redirects.
//! No long-lived secret ever lives in an AI agent: clients have none, codes live 60 s and
//! need the PKCE verifier, refresh tokens rotate with reuse detection like the users'.
//!
//! HTTP endpoints (merged into the JWKS router, see `http.rs`):
//! - `GET /.well-known/oauth-authorization-server` — [`metadata`];
//! - `POST /oauth/register` — [`register`];
//! - `GET`/`POST /oauth/authorize` — [`authorize`] (login + consent page), [`consent`];
//! - `POST /oauth/token` — [`token`], [`exchange`].
//!
//! gRPC management of clients and grants is in [`grpc`]. Design decisions and the threat
//! model are in `docs/auth.md`, "OAuth 2.1 for AI agents".

pub mod authorize;
pub mod clients;
pub mod codes;
pub mod consent;
pub mod csrf;
pub mod error;
pub mod exchange;
pub mod form;
pub mod grants;
pub mod grpc;
pub mod metadata;
pub mod page;
pub mod peer;
pub mod redirect;
pub mod register;
pub mod scope;
pub mod token;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::service::Auth;

/// Largest registration body (five 512-byte URIs and a name fit many times over).
pub const MAX_REGISTER_BODY: usize = 16 * 1024;

/// Largest consent-form body.
pub const MAX_AUTHORIZE_BODY: usize = 16 * 1024;

/// Largest token-request body.
pub const MAX_TOKEN_BODY: usize = 8 * 1024;

/// The OAuth routes; merged into the service's HTTP router, which supplies the state.
pub fn router() -> Router<Auth> {
    Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::metadata),
        )
        .route(
            "/oauth/register",
            post(register::register).layer(DefaultBodyLimit::max(MAX_REGISTER_BODY)),
        )
        .route(
            "/oauth/authorize",
            get(authorize::show)
                .post(authorize::submit)
                .layer(DefaultBodyLimit::max(MAX_AUTHORIZE_BODY)),
        )
        .route(
            "/oauth/token",
            post(token::token).layer(DefaultBodyLimit::max(MAX_TOKEN_BODY)),
        )
}
