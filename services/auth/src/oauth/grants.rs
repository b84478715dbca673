//! Grants (a user's consent for a client and scope) and the revocations that end them.
//!
//! There is one live grant per user and client (a partial unique index); a new consent
//! updates its scope. Revoking a grant revokes every refresh family of that user and client;
//! revoking a client for a team revokes its grants and families in that team.

use tucdesk_svc::on_pool;
use tucdesk_svc::sql::{Database, Tx, now_ms};

use crate::error::AuthError;
use crate::refresh::revoke_family;

/// Why OAuth families were revoked, as stored in `refresh_families.revoked_reason`.
pub const REVOKED_GRANT: &str = "oauth_grant_revoked";
pub const REVOKED_CLIENT: &str = "oauth_client_revoked";
pub const REVOKED_CODE_REUSE: &str = "oauth_code_reused";

/// Records consent; returns the id of the (new or updated) live grant.
pub async fn upsert(
    tx: &mut Tx,
    client_id: &str,
    user_id: &str,
    team_id: &str,
    scope: &str,
) -> Result<String, AuthError> {
    let id = uuid::Uuid::now_v7().to_string();
    Ok(tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query_scalar(
            "INSERT INTO oauth_grants (id, client_id, user_id, team_id, scope, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (user_id, client_id) WHERE revoked_at_ms IS NULL \
             DO UPDATE SET scope = excluded.scope RETURNING id",
        )
        .bind(&id)
        .bind(client_id)
        .bind(user_id)
        .bind(team_id)
        .bind(scope)
        .bind(now_ms())
        .fetch_one(conn)
        .await?
    }))
}

/// Whether the user's consent for the client still stands.
pub async fn is_live(tx: &mut Tx, user_id: &str, client_id: &str) -> Result<bool, AuthError> {
    let found: Option<String> = tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query_scalar(
            "SELECT id FROM oauth_grants \
             WHERE user_id = $1 AND client_id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(user_id)
        .bind(client_id)
        .fetch_optional(conn)
        .await?
    });
    Ok(found.is_some())
}

/// A grant as listed, with its client's name and its live families' activity.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GrantRow {
    pub id: String,
    pub client_id: String,
    pub client_name: String,
    pub user_id: String,
    pub team_id: String,
    pub scope: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    pub last_used_at_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
}

const GRANT_SELECT: &str = "SELECT g.id, g.client_id, c.name AS client_name, g.user_id, \
     g.team_id, g.scope, g.created_at_ms, g.revoked_at_ms, \
     (SELECT MAX(t.created_at_ms) FROM refresh_families f \
      JOIN refresh_tokens t ON t.family_id = f.id \
      WHERE f.user_id = g.user_id AND f.client_id = g.client_id \
      AND f.revoked_at_ms IS NULL) AS last_used_at_ms, \
     (SELECT MAX(f.expires_at_ms) FROM refresh_families f \
      WHERE f.user_id = g.user_id AND f.client_id = g.client_id \
      AND f.revoked_at_ms IS NULL) AS expires_at_ms \
     FROM oauth_grants g JOIN oauth_clients c ON c.client_id = g.client_id";

/// Live grants of a team (of one user when `user_id` is set), by id after `after`.
pub async fn list(
    db: &Database,
    team_id: &str,
    user_id: Option<&str>,
    after: &str,
    limit: u32,
) -> Result<Vec<GrantRow>, AuthError> {
    let sql = format!(
        "{GRANT_SELECT} WHERE g.team_id = $1 AND ($2 = '' OR g.user_id = $2) AND g.id > $3 \
         AND g.revoked_at_ms IS NULL ORDER BY g.id LIMIT $4"
    );
    Ok(on_pool!(db, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(team_id)
            .bind(user_id.unwrap_or_default())
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
    }))
}

/// A grant by id, in whatever team.
pub async fn find(db: &Database, grant_id: &str) -> Result<Option<GrantRow>, AuthError> {
    let sql = format!("{GRANT_SELECT} WHERE g.id = $1");
    Ok(on_pool!(db, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(grant_id)
            .fetch_optional(pool)
            .await?
    }))
}

/// Revokes a grant and every family of its user and client; returns the families revoked.
pub async fn revoke(tx: &mut Tx, grant: &GrantRow) -> Result<u64, AuthError> {
    let now = now_ms();
    tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE oauth_grants SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(now)
        .bind(&grant.id)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE refresh_families SET revoked_at_ms = $1, revoked_reason = $2 \
             WHERE user_id = $3 AND client_id = $4 AND revoked_at_ms IS NULL",
        )
        .bind(now)
        .bind(REVOKED_GRANT)
        .bind(&grant.user_id)
        .bind(&grant.client_id)
        .execute(conn)
        .await?
        .rows_affected()
    }))
}

/// Revokes a client for one team: grants, families, and (for a client the team owns) the
/// client itself; for a shared client a revocation row keeps the team's users from
/// authorizing it again. Returns the families revoked.
pub async fn revoke_client(
    tx: &mut Tx,
    client_id: &str,
    team_id: &str,
    owned: bool,
    revoked_by: &str,
) -> Result<u64, AuthError> {
    let now = now_ms();
    tucdesk_svc::on_tx!(tx, |conn| {
        let result = if owned {
            sqlx::query(
                "UPDATE oauth_clients SET revoked_at_ms = $1 \
                 WHERE client_id = $2 AND revoked_at_ms IS NULL",
            )
            .bind(now)
            .bind(client_id)
            .execute(&mut *conn)
            .await
        } else {
            sqlx::query(
                "INSERT INTO oauth_client_revocations (client_id, team_id, revoked_by, \
                 revoked_at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(client_id)
            .bind(team_id)
            .bind(revoked_by)
            .bind(now)
            .execute(&mut *conn)
            .await
        };
        result?;
        sqlx::query(
            "UPDATE oauth_grants SET revoked_at_ms = $1 \
             WHERE client_id = $2 AND team_id = $3 AND revoked_at_ms IS NULL",
        )
        .bind(now)
        .bind(client_id)
        .bind(team_id)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE refresh_families SET revoked_at_ms = $1, revoked_reason = $2 \
             WHERE client_id = $3 AND team_id = $4 AND revoked_at_ms IS NULL",
        )
        .bind(now)
        .bind(REVOKED_CLIENT)
        .bind(client_id)
        .bind(team_id)
        .execute(conn)
        .await?
        .rows_affected()
    }))
}

/// Revokes the family a replayed code was exchanged for, if it was.
pub async fn revoke_code_family(tx: &mut Tx, family_id: Option<&str>) -> Result<(), AuthError> {
    match family_id {
        Some(family_id) => revoke_family(tx, family_id, REVOKED_CODE_REUSE).await,
        None => Ok(()),
    }
}
