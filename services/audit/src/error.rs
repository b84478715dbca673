//! Errors of the audit service and their one mapping to gRPC `Status`.
//!
//! Peers get a precise status code plus an `ErrorDetail` in the status details; internal
//! causes go to the log where they happen, never to the peer.

use tonic::{Code, Status};
use tucdesk_proto::v1::RejectReason;

/// What a request (or the ingest loop) ran into.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("the access token has expired")]
    TokenExpired,
    #[error("permission denied: {0}")]
    PermissionDenied(&'static str),
    /// Also for other teams' objects: their existence is never revealed.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("a limit was exceeded: {0}")]
    LimitExceeded(&'static str),
    #[error("{0} is unavailable; try again later")]
    Unavailable(&'static str),
    /// A backend failed or stored data is inconsistent; the cause is logged where it happened.
    #[error("internal error")]
    Internal(String),
}

impl AuditError {
    /// Logs `err` with `context` and returns an opaque internal error.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        Self::Internal(context.to_owned())
    }

    fn code_and_reason(&self) -> (Code, RejectReason) {
        use RejectReason as R;
        match self {
            Self::InvalidArgument(_) => (Code::InvalidArgument, R::InvalidArgument),
            Self::Unauthenticated(_) => (Code::Unauthenticated, R::TokenInvalid),
            Self::TokenExpired => (Code::Unauthenticated, R::TokenExpired),
            Self::PermissionDenied(_) => (Code::PermissionDenied, R::PermissionDenied),
            Self::NotFound(_) => (Code::NotFound, R::NotFound),
            Self::LimitExceeded(_) => (Code::ResourceExhausted, R::LimitExceeded),
            Self::Unavailable(_) => (Code::Unavailable, R::Unavailable),
            Self::Internal(_) => (Code::Internal, R::Internal),
        }
    }

    /// The machine-readable reason this error reports.
    pub fn reason(&self) -> RejectReason {
        self.code_and_reason().1
    }
}

pub use tucdesk_svc::status::reason_label;

impl From<AuditError> for Status {
    fn from(err: AuditError) -> Self {
        let (code, reason) = err.code_and_reason();
        tucdesk_svc::status::with_detail(code, tucdesk_svc::status::detail(reason, err.to_string()))
    }
}

impl From<sqlx::Error> for AuditError {
    fn from(err: sqlx::Error) -> Self {
        Self::internal("database error", err)
    }
}

impl From<tucdesk_svc::sql::SqlError> for AuditError {
    fn from(err: tucdesk_svc::sql::SqlError) -> Self {
        Self::internal("database error", err)
    }
}

impl From<tucdesk_svc::outbox::OutboxError> for AuditError {
    fn from(err: tucdesk_svc::outbox::OutboxError) -> Self {
        Self::internal("audit outbox error", err)
    }
}

/// Why the service could not be built or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Key(#[from] crate::key::KeyError),
    #[error(transparent)]
    Database(#[from] tucdesk_svc::sql::SqlError),
    #[error(transparent)]
    Bus(#[from] tucdesk_svc::bus::BusError),
    #[error(transparent)]
    AuthKeys(#[from] tucdesk_svc::auth_keys::AuthKeysError),
    #[error("metrics registry: {0}")]
    Metrics(#[from] tucdesk_svc::http::HttpError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("HTTP export server: {0}")]
    Http(#[source] std::io::Error),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use tucdesk_proto::v1::ErrorDetail;

    #[test]
    fn statuses_carry_a_reason_and_hide_internal_causes() {
        let status = Status::from(AuditError::internal(
            "database error",
            "connection to 10.0.0.5 refused",
        ));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("10.0.0.5"));
        let status = Status::from(AuditError::PermissionDenied("no"));
        let detail = ErrorDetail::decode(status.details()).unwrap_or_default();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(detail.reason, RejectReason::PermissionDenied as i32);
    }
}
