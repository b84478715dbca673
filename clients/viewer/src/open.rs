//! Opening a session (SPEC §5 steps 1–3 on the viewer's side): resolve the agent, check its
//! pin, sign the offer for the pinned key, ask rendezvous (waiting for an approval when policy
//! asks for one), verify the agent's answer with the pinned key, dial the relay and confirm
//! the keys. Rendezvous and the relay never learn the session keys.

use std::time::Duration;

use tucdesk_crypto::handshake::OperatorHandshake;
use tucdesk_crypto::{EphemeralPublic, PublicKey, SessionAnswer, Signature};
use tucdesk_proto::v1::create_session_response::Result as Created;
use tucdesk_proto::v1::{
    Agent, ApprovalState, CreateSessionRequest, ExecSpec, GetAgentRequest, GetApprovalRequest,
    HandshakeInit, ListAgentsRequest, Path, ReportSessionRequest, SessionEventKind, SessionKind,
    SessionReport, Side, TerminalSize,
};
use tucdesk_transport::{DialOptions, Established};

use crate::api::{Api, ApiError};
use crate::pins::{KnownAgents, PinError};

/// Longest CreateSession call (the agent's answer may wait for the host's consent).
const CREATE_SESSION_TIMEOUT: Duration = Duration::from_secs(300);
/// How often a pending approval is checked.
const APPROVAL_POLL: Duration = Duration::from_secs(2);
/// Longest wait for an approval, whatever the server's expiry says.
const MAX_APPROVAL_WAIT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error("no agent named {0:?} in your team (see `tucdesk agents`)")]
    NoSuchAgent(String),
    #[error("{0:?} matches several agents; use the agent id:\n{1}")]
    Ambiguous(String, String),
    #[error("agent {0:?} is offline")]
    Offline(String),
    #[error("approval {id} was {state}")]
    NotApproved { id: String, state: String },
    #[error("the agent's answer does not verify with its pinned key: {0}")]
    BadAnswer(String),
    #[error("connecting the session: {0}")]
    Transport(String),
}

/// What to open.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    /// Agent name or id.
    pub agent: String,
    pub kind: SessionKind,
    pub exec: Option<ExecSpec>,
    pub reason: String,
    pub accept_new: bool,
    pub initial_size: Option<TerminalSize>,
    pub dial: DialOptions,
    /// `Path::Unspecified` = automatic (direct/TURN, then the WebSocket relay).
    pub path: Path,
    pub p2p: tucdesk_p2p::P2pOptions,
}

/// An open session.
#[derive(Debug)]
pub struct Opened {
    pub session_id: String,
    pub agent: Agent,
    pub path: Path,
    pub channel: Established,
}

/// Looks `wanted` up by id or exact name.
pub async fn find_agent(api: &mut Api, wanted: &str) -> Result<Agent, OpenError> {
    if PublicKey::from_agent_id(wanted).is_ok() {
        let request = api
            .request(GetAgentRequest {
                agent_id: wanted.to_owned(),
            })
            .await?;
        return api
            .rendezvous()
            .get_agent(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| match status.code() {
                tonic::Code::NotFound => OpenError::NoSuchAgent(wanted.to_owned()),
                _ => ApiError::from_status(&status).into(),
            });
    }
    let request = api
        .request(ListAgentsRequest {
            name_contains: wanted.to_owned(),
            ..Default::default()
        })
        .await?;
    let agents = api
        .rendezvous()
        .list_agents(request)
        .await
        .map_err(|s| ApiError::from_status(&s))?
        .into_inner()
        .agents;
    let mut exact: Vec<Agent> = agents.into_iter().filter(|a| a.name == wanted).collect();
    match exact.len() {
        0 => Err(OpenError::NoSuchAgent(wanted.to_owned())),
        1 => Ok(exact.remove(0)),
        _ => Err(OpenError::Ambiguous(
            wanted.to_owned(),
            exact
                .iter()
                .map(|a| format!("  {}  {}", a.agent_id, a.fingerprint))
                .collect::<Vec<_>>()
                .join("\n"),
        )),
    }
}

fn state_name(state: ApprovalState) -> String {
    state
        .as_str_name()
        .trim_start_matches("APPROVAL_STATE_")
        .to_ascii_lowercase()
}

/// Opens a session; `confirm` asks the user to trust an unknown agent key, `progress` shows
/// what is happening (approval waits).
pub async fn open(
    api: &mut Api,
    pins: &KnownAgents,
    spec: &SessionSpec,
    confirm: impl FnOnce(&str) -> bool,
    progress: impl Fn(&str),
) -> Result<Opened, OpenError> {
    let agent = find_agent(api, &spec.agent).await?;
    let team_id = api.credentials.team_id.clone();
    pins.verify(
        &team_id,
        &agent.name,
        &agent.agent_id,
        spec.accept_new,
        confirm,
    )?;
    let agent_key = PublicKey::from_agent_id(&agent.agent_id)
        .map_err(|_| OpenError::BadAnswer("the agent id is not a key".into()))?;
    if !agent.online {
        return Err(OpenError::Offline(agent.name.clone()));
    }

    let mut approval_id = String::new();
    let (session_id, handshake, accepted) = loop {
        let session_id = uuid::Uuid::new_v4().to_string();
        let (handshake, offer) = OperatorHandshake::start(&api.device, &session_id, agent_key)
            .map_err(|err| OpenError::BadAnswer(err.to_string()))?;
        let request = api
            .request(CreateSessionRequest {
                protocol_version: tucdesk_proto::PROTOCOL_VERSION,
                agent_id: agent.agent_id.clone(),
                kind: spec.kind as i32,
                exec: spec.exec.clone(),
                handshake: Some(HandshakeInit {
                    operator_key: offer.operator_key.to_bytes().to_vec(),
                    e_op_pub: offer.e_op_pub.to_bytes().to_vec(),
                    offer_signature: offer.signature.to_bytes().to_vec(),
                }),
                requested_path: spec.path as i32,
                approval_id: approval_id.clone(),
                reason: spec.reason.clone(),
                initial_size: spec.initial_size,
                session_id: session_id.clone(),
            })
            .await?;
        // CreateSession waits for the agent's answer, which may wait for a person's consent.
        let mut request = request;
        request.set_timeout(CREATE_SESSION_TIMEOUT);
        let created = api
            .rendezvous()
            .create_session(request)
            .await
            .map_err(|s| ApiError::from_status(&s))?
            .into_inner();
        match created.result {
            Some(Created::Accepted(accepted)) => break (session_id, handshake, accepted),
            Some(Created::ApprovalPending(pending)) => {
                progress(&format!(
                    "approval required ({}): waiting for another authorized person to run \
                     `tucdesk approve {}`",
                    pending
                        .policy_result
                        .as_ref()
                        .map(|r| tucdesk_transport::ws::printable(&r.reason))
                        .unwrap_or_default(),
                    pending.approval_id
                ));
                wait_for_approval(api, &pending.approval_id).await?;
                progress("approved; connecting");
                approval_id = pending.approval_id;
            }
            None => return Err(ApiError::Refused("empty CreateSession answer".into()).into()),
        }
    };

    if accepted.agent_id != agent.agent_id {
        return Err(OpenError::BadAnswer(
            "the answer is for another agent".into(),
        ));
    }
    let reply = accepted
        .handshake
        .as_ref()
        .ok_or_else(|| OpenError::BadAnswer("no handshake in the answer".into()))?;
    let answer = SessionAnswer {
        e_ag_pub: EphemeralPublic::from_slice(&reply.e_ag_pub)
            .ok_or_else(|| OpenError::BadAnswer("ephemeral key".into()))?,
        signature: Signature::from_slice(&reply.transcript_signature)
            .ok_or_else(|| OpenError::BadAnswer("signature".into()))?,
    };
    // Verified against the pinned key the offer was made for, never a key the server sent.
    let keys = handshake
        .finish(&answer)
        .map_err(|err| OpenError::BadAnswer(err.to_string()))?;
    let connectivity = accepted.connectivity.unwrap_or_default();
    let pipe = crate::paths::connect(api, &session_id, &connectivity, spec, &progress).await?;
    let path = pipe.path();
    let channel =
        tucdesk_transport::establish(pipe, keys.into_operator_channel(), Side::Operator, None)
            .await
            .map_err(|err| OpenError::Transport(err.to_string()))?;
    report(
        api,
        &session_id,
        SessionReport {
            kind: SessionEventKind::Started as i32,
            path: path as i32,
            ..Default::default()
        },
    )
    .await;
    Ok(Opened {
        session_id,
        agent,
        path,
        channel,
    })
}

/// Polls an approval until it is decided.
async fn wait_for_approval(api: &mut Api, approval_id: &str) -> Result<(), OpenError> {
    let deadline = tokio::time::Instant::now() + MAX_APPROVAL_WAIT;
    loop {
        let request = api
            .request(GetApprovalRequest {
                approval_id: approval_id.to_owned(),
            })
            .await?;
        let approval = api
            .rendezvous()
            .get_approval(request)
            .await
            .map_err(|s| ApiError::from_status(&s))?
            .into_inner();
        let state = ApprovalState::try_from(approval.state).unwrap_or(ApprovalState::Unspecified);
        match state {
            ApprovalState::Approved => return Ok(()),
            ApprovalState::Pending if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(APPROVAL_POLL).await;
            }
            other => {
                return Err(OpenError::NotApproved {
                    id: approval_id.to_owned(),
                    state: state_name(other),
                });
            }
        }
    }
}

/// Reports a session event (audited); a failure only costs the report.
pub async fn report(api: &mut Api, session_id: &str, report: SessionReport) {
    if let Ok(request) = api
        .request(ReportSessionRequest {
            session_id: session_id.to_owned(),
            report: Some(report),
        })
        .await
    {
        let _ = api.rendezvous().report_session(request).await;
    }
}
