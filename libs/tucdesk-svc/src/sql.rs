//! SQL backend chosen by URL: `postgres://…` in production, `sqlite://…` embedded.
//!
//! Both pools sit behind one [`Database`] enum rather than `sqlx::Any`, so each query keeps
//! its native types (BYTEA/BLOB, BIGINT) and its real driver errors. Queries are written once:
//! SQLite accepts the `$1, $2, …` placeholders Postgres uses, and the [`on_pool!`] /
//! [`on_tx!`](crate::on_tx) macros expand the same body for both drivers.
//!
//! Conventions every service's schema follows so one SQL text fits both databases: times are
//! `BIGINT` unix milliseconds, binary is `BYTEA` (Postgres) / `BLOB` (SQLite), and each service
//! has its own database (or Postgres schema via `search_path`): no service reads another's tables.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::redact::redact_url;

/// How long a caller may wait for a pooled connection before the request fails; a
/// database that cannot hand out a connection in this time is effectively down.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long SQLite waits on a locked database file before giving up on a statement.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Default maximum pool size: enough for a service's request concurrency on a small node.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// Migration history of the kit's own tables (the outbox), kept apart from the service's so
/// both can number their migrations from 1 without colliding.
const KIT_MIGRATIONS_TABLE: &str = "_tucdesk_kit_migrations";

/// Migration history of the service's own tables.
const SERVICE_MIGRATIONS_TABLE: &str = "_tucdesk_migrations";

static KIT_POSTGRES: Migrator = sqlx::migrate!("../../migrations/kit/postgres");
static KIT_SQLITE: Migrator = sqlx::migrate!("../../migrations/kit/sqlite");

/// Errors of the SQL layer. Every variant that names a URL holds it redacted.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("unsupported database URL scheme in {url} (expected postgres:// or sqlite://)")]
    UnsupportedScheme { url: String },
    #[error("invalid database URL {url}: {source}")]
    InvalidUrl {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot connect to database {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating {what} failed: {source}")]
    Migrate {
        what: &'static str,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
}

/// Which engine a [`Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Sqlite,
}

/// A service's migrations for both engines, embedded at compile time with `sqlx::migrate!`:
///
/// ```text
/// static PG: Migrator = sqlx::migrate!("../../migrations/auth/postgres");
/// static LITE: Migrator = sqlx::migrate!("../../migrations/auth/sqlite");
/// const MIGRATIONS: Migrations = Migrations { postgres: &PG, sqlite: &LITE };
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    pub postgres: &'static Migrator,
    pub sqlite: &'static Migrator,
}

/// Pool sizing; the defaults suit a service on a small node.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: ACQUIRE_TIMEOUT,
        }
    }
}

/// A connection pool to the service's own database.
#[derive(Debug, Clone)]
pub enum Database {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// An open transaction on either engine; commit or roll back explicitly (dropping it rolls back).
#[derive(Debug)]
pub enum Tx {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

/// Runs `$body` with `$pool` bound to the concrete pool of a [`Database`].
#[macro_export]
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::sql::Database::Postgres($pool) => $body,
            $crate::sql::Database::Sqlite($pool) => $body,
        }
    };
}

/// Runs `$body` with `$conn` bound to the concrete connection of a [`Tx`].
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            $crate::sql::Tx::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::sql::Tx::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}

impl Database {
    /// Connects to `url` and checks the server answers. A URL that cannot be reached is an
    /// error naming it (password redacted): production never falls back to SQLite silently.
    pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Self, SqlError> {
        let redacted = redact_url(url);
        match scheme(url) {
            Some("postgres" | "postgresql") => {
                let pool = PgPoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(settings.acquire_timeout)
                    .connect(url)
                    .await
                    .map_err(|source| SqlError::Connect {
                        url: redacted,
                        source,
                    })?;
                Ok(Self::Postgres(pool))
            }
            Some("sqlite") => {
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(|source| SqlError::InvalidUrl {
                        url: redacted.clone(),
                        source,
                    })?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .foreign_keys(true)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT);
                // An in-memory database lives in one connection; a second would see an
                // empty database, so the pool must never open more than one.
                let max = if url.contains(":memory:") || url.contains("mode=memory") {
                    1
                } else {
                    settings.max_connections
                };
                let pool = SqlitePoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(settings.acquire_timeout)
                    .connect_with(options)
                    .await
                    .map_err(|source| SqlError::Connect {
                        url: redacted,
                        source,
                    })?;
                Ok(Self::Sqlite(pool))
            }
            _ => Err(SqlError::UnsupportedScheme { url: redacted }),
        }
    }

    /// Connects and brings the schema up to date: the kit's tables first, then the
    /// service's. Safe to call on every start and from several replicas at once
    /// (sqlx takes an advisory lock on Postgres).
    pub async fn connect_and_migrate(
        url: &str,
        settings: &PoolSettings,
        migrations: Migrations,
    ) -> Result<Self, SqlError> {
        let db = Self::connect(url, settings).await?;
        db.migrate(migrations).await?;
        Ok(db)
    }

    /// Applies the kit's and the service's pending migrations, idempotently.
    pub async fn migrate(&self, migrations: Migrations) -> Result<(), SqlError> {
        let (kit, service) = match self {
            Self::Postgres(_) => (&KIT_POSTGRES, migrations.postgres),
            Self::Sqlite(_) => (&KIT_SQLITE, migrations.sqlite),
        };
        let kit = with_table(kit, KIT_MIGRATIONS_TABLE);
        let service = with_table(service, SERVICE_MIGRATIONS_TABLE);
        on_pool!(self, |pool| {
            kit.run(pool).await.map_err(|source| SqlError::Migrate {
                what: "kit tables",
                source,
            })?;
            service.run(pool).await.map_err(|source| SqlError::Migrate {
                what: "service tables",
                source,
            })
        })
    }

    pub fn engine(&self) -> Engine {
        match self {
            Self::Postgres(_) => Engine::Postgres,
            Self::Sqlite(_) => Engine::Sqlite,
        }
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), SqlError> {
        on_pool!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Starts a transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`):
    /// a deferred transaction that reads and then writes fails with "database is locked",
    /// without waiting, when another connection wrote in between; an immediate one waits its
    /// turn under the busy timeout instead. Every service transaction writes (at least its
    /// audit event), so nothing is lost by serialising them.
    pub async fn begin(&self) -> Result<Tx, SqlError> {
        Ok(match self {
            Self::Postgres(pool) => Tx::Postgres(pool.begin().await?),
            Self::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    /// Closes every pooled connection, waiting for checked-out ones to come back.
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), SqlError> {
        match self {
            Self::Postgres(tx) => tx.commit().await?,
            Self::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), SqlError> {
        match self {
            Self::Postgres(tx) => tx.rollback().await?,
            Self::Sqlite(tx) => tx.rollback().await?,
        }
        Ok(())
    }

    pub fn engine(&self) -> Engine {
        match self {
            Self::Postgres(_) => Engine::Postgres,
            Self::Sqlite(_) => Engine::Sqlite,
        }
    }
}

fn scheme(url: &str) -> Option<&str> {
    url.split_once(':').map(|(scheme, _)| scheme)
}

fn with_table(migrator: &'static Migrator, table: &'static str) -> Migrator {
    Migrator {
        migrations: migrator.migrations.clone(),
        table_name: Cow::Borrowed(table),
        ..Migrator::DEFAULT
    }
}

/// The current time as unix milliseconds, the one time representation in every table.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_is_the_part_before_the_colon() {
        assert_eq!(scheme("postgres://u@h/db"), Some("postgres"));
        assert_eq!(scheme("sqlite://x.db"), Some("sqlite"));
        assert_eq!(scheme("nothing"), None);
    }

    #[tokio::test]
    async fn unknown_scheme_is_refused_with_the_url_redacted() {
        let err = Database::connect("mysql://root:hunter2@127.0.0.1/x", &PoolSettings::default())
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unsupported"), "{err}");
        assert!(!err.contains("hunter2"), "password leaked: {err}");
    }
}
