//! HTTP endpoints: the JWKS (RFC 7517/8037) any JWT library verifies our tokens with.
//! The OAuth 2.1 endpoints and RFC 8414 metadata join this router with the OAuth work.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::service::Auth;

/// How long clients may cache the JWKS. Short, so a rotation is seen quickly; a retired key
/// stays published far longer than this.
pub const JWKS_MAX_AGE_SECS: u64 = 300;

pub fn router(auth: Auth) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .merge(crate::oauth::router())
        .with_state(auth)
}

async fn jwks(State(auth): State<Auth>) -> Response {
    match auth.jwks().and_then(|jwks| {
        jwks.to_json()
            .map_err(|err| crate::error::AuthError::internal("serialising the JWKS", err))
    }) {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/jwk-set+json".to_owned()),
                (
                    header::CACHE_CONTROL,
                    format!("public, max-age={JWKS_MAX_AGE_SECS}"),
                ),
            ],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
