//! Checking an offer before answering it (SPEC §5 step 2). The agent trusts nothing the server
//! says on its own: the session token must verify against auth's keys and be bound to this
//! session, this agent, its team, the offered kind and the operator's handshake keys; the
//! operator's offer signature must verify for this agent's key; and the host's own limits must
//! allow the session kind.

use tucdesk_crypto::handshake::SessionOffer;
use tucdesk_crypto::{EphemeralPublic, PublicKey, Signature};
use tucdesk_proto::v1::{
    ExecSpec, Offer, OperatorIdentity, RejectReason, SessionKind, TerminalSize,
};
use tucdesk_token::{ExpectedSession, TokenError, TokenVerifier};

use crate::state::LocalLimits;

/// Why an offer is refused: the reason reported to rendezvous and a message for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: RejectReason,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: RejectReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// An offer that passed every check but consent.
#[derive(Debug, Clone)]
pub struct VerifiedOffer {
    pub session_id: String,
    pub kind: SessionKind,
    /// The authorized command, for exec sessions.
    pub exec: Option<ExecSpec>,
    pub handshake: SessionOffer,
    pub operator: OperatorIdentity,
    pub reason: String,
    pub initial_size: Option<TerminalSize>,
}

/// Who this agent is, for the checks.
#[derive(Debug, Clone, Copy)]
pub struct AgentView<'a> {
    pub agent_key: &'a PublicKey,
    pub agent_id: &'a str,
    pub team_id: &'a str,
    pub limits: LocalLimits,
}

fn invalid(message: &str) -> Refusal {
    Refusal::new(RejectReason::InvalidArgument, message)
}

/// Verifies `offer`. `verifier` accepts auth's session tokens addressed to this agent.
/// A token signed by a key the verifier does not know yields `Err(None)`, so the caller can
/// refresh the keys once and retry.
pub fn verify_offer(
    offer: &Offer,
    agent: AgentView<'_>,
    verifier: &TokenVerifier,
    now_secs: u64,
) -> Result<VerifiedOffer, Option<Refusal>> {
    tucdesk_proto::validate::uuid("session_id", &offer.session_id)
        .map_err(|_| Some(invalid("the session id is malformed")))?;
    let kind = SessionKind::try_from(offer.kind).unwrap_or(SessionKind::Unspecified);
    let token_kind = match kind {
        SessionKind::Shell if agent.limits.allow_shell => tucdesk_token::SessionKind::Shell,
        SessionKind::Exec if agent.limits.allow_exec => tucdesk_token::SessionKind::Exec,
        SessionKind::Shell | SessionKind::Exec => {
            return Err(Some(Refusal::new(
                RejectReason::AgentLocalPolicy,
                format!(
                    "this host does not allow {} sessions",
                    if kind == SessionKind::Shell {
                        "shell"
                    } else {
                        "exec"
                    }
                ),
            )));
        }
        SessionKind::Unspecified => return Err(Some(invalid("unknown session kind"))),
    };
    let exec = match (kind, &offer.exec) {
        (SessionKind::Exec, Some(spec)) => {
            tucdesk_proto::validate::exec_spec(spec)
                .map_err(|err| Some(invalid(&format!("exec command: {err}"))))?;
            Some(spec.clone())
        }
        (SessionKind::Exec, None) => return Err(Some(invalid("exec offer without a command"))),
        _ => None,
    };
    if let Some(size) = &offer.initial_size {
        tucdesk_proto::validate::terminal_size("initial_size", size)
            .map_err(|err| Some(invalid(&err.to_string())))?;
    }
    let init = offer
        .handshake
        .as_ref()
        .ok_or_else(|| Some(invalid("offer without handshake")))?;
    let operator_key = PublicKey::from_slice(&init.operator_key)
        .map_err(|_| Some(Refusal::new(RejectReason::ProofInvalid, "operator key")))?;
    let e_op_pub = EphemeralPublic::from_slice(&init.e_op_pub)
        .ok_or_else(|| Some(Refusal::new(RejectReason::ProofInvalid, "ephemeral key")))?;
    let signature = Signature::from_slice(&init.offer_signature)
        .ok_or_else(|| Some(Refusal::new(RejectReason::ProofInvalid, "offer signature")))?;

    let thumbprint = operator_key.jwk_thumbprint();
    let expected = ExpectedSession {
        session_id: &offer.session_id,
        agent_id: Some(agent.agent_id),
        team_id: Some(agent.team_id),
        kind: Some(token_kind),
        device_key_thumbprint: Some(&thumbprint),
        e_op_pub: Some(&init.e_op_pub),
    };
    match verifier.verify_session(&offer.session_token, now_secs, &expected) {
        Ok(_) => {}
        Err(TokenError::UnknownKey) => return Err(None),
        Err(err) => {
            return Err(Some(Refusal::new(
                RejectReason::SessionTokenInvalid,
                format!("session token refused: {err}"),
            )));
        }
    }
    let handshake = SessionOffer {
        session_id: offer.session_id.clone(),
        agent_key: *agent.agent_key,
        operator_key,
        e_op_pub,
        signature,
    };
    handshake.verify(agent.agent_key).map_err(|_| {
        Some(Refusal::new(
            RejectReason::ProofInvalid,
            "the operator's offer signature does not verify for this agent",
        ))
    })?;
    Ok(VerifiedOffer {
        session_id: offer.session_id.clone(),
        kind,
        exec,
        handshake,
        operator: offer.operator.clone().unwrap_or_default(),
        reason: offer.reason.clone(),
        initial_size: offer.initial_size,
    })
}
