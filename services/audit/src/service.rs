//! The audit service's shared state, built once per replica and cloned into every task and
//! handler.

use std::sync::Arc;

use tokio::sync::{Notify, Semaphore};
use tucdesk_proto::v1::ActorKind;
use tucdesk_svc::audit_events::{self, AuditRecord};
use tucdesk_svc::bus::Bus;
use tucdesk_svc::outbox::OutboxPublisher;
use tucdesk_svc::sql::{Database, Migrations, PoolSettings, now_ms};

use crate::caller::Caller;
use crate::config::AuditConfig;
use crate::error::{AuditError, StartError};
use crate::key::AuditKey;
use crate::metrics::AuditMetrics;
use crate::store;

static MIGRATIONS_PG: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/audit/postgres");
static MIGRATIONS_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/audit/sqlite");

/// The audit service's own tables, for both engines.
pub const MIGRATIONS: Migrations = Migrations {
    postgres: &MIGRATIONS_PG,
    sqlite: &MIGRATIONS_SQLITE,
};

/// Exports one replica streams at once; more are refused with RESOURCE_EXHAUSTED.
pub const MAX_CONCURRENT_EXPORTS: usize = 4;
/// Inclusion and consistency proofs one replica computes at once (each hashes up to
/// [`crate::proofs::MAX_PROOF_TREE_SIZE`] leaves); more wait their turn.
pub const MAX_CONCURRENT_PROOFS: usize = 2;

/// The backends the service runs on. Standalone mode passes the shared in-process bus.
#[derive(Debug, Clone)]
pub struct Backends {
    pub db: Database,
    pub bus: Arc<dyn Bus>,
}

impl Backends {
    /// Connects every backend named in `config` (migrating the database unless told not to);
    /// an unreachable one is an error naming it.
    pub async fn connect(config: &AuditConfig) -> Result<Self, StartError> {
        let db = Database::connect(&config.database_url, &PoolSettings::default()).await?;
        if config.migrate {
            db.migrate(MIGRATIONS).await?;
        }
        let bus = tucdesk_svc::bus::connect(&config.bus_url, "tucdesk-audit").await?;
        Ok(Self { db, bus })
    }
}

/// Shared state of one audit replica; cheap to clone.
#[derive(Debug, Clone)]
pub struct Audit {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub config: AuditConfig,
    pub db: Database,
    pub bus: Arc<dyn Bus>,
    pub key: AuditKey,
    pub metrics: AuditMetrics,
    /// The service's own audit events (`audit.query`, `audit.export`).
    pub outbox: OutboxPublisher,
    pub export_slots: Arc<Semaphore>,
    pub proof_slots: Arc<Semaphore>,
    /// Woken when this replica appended entries or signed a checkpoint (the syslog pusher
    /// waits on it between polls).
    pub log_changed: Notify,
}

impl Audit {
    /// Builds the service on connected (and migrated) backends: declares the stream it
    /// consumes (and the `AUDIT` stream its own events go to) and records its signing key.
    pub async fn new(
        config: AuditConfig,
        backends: Backends,
        key: AuditKey,
    ) -> Result<Self, StartError> {
        config.check()?;
        backends.bus.ensure_stream(&config.stream).await?;
        if config.stream.name != audit_events::AUDIT_STREAM {
            backends
                .bus
                .ensure_stream(&audit_events::audit_stream())
                .await?;
        }
        store::keys::register(
            &backends.db,
            key.key_id(),
            key.public_key().as_bytes(),
            now_ms(),
        )
        .await?;
        tracing::info!(
            key_id = key.key_id(),
            public_key = %key.public_key_base64url(),
            "audit signing key"
        );
        let metrics = AuditMetrics::new()?;
        Ok(Self {
            inner: Arc::new(Inner {
                outbox: OutboxPublisher::new(backends.db.clone(), backends.bus.clone()),
                export_slots: Arc::new(Semaphore::new(MAX_CONCURRENT_EXPORTS)),
                proof_slots: Arc::new(Semaphore::new(MAX_CONCURRENT_PROOFS)),
                log_changed: Notify::new(),
                db: backends.db,
                bus: backends.bus,
                config,
                key,
                metrics,
            }),
        })
    }

    pub fn config(&self) -> &AuditConfig {
        &self.inner.config
    }

    pub fn db(&self) -> &Database {
        &self.inner.db
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.inner.bus
    }

    pub fn metrics(&self) -> &AuditMetrics {
        &self.inner.metrics
    }

    /// The signing key (its public half and id; the secret stays inside).
    pub fn key(&self) -> &AuditKey {
        &self.inner.key
    }

    /// The publisher of the service's own audit events.
    pub fn outbox(&self) -> &OutboxPublisher {
        &self.inner.outbox
    }

    /// Readiness: the database and the bus answer.
    pub async fn check_backends(&self) -> Result<(), String> {
        self.inner
            .db
            .ping()
            .await
            .map_err(|_| "database".to_owned())?;
        self.inner.bus.ping().await.map_err(|_| "bus".to_owned())
    }

    /// Records that `caller` read the log (`audit.query`, `audit.export`): the service's own
    /// event, through its outbox onto the `AUDIT` stream, with the filter `details` and any
    /// `extra` context (the HTTP export's format). A read is refused when it cannot be
    /// recorded.
    pub(crate) async fn record_access(
        &self,
        caller: &Caller,
        action: &str,
        details: serde_json::Map<String, serde_json::Value>,
        extra: &[(&str, serde_json::Value)],
    ) -> Result<(), AuditError> {
        let mut record =
            AuditRecord::new(caller.team_id(), action, ActorKind::User, caller.user_id())
                .context("outcome", "success")
                .context("source", "audit")
                .context("role", caller.role().as_str());
        if let Some(email) = caller.claims.email.as_deref() {
            record = record.actor_display(email);
        }
        if let Some(jkt) = caller.device_jkt() {
            record = record.context("device_key_thumbprint", jkt);
        }
        if !details.is_empty() {
            record = record.context("filter", serde_json::Value::Object(details));
        }
        for (key, value) in extra {
            record = record.context(key, value.clone());
        }
        let mut tx = self.inner.db.begin().await?;
        audit_events::record(&mut tx, record).await?;
        tx.commit().await?;
        self.inner.outbox.wake();
        Ok(())
    }
}
