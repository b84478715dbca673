//! Operators' access tokens, as the services other than auth verify them: the `authorization`
//! header (bounded, `Bearer`), the signature against auth's keys (refetched once when a token
//! names a key we have not seen: auth rotated), issuer, audience, expiry, and a device-key
//! binding (`cnf.jkt`). What a caller may then do (roles, AI agents, support principals) is
//! each service's own decision.

use tokio_util::sync::CancellationToken;
use tucdesk_token::{AccessClaims, RequireCnf, TokenError, TokenVerifier};

use crate::auth_keys::AuthKeys;

/// Longest `authorization` header accepted ("Bearer " + a token).
const MAX_BEARER_LEN: usize = tucdesk_proto::limits::MAX_TOKEN_LEN + 16;

/// Why a request carries no usable access token. The messages are safe to show the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("an access token is required")]
    Missing,
    #[error("malformed authorization header")]
    Malformed,
    #[error("authorization header too long")]
    TooLong,
    #[error("expected a Bearer token")]
    NotBearer,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is invalid")]
    Invalid,
    #[error("the access token is not bound to a device key")]
    NotDeviceBound,
}

impl AccessError {
    /// The same text as `Display`, for error types that carry `&'static str`.
    pub fn message(self) -> &'static str {
        match self {
            Self::Missing => "an access token is required",
            Self::Malformed => "malformed authorization header",
            Self::TooLong => "authorization header too long",
            Self::NotBearer => "expected a Bearer token",
            Self::Expired => "the access token has expired",
            Self::Invalid => "the access token is invalid",
            Self::NotDeviceBound => "the access token is not bound to a device key",
        }
    }
}

/// Verifies access tokens: against auth's keys (followed and refreshed), or a fixed key set
/// (tests and tools).
#[derive(Debug, Clone)]
pub struct AccessVerifier {
    verifier: TokenVerifier,
    keys: Option<AuthKeys>,
}

impl AccessVerifier {
    /// Tokens auth signs for `audience`, its keys followed through `keys`.
    pub fn from_auth(keys: AuthKeys, audience: &str) -> Self {
        Self {
            verifier: keys.verifier(audience),
            keys: Some(keys),
        }
    }

    /// Tokens verified by `verifier` alone.
    pub fn fixed(verifier: TokenVerifier) -> Self {
        Self {
            verifier,
            keys: None,
        }
    }

    /// Refreshes auth's keys periodically until `shutdown` (nothing to do for fixed keys).
    pub async fn run_refresh(&self, shutdown: CancellationToken) {
        if let Some(keys) = &self.keys {
            keys.run_refresh(shutdown).await;
        }
    }

    /// The verified, device-bound claims of a gRPC request's `authorization` metadata.
    pub async fn verify_request<T>(
        &self,
        request: &tonic::Request<T>,
    ) -> Result<AccessClaims, AccessError> {
        let value = request
            .metadata()
            .get(tucdesk_proto::metadata::AUTHORIZATION)
            .map(|value| value.to_str().map_err(|_| AccessError::Malformed))
            .transpose()?;
        self.verify_authorization(value).await
    }

    /// The verified, device-bound claims of an `authorization` header value (gRPC metadata or
    /// an HTTP header).
    pub async fn verify_authorization(
        &self,
        value: Option<&str>,
    ) -> Result<AccessClaims, AccessError> {
        let token = bearer_token(value)?;
        let verify = || {
            self.verifier
                .verify_access(token, tucdesk_token::unix_now(), RequireCnf::No)
        };
        let claims = match (verify(), &self.keys) {
            (Err(TokenError::UnknownKey), Some(keys)) => {
                // Auth may have rotated its key since our last fetch.
                keys.refresh_for_unknown_kid().await;
                verify()
            }
            (other, _) => other,
        }
        .map_err(|err| match err {
            TokenError::Expired => AccessError::Expired,
            _ => AccessError::Invalid,
        })?;
        if claims.cnf.is_none() {
            return Err(AccessError::NotDeviceBound);
        }
        Ok(claims)
    }
}

/// The token of an `authorization` header value.
pub fn bearer_token(value: Option<&str>) -> Result<&str, AccessError> {
    let value = value.ok_or(AccessError::Missing)?;
    if value.len() > MAX_BEARER_LEN {
        return Err(AccessError::TooLong);
    }
    value.strip_prefix("Bearer ").ok_or(AccessError::NotBearer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_values_are_bounded_and_bearer_only() {
        assert_eq!(bearer_token(None), Err(AccessError::Missing));
        assert_eq!(bearer_token(Some("Basic abc")), Err(AccessError::NotBearer));
        assert_eq!(bearer_token(Some("Bearer abc")), Ok("abc"));
        let long = format!("Bearer {}", "a".repeat(MAX_BEARER_LEN));
        assert_eq!(bearer_token(Some(&long)), Err(AccessError::TooLong));
        for err in [
            AccessError::Missing,
            AccessError::Malformed,
            AccessError::TooLong,
            AccessError::NotBearer,
            AccessError::Expired,
            AccessError::Invalid,
            AccessError::NotDeviceBound,
        ] {
            assert_eq!(err.message(), err.to_string());
        }
    }
}
