//! Refresh-token families (SPEC §3).
//!
//! A login starts a family bound to one device key; every refresh consumes the presented token
//! and issues the next generation. Tokens are 256-bit random values stored only as SHA-256.
//! Presenting a token that was already used means it was copied: the whole family is revoked
//! (theft detection). That includes the loser of two concurrent refreshes with one token —
//! a legitimate client never does that, so the safe reading is "copied".

use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tucdesk_svc::sql::{Database, Tx, now_ms};
use zeroize::Zeroizing;

use crate::error::AuthError;
use crate::store::base64_url;

/// Refresh-token entropy (SPEC §3: 256 bits).
const TOKEN_BYTES: usize = 32;

/// Longest refresh token accepted on the wire (base64url of 32 bytes is 43 characters).
pub const MAX_TOKEN_LEN: usize = 64;

/// Why a family was revoked, as stored and audited.
pub const REVOKED_REUSE: &str = "reuse_detected";
pub const REVOKED_LOGOUT: &str = "logout";

/// A newly issued refresh token; the secret is shown to the client once.
#[derive(Debug)]
pub struct IssuedRefresh {
    pub token: tucdesk_crypto::SecretString,
    pub family_id: String,
    pub expires_at_ms: i64,
}

/// The family a successful rotation continued.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Family {
    pub id: String,
    pub user_id: String,
    pub team_id: String,
    pub device_jkt: String,
    pub client_id: Option<String>,
    pub scope: Option<String>,
    pub generation: i64,
    pub expires_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// Result of presenting a refresh token.
#[derive(Debug)]
pub enum Rotation {
    Rotated {
        family: Family,
        next: IssuedRefresh,
    },
    /// The token had been used before; the family is now revoked (caller audits it).
    Reused {
        family: Family,
    },
}

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn new_token() -> Result<Zeroizing<String>, AuthError> {
    let bytes = tucdesk_crypto::rng::random_secret::<TOKEN_BYTES>()
        .map_err(|err| AuthError::internal("refresh token generation", err))?;
    Ok(Zeroizing::new(base64_url(bytes.as_slice())))
}

async fn insert_token(
    tx: &mut Tx,
    family_id: &str,
    generation: i64,
) -> Result<Zeroizing<String>, AuthError> {
    let token = new_token()?;
    tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, generation, created_at_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(hash_token(&token))
        .bind(family_id)
        .bind(generation)
        .bind(now_ms())
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(token)
}

/// Parameters of a new family.
#[derive(Debug, Clone)]
pub struct NewFamily<'a> {
    pub user_id: &'a str,
    pub team_id: &'a str,
    pub device_jkt: &'a str,
    pub client_id: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub lifetime: Duration,
}

/// Starts a family (at login) and issues its first token.
pub async fn start_family(tx: &mut Tx, new: &NewFamily<'_>) -> Result<IssuedRefresh, AuthError> {
    let family_id = uuid::Uuid::now_v7().to_string();
    let now = now_ms();
    let expires_at_ms =
        now.saturating_add(i64::try_from(new.lifetime.as_millis()).unwrap_or(i64::MAX));
    tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO refresh_families (id, user_id, team_id, device_jkt, client_id, scope, \
             generation, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8)",
        )
        .bind(&family_id)
        .bind(new.user_id)
        .bind(new.team_id)
        .bind(new.device_jkt)
        .bind(new.client_id)
        .bind(new.scope)
        .bind(now)
        .bind(expires_at_ms)
        .execute(conn)
        .await?
        .rows_affected()
    });
    let token = insert_token(tx, &family_id, 0).await?;
    Ok(IssuedRefresh {
        token: token.into(),
        family_id,
        expires_at_ms,
    })
}

const FAMILY_COLUMNS: &str = "f.id, f.user_id, f.team_id, f.device_jkt, f.client_id, f.scope, \
     f.generation, f.expires_at_ms, f.revoked_at_ms";

async fn family_of_token(tx: &mut Tx, hash: &[u8]) -> Result<Option<Family>, AuthError> {
    let sql = format!(
        "SELECT {FAMILY_COLUMNS} FROM refresh_tokens t \
         JOIN refresh_families f ON f.id = t.family_id WHERE t.token_hash = $1"
    );
    Ok(tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(hash)
            .fetch_optional(conn)
            .await?
    }))
}

/// Revokes a family (idempotent; the first reason stays).
pub async fn revoke_family(tx: &mut Tx, family_id: &str, reason: &str) -> Result<(), AuthError> {
    tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE refresh_families SET revoked_at_ms = $1, revoked_reason = $2 \
             WHERE id = $3 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms())
        .bind(reason)
        .bind(family_id)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Revokes every live family of a user (logout everywhere, disabling a user).
pub async fn revoke_user_families(
    tx: &mut Tx,
    user_id: &str,
    reason: &str,
) -> Result<u64, AuthError> {
    Ok(tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE refresh_families SET revoked_at_ms = $1, revoked_reason = $2 \
             WHERE user_id = $3 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms())
        .bind(reason)
        .bind(user_id)
        .execute(conn)
        .await?
        .rows_affected()
    }))
}

/// Consumes `token` and issues the next one, inside `tx`.
///
/// The consume is a single conditional UPDATE, so of concurrent presenters exactly one sees
/// the row change; everyone else finds it used and the family is revoked.
pub async fn rotate(tx: &mut Tx, token: &str, now: i64) -> Result<Rotation, AuthError> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::TokenInvalid);
    }
    let hash = hash_token(token);
    let consumed = tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE refresh_tokens SET used_at_ms = $1 WHERE token_hash = $2 AND used_at_ms IS NULL",
        )
        .bind(now)
        .bind(&hash)
        .execute(conn)
        .await?
        .rows_affected()
    });
    let family = family_of_token(tx, &hash)
        .await?
        .ok_or(AuthError::TokenInvalid)?;
    if consumed == 0 {
        revoke_family(tx, &family.id, REVOKED_REUSE).await?;
        return Ok(Rotation::Reused { family });
    }
    if family.revoked_at_ms.is_some() {
        return Err(AuthError::TokenInvalid);
    }
    if family.expires_at_ms <= now {
        return Err(AuthError::TokenExpired);
    }
    let generation = family.generation + 1;
    tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query("UPDATE refresh_families SET generation = $1 WHERE id = $2")
            .bind(generation)
            .bind(&family.id)
            .execute(conn)
            .await?
            .rows_affected()
    });
    let next_token = insert_token(tx, &family.id, generation).await?;
    let next = IssuedRefresh {
        token: next_token.into(),
        family_id: family.id.clone(),
        expires_at_ms: family.expires_at_ms,
    };
    Ok(Rotation::Rotated {
        family: Family {
            generation,
            ..family
        },
        next,
    })
}

/// The family a token belongs to, without consuming it (logout).
pub async fn find_family(tx: &mut Tx, token: &str) -> Result<Option<Family>, AuthError> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Ok(None);
    }
    family_of_token(tx, &hash_token(token)).await
}

/// Only for callers holding a pool, not a transaction.
pub async fn family_is_live(db: &Database, family_id: &str, now: i64) -> Result<bool, AuthError> {
    let live: Option<i64> = tucdesk_svc::on_pool!(db, |pool| {
        sqlx::query_scalar(
            "SELECT 1 FROM refresh_families WHERE id = $1 AND revoked_at_ms IS NULL \
             AND expires_at_ms > $2",
        )
        .bind(family_id)
        .bind(now)
        .fetch_optional(pool)
        .await?
    });
    Ok(live.is_some())
}
