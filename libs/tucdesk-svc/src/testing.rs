//! Support for tests that run against the real backends on the developer's machine and in
//! CI, shared by every crate's test suite so each starts from an isolated, clean state.
//!
//! URLs default to the services on this machine and can be overridden:
//! `TUCDESK_TEST_POSTGRES_URL`, `TUCDESK_TEST_REDIS_URL`, `TUCDESK_TEST_NATS_URL`.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::sql::{Database, Migrations, PoolSettings, SqlError};

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// Test schemas older than this are dropped when a new one is made, so schemas left behind
/// by a crashed run do not pile up.
const STALE_SCHEMA_SECS: u64 = 3600;

const SCHEMA_PREFIX: &str = "tucdesk_test_";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

pub fn postgres_url() -> String {
    env_or("TUCDESK_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
}

pub fn redis_url() -> String {
    env_or("TUCDESK_TEST_REDIS_URL", DEFAULT_REDIS_URL)
}

pub fn nats_url() -> String {
    env_or("TUCDESK_TEST_NATS_URL", DEFAULT_NATS_URL)
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A name no other test (or earlier run) uses: `{prefix}{unix seconds}_{random}`.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}{}_{}",
        unix_secs(),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A Postgres database of its own for one test: a fresh schema, selected through
/// `search_path`, in the shared test database.
#[derive(Debug)]
pub struct TestPostgres {
    pub db: Database,
    pub url: String,
    pub schema: String,
    admin: Database,
}

impl TestPostgres {
    pub async fn new() -> Result<Self, SqlError> {
        let base = postgres_url();
        let admin = Database::connect(&base, &PoolSettings::default()).await?;
        drop_stale_schemas(&admin).await?;
        let schema = unique_name(SCHEMA_PREFIX);
        crate::on_pool!(&admin, |pool| {
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
                .execute(pool)
                .await?
                .rows_affected()
        });
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
        let db = Database::connect(&url, &PoolSettings::default()).await?;
        Ok(Self {
            db,
            url,
            schema,
            admin,
        })
    }

    /// Same, with a service's migrations applied.
    pub async fn migrated(migrations: Migrations) -> Result<Self, SqlError> {
        let test = Self::new().await?;
        test.db.migrate(migrations).await?;
        Ok(test)
    }

    /// Drops the schema. Tests call it at the end; one that panics leaves its schema for
    /// the stale-schema sweep.
    pub async fn cleanup(self) -> Result<(), SqlError> {
        self.db.close().await;
        let schema = &self.schema;
        crate::on_pool!(&self.admin, |pool| {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
            )))
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(())
    }
}

async fn drop_stale_schemas(admin: &Database) -> Result<(), SqlError> {
    let names: Vec<String> = crate::on_pool!(admin, |pool| {
        sqlx::query_scalar(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'tucdesk\\_test\\_%'",
        )
        .fetch_all(pool)
        .await?
    });
    let now = unix_secs();
    for name in names {
        let created = name
            .strip_prefix(SCHEMA_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|created| now.saturating_sub(created) > STALE_SCHEMA_SECS) {
            crate::on_pool!(admin, |pool| {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
                )))
                .execute(pool)
                .await?
                .rows_affected()
            });
        }
    }
    Ok(())
}

/// A SQLite database file inside `dir` (the caller owns the temporary directory).
pub async fn sqlite_in(dir: &Path) -> Result<Database, SqlError> {
    let url = format!("sqlite://{}", dir.join("test.db").display());
    Database::connect(&url, &PoolSettings::default()).await
}

/// A python3 interpreter that can import `modules`, for tests that check our output with an
/// independent implementation (e.g. PyJWT). Looks at `$TUCDESK_PYTHON`, then `python3` on
/// PATH, then `/usr/bin/python3` (Debian's packages).
pub fn python_with(modules: &[&str]) -> Option<String> {
    let import = format!("import {}", modules.join(", "));
    let mut candidates: Vec<String> = std::env::var("TUCDESK_PYTHON").into_iter().collect();
    candidates.extend(["python3".to_owned(), "/usr/bin/python3".to_owned()]);
    candidates.into_iter().find(|candidate| {
        std::process::Command::new(candidate)
            .args(["-c", &import])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}
