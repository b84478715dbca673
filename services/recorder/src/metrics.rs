//! Recorder metrics, registered in the service's registry (served on the ops port).

use prometheus::{IntCounter, IntCounterVec, Registry};
use tucdesk_svc::http::{HttpError, Metrics};

/// Counters the recorder keeps; cheap to clone.
#[derive(Debug, Clone)]
pub struct RecorderMetrics {
    metrics: Metrics,
    /// Upload calls by outcome: `complete`, `partial` (stream ended before the last byte), or
    /// the reject reason.
    pub uploads: IntCounterVec,
    /// Ciphertext bytes accepted (staged).
    pub bytes_received: IntCounter,
    /// Recordings stored (size and hash matched).
    pub completed: IntCounter,
    /// Uploads whose bytes did not match the manifest (staging discarded).
    pub integrity_failures: IntCounter,
    /// Ciphertext bytes served by Get.
    pub bytes_served: IntCounter,
    /// RecorderService calls by method and outcome (`ok` or the reject reason).
    pub requests: IntCounterVec,
}

impl RecorderMetrics {
    pub fn new() -> Result<Self, HttpError> {
        let metrics = Metrics::new("recorder", env!("CARGO_PKG_VERSION"))?;
        let requests = IntCounterVec::new(
            prometheus::Opts::new(
                "tucdesk_recorder_requests_total",
                "RecorderService calls by method and outcome.",
            ),
            &["method", "outcome"],
        )?;
        metrics.registry().register(Box::new(requests.clone()))?;
        Ok(Self {
            uploads: metrics.counter_vec(
                "tucdesk_recorder_uploads_total",
                "Upload calls by outcome (complete, partial, or the reject reason).",
                "outcome",
            )?,
            bytes_received: metrics.counter(
                "tucdesk_recorder_bytes_received_total",
                "Recording ciphertext bytes accepted.",
            )?,
            completed: metrics.counter(
                "tucdesk_recorder_recordings_stored_total",
                "Recordings stored after their size and SHA-256 matched the manifest.",
            )?,
            integrity_failures: metrics.counter(
                "tucdesk_recorder_integrity_failures_total",
                "Uploads whose bytes did not match the signed manifest.",
            )?,
            bytes_served: metrics.counter(
                "tucdesk_recorder_bytes_served_total",
                "Recording ciphertext bytes served to operators.",
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
