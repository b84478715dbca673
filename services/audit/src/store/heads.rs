//! `audit_heads`: per team, where the chain ends, the Merkle accumulator over its entry
//! hashes, and the last checkpoint. Updated optimistically: a write names the state it read,
//! so of two replicas extending one chain only one commits.

use tucdesk_crypto::audit::GENESIS_PREV_HASH;
use tucdesk_crypto::merkle::{HASH_LEN, Hash, MerkleAccumulator};
use tucdesk_svc::sql::{Database, Tx};
use tucdesk_svc::{on_pool, on_tx};

use super::{WriteError, db_int, from_db_int, stored_hash};
use crate::error::AuditError;

/// A team's chain head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub team_id: String,
    /// Entries in the chain: the seq of the last one, the Merkle tree size.
    pub tree_size: u64,
    /// Hash of entry `tree_size` (zero for an empty chain).
    pub last_hash: Hash,
    pub accumulator: MerkleAccumulator,
    /// Tree size of the last checkpoint (0: none yet).
    pub checkpoint_size: u64,
    /// When the last checkpoint was signed (for a team without one: when its head was made).
    pub checkpoint_at_ms: i64,
}

impl Head {
    /// The head of a team with no entries yet.
    pub fn empty(team_id: &str, now_ms: i64) -> Self {
        Self {
            team_id: team_id.to_owned(),
            tree_size: 0,
            last_hash: GENESIS_PREV_HASH,
            accumulator: MerkleAccumulator::new(),
            checkpoint_size: 0,
            checkpoint_at_ms: now_ms,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
struct HeadRow {
    team_id: String,
    tree_size: i64,
    last_hash: Vec<u8>,
    peaks: Vec<u8>,
    checkpoint_size: i64,
    checkpoint_at_ms: i64,
}

impl HeadRow {
    fn into_head(self) -> Result<Head, AuditError> {
        let tree_size = from_db_int(self.tree_size)?;
        if !self.peaks.len().is_multiple_of(HASH_LEN) {
            return Err(AuditError::internal(
                "stored Merkle peaks are malformed",
                &self.team_id,
            ));
        }
        let peaks = self
            .peaks
            .chunks_exact(HASH_LEN)
            .map(stored_hash)
            .collect::<Result<Vec<_>, _>>()?;
        let accumulator = MerkleAccumulator::from_parts(tree_size, peaks)
            .map_err(|err| AuditError::internal("stored Merkle accumulator is invalid", err))?;
        Ok(Head {
            last_hash: stored_hash(&self.last_hash)?,
            checkpoint_size: from_db_int(self.checkpoint_size)?,
            checkpoint_at_ms: self.checkpoint_at_ms,
            team_id: self.team_id,
            tree_size,
            accumulator,
        })
    }
}

fn encode_peaks(accumulator: &MerkleAccumulator) -> Vec<u8> {
    accumulator.peaks().concat()
}

const SELECT: &str = "SELECT team_id, tree_size, last_hash, peaks, checkpoint_size, \
                      checkpoint_at_ms FROM audit_heads WHERE team_id = $1";

/// The head of `team_id`, read inside a transaction.
pub async fn load_in(tx: &mut Tx, team_id: &str) -> Result<Option<Head>, AuditError> {
    let row: Option<HeadRow> = on_tx!(tx, |conn| {
        sqlx::query_as(SELECT)
            .bind(team_id)
            .fetch_optional(conn)
            .await?
    });
    row.map(HeadRow::into_head).transpose()
}

/// The head of `team_id`.
pub async fn load(db: &Database, team_id: &str) -> Result<Option<Head>, AuditError> {
    let row: Option<HeadRow> = on_pool!(db, |pool| {
        sqlx::query_as(SELECT)
            .bind(team_id)
            .fetch_optional(pool)
            .await?
    });
    row.map(HeadRow::into_head).transpose()
}

/// Stores `head` in place of the state `(expected_size, expected_checkpoint)` read earlier,
/// or creates it when `expected_size` is `None`. Another writer having moved the head first
/// is a [`WriteError::Conflict`].
pub async fn save(
    tx: &mut Tx,
    head: &Head,
    expected: Option<(u64, u64)>,
    now_ms: i64,
) -> Result<(), WriteError> {
    let peaks = encode_peaks(&head.accumulator);
    let (size, checkpoint_size) = (db_int(head.tree_size)?, db_int(head.checkpoint_size)?);
    let changed = match expected {
        None => on_tx!(tx, |conn| {
            sqlx::query(
                "INSERT INTO audit_heads (team_id, tree_size, last_hash, peaks, checkpoint_size, \
                 checkpoint_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (team_id) DO NOTHING",
            )
            .bind(&head.team_id)
            .bind(size)
            .bind(&head.last_hash[..])
            .bind(&peaks)
            .bind(checkpoint_size)
            .bind(head.checkpoint_at_ms)
            .bind(now_ms)
            .execute(conn)
            .await?
            .rows_affected()
        }),
        Some((old_size, old_checkpoint)) => {
            let (old_size, old_checkpoint) = (db_int(old_size)?, db_int(old_checkpoint)?);
            on_tx!(tx, |conn| {
                sqlx::query(
                    "UPDATE audit_heads SET tree_size = $2, last_hash = $3, peaks = $4, \
                     checkpoint_size = $5, checkpoint_at_ms = $6, updated_at_ms = $7 \
                     WHERE team_id = $1 AND tree_size = $8 AND checkpoint_size = $9",
                )
                .bind(&head.team_id)
                .bind(size)
                .bind(&head.last_hash[..])
                .bind(&peaks)
                .bind(checkpoint_size)
                .bind(head.checkpoint_at_ms)
                .bind(now_ms)
                .bind(old_size)
                .bind(old_checkpoint)
                .execute(conn)
                .await?
                .rows_affected()
            })
        }
    };
    if changed == 1 {
        Ok(())
    } else {
        Err(WriteError::Conflict)
    }
}

/// Teams with entries not covered by a checkpoint whose last checkpoint is at or before
/// `due_ms`, at most `limit` of them.
pub async fn due_for_checkpoint(
    db: &Database,
    due_ms: i64,
    limit: u32,
) -> Result<Vec<String>, AuditError> {
    Ok(on_pool!(db, |pool| {
        sqlx::query_scalar(
            "SELECT team_id FROM audit_heads \
             WHERE tree_size > checkpoint_size AND checkpoint_at_ms <= $1 \
             ORDER BY checkpoint_at_ms LIMIT $2",
        )
        .bind(due_ms)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?
    }))
}

/// The oldest last-checkpoint time among teams with uncheckpointed entries.
pub async fn oldest_unchecked(db: &Database) -> Result<Option<i64>, AuditError> {
    Ok(on_pool!(db, |pool| {
        sqlx::query_scalar(
            "SELECT MIN(checkpoint_at_ms) FROM audit_heads WHERE tree_size > checkpoint_size",
        )
        .fetch_one(pool)
        .await?
    }))
}
