//! OperatorService agent methods: list, get, rename, tag, revoke. Every lookup is scoped to
//! the caller's team (from claims); another team's agent is "not found".

use tonic::Request;
use tucdesk_proto::limits::{MAX_NAME_LEN, MAX_TAG_FILTERS, MAX_TAGS};
use tucdesk_proto::v1::{
    Agent, AgentStatus, GetAgentRequest, HostInfo, ListAgentsRequest, ListAgentsResponse,
    PresenceFilter, RejectReason, RenameAgentRequest, RevokeAgentRequest, TagAgentRequest,
};
use tucdesk_proto::validate;
use tucdesk_svc::sql::now_ms;
use tucdesk_token::Role;

use crate::caller::{ProofScope, SupportScope};
use crate::error::RendezvousError;
use crate::link::PresenceRecord;
use crate::service::Rendezvous;
use crate::store::agents::{self, AgentRow, ListFilter};
use crate::store::{paging, sessions, timestamp};

pub const TAG_METHOD: &str = tucdesk_crypto::proof_scopes::TAG_AGENT;
pub const REVOKE_METHOD: &str = "/tucdesk.v1.OperatorService/RevokeAgent";

/// Roles that may read sessions and approval requests (their own, or the team's for admins).
pub const READERS: &[Role] = &[
    Role::Owner,
    Role::Admin,
    Role::Operator,
    Role::Viewer,
    Role::AiAgent,
];
/// Roles that may list and read agents: the [`READERS`] and auditors, read-only, so that the
/// `agent:<id>` targets of the audit log have names. Auditors see no sessions or approvals
/// here (the audit log records them) and open, approve and administer nothing.
pub const AGENT_READERS: &[Role] = &[
    Role::Owner,
    Role::Admin,
    Role::Operator,
    Role::Viewer,
    Role::AiAgent,
    Role::Auditor,
];
/// Roles that administer agents.
pub const ADMINS: &[Role] = &[Role::Owner, Role::Admin];

/// Rows scanned at most for one page when a presence filter discards rows, so a page of
/// "online" over a mostly offline fleet stays bounded work.
const MAX_SCANNED_PER_PAGE: u32 = 5_000;

pub use tucdesk_crypto::proof_scopes::{encode_list, tag_binding};

/// The wire view of an agent.
pub fn agent_proto(row: &AgentRow, tags: Vec<String>, presence: Option<&PresenceRecord>) -> Agent {
    let key = tucdesk_crypto::PublicKey::from_slice(&row.public_key).ok();
    let host = row
        .host
        .as_deref()
        .and_then(|bytes| prost::Message::decode(bytes).ok())
        .map(|host: HostInfo| host);
    let last_seen = presence.map(|p| p.last_seen_ms).or(row.last_seen_at_ms);
    Agent {
        agent_id: row.agent_id.clone(),
        fingerprint: key.map(|k| k.fingerprint()).unwrap_or_default(),
        name: row.name.clone(),
        tags,
        status: if row.is_revoked() {
            AgentStatus::Revoked
        } else {
            AgentStatus::Active
        } as i32,
        online: presence.is_some() && !row.is_revoked(),
        last_seen_at: last_seen.map(timestamp),
        enrolled_at: Some(timestamp(row.enrolled_at_ms)),
        enrollment_token_id: row.enrollment_token_id.clone(),
        revoked_at: row.revoked_at_ms.map(timestamp),
        host,
        protocol_version: u32::try_from(row.protocol_version).unwrap_or(0),
        active_sessions: presence.map_or(0, |p| p.active_sessions),
        public_key: row.public_key.clone(),
    }
}

fn check_agent_id(agent_id: &str) -> Result<(), RendezvousError> {
    validate::agent_id("agent_id", agent_id).map_err(RendezvousError::invalid)
}

impl Rendezvous {
    /// An agent of the caller's team as the wire shows it, with presence.
    pub async fn agent_view(
        &self,
        team_id: &str,
        agent_id: &str,
    ) -> Result<Agent, RendezvousError> {
        check_agent_id(agent_id)?;
        let agent = agents::find_in_team(self.db(), team_id, agent_id)
            .await?
            .ok_or(RendezvousError::NotFound("agent"))?;
        self.agent_view_of(agent).await
    }

    async fn agent_view_of(&self, agent: agents::Agent) -> Result<Agent, RendezvousError> {
        let presence = self
            .presence()
            .online(std::slice::from_ref(&agent.row.agent_id))
            .await
            .map_err(|err| RendezvousError::internal("reading presence", err))?;
        Ok(agent_proto(
            &agent.row,
            agent.tags,
            presence.get(&agent.row.agent_id),
        ))
    }

    pub async fn list_agents(
        &self,
        request: &Request<ListAgentsRequest>,
    ) -> Result<ListAgentsResponse, RendezvousError> {
        let caller = self.caller(request).await?;
        caller.require(AGENT_READERS)?;
        let body = request.get_ref();
        if body.tags.len() > MAX_TAG_FILTERS {
            return Err(RendezvousError::InvalidArgument(
                "at most 8 tag filters".into(),
            ));
        }
        let tags = validate::tags("tags", &body.tags, MAX_TAG_FILTERS)
            .map_err(RendezvousError::invalid)?;
        if body.name_contains.len() > MAX_NAME_LEN {
            return Err(RendezvousError::InvalidArgument(
                "name_contains: at most 128 bytes".into(),
            ));
        }
        let presence_filter =
            PresenceFilter::try_from(body.presence).unwrap_or(PresenceFilter::Unspecified);
        // A support principal lists only what its code reaches, with the request's filters
        // (tags, name, revoked, presence) and paging applied as for anyone.
        let mut tags = tags;
        let mut only_agent = None;
        match caller.support_scope() {
            Some(SupportScope::Tag(tag)) if !tags.iter().any(|t| t == tag) => {
                tags.push(tag.to_owned());
            }
            None | Some(SupportScope::Tag(_)) => {}
            Some(SupportScope::Agent(agent_id)) => only_agent = Some(agent_id.to_owned()),
            Some(SupportScope::Nothing) => {
                return Ok(ListAgentsResponse {
                    agents: Vec::new(),
                    page: Some(Default::default()),
                });
            }
        }
        let filter = ListFilter {
            agent_id: only_agent,
            tags,
            name_contains: (!body.name_contains.is_empty()).then(|| body.name_contains.clone()),
            include_revoked: body.include_revoked,
        };
        let fingerprint = paging::fingerprint(&[
            filter.tags.join(",").as_bytes(),
            body.name_contains.as_bytes(),
            &[
                u8::from(body.include_revoked),
                u8::try_from(body.presence).unwrap_or(0),
            ],
        ]);
        let cursor = paging::cursor(body.page.as_ref(), &fingerprint)?;
        let mut after = match cursor.as_deref() {
            Some([name, id]) => Some((name.clone(), id.clone())),
            Some(_) => {
                return Err(RendezvousError::InvalidArgument(
                    "page_token is invalid".into(),
                ));
            }
            None => None,
        };
        let size = paging::page_size(body.page.as_ref());
        let mut out = Vec::new();
        let mut scanned = 0u32;
        // Whether rows may remain after `after`: false once a batch came back short and every
        // row of it was looked at.
        let mut more = true;
        while more && out.len() < size as usize && scanned < MAX_SCANNED_PER_PAGE {
            let batch = agents::list(
                self.db(),
                caller.team_id(),
                &filter,
                after.as_ref().map(|(n, i)| (n.as_str(), i.as_str())),
                size,
            )
            .await?;
            scanned += u32::try_from(batch.len()).unwrap_or(u32::MAX);
            let short = batch.len() < size as usize;
            let ids: Vec<String> = batch.iter().map(|row| row.agent_id.clone()).collect();
            let presence = self
                .presence()
                .online(&ids)
                .await
                .map_err(|err| RendezvousError::internal("reading presence", err))?;
            let mut tags = agents::tags_of(self.db(), &ids).await?;
            let total = batch.len();
            let mut looked_at = 0;
            for row in batch {
                looked_at += 1;
                after = Some((row.name.clone(), row.agent_id.clone()));
                let online = presence.get(&row.agent_id);
                let keep = match presence_filter {
                    PresenceFilter::Online => online.is_some() && !row.is_revoked(),
                    PresenceFilter::Offline => online.is_none() || row.is_revoked(),
                    PresenceFilter::Unspecified => true,
                };
                if keep {
                    let row_tags = tags.remove(&row.agent_id).unwrap_or_default();
                    out.push(agent_proto(&row, row_tags, online));
                    if out.len() >= size as usize {
                        break;
                    }
                }
            }
            more = !(short && looked_at == total);
        }
        let next = after.as_ref().filter(|_| more);
        let page = paging::next_page(
            &fingerprint,
            next.map(|(n, i)| [n.as_str(), i.as_str()])
                .as_ref()
                .map(|a| &a[..]),
        );
        Ok(ListAgentsResponse {
            agents: out,
            page: Some(page),
        })
    }

    pub async fn get_agent(
        &self,
        request: &Request<GetAgentRequest>,
    ) -> Result<Agent, RendezvousError> {
        let caller = self.caller(request).await?;
        caller.require(AGENT_READERS)?;
        let agent_id = &request.get_ref().agent_id;
        check_agent_id(agent_id)?;
        let agent = agents::find_in_team(self.db(), caller.team_id(), agent_id)
            .await?
            .filter(|agent| caller.sees_agent(&agent.row.agent_id, &agent.tags))
            .ok_or(RendezvousError::NotFound("agent"))?;
        self.agent_view_of(agent).await
    }

    pub async fn rename_agent(
        &self,
        request: &Request<RenameAgentRequest>,
    ) -> Result<Agent, RendezvousError> {
        let caller = self.caller(request).await?;
        caller.require(ADMINS)?;
        let body = request.get_ref();
        check_agent_id(&body.agent_id)?;
        validate::name("name", &body.name).map_err(RendezvousError::invalid)?;
        let mut tx = self.db().begin().await?;
        let row = agents::find_in_team_tx(&mut tx, caller.team_id(), &body.agent_id)
            .await?
            .ok_or(RendezvousError::NotFound("agent"))?;
        agents::rename(&mut tx, &row.agent_id, &body.name).await?;
        let record = crate::sessions::user_event(&caller, "agent.renamed")
            .target(format!("agent:{}", row.agent_id))
            .context("outcome", "success")
            .context("old_name", row.name.as_str())
            .context("new_name", body.name.as_str());
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        self.agent_view(caller.team_id(), &body.agent_id).await
    }

    pub async fn tag_agent(
        &self,
        request: &Request<TagAgentRequest>,
    ) -> Result<Agent, RendezvousError> {
        let body = request.get_ref();
        check_agent_id(&body.agent_id)?;
        let add = validate::tags("add", &body.add, MAX_TAGS).map_err(RendezvousError::invalid)?;
        let remove =
            validate::tags("remove", &body.remove, MAX_TAGS).map_err(RendezvousError::invalid)?;
        let binding = tag_binding(&body.add, &body.remove);
        let caller = self
            .sensitive_caller(
                request,
                body.proof.as_ref(),
                ProofScope {
                    method: TAG_METHOD,
                    target: &body.agent_id,
                    session_id: "",
                    binding: &binding,
                },
            )
            .await?;
        caller.require(ADMINS)?;
        let mut tx = self.db().begin().await?;
        let row = agents::find_in_team_tx(&mut tx, caller.team_id(), &body.agent_id)
            .await?
            .ok_or(RendezvousError::NotFound("agent"))?;
        let before = agents::tags_of_tx(&mut tx, &row.agent_id).await?;
        let mut after: Vec<String> = before
            .iter()
            .filter(|tag| !remove.contains(tag))
            .cloned()
            .chain(add.iter().cloned())
            .collect();
        after.sort();
        after.dedup();
        if after.len() > MAX_TAGS {
            return Err(RendezvousError::InvalidArgument(
                "an agent has at most 32 tags".into(),
            ));
        }
        agents::replace_tags(&mut tx, &row.agent_id, &after).await?;
        let record = crate::sessions::user_event(&caller, "agent.tags_changed")
            .target(format!("agent:{}", row.agent_id))
            .context("outcome", "success")
            .context("before", before)
            .context("after", after);
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        self.agent_view(caller.team_id(), &body.agent_id).await
    }

    /// Revokes an agent for good: its stream closes, its live sessions end, and its key is
    /// refused from then on.
    pub async fn revoke_agent(
        &self,
        request: &Request<RevokeAgentRequest>,
    ) -> Result<Agent, RendezvousError> {
        let body = request.get_ref();
        check_agent_id(&body.agent_id)?;
        validate::message("reason", &body.reason).map_err(RendezvousError::invalid)?;
        let caller = self
            .sensitive_caller(
                request,
                body.proof.as_ref(),
                ProofScope {
                    method: REVOKE_METHOD,
                    target: &body.agent_id,
                    session_id: "",
                    binding: b"",
                },
            )
            .await?;
        caller.require(ADMINS)?;
        let now = now_ms();
        let mut tx = self.db().begin().await?;
        let row = agents::find_in_team_tx(&mut tx, caller.team_id(), &body.agent_id)
            .await?
            .ok_or(RendezvousError::NotFound("agent"))?;
        if agents::revoke(&mut tx, &row.agent_id, caller.user_id(), &body.reason, now).await? {
            let live = sessions::live_of_agent(self.db(), &row.agent_id).await?;
            for session_id in &live {
                sessions::terminate(&mut tx, session_id, RejectReason::Terminated, now).await?;
            }
            let record = crate::sessions::user_event(&caller, "agent.revoked")
                .target(format!("agent:{}", row.agent_id))
                .context("outcome", "success")
                .context("reason", body.reason.as_str())
                .context("sessions_terminated", live.len());
            self.audit(&mut tx, record).await?;
            self.commit(tx).await?;
            self.disconnect_agent(
                &row.agent_id,
                RejectReason::AgentRevoked,
                "this agent was revoked",
            )
            .await;
        }
        self.agent_view(caller.team_id(), &body.agent_id).await
    }
}
