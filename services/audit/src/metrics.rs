//! Audit metrics, registered in the service's registry (served on the ops port).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};
use tucdesk_svc::http::{HttpError, Metrics};

/// Counters and gauges the audit service keeps; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditMetrics {
    metrics: Metrics,
    /// Entries appended to chains.
    pub appended: IntCounter,
    /// Append transactions by outcome: `committed`, `conflict` (another replica extended a
    /// chain first; retried), `failed` (left unacknowledged for redelivery).
    pub batches: IntCounterVec,
    /// Events delivered again that were already in the log (acknowledged, not appended).
    pub duplicates: IntCounter,
    /// Stream messages that are not valid audit events (dead-lettered), by reason.
    pub rejected: IntCounterVec,
    /// Seconds between the oldest event of the batch being appended and now (producer clock):
    /// how far the log is behind. 0 when the last fetch found the stream drained.
    pub lag_seconds: IntGauge,
    /// Events on the stream still waiting for this consumer after the last fetched batch:
    /// how far the log is behind, in events.
    pub backlog_events: IntGauge,
    /// Stored data that failed a check the service makes before building on it or serving
    /// it, by check: `chain_head` (the last entry of a chain does not verify or does not match
    /// its head; appends to that team stop), `checkpoint_root` (stored entries no longer give
    /// a signed checkpoint's root). Any increase means tampering or corruption: page someone.
    pub verification_failures: IntCounterVec,
    /// Deliveries that were redeliveries (an earlier attempt was not acknowledged in time).
    pub redeliveries: IntCounter,
    /// Checkpoints signed, by trigger: `count`, `time`, `export`.
    pub checkpoints: IntCounterVec,
    /// Seconds since the oldest last-checkpoint among teams with uncheckpointed entries
    /// (0 when every team's newest entry is covered). Alert when it exceeds the interval.
    pub checkpoint_age_seconds: IntGauge,
    /// AuditService calls by method and outcome (`ok` or the reject reason).
    pub requests: IntCounterVec,
    /// Messages pushed to the syslog collector (and confirmed), by kind: `entry`,
    /// `checkpoint`.
    pub syslog_pushed: IntCounterVec,
    /// Failed syslog push passes, by stage: `connect`, `tls`, `write`, `closed`, `database`.
    pub syslog_errors: IntCounterVec,
    /// Entries appended but not yet pushed to the syslog collector, over every team.
    pub syslog_lag: IntGauge,
    /// 1 while this replica holds the syslog lease and a connection to the collector.
    pub syslog_connected: IntGauge,
}

impl AuditMetrics {
    pub fn new() -> Result<Self, HttpError> {
        let metrics = Metrics::new("audit", env!("CARGO_PKG_VERSION"))?;
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tucdesk_audit_requests_total",
                "AuditService calls by method and outcome.",
            ),
            &["method", "outcome"],
        )?;
        metrics.registry().register(Box::new(requests.clone()))?;
        Ok(Self {
            appended: metrics.counter(
                "tucdesk_audit_events_appended_total",
                "Audit events appended to a team's chain.",
            )?,
            batches: metrics.counter_vec(
                "tucdesk_audit_batches_total",
                "Append transactions by outcome (committed, conflict, failed).",
                "outcome",
            )?,
            duplicates: metrics.counter(
                "tucdesk_audit_duplicates_total",
                "Redelivered events already in the log (acknowledged without a second entry).",
            )?,
            rejected: metrics.counter_vec(
                "tucdesk_audit_rejected_events_total",
                "Stream messages that are not valid audit events (dead-lettered), by reason.",
                "reason",
            )?,
            lag_seconds: metrics.gauge(
                "tucdesk_audit_lag_seconds",
                "Age of the oldest event in the batch being appended (0 when drained).",
            )?,
            backlog_events: metrics.gauge(
                "tucdesk_audit_backlog_events",
                "Events on the stream not yet delivered to the audit consumer (after the last batch).",
            )?,
            verification_failures: metrics.counter_vec(
                "tucdesk_audit_verification_failures_total",
                "Stored audit data that failed verification, by check (chain_head, checkpoint_root).",
                "check",
            )?,
            redeliveries: metrics.counter(
                "tucdesk_audit_redeliveries_total",
                "Deliveries of events whose earlier delivery was not acknowledged in time.",
            )?,
            checkpoints: metrics.counter_vec(
                "tucdesk_audit_checkpoints_total",
                "Signed checkpoints by trigger (count, time, export).",
                "trigger",
            )?,
            checkpoint_age_seconds: metrics.gauge(
                "tucdesk_audit_checkpoint_age_seconds",
                "Oldest last-checkpoint age among teams with uncheckpointed entries.",
            )?,
            syslog_pushed: metrics.counter_vec(
                "tucdesk_audit_syslog_pushed_total",
                "Messages pushed to the syslog collector and confirmed, by kind.",
                "kind",
            )?,
            syslog_errors: metrics.counter_vec(
                "tucdesk_audit_syslog_errors_total",
                "Failed syslog push passes by stage (connect, tls, write, closed, database).",
                "stage",
            )?,
            syslog_lag: metrics.gauge(
                "tucdesk_audit_syslog_lag_entries",
                "Entries appended but not yet pushed to the syslog collector.",
            )?,
            syslog_connected: metrics.gauge(
                "tucdesk_audit_syslog_connected",
                "1 while this replica pushes to a connected syslog collector.",
            )?,
            requests,
            metrics,
        })
    }

    /// The registry to serve on `/metrics`.
    pub fn registry(&self) -> &Registry {
        self.metrics.registry()
    }
}
