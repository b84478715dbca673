//! The rendezvous service's shared state, built once per replica and cloned into every
//! handler.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tucdesk_crypto::{CodeHashKey, ServiceKeyring};
use tucdesk_proto::v1::ActorKind;
use tucdesk_svc::audit_events::{self, AuditRecord};
use tucdesk_svc::bus::Bus;
use tucdesk_svc::cache::ReplayCache;
use tucdesk_svc::lease::Leases;
use tucdesk_svc::outbox::OutboxPublisher;
use tucdesk_svc::ratelimit::RateLimiter;
use tucdesk_svc::sql::{Database, Migrations, PoolSettings, Tx};

use crate::auth_link::AuthLink;
use crate::config::RendezvousConfig;
use crate::error::RendezvousError;
use crate::link::LocalAgents;
use crate::metrics::RendezvousMetrics;
use crate::policy::PolicyCache;
use crate::relays::RelayDirectory;

static MIGRATIONS_PG: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/rendezvous/postgres");
static MIGRATIONS_SQLITE: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/rendezvous/sqlite");

/// The rendezvous service's own tables, for both engines.
pub const MIGRATIONS: Migrations = Migrations {
    postgres: &MIGRATIONS_PG,
    sqlite: &MIGRATIONS_SQLITE,
};

/// Namespace of this service's keys in a shared cache.
pub const CACHE_NAMESPACE: &str = "rendezvous";

/// The backends the service runs on. Standalone mode builds them once and shares the
/// in-process bus and caches between services.
#[derive(Debug, Clone)]
pub struct Backends {
    pub db: Database,
    pub bus: Arc<dyn Bus>,
    pub replay: Arc<dyn ReplayCache>,
    pub limiter: Arc<dyn RateLimiter>,
    pub leases: Arc<dyn Leases>,
}

impl Backends {
    /// Connects every backend named in `config`; an unreachable one is an error naming it.
    pub async fn connect(config: &RendezvousConfig) -> anyhow::Result<Self> {
        let db = Database::connect_and_migrate(
            &config.database_url,
            &PoolSettings::default(),
            MIGRATIONS,
        )
        .await?;
        let bus = tucdesk_svc::bus::connect(&config.bus_url, "tucdesk-rendezvous").await?;
        let replay = tucdesk_svc::cache::connect(&config.cache_url, CACHE_NAMESPACE).await?;
        let limiter = tucdesk_svc::ratelimit::connect(&config.cache_url, CACHE_NAMESPACE).await?;
        let leases = tucdesk_svc::lease::connect(&config.cache_url, CACHE_NAMESPACE).await?;
        Ok(Self {
            db,
            bus,
            replay,
            limiter,
            leases,
        })
    }
}

/// Shared state of one rendezvous replica; cheap to clone.
#[derive(Debug, Clone)]
pub struct Rendezvous {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub config: RendezvousConfig,
    pub replica_id: String,
    pub db: Database,
    pub bus: Arc<dyn Bus>,
    pub replay: Arc<dyn ReplayCache>,
    pub limiter: Arc<dyn RateLimiter>,
    pub leases: Arc<dyn Leases>,
    pub outbox: OutboxPublisher,
    pub auth: AuthLink,
    pub code_key: CodeHashKey,
    pub service_keys: ServiceKeyring,
    pub metrics: RendezvousMetrics,
    pub relays: RelayDirectory,
    pub policies: PolicyCache,
    pub agents: LocalAgents,
    pub watchers: crate::slots::StreamSlots,
    pub signal_streams: crate::slots::StreamSlots,
    /// Cancelled when the replica starts draining: agent streams are told to reconnect
    /// elsewhere and long waits end.
    pub draining: CancellationToken,
}

impl Rendezvous {
    /// Builds the service on connected backends and a reachable auth service.
    pub async fn new(
        config: RendezvousConfig,
        backends: Backends,
        auth: AuthLink,
        code_key: CodeHashKey,
    ) -> Result<Self, RendezvousError> {
        check_config(&config)?;
        backends
            .bus
            .ensure_stream(&audit_events::audit_stream())
            .await
            .map_err(|err| RendezvousError::internal("declaring the audit stream", err))?;
        let service_keys = ServiceKeyring::from_entries(&config.service_keys)
            .map_err(RendezvousError::InvalidArgument)?;
        let replica_id = config
            .replica_id
            .clone()
            .unwrap_or_else(|| format!("rdv-{}", uuid::Uuid::now_v7().simple()));
        let metrics = RendezvousMetrics::new()?;
        Ok(Self {
            inner: Arc::new(Inner {
                outbox: OutboxPublisher::new(backends.db.clone(), backends.bus.clone()),
                relays: RelayDirectory::new(config.region.clone(), metrics.relay_nodes.clone()),
                policies: PolicyCache::new(),
                agents: LocalAgents::new(config.max_agents),
                watchers: crate::slots::StreamSlots::new(crate::MAX_WATCHERS_PER_USER),
                signal_streams: crate::slots::StreamSlots::new(
                    crate::MAX_SIGNAL_STREAMS_PER_SESSION,
                ),
                draining: CancellationToken::new(),
                db: backends.db,
                bus: backends.bus,
                replay: backends.replay,
                limiter: backends.limiter,
                leases: backends.leases,
                replica_id,
                auth,
                code_key,
                service_keys,
                metrics,
                config,
            }),
        })
    }

    pub fn config(&self) -> &RendezvousConfig {
        &self.inner.config
    }

    pub fn db(&self) -> &Database {
        &self.inner.db
    }

    pub fn replica_id(&self) -> &str {
        &self.inner.replica_id
    }

    pub fn metrics(&self) -> &RendezvousMetrics {
        &self.inner.metrics
    }

    pub fn outbox(&self) -> &OutboxPublisher {
        &self.inner.outbox
    }

    pub fn relays(&self) -> &RelayDirectory {
        &self.inner.relays
    }

    /// Readiness: every backend answers.
    pub async fn check_backends(&self) -> Result<(), String> {
        self.inner.db.ping().await.map_err(|e| e.to_string())?;
        self.inner.bus.ping().await.map_err(|e| e.to_string())?;
        self.inner.replay.ping().await.map_err(|e| e.to_string())?;
        self.inner.leases.ping().await.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Writes an audit event into the outbox inside `tx`.
    pub(crate) async fn audit(
        &self,
        tx: &mut Tx,
        record: AuditRecord,
    ) -> Result<(), RendezvousError> {
        audit_events::record(tx, record.context("source", "rendezvous")).await?;
        Ok(())
    }

    /// Records one audit event in a transaction of its own.
    pub(crate) async fn audit_alone(&self, record: AuditRecord) -> Result<(), RendezvousError> {
        let mut tx = self.inner.db.begin().await?;
        self.audit(&mut tx, record).await?;
        self.commit(tx).await
    }

    /// Commits `tx` and asks the outbox publisher to deliver what it recorded.
    pub(crate) async fn commit(&self, tx: Tx) -> Result<(), RendezvousError> {
        tx.commit().await?;
        self.inner.outbox.wake();
        Ok(())
    }

    /// An audit record attributed to an agent.
    pub(crate) fn agent_event(team_id: &str, action: &str, agent_id: &str) -> AuditRecord {
        AuditRecord::new(team_id, action, ActorKind::Agent, agent_id)
            .target(format!("agent:{agent_id}"))
    }

    /// Starts draining: agents are asked to reconnect elsewhere.
    pub fn start_draining(&self) {
        self.inner.draining.cancel();
    }
}

/// Refuses settings that cannot work, at startup rather than on the first request.
fn check_config(config: &RendezvousConfig) -> Result<(), RendezvousError> {
    let bad = |what: &str| Err(RendezvousError::InvalidArgument(what.to_owned()));
    if config.audience.is_empty() || config.audience.len() > tucdesk_proto::limits::MAX_AUDIENCE_LEN
    {
        return bad("the audience must be 1..=255 bytes");
    }
    if config.min_agent_version < tucdesk_proto::MIN_AGENT_PROTOCOL_VERSION {
        return bad("the minimum agent version cannot be below the build's floor");
    }
    let second = Duration::from_secs(1);
    if config.heartbeat_interval < Duration::from_millis(100)
        || config.heartbeat_interval > 10 * 60 * second
    {
        return bad("the heartbeat interval must be between 100 ms and 10 min");
    }
    if config.offer_timeout < second || config.consent_timeout < config.offer_timeout {
        return bad(
            "the offer timeout must be at least 1 s and the consent timeout at least as long",
        );
    }
    let ttl = config.turn_credential_ttl;
    if ttl < 30 * second || ttl > 24 * 60 * 60 * second {
        return bad("the TURN credential lifetime must be between 30 s and 24 h");
    }
    if config.max_approval_wait < 60 * second {
        return bad("the maximum approval wait must be at least 1 min");
    }
    Ok(())
}
