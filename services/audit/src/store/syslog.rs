//! `audit_syslog_cursor` and `audit_syslog_lease`: how far each team's log was pushed to the
//! syslog collector, and which replica pushes. Not part of the signed log: both are updated
//! in place (optimistically, so two writers cannot move a cursor backwards or past what was
//! read), and losing them only means entries are pushed again.

use tucdesk_svc::on_pool;
use tucdesk_svc::sql::Database;

use super::{db_int, from_db_int};
use crate::error::AuditError;

/// How far one team's log was pushed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Seq of the last entry pushed (0: none yet).
    pub last_seq: u64,
    /// Tree size of the largest checkpoint pushed (0: none yet).
    pub checkpoint_size: u64,
}

/// A team whose log has entries or checkpoints not pushed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behind {
    pub team_id: String,
    /// Entries in the team's chain now.
    pub tree_size: u64,
    pub cursor: Cursor,
}

#[derive(sqlx::FromRow)]
struct BehindRow {
    team_id: String,
    tree_size: i64,
    last_seq: i64,
    cursor_checkpoint: i64,
}

/// Up to `limit` teams with entries or checkpoints past their cursor, the ones pushed least
/// recently first (a team without a cursor first of all), so that no team waits behind a busy
/// one.
pub async fn teams_behind(db: &Database, limit: u32) -> Result<Vec<Behind>, AuditError> {
    let rows: Vec<BehindRow> = on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT h.team_id, h.tree_size, COALESCE(c.last_seq, 0) AS last_seq, \
             COALESCE(c.checkpoint_size, 0) AS cursor_checkpoint \
             FROM audit_heads h LEFT JOIN audit_syslog_cursor c ON c.team_id = h.team_id \
             WHERE h.tree_size > COALESCE(c.last_seq, 0) \
             OR h.checkpoint_size > COALESCE(c.checkpoint_size, 0) \
             ORDER BY COALESCE(c.updated_at_ms, 0), h.team_id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|row| {
            Ok(Behind {
                tree_size: from_db_int(row.tree_size)?,
                cursor: Cursor {
                    last_seq: from_db_int(row.last_seq)?,
                    checkpoint_size: from_db_int(row.cursor_checkpoint)?,
                },
                team_id: row.team_id,
            })
        })
        .collect()
}

/// Entries appended but not pushed yet, over every team (the lag metric).
pub async fn lag(db: &Database) -> Result<u64, AuditError> {
    let lag: i64 = on_pool!(db, |pool| {
        sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(h.tree_size - COALESCE(c.last_seq, 0)), 0) AS BIGINT) \
             FROM audit_heads h LEFT JOIN audit_syslog_cursor c ON c.team_id = h.team_id",
        )
        .fetch_one(pool)
        .await?
    });
    Ok(u64::try_from(lag).unwrap_or(0))
}

/// Moves `team_id`'s cursor from `expected` (what was read before pushing) to `to`. `false`
/// when another writer moved it meanwhile (nothing is changed then).
pub async fn advance(
    db: &Database,
    team_id: &str,
    expected: Cursor,
    to: Cursor,
    now_ms: i64,
) -> Result<bool, AuditError> {
    let (old_seq, old_cp) = (
        db_int(expected.last_seq)?,
        db_int(expected.checkpoint_size)?,
    );
    let (seq, cp) = (db_int(to.last_seq)?, db_int(to.checkpoint_size)?);
    let changed = on_pool!(db, |pool| {
        sqlx::query(
            "INSERT INTO audit_syslog_cursor (team_id, last_seq, checkpoint_size, updated_at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (team_id) DO UPDATE SET \
             last_seq = excluded.last_seq, checkpoint_size = excluded.checkpoint_size, \
             updated_at_ms = excluded.updated_at_ms \
             WHERE audit_syslog_cursor.last_seq = $5 \
             AND audit_syslog_cursor.checkpoint_size = $6",
        )
        .bind(team_id)
        .bind(seq)
        .bind(cp)
        .bind(now_ms)
        .bind(old_seq)
        .bind(old_cp)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(changed == 1)
}

/// Takes or renews the lease `name` for `holder` until `expires_at_ms`: `true` when `holder`
/// now holds it (it was free, expired before `now_ms`, or already `holder`'s).
pub async fn acquire_lease(
    db: &Database,
    name: &str,
    holder: &str,
    now_ms: i64,
    expires_at_ms: i64,
) -> Result<bool, AuditError> {
    let changed = on_pool!(db, |pool| {
        sqlx::query(
            "INSERT INTO audit_syslog_lease (name, holder, expires_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at_ms = excluded.expires_at_ms \
             WHERE audit_syslog_lease.holder = excluded.holder \
             OR audit_syslog_lease.expires_at_ms < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(expires_at_ms)
        .bind(now_ms)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(changed == 1)
}

/// Gives the lease up (at shutdown), so another replica takes over at once.
pub async fn release_lease(db: &Database, name: &str, holder: &str) -> Result<(), AuditError> {
    on_pool!(db, |pool| {
        sqlx::query(
            "UPDATE audit_syslog_lease SET expires_at_ms = 0 WHERE name = $1 AND holder = $2",
        )
        .bind(name)
        .bind(holder)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// The cursor of `team_id` (zero when it has none).
pub async fn cursor(db: &Database, team_id: &str) -> Result<Cursor, AuditError> {
    let row: Option<(i64, i64)> = on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT last_seq, checkpoint_size FROM audit_syslog_cursor WHERE team_id = $1",
        )
        .bind(team_id)
        .fetch_optional(pool)
        .await?
    });
    Ok(match row {
        Some((seq, cp)) => Cursor {
            last_seq: from_db_int(seq)?,
            checkpoint_size: from_db_int(cp)?,
        },
        None => Cursor::default(),
    })
}
