//! `audit_signing_keys`: every audit key that ever signed, for ListSigningKeys.

use tucdesk_svc::on_pool;
use tucdesk_svc::sql::Database;

use crate::error::AuditError;

/// A key as recorded when a replica first started with it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyRow {
    pub key_id: String,
    pub public_key: Vec<u8>,
    pub first_used_at_ms: i64,
}

/// Records `key_id` (if new). A different key already recorded under the same id, or the same
/// public key under another id, is refused: the id is the key's fingerprint.
pub async fn register(
    db: &Database,
    key_id: &str,
    public_key: &[u8; 32],
    now_ms: i64,
) -> Result<(), AuditError> {
    // Select first: SQLite's append-only trigger aborts even `INSERT … ON CONFLICT DO NOTHING`.
    for _ in 0..2 {
        let known = list(db).await?;
        if let Some(row) = known
            .iter()
            .find(|k| k.key_id == key_id || k.public_key == public_key)
        {
            if row.key_id == key_id && row.public_key == public_key {
                return Ok(());
            }
            return Err(AuditError::internal(
                "audit signing keys",
                "a recorded key id does not match its public key",
            ));
        }
        let inserted = on_pool!(db, |pool| {
            sqlx::query(
                "INSERT INTO audit_signing_keys (key_id, public_key, first_used_at_ms) \
                 VALUES ($1, $2, $3)",
            )
            .bind(key_id)
            .bind(&public_key[..])
            .bind(now_ms)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        });
        match inserted {
            Ok(_) => return Ok(()),
            // Another replica recorded it at the same moment: look again.
            Err(err) if super::is_conflict(&err) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Err(AuditError::internal(
        "audit signing keys",
        "could not record the signing key",
    ))
}

/// Every recorded key, oldest first.
pub async fn list(db: &Database) -> Result<Vec<KeyRow>, AuditError> {
    Ok(on_pool!(db, |pool| {
        sqlx::query_as::<_, KeyRow>(
            "SELECT key_id, public_key, first_used_at_ms FROM audit_signing_keys \
             ORDER BY first_used_at_ms, key_id",
        )
        .fetch_all(pool)
        .await?
    }))
}
