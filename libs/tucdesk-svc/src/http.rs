//! The ops HTTP server every service runs: `/metrics`, `/healthz`, `/readyz`.
//!
//! ```no_run
//! # async fn run(ops: tucdesk_svc::config::OpsArgs) -> Result<(), Box<dyn std::error::Error>> {
//! use tucdesk_svc::http::{Metrics, Readiness, bind, ops_router, serve};
//! use tucdesk_svc::shutdown::Shutdown;
//!
//! let shutdown = Shutdown::new();
//! let metrics = Metrics::new("rendezvous", env!("CARGO_PKG_VERSION"))?;
//! let readiness = Readiness::new().with_shutdown(shutdown.token());
//! readiness.add_fn("database", || async { Ok(()) /* e.g. SELECT 1 */ });
//!
//! let listener = bind(ops.ops_addr).await?;
//! let router = ops_router(metrics.registry().clone(), readiness.clone());
//! tokio::spawn(serve(listener, router, shutdown.token()));
//! # Ok(()) }
//! ```
//!
//! The ops port has no authentication, so it serves nothing secret and accepts no changes:
//! metric values, "alive", and the *names* of failing readiness checks. Failure details go to
//! the log only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod readiness;

pub use readiness::{
    CheckReport, CheckStatus, DEFAULT_CHECK_TIMEOUT, READINESS_CACHE_TTL, Readiness,
    ReadinessCheck, ReadinessReport,
};

/// How long [`serve`] waits, after cancellation, for open connections to finish before it
/// returns anyway (an idle keep-alive connection or a slow scraper must not hold up exit).
pub const OPS_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Content type of a JSON response body.
const JSON_CONTENT_TYPE: &str = "application/json";

/// Errors of the ops server and the metrics helper.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("ops server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Binds the ops listener, naming the address in the error.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting, lets open
/// requests finish for up to [`OPS_SHUTDOWN_GRACE`], and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(), HttpError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "ops server listening");
    }
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    let grace_expired = async {
        shutdown.cancelled().await;
        tokio::time::sleep(OPS_SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = server => result.map_err(HttpError::Serve),
        () = grace_expired => {
            tracing::warn!(grace = ?OPS_SHUTDOWN_GRACE, "ops server connections still open at shutdown; closing");
            Ok(())
        }
    }
}

/// The ops routes: `/metrics` from `registry`, `/healthz`, and `/readyz` from `readiness`.
/// Merge service-specific routes into it, or serve it on its own port.
pub fn ops_router(registry: Registry, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(registry)
        .route("/healthz", get(healthz_handler))
        .route("/readyz", get(readyz_handler).with_state(readiness))
}

async fn metrics_handler(State(registry): State<Registry>) -> Response {
    let mut body = Vec::new();
    let encoder = TextEncoder::new();
    match encoder.encode(&registry.gather(), &mut body) {
        Ok(()) => (
            [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
            body,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Liveness: answering at all is the signal. Never checks dependencies, or a database outage
/// would make the orchestrator restart every replica.
async fn healthz_handler() -> Response {
    json_response(StatusCode::OK, &Status { status: "ok" })
}

async fn readyz_handler(State(readiness): State<Readiness>) -> Response {
    let report = readiness.evaluate().await;
    let code = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(code, &report)
}

fn json_response<T: Serialize>(code: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (code, [(header::CONTENT_TYPE, JSON_CONTENT_TYPE)], bytes).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode ops response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
}

/// Name of the build-info gauge (value 1, version in a label), the Prometheus convention.
pub const BUILD_INFO_METRIC: &str = "tucdesk_build_info";
/// Name of the process start time gauge, in Unix seconds (as the standard process collector).
pub const START_TIME_METRIC: &str = "process_start_time_seconds";

/// A service's Prometheus registry with a constant `service` label on every metric and the
/// standard gauges already registered.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// Creates the registry for `service` (e.g. "rendezvous") at `version`
    /// (`env!("CARGO_PKG_VERSION")` of the binary).
    pub fn new(service: &str, version: &str) -> Result<Self, HttpError> {
        let labels = HashMap::from([("service".to_owned(), service.to_owned())]);
        let registry = Registry::new_custom(None, Some(labels))?;

        let build_info = IntGaugeVec::new(
            Opts::new(
                BUILD_INFO_METRIC,
                "Build information; the value is always 1.",
            ),
            &["version"],
        )?;
        build_info.with_label_values(&[version]).set(1);
        registry.register(Box::new(build_info))?;

        let start_time = IntGauge::new(
            START_TIME_METRIC,
            "Start time of the process since the Unix epoch, in seconds.",
        )?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        start_time.set(now);
        registry.register(Box::new(start_time))?;

        Ok(Self { registry })
    }

    /// The registry: register the service's own metrics here, and pass a clone to
    /// [`ops_router`].
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Registers a counter with one label.
    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        label: &str,
    ) -> Result<IntCounterVec, HttpError> {
        let counter = IntCounterVec::new(Opts::new(name, help), &[label])?;
        self.registry.register(Box::new(counter.clone()))?;
        Ok(counter)
    }

    /// Registers a counter.
    pub fn counter(&self, name: &str, help: &str) -> Result<IntCounter, HttpError> {
        let counter = IntCounter::new(name, help)?;
        self.registry.register(Box::new(counter.clone()))?;
        Ok(counter)
    }

    /// Registers a gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Result<IntGauge, HttpError> {
        let gauge = IntGauge::new(name, help)?;
        self.registry.register(Box::new(gauge.clone()))?;
        Ok(gauge)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn metrics_carry_the_service_label_and_build_info() {
        let metrics = Metrics::new("relay", "1.2.3").unwrap();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&metrics.registry().gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let build_info = text
            .lines()
            .find(|l| l.starts_with("tucdesk_build_info{"))
            .unwrap();
        assert!(build_info.ends_with("} 1"), "{text}");
        assert!(build_info.contains("service=\"relay\""), "{text}");
        assert!(build_info.contains("version=\"1.2.3\""), "{text}");
        assert!(
            text.contains("process_start_time_seconds{service=\"relay\"}"),
            "{text}"
        );
    }
}
