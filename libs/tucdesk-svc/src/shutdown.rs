//! Graceful shutdown: one [`CancellationToken`] that every loop obeys, a tracker for in-flight
//! tasks, and a signal listener.
//!
//! The sequence every service follows (see `docs/operations.md`):
//!
//! ```no_run
//! # async fn run() {
//! use std::time::Duration;
//! use tucdesk_svc::shutdown::{Shutdown, listen_for_signals};
//!
//! let shutdown = Shutdown::new();
//! tokio::spawn(listen_for_signals(shutdown.token()));
//!
//! // Servers and loops get a clone of the token; per-request work is spawned tracked.
//! let token = shutdown.token();
//! shutdown.spawn(async move {
//!     token.cancelled().await; // a worker loop would `select!` on this
//! });
//!
//! shutdown.cancelled().await; // SIGTERM, SIGINT or `shutdown.trigger()`
//! if !shutdown.drain(Duration::from_secs(25)).await {
//!     tracing::warn!("in-flight work abandoned at the shutdown deadline");
//! }
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Default time in-flight work gets after cancellation before the process exits anyway.
/// Kubernetes sends SIGKILL 30 s after SIGTERM by default; 25 s leaves room to flush telemetry.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(25);

/// The process-wide shutdown signal and the set of tasks that must finish before exit.
///
/// Cloning is cheap and every clone shares the same token and tracker.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    /// A fresh, not yet cancelled shutdown signal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wraps an existing token, e.g. one owned by `tucdesk-standalone` or a test.
    pub fn from_token(token: CancellationToken) -> Self {
        Self {
            token,
            tracker: TaskTracker::new(),
        }
    }

    /// A clone of the token, for a loop or server that stops when it is cancelled.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// A child token: cancelled with the parent, but cancelling it does not stop the process
    /// (for one connection or one session).
    pub fn child_token(&self) -> CancellationToken {
        self.token.child_token()
    }

    /// Starts shutting down (what a signal does).
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether shutdown has started.
    pub fn is_shutting_down(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes once shutdown has started.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    /// The tracker that [`drain`](Self::drain) waits for; use it to track futures spawned
    /// elsewhere (`tracker.track_future(fut)`).
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Spawns a task that [`drain`](Self::drain) waits for. The task should itself watch
    /// [`token`](Self::token) if it can run for long.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(future)
    }

    /// Number of tracked tasks still running.
    pub fn in_flight(&self) -> usize {
        self.tracker.len()
    }

    /// Cancels the token (if not already), stops accepting new tracked tasks as "in flight"
    /// for the purpose of waiting, and waits up to `deadline` for every tracked task to
    /// finish. Returns `true` if all finished, `false` if the deadline passed first.
    ///
    /// Tasks still running at the deadline are not aborted here: the caller decides (usually
    /// by returning from `main`, which drops the runtime).
    pub async fn drain(&self, deadline: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        let in_flight = self.tracker.len();
        if in_flight > 0 {
            tracing::info!(in_flight, ?deadline, "waiting for in-flight work to finish");
        }
        match tokio::time::timeout(deadline, self.tracker.wait()).await {
            Ok(()) => true,
            Err(_) => {
                tracing::warn!(
                    remaining = self.tracker.len(),
                    ?deadline,
                    "shutdown deadline passed with work still in flight"
                );
                false
            }
        }
    }
}

/// A signal that asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownSignal {
    /// SIGTERM: the orchestrator (Kubernetes, systemd, docker stop) wants us gone.
    Terminate,
    /// SIGINT: Ctrl-C on a terminal.
    Interrupt,
}

impl ShutdownSignal {
    /// Conventional signal name, as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Terminate => "SIGTERM",
            Self::Interrupt => "SIGINT",
        }
    }
}

/// Why the signal listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    #[error("cannot install the {signal} handler: {source}")]
    SignalHandler {
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Waits for SIGTERM or SIGINT, logs which one arrived and cancels `token`.
///
/// Returns `Ok(None)` without cancelling if `token` was cancelled by something else first.
/// Spawn it at startup: `tokio::spawn(listen_for_signals(shutdown.token()))`. The handlers are
/// installed on first poll, so spawn it before doing slow startup work.
///
/// After the first signal the process keeps its handlers, so a second Ctrl-C does not kill it;
/// the drain deadline ([`Shutdown::drain`]) bounds how long shutdown takes instead.
pub async fn listen_for_signals(
    token: CancellationToken,
) -> Result<Option<ShutdownSignal>, ShutdownError> {
    let received = tokio::select! {
        signal = wait_for_signal() => signal?,
        () = token.cancelled() => return Ok(None),
    };
    tracing::info!(
        signal = received.as_str(),
        "shutdown requested; finishing in-flight work"
    );
    token.cancel();
    Ok(Some(received))
}

#[cfg(unix)]
async fn wait_for_signal() -> Result<ShutdownSignal, ShutdownError> {
    use tokio::signal::unix::{SignalKind, signal};

    let mut terminate =
        signal(SignalKind::terminate()).map_err(|source| ShutdownError::SignalHandler {
            signal: ShutdownSignal::Terminate.as_str(),
            source,
        })?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|source| ShutdownError::SignalHandler {
            signal: ShutdownSignal::Interrupt.as_str(),
            source,
        })?;
    tokio::select! {
        _ = terminate.recv() => Ok(ShutdownSignal::Terminate),
        _ = interrupt.recv() => Ok(ShutdownSignal::Interrupt),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> Result<ShutdownSignal, ShutdownError> {
    tokio::signal::ctrl_c()
        .await
        .map_err(|source| ShutdownError::SignalHandler {
            signal: ShutdownSignal::Interrupt.as_str(),
            source,
        })?;
    Ok(ShutdownSignal::Interrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_reports_true_when_all_tasks_finish() {
        let shutdown = Shutdown::new();
        let token = shutdown.token();
        shutdown.spawn(async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        });
        assert_eq!(shutdown.in_flight(), 1);
        assert!(shutdown.drain(Duration::from_secs(1)).await);
        assert!(shutdown.is_shutting_down());
        assert_eq!(shutdown.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn drain_reports_false_at_the_deadline() {
        let shutdown = Shutdown::new();
        // A task that ignores the token: drain must not wait for it forever.
        shutdown.spawn(tokio::time::sleep(Duration::from_secs(3_600)));
        assert!(!shutdown.drain(Duration::from_secs(1)).await);
        assert_eq!(shutdown.in_flight(), 1);
    }

    #[tokio::test]
    async fn drain_with_nothing_in_flight_is_immediate() {
        let shutdown = Shutdown::new();
        assert!(shutdown.drain(Duration::ZERO).await);
    }

    #[tokio::test]
    async fn child_tokens_follow_the_parent_only() {
        let shutdown = Shutdown::new();
        let child = shutdown.child_token();
        child.cancel();
        assert!(!shutdown.is_shutting_down());
        let other = shutdown.child_token();
        shutdown.trigger();
        assert!(other.is_cancelled());
    }

    #[tokio::test]
    async fn signal_listener_returns_when_cancelled_elsewhere() {
        let shutdown = Shutdown::new();
        let listener = tokio::spawn(listen_for_signals(shutdown.token()));
        shutdown.trigger();
        let outcome = listener.await.ok().and_then(Result::ok);
        assert_eq!(outcome, Some(None));
    }
}
