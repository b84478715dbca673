//! The recorder's shared state, built once per replica and cloned into every handler.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tucdesk_svc::audit_events::{self, AuditRecord};
use tucdesk_svc::bus::Bus;
use tucdesk_svc::outbox::OutboxPublisher;
use tucdesk_svc::sql::{Database, Migrations, PoolSettings};

use crate::config::RecorderConfig;
use crate::directory::AgentDirectory;
use crate::error::{RecorderError, StartError};
use crate::metrics::RecorderMetrics;
use crate::objects::Store;

static MIGRATIONS_PG: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/recorder/postgres");
static MIGRATIONS_SQLITE: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/recorder/sqlite");

/// The recorder's own tables, for both engines.
pub const MIGRATIONS: Migrations = Migrations {
    postgres: &MIGRATIONS_PG,
    sqlite: &MIGRATIONS_SQLITE,
};

/// The backends the service runs on. Standalone mode passes the shared in-process bus.
#[derive(Debug, Clone)]
pub struct Backends {
    pub db: Database,
    pub bus: Arc<dyn Bus>,
    pub store: Store,
    pub directory: Arc<dyn AgentDirectory>,
}

impl Backends {
    /// Connects the database (migrating it unless told not to), the bus and the store;
    /// `directory` is rendezvous (or a test double).
    pub async fn connect(
        config: &RecorderConfig,
        directory: Arc<dyn AgentDirectory>,
    ) -> Result<Self, StartError> {
        config.check()?;
        let db = Database::connect(&config.database_url, &PoolSettings::default()).await?;
        if config.migrate {
            db.migrate(MIGRATIONS).await?;
        }
        let bus = tucdesk_svc::bus::connect(&config.bus_url, "tucdesk-recorder").await?;
        let store = crate::objects::open(config)?;
        Ok(Self {
            db,
            bus,
            store,
            directory,
        })
    }
}

/// Shared state of one recorder replica; cheap to clone.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub config: RecorderConfig,
    pub db: Database,
    pub store: Store,
    pub directory: Arc<dyn AgentDirectory>,
    pub bus: Arc<dyn Bus>,
    pub metrics: RecorderMetrics,
    /// The service's audit events (`recording.upload`, `recording.download`).
    pub outbox: OutboxPublisher,
    pub upload_slots: Semaphore,
}

impl Recorder {
    pub async fn new(config: RecorderConfig, backends: Backends) -> Result<Self, StartError> {
        config.check()?;
        backends
            .bus
            .ensure_stream(&audit_events::audit_stream())
            .await?;
        Ok(Self {
            inner: Arc::new(Inner {
                outbox: OutboxPublisher::new(backends.db.clone(), backends.bus.clone()),
                upload_slots: Semaphore::new(config.max_concurrent_uploads),
                metrics: RecorderMetrics::new()?,
                db: backends.db,
                store: backends.store,
                directory: backends.directory,
                bus: backends.bus,
                config,
            }),
        })
    }

    pub fn config(&self) -> &RecorderConfig {
        &self.inner.config
    }

    pub fn db(&self) -> &Database {
        &self.inner.db
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn metrics(&self) -> &RecorderMetrics {
        &self.inner.metrics
    }

    pub fn outbox(&self) -> &OutboxPublisher {
        &self.inner.outbox
    }

    /// Readiness: the database, the bus and the object store answer.
    pub async fn check_backends(&self) -> Result<(), String> {
        self.inner
            .db
            .ping()
            .await
            .map_err(|_| "database".to_owned())?;
        self.inner.bus.ping().await.map_err(|_| "bus".to_owned())?;
        use futures::StreamExt as _;
        let probe = object_store::path::Path::from("tenants");
        match self.inner.store.list(Some(&probe)).next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(_)) => Err("object store".to_owned()),
        }
    }

    /// Writes `record` through the outbox in its own transaction.
    pub(crate) async fn audit_alone(&self, record: AuditRecord) -> Result<(), RecorderError> {
        let mut tx = self.inner.db.begin().await?;
        audit_events::record(&mut tx, record).await?;
        tx.commit().await?;
        self.inner.outbox.wake();
        Ok(())
    }
}
