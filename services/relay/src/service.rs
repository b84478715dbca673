//! A relay node's shared state: configuration, ticket verifier, the pairing room, limits and
//! counters, and the draining state.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tucdesk_crypto::ServiceKeyring;
use tucdesk_proto::v1::CoturnHealth;
use tucdesk_svc::bus::Bus;

use crate::config::RelayConfig;
use crate::limits::SharedBucket;
use crate::metrics::RelayMetrics;
use crate::pairing::Room;
use crate::tickets::Tickets;

/// Counters the heartbeat reports.
#[derive(Debug, Default)]
pub struct Stats {
    /// Paired sessions forwarding now.
    pub active_sessions: AtomicU32,
    /// Connections waiting for their peer.
    pub waiting: AtomicU32,
    /// Bytes received from clients (forwarded after).
    pub bytes_in: AtomicU64,
    /// Bytes sent to clients.
    pub bytes_out: AtomicU64,
    /// Connections refused since start.
    pub rejected: AtomicU64,
}

/// Observes every payload the relay forwards (test builds only; see the `tap` feature).
#[cfg(feature = "tap")]
pub type Tap = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Shared state of one relay node; cheap to clone.
#[derive(Clone)]
pub struct Relay {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("node_id", &self.inner.config.node_id)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub config: RelayConfig,
    pub bus: Arc<dyn Bus>,
    pub tickets: Tickets,
    pub room: Room,
    pub stats: Stats,
    pub metrics: RelayMetrics,
    pub node_bucket: SharedBucket,
    /// One permit per WebSocket from upgrade to close: the HTTP accept loop's permit ends at
    /// the upgrade, so without this a flood of connections that never send a hello would be
    /// unbounded for the hello timeout.
    pub sockets: Arc<tokio::sync::Semaphore>,
    pub service_keys: ServiceKeyring,
    pub coturn: Mutex<CoturnHealth>,
    /// Set while draining: no new pairings, not advertised as available.
    pub draining: CancellationToken,
    /// Fires when draining sessions must end.
    pub drain_deadline_passed: CancellationToken,
    pub drain_deadline_ms: AtomicU64,
    pub started_at_ms: u64,
    #[cfg(feature = "tap")]
    pub tap: Mutex<Option<Tap>>,
}

impl Relay {
    /// Builds a node on its bus and the verifier of its tickets (audience = its node id).
    pub fn new(
        config: RelayConfig,
        bus: Arc<dyn Bus>,
        tickets: Tickets,
    ) -> Result<Self, crate::RelayError> {
        crate::check_config(&config)?;
        let service_keys = ServiceKeyring::from_entries(&config.service_keys)
            .map_err(crate::RelayError::Config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                node_bucket: SharedBucket::new(config.node_bytes_per_sec),
                sockets: Arc::new(tokio::sync::Semaphore::new(config.max_sockets())),
                room: Room::new(),
                stats: Stats::default(),
                metrics: RelayMetrics::new()?,
                service_keys,
                coturn: Mutex::new(CoturnHealth {
                    healthy: false,
                    last_check_ms: 0,
                    allocations: 0,
                    message: "not checked yet".into(),
                }),
                draining: CancellationToken::new(),
                drain_deadline_passed: CancellationToken::new(),
                drain_deadline_ms: AtomicU64::new(0),
                started_at_ms: now_ms(),
                bus,
                tickets,
                config,
                #[cfg(feature = "tap")]
                tap: Mutex::new(None),
            }),
        })
    }

    pub fn config(&self) -> &RelayConfig {
        &self.inner.config
    }

    pub fn metrics(&self) -> &RelayMetrics {
        &self.inner.metrics
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.is_cancelled()
    }

    /// Starts draining: stop advertising, refuse new pairings, and close whatever is still
    /// forwarding after `deadline`.
    pub fn drain(&self, deadline: Duration) {
        if self.inner.draining.is_cancelled() {
            return;
        }
        let until =
            now_ms().saturating_add(u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX));
        self.inner.drain_deadline_ms.store(until, Ordering::Relaxed);
        self.inner.draining.cancel();
        tracing::info!(deadline_secs = deadline.as_secs(), "relay draining");
        let passed = self.inner.drain_deadline_passed.clone();
        tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            passed.cancel();
        });
    }

    /// The coturn health as last checked.
    pub fn coturn_health(&self) -> CoturnHealth {
        self.inner
            .coturn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets a test hook that sees every forwarded payload.
    #[cfg(feature = "tap")]
    pub fn set_tap(&self, tap: Tap) {
        *self
            .inner
            .tap
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tap);
    }
}

/// Unix ms now.
pub fn now_ms() -> u64 {
    u64::try_from(tucdesk_svc::sql::now_ms()).unwrap_or(0)
}
