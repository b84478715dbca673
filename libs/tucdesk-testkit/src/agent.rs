//! A simulated agent speaking the real AgentLink protocol: its own Ed25519 identity,
//! registration proofs, heartbeats, and signed handshake answers (tucdesk-crypto).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;
use tucdesk_crypto::handshake::SessionOffer;
use tucdesk_crypto::registration::RegistrationProof as CryptoProof;
use tucdesk_crypto::{EphemeralPublic, Identity, PublicKey, SessionKeys, Signature};
use tucdesk_proto::v1::agent_link_client::AgentLinkClient;
use tucdesk_proto::v1::agent_message::Kind as AgentKind;
use tucdesk_proto::v1::offer_answer::Result as AnswerResult;
use tucdesk_proto::v1::server_message::Kind as ServerKind;
use tucdesk_proto::v1::{
    AgentMessage, EnrollRequest, EnrollResponse, HandshakeReply, Heartbeat, HostInfo, Offer,
    OfferAnswer, OfferRefusal, Register, Registered, RegistrationProof, RejectReason,
    ServerMessage, SoftwareInfo,
};

/// Messages the simulated agent may queue towards the server.
const SEND_QUEUE: usize = 64;

/// A simulated agent: an identity and the deployment audience it signs for.
pub struct SimAgent {
    pub identity: Identity,
    pub audience: String,
}

impl std::fmt::Debug for SimAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimAgent")
            .field("agent_id", &self.identity.agent_id())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    u64::try_from(tucdesk_svc::sql::now_ms()).unwrap_or(0)
}

/// A proof as the wire carries it.
pub fn wire_proof(proof: &CryptoProof) -> RegistrationProof {
    tucdesk_transport::proofs::wire_registration(proof)
}

impl SimAgent {
    pub fn new(audience: &str) -> anyhow::Result<Self> {
        Ok(Self {
            identity: Identity::generate()?,
            audience: audience.to_owned(),
        })
    }

    pub fn agent_id(&self) -> String {
        self.identity.agent_id()
    }

    pub fn public_key(&self) -> PublicKey {
        self.identity.public_key()
    }

    /// A fresh proof signed now.
    pub fn proof(&self) -> anyhow::Result<RegistrationProof> {
        self.proof_at(now_ms())
    }

    /// A fresh proof signed with the agent clock at `timestamp_ms`.
    pub fn proof_at(&self, timestamp_ms: u64) -> anyhow::Result<RegistrationProof> {
        Ok(wire_proof(&CryptoProof::create(
            &self.identity,
            &self.audience,
            timestamp_ms,
        )?))
    }

    pub fn host() -> HostInfo {
        HostInfo {
            hostname: "sim-host".into(),
            agent: Some(SoftwareInfo {
                name: "tucdesk-testkit".into(),
                version: "0".into(),
                os: "linux".into(),
                arch: "x86_64".into(),
            }),
            os_release: "Test OS".into(),
            kernel: "6".into(),
            addresses: vec!["127.0.0.1".into()],
        }
    }

    pub async fn enroll(
        &self,
        client: &mut AgentLinkClient<Channel>,
        token: &str,
        name: &str,
        tags: &[&str],
    ) -> Result<EnrollResponse, tonic::Status> {
        let proof = self
            .proof()
            .map_err(|err| tonic::Status::internal(err.to_string()))?;
        client
            .enroll(EnrollRequest {
                protocol_version: tucdesk_proto::PROTOCOL_VERSION,
                enrollment_token: token.to_owned(),
                proof: Some(proof),
                name: name.to_owned(),
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                host: Some(Self::host()),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// A Register with a fresh proof.
    pub fn register(&self) -> anyhow::Result<Register> {
        Ok(Register {
            protocol_version: tucdesk_proto::PROTOCOL_VERSION,
            proof: Some(self.proof()?),
            host: Some(Self::host()),
            active_session_ids: Vec::new(),
            config_version: 0,
        })
    }

    /// Connects and registers with a fresh proof, heartbeating on its own afterwards.
    pub async fn connect(
        &self,
        client: &mut AgentLinkClient<Channel>,
    ) -> Result<AgentLinkConn, ConnectError> {
        let register = self
            .register()
            .map_err(|err| ConnectError::Harness(err.to_string()))?;
        AgentLinkConn::open(client, register).await
    }
}

/// Why a simulated connect did not register.
#[derive(Debug)]
pub enum ConnectError {
    /// The server answered `Rejected`.
    Rejected(tucdesk_proto::v1::Rejected),
    /// The call or stream failed with this status before any answer.
    Status(tonic::Status),
    /// The stream ended without an answer.
    Closed,
    Harness(String),
}

impl ConnectError {
    /// The reject reason, whichever way it was reported.
    pub fn reason(&self) -> RejectReason {
        match self {
            ConnectError::Rejected(rejected) => {
                RejectReason::try_from(rejected.reason).unwrap_or(RejectReason::Unspecified)
            }
            ConnectError::Status(status) => crate::reason(status),
            _ => RejectReason::Unspecified,
        }
    }
}

/// An open, registered agent stream.
#[derive(Debug)]
pub struct AgentLinkConn {
    pub registered: Registered,
    sender: mpsc::Sender<AgentMessage>,
    pub inbound: Streaming<ServerMessage>,
    heartbeats: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for AgentLinkConn {
    fn drop(&mut self) {
        if let Some(task) = self.heartbeats.take() {
            task.abort();
        }
    }
}

impl AgentLinkConn {
    /// Opens a stream and sends `register` first; waits for Registered or Rejected.
    pub async fn open(
        client: &mut AgentLinkClient<Channel>,
        register: Register,
    ) -> Result<Self, ConnectError> {
        let (sender, receiver) = mpsc::channel(SEND_QUEUE);
        sender
            .send(AgentMessage {
                kind: Some(AgentKind::Register(register)),
            })
            .await
            .map_err(|_| ConnectError::Closed)?;
        let mut inbound = client
            .connect(ReceiverStream::new(receiver))
            .await
            .map_err(ConnectError::Status)?
            .into_inner();
        let first = tokio::time::timeout(Duration::from_secs(15), inbound.message())
            .await
            .map_err(|_| ConnectError::Closed)?
            .map_err(ConnectError::Status)?
            .ok_or(ConnectError::Closed)?;
        let registered = match first.kind {
            Some(ServerKind::Registered(registered)) => registered,
            Some(ServerKind::Rejected(rejected)) => return Err(ConnectError::Rejected(rejected)),
            other => {
                return Err(ConnectError::Harness(format!(
                    "unexpected first message {other:?}"
                )));
            }
        };
        let interval = Duration::from_millis(u64::from(registered.heartbeat_interval_ms.max(50)));
        let heartbeat_sender = sender.clone();
        let heartbeats = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                let beat = AgentMessage {
                    kind: Some(AgentKind::Heartbeat(Heartbeat {
                        sent_at_ms: now_ms(),
                        active_sessions: 0,
                        load_centi: 0,
                    })),
                };
                if heartbeat_sender.send(beat).await.is_err() {
                    return;
                }
            }
        });
        Ok(Self {
            registered,
            sender,
            inbound,
            heartbeats: Some(heartbeats),
        })
    }

    /// Stops sending heartbeats (to simulate a hung agent).
    pub fn stop_heartbeats(&mut self) {
        if let Some(task) = self.heartbeats.take() {
            task.abort();
        }
    }

    pub async fn send(&self, kind: AgentKind) -> anyhow::Result<()> {
        self.sender
            .send(AgentMessage { kind: Some(kind) })
            .await
            .map_err(|_| anyhow::anyhow!("agent stream closed"))
    }

    /// The next server message, skipping pings; `None` when the stream ended or nothing came
    /// within `timeout`.
    pub async fn next(
        &mut self,
        timeout: Duration,
    ) -> Option<Result<ServerMessage, tonic::Status>> {
        loop {
            let message = tokio::time::timeout(timeout, self.inbound.message())
                .await
                .ok()?;
            match message {
                Ok(Some(ServerMessage {
                    kind: Some(ServerKind::Ping(_)),
                })) => continue,
                Ok(Some(message)) => return Some(Ok(message)),
                Ok(None) => return None,
                Err(status) => return Some(Err(status)),
            }
        }
    }

    /// The next offer (other messages are skipped).
    pub async fn next_offer(&mut self, timeout: Duration) -> Option<Offer> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Ok(ServerMessage {
                    kind: Some(ServerKind::Offer(offer)),
                }) => return Some(offer),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Accepts an offer as a real agent would after its checks: answers with a fresh
    /// ephemeral key and a transcript signature by `identity`. Returns the session keys.
    pub async fn accept(&self, identity: &Identity, offer: &Offer) -> anyhow::Result<SessionKeys> {
        let handshake = offer
            .handshake
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("offer without handshake"))?;
        let session_offer = SessionOffer {
            session_id: offer.session_id.clone(),
            agent_key: identity.public_key(),
            operator_key: PublicKey::from_slice(&handshake.operator_key)?,
            e_op_pub: EphemeralPublic::from_slice(&handshake.e_op_pub)
                .ok_or_else(|| anyhow::anyhow!("e_op_pub"))?,
            signature: Signature::from_slice(&handshake.offer_signature)
                .ok_or_else(|| anyhow::anyhow!("offer signature"))?,
        };
        let (answer, keys) = tucdesk_crypto::agent_respond(identity, &session_offer)?;
        self.send(AgentKind::OfferAnswer(OfferAnswer {
            session_id: offer.session_id.clone(),
            result: Some(AnswerResult::Accepted(HandshakeReply {
                e_ag_pub: answer.e_ag_pub.to_bytes().to_vec(),
                transcript_signature: answer.signature.to_bytes().to_vec(),
            })),
        }))
        .await?;
        Ok(keys)
    }

    /// Refuses an offer with `reason`.
    pub async fn refuse(
        &self,
        session_id: &str,
        reason: RejectReason,
        message: &str,
    ) -> anyhow::Result<()> {
        self.send(AgentKind::OfferAnswer(OfferAnswer {
            session_id: session_id.to_owned(),
            result: Some(AnswerResult::Refused(OfferRefusal {
                reason: reason as i32,
                message: message.to_owned(),
            })),
        }))
        .await
    }

    /// Waits for the stream to end; returns the last `Rejected` reason seen, if any.
    pub async fn closed(&mut self, timeout: Duration) -> Option<RejectReason> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = None;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                None => return last,
                Some(Err(_)) => return last,
                Some(Ok(ServerMessage {
                    kind: Some(ServerKind::Rejected(rejected)),
                })) => last = RejectReason::try_from(rejected.reason).ok(),
                Some(Ok(_)) => {}
            }
            if left.is_zero() {
                return last;
            }
        }
    }
}
