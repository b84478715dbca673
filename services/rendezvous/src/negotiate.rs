//! CreateSession (SPEC §4, §5 steps 1–2): authenticate, validate, verify the operator's offer
//! signature, run policy (and the approval gate), obtain the session token and relay tickets
//! from auth, mint TURN credentials, choose a relay, offer the session to the agent through
//! whichever replica holds its stream, and wait (bounded) for the agent's signed answer.

use prost::Message as _;
use tonic::Request;
use tucdesk_crypto::handshake::SessionAnswer;
use tucdesk_crypto::{EphemeralPublic, PublicKey, SessionOffer, Signature};
use tucdesk_policy::Outcome;
use tucdesk_proto::limits::{ED25519_PUBLIC_KEY_LEN, ED25519_SIGNATURE_LEN, X25519_PUBLIC_KEY_LEN};
use tucdesk_proto::v1::agent_message::Kind as AgentKind;
use tucdesk_proto::v1::offer_answer::Result as AnswerResult;
use tucdesk_proto::v1::server_message::Kind as ServerKind;
use tucdesk_proto::v1::{
    CancelOffer, ConnectivityInfo, CreateSessionRequest, CreateSessionResponse, HandshakeInit,
    HandshakeReply, IceConfig, IceTransportPolicy, MintSessionTokenRequest, Offer, OfferStage,
    Path, PolicyResult, PrincipalKind, RecordingMode, RejectReason, RelayEndpoint, ServerMessage,
    SessionAccepted, SessionDelivery, SessionKind, SessionState, create_session_response,
};
use tucdesk_proto::validate;
use tucdesk_svc::sql::now_ms;
use tucdesk_token::Role;

use crate::caller::{Caller, same_thumbprint};
use crate::error::{RendezvousError, check_client_version};
use crate::metrics::reason_label;
use crate::policy::{SessionAsk, audit_policy_result, evaluate, policy_result};
use crate::routing::{Delivery, session_subject};
use crate::service::Rendezvous;
use crate::sessions::user_event;
use crate::store::agents::{self, Agent};
use crate::store::sessions::{self, SessionRow};
use crate::turn;

/// Roles of people who may open sessions (AI agents and support principals are checked by
/// their scopes).
const SESSION_ROLES: &[Role] = &[Role::Owner, Role::Admin, Role::Operator];
/// Largest session delivery accepted from the bus.
const MAX_SESSION_DELIVERY_LEN: usize = tucdesk_proto::limits::MAX_AGENT_STREAM_MESSAGE_LEN + 1024;

/// Credentials for both sides of a session.
#[derive(Debug)]
pub struct IssuedConnectivity {
    pub operator: ConnectivityInfo,
    pub agent: ConnectivityInfo,
    pub session_token: String,
    pub session_token_expires_at: Option<prost_types::Timestamp>,
    pub relay_node_id: String,
    /// The operator's name as auth knows it (support principals: the technician's), checked
    /// for length and control characters; empty when auth gave none.
    pub operator_display_name: String,
}

/// Refuses principals that may not open this kind of session on this agent. Runs before the
/// session is recorded, before policy and before anything reaches the agent.
fn may_open(caller: &Caller, kind: SessionKind, agent: &Agent) -> Result<(), RendezvousError> {
    let denied = RendezvousError::PermissionDenied("you may not open this kind of session");
    match caller.principal {
        PrincipalKind::AiAgent => {
            let scope = match kind {
                SessionKind::Exec => "sessions:exec",
                _ => "sessions:shell",
            };
            let granted = caller
                .claims
                .scp
                .as_deref()
                .is_some_and(|scp| scp.split(' ').any(|s| s == scope));
            if caller.role() == Role::AiAgent && granted {
                Ok(())
            } else {
                Err(denied)
            }
        }
        PrincipalKind::Support => {
            // Outside its scope (`scp`: the agent named, or agents carrying the tag) the agent
            // does not exist for a support principal, like another team's. Checked first, so
            // a refused kind never confirms that an agent outside the scope exists.
            if !caller.sees_agent(&agent.row.agent_id, &agent.tags) {
                return Err(RendezvousError::NotFound("agent"));
            }
            let (token_kind, refused) = match kind {
                SessionKind::Exec => (
                    tucdesk_token::SessionKind::Exec,
                    "your support code does not allow exec sessions",
                ),
                _ => (
                    tucdesk_token::SessionKind::Shell,
                    "your support code does not allow shell sessions",
                ),
            };
            let kind_ok = caller
                .claims
                .kinds
                .as_ref()
                .is_some_and(|kinds| kinds.contains(&token_kind));
            if kind_ok {
                Ok(())
            } else {
                Err(RendezvousError::PermissionDenied(refused))
            }
        }
        _ => caller.require(SESSION_ROLES),
    }
}

/// The request's fields, checked against their bounds.
struct Checked<'a> {
    kind: SessionKind,
    path: Path,
    handshake: &'a HandshakeInit,
    operator_key: PublicKey,
    e_op_pub: EphemeralPublic,
}

fn check_request(body: &CreateSessionRequest) -> Result<Checked<'_>, RendezvousError> {
    check_client_version(body.protocol_version)?;
    let invalid = |what: &str| RendezvousError::InvalidArgument(what.to_owned());
    validate::uuid("session_id", &body.session_id).map_err(RendezvousError::invalid)?;
    validate::agent_id("agent_id", &body.agent_id).map_err(RendezvousError::invalid)?;
    validate::message("reason", &body.reason).map_err(RendezvousError::invalid)?;
    if !body.approval_id.is_empty() {
        validate::uuid("approval_id", &body.approval_id).map_err(RendezvousError::invalid)?;
    }
    if let Some(size) = &body.initial_size {
        validate::terminal_size("initial_size", size).map_err(RendezvousError::invalid)?;
    }
    let kind = match SessionKind::try_from(body.kind) {
        Ok(SessionKind::Shell) if body.exec.is_none() => SessionKind::Shell,
        Ok(SessionKind::Exec) => {
            let exec = body
                .exec
                .as_ref()
                .ok_or_else(|| invalid("exec is required for exec sessions"))?;
            validate::exec_spec(exec).map_err(RendezvousError::invalid)?;
            SessionKind::Exec
        }
        Ok(SessionKind::Shell) => return Err(invalid("exec must be absent for shell sessions")),
        _ => return Err(invalid("kind must be shell or exec")),
    };
    let path =
        Path::try_from(body.requested_path).map_err(|_| invalid("requested_path is unknown"))?;
    let handshake = body
        .handshake
        .as_ref()
        .ok_or_else(|| invalid("handshake is required"))?;
    if handshake.operator_key.len() != ED25519_PUBLIC_KEY_LEN
        || handshake.e_op_pub.len() != X25519_PUBLIC_KEY_LEN
        || handshake.offer_signature.len() != ED25519_SIGNATURE_LEN
    {
        return Err(invalid(
            "handshake: operator_key 32, e_op_pub 32 and offer_signature 64 bytes",
        ));
    }
    let operator_key = PublicKey::from_slice(&handshake.operator_key)
        .map_err(|_| invalid("handshake.operator_key is not a valid Ed25519 key"))?;
    let e_op_pub = EphemeralPublic::from_slice(&handshake.e_op_pub)
        .ok_or_else(|| invalid("handshake.e_op_pub must be 32 bytes"))?;
    Ok(Checked {
        kind,
        path,
        handshake,
        operator_key,
        e_op_pub,
    })
}

/// How the agent answered, or did not.
enum Answer {
    Accepted(HandshakeReply),
    Refused(RejectReason, String),
    TimedOut,
    Draining,
}

/// Sends CancelOffer and fails the session if the operator goes away (the RPC future is
/// dropped) while the agent has not answered.
struct PendingOffer {
    rdv: Rendezvous,
    session_id: String,
    agent_id: String,
    armed: bool,
}

impl Drop for PendingOffer {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let rdv = self.rdv.clone();
        let session_id = std::mem::take(&mut self.session_id);
        let agent_id = std::mem::take(&mut self.agent_id);
        tokio::spawn(async move {
            rdv.cancel_offer(&session_id, &agent_id, RejectReason::Cancelled)
                .await;
            if let Err(err) = rdv
                .fail_negotiation(
                    &session_id,
                    &agent_id,
                    RejectReason::Cancelled,
                    "the operator cancelled",
                )
                .await
            {
                tracing::warn!(error = %err, "recording a cancelled session failed");
            }
        });
    }
}

impl Rendezvous {
    pub async fn create_session(
        &self,
        request: &Request<CreateSessionRequest>,
    ) -> Result<CreateSessionResponse, RendezvousError> {
        let result = self.create_session_inner(request).await;
        let outcome = match &result {
            Ok(CreateSessionResponse {
                result: Some(create_session_response::Result::ApprovalPending(_)),
            }) => "approval_pending".to_owned(),
            Ok(_) => "accepted".to_owned(),
            Err(err) => reason_label(err.reason()),
        };
        self.metrics().sessions.with_label_values(&[&outcome]).inc();
        result
    }

    async fn create_session_inner(
        &self,
        request: &Request<CreateSessionRequest>,
    ) -> Result<CreateSessionResponse, RendezvousError> {
        let caller = self.caller(request).await?;
        let body = request.get_ref();
        let checked = check_request(body)?;
        // The handshake key must be the device key the access token is bound to (AI agents
        // have no device key; their handshake key is proven by the offer signature alone).
        if let Some(jkt) = caller.device_jkt()
            && !same_thumbprint(&checked.operator_key.jwk_thumbprint(), jkt)
        {
            return Err(RendezvousError::DeviceKeyMismatch);
        }
        let agent = agents::find_in_team(self.db(), caller.team_id(), &body.agent_id)
            .await?
            .ok_or(RendezvousError::NotFound("agent"))?;
        if let Err(err) = may_open(&caller, checked.kind, &agent) {
            // Recorded like any refusal (a technician trying machines outside their code is
            // worth knowing about); the caller learns nothing more than the error.
            let record = user_event(&caller, "session.refused")
                .target(format!("agent:{}", agent.row.agent_id))
                .session(body.session_id.as_str())
                .context("outcome", "denied")
                .context("stage", "authorization")
                .context("kind", checked.kind.as_str_name())
                .context("reason", err.reason().as_str_name())
                .context("message", err.to_string());
            self.audit_alone(record).await?;
            return Err(err);
        }
        if agent.row.is_revoked() {
            return Err(RendezvousError::refused(
                RejectReason::AgentRevoked,
                "the agent was revoked",
            ));
        }
        let agent_key = PublicKey::from_slice(&agent.row.public_key)
            .map_err(|err| RendezvousError::internal("a stored agent key is invalid", err))?;
        let offer = SessionOffer {
            session_id: body.session_id.clone(),
            agent_key,
            operator_key: checked.operator_key,
            e_op_pub: checked.e_op_pub,
            signature: Signature::from_slice(&checked.handshake.offer_signature).ok_or(
                RendezvousError::ProofInvalid("the offer signature is malformed"),
            )?,
        };
        offer.verify(&agent_key).map_err(|_| {
            RendezvousError::ProofInvalid(
                "the offer signature does not verify for this agent's key; check your known_agents pin",
            )
        })?;

        let now = now_ms();
        let row = SessionRow {
            id: body.session_id.clone(),
            team_id: caller.team_id().to_owned(),
            agent_id: agent.row.agent_id.clone(),
            user_id: caller.user_id().to_owned(),
            // The handshake key's thumbprint: the token's cnf.jkt for people (checked above),
            // and what the session token binds for AI agents, which have no device key.
            operator: {
                let mut identity = caller.identity();
                identity.device_key_thumbprint = checked.operator_key.jwk_thumbprint();
                identity.encode_to_vec()
            },
            kind: checked.kind as i32,
            exec: body.exec.as_ref().map(prost::Message::encode_to_vec),
            e_op_pub: checked.handshake.e_op_pub.clone(),
            requested_path: checked.path as i32,
            state: SessionState::Negotiating as i32,
            path: 0,
            relay_node_id: String::new(),
            created_at_ms: now,
            started_at_ms: None,
            ended_at_ms: None,
            bytes_to_agent: 0,
            bytes_to_operator: 0,
            policy_result: None,
            end_reason: 0,
            close_reason: 0,
            recorded: false,
        };
        if !sessions::insert(self.db(), &row).await? {
            return Err(RendezvousError::AlreadyExists(
                "session id was used before; pick a new session id and ephemeral key",
            ));
        }
        let mut requested = user_event(&caller, "session.requested")
            .target(format!("agent:{}", agent.row.agent_id))
            .session(row.id.as_str())
            .context("kind", checked.kind.as_str_name())
            .context("requested_path", checked.path.as_str_name());
        if let Some(exec) = &body.exec {
            requested = requested.context("argv", exec.argv.clone());
        }
        if !body.reason.is_empty() {
            requested = requested.context("reason", body.reason.as_str());
        }
        self.audit_alone(requested).await?;

        let outcome = self.negotiate(&caller, &agent, &row, body, &checked).await;
        if let Err(err) = &outcome {
            // Every path that refuses records why; anything else (a backend failing, an
            // approval that does not exist) must not leave the session NEGOTIATING for ever.
            // Only a session still negotiating is changed, so recorded refusals stay as they are.
            self.fail_negotiation(&row.id, &row.agent_id, err.reason(), &err.to_string())
                .await?;
        }
        outcome
    }

    async fn negotiate(
        &self,
        caller: &Caller,
        agent: &Agent,
        row: &SessionRow,
        body: &CreateSessionRequest,
        checked: &Checked<'_>,
    ) -> Result<CreateSessionResponse, RendezvousError> {
        let policy = match self.decide(caller, agent, row, body).await? {
            Decided::Go(result) => result,
            Decided::Pending(pending) => {
                return Ok(CreateSessionResponse {
                    result: Some(create_session_response::Result::ApprovalPending(pending)),
                });
            }
        };
        let accepted = self
            .offer_and_wait(caller, agent, row, body, checked, policy)
            .await?;
        Ok(CreateSessionResponse {
            result: Some(create_session_response::Result::Accepted(accepted)),
        })
    }

    /// Mints the session token and relay tickets (auth), TURN credentials, and picks (or
    /// keeps) the relay, for both sides.
    pub async fn issue_connectivity(
        &self,
        row: &SessionRow,
        path: Path,
    ) -> Result<IssuedConnectivity, RendezvousError> {
        let relay = (!row.relay_node_id.is_empty())
            .then(|| self.relays().get(&row.relay_node_id))
            .flatten()
            .or_else(|| self.relays().pick())
            .ok_or_else(|| {
                RendezvousError::refused(RejectReason::NoRelay, "no relay node is available")
            })?;
        let minted = self
            .inner
            .auth
            .mint_session_token(MintSessionTokenRequest {
                session_id: row.id.clone(),
                team_id: row.team_id.clone(),
                agent_id: row.agent_id.clone(),
                user_id: row.user_id.clone(),
                device_key_thumbprint: row.operator()?.device_key_thumbprint,
                e_op_pub: row.e_op_pub.clone(),
                kind: row.kind,
                relay_node_id: relay.node_id.clone(),
                ttl_seconds: 0,
                rendezvous_audience: self.config().audience.clone(),
            })
            .await?;
        let now_secs = u64::try_from(now_ms() / 1000).unwrap_or(0);
        let credential = match self.config().turn_secret.as_deref() {
            Some(secret) if !secret.is_empty() => Some(turn::mint(
                secret,
                &row.id,
                now_secs,
                self.config().turn_credential_ttl,
            )?),
            _ => None,
        };
        let servers = turn::ice_servers(&relay.stun_urls, &relay.turn_urls, credential.as_ref());
        let has_turn = servers
            .iter()
            .any(|server| server.urls.iter().any(|url| url.starts_with("turn")));
        if path == Path::Turn && !has_turn {
            return Err(RendezvousError::refused(
                RejectReason::NoRelay,
                "this relay offers no TURN server (or rendezvous has no TURN secret); use the \
                 automatic path or the WebSocket relay",
            ));
        }
        let ice = IceConfig {
            servers,
            expires_at_ms: credential
                .as_ref()
                .map_or(0, |c| c.expires_at_secs.saturating_mul(1000)),
            transport_policy: if path == Path::Turn {
                IceTransportPolicy::Relay
            } else {
                IceTransportPolicy::All
            } as i32,
        };
        let paths = if path == Path::Unspecified {
            Vec::new()
        } else {
            vec![path as i32]
        };
        let side = |ticket: String| ConnectivityInfo {
            ice: Some(ice.clone()),
            relay: Some(RelayEndpoint {
                node_id: relay.node_id.clone(),
                region: relay.region.clone(),
                ws_url: relay.ws_url.clone(),
                ticket,
            }),
            paths: paths.clone(),
        };
        Ok(IssuedConnectivity {
            operator: side(minted.operator_relay_ticket),
            agent: side(minted.agent_relay_ticket),
            session_token: minted.session_token,
            session_token_expires_at: minted.expires_at,
            relay_node_id: relay.node_id,
            operator_display_name: if validate::name("", &minted.operator_display_name).is_ok() {
                minted.operator_display_name
            } else {
                String::new()
            },
        })
    }

    async fn offer_and_wait(
        &self,
        caller: &Caller,
        agent: &Agent,
        row: &SessionRow,
        body: &CreateSessionRequest,
        checked: &Checked<'_>,
        policy: PolicyResult,
    ) -> Result<SessionAccepted, RendezvousError> {
        // Settings in force at offer time; a team that requires recording but cannot have it
        // refuses here, before the agent is bothered.
        let recording = match self.recording_config(&row.team_id).await {
            Ok(recording) => recording,
            Err(err) => {
                self.fail_negotiation(&row.id, &row.agent_id, err.reason(), &err.to_string())
                    .await?;
                return Err(err.with_policy(policy));
            }
        };
        let issued = match self.issue_connectivity(row, checked.path).await {
            Ok(issued) => issued,
            Err(err) => {
                self.fail_negotiation(&row.id, &row.agent_id, err.reason(), &err.to_string())
                    .await?;
                return Err(err);
            }
        };
        // The operator as the agent's consent prompt and session listings show them: a
        // support principal under the technician's name, which only auth knows.
        let mut operator = row.operator()?;
        if !issued.operator_display_name.is_empty() {
            operator.display_name = issued.operator_display_name.clone();
        }
        let mut tx = self.db().begin().await?;
        sessions::set_offered(&mut tx, &row.id, &policy, &issued.relay_node_id, &operator).await?;
        self.commit(tx).await?;

        // Listen before offering, so an instant answer cannot be missed.
        let mut answers = self
            .inner
            .bus
            .subscribe(&session_subject(&row.id))
            .await
            .map_err(|err| RendezvousError::internal("subscribing to session answers", err))?;
        let offered_at = tokio::time::Instant::now();
        let deadline_ms = u64::try_from(now_ms()).unwrap_or(0)
            + u64::try_from(self.config().consent_timeout.as_millis()).unwrap_or(u64::MAX);
        let offer = ServerMessage {
            kind: Some(ServerKind::Offer(Offer {
                session_id: row.id.clone(),
                kind: checked.kind as i32,
                exec: body.exec.clone(),
                operator: Some(operator),
                handshake: Some(checked.handshake.clone()),
                session_token: issued.session_token.clone(),
                connectivity: Some(issued.agent.clone()),
                recording: Some(recording.clone()),
                policy_result: Some(policy.clone()),
                reason: body.reason.clone(),
                answer_deadline_ms: deadline_ms,
                initial_size: body.initial_size,
            })),
        };
        match self.deliver_to_agent(&row.agent_id, offer).await? {
            Delivery::Delivered => {}
            Delivery::Offline => {
                self.fail_negotiation(
                    &row.id,
                    &row.agent_id,
                    RejectReason::AgentOffline,
                    "the agent is offline",
                )
                .await?;
                return Err(RendezvousError::refused(
                    RejectReason::AgentOffline,
                    "the agent is offline",
                ));
            }
            Delivery::Busy => {
                self.fail_negotiation(
                    &row.id,
                    &row.agent_id,
                    RejectReason::AgentBusy,
                    "the agent is not reading",
                )
                .await?;
                return Err(RendezvousError::refused(
                    RejectReason::AgentBusy,
                    "the agent is not keeping up; try again",
                ));
            }
        }
        let mut guard = PendingOffer {
            rdv: self.clone(),
            session_id: row.id.clone(),
            agent_id: row.agent_id.clone(),
            armed: true,
        };
        let offered = user_event(caller, "session.offered")
            .target(format!("agent:{}", row.agent_id))
            .session(row.id.as_str())
            .policy_result(audit_policy_result(&policy))
            .context("relay_node_id", issued.relay_node_id.as_str())
            .context(
                "turn",
                issued
                    .agent
                    .ice
                    .as_ref()
                    .is_some_and(|i| i.servers.len() > 1),
            );
        self.audit_alone(offered).await?;

        let answer = self
            .wait_for_answer(&mut answers, &row.id, &row.agent_id, offered_at)
            .await;
        guard.armed = false;
        match answer {
            Answer::Accepted(reply) => {
                let accepted = self
                    .accept(caller, agent, row, checked, reply, issued, policy)
                    .await?;
                Ok(SessionAccepted {
                    recording: recording.mode,
                    ..accepted
                })
            }
            Answer::Refused(reason, message) => {
                let reason = match reason {
                    RejectReason::Unspecified => RejectReason::AgentLocalPolicy,
                    other => other,
                };
                let message = if message.is_empty() {
                    "the agent refused the session".to_owned()
                } else {
                    format!("the agent refused: {message}")
                };
                self.fail_negotiation(&row.id, &row.agent_id, reason, &message)
                    .await?;
                Err(RendezvousError::refused(reason, message).with_policy(policy))
            }
            Answer::TimedOut => {
                self.cancel_offer(&row.id, &row.agent_id, RejectReason::AgentTimeout)
                    .await;
                let message = "the agent did not answer in time";
                self.fail_negotiation(&row.id, &row.agent_id, RejectReason::AgentTimeout, message)
                    .await?;
                Err(RendezvousError::refused(
                    RejectReason::AgentTimeout,
                    message,
                ))
            }
            Answer::Draining => {
                self.cancel_offer(&row.id, &row.agent_id, RejectReason::Unavailable)
                    .await;
                self.fail_negotiation(
                    &row.id,
                    &row.agent_id,
                    RejectReason::Unavailable,
                    "rendezvous restarting",
                )
                .await?;
                Err(RendezvousError::Unavailable("rendezvous (restarting)"))
            }
        }
    }

    async fn wait_for_answer(
        &self,
        answers: &mut tucdesk_svc::bus::Subscription,
        session_id: &str,
        agent_id: &str,
        offered_at: tokio::time::Instant,
    ) -> Answer {
        let mut deadline = offered_at + self.config().offer_timeout;
        let consent_deadline = offered_at + self.config().consent_timeout;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return Answer::TimedOut,
                () = self.inner.draining.cancelled() => return Answer::Draining,
                message = answers.next() => {
                    let Some(message) = message else { return Answer::Draining };
                    if message.payload.len() > MAX_SESSION_DELIVERY_LEN {
                        continue;
                    }
                    let Ok(delivery) = SessionDelivery::decode(message.payload) else { continue };
                    // Only the replica holding this agent's authenticated stream publishes
                    // with its id; anything else is not an answer for this session.
                    if delivery.agent_id != agent_id || delivery.session_id != session_id {
                        continue;
                    }
                    match delivery.message.and_then(|m| m.kind) {
                        Some(AgentKind::OfferAnswer(answer)) => match answer.result {
                            Some(AnswerResult::Accepted(reply)) => return Answer::Accepted(reply),
                            Some(AnswerResult::Refused(refusal)) => {
                                let reason = RejectReason::try_from(refusal.reason).unwrap_or(RejectReason::Unspecified);
                                let mut message = refusal.message;
                                message.truncate(tucdesk_proto::limits::MAX_MESSAGE_LEN);
                                message.retain(|c| !c.is_control());
                                return Answer::Refused(reason, message);
                            }
                            None => return Answer::Refused(RejectReason::InvalidArgument, String::new()),
                        },
                        Some(AgentKind::OfferProgress(progress))
                            if progress.stage == OfferStage::AwaitingConsent as i32 =>
                        {
                            deadline = consent_deadline;
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn accept(
        &self,
        caller: &Caller,
        agent: &Agent,
        row: &SessionRow,
        checked: &Checked<'_>,
        reply: HandshakeReply,
        issued: IssuedConnectivity,
        policy: PolicyResult,
    ) -> Result<SessionAccepted, RendezvousError> {
        // The viewer verifies the answer against its pin; checking here too turns a broken or
        // lying agent into a clear error instead of a failed handshake later.
        let answer = EphemeralPublic::from_slice(&reply.e_ag_pub)
            .zip(Signature::from_slice(&reply.transcript_signature))
            .map(|(e_ag_pub, signature)| SessionAnswer {
                e_ag_pub,
                signature,
            });
        let agent_key = PublicKey::from_slice(&agent.row.public_key)
            .map_err(|err| RendezvousError::internal("a stored agent key is invalid", err))?;
        let offer = SessionOffer {
            session_id: row.id.clone(),
            agent_key,
            operator_key: checked.operator_key,
            e_op_pub: checked.e_op_pub,
            signature: Signature::from_bytes([0; 64]),
        };
        let valid = answer.is_some_and(|answer| offer.verify_answer(&answer).is_ok());
        if !valid {
            let message = "the agent's answer is not signed by its enrolled key";
            self.fail_negotiation(&row.id, &row.agent_id, RejectReason::ProofInvalid, message)
                .await?;
            return Err(RendezvousError::refused(
                RejectReason::ProofInvalid,
                message,
            ));
        }
        let mut tx = self.db().begin().await?;
        let moved = sessions::finish_negotiation(
            &mut tx,
            &row.id,
            SessionState::Active,
            RejectReason::Unspecified,
            now_ms(),
        )
        .await?;
        if !moved {
            return Err(RendezvousError::refused(
                RejectReason::SessionEnded,
                "the session was ended",
            ));
        }
        let record = user_event(caller, "session.accepted")
            .target(format!("agent:{}", row.agent_id))
            .session(row.id.as_str())
            .policy_result(audit_policy_result(&policy))
            .context("relay_node_id", issued.relay_node_id.as_str());
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        Ok(SessionAccepted {
            session_id: row.id.clone(),
            agent_id: row.agent_id.clone(),
            agent_pubkey: agent.row.public_key.clone(),
            handshake: Some(reply),
            connectivity: Some(issued.operator),
            session_token: issued.session_token,
            session_token_expires_at: issued.session_token_expires_at,
            policy_result: Some(policy),
            // Set by the caller from the offer's recording settings.
            recording: RecordingMode::Unspecified as i32,
        })
    }

    /// Tells the agent to drop an unanswered offer (best effort).
    async fn cancel_offer(&self, session_id: &str, agent_id: &str, reason: RejectReason) {
        let cancel = ServerMessage {
            kind: Some(ServerKind::CancelOffer(CancelOffer {
                session_id: session_id.to_owned(),
                reason: reason as i32,
            })),
        };
        self.notify_agent(agent_id, cancel).await;
    }

    /// Records a negotiation that did not lead to a session (REFUSED when the agent or policy
    /// said no, FAILED otherwise) and audits it.
    pub(crate) async fn fail_negotiation(
        &self,
        session_id: &str,
        agent_id: &str,
        reason: RejectReason,
        message: &str,
    ) -> Result<(), RendezvousError> {
        let refused = matches!(
            reason,
            RejectReason::AgentLocalPolicy
                | RejectReason::ConsentDenied
                | RejectReason::AgentBusy
                | RejectReason::SessionTokenInvalid
                | RejectReason::ProofInvalid
                | RejectReason::UpdateRequired
        );
        let state = if refused {
            SessionState::Refused
        } else {
            SessionState::Failed
        };
        let mut tx = self.db().begin().await?;
        if sessions::finish_negotiation(&mut tx, session_id, state, reason, now_ms()).await? {
            let Some(row) = sessions::find(self.db(), session_id).await? else {
                return Ok(());
            };
            let operator = row.operator()?;
            let record = tucdesk_svc::audit_events::AuditRecord::new(
                &row.team_id,
                "session.refused",
                tucdesk_proto::v1::ActorKind::User,
                &operator.user_id,
            )
            .target(format!("agent:{agent_id}"))
            .session(session_id)
            .context("outcome", "denied")
            .context("reason", reason.as_str_name())
            .context("message", message);
            self.audit(&mut tx, record).await?;
        }
        self.commit(tx).await
    }
}

/// What policy (and the approval gate) decided.
#[derive(Debug)]
pub enum Decided {
    /// Go ahead with this result.
    Go(PolicyResult),
    /// An approval request was created.
    Pending(tucdesk_proto::v1::ApprovalPending),
}

impl Rendezvous {
    /// Runs the team policy for the request and applies the approval gate; refusals are
    /// recorded and returned as errors carrying the policy result.
    async fn decide(
        &self,
        caller: &Caller,
        agent: &Agent,
        row: &SessionRow,
        body: &CreateSessionRequest,
    ) -> Result<Decided, RendezvousError> {
        let team_policy = self.team_policy(caller.team_id()).await?;
        let kind = SessionKind::try_from(body.kind).unwrap_or(SessionKind::Unspecified);
        let decision = evaluate(
            &team_policy.policy,
            &SessionAsk {
                caller,
                agent,
                kind,
                exec: body.exec.as_ref(),
                at_ms: now_ms(),
            },
        );
        let mut result = policy_result(&decision, team_policy.version);
        let label = match decision.outcome {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::ApprovalRequired => "approval_required",
        };
        self.metrics()
            .policy_decisions
            .with_label_values(&[label])
            .inc();
        let decision_event = |result: &PolicyResult| {
            user_event(caller, "policy.decision")
                .target(format!("agent:{}", agent.row.agent_id))
                .session(row.id.as_str())
                .policy_result(audit_policy_result(result))
                .context("policy_version", team_policy.version)
        };
        match decision.outcome {
            Outcome::Deny => {
                let mut tx = self.db().begin().await?;
                sessions::refuse(
                    &mut tx,
                    &row.id,
                    RejectReason::PolicyDenied,
                    Some(&result),
                    now_ms(),
                )
                .await?;
                self.audit(
                    &mut tx,
                    decision_event(&result).context("outcome", "denied"),
                )
                .await?;
                self.commit(tx).await?;
                Err(RendezvousError::refused(
                    RejectReason::PolicyDenied,
                    format!("policy denied the session: {}", decision.reason),
                )
                .with_policy(result))
            }
            Outcome::ApprovalRequired if body.approval_id.is_empty() => {
                let pending = self
                    .request_approval(caller, agent, row, body, &decision, &mut result)
                    .await?;
                Ok(Decided::Pending(pending))
            }
            Outcome::ApprovalRequired => {
                let approver = self.use_approval(caller, agent, row, body).await?;
                result.decision = tucdesk_proto::v1::PolicyDecision::Allow as i32;
                result.approver = approver;
                result.approval_id = body.approval_id.clone();
                self.audit_alone(decision_event(&result).context("outcome", "approved"))
                    .await?;
                Ok(Decided::Go(result))
            }
            Outcome::Allow => {
                self.audit_alone(decision_event(&result).context("outcome", "allowed"))
                    .await?;
                Ok(Decided::Go(result))
            }
        }
    }
}
