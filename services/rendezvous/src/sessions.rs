//! Session records after negotiation: reports from both sides (start, path changes, end,
//! bytes), ending sessions, listing them, and renewing their credentials.

use tonic::Request;
use tucdesk_proto::v1::server_message::Kind as ServerKind;
use tucdesk_proto::v1::{
    ActorKind, CloseReason, ConnectivityInfo, ConnectivityUpdate, EndSessionRequest,
    GetSessionRequest, ListSessionsRequest, ListSessionsResponse, Path, RejectReason,
    RenewConnectivityRequest, ReportSessionRequest, ServerMessage, Session, SessionEventKind,
    SessionReport, TerminateSession,
};
use tucdesk_proto::validate;
use tucdesk_svc::audit_events::AuditRecord;
use tucdesk_svc::ratelimit::LimitPolicy;
use tucdesk_svc::sql::now_ms;

use crate::agents_api::{ADMINS, READERS};
use crate::caller::{Caller, ProofScope};
use crate::error::RendezvousError;
use crate::service::Rendezvous;
use crate::store::sessions::{self, ListFilter, ReportUpdate, SessionRow};
use crate::store::{agents, paging, timestamp_ms};

pub const END_METHOD: &str = "/tucdesk.v1.OperatorService/EndSession";

/// RenewConnectivity calls allowed per session: enough for a path change every few minutes
/// of a long session, not enough to mint credentials in a loop.
const RENEWALS_PER_SESSION: LimitPolicy = LimitPolicy {
    name: "connectivity-renewal",
    max_failures: 20,
    window: std::time::Duration::from_secs(60 * 60),
    lockout: std::time::Duration::from_secs(60 * 60),
};

/// An audit record attributed to the calling person or AI agent.
pub fn user_event(caller: &Caller, action: &str) -> AuditRecord {
    let mut record = AuditRecord::new(caller.team_id(), action, ActorKind::User, caller.user_id())
        .context("principal", caller.principal_label())
        .context("role", caller.role().as_str());
    if let Some(email) = &caller.claims.email {
        record = record.actor_display(email);
    }
    if let Some(client) = &caller.claims.client_id {
        record = record.context("client_id", client.as_str());
    }
    if let Some(code_id) = caller.support_code_id() {
        record = record.context("support_code", code_id);
    }
    if let Some(jkt) = caller.device_jkt() {
        record = record.context("device_key_thumbprint", jkt);
    }
    record
}

/// Who reports on a session.
#[derive(Debug, Clone, Copy)]
pub enum ReportActor<'a> {
    Agent { agent_id: &'a str },
    Operator { caller: &'a Caller },
}

fn path_label(path: Path) -> &'static str {
    match path {
        Path::Direct => "direct",
        Path::Turn => "turn",
        Path::Ws => "ws",
        Path::Unspecified => "",
    }
}

impl Rendezvous {
    /// Applies one side's report to a live session of `team_id` and audits it
    /// (`session.start`, `session.path_changed`, `session.end`).
    pub async fn apply_session_report(
        &self,
        team_id: &str,
        session_id: &str,
        report: &SessionReport,
        actor: ReportActor<'_>,
    ) -> Result<(), RendezvousError> {
        validate::message("message", &report.message).map_err(RendezvousError::invalid)?;
        let kind = SessionEventKind::try_from(report.kind).unwrap_or(SessionEventKind::Unspecified);
        let path = Path::try_from(report.path).unwrap_or(Path::Unspecified);
        let (action, update) = match kind {
            SessionEventKind::Started => ("session.start", true),
            SessionEventKind::PathChanged => ("session.path_changed", false),
            SessionEventKind::Ended => ("session.end", false),
            SessionEventKind::Unspecified => {
                return Err(RendezvousError::InvalidArgument(
                    "report.kind is required".into(),
                ));
            }
        };
        let ended = (kind == SessionEventKind::Ended).then(|| {
            CloseReason::try_from(report.close_reason).unwrap_or(CloseReason::Unspecified)
        });
        let update = ReportUpdate {
            path,
            bytes_to_agent: report.bytes_to_agent,
            bytes_to_operator: report.bytes_to_operator,
            started: update,
            ended,
            recorded: report.recorded,
        };
        let mut tx = self.db().begin().await?;
        let applied = sessions::apply_report(&mut tx, session_id, &update, now_ms()).await?;
        if !applied {
            // A late report for a session that already ended: nothing changes, nothing is
            // recorded twice.
            return Ok(());
        }
        let mut record = match actor {
            ReportActor::Agent { agent_id } => {
                Rendezvous::agent_event(team_id, action, agent_id).context("reported_by", "agent")
            }
            ReportActor::Operator { caller } => {
                user_event(caller, action).context("reported_by", "operator")
            }
        }
        .session(session_id)
        .context("path", path_label(path))
        .context("bytes_to_agent", report.bytes_to_agent)
        .context("bytes_to_operator", report.bytes_to_operator)
        .context("duration_ms", report.duration_ms);
        if let Some(close) = ended {
            record = record.context("close_reason", close.as_str_name());
        }
        if !report.message.is_empty() {
            record = record.context("message", report.message.as_str());
        }
        self.audit(&mut tx, record).await?;
        self.commit(tx).await
    }

    /// A session of the caller's team that the caller may see: their own, or any for admins.
    async fn visible_session(
        &self,
        caller: &Caller,
        session_id: &str,
    ) -> Result<SessionRow, RendezvousError> {
        validate::uuid("session_id", session_id).map_err(RendezvousError::invalid)?;
        let row = sessions::find_in_team(self.db(), caller.team_id(), session_id)
            .await?
            .ok_or(RendezvousError::NotFound("session"))?;
        if row.user_id != caller.user_id() && !caller.is_admin() {
            return Err(RendezvousError::NotFound("session"));
        }
        Ok(row)
    }

    async fn session_view(&self, row: &SessionRow) -> Result<Session, RendezvousError> {
        let name = agents::find(self.db(), &row.agent_id)
            .await?
            .map(|a| a.name)
            .unwrap_or_default();
        row.to_proto(&name)
    }

    pub async fn report_session(
        &self,
        request: &Request<ReportSessionRequest>,
    ) -> Result<(), RendezvousError> {
        let caller = self.caller(request).await?;
        let body = request.get_ref();
        let row = self.visible_session(&caller, &body.session_id).await?;
        if row.user_id != caller.user_id() {
            return Err(RendezvousError::PermissionDenied(
                "only the session's operator reports on it",
            ));
        }
        let report = body
            .report
            .as_ref()
            .ok_or_else(|| RendezvousError::InvalidArgument("report is required".into()))?;
        self.apply_session_report(
            caller.team_id(),
            &row.id,
            report,
            ReportActor::Operator { caller: &caller },
        )
        .await
    }

    pub async fn end_session(
        &self,
        request: &Request<EndSessionRequest>,
    ) -> Result<Session, RendezvousError> {
        let body = request.get_ref();
        validate::uuid("session_id", &body.session_id).map_err(RendezvousError::invalid)?;
        validate::message("reason", &body.reason).map_err(RendezvousError::invalid)?;
        let plain = self.caller(request).await?;
        let row = sessions::find_in_team(self.db(), plain.team_id(), &body.session_id)
            .await?
            .ok_or(RendezvousError::NotFound("session"))?;
        // Someone else's session: only an admin, and only with a device proof.
        let caller = if row.user_id == plain.user_id() {
            plain
        } else {
            if !plain.is_admin() {
                return Err(RendezvousError::NotFound("session"));
            }
            let caller = self
                .sensitive_caller(
                    request,
                    body.proof.as_ref(),
                    ProofScope {
                        method: END_METHOD,
                        target: "",
                        session_id: &body.session_id,
                        binding: b"",
                    },
                )
                .await?;
            caller.require(ADMINS)?;
            caller
        };
        let mut tx = self.db().begin().await?;
        let ended =
            sessions::terminate(&mut tx, &row.id, RejectReason::Terminated, now_ms()).await?;
        if ended {
            let record = user_event(&caller, "session.terminated")
                .target(format!("agent:{}", row.agent_id))
                .session(row.id.as_str())
                .context("outcome", "success")
                .context("reason", body.reason.as_str())
                .context("own_session", row.user_id == caller.user_id());
            self.audit(&mut tx, record).await?;
        }
        self.commit(tx).await?;
        if ended {
            let terminate = ServerMessage {
                kind: Some(ServerKind::TerminateSession(TerminateSession {
                    session_id: row.id.clone(),
                    reason: RejectReason::Terminated as i32,
                    message: body.reason.clone(),
                })),
            };
            self.notify_agent(&row.agent_id, terminate).await;
        }
        let row = sessions::find(self.db(), &row.id)
            .await?
            .ok_or(RendezvousError::NotFound("session"))?;
        self.session_view(&row).await
    }

    pub async fn get_session(
        &self,
        request: &Request<GetSessionRequest>,
    ) -> Result<Session, RendezvousError> {
        let caller = self.caller(request).await?;
        caller.require(READERS)?;
        let row = self
            .visible_session(&caller, &request.get_ref().session_id)
            .await?;
        self.session_view(&row).await
    }

    pub async fn list_sessions(
        &self,
        request: &Request<ListSessionsRequest>,
    ) -> Result<ListSessionsResponse, RendezvousError> {
        let caller = self.caller(request).await?;
        caller.require(READERS)?;
        let body = request.get_ref();
        if !body.agent_id.is_empty() {
            validate::agent_id("agent_id", &body.agent_id).map_err(RendezvousError::invalid)?;
        }
        if body.user_id.len() > 128 {
            return Err(RendezvousError::InvalidArgument(
                "user_id: at most 128 bytes".into(),
            ));
        }
        // Non-admins see their own sessions only, whatever they ask for.
        let user_id = if caller.is_admin() {
            (!body.user_id.is_empty()).then(|| body.user_id.clone())
        } else {
            Some(caller.user_id().to_owned())
        };
        let filter = ListFilter {
            live_only: body.active_only,
            agent_id: (!body.agent_id.is_empty()).then(|| body.agent_id.clone()),
            user_id,
            since_ms: body.since.as_ref().map(timestamp_ms),
        };
        let fingerprint = paging::fingerprint(&[
            &[u8::from(filter.live_only)],
            filter.agent_id.as_deref().unwrap_or_default().as_bytes(),
            filter.user_id.as_deref().unwrap_or_default().as_bytes(),
            &filter.since_ms.unwrap_or(0).to_be_bytes(),
        ]);
        let after = created_cursor(paging::cursor(body.page.as_ref(), &fingerprint)?)?;
        let size = paging::page_size(body.page.as_ref());
        let rows = sessions::list(
            self.db(),
            caller.team_id(),
            &filter,
            after.as_ref().map(|(ms, id)| (*ms, id.as_str())),
            size,
        )
        .await?;
        let ids: Vec<String> = rows.iter().map(|row| row.agent_id.clone()).collect();
        let names = agents::names_of(self.db(), &ids).await?;
        let out = rows
            .iter()
            .map(|row| row.to_proto(names.get(&row.agent_id).map_or("", String::as_str)))
            .collect::<Result<Vec<_>, _>>()?;
        let page = paging::created_page(&fingerprint, &rows, size, |row| {
            (row.created_at_ms, &row.id)
        });
        Ok(ListSessionsResponse {
            sessions: out,
            page: Some(page),
        })
    }

    /// New TURN credentials and relay tickets for both sides of the caller's live session.
    pub async fn renew_connectivity(
        &self,
        request: &Request<RenewConnectivityRequest>,
    ) -> Result<ConnectivityInfo, RendezvousError> {
        let caller = self.caller(request).await?;
        let body = request.get_ref();
        let row = self.visible_session(&caller, &body.session_id).await?;
        if row.user_id != caller.user_id() {
            return Err(RendezvousError::NotFound("session"));
        }
        if !row.is_live() {
            return Err(RendezvousError::refused(
                RejectReason::SessionEnded,
                "the session has ended",
            ));
        }
        let limit = self
            .inner
            .limiter
            .record_failure(&format!("session:{}", row.id), &RENEWALS_PER_SESSION)
            .await
            .map_err(|err| RendezvousError::internal("renewal rate limiter", err))?;
        if let tucdesk_svc::ratelimit::Decision::Locked { retry_after } = limit {
            return Err(RendezvousError::RateLimited { retry_after });
        }
        let path = Path::try_from(body.path).unwrap_or(Path::Unspecified);
        let issued = self.issue_connectivity(&row, path).await?;
        let update = ServerMessage {
            kind: Some(ServerKind::ConnectivityUpdate(ConnectivityUpdate {
                session_id: row.id.clone(),
                connectivity: Some(issued.agent),
            })),
        };
        self.notify_agent(&row.agent_id, update).await;
        let record = user_event(&caller, "session.connectivity_renewed")
            .target(format!("agent:{}", row.agent_id))
            .session(row.id.as_str())
            .context("relay_node_id", issued.relay_node_id.as_str());
        self.audit_alone(record).await?;
        Ok(issued.operator)
    }
}

/// A `(created_at_ms, id)` cursor from page-token parts.
pub fn created_cursor(
    parts: Option<Vec<String>>,
) -> Result<Option<(i64, String)>, RendezvousError> {
    match parts.as_deref() {
        None => Ok(None),
        Some([ms, id]) => ms
            .parse::<i64>()
            .map(|ms| Some((ms, id.clone())))
            .map_err(|_| RendezvousError::InvalidArgument("page_token is invalid".into())),
        Some(_) => Err(RendezvousError::InvalidArgument(
            "page_token is invalid".into(),
        )),
    }
}
