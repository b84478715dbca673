//! The recorder's tables (`migrations/recorder`), the same SQL on Postgres and SQLite. Every
//! read that serves a caller filters by `team_id` from verified claims (or the agent's
//! enrolled team).

use tucdesk_svc::sql::{Database, Tx};
use tucdesk_svc::{on_pool, on_tx};

use crate::error::RecorderError;

/// One recording (complete or in progress).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordingRow {
    pub team_id: String,
    pub session_id: String,
    pub agent_id: String,
    pub operator_user_id: String,
    pub started_at_ms: i64,
    pub manifest: Vec<u8>,
    pub signature: Vec<u8>,
    pub ciphertext_sha256: Vec<u8>,
    pub ciphertext_size: i64,
    pub object_key: String,
    pub bytes_received: i64,
    pub complete: bool,
    pub uploaded_at_ms: Option<i64>,
}

impl RecordingRow {
    pub fn bytes_received(&self) -> u64 {
        u64::try_from(self.bytes_received).unwrap_or_default()
    }

    pub fn ciphertext_size(&self) -> u64 {
        u64::try_from(self.ciphertext_size).unwrap_or_default()
    }
}

const COLUMNS: &str = "team_id, session_id, agent_id, operator_user_id, started_at_ms, manifest, \
     signature, ciphertext_sha256, ciphertext_size, object_key, bytes_received, complete, \
     uploaded_at_ms";

/// A number stored in a BIGINT column.
pub fn db_int(value: u64) -> Result<i64, RecorderError> {
    i64::try_from(value).map_err(|_| RecorderError::InvalidArgument("number out of range".into()))
}

pub async fn find(
    db: &Database,
    team_id: &str,
    session_id: &str,
) -> Result<Option<RecordingRow>, RecorderError> {
    let sql = format!("SELECT {COLUMNS} FROM recordings WHERE team_id = $1 AND session_id = $2");
    Ok(on_pool!(db, |pool| {
        sqlx::query_as::<_, RecordingRow>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(team_id)
            .bind(session_id)
            .fetch_optional(pool)
            .await?
    }))
}

/// Inserts a new upload (nothing when the session already has one).
pub async fn insert(db: &Database, row: &RecordingRow, now_ms: i64) -> Result<(), RecorderError> {
    on_pool!(db, |pool| {
        sqlx::query(
            "INSERT INTO recordings (team_id, session_id, agent_id, operator_user_id, \
             started_at_ms, manifest, signature, ciphertext_sha256, ciphertext_size, object_key, \
             bytes_received, complete, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, FALSE, $11, $11) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&row.team_id)
        .bind(&row.session_id)
        .bind(&row.agent_id)
        .bind(&row.operator_user_id)
        .bind(row.started_at_ms)
        .bind(&row.manifest)
        .bind(&row.signature)
        .bind(&row.ciphertext_sha256)
        .bind(row.ciphertext_size)
        .bind(&row.object_key)
        .bind(now_ms)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Records `nonce` of `agent_id` as used until `expires_at_ms`; `false` when it already was.
/// Expired nonces are swept on the way.
pub async fn claim_nonce(
    db: &Database,
    agent_id: &str,
    nonce: &[u8],
    expires_at_ms: i64,
    now_ms: i64,
) -> Result<bool, RecorderError> {
    let inserted = on_pool!(db, |pool| {
        sqlx::query("DELETE FROM upload_nonces WHERE expires_at_ms < $1")
            .bind(now_ms)
            .execute(pool)
            .await?;
        sqlx::query(
            "INSERT INTO upload_nonces (agent_id, nonce, expires_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(agent_id)
        .bind(nonce)
        .bind(expires_at_ms)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(inserted == 1)
}

/// Advances the upload from `offset` by a staged part; `false` when the upload no longer
/// stands at `offset` (another call moved it).
pub async fn add_part(
    tx: &mut Tx,
    team_id: &str,
    session_id: &str,
    offset: u64,
    len: u64,
    object_key: &str,
    now_ms: i64,
) -> Result<bool, RecorderError> {
    let (offset, end) = (db_int(offset)?, db_int(offset + len)?);
    let moved = on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE recordings SET bytes_received = $1, updated_at_ms = $2 \
             WHERE team_id = $3 AND session_id = $4 AND bytes_received = $5 AND complete = FALSE",
        )
        .bind(end)
        .bind(now_ms)
        .bind(team_id)
        .bind(session_id)
        .bind(offset)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    if moved != 1 {
        return Ok(false);
    }
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO recording_parts (team_id, session_id, part_offset, part_len, object_key) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(team_id)
        .bind(session_id)
        .bind(offset)
        .bind(end - offset)
        .bind(object_key)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    Ok(true)
}

/// A staged part.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PartRow {
    pub part_offset: i64,
    pub part_len: i64,
    pub object_key: String,
}

/// The staged parts of an upload, in order.
pub async fn parts(
    db: &Database,
    team_id: &str,
    session_id: &str,
) -> Result<Vec<PartRow>, RecorderError> {
    Ok(on_pool!(db, |pool| {
        sqlx::query_as::<_, PartRow>(
            "SELECT part_offset, part_len, object_key FROM recording_parts \
             WHERE team_id = $1 AND session_id = $2 ORDER BY part_offset",
        )
        .bind(team_id)
        .bind(session_id)
        .fetch_all(pool)
        .await?
    }))
}

/// Forgets the staged parts of an upload (after completion, or to restart it from 0).
pub async fn clear_parts(
    db: &Database,
    team_id: &str,
    session_id: &str,
    restart: bool,
    now_ms: i64,
) -> Result<(), RecorderError> {
    let mut tx = db.begin().await?;
    on_tx!(&mut tx, |conn| {
        sqlx::query("DELETE FROM recording_parts WHERE team_id = $1 AND session_id = $2")
            .bind(team_id)
            .bind(session_id)
            .execute(&mut *conn)
            .await?
            .rows_affected()
    });
    if restart {
        on_tx!(&mut tx, |conn| {
            sqlx::query(
                "UPDATE recordings SET bytes_received = 0, updated_at_ms = $1 \
                 WHERE team_id = $2 AND session_id = $3 AND complete = FALSE",
            )
            .bind(now_ms)
            .bind(team_id)
            .bind(session_id)
            .execute(&mut *conn)
            .await?
            .rows_affected()
        });
    }
    tx.commit().await?;
    Ok(())
}

/// Marks the upload complete; `false` when another call already did.
pub async fn mark_complete(
    tx: &mut Tx,
    team_id: &str,
    session_id: &str,
    now_ms: i64,
) -> Result<bool, RecorderError> {
    let changed = on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE recordings SET complete = TRUE, uploaded_at_ms = $1, updated_at_ms = $1 \
             WHERE team_id = $2 AND session_id = $3 AND complete = FALSE",
        )
        .bind(now_ms)
        .bind(team_id)
        .bind(session_id)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    Ok(changed == 1)
}

/// What a listing asks for (the team always from claims).
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Empty: every agent.
    pub agent_id: String,
    /// Empty: every operator.
    pub operator_user_id: String,
    pub since_ms: i64,
    pub until_ms: i64,
    /// Resume after this `(started_at_ms, session_id)`, newest first.
    pub after: Option<(i64, String)>,
    pub limit: u32,
}

/// Complete recordings of `team_id`, newest first.
pub async fn list(
    db: &Database,
    team_id: &str,
    filter: &ListFilter,
) -> Result<Vec<RecordingRow>, RecorderError> {
    let (after_ms, after_session, has_after) = match &filter.after {
        Some((ms, session)) => (*ms, session.clone(), true),
        None => (0, String::new(), false),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM recordings WHERE team_id = $1 AND complete = TRUE \
         AND ($2 = '' OR agent_id = $2) AND ($3 = '' OR operator_user_id = $3) \
         AND started_at_ms >= $4 AND started_at_ms <= $5 \
         AND ($6 = FALSE OR started_at_ms < $7 OR (started_at_ms = $7 AND session_id < $8)) \
         ORDER BY started_at_ms DESC, session_id DESC LIMIT $9"
    );
    Ok(on_pool!(db, |pool| {
        sqlx::query_as::<_, RecordingRow>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(team_id)
            .bind(&filter.agent_id)
            .bind(&filter.operator_user_id)
            .bind(filter.since_ms)
            .bind(filter.until_ms)
            .bind(has_after)
            .bind(after_ms)
            .bind(&after_session)
            .bind(i64::from(filter.limit))
            .fetch_all(pool)
            .await?
    }))
}
