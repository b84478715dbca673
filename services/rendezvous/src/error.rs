//! Errors of the rendezvous service and their one mapping to gRPC `Status`.
//!
//! Peers get a precise status code plus an `ErrorDetail` (reason, retry hint, policy result)
//! in the status details; internal causes go to the log where they happen, never to the peer.

use std::time::Duration;

use prost::Message as _;
use tonic::{Code, Status};
use tucdesk_proto::v1::{ErrorDetail, PolicyResult, RejectReason};

#[derive(Debug, thiserror::Error)]
pub enum RendezvousError {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("the access token has expired")]
    TokenExpired,
    #[error("the device key does not match the one the token is bound to")]
    DeviceKeyMismatch,
    #[error("the proof is invalid: {0}")]
    ProofInvalid(&'static str),
    #[error("permission denied: {0}")]
    PermissionDenied(&'static str),
    /// Also for other teams' objects: their existence is never revealed.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("already exists: {0}")]
    AlreadyExists(&'static str),
    #[error("the expected version does not match the stored version {current}")]
    VersionConflict { current: u64 },
    #[error("protocol version {got} is below the minimum {min}; update")]
    UpdateRequired { got: u32, min: u32 },
    #[error("too many requests; try again later")]
    RateLimited { retry_after: Duration },
    #[error("a valid service assertion is required")]
    ServiceAssertionInvalid,
    #[error("the enrollment token is invalid, expired, revoked or used")]
    EnrollmentTokenInvalid,
    /// A registration or enrollment proof failed one of its checks.
    #[error("registration refused: {message}")]
    Registration {
        reason: RejectReason,
        message: &'static str,
    },
    /// Policy, approval or agent refused a session; `policy` names the deciding rule.
    #[error("{message}")]
    SessionRefused {
        reason: RejectReason,
        message: String,
        policy: Option<Box<PolicyResult>>,
    },
    #[error("a limit was exceeded: {0}")]
    LimitExceeded(&'static str),
    #[error("{0} is unavailable; try again later")]
    Unavailable(&'static str),
    /// A backend failed; the cause is logged where it happened.
    #[error("internal error")]
    Internal(String),
}

impl RendezvousError {
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        Self::Internal(context.to_owned())
    }

    pub fn invalid(err: tucdesk_proto::validate::FieldError) -> Self {
        Self::InvalidArgument(err.to_string())
    }

    /// A session refusal with the reason a person reads and the policy result, if any.
    pub fn refused(reason: RejectReason, message: impl Into<String>) -> Self {
        Self::SessionRefused {
            reason,
            message: message.into(),
            policy: None,
        }
    }

    pub fn with_policy(self, result: PolicyResult) -> Self {
        match self {
            Self::SessionRefused {
                reason, message, ..
            } => Self::SessionRefused {
                reason,
                message,
                policy: Some(Box::new(result)),
            },
            other => other,
        }
    }

    /// The machine-readable reason this error reports.
    pub fn reason(&self) -> RejectReason {
        self.code_and_reason().1
    }

    fn code_and_reason(&self) -> (Code, RejectReason) {
        use RejectReason as R;
        match self {
            Self::InvalidArgument(_) => (Code::InvalidArgument, R::InvalidArgument),
            Self::Unauthenticated(_) => (Code::Unauthenticated, R::TokenInvalid),
            Self::TokenExpired => (Code::Unauthenticated, R::TokenExpired),
            Self::DeviceKeyMismatch => (Code::Unauthenticated, R::DeviceKeyMismatch),
            Self::ProofInvalid(_) => (Code::Unauthenticated, R::ProofInvalid),
            Self::PermissionDenied(_) => (Code::PermissionDenied, R::PermissionDenied),
            Self::NotFound(_) => (Code::NotFound, R::NotFound),
            Self::AlreadyExists(_) => (Code::AlreadyExists, R::AlreadyExists),
            Self::VersionConflict { .. } => (Code::Aborted, R::VersionConflict),
            Self::UpdateRequired { .. } => (Code::FailedPrecondition, R::UpdateRequired),
            Self::RateLimited { .. } => (Code::ResourceExhausted, R::RateLimited),
            Self::ServiceAssertionInvalid => (Code::Unauthenticated, R::ServiceAssertionInvalid),
            Self::EnrollmentTokenInvalid => (Code::PermissionDenied, R::EnrollmentTokenInvalid),
            Self::Registration { reason, .. } => (registration_code(*reason), *reason),
            Self::SessionRefused { reason, .. } => (session_code(*reason), *reason),
            Self::LimitExceeded(_) => (Code::ResourceExhausted, R::LimitExceeded),
            Self::Unavailable(_) => (Code::Unavailable, R::Unavailable),
            Self::Internal(_) => (Code::Internal, R::Internal),
        }
    }
}

fn registration_code(reason: RejectReason) -> Code {
    use RejectReason as R;
    match reason {
        R::UpdateRequired => Code::FailedPrecondition,
        R::InvalidArgument | R::ProtocolViolation => Code::InvalidArgument,
        R::AgentNotEnrolled | R::AgentRevoked => Code::PermissionDenied,
        R::RateLimited => Code::ResourceExhausted,
        R::AlreadyExists => Code::AlreadyExists,
        _ => Code::Unauthenticated,
    }
}

fn session_code(reason: RejectReason) -> Code {
    use RejectReason as R;
    match reason {
        R::PolicyDenied | R::ApprovalDenied | R::ApproverNotAllowed => Code::PermissionDenied,
        R::AgentOffline | R::NoRelay => Code::Unavailable,
        R::AgentTimeout | R::ApprovalExpired => Code::DeadlineExceeded,
        R::Cancelled => Code::Cancelled,
        _ => Code::FailedPrecondition,
    }
}

impl From<RendezvousError> for Status {
    fn from(err: RendezvousError) -> Self {
        let (code, reason) = err.code_and_reason();
        let mut detail = tucdesk_svc::status::detail(reason, err.to_string());
        match &err {
            RendezvousError::RateLimited { retry_after } => {
                detail.retry_after_ms = tucdesk_svc::status::retry_after_ms(*retry_after);
            }
            RendezvousError::UpdateRequired { min, .. } => detail.min_protocol_version = *min,
            RendezvousError::SessionRefused { policy, .. } => {
                detail.policy_result = policy.as_deref().cloned();
            }
            _ => {}
        }
        tucdesk_svc::status::with_detail(code, detail)
    }
}

impl From<sqlx::Error> for RendezvousError {
    fn from(err: sqlx::Error) -> Self {
        Self::internal("database error", err)
    }
}

impl From<tucdesk_svc::sql::SqlError> for RendezvousError {
    fn from(err: tucdesk_svc::sql::SqlError) -> Self {
        Self::internal("database error", err)
    }
}

impl From<tucdesk_svc::outbox::OutboxError> for RendezvousError {
    fn from(err: tucdesk_svc::outbox::OutboxError) -> Self {
        Self::internal("audit outbox error", err)
    }
}

impl From<prost::DecodeError> for RendezvousError {
    fn from(err: prost::DecodeError) -> Self {
        Self::internal("stored message does not decode", err)
    }
}

/// Refuses clients older than the protocol floor with an explicit UPDATE_REQUIRED.
pub fn check_client_version(version: u32) -> Result<(), RendezvousError> {
    tucdesk_proto::check_peer_version(version, tucdesk_proto::MIN_CLIENT_PROTOCOL_VERSION).map_err(
        |err| RendezvousError::UpdateRequired {
            got: err.peer,
            min: err.floor,
        },
    )
}

/// Decodes the `ErrorDetail` a status carries, for clients and tests.
pub fn error_detail(status: &Status) -> Option<ErrorDetail> {
    ErrorDetail::decode(status.details()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refusals_carry_the_rule() {
        let status = Status::from(
            RendezvousError::refused(RejectReason::PolicyDenied, "denied by rule \"x\"")
                .with_policy(PolicyResult {
                    rule: "x".into(),
                    ..Default::default()
                }),
        );
        assert_eq!(status.code(), Code::PermissionDenied);
        let detail = error_detail(&status).unwrap_or_default();
        assert_eq!(detail.reason, RejectReason::PolicyDenied as i32);
        assert_eq!(detail.policy_result.unwrap_or_default().rule, "x");
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let status = Status::from(RendezvousError::internal(
            "database error",
            "connection to 10.0.0.5 refused",
        ));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("10.0.0.5"));
    }
}
