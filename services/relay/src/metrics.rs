//! Relay metrics, registered in the node's registry (served on the ops port).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};
use tucdesk_svc::http::Metrics;

use crate::RelayError;

/// Counters and gauges of one relay node; cheap to clone.
#[derive(Debug, Clone)]
pub struct RelayMetrics {
    metrics: Metrics,
    /// Sessions paired, and ended by reason (`paired`, `peer_gone`, `frame_too_large`, …).
    pub sessions: IntCounterVec,
    /// Connections refused before pairing, by close code.
    pub rejected: IntCounterVec,
    /// Relay tickets refused, by why.
    pub tickets_refused: IntCounterVec,
    /// Times a direction had to wait for its rate budget.
    pub throttled: IntCounter,
    /// Bytes forwarded (both directions).
    pub bytes_forwarded: IntCounter,
    /// Paired sessions now.
    pub active_sessions: IntGauge,
    /// STUN datagrams by outcome (`answered`, `rate_limited`, or why they were dropped).
    pub stun: IntCounterVec,
    /// 1 when the last coturn check succeeded.
    pub coturn_healthy: IntGauge,
}

fn internal(err: impl std::fmt::Display) -> RelayError {
    RelayError::Internal(format!("registering metrics: {err}"))
}

impl RelayMetrics {
    pub fn new() -> Result<Self, RelayError> {
        let metrics = Metrics::new("relay", env!("CARGO_PKG_VERSION")).map_err(internal)?;
        let counter_vec = |name: &str, help: &str, label: &str| {
            metrics.counter_vec(name, help, label).map_err(internal)
        };
        let counter = |name: &str, help: &str| metrics.counter(name, help).map_err(internal);
        let gauge = |name: &str, help: &str| metrics.gauge(name, help).map_err(internal);
        Ok(Self {
            sessions: counter_vec(
                "tucdesk_relay_sessions_total",
                "Relay sessions paired, and ended by reason.",
                "event",
            )?,
            rejected: counter_vec(
                "tucdesk_relay_rejected_total",
                "Connections refused before pairing, by close code.",
                "code",
            )?,
            tickets_refused: counter_vec(
                "tucdesk_relay_tickets_refused_total",
                "Relay tickets refused, by why.",
                "why",
            )?,
            throttled: counter(
                "tucdesk_relay_throttled_total",
                "Times a session direction waited for its byte-rate budget.",
            )?,
            bytes_forwarded: counter(
                "tucdesk_relay_bytes_forwarded_total",
                "Bytes forwarded between paired sides.",
            )?,
            active_sessions: gauge("tucdesk_relay_active_sessions", "Paired sessions now.")?,
            stun: counter_vec(
                "tucdesk_relay_stun_total",
                "STUN datagrams by outcome.",
                "outcome",
            )?,
            coturn_healthy: gauge(
                "tucdesk_relay_coturn_healthy",
                "1 when the last coturn allocation check succeeded.",
            )?,
            metrics,
        })
    }

    pub fn registry(&self) -> &Registry {
        self.metrics.registry()
    }
}
