//! The tonic services: thin adapters from gRPC to [`Rendezvous`] methods, mapping errors in one
//! place ([`RendezvousError`] → `Status`).

use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};
use tucdesk_proto::v1::agent_link_server::AgentLink;
use tucdesk_proto::v1::operator_service_server::OperatorService;
use tucdesk_proto::v1::rendezvous_internal_server::RendezvousInternal;
use tucdesk_proto::v1::*;

use crate::service::Rendezvous;

/// The AgentLink, OperatorService and RendezvousInternal implementations.
#[derive(Debug, Clone)]
pub struct RendezvousGrpc {
    rdv: Rendezvous,
}

impl RendezvousGrpc {
    pub fn new(rdv: Rendezvous) -> Self {
        Self { rdv }
    }
}

type Result<T> = std::result::Result<Response<T>, Status>;

fn ok<T>(value: T) -> Result<T> {
    Ok(Response::new(value))
}

#[tonic::async_trait]
impl AgentLink for RendezvousGrpc {
    async fn get_server_info(
        &self,
        _request: Request<GetServerInfoRequest>,
    ) -> Result<GetServerInfoResponse> {
        ok(self.rdv.server_info())
    }

    async fn enroll(&self, request: Request<EnrollRequest>) -> Result<EnrollResponse> {
        let source = request.remote_addr().map(|addr| addr.ip());
        ok(self.rdv.enroll(request.get_ref(), source).await?)
    }

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<BoxStream<ServerMessage>> {
        let source = request.remote_addr().map(|addr| addr.ip());
        ok(self.rdv.connect(request.into_inner(), source))
    }
}

#[tonic::async_trait]
impl OperatorService for RendezvousGrpc {
    async fn list_agents(&self, request: Request<ListAgentsRequest>) -> Result<ListAgentsResponse> {
        ok(self.rdv.list_agents(&request).await?)
    }

    async fn get_agent(&self, request: Request<GetAgentRequest>) -> Result<Agent> {
        ok(self.rdv.get_agent(&request).await?)
    }

    async fn rename_agent(&self, request: Request<RenameAgentRequest>) -> Result<Agent> {
        ok(self.rdv.rename_agent(&request).await?)
    }

    async fn tag_agent(&self, request: Request<TagAgentRequest>) -> Result<Agent> {
        ok(self.rdv.tag_agent(&request).await?)
    }

    async fn revoke_agent(&self, request: Request<RevokeAgentRequest>) -> Result<Agent> {
        ok(self.rdv.revoke_agent(&request).await?)
    }

    async fn create_session(
        &self,
        request: Request<CreateSessionRequest>,
    ) -> Result<CreateSessionResponse> {
        ok(self.rdv.create_session(&request).await?)
    }

    async fn session_signals(
        &self,
        request: Request<Streaming<SessionSignal>>,
    ) -> Result<BoxStream<SessionSignal>> {
        let stream = self.rdv.session_signals(request).await?;
        ok(Box::pin(stream))
    }

    async fn report_session(
        &self,
        request: Request<ReportSessionRequest>,
    ) -> Result<ReportSessionResponse> {
        self.rdv.report_session(&request).await?;
        ok(ReportSessionResponse {})
    }

    async fn renew_connectivity(
        &self,
        request: Request<RenewConnectivityRequest>,
    ) -> Result<ConnectivityInfo> {
        ok(self.rdv.renew_connectivity(&request).await?)
    }

    async fn end_session(&self, request: Request<EndSessionRequest>) -> Result<Session> {
        ok(self.rdv.end_session(&request).await?)
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<ListSessionsResponse> {
        ok(self.rdv.list_sessions(&request).await?)
    }

    async fn get_session(&self, request: Request<GetSessionRequest>) -> Result<Session> {
        ok(self.rdv.get_session(&request).await?)
    }

    async fn list_approvals(
        &self,
        request: Request<ListApprovalsRequest>,
    ) -> Result<ListApprovalsResponse> {
        ok(self.rdv.list_approvals(&request).await?)
    }

    async fn get_approval(&self, request: Request<GetApprovalRequest>) -> Result<Approval> {
        ok(self.rdv.get_approval(&request).await?)
    }

    async fn approve(&self, request: Request<DecideApprovalRequest>) -> Result<Approval> {
        ok(self.rdv.decide_approval(&request, true).await?)
    }

    async fn deny(&self, request: Request<DecideApprovalRequest>) -> Result<Approval> {
        ok(self.rdv.decide_approval(&request, false).await?)
    }

    async fn watch_approvals(
        &self,
        request: Request<WatchApprovalsRequest>,
    ) -> Result<BoxStream<ApprovalEvent>> {
        let stream = self.rdv.watch_approvals(&request).await?;
        ok(Box::pin(stream))
    }

    async fn create_enrollment_token(
        &self,
        request: Request<CreateEnrollmentTokenRequest>,
    ) -> Result<CreateEnrollmentTokenResponse> {
        ok(self.rdv.create_enrollment_token(&request).await?)
    }

    async fn list_enrollment_tokens(
        &self,
        request: Request<ListEnrollmentTokensRequest>,
    ) -> Result<ListEnrollmentTokensResponse> {
        ok(self.rdv.list_enrollment_tokens(&request).await?)
    }

    async fn revoke_enrollment_token(
        &self,
        request: Request<RevokeEnrollmentTokenRequest>,
    ) -> Result<EnrollmentToken> {
        ok(self.rdv.revoke_enrollment_token(&request).await?)
    }

    async fn get_policy(&self, request: Request<GetPolicyRequest>) -> Result<Policy> {
        ok(self.rdv.get_policy(&request).await?)
    }

    async fn put_policy(&self, request: Request<PutPolicyRequest>) -> Result<PutPolicyResponse> {
        ok(self.rdv.put_policy(&request).await?)
    }

    async fn validate_policy(
        &self,
        request: Request<ValidatePolicyRequest>,
    ) -> Result<ValidatePolicyResponse> {
        ok(self.rdv.validate_policy(&request).await?)
    }

    async fn explain_policy(&self, request: Request<ExplainPolicyRequest>) -> Result<PolicyResult> {
        ok(self.rdv.explain_policy(&request).await?)
    }

    async fn get_recording_settings(
        &self,
        request: Request<GetRecordingSettingsRequest>,
    ) -> Result<RecordingSettings> {
        ok(self.rdv.get_recording_settings(&request).await?)
    }

    async fn put_recording_settings(
        &self,
        request: Request<PutRecordingSettingsRequest>,
    ) -> Result<RecordingSettings> {
        ok(self.rdv.put_recording_settings(&request).await?)
    }
}

#[tonic::async_trait]
impl RendezvousInternal for RendezvousGrpc {
    async fn get_agent_key(
        &self,
        request: Request<GetAgentKeyRequest>,
    ) -> Result<GetAgentKeyResponse> {
        ok(self.rdv.get_agent_key(&request).await?)
    }

    async fn get_session_info(&self, request: Request<GetSessionInfoRequest>) -> Result<Session> {
        ok(self.rdv.get_session_info(&request).await?)
    }
}
