//! `audit_checkpoints`: signed tree heads, inserted once.

use tucdesk_crypto::merkle::{Checkpoint, SignedCheckpoint};
use tucdesk_svc::sql::{Database, Tx};
use tucdesk_svc::{on_pool, on_tx};

use super::{WriteError, db_int, from_db_int, stored_hash, stored_sig};
use crate::error::AuditError;

#[derive(Debug, sqlx::FromRow)]
struct CheckpointRow {
    team_id: String,
    tree_size: i64,
    root_hash: Vec<u8>,
    timestamp_ms: i64,
    key_id: String,
    sig: Vec<u8>,
}

impl CheckpointRow {
    fn into_signed(self) -> Result<SignedCheckpoint, AuditError> {
        Ok(SignedCheckpoint {
            checkpoint: Checkpoint {
                tree_size: from_db_int(self.tree_size)?,
                root_hash: stored_hash(&self.root_hash)?,
                timestamp_ms: from_db_int(self.timestamp_ms)?,
                team_id: self.team_id,
                key_id: self.key_id,
            },
            sig: stored_sig(&self.sig)?,
        })
    }
}

fn convert(rows: Vec<CheckpointRow>) -> Result<Vec<SignedCheckpoint>, AuditError> {
    rows.into_iter().map(CheckpointRow::into_signed).collect()
}

/// Stores a signed checkpoint (inside the transaction that moves the head).
pub async fn insert(tx: &mut Tx, signed: &SignedCheckpoint) -> Result<(), WriteError> {
    let c = &signed.checkpoint;
    let (size, at) = (db_int(c.tree_size)?, db_int(c.timestamp_ms)?);
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO audit_checkpoints (team_id, tree_size, root_hash, timestamp_ms, key_id, \
             sig) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&c.team_id)
        .bind(size)
        .bind(&c.root_hash[..])
        .bind(at)
        .bind(&c.key_id)
        .bind(&signed.sig[..])
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// The checkpoint of `team_id` at exactly `tree_size`.
pub async fn at(
    db: &Database,
    team_id: &str,
    tree_size: u64,
) -> Result<Option<SignedCheckpoint>, AuditError> {
    let size = db_int(tree_size)?;
    let row: Option<CheckpointRow> = on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT team_id, tree_size, root_hash, timestamp_ms, key_id, sig \
             FROM audit_checkpoints WHERE team_id = $1 AND tree_size = $2",
        )
        .bind(team_id)
        .bind(size)
        .fetch_optional(pool)
        .await?
    });
    row.map(CheckpointRow::into_signed).transpose()
}

/// The largest checkpoint of `team_id` with `above < tree_size <= at_most`.
pub async fn latest_between(
    db: &Database,
    team_id: &str,
    above: u64,
    at_most: u64,
) -> Result<Option<SignedCheckpoint>, AuditError> {
    let (above, at_most) = (db_int(above)?, db_int(at_most)?);
    let row: Option<CheckpointRow> = on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT team_id, tree_size, root_hash, timestamp_ms, key_id, sig \
             FROM audit_checkpoints WHERE team_id = $1 AND tree_size > $2 AND tree_size <= $3 \
             ORDER BY tree_size DESC LIMIT 1",
        )
        .bind(team_id)
        .bind(above)
        .bind(at_most)
        .fetch_optional(pool)
        .await?
    });
    row.map(CheckpointRow::into_signed).transpose()
}

/// The newest checkpoint of `team_id`.
pub async fn latest(db: &Database, team_id: &str) -> Result<Option<SignedCheckpoint>, AuditError> {
    latest_between(db, team_id, 0, i64::MAX as u64).await
}

/// Up to `limit` checkpoints of `team_id` with `tree_size > after_size` and
/// `timestamp_ms >= since_ms`, by tree size ascending.
pub async fn list(
    db: &Database,
    team_id: &str,
    after_size: u64,
    since_ms: i64,
    limit: u32,
) -> Result<Vec<SignedCheckpoint>, AuditError> {
    let after = db_int(after_size)?;
    let rows: Vec<CheckpointRow> = on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT team_id, tree_size, root_hash, timestamp_ms, key_id, sig \
             FROM audit_checkpoints WHERE team_id = $1 AND tree_size > $2 AND timestamp_ms >= $3 \
             ORDER BY tree_size LIMIT $4",
        )
        .bind(team_id)
        .bind(after)
        .bind(since_ms)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?
    });
    convert(rows)
}
