//! Team recording settings, one row per saved version (the newest is in force).

use serde::{Deserialize, Serialize};
use tucdesk_svc::sql::{Database, Tx};
use tucdesk_svc::{on_pool, on_tx};

use crate::error::RendezvousError;

/// One age recipient as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecipient {
    pub recipient: String,
    pub label: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SettingsRow {
    pub team_id: String,
    pub version: i64,
    pub mode: i32,
    pub recipients_json: String,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

impl SettingsRow {
    pub fn recipients(&self) -> Result<Vec<StoredRecipient>, RendezvousError> {
        serde_json::from_str(&self.recipients_json)
            .map_err(|err| RendezvousError::internal("stored recording recipients", err))
    }
}

/// The settings in force, if the team ever saved any.
pub async fn current(db: &Database, team_id: &str) -> Result<Option<SettingsRow>, RendezvousError> {
    Ok(on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT team_id, version, mode, recipients_json, updated_at_ms, updated_by \
             FROM recording_settings WHERE team_id = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(team_id)
        .fetch_optional(pool)
        .await?
    }))
}

/// The settings in force inside a transaction (for compare-and-swap).
pub async fn current_in(
    tx: &mut Tx,
    team_id: &str,
) -> Result<Option<SettingsRow>, RendezvousError> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(
            "SELECT team_id, version, mode, recipients_json, updated_at_ms, updated_by \
             FROM recording_settings WHERE team_id = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(team_id)
        .fetch_optional(conn)
        .await?
    }))
}

/// Inserts the next version; `false` when a concurrent writer saved that version first.
pub async fn insert(tx: &mut Tx, row: &SettingsRow) -> Result<bool, RendezvousError> {
    let result = on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO recording_settings \
             (team_id, version, mode, recipients_json, updated_at_ms, updated_by) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&row.team_id)
        .bind(row.version)
        .bind(row.mode)
        .bind(&row.recipients_json)
        .bind(row.updated_at_ms)
        .bind(&row.updated_by)
        .execute(conn)
        .await
        .map(|_| ())
    });
    match result {
        Ok(()) => Ok(true),
        Err(err) if super::is_unique_violation(&err) => Ok(false),
        Err(err) => Err(err.into()),
    }
}
