//! Errors of the recorder and their one mapping to gRPC `Status`.
//!
//! Peers get a precise status code plus an `ErrorDetail` in the status details; internal
//! causes go to the log where they happen, never to the peer.

use tonic::{Code, Status};
use tucdesk_proto::v1::RejectReason;

/// What a request ran into.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
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
    #[error("already exists: {0}")]
    AlreadyExists(&'static str),
    /// The upload's offset is not where the stored upload stands.
    #[error("the upload stands at byte {current}; resume there")]
    VersionConflict { current: u64 },
    #[error("protocol version {got} is below the minimum {min}; update")]
    UpdateRequired { got: u32, min: u32 },
    #[error("the upload proof's timestamp is outside ±30 s of the recorder's clock")]
    ClockSkew,
    #[error("the upload proof's nonce was already used")]
    NonceReplayed,
    #[error("signature invalid: {0}")]
    SignatureInvalid(&'static str),
    #[error("the upload proof is invalid: {0}")]
    ProofInvalid(&'static str),
    #[error("the agent is not enrolled")]
    AgentNotEnrolled,
    #[error("the agent is revoked")]
    AgentRevoked,
    #[error("a limit was exceeded: {0}")]
    LimitExceeded(&'static str),
    #[error("{0} is unavailable; try again later")]
    Unavailable(&'static str),
    /// A backend failed or stored data is inconsistent; the cause is logged where it happened.
    #[error("internal error")]
    Internal(String),
}

impl RecorderError {
    /// Logs `err` with `context` and returns an opaque internal error.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        Self::Internal(context.to_owned())
    }

    pub fn invalid(err: impl std::fmt::Display) -> Self {
        Self::InvalidArgument(err.to_string())
    }

    fn code_and_reason(&self) -> (Code, RejectReason) {
        use RejectReason as R;
        match self {
            Self::InvalidArgument(_) => (Code::InvalidArgument, R::InvalidArgument),
            Self::Unauthenticated(_) => (Code::Unauthenticated, R::TokenInvalid),
            Self::TokenExpired => (Code::Unauthenticated, R::TokenExpired),
            Self::PermissionDenied(_) => (Code::PermissionDenied, R::PermissionDenied),
            Self::NotFound(_) => (Code::NotFound, R::NotFound),
            Self::AlreadyExists(_) => (Code::AlreadyExists, R::AlreadyExists),
            Self::VersionConflict { .. } => (Code::Aborted, R::VersionConflict),
            Self::UpdateRequired { .. } => (Code::FailedPrecondition, R::UpdateRequired),
            Self::ClockSkew => (Code::Unauthenticated, R::ClockSkew),
            Self::NonceReplayed => (Code::Unauthenticated, R::NonceReplayed),
            Self::SignatureInvalid(_) => (Code::Unauthenticated, R::SignatureInvalid),
            Self::ProofInvalid(_) => (Code::Unauthenticated, R::ProofInvalid),
            Self::AgentNotEnrolled => (Code::PermissionDenied, R::AgentNotEnrolled),
            Self::AgentRevoked => (Code::PermissionDenied, R::AgentRevoked),
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

impl From<RecorderError> for Status {
    fn from(err: RecorderError) -> Self {
        let (code, reason) = err.code_and_reason();
        let min_protocol_version = match &err {
            RecorderError::UpdateRequired { min, .. } => *min,
            _ => 0,
        };
        let mut detail = tucdesk_svc::status::detail(reason, err.to_string());
        detail.min_protocol_version = min_protocol_version;
        tucdesk_svc::status::with_detail(code, detail)
    }
}

impl From<sqlx::Error> for RecorderError {
    fn from(err: sqlx::Error) -> Self {
        Self::internal("database error", err)
    }
}

impl From<tucdesk_svc::sql::SqlError> for RecorderError {
    fn from(err: tucdesk_svc::sql::SqlError) -> Self {
        Self::internal("database error", err)
    }
}

impl From<tucdesk_svc::outbox::OutboxError> for RecorderError {
    fn from(err: tucdesk_svc::outbox::OutboxError) -> Self {
        Self::internal("audit outbox error", err)
    }
}

impl From<object_store::Error> for RecorderError {
    fn from(err: object_store::Error) -> Self {
        match err {
            // A listed recording whose object the store's retention rule already removed.
            object_store::Error::NotFound { .. } => Self::NotFound("recording object"),
            other => Self::internal("object store error", other),
        }
    }
}

/// Why the service could not be built or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Database(#[from] tucdesk_svc::sql::SqlError),
    #[error(transparent)]
    Bus(#[from] tucdesk_svc::bus::BusError),
    #[error(transparent)]
    AuthKeys(#[from] tucdesk_svc::auth_keys::AuthKeysError),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("service key: {0}")]
    ServiceKey(String),
    #[error("metrics registry: {0}")]
    Metrics(#[from] tucdesk_svc::http::HttpError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use tucdesk_proto::v1::ErrorDetail;

    #[test]
    fn statuses_carry_a_reason_and_hide_internal_causes() {
        let status = Status::from(RecorderError::internal(
            "object store error",
            "bucket at 10.1.2.3",
        ));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("10.1.2.3"));
        let status = Status::from(RecorderError::VersionConflict { current: 42 });
        let detail = ErrorDetail::decode(status.details()).unwrap_or_default();
        assert_eq!(status.code(), Code::Aborted);
        assert_eq!(detail.reason, RejectReason::VersionConflict as i32);
        assert!(status.message().contains("42"));
    }
}
