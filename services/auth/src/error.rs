//! Errors of the auth service and their one mapping to gRPC `Status`.
//!
//! Peers get a precise status code plus an `ErrorDetail` (reason, retry hint) in the status
//! details; internal causes (database, sealing) go to the log, never to the peer.

use std::time::Duration;

use prost::Message as _;
use tonic::{Code, Status};
use tucdesk_proto::v1::{ErrorDetail, RejectReason};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Unknown user and wrong password give this same error (no account enumeration).
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("the TOTP code is wrong or was already used")]
    TotpInvalid,
    #[error("too many failed attempts; try again later")]
    Locked { retry_after: Duration },
    #[error("too many requests; try again later")]
    RateLimited { retry_after: Duration },
    #[error("the account is disabled")]
    Disabled,
    #[error("the token is invalid")]
    TokenInvalid,
    #[error("the token has expired")]
    TokenExpired,
    #[error("the refresh token was already used; every session of this device was signed out")]
    TokenReused,
    #[error("the device key does not match the one the token is bound to")]
    DeviceKeyMismatch,
    #[error("the device proof is invalid: {0}")]
    ProofInvalid(&'static str),
    #[error("the challenge is expired or was already used")]
    ChallengeExpired,
    #[error("the support code is invalid, expired or used up")]
    SupportCodeInvalid,
    #[error("a valid service assertion is required")]
    ServiceAssertionInvalid,
    #[error("permission denied: {0}")]
    PermissionDenied(&'static str),
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("already exists: {0}")]
    AlreadyExists(&'static str),
    #[error("client protocol version {got} is below the minimum {min}; update the client")]
    UpdateRequired { got: u32, min: u32 },
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    /// A backend failed; the cause is logged where it happened.
    #[error("internal error")]
    Internal(String),
}

impl AuthError {
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        Self::Internal(context.to_owned())
    }

    fn reason(&self) -> (Code, RejectReason) {
        use RejectReason as R;
        match self {
            Self::InvalidArgument(_) => (Code::InvalidArgument, R::InvalidArgument),
            Self::InvalidCredentials => (Code::Unauthenticated, R::InvalidCredentials),
            Self::TotpInvalid => (Code::Unauthenticated, R::TotpInvalid),
            Self::Locked { .. } => (Code::ResourceExhausted, R::AccountLocked),
            Self::RateLimited { .. } => (Code::ResourceExhausted, R::RateLimited),
            Self::Disabled => (Code::PermissionDenied, R::AccountDisabled),
            Self::TokenInvalid => (Code::Unauthenticated, R::TokenInvalid),
            Self::TokenExpired => (Code::Unauthenticated, R::TokenExpired),
            Self::TokenReused => (Code::Unauthenticated, R::TokenReused),
            Self::DeviceKeyMismatch => (Code::Unauthenticated, R::DeviceKeyMismatch),
            Self::ProofInvalid(_) => (Code::Unauthenticated, R::ProofInvalid),
            Self::ChallengeExpired => (Code::Unauthenticated, R::ChallengeExpired),
            Self::SupportCodeInvalid => (Code::Unauthenticated, R::SupportCodeInvalid),
            Self::ServiceAssertionInvalid => (Code::Unauthenticated, R::ServiceAssertionInvalid),
            Self::PermissionDenied(_) => (Code::PermissionDenied, R::PermissionDenied),
            Self::NotFound(_) => (Code::NotFound, R::NotFound),
            Self::AlreadyExists(_) => (Code::AlreadyExists, R::AlreadyExists),
            Self::UpdateRequired { .. } => (Code::FailedPrecondition, R::UpdateRequired),
            Self::Unauthenticated(_) => (Code::Unauthenticated, R::TokenInvalid),
            Self::Internal(_) => (Code::Internal, R::Internal),
        }
    }
}

impl From<AuthError> for Status {
    fn from(err: AuthError) -> Self {
        let (code, reason) = err.reason();
        let mut detail = tucdesk_svc::status::detail(reason, err.to_string());
        match &err {
            AuthError::Locked { retry_after } | AuthError::RateLimited { retry_after } => {
                detail.retry_after_ms = tucdesk_svc::status::retry_after_ms(*retry_after);
            }
            AuthError::UpdateRequired { min, .. } => detail.min_protocol_version = *min,
            _ => {}
        }
        tucdesk_svc::status::with_detail(code, detail)
    }
}

impl From<sqlx::Error> for AuthError {
    fn from(err: sqlx::Error) -> Self {
        Self::internal("database error", err)
    }
}

impl From<tucdesk_svc::sql::SqlError> for AuthError {
    fn from(err: tucdesk_svc::sql::SqlError) -> Self {
        Self::internal("database error", err)
    }
}

impl From<tucdesk_svc::outbox::OutboxError> for AuthError {
    fn from(err: tucdesk_svc::outbox::OutboxError) -> Self {
        Self::internal("audit outbox error", err)
    }
}

impl From<crate::secrets::SecretsError> for AuthError {
    fn from(err: crate::secrets::SecretsError) -> Self {
        Self::internal("secret sealing error", err)
    }
}

/// Refuses clients older than the protocol floor with an explicit UPDATE_REQUIRED.
pub fn check_client_version(version: u32) -> Result<(), AuthError> {
    let min = tucdesk_proto::MIN_CLIENT_PROTOCOL_VERSION;
    if version < min {
        return Err(AuthError::UpdateRequired { got: version, min });
    }
    Ok(())
}

/// Decodes the `ErrorDetail` a status carries, for clients and tests.
pub fn error_detail(status: &Status) -> Option<ErrorDetail> {
    ErrorDetail::decode(status.details()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_the_reason_and_retry_hint() {
        let status = Status::from(AuthError::Locked {
            retry_after: Duration::from_secs(90),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        let detail = error_detail(&status).unwrap_or_default();
        assert_eq!(detail.reason, RejectReason::AccountLocked as i32);
        assert_eq!(detail.retry_after_ms, 90_000);
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let status = Status::from(AuthError::internal(
            "database error",
            "password authentication failed for user tucdesk at 10.0.0.5",
        ));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("10.0.0.5"));
    }
}
