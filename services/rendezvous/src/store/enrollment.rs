//! Enrollment tokens: single-use, short-lived, stored only as a keyed hash of the code.

use tucdesk_proto::v1::{EnrollmentToken, EnrollmentTokenState};
use tucdesk_svc::sql::{Database, Tx};
use tucdesk_svc::{on_pool, on_tx};

use super::timestamp;
use crate::error::RendezvousError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: String,
    pub team_id: String,
    pub description: String,
    /// JSON array of tags.
    pub tags: String,
    pub allow_host_tags: bool,
    pub created_by: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub used_at_ms: Option<i64>,
    pub used_by_agent_id: Option<String>,
    pub revoked_at_ms: Option<i64>,
}

impl TokenRow {
    pub fn tag_list(&self) -> Vec<String> {
        serde_json::from_str(&self.tags).unwrap_or_default()
    }

    pub fn state(&self, now_ms: i64) -> EnrollmentTokenState {
        if self.revoked_at_ms.is_some() {
            EnrollmentTokenState::Revoked
        } else if self.used_at_ms.is_some() {
            EnrollmentTokenState::Used
        } else if self.expires_at_ms <= now_ms {
            EnrollmentTokenState::Expired
        } else {
            EnrollmentTokenState::Active
        }
    }

    pub fn to_proto(&self, now_ms: i64) -> EnrollmentToken {
        EnrollmentToken {
            token_id: self.id.clone(),
            description: self.description.clone(),
            tags: self.tag_list(),
            allow_host_tags: self.allow_host_tags,
            created_by: self.created_by.clone(),
            created_at: Some(timestamp(self.created_at_ms)),
            expires_at: Some(timestamp(self.expires_at_ms)),
            state: self.state(now_ms) as i32,
            used_at: self.used_at_ms.map(timestamp),
            used_by_agent_id: self.used_by_agent_id.clone().unwrap_or_default(),
        }
    }
}

const COLUMNS: &str = "id, team_id, description, tags, allow_host_tags, created_by, \
     created_at_ms, expires_at_ms, used_at_ms, used_by_agent_id, revoked_at_ms";

pub async fn insert(tx: &mut Tx, row: &TokenRow, code_hash: &[u8]) -> Result<(), RendezvousError> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO enrollment_tokens (id, team_id, code_hash, description, tags, \
             allow_host_tags, created_by, created_at_ms, expires_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&row.id)
        .bind(&row.team_id)
        .bind(code_hash)
        .bind(&row.description)
        .bind(&row.tags)
        .bind(row.allow_host_tags)
        .bind(&row.created_by)
        .bind(row.created_at_ms)
        .bind(row.expires_at_ms)
        .execute(conn)
        .await?;
    });
    Ok(())
}

/// Consumes the live token with this code hash for `agent_id`, atomically: of any number of
/// concurrent attempts exactly one gets the row. Unknown, used, expired and revoked tokens
/// are all `None` (the caller never says which).
pub async fn consume(
    tx: &mut Tx,
    code_hash: &[u8],
    agent_id: &str,
    now_ms: i64,
) -> Result<Option<TokenRow>, RendezvousError> {
    let sql = format!(
        "UPDATE enrollment_tokens SET used_at_ms = $1, used_by_agent_id = $2 \
         WHERE code_hash = $3 AND used_at_ms IS NULL AND revoked_at_ms IS NULL \
         AND expires_at_ms > $4 RETURNING {COLUMNS}"
    );
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(now_ms)
            .bind(agent_id)
            .bind(code_hash)
            .bind(now_ms)
            .fetch_optional(conn)
            .await?
    }))
}

pub async fn find_in_team(
    db: &Database,
    team_id: &str,
    token_id: &str,
) -> Result<Option<TokenRow>, RendezvousError> {
    let sql = format!("SELECT {COLUMNS} FROM enrollment_tokens WHERE id = $1 AND team_id = $2");
    Ok(on_pool!(db, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(token_id)
            .bind(team_id)
            .fetch_optional(pool)
            .await?
    }))
}

/// Revokes an unused token of the team; `false` when there is no such live token.
pub async fn revoke(
    tx: &mut Tx,
    team_id: &str,
    token_id: &str,
    now_ms: i64,
) -> Result<bool, RendezvousError> {
    let done = on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE enrollment_tokens SET revoked_at_ms = $1 \
             WHERE id = $2 AND team_id = $3 AND revoked_at_ms IS NULL AND used_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(token_id)
        .bind(team_id)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(done == 1)
}

/// A page of the team's tokens, newest first, after the cursor (created_at_ms, id).
pub async fn list(
    db: &Database,
    team_id: &str,
    after: Option<(i64, &str)>,
    limit: u32,
) -> Result<Vec<TokenRow>, RendezvousError> {
    let (after_ms, after_id) = after.unwrap_or((i64::MAX, ""));
    let sql = format!(
        "SELECT {COLUMNS} FROM enrollment_tokens WHERE team_id = $1 \
         AND (created_at_ms < $2 OR (created_at_ms = $3 AND id < $4)) \
         ORDER BY created_at_ms DESC, id DESC LIMIT $5"
    );
    // With no cursor, (MAX, "") admits every row: created_at_ms < MAX.
    Ok(on_pool!(db, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(team_id)
            .bind(after_ms)
            .bind(after_ms)
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
    }))
}
