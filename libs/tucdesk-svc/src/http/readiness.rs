//! Readiness for `/readyz`: the registry of named checks a service needs before it can take
//! traffic, run concurrently under a timeout, with the result cached briefly and only the
//! names of failing checks reported.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Time each readiness check gets before it counts as failed. Probes (Kubernetes default
/// `timeoutSeconds: 1`) should allow a bit more than this, since checks run concurrently.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_millis(800);

/// How long a `/readyz` result is reused. Probes from several kubelets, load balancers and
/// curious humans then cost the backends at most one round of checks per interval, and
/// concurrent requests share one evaluation instead of each querying the database.
pub const READINESS_CACHE_TTL: Duration = Duration::from_secs(1);

/// One dependency the service needs before it can take traffic ("database", "bus", …).
#[async_trait::async_trait]
pub trait ReadinessCheck: Send + Sync {
    /// Stable, non-secret name shown in `/readyz`.
    fn name(&self) -> &str;
    /// `Err(detail)` when not ready. The detail is logged, never sent to the prober, but
    /// still must not contain secrets: pass URLs through [`crate::redact::redact_url`].
    async fn check(&self) -> Result<(), String>;
}

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A [`ReadinessCheck`] made from a name and an async closure.
struct FnCheck {
    name: String,
    check: Box<dyn Fn() -> CheckFuture + Send + Sync>,
}

#[async_trait::async_trait]
impl ReadinessCheck for FnCheck {
    fn name(&self) -> &str {
        &self.name
    }
    async fn check(&self) -> Result<(), String> {
        (self.check)().await
    }
}

/// The registered readiness checks of a service. Cheap to clone; clones share the checks, so
/// a backend can register itself after the router was built.
#[derive(Clone)]
pub struct Readiness {
    shared: Arc<Shared>,
    timeout: Duration,
    shutdown: Option<CancellationToken>,
}

struct Shared {
    checks: RwLock<Vec<Arc<dyn ReadinessCheck>>>,
    /// Last evaluation and when it finished, reused for [`READINESS_CACHE_TTL`].
    last: Mutex<Option<(Instant, ReadinessReport)>>,
    /// Held while checks run, so concurrent requests wait for one evaluation.
    in_flight: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("checks", &self.check_names())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

/// Outcome of one check, as reported by `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    Failed,
    Timeout,
}

/// One line of the `/readyz` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub name: String,
    pub status: CheckStatus,
}

/// The `/readyz` body: `{"status":"ready"|"not_ready"|"shutting_down","checks":[…],"failing":[…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadinessReport {
    #[serde(skip)]
    pub ready: bool,
    pub status: &'static str,
    pub checks: Vec<CheckReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<String>,
}

impl Readiness {
    /// No checks yet (so ready), [`DEFAULT_CHECK_TIMEOUT`] per check.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                checks: RwLock::new(Vec::new()),
                last: Mutex::new(None),
                in_flight: tokio::sync::Mutex::new(()),
            }),
            timeout: DEFAULT_CHECK_TIMEOUT,
            shutdown: None,
        }
    }

    /// Sets the time each check gets.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reports "shutting_down" (503) once `token` is cancelled, so load balancers stop sending
    /// new work while in-flight work drains.
    pub fn with_shutdown(mut self, token: CancellationToken) -> Self {
        self.shutdown = Some(token);
        self
    }

    /// Registers a check.
    pub fn add(&self, check: impl ReadinessCheck + 'static) {
        self.add_arc(Arc::new(check));
    }

    /// Registers a shared check (a backend handle that implements [`ReadinessCheck`]).
    pub fn add_arc(&self, check: Arc<dyn ReadinessCheck>) {
        // A poisoned lock only means a panic elsewhere while pushing; the data is still valid.
        let mut checks = self
            .shared
            .checks
            .write()
            .unwrap_or_else(|e| e.into_inner());
        checks.push(check);
        // A cached "ready" predates the new check.
        *self.shared.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Registers an async closure as a check named `name`.
    pub fn add_fn<F, Fut>(&self, name: impl Into<String>, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.add(FnCheck {
            name: name.into(),
            check: Box::new(move || Box::pin(check())),
        });
    }

    /// Names of the registered checks, in registration order.
    pub fn check_names(&self) -> Vec<String> {
        self.snapshot()
            .iter()
            .map(|c| c.name().to_owned())
            .collect()
    }

    fn snapshot(&self) -> Vec<Arc<dyn ReadinessCheck>> {
        self.shared
            .checks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The readiness report: "shutting_down" once the shutdown token is cancelled, otherwise
    /// the result of the checks, run at most once per [`READINESS_CACHE_TTL`].
    pub async fn evaluate(&self) -> ReadinessReport {
        if self.shutdown.as_ref().is_some_and(|t| t.is_cancelled()) {
            return ReadinessReport {
                ready: false,
                status: "shutting_down",
                checks: Vec::new(),
                failing: Vec::new(),
            };
        }
        if let Some(report) = self.cached() {
            return report;
        }
        let _in_flight = self.shared.in_flight.lock().await;
        // Whoever held the lock before us may have just produced a fresh report.
        if let Some(report) = self.cached() {
            return report;
        }
        let report = self.run_checks().await;
        *self.shared.last.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), report.clone()));
        report
    }

    fn cached(&self) -> Option<ReadinessReport> {
        let last = self.shared.last.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < READINESS_CACHE_TTL)
            .map(|(_, report)| report.clone())
    }

    /// Runs every check concurrently, each bounded by the timeout, and logs failures with
    /// their detail.
    async fn run_checks(&self) -> ReadinessReport {
        let checks = self.snapshot();
        let timeout = self.timeout;
        let results = futures::future::join_all(checks.iter().map(|check| async move {
            let status = match tokio::time::timeout(timeout, check.check()).await {
                Ok(Ok(())) => CheckStatus::Ok,
                Ok(Err(detail)) => {
                    tracing::warn!(check = check.name(), %detail, "readiness check failed");
                    CheckStatus::Failed
                }
                Err(_) => {
                    tracing::warn!(check = check.name(), ?timeout, "readiness check timed out");
                    CheckStatus::Timeout
                }
            };
            CheckReport {
                name: check.name().to_owned(),
                status,
            }
        }))
        .await;
        let failing: Vec<String> = results
            .iter()
            .filter(|r| r.status != CheckStatus::Ok)
            .map(|r| r.name.clone())
            .collect();
        let ready = failing.is_empty();
        ReadinessReport {
            ready,
            status: if ready { "ready" } else { "not_ready" },
            checks: results,
            failing,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_checks_means_ready() {
        let report = Readiness::new().evaluate().await;
        assert!(report.ready);
        assert_eq!(report.status, "ready");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_check_times_out_and_is_named() {
        let readiness = Readiness::new().with_timeout(Duration::from_millis(50));
        readiness.add_fn("database", || async { Ok(()) });
        readiness.add_fn("bus", || async {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
            Ok(())
        });
        let report = readiness.evaluate().await;
        assert!(!report.ready);
        assert_eq!(report.failing, vec!["bus".to_owned()]);
        assert_eq!(report.checks[1].status, CheckStatus::Timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn results_are_reused_briefly_and_shared_by_concurrent_probes() {
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let readiness = Readiness::new();
        let counter = runs.clone();
        readiness.add_fn("database", move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(())
            }
        });
        let probes = futures::future::join_all((0..5).map(|_| readiness.evaluate())).await;
        assert!(probes.iter().all(|r| r.ready));
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);

        tokio::time::advance(READINESS_CACHE_TTL).await;
        readiness.evaluate().await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);

        // A newly registered check is never hidden behind a cached "ready".
        readiness.add_fn("bus", || async { Err("down".to_owned()) });
        assert!(!readiness.evaluate().await.ready);
    }

    #[tokio::test]
    async fn shutting_down_is_not_ready() {
        let token = CancellationToken::new();
        let readiness = Readiness::new().with_shutdown(token.clone());
        assert!(readiness.evaluate().await.ready);
        token.cancel();
        let report = readiness.evaluate().await;
        assert!(!report.ready);
        assert_eq!(report.status, "shutting_down");
    }
}
