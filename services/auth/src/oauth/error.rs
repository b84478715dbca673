//! Errors of the OAuth HTTP endpoints, answered as RFC 6749 §5.2 / RFC 7591 §3.2.2 JSON:
//! `{"error": "<code>", "error_description": "…"}` with `Cache-Control: no-store`.
//! Descriptions are fixed texts or validation messages; internal causes go to the log only
//! (through [`AuthError::internal`]).

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::form::FormError;
use crate::error::AuthError;

/// One OAuth error response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub status: StatusCode,
    /// The registered error code (`invalid_grant`, …).
    pub code: &'static str,
    pub description: String,
    pub retry_after: Option<Duration>,
}

impl OAuthError {
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            retry_after: None,
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    /// Unknown or revoked client (RFC 6749 §5.2 answers it with 401).
    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    pub fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    pub fn unsupported_grant_type() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be authorization_code or refresh_token",
        )
    }

    /// RFC 7591 §3.2.2.
    pub fn invalid_redirect_uri(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_redirect_uri", description)
    }

    /// RFC 7591 §3.2.2.
    pub fn invalid_client_metadata(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            description,
        )
    }

    pub fn rate_limited(retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                "too many requests; try again later",
            )
        }
    }

    pub fn server_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error",
        )
    }
}

impl From<FormError> for OAuthError {
    fn from(err: FormError) -> Self {
        Self::invalid_request(err.to_string())
    }
}

impl From<AuthError> for OAuthError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Locked { retry_after } | AuthError::RateLimited { retry_after } => {
                Self::rate_limited(retry_after)
            }
            AuthError::TokenInvalid | AuthError::TokenExpired | AuthError::TokenReused => {
                Self::invalid_grant("the grant is invalid, expired or revoked")
            }
            AuthError::Disabled => Self::invalid_grant("the account is disabled"),
            AuthError::InvalidArgument(message) => Self::invalid_request(message),
            // Already logged where it happened.
            _ => Self::server_error(),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_description: &'a str,
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = Body {
            error: self.code,
            error_description: &self.description,
        };
        let mut response = json_no_store(self.status, &body);
        if let Some(retry_after) = self.retry_after {
            // Rounded up: a client retrying at the advertised second is no longer refused.
            let secs = u64::try_from(retry_after.as_millis().div_ceil(1000))
                .unwrap_or(u64::MAX)
                .max(1);
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// A JSON response that no cache may keep (tokens, client registrations, errors).
pub fn json_no_store(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
                (header::PRAGMA, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "serialising an OAuth response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn internal_causes_never_reach_the_client() {
        let err = OAuthError::from(AuthError::internal(
            "database error",
            "connection to 10.0.0.5 refused",
        ));
        assert_eq!(err.code, "server_error");
        assert!(!err.description.contains("10.0.0.5"));
    }

    #[test]
    fn lockouts_become_429_with_retry_after() {
        let response = OAuthError::from(AuthError::Locked {
            retry_after: Duration::from_millis(1500),
        })
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    }
}
