//! Session records: every CreateSession under the id the viewer chose, and its lifecycle.

use prost::Message as _;
use tucdesk_proto::v1::{
    CloseReason, ExecSpec, OperatorIdentity, Path, PolicyResult, RejectReason, Session,
    SessionKind, SessionState,
};
use tucdesk_svc::sql::{Database, Tx};
use tucdesk_svc::{on_pool, on_tx};

use super::{decode, decode_opt, timestamp};
use crate::error::RendezvousError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: String,
    pub team_id: String,
    pub agent_id: String,
    pub user_id: String,
    pub operator: Vec<u8>,
    pub kind: i32,
    pub exec: Option<Vec<u8>>,
    pub e_op_pub: Vec<u8>,
    pub requested_path: i32,
    pub state: i32,
    pub path: i32,
    pub relay_node_id: String,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub bytes_to_agent: i64,
    pub bytes_to_operator: i64,
    pub policy_result: Option<Vec<u8>>,
    pub end_reason: i32,
    pub close_reason: i32,
    pub recorded: bool,
}

impl SessionRow {
    pub fn state(&self) -> SessionState {
        SessionState::try_from(self.state).unwrap_or(SessionState::Unspecified)
    }

    pub fn kind(&self) -> SessionKind {
        SessionKind::try_from(self.kind).unwrap_or(SessionKind::Unspecified)
    }

    pub fn is_live(&self) -> bool {
        matches!(
            self.state(),
            SessionState::Negotiating | SessionState::Active
        )
    }

    pub fn operator(&self) -> Result<OperatorIdentity, RendezvousError> {
        decode(&self.operator)
    }

    pub fn exec(&self) -> Result<Option<ExecSpec>, RendezvousError> {
        decode_opt(self.exec.as_deref())
    }

    pub fn to_proto(&self, agent_name: &str) -> Result<Session, RendezvousError> {
        let to_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(Session {
            session_id: self.id.clone(),
            agent_id: self.agent_id.clone(),
            agent_name: agent_name.to_owned(),
            operator: Some(self.operator()?),
            kind: self.kind,
            exec: self.exec()?,
            state: self.state,
            path: self.path,
            relay_node_id: self.relay_node_id.clone(),
            created_at: Some(timestamp(self.created_at_ms)),
            started_at: self.started_at_ms.map(timestamp),
            ended_at: self.ended_at_ms.map(timestamp),
            bytes_to_agent: to_u64(self.bytes_to_agent),
            bytes_to_operator: to_u64(self.bytes_to_operator),
            policy_result: decode_opt::<PolicyResult>(self.policy_result.as_deref())?,
            end_reason: self.end_reason,
            close_reason: self.close_reason,
            recorded: self.recorded,
        })
    }
}

const COLUMNS: &str = "id, team_id, agent_id, user_id, operator, kind, exec, e_op_pub, \
     requested_path, state, path, relay_node_id, created_at_ms, started_at_ms, ended_at_ms, \
     bytes_to_agent, bytes_to_operator, policy_result, end_reason, close_reason, recorded";

/// Inserts a new session; `false` when the id was ever used before (the viewer's retry must
/// pick a fresh id).
pub async fn insert(db: &Database, row: &SessionRow) -> Result<bool, RendezvousError> {
    let sql = format!(
        "INSERT INTO sessions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
         $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
    );
    let result = on_pool!(db, |pool| {
        sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(&row.id)
            .bind(&row.team_id)
            .bind(&row.agent_id)
            .bind(&row.user_id)
            .bind(&row.operator)
            .bind(row.kind)
            .bind(&row.exec)
            .bind(&row.e_op_pub)
            .bind(row.requested_path)
            .bind(row.state)
            .bind(row.path)
            .bind(&row.relay_node_id)
            .bind(row.created_at_ms)
            .bind(row.started_at_ms)
            .bind(row.ended_at_ms)
            .bind(row.bytes_to_agent)
            .bind(row.bytes_to_operator)
            .bind(&row.policy_result)
            .bind(row.end_reason)
            .bind(row.close_reason)
            .bind(row.recorded)
            .execute(pool)
            .await
            .map(|_| ())
    });
    match result {
        Ok(_) => Ok(true),
        Err(err) if super::is_unique_violation(&err) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

pub async fn find(db: &Database, session_id: &str) -> Result<Option<SessionRow>, RendezvousError> {
    let sql = format!("SELECT {COLUMNS} FROM sessions WHERE id = $1");
    Ok(on_pool!(db, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(session_id)
            .fetch_optional(pool)
            .await?
    }))
}

/// The session in the caller's team, or `None` (another team's session looks missing).
pub async fn find_in_team(
    db: &Database,
    team_id: &str,
    session_id: &str,
) -> Result<Option<SessionRow>, RendezvousError> {
    Ok(find(db, session_id)
        .await?
        .filter(|row| row.team_id == team_id))
}

/// Refuses a session (policy, approval, agent), recording why.
pub async fn refuse(
    tx: &mut Tx,
    session_id: &str,
    reason: RejectReason,
    policy: Option<&PolicyResult>,
    now_ms: i64,
) -> Result<(), RendezvousError> {
    let policy = policy.map(prost::Message::encode_to_vec);
    on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE sessions SET state = $1, end_reason = $2, ended_at_ms = $3, \
             policy_result = COALESCE($4, policy_result) WHERE id = $5",
        )
        .bind(SessionState::Refused as i32)
        .bind(reason as i32)
        .bind(now_ms)
        .bind(policy)
        .bind(session_id)
        .execute(conn)
        .await?;
    });
    Ok(())
}

/// Records the policy result, the relay chosen and the operator as auth named them for a
/// session about to be offered.
pub async fn set_offered(
    tx: &mut Tx,
    session_id: &str,
    policy: &PolicyResult,
    relay_node_id: &str,
    operator: &OperatorIdentity,
) -> Result<(), RendezvousError> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE sessions SET policy_result = $1, relay_node_id = $2, operator = $3 \
             WHERE id = $4",
        )
        .bind(policy.encode_to_vec())
        .bind(relay_node_id)
        .bind(operator.encode_to_vec())
        .bind(session_id)
        .execute(conn)
        .await?;
    });
    Ok(())
}

/// Moves a negotiating session to `state` (accepted → ACTIVE, failed → FAILED); `false` if it
/// was no longer negotiating (ended meanwhile).
pub async fn finish_negotiation(
    tx: &mut Tx,
    session_id: &str,
    state: SessionState,
    end_reason: RejectReason,
    now_ms: i64,
) -> Result<bool, RendezvousError> {
    let ended = (state != SessionState::Active).then_some(now_ms);
    let done = on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE sessions SET state = $1, end_reason = $2, ended_at_ms = $3 \
             WHERE id = $4 AND state = $5",
        )
        .bind(state as i32)
        .bind(end_reason as i32)
        .bind(ended)
        .bind(session_id)
        .bind(SessionState::Negotiating as i32)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(done == 1)
}

/// What one side reported about a live session (start, path change, end).
#[derive(Debug, Clone, Copy)]
pub struct ReportUpdate {
    pub path: Path,
    pub bytes_to_agent: u64,
    pub bytes_to_operator: u64,
    pub started: bool,
    pub ended: Option<CloseReason>,
    pub recorded: bool,
}

/// Applies a report to a live session: byte counts only grow, a start time is set once, an
/// end moves the session to ENDED. `false` if the session is not live any more.
pub async fn apply_report(
    tx: &mut Tx,
    session_id: &str,
    update: &ReportUpdate,
    now_ms: i64,
) -> Result<bool, RendezvousError> {
    let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let (state, ended_at, close) = match update.ended {
        Some(close) => (SessionState::Ended as i32, Some(now_ms), close as i32),
        None => (SessionState::Active as i32, None, 0),
    };
    let path = (update.path != Path::Unspecified).then_some(update.path as i32);
    let done = on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE sessions SET state = $1, \
             path = COALESCE($2, path), \
             bytes_to_agent = CASE WHEN $3 > bytes_to_agent THEN $4 ELSE bytes_to_agent END, \
             bytes_to_operator = CASE WHEN $5 > bytes_to_operator THEN $6 ELSE bytes_to_operator END, \
             started_at_ms = CASE WHEN $7 AND started_at_ms IS NULL THEN $8 ELSE started_at_ms END, \
             ended_at_ms = COALESCE($9, ended_at_ms), \
             close_reason = CASE WHEN $10 <> 0 THEN $11 ELSE close_reason END, \
             recorded = (recorded OR $12) \
             WHERE id = $13 AND state IN ($14, $15)",
        )
        .bind(state)
        .bind(path)
        .bind(to_i64(update.bytes_to_agent))
        .bind(to_i64(update.bytes_to_agent))
        .bind(to_i64(update.bytes_to_operator))
        .bind(to_i64(update.bytes_to_operator))
        .bind(update.started)
        .bind(now_ms)
        .bind(ended_at)
        .bind(close)
        .bind(close)
        .bind(update.recorded)
        .bind(session_id)
        .bind(SessionState::Negotiating as i32)
        .bind(SessionState::Active as i32)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(done == 1)
}

/// Ends a live session from the server side (EndSession, revocation); `false` if it was not
/// live.
pub async fn terminate(
    tx: &mut Tx,
    session_id: &str,
    reason: RejectReason,
    now_ms: i64,
) -> Result<bool, RendezvousError> {
    let done = on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE sessions SET state = $1, end_reason = $2, ended_at_ms = $3 \
             WHERE id = $4 AND state IN ($5, $6)",
        )
        .bind(SessionState::Ended as i32)
        .bind(reason as i32)
        .bind(now_ms)
        .bind(session_id)
        .bind(SessionState::Negotiating as i32)
        .bind(SessionState::Active as i32)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(done == 1)
}

/// Ids of an agent's live sessions (to terminate them on revocation).
pub async fn live_of_agent(db: &Database, agent_id: &str) -> Result<Vec<String>, RendezvousError> {
    Ok(on_pool!(db, |pool| {
        sqlx::query_scalar("SELECT id FROM sessions WHERE agent_id = $1 AND state IN ($2, $3)")
            .bind(agent_id)
            .bind(SessionState::Negotiating as i32)
            .bind(SessionState::Active as i32)
            .fetch_all(pool)
            .await?
    }))
}

/// Filters of a session listing (team from claims).
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub live_only: bool,
    pub agent_id: Option<String>,
    pub user_id: Option<String>,
    pub since_ms: Option<i64>,
}

/// A page of the team's sessions, newest first, after the cursor (created_at_ms, id).
pub async fn list(
    db: &Database,
    team_id: &str,
    filter: &ListFilter,
    after: Option<(i64, &str)>,
    limit: u32,
) -> Result<Vec<SessionRow>, RendezvousError> {
    let (after_ms, after_id) = after.unwrap_or((i64::MAX, ""));
    let sql = format!(
        "SELECT {COLUMNS} FROM sessions WHERE team_id = $1 \
         AND ($2 = FALSE OR state IN ($3, $4)) \
         AND ($5 = '' OR agent_id = $6) \
         AND ($7 = '' OR user_id = $8) \
         AND created_at_ms >= $9 \
         AND (created_at_ms < $10 OR (created_at_ms = $11 AND id < $12)) \
         ORDER BY created_at_ms DESC, id DESC LIMIT $13"
    );
    let agent = filter.agent_id.clone().unwrap_or_default();
    let user = filter.user_id.clone().unwrap_or_default();
    Ok(on_pool!(db, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(team_id)
            .bind(filter.live_only)
            .bind(SessionState::Negotiating as i32)
            .bind(SessionState::Active as i32)
            .bind(&agent)
            .bind(&agent)
            .bind(&user)
            .bind(&user)
            .bind(filter.since_ms.unwrap_or(i64::MIN))
            .bind(after_ms)
            .bind(after_ms)
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
    }))
}
