//! The `support_codes` table: rows, their computed state and the SQL the service runs.
//!
//! The code itself is never here: only its keyed hash, which this module writes and looks up
//! but never reads back (a row handed to the rest of the service cannot leak it).

use tucdesk_proto::v1::{
    SessionKind as ProtoKind, SupportCode as ProtoSupportCode, SupportCodeState, support_code,
};
use tucdesk_svc::sql::{Database, Tx};
use tucdesk_svc::{on_pool, on_tx};
use tucdesk_token::SessionKind;

use crate::error::AuthError;
use crate::store::timestamp;

/// Every column but `code_hash`.
const COLUMNS: &str = "id, team_id, agent_id, tag, session_kinds, created_by, note, \
     created_at_ms, expires_at_ms, max_uses, uses, revoked_at_ms";

/// Separator of the stored `session_kinds` list (`"shell,exec"`).
const KIND_SEPARATOR: char = ',';

/// One support code's metadata.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SupportCodeRow {
    pub id: String,
    pub team_id: String,
    pub agent_id: Option<String>,
    pub tag: Option<String>,
    pub session_kinds: String,
    /// User id of the admin who created it.
    pub created_by: String,
    pub note: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub max_uses: i32,
    pub uses: i32,
    pub revoked_at_ms: Option<i64>,
}

impl SupportCodeRow {
    /// The state at `now_ms`. Revoked wins over used, used over expired, so a code shows why
    /// it first stopped working. [`state_condition`] is the same rule in SQL.
    pub fn state(&self, now_ms: i64) -> SupportCodeState {
        if self.revoked_at_ms.is_some() {
            SupportCodeState::Revoked
        } else if self.uses >= self.max_uses {
            SupportCodeState::Used
        } else if self.expires_at_ms <= now_ms {
            SupportCodeState::Expired
        } else {
            SupportCodeState::Active
        }
    }

    /// The `scp` claim of its support principals: `agent:<id>` or `tag:<tag>`.
    pub fn scope_claim(&self) -> String {
        match (&self.agent_id, &self.tag) {
            (Some(agent), _) => format!("agent:{agent}"),
            (None, Some(tag)) => format!("tag:{tag}"),
            // The table's CHECK makes this unreachable; an empty scope grants nothing.
            (None, None) => String::new(),
        }
    }

    /// The session kinds its redeemers may open.
    pub fn kinds(&self) -> Result<Vec<SessionKind>, AuthError> {
        self.session_kinds
            .split(KIND_SEPARATOR)
            .map(|name| match name {
                "shell" => Ok(SessionKind::Shell),
                "exec" => Ok(SessionKind::Exec),
                other => Err(AuthError::internal("stored session kind is unknown", other)),
            })
            .collect()
    }

    pub fn to_proto(&self, now_ms: i64) -> ProtoSupportCode {
        let scope = match (&self.agent_id, &self.tag) {
            (Some(agent), _) => Some(support_code::Scope::AgentId(agent.clone())),
            (None, Some(tag)) => Some(support_code::Scope::Tag(tag.clone())),
            (None, None) => None,
        };
        let allowed_kinds = self
            .kinds()
            .unwrap_or_default()
            .into_iter()
            .map(|kind| kind_to_proto(kind) as i32)
            .collect();
        ProtoSupportCode {
            code_id: self.id.clone(),
            scope,
            allowed_kinds,
            max_uses: u32::try_from(self.max_uses).unwrap_or(0),
            uses: u32::try_from(self.uses).unwrap_or(0),
            created_by: self.created_by.clone(),
            created_at: Some(timestamp(self.created_at_ms)),
            expires_at: Some(timestamp(self.expires_at_ms)),
            state: self.state(now_ms) as i32,
            note: self.note.clone(),
        }
    }
}

pub fn kind_to_proto(kind: SessionKind) -> ProtoKind {
    match kind {
        SessionKind::Shell => ProtoKind::Shell,
        SessionKind::Exec => ProtoKind::Exec,
    }
}

/// The stored form of a kind list.
pub fn kinds_to_stored(kinds: &[SessionKind]) -> String {
    let names: Vec<&str> = kinds
        .iter()
        .map(|kind| match kind {
            SessionKind::Shell => "shell",
            SessionKind::Exec => "exec",
        })
        .collect();
    names.join(&KIND_SEPARATOR.to_string())
}

/// Inserts a new code; `Ok(false)` when its hash already exists (a 2^-60 collision: the
/// caller draws another code). Must be the first statement of `tx`, which a collision aborts.
pub async fn insert(
    tx: &mut Tx,
    row: &SupportCodeRow,
    code_hash: &[u8],
) -> Result<bool, AuthError> {
    let result = on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO support_codes (id, team_id, code_hash, agent_id, tag, session_kinds, \
             created_by, note, created_at_ms, expires_at_ms, max_uses, uses) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&row.id)
        .bind(&row.team_id)
        .bind(code_hash)
        .bind(&row.agent_id)
        .bind(&row.tag)
        .bind(&row.session_kinds)
        .bind(&row.created_by)
        .bind(&row.note)
        .bind(row.created_at_ms)
        .bind(row.expires_at_ms)
        .bind(row.max_uses)
        .bind(row.uses)
        .execute(conn)
        .await
        .map(|_| ())
    });
    match result {
        Ok(()) => Ok(true),
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// The code with this keyed hash, whatever its state.
pub async fn find_by_hash(
    db: &Database,
    code_hash: &[u8],
) -> Result<Option<SupportCodeRow>, AuthError> {
    let sql = format!("SELECT {COLUMNS} FROM support_codes WHERE code_hash = $1");
    Ok(on_pool!(db, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(code_hash)
            .fetch_optional(pool)
            .await?
    }))
}

/// A code of `team_id`; a foreign team's code is `None`, like a missing one.
pub async fn find_in_team(
    db: &Database,
    team_id: &str,
    id: &str,
) -> Result<Option<SupportCodeRow>, AuthError> {
    let sql = format!("SELECT {COLUMNS} FROM support_codes WHERE id = $1 AND team_id = $2");
    Ok(on_pool!(db, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(id)
            .bind(team_id)
            .fetch_optional(pool)
            .await?
    }))
}

/// Consumes one use, atomically: one conditional UPDATE re-checks every condition under the
/// row lock, so of concurrent redeemers of a single-use code exactly one gets the row back.
/// Run it first in `tx` (SQLite then takes the write lock at once instead of upgrading a
/// read lock, which could fail with "database is locked" under contention).
pub async fn consume(
    tx: &mut Tx,
    code_hash: &[u8],
    now_ms: i64,
) -> Result<Option<SupportCodeRow>, AuthError> {
    let sql = format!(
        "UPDATE support_codes SET uses = uses + 1 \
         WHERE code_hash = $1 AND revoked_at_ms IS NULL AND expires_at_ms > $2 \
         AND uses < max_uses RETURNING {COLUMNS}"
    );
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(code_hash)
            .bind(now_ms)
            .fetch_optional(conn)
            .await?
    }))
}

/// Marks a code of `team_id` revoked; `false` when it was already revoked or is not the team's.
pub async fn revoke(tx: &mut Tx, team_id: &str, id: &str, now_ms: i64) -> Result<bool, AuthError> {
    let changed = on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE support_codes SET revoked_at_ms = $1 \
             WHERE id = $2 AND team_id = $3 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(id)
        .bind(team_id)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(changed == 1)
}

/// `WHERE` fragment selecting codes in `state` (the rule of [`SupportCodeRow::state`]), and
/// whether it reads the current time as parameter `$now`.
fn state_condition(state: SupportCodeState) -> (&'static str, bool) {
    match state {
        SupportCodeState::Unspecified => ("", false),
        SupportCodeState::Revoked => (" AND revoked_at_ms IS NOT NULL", false),
        SupportCodeState::Used => (" AND revoked_at_ms IS NULL AND uses >= max_uses", false),
        SupportCodeState::Expired => (
            " AND revoked_at_ms IS NULL AND uses < max_uses AND expires_at_ms <= $now",
            true,
        ),
        SupportCodeState::Active => (
            " AND revoked_at_ms IS NULL AND uses < max_uses AND expires_at_ms > $now",
            true,
        ),
    }
}

/// One page of a team's codes, newest first (ids are UUIDv7, so id order is creation order),
/// after the code id `after` when given. Returns at most `limit` rows.
pub async fn list(
    db: &Database,
    team_id: &str,
    state: SupportCodeState,
    after: Option<&str>,
    now_ms: i64,
    limit: i64,
) -> Result<Vec<SupportCodeRow>, AuthError> {
    let (condition, needs_now) = state_condition(state);
    // Placeholders are numbered in bind order; only the parameters used are bound (Postgres
    // refuses unused ones).
    let mut sql = format!("SELECT {COLUMNS} FROM support_codes WHERE team_id = $1");
    let mut next = 2;
    if needs_now {
        sql.push_str(&condition.replace("$now", &format!("${next}")));
        next += 1;
    } else {
        sql.push_str(condition);
    }
    if after.is_some() {
        sql.push_str(&format!(" AND id < ${next}"));
        next += 1;
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${next}"));
    Ok(on_pool!(db, |pool| {
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(team_id);
        if needs_now {
            query = query.bind(now_ms);
        }
        if let Some(after) = after {
            query = query.bind(after);
        }
        query.bind(limit).fetch_all(pool).await?
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> SupportCodeRow {
        SupportCodeRow {
            id: "c".into(),
            team_id: "t".into(),
            agent_id: None,
            tag: Some("site:paris".into()),
            session_kinds: "shell,exec".into(),
            created_by: "u".into(),
            note: String::new(),
            created_at_ms: 0,
            expires_at_ms: 1_000,
            max_uses: 2,
            uses: 0,
            revoked_at_ms: None,
        }
    }

    #[test]
    fn state_says_why_a_code_first_stopped_working() {
        let live = row();
        assert_eq!(live.state(999), SupportCodeState::Active);
        assert_eq!(live.state(1_000), SupportCodeState::Expired);
        let used = SupportCodeRow { uses: 2, ..row() };
        assert_eq!(used.state(5_000), SupportCodeState::Used);
        let revoked = SupportCodeRow {
            uses: 2,
            revoked_at_ms: Some(1),
            ..row()
        };
        assert_eq!(revoked.state(5_000), SupportCodeState::Revoked);
    }

    #[test]
    fn kinds_and_scope_round_trip_through_storage() {
        let kinds = [SessionKind::Shell, SessionKind::Exec];
        assert_eq!(kinds_to_stored(&kinds), "shell,exec");
        assert_eq!(row().kinds().ok(), Some(kinds.to_vec()));
        assert_eq!(row().scope_claim(), "tag:site:paris");
        let bad = SupportCodeRow {
            session_kinds: "gui".into(),
            ..row()
        };
        assert!(bad.kinds().is_err());
    }
}
