//! Authorization codes: 256-bit random, stored as SHA-256 only, valid 60 s, single use, and
//! bound to the client, redirect URI, PKCE challenge, user and scope of the request.
//!
//! A code is consumed by one conditional UPDATE, so of concurrent exchanges exactly one gets
//! it; the family it was exchanged for is recorded on the row, so a second presentation
//! (RFC 6749 §4.1.2: "the authorization server MUST deny the request and SHOULD revoke all
//! tokens previously issued based on that authorization code") can revoke it.

use std::time::Duration;

use tucdesk_svc::sql::{Tx, now_ms};
use zeroize::Zeroizing;

use crate::error::AuthError;
use crate::refresh::hash_token;
use crate::store::base64_url;

/// Lifetime of an authorization code.
pub const CODE_TTL: Duration = Duration::from_secs(60);

/// How long spent and expired codes are kept so a late replay is still recognised.
pub const CODE_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// Code entropy: 256 bits.
const CODE_BYTES: usize = 32;

/// Longest code accepted on the wire (base64url of 32 bytes is 43 characters).
pub const MAX_CODE_LEN: usize = 64;

/// What a code is bound to.
#[derive(Debug, Clone)]
pub struct NewCode<'a> {
    pub client_id: &'a str,
    pub user_id: &'a str,
    pub team_id: &'a str,
    pub redirect_uri: &'a str,
    pub code_challenge: &'a str,
    pub scope: &'a str,
}

/// A stored code.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CodeRow {
    pub client_id: String,
    pub user_id: String,
    pub team_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scope: String,
    pub expires_at_ms: i64,
    pub family_id: Option<String>,
}

/// Result of presenting a code.
#[derive(Debug)]
pub enum Presented {
    /// First presentation: the code is now spent (checks still follow).
    Fresh(CodeRow),
    /// The code had been presented before.
    Reused(CodeRow),
}

/// Issues a code, and deletes codes past their retention on the way.
pub async fn insert(tx: &mut Tx, new: &NewCode<'_>) -> Result<Zeroizing<String>, AuthError> {
    let bytes = tucdesk_crypto::rng::random_secret::<CODE_BYTES>()
        .map_err(|err| AuthError::internal("authorization code generation", err))?;
    let code = Zeroizing::new(base64_url(bytes.as_slice()));
    let now = now_ms();
    let ttl = i64::try_from(CODE_TTL.as_millis()).unwrap_or(i64::MAX);
    let retention = i64::try_from(CODE_RETENTION.as_millis()).unwrap_or(i64::MAX);
    tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query("DELETE FROM oauth_codes WHERE expires_at_ms < $1")
            .bind(now.saturating_sub(retention))
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "INSERT INTO oauth_codes (code_hash, client_id, user_id, team_id, redirect_uri, \
             code_challenge, scope, created_at_ms, expires_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(hash_token(&code))
        .bind(new.client_id)
        .bind(new.user_id)
        .bind(new.team_id)
        .bind(new.redirect_uri)
        .bind(new.code_challenge)
        .bind(new.scope)
        .bind(now)
        .bind(now.saturating_add(ttl))
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(code)
}

/// Spends `code` inside `tx`; `None` for a code that does not exist.
pub async fn present(tx: &mut Tx, code: &str, now: i64) -> Result<Option<Presented>, AuthError> {
    if code.is_empty() || code.len() > MAX_CODE_LEN {
        return Ok(None);
    }
    let hash = hash_token(code);
    let spent = tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE oauth_codes SET used_at_ms = $1 WHERE code_hash = $2 AND used_at_ms IS NULL",
        )
        .bind(now)
        .bind(&hash)
        .execute(conn)
        .await?
        .rows_affected()
    });
    let row: Option<CodeRow> = tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query_as(
            "SELECT client_id, user_id, team_id, redirect_uri, code_challenge, scope, \
             expires_at_ms, family_id FROM oauth_codes WHERE code_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(conn)
        .await?
    });
    Ok(row.map(|row| {
        if spent == 1 {
            Presented::Fresh(row)
        } else {
            Presented::Reused(row)
        }
    }))
}

/// Records the family a code was exchanged for.
pub async fn set_family(tx: &mut Tx, code: &str, family_id: &str) -> Result<(), AuthError> {
    tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query("UPDATE oauth_codes SET family_id = $1 WHERE code_hash = $2")
            .bind(family_id)
            .bind(hash_token(code))
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(())
}
