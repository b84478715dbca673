//! RendezvousInternal: calls from other TucDesk services (the recorder), authenticated by a
//! service assertion, never by a user's token. Served on the internal listener only.

use tonic::Request;
use tucdesk_proto::v1::{
    AgentStatus, GetAgentKeyRequest, GetAgentKeyResponse, GetSessionInfoRequest, Session,
};
use tucdesk_proto::validate;

use crate::error::RendezvousError;
use crate::service::Rendezvous;
use crate::store::{agents, sessions, timestamp};

/// This service's name as the audience of service assertions.
pub const SERVICE_NAME: &str = "rendezvous";

impl Rendezvous {
    /// Verifies the caller's service assertion; returns the calling service's name.
    pub fn authenticate_service<T>(&self, request: &Request<T>) -> Result<String, RendezvousError> {
        let token = request
            .metadata()
            .get(tucdesk_proto::metadata::SERVICE_ASSERTION)
            .and_then(|value| value.to_str().ok())
            .ok_or(RendezvousError::ServiceAssertionInvalid)?;
        let claims = self
            .inner
            .service_keys
            .verify(token, SERVICE_NAME, tucdesk_token::unix_now())
            .map_err(|err| {
                tracing::warn!(error = %err, "service assertion refused");
                RendezvousError::ServiceAssertionInvalid
            })?;
        Ok(claims.iss)
    }

    pub async fn get_agent_key(
        &self,
        request: &Request<GetAgentKeyRequest>,
    ) -> Result<GetAgentKeyResponse, RendezvousError> {
        self.authenticate_service(request)?;
        let agent_id = &request.get_ref().agent_id;
        validate::agent_id("agent_id", agent_id).map_err(RendezvousError::invalid)?;
        let row = agents::find(self.db(), agent_id)
            .await?
            .ok_or(RendezvousError::NotFound("agent"))?;
        Ok(GetAgentKeyResponse {
            agent_id: row.agent_id.clone(),
            team_id: row.team_id.clone(),
            public_key: row.public_key.clone(),
            status: if row.is_revoked() {
                AgentStatus::Revoked
            } else {
                AgentStatus::Active
            } as i32,
            enrolled_at: Some(timestamp(row.enrolled_at_ms)),
            revoked_at: row.revoked_at_ms.map(timestamp),
        })
    }

    pub async fn get_session_info(
        &self,
        request: &Request<GetSessionInfoRequest>,
    ) -> Result<Session, RendezvousError> {
        self.authenticate_service(request)?;
        let body = request.get_ref();
        validate::uuid("session_id", &body.session_id).map_err(RendezvousError::invalid)?;
        let row = sessions::find_in_team(self.db(), &body.team_id, &body.session_id)
            .await?
            .ok_or(RendezvousError::NotFound("session"))?;
        let name = agents::find(self.db(), &row.agent_id)
            .await?
            .map(|a| a.name)
            .unwrap_or_default();
        row.to_proto(&name)
    }
}
