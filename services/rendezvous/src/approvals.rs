//! The approval gate: when policy marks a request high-risk, CreateSession records an approval
//! request and returns `approval_pending`. A different human with an allowed role approves or
//! denies it (device proof required); nobody deciding within the bounded wait is a denial.
//! The requester then re-submits the identical request with the approval id (single use).

use std::time::Duration;

use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status};
use tucdesk_policy::Decision;
use tucdesk_proto::v1::{
    Approval, ApprovalEvent, ApprovalPending, ApprovalState, CreateSessionRequest,
    DecideApprovalRequest, GetApprovalRequest, ListApprovalsRequest, ListApprovalsResponse,
    PolicyResult, RejectReason, Role as WireRole,
};
use tucdesk_proto::validate;
use tucdesk_svc::audit_events::AuditRecord;
use tucdesk_svc::sql::now_ms;
use tucdesk_token::Role;

use crate::agents_api::READERS;
use crate::caller::{Caller, ProofScope, wire_role};
use crate::error::RendezvousError;
use crate::policy::{audit_policy_result, wire_policy_role};
use crate::routing::approvals_subject;
use crate::service::Rendezvous;
use crate::sessions::{created_cursor, user_event};
use crate::store::agents::{self, Agent};
use crate::store::approvals::{self, ApprovalRow, encode_roles};
use crate::store::sessions::{self as session_store, SessionRow};
use crate::store::{paging, timestamp};

pub use tucdesk_crypto::proof_scopes::{APPROVE as APPROVE_METHOD, DENY as DENY_METHOD};

/// How long an approved request stays usable after the decision (the requester re-submits).
pub const APPROVED_USE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// How often each replica expires overdue requests.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(2);
/// Requests expired per sweep at most (the next sweep takes the rest).
const SWEEP_BATCH: u32 = 500;
/// Events queued per WatchApprovals stream; a watcher further behind is disconnected.
pub const WATCH_QUEUE: usize = 64;
/// Pending requests sent when a watcher connects.
const WATCH_BACKLOG: u32 = 200;

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Rendezvous {
    /// Records an approval request for a high-risk session and returns it as pending.
    pub(crate) async fn request_approval(
        &self,
        caller: &Caller,
        agent: &Agent,
        row: &SessionRow,
        body: &CreateSessionRequest,
        decision: &Decision,
        result: &mut PolicyResult,
    ) -> Result<ApprovalPending, RendezvousError> {
        let now = now_ms();
        let wait = decision
            .approval_timeout
            .min(self.config().max_approval_wait);
        let approval_id = uuid::Uuid::new_v4().to_string();
        result.approval_id = approval_id.clone();
        let roles: Vec<WireRole> = decision
            .approver_roles
            .iter()
            .map(|role| wire_policy_role(*role))
            .collect();
        let approval = ApprovalRow {
            id: approval_id.clone(),
            team_id: caller.team_id().to_owned(),
            requester_id: caller.user_id().to_owned(),
            requester: caller.identity().encode_to_vec(),
            agent_id: agent.row.agent_id.clone(),
            kind: body.kind,
            exec: body.exec.as_ref().map(prost::Message::encode_to_vec),
            reason: body.reason.clone(),
            policy_result: result.encode_to_vec(),
            approver_roles: encode_roles(&roles),
            state: ApprovalState::Pending as i32,
            created_at_ms: now,
            expires_at_ms: now.saturating_add(millis(wait)),
            decided_by: None,
            decided_at_ms: None,
            decision_comment: None,
            consumed_by: None,
        };
        let mut tx = self.db().begin().await?;
        approvals::insert(&mut tx, &approval).await?;
        session_store::refuse(
            &mut tx,
            &row.id,
            RejectReason::ApprovalRequired,
            Some(result),
            now,
        )
        .await?;
        let decided = user_event(caller, "policy.decision")
            .target(format!("agent:{}", agent.row.agent_id))
            .session(row.id.as_str())
            .policy_result(audit_policy_result(result))
            .context("outcome", "approval_required");
        self.audit(&mut tx, decided).await?;
        let requested = user_event(caller, "approval.requested")
            .target(format!("approval:{approval_id}"))
            .session(row.id.as_str())
            .policy_result(audit_policy_result(result))
            .context("approval_id", approval_id.as_str())
            .context("agent_id", agent.row.agent_id.as_str())
            .context("expires_at_ms", approval.expires_at_ms);
        self.audit(&mut tx, requested).await?;
        self.commit(tx).await?;
        let view = approval.to_proto(&agent.row.name, now)?;
        self.publish_approval(caller.team_id(), &view).await;
        Ok(ApprovalPending {
            approval_id,
            expires_at: Some(timestamp(approval.expires_at_ms)),
            policy_result: Some(result.clone()),
        })
    }

    /// Uses an approved request for this CreateSession: it must be approved, unexpired,
    /// unused, and for the identical request by the same requester. Returns the approver.
    pub(crate) async fn use_approval(
        &self,
        caller: &Caller,
        agent: &Agent,
        row: &SessionRow,
        body: &CreateSessionRequest,
    ) -> Result<String, RendezvousError> {
        let now = now_ms();
        let approval = approvals::find_in_team(self.db(), caller.team_id(), &body.approval_id)
            .await?
            .ok_or(RendezvousError::NotFound("approval"))?;
        let refuse = |reason, message: &str| {
            let message = message.to_owned();
            async move {
                let mut tx = self.db().begin().await?;
                session_store::refuse(&mut tx, &row.id, reason, None, now).await?;
                self.commit(tx).await?;
                Err::<String, _>(RendezvousError::refused(reason, message))
            }
        };
        match approval.effective_state(now) {
            ApprovalState::Approved => {}
            ApprovalState::Pending => {
                return refuse(
                    RejectReason::ApprovalRequired,
                    "the approval is still pending",
                )
                .await;
            }
            ApprovalState::Denied => {
                return refuse(RejectReason::ApprovalDenied, "the request was denied").await;
            }
            _ => {
                return refuse(
                    RejectReason::ApprovalExpired,
                    "the approval expired or was already used",
                )
                .await;
            }
        }
        let same_exec = match (approval.exec()?, body.exec.as_ref()) {
            (None, None) => true,
            (Some(a), Some(b)) => validate::same_exec(&a, b),
            _ => false,
        };
        let same = approval.requester_id == caller.user_id()
            && approval.agent_id == agent.row.agent_id
            && approval.kind == body.kind
            && same_exec;
        if !same {
            return refuse(
                RejectReason::ApprovalDenied,
                "the request differs from the approved one (requester, agent, kind or command)",
            )
            .await;
        }
        let mut tx = self.db().begin().await?;
        let Some(used) =
            approvals::consume(&mut tx, caller.team_id(), &approval.id, &row.id, now).await?
        else {
            drop(tx);
            return refuse(
                RejectReason::ApprovalExpired,
                "the approval expired or was already used",
            )
            .await;
        };
        self.commit(tx).await?;
        Ok(used.decided_by.unwrap_or_default())
    }

    pub async fn list_approvals(
        &self,
        request: &Request<ListApprovalsRequest>,
    ) -> Result<ListApprovalsResponse, RendezvousError> {
        let caller = self.caller(request).await?;
        caller.require(READERS)?;
        let body = request.get_ref();
        let state = ApprovalState::try_from(body.state)
            .ok()
            .filter(|s| *s != ApprovalState::Unspecified);
        // Approvers see the team's requests; everyone else sees their own.
        let requester = (!caller.is_admin()).then(|| caller.user_id().to_owned());
        let fingerprint = paging::fingerprint(&[
            &body.state.to_be_bytes(),
            requester.as_deref().unwrap_or_default().as_bytes(),
        ]);
        let after = created_cursor(paging::cursor(body.page.as_ref(), &fingerprint)?)?;
        let size = paging::page_size(body.page.as_ref());
        // A pending request past its deadline reads as expired: filter on the stored state
        // but report the effective one.
        let rows = approvals::list(
            self.db(),
            caller.team_id(),
            state,
            requester.as_deref(),
            after.as_ref().map(|(ms, id)| (*ms, id.as_str())),
            size,
        )
        .await?;
        let now = now_ms();
        let ids: Vec<String> = rows.iter().map(|row| row.agent_id.clone()).collect();
        let names = agents::names_of(self.db(), &ids).await?;
        let out = rows
            .iter()
            .map(|row| row.to_proto(names.get(&row.agent_id).map_or("", String::as_str), now))
            .collect::<Result<Vec<_>, _>>()?;
        let page = paging::created_page(&fingerprint, &rows, size, |row| {
            (row.created_at_ms, &row.id)
        });
        Ok(ListApprovalsResponse {
            approvals: out,
            page: Some(page),
        })
    }

    async fn approval_view(
        &self,
        row: &ApprovalRow,
        now: i64,
    ) -> Result<Approval, RendezvousError> {
        let name = agents::find(self.db(), &row.agent_id)
            .await?
            .map(|a| a.name)
            .unwrap_or_default();
        row.to_proto(&name, now)
    }

    pub async fn get_approval(
        &self,
        request: &Request<GetApprovalRequest>,
    ) -> Result<Approval, RendezvousError> {
        let caller = self.caller(request).await?;
        caller.require(READERS)?;
        let approval_id = &request.get_ref().approval_id;
        validate::uuid("approval_id", approval_id).map_err(RendezvousError::invalid)?;
        let row = approvals::find_in_team(self.db(), caller.team_id(), approval_id)
            .await?
            .filter(|row| caller.is_admin() || row.requester_id == caller.user_id())
            .ok_or(RendezvousError::NotFound("approval"))?;
        self.approval_view(&row, now_ms()).await
    }

    /// Approve or Deny: a different human with an allowed role, with a device proof.
    pub async fn decide_approval(
        &self,
        request: &Request<DecideApprovalRequest>,
        approve: bool,
    ) -> Result<Approval, RendezvousError> {
        let body = request.get_ref();
        validate::uuid("approval_id", &body.approval_id).map_err(RendezvousError::invalid)?;
        validate::message("comment", &body.comment).map_err(RendezvousError::invalid)?;
        let method = if approve { APPROVE_METHOD } else { DENY_METHOD };
        let caller = self
            .sensitive_caller(
                request,
                body.proof.as_ref(),
                ProofScope {
                    method,
                    target: &body.approval_id,
                    session_id: "",
                    binding: b"",
                },
            )
            .await?;
        let now = now_ms();
        let row = approvals::find_in_team(self.db(), caller.team_id(), &body.approval_id)
            .await?
            .ok_or(RendezvousError::NotFound("approval"))?;
        let refused = |message: &'static str| {
            RendezvousError::refused(RejectReason::ApproverNotAllowed, message)
        };
        if !caller.may_decide_approvals() {
            return Err(refused(
                "only a person with a role that approves may decide approvals",
            ));
        }
        if row.requester_id == caller.user_id() {
            self.audit_alone(
                user_event(&caller, "approval.self_approval_refused")
                    .target(format!("approval:{}", row.id))
                    .context("outcome", "denied"),
            )
            .await?;
            return Err(refused("you cannot decide your own request"));
        }
        let allowed = row.roles();
        if !allowed.contains(&wire_role(caller.role())) {
            return Err(refused("your role may not decide this request"));
        }
        match row.effective_state(now) {
            ApprovalState::Pending => {}
            ApprovalState::Expired => {
                return Err(RendezvousError::refused(
                    RejectReason::ApprovalExpired,
                    "the request expired",
                ));
            }
            _ => {
                return Err(RendezvousError::refused(
                    RejectReason::ApprovalDenied,
                    "the request was already decided",
                ));
            }
        }
        let (state, action) = if approve {
            (ApprovalState::Approved, "approval.approved")
        } else {
            (ApprovalState::Denied, "approval.denied")
        };
        let use_until = now.saturating_add(millis(APPROVED_USE_WINDOW));
        let mut tx = self.db().begin().await?;
        let decided = approvals::decide(
            &mut tx,
            caller.team_id(),
            &row.id,
            state,
            caller.user_id(),
            &body.comment,
            now,
            use_until,
        )
        .await?
        .ok_or_else(|| {
            RendezvousError::refused(
                RejectReason::ApprovalExpired,
                "the request expired or was decided meanwhile",
            )
        })?;
        let mut result = decided.policy_result()?;
        result.approver = caller.user_id().to_owned();
        let mut record = user_event(&caller, action)
            .target(format!("approval:{}", row.id))
            .policy_result(audit_policy_result(&result))
            .context("outcome", "success")
            .context("approval_id", row.id.as_str())
            .context("requester", row.requester_id.as_str())
            .context("agent_id", row.agent_id.as_str());
        if !body.comment.is_empty() {
            record = record.context("comment", body.comment.as_str());
        }
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        self.metrics()
            .approvals
            .with_label_values(&[if approve { "approved" } else { "denied" }])
            .inc();
        let view = self.approval_view(&decided, now).await?;
        self.publish_approval(caller.team_id(), &view).await;
        Ok(view)
    }

    /// Expires overdue requests until `shutdown` (every replica sweeps; each row changes
    /// once).
    pub async fn run_approval_sweeper(&self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(err) = self.expire_due_approvals().await {
                        tracing::warn!(error = %err, "expiring approvals failed");
                    }
                }
            }
        }
    }

    /// One sweep: marks overdue requests EXPIRED, audited as decided by the system.
    pub async fn expire_due_approvals(&self) -> Result<usize, RendezvousError> {
        let now = now_ms();
        let mut tx = self.db().begin().await?;
        let expired = approvals::expire_due(&mut tx, now, SWEEP_BATCH).await?;
        for row in &expired {
            let mut result = row.policy_result()?;
            result.approver = "system".to_owned();
            let record = AuditRecord::new(
                &row.team_id,
                "approval.expired",
                tucdesk_proto::v1::ActorKind::System,
                "rendezvous",
            )
            .target(format!("approval:{}", row.id))
            .policy_result(audit_policy_result(&result))
            .context("outcome", "denied")
            .context("approval_id", row.id.as_str())
            .context("requester", row.requester_id.as_str());
            self.audit(&mut tx, record).await?;
        }
        self.commit(tx).await?;
        for row in &expired {
            self.metrics()
                .approvals
                .with_label_values(&["expired"])
                .inc();
            let view = self.approval_view(row, now).await?;
            self.publish_approval(&row.team_id, &view).await;
        }
        Ok(expired.len())
    }

    /// WatchApprovals: the pending requests the caller may decide, then every change of the
    /// team's requests. Bounded: a watcher that falls [`WATCH_QUEUE`] events behind is
    /// disconnected.
    pub async fn watch_approvals<T>(
        &self,
        request: &Request<T>,
    ) -> Result<ReceiverStream<Result<ApprovalEvent, Status>>, RendezvousError> {
        let caller = self.caller(request).await?;
        caller.require(&[Role::Owner, Role::Admin, Role::Operator])?;
        let slot = self.inner.watchers.try_take(caller.user_id()).ok_or(
            RendezvousError::LimitExceeded("too many approval watchers for this user"),
        )?;
        let mut subscription = self
            .inner
            .bus
            .subscribe(&approvals_subject(caller.team_id()))
            .await
            .map_err(|err| RendezvousError::internal("subscribing to approvals", err))?;
        let pending = approvals::list(
            self.db(),
            caller.team_id(),
            Some(ApprovalState::Pending),
            None,
            None,
            WATCH_BACKLOG,
        )
        .await?;
        let (sender, receiver) = mpsc::channel(WATCH_QUEUE);
        let now = now_ms();
        let ids: Vec<String> = pending.iter().map(|row| row.agent_id.clone()).collect();
        let names = agents::names_of(self.db(), &ids).await?;
        for row in &pending {
            let approval =
                row.to_proto(names.get(&row.agent_id).map_or("", String::as_str), now)?;
            if may_decide(&caller, &approval) {
                let _ = sender.try_send(Ok(ApprovalEvent {
                    approval: Some(approval),
                }));
            }
        }
        let draining = self.inner.draining.clone();
        tokio::spawn(async move {
            let _slot = slot;
            loop {
                tokio::select! {
                    () = sender.closed() => return,
                    () = draining.cancelled() => {
                        let _ = sender.try_send(Err(Status::unavailable("rendezvous is restarting; watch again")));
                        return;
                    }
                    message = subscription.next() => {
                        let Some(message) = message else { return };
                        let Ok(approval) = Approval::decode(message.payload) else { continue };
                        let event = ApprovalEvent { approval: Some(approval) };
                        if let Err(mpsc::error::TrySendError::Full(_)) = sender.try_send(Ok(event)) {
                            // Too far behind: end the stream rather than buffer without bound.
                            let _ = sender.send(Err(Status::resource_exhausted(
                                "too many approval events queued; watch again",
                            ))).await;
                            return;
                        }
                    }
                }
            }
        });
        Ok(ReceiverStream::new(receiver))
    }
}

/// Whether the caller could decide this request (shown in the initial backlog).
fn may_decide(caller: &Caller, approval: &Approval) -> bool {
    let requester = approval
        .requester
        .as_ref()
        .map(|r| r.user_id.as_str())
        .unwrap_or_default();
    caller.may_decide_approvals()
        && requester != caller.user_id()
        && approval
            .approver_roles
            .contains(&(wire_role(caller.role()) as i32))
}
