//! Auth metrics, registered in the service's registry (served on the ops port).

use prometheus::{IntCounter, IntCounterVec, Registry};
use tucdesk_svc::http::Metrics;

use crate::error::AuthError;

/// Counters the auth service keeps; cheap to clone (prometheus handles are shared).
#[derive(Debug, Clone)]
pub struct AuthMetrics {
    metrics: Metrics,
    /// Login attempts by outcome (`success`, `invalid_credentials`, `locked`, `disabled`,
    /// `totp_required`, `totp_invalid`, `proof_invalid`).
    pub logins: IntCounterVec,
    /// Lockouts by limit (`account`, `source`).
    pub lockouts: IntCounterVec,
    /// Tokens issued by kind (`access`, `refresh`, `session`, `relay`).
    pub tokens_issued: IntCounterVec,
    /// Refresh-token reuse detections (families revoked for theft).
    pub refresh_reuse: IntCounter,
}

fn internal(err: impl std::fmt::Display) -> AuthError {
    AuthError::internal("registering metrics", err)
}

impl AuthMetrics {
    pub fn new() -> Result<Self, AuthError> {
        let metrics = Metrics::new("auth", env!("CARGO_PKG_VERSION")).map_err(internal)?;
        let counter_vec = |name: &str, help: &str, label: &str| {
            metrics.counter_vec(name, help, label).map_err(internal)
        };
        let logins = counter_vec(
            "tucdesk_auth_logins_total",
            "Login attempts by outcome.",
            "outcome",
        )?;
        let lockouts = counter_vec(
            "tucdesk_auth_lockouts_total",
            "Attempts refused because a limit locked the account or source.",
            "limit",
        )?;
        let tokens_issued = counter_vec(
            "tucdesk_auth_tokens_issued_total",
            "Tokens issued by kind.",
            "kind",
        )?;
        let refresh_reuse = metrics
            .counter(
                "tucdesk_auth_refresh_reuse_total",
                "Refresh tokens presented again after use (their family is revoked).",
            )
            .map_err(internal)?;
        Ok(Self {
            metrics,
            logins,
            lockouts,
            tokens_issued,
            refresh_reuse,
        })
    }

    /// The registry to serve on `/metrics`.
    pub fn registry(&self) -> &Registry {
        self.metrics.registry()
    }

    pub fn login(&self, outcome: &str) {
        self.logins.with_label_values(&[outcome]).inc();
    }

    pub fn issued(&self, kind: &str) {
        self.tokens_issued.with_label_values(&[kind]).inc();
    }
}
