//! Rendezvous metrics, registered in the service's registry (served on the ops port).

use prometheus::{IntCounterVec, IntGauge, Registry};
use tucdesk_svc::http::Metrics;

use crate::error::RendezvousError;

/// Counters and gauges the rendezvous service keeps; cheap to clone.
#[derive(Debug, Clone)]
pub struct RendezvousMetrics {
    metrics: Metrics,
    /// Agent registrations (Connect) by outcome: `accepted` or the reject reason.
    pub registrations: IntCounterVec,
    /// Enrollments by outcome: `enrolled` or the reject reason.
    pub enrollments: IntCounterVec,
    /// Agent streams held by this replica.
    pub connected_agents: IntGauge,
    /// Heartbeats received.
    pub heartbeats: prometheus::IntCounter,
    /// CreateSession outcomes: `accepted`, `approval_pending` or the reject reason.
    pub sessions: IntCounterVec,
    /// Policy decisions by result (`allow`, `deny`, `approval_required`).
    pub policy_decisions: IntCounterVec,
    /// Approval decisions by state (`approved`, `denied`, `expired`).
    pub approvals: IntCounterVec,
    /// Healthy relay nodes known from heartbeats.
    pub relay_nodes: IntGauge,
    /// Messages to agents that could not be delivered, by why.
    pub delivery_failures: IntCounterVec,
}

fn internal(err: impl std::fmt::Display) -> RendezvousError {
    RendezvousError::internal("registering metrics", err)
}

impl RendezvousMetrics {
    pub fn new() -> Result<Self, RendezvousError> {
        let metrics = Metrics::new("rendezvous", env!("CARGO_PKG_VERSION")).map_err(internal)?;
        let counter_vec = |name: &str, help: &str, label: &str| {
            metrics.counter_vec(name, help, label).map_err(internal)
        };
        let gauge = |name: &str, help: &str| metrics.gauge(name, help).map_err(internal);
        let heartbeats = metrics
            .counter(
                "tucdesk_rendezvous_heartbeats_total",
                "Agent heartbeats received.",
            )
            .map_err(internal)?;
        Ok(Self {
            registrations: counter_vec(
                "tucdesk_rendezvous_registrations_total",
                "Agent registrations by outcome (accepted or the reject reason).",
                "outcome",
            )?,
            enrollments: counter_vec(
                "tucdesk_rendezvous_enrollments_total",
                "Agent enrollments by outcome (enrolled or the reject reason).",
                "outcome",
            )?,
            connected_agents: gauge(
                "tucdesk_rendezvous_connected_agents",
                "Agent streams held by this replica.",
            )?,
            heartbeats,
            sessions: counter_vec(
                "tucdesk_rendezvous_sessions_total",
                "CreateSession outcomes (accepted, approval_pending or the reject reason).",
                "outcome",
            )?,
            policy_decisions: counter_vec(
                "tucdesk_rendezvous_policy_decisions_total",
                "Policy decisions by result.",
                "decision",
            )?,
            approvals: counter_vec(
                "tucdesk_rendezvous_approvals_total",
                "Approval requests decided, by final state.",
                "state",
            )?,
            relay_nodes: gauge(
                "tucdesk_rendezvous_relay_nodes",
                "Healthy relay nodes known from heartbeats.",
            )?,
            delivery_failures: counter_vec(
                "tucdesk_rendezvous_delivery_failures_total",
                "Messages to agents that could not be delivered, by cause.",
                "cause",
            )?,
            metrics,
        })
    }

    /// The registry to serve on `/metrics`.
    pub fn registry(&self) -> &Registry {
        self.metrics.registry()
    }
}

pub use tucdesk_svc::status::reason_label;
