//! What the recorder asks rendezvous before accepting a byte: the agent's enrolled key and
//! team (RendezvousInternal.GetAgentKey) and the session's agent and operator
//! (RendezvousInternal.GetSessionInfo), under the recorder's service assertion. Behind
//! [`AgentDirectory`] so tests can use a fake as well as the real rendezvous.

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tucdesk_crypto::{Identity, PublicKey, ServiceSigner};
use tucdesk_proto::v1::rendezvous_internal_client::RendezvousInternalClient;
use tucdesk_proto::v1::{AgentStatus, GetAgentKeyRequest, GetSessionInfoRequest};

use crate::error::{RecorderError, StartError};

/// The recorder's name in its service assertions.
pub const SERVICE_NAME: &str = "recorder";
/// The audience of assertions presented to rendezvous.
pub const RENDEZVOUS_AUDIENCE: &str = "rendezvous";
/// Connect and call timeouts towards rendezvous.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// An enrolled agent as rendezvous knows it.
#[derive(Debug, Clone)]
pub struct AgentRecord {
    pub agent_id: String,
    pub team_id: String,
    pub public_key: PublicKey,
    pub revoked: bool,
}

/// A session as rendezvous knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub session_id: String,
    pub agent_id: String,
    pub operator_user_id: String,
}

/// Lookups of agents and sessions; `None` when unknown (or in another team).
#[async_trait::async_trait]
pub trait AgentDirectory: Send + Sync + Debug {
    async fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, RecorderError>;
    async fn session(
        &self,
        session_id: &str,
        team_id: &str,
    ) -> Result<Option<SessionRecord>, RecorderError>;
}

/// Loads the recorder's service identity, creating it (0600) on first start.
pub fn load_or_create_service_key(path: &Path) -> Result<Identity, StartError> {
    let fail = |what: &str, err: &dyn std::fmt::Display| {
        StartError::ServiceKey(format!("{what} {}: {err}", path.display()))
    };
    if path.exists() {
        return Identity::load_from_file(path).map_err(|err| fail("loading", &err));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|err| fail("creating the directory of", &err))?;
    }
    let identity = Identity::generate().map_err(|err| fail("generating", &err))?;
    identity
        .save_to_file(path)
        .map_err(|err| fail("saving", &err))?;
    tracing::warn!(
        path = %path.display(),
        public_key = %identity.agent_id(),
        "created a new recorder service key; add `recorder=<public_key>` to rendezvous's \
         TUCDESK_RENDEZVOUS_SERVICE_KEYS"
    );
    Ok(identity)
}

/// The signer for the recorder's identity: kid = the key's fingerprint.
pub fn service_signer(identity: Identity) -> Result<ServiceSigner, StartError> {
    let kid = identity.fingerprint();
    ServiceSigner::new(SERVICE_NAME, &kid, identity)
        .map_err(|err| StartError::ServiceKey(err.to_string()))
}

/// The real directory: rendezvous's internal API.
#[derive(Debug, Clone)]
pub struct RendezvousDirectory {
    client: RendezvousInternalClient<Channel>,
    signer: Arc<ServiceSigner>,
}

impl RendezvousDirectory {
    /// A lazily connecting client of `url`.
    pub fn new(url: &str, signer: ServiceSigner) -> Result<Self, StartError> {
        let channel = Endpoint::from_shared(url.to_owned())
            .map_err(|_| StartError::Config(format!("invalid rendezvous internal URL {url}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .connect_lazy();
        let client = RendezvousInternalClient::new(channel)
            .max_decoding_message_size(tucdesk_proto::limits::MAX_GRPC_MESSAGE_LEN);
        Ok(Self {
            client,
            signer: Arc::new(signer),
        })
    }

    fn request<T>(&self, body: T) -> Result<tonic::Request<T>, RecorderError> {
        let assertion = self
            .signer
            .issue(RENDEZVOUS_AUDIENCE, tucdesk_token::unix_now())
            .map_err(|err| RecorderError::internal("signing a service assertion", err))?;
        let mut request = tonic::Request::new(body);
        let value = assertion
            .parse()
            .map_err(|err| RecorderError::internal("service assertion header", err))?;
        request
            .metadata_mut()
            .insert(tucdesk_proto::metadata::SERVICE_ASSERTION, value);
        Ok(request)
    }
}

fn unavailable(status: &tonic::Status) -> RecorderError {
    tracing::error!(code = ?status.code(), message = status.message(), "rendezvous lookup failed");
    RecorderError::Unavailable("rendezvous")
}

#[async_trait::async_trait]
impl AgentDirectory for RendezvousDirectory {
    async fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, RecorderError> {
        let request = self.request(GetAgentKeyRequest {
            agent_id: agent_id.to_owned(),
        })?;
        let reply = match self.client.clone().get_agent_key(request).await {
            Ok(reply) => reply.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => return Ok(None),
            Err(status) => return Err(unavailable(&status)),
        };
        let public_key = PublicKey::from_slice(&reply.public_key)
            .map_err(|err| RecorderError::internal("rendezvous sent an invalid agent key", err))?;
        if public_key.agent_id() != agent_id || reply.agent_id != agent_id {
            return Err(RecorderError::internal(
                "rendezvous answered for another agent",
                &reply.agent_id,
            ));
        }
        Ok(Some(AgentRecord {
            agent_id: reply.agent_id,
            team_id: reply.team_id,
            public_key,
            // Anything but ACTIVE (revoked, or a status this build does not know) fails closed.
            revoked: reply.status != AgentStatus::Active as i32,
        }))
    }

    async fn session(
        &self,
        session_id: &str,
        team_id: &str,
    ) -> Result<Option<SessionRecord>, RecorderError> {
        let request = self.request(GetSessionInfoRequest {
            session_id: session_id.to_owned(),
            team_id: team_id.to_owned(),
        })?;
        let session = match self.client.clone().get_session_info(request).await {
            Ok(reply) => reply.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => return Ok(None),
            Err(status) => return Err(unavailable(&status)),
        };
        Ok(Some(SessionRecord {
            session_id: session.session_id,
            agent_id: session.agent_id,
            operator_user_id: session.operator.map(|op| op.user_id).unwrap_or_default(),
        }))
    }
}
