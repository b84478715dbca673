//! Team policy documents, one row per saved version.

use tucdesk_svc::sql::{Database, Tx};
use tucdesk_svc::{on_pool, on_tx};

use crate::error::RendezvousError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PolicyRow {
    pub team_id: String,
    pub version: i64,
    pub yaml: String,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

/// The version in force (the highest), if the team ever saved one.
pub async fn current(db: &Database, team_id: &str) -> Result<Option<PolicyRow>, RendezvousError> {
    Ok(on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT team_id, version, yaml, updated_at_ms, updated_by FROM policies \
             WHERE team_id = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(team_id)
        .fetch_optional(pool)
        .await?
    }))
}

/// The current version number (0 = none) inside a transaction.
pub async fn current_version(tx: &mut Tx, team_id: &str) -> Result<i64, RendezvousError> {
    let version: Option<i64> = on_tx!(tx, |conn| {
        sqlx::query_scalar("SELECT MAX(version) FROM policies WHERE team_id = $1")
            .bind(team_id)
            .fetch_one(conn)
            .await?
    });
    Ok(version.unwrap_or(0))
}

/// Inserts the next version; `false` when a concurrent writer saved that version first (the
/// primary key (team_id, version) lets exactly one of them succeed).
pub async fn insert(tx: &mut Tx, row: &PolicyRow) -> Result<bool, RendezvousError> {
    let result = on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO policies (team_id, version, yaml, updated_at_ms, updated_by) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&row.team_id)
        .bind(row.version)
        .bind(&row.yaml)
        .bind(row.updated_at_ms)
        .bind(&row.updated_by)
        .execute(conn)
        .await
        .map(|_| ())
    });
    match result {
        Ok(_) => Ok(true),
        Err(err) if super::is_unique_violation(&err) => Ok(false),
        Err(err) => Err(err.into()),
    }
}
