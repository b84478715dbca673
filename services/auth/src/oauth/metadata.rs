//! `GET /.well-known/oauth-authorization-server` (RFC 8414).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::clients::{AUTH_METHOD_NONE, GRANT_TYPES, RESPONSE_TYPES};
use super::scope::Scope;
use crate::service::Auth;

/// How long clients may cache the metadata document.
pub const METADATA_MAX_AGE_SECS: u64 = 300;

/// The metadata document; every URL is the issuer's.
#[derive(Debug, Serialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub registration_endpoint: String,
    pub jwks_uri: String,
    pub scopes_supported: Vec<&'static str>,
    pub response_types_supported: [&'static str; 1],
    pub response_modes_supported: [&'static str; 1],
    pub grant_types_supported: [&'static str; 2],
    pub code_challenge_methods_supported: [&'static str; 1],
    pub token_endpoint_auth_methods_supported: [&'static str; 1],
    /// RFC 9207: authorization responses carry `iss`.
    pub authorization_response_iss_parameter_supported: bool,
}

impl Metadata {
    /// The document for `issuer` (an origin; a trailing slash is dropped).
    pub fn for_issuer(issuer: &str) -> Self {
        let base = issuer.trim_end_matches('/');
        Self {
            issuer: issuer.to_owned(),
            authorization_endpoint: format!("{base}/oauth/authorize"),
            token_endpoint: format!("{base}/oauth/token"),
            registration_endpoint: format!("{base}/oauth/register"),
            jwks_uri: format!("{base}/.well-known/jwks.json"),
            scopes_supported: Scope::ALL.iter().map(|scope| scope.as_str()).collect(),
            response_types_supported: RESPONSE_TYPES,
            response_modes_supported: ["query"],
            grant_types_supported: GRANT_TYPES,
            code_challenge_methods_supported: [super::authorize::PKCE_METHOD],
            token_endpoint_auth_methods_supported: [AUTH_METHOD_NONE],
            authorization_response_iss_parameter_supported: true,
        }
    }
}

/// `GET /.well-known/oauth-authorization-server`.
pub(crate) async fn metadata(State(auth): State<Auth>) -> Response {
    match serde_json::to_vec(&Metadata::for_issuer(&auth.config().issuer)) {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json".to_owned()),
                (
                    header::CACHE_CONTROL,
                    format!("public, max-age={METADATA_MAX_AGE_SECS}"),
                ),
            ],
            body,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "serialising the OAuth metadata");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
