//! Approval requests of the policy's approval gate.

use tucdesk_proto::v1::{Approval, ApprovalState, ExecSpec, OperatorIdentity, PolicyResult, Role};
use tucdesk_svc::sql::{Database, Tx};
use tucdesk_svc::{on_pool, on_tx};

use super::{decode, decode_opt, timestamp};
use crate::error::RendezvousError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApprovalRow {
    pub id: String,
    pub team_id: String,
    pub requester_id: String,
    pub requester: Vec<u8>,
    pub agent_id: String,
    pub kind: i32,
    pub exec: Option<Vec<u8>>,
    pub reason: String,
    pub policy_result: Vec<u8>,
    /// Comma-separated wire role numbers.
    pub approver_roles: String,
    pub state: i32,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub decided_by: Option<String>,
    pub decided_at_ms: Option<i64>,
    pub decision_comment: Option<String>,
    pub consumed_by: Option<String>,
}

impl ApprovalRow {
    pub fn state(&self) -> ApprovalState {
        ApprovalState::try_from(self.state).unwrap_or(ApprovalState::Unspecified)
    }

    /// The state as of `now_ms`: a pending request past its deadline counts as expired even
    /// before the sweeper has written that down.
    pub fn effective_state(&self, now_ms: i64) -> ApprovalState {
        match self.state() {
            ApprovalState::Pending if self.expires_at_ms <= now_ms => ApprovalState::Expired,
            state => state,
        }
    }

    pub fn roles(&self) -> Vec<Role> {
        self.approver_roles
            .split(',')
            .filter_map(|n| n.parse::<i32>().ok())
            .filter_map(|n| Role::try_from(n).ok())
            .collect()
    }

    pub fn exec(&self) -> Result<Option<ExecSpec>, RendezvousError> {
        decode_opt(self.exec.as_deref())
    }

    pub fn policy_result(&self) -> Result<PolicyResult, RendezvousError> {
        decode(&self.policy_result)
    }

    pub fn to_proto(&self, agent_name: &str, now_ms: i64) -> Result<Approval, RendezvousError> {
        Ok(Approval {
            approval_id: self.id.clone(),
            requester: Some(decode::<OperatorIdentity>(&self.requester)?),
            agent_id: self.agent_id.clone(),
            agent_name: agent_name.to_owned(),
            kind: self.kind,
            exec: self.exec()?,
            reason: self.reason.clone(),
            policy_result: Some(self.policy_result()?),
            approver_roles: self.roles().into_iter().map(|r| r as i32).collect(),
            state: self.effective_state(now_ms) as i32,
            created_at: Some(timestamp(self.created_at_ms)),
            expires_at: Some(timestamp(self.expires_at_ms)),
            decided_by: self.decided_by.clone().unwrap_or_default(),
            decided_at: self.decided_at_ms.map(timestamp),
            decision_comment: self.decision_comment.clone().unwrap_or_default(),
        })
    }
}

/// Encodes roles for the `approver_roles` column.
pub fn encode_roles(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| (*r as i32).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

const COLUMNS: &str = "id, team_id, requester_id, requester, agent_id, kind, exec, reason, \
     policy_result, approver_roles, state, created_at_ms, expires_at_ms, decided_by, \
     decided_at_ms, decision_comment, consumed_by";

pub async fn insert(tx: &mut Tx, row: &ApprovalRow) -> Result<(), RendezvousError> {
    let sql = format!(
        "INSERT INTO approvals ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
         $11, $12, $13, $14, $15, $16, $17)"
    );
    on_tx!(tx, |conn| {
        sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(&row.id)
            .bind(&row.team_id)
            .bind(&row.requester_id)
            .bind(&row.requester)
            .bind(&row.agent_id)
            .bind(row.kind)
            .bind(&row.exec)
            .bind(&row.reason)
            .bind(&row.policy_result)
            .bind(&row.approver_roles)
            .bind(row.state)
            .bind(row.created_at_ms)
            .bind(row.expires_at_ms)
            .bind(&row.decided_by)
            .bind(row.decided_at_ms)
            .bind(&row.decision_comment)
            .bind(&row.consumed_by)
            .execute(conn)
            .await?;
    });
    Ok(())
}

pub async fn find_in_team(
    db: &Database,
    team_id: &str,
    approval_id: &str,
) -> Result<Option<ApprovalRow>, RendezvousError> {
    let sql = format!("SELECT {COLUMNS} FROM approvals WHERE id = $1 AND team_id = $2");
    Ok(on_pool!(db, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(approval_id)
            .bind(team_id)
            .fetch_optional(pool)
            .await?
    }))
}

/// Decides a pending, unexpired request (APPROVED or DENIED); `None` when it is no longer
/// pending or has expired (a concurrent decision or the deadline won).
#[allow(clippy::too_many_arguments)]
pub async fn decide(
    tx: &mut Tx,
    team_id: &str,
    approval_id: &str,
    state: ApprovalState,
    decided_by: &str,
    comment: &str,
    now_ms: i64,
    use_until_ms: i64,
) -> Result<Option<ApprovalRow>, RendezvousError> {
    // An approval stays usable for a while after the decision, however late it came.
    let sql = format!(
        "UPDATE approvals SET state = $1, decided_by = $2, decided_at_ms = $3, \
         decision_comment = $4, expires_at_ms = $9 WHERE id = $5 AND team_id = $6 AND state = $7 \
         AND expires_at_ms > $8 RETURNING {COLUMNS}"
    );
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(state as i32)
            .bind(decided_by)
            .bind(now_ms)
            .bind(comment)
            .bind(approval_id)
            .bind(team_id)
            .bind(ApprovalState::Pending as i32)
            .bind(now_ms)
            .bind(use_until_ms)
            .fetch_optional(conn)
            .await?
    }))
}

/// Uses an approved request for one session (approvals are single use); `None` if it is not
/// approved any more or its use window (the original deadline) has passed.
pub async fn consume(
    tx: &mut Tx,
    team_id: &str,
    approval_id: &str,
    session_id: &str,
    now_ms: i64,
) -> Result<Option<ApprovalRow>, RendezvousError> {
    let sql = format!(
        "UPDATE approvals SET state = $1, consumed_by = $2 WHERE id = $3 AND team_id = $4 \
         AND state = $5 AND expires_at_ms > $6 RETURNING {COLUMNS}"
    );
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(ApprovalState::Consumed as i32)
            .bind(session_id)
            .bind(approval_id)
            .bind(team_id)
            .bind(ApprovalState::Approved as i32)
            .bind(now_ms)
            .fetch_optional(conn)
            .await?
    }))
}

/// Marks pending requests past their deadline EXPIRED and returns them (at most `limit`).
/// Safe with several replicas sweeping at once: each row changes state exactly once.
pub async fn expire_due(
    tx: &mut Tx,
    now_ms: i64,
    limit: u32,
) -> Result<Vec<ApprovalRow>, RendezvousError> {
    let sql = format!(
        "UPDATE approvals SET state = $1, decided_by = 'system', decided_at_ms = $2 \
         WHERE id IN (SELECT id FROM approvals WHERE state = $3 AND expires_at_ms <= $4 LIMIT $5) \
         AND state = $6 RETURNING {COLUMNS}"
    );
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(ApprovalState::Expired as i32)
            .bind(now_ms)
            .bind(ApprovalState::Pending as i32)
            .bind(now_ms)
            .bind(i64::from(limit))
            .bind(ApprovalState::Pending as i32)
            .fetch_all(conn)
            .await?
    }))
}

/// A page of the team's requests, newest first, after the cursor (created_at_ms, id);
/// `state` 0 = all. `requester` limits it to one user's own requests.
pub async fn list(
    db: &Database,
    team_id: &str,
    state: Option<ApprovalState>,
    requester: Option<&str>,
    after: Option<(i64, &str)>,
    limit: u32,
) -> Result<Vec<ApprovalRow>, RendezvousError> {
    let (after_ms, after_id) = after.unwrap_or((i64::MAX, ""));
    let sql = format!(
        "SELECT {COLUMNS} FROM approvals WHERE team_id = $1 AND ($2 = 0 OR state = $3) \
         AND ($4 = '' OR requester_id = $5) \
         AND (created_at_ms < $6 OR (created_at_ms = $7 AND id < $8)) \
         ORDER BY created_at_ms DESC, id DESC LIMIT $9"
    );
    let state = state.map_or(0, |s| s as i32);
    let requester = requester.unwrap_or_default();
    Ok(on_pool!(db, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(team_id)
            .bind(state)
            .bind(state)
            .bind(requester)
            .bind(requester)
            .bind(after_ms)
            .bind(after_ms)
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
    }))
}
