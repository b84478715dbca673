//! A logged-in person (or the harness acting as one): device key, access token, and the
//! requests and proofs a viewer would build.

use sha2::Digest as _;
use tucdesk_crypto::handshake::{OperatorHandshake, SessionOffer};
use tucdesk_crypto::{DeviceProofContext, Identity, PublicKey};
use tucdesk_proto::v1::{CreateSessionRequest, DeviceProof, ExecSpec, HandshakeInit, SessionKind};

/// A logged-in operator.
pub struct Operator {
    pub device: Identity,
    pub access_token: String,
    pub user_id: String,
    pub team_id: String,
    pub email: String,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("email", &self.email)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// A device proof as the viewer builds it.
pub fn device_proof(
    device: &Identity,
    method: &str,
    target: &str,
    session_id: &str,
    binding: &[u8],
    challenge: &[u8],
) -> anyhow::Result<DeviceProof> {
    let ctx = DeviceProofContext {
        method,
        target,
        session_id,
        binding,
        challenge,
    };
    let now = u64::try_from(tucdesk_svc::sql::now_ms())?;
    Ok(tucdesk_transport::proofs::device_proof(device, &ctx, now)?)
}

/// A CreateSession request with its operator-side handshake state.
#[derive(Debug)]
pub struct SessionRequest {
    pub request: CreateSessionRequest,
    pub handshake: OperatorHandshake,
    pub offer: SessionOffer,
}

impl Operator {
    /// `message` with this operator's bearer token.
    pub fn request<T>(&self, message: T) -> anyhow::Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            tucdesk_proto::metadata::AUTHORIZATION,
            format!("Bearer {}", self.access_token).parse()?,
        );
        Ok(request)
    }

    /// A proof by this operator's device key.
    pub fn proof(&self, method: &str, target: &str, binding: &[u8]) -> anyhow::Result<DeviceProof> {
        device_proof(&self.device, method, target, "", binding, b"")
    }

    /// A proof with a session id (EndSession of someone else's session).
    pub fn session_proof(&self, method: &str, session_id: &str) -> anyhow::Result<DeviceProof> {
        device_proof(&self.device, method, "", session_id, b"", b"")
    }

    /// A fresh CreateSession for `agent_key` (as pinned), with a new session id and e_op.
    pub fn session_request(
        &self,
        agent_key: &PublicKey,
        kind: SessionKind,
        exec: Option<ExecSpec>,
    ) -> anyhow::Result<SessionRequest> {
        let session_id = uuid::Uuid::new_v4().to_string();
        let (handshake, offer) = OperatorHandshake::start(&self.device, &session_id, *agent_key)?;
        let request = CreateSessionRequest {
            protocol_version: tucdesk_proto::PROTOCOL_VERSION,
            agent_id: agent_key.agent_id(),
            kind: kind as i32,
            exec,
            handshake: Some(HandshakeInit {
                operator_key: offer.operator_key.to_bytes().to_vec(),
                e_op_pub: offer.e_op_pub.to_bytes().to_vec(),
                offer_signature: offer.signature.to_bytes().to_vec(),
            }),
            requested_path: 0,
            approval_id: String::new(),
            reason: "testing".to_owned(),
            initial_size: None,
            session_id,
        };
        Ok(SessionRequest {
            request,
            handshake,
            offer,
        })
    }
}

/// SHA-256, for proof bindings.
pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(bytes).to_vec()
}
