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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use tucdesk_crypto::Identity;
    use tucdesk_crypto::handshake::OperatorHandshake;
    use tucdesk_proto::v1::HandshakeInit;
    use tucdesk_token::{Cnf, KeySet, SessionClaims, TokenIssuer, ekh, new_jti};

    const ISS: &str = "https://auth.test";
    const TEAM: &str = "team-1";

    struct World {
        auth: TokenIssuer,
        verifier: TokenVerifier,
        agent: Identity,
        operator: Identity,
    }

    fn world() -> World {
        let auth = TokenIssuer::new(ISS, "k1", Identity::generate().unwrap()).unwrap();
        let agent = Identity::generate().unwrap();
        let keys = KeySet::from_keys([("k1".to_owned(), auth.public_key())]).unwrap();
        let verifier = TokenVerifier::new(keys, ISS, &agent.agent_id());
        World {
            auth,
            verifier,
            agent,
            operator: Identity::generate().unwrap(),
        }
    }

    fn now() -> u64 {
        tucdesk_token::unix_now()
    }

    /// Session token claims for `sid`, bound to our agent, team and operator.
    fn claims(w: &World, sid: &str, e_op_pub: &[u8], kind: SessionKind) -> SessionClaims {
        SessionClaims {
            iss: ISS.into(),
            sub: "user-1".into(),
            aud: vec![w.agent.agent_id(), "rdv".to_owned()].into(),
            team_id: TEAM.into(),
            sid: sid.into(),
            agent_id: w.agent.agent_id(),
            kind: if kind == SessionKind::Exec {
                tucdesk_token::SessionKind::Exec
            } else {
                tucdesk_token::SessionKind::Shell
            },
            cnf: Cnf::jkt(w.operator.public_key().jwk_thumbprint()),
            ekh: ekh(e_op_pub),
            iat: now(),
            exp: now() + 300,
            jti: new_jti().unwrap(),
        }
    }

    /// An offer for `session_id` whose token was minted for `token_session`.
    fn offer(w: &World, session_id: &str, token_session: &str, kind: SessionKind) -> Offer {
        let (_, signed) =
            OperatorHandshake::start(&w.operator, session_id, w.agent.public_key()).unwrap();
        let claims = claims(w, token_session, &signed.e_op_pub.to_bytes(), kind);
        Offer {
            session_id: session_id.into(),
            kind: kind as i32,
            exec: (kind == SessionKind::Exec).then(|| ExecSpec {
                argv: vec!["true".into()],
                ..Default::default()
            }),
            handshake: Some(HandshakeInit {
                operator_key: signed.operator_key.to_bytes().to_vec(),
                e_op_pub: signed.e_op_pub.to_bytes().to_vec(),
                offer_signature: signed.signature.to_bytes().to_vec(),
            }),
            session_token: w.auth.issue_session(&claims).unwrap(),
            ..Default::default()
        }
    }

    fn check(
        w: &World,
        offer: &Offer,
        limits: LocalLimits,
    ) -> Result<VerifiedOffer, Option<Refusal>> {
        let key = w.agent.public_key();
        let agent_id = w.agent.agent_id();
        verify_offer(
            offer,
            AgentView {
                agent_key: &key,
                agent_id: &agent_id,
                team_id: TEAM,
                limits,
            },
            &w.verifier,
            now(),
        )
    }

    fn reason(result: Result<VerifiedOffer, Option<Refusal>>) -> RejectReason {
        result.unwrap_err().unwrap().reason
    }

    const A: &str = "6f1c5e0a-8a47-4b52-9d6a-0c6a3b1f2e11";
    const B: &str = "0b7a3c52-1d9e-4f0b-8c2d-5e6f7a8b9c0d";

    #[test]
    fn a_bound_offer_is_accepted() {
        let w = world();
        let verified = check(
            &w,
            &offer(&w, A, A, SessionKind::Shell),
            LocalLimits::default(),
        );
        assert_eq!(verified.unwrap().session_id, A);
    }

    #[test]
    fn a_token_for_one_session_cannot_open_another() {
        let w = world();
        let result = check(
            &w,
            &offer(&w, B, A, SessionKind::Shell),
            LocalLimits::default(),
        );
        assert_eq!(reason(result), RejectReason::SessionTokenInvalid);
    }

    #[test]
    fn a_token_for_another_agent_or_team_is_refused() {
        let w = world();
        let other = world();
        // Minted for another agent: its audience is not ours.
        let foreign = offer(&other, A, A, SessionKind::Shell);
        let mut ours = offer(&w, A, A, SessionKind::Shell);
        ours.session_token = foreign.session_token;
        assert!(check(&w, &ours, LocalLimits::default()).is_err());
        // Our agent, but the agent belongs to another team than the token says.
        let key = w.agent.public_key();
        let agent_id = w.agent.agent_id();
        let result = verify_offer(
            &offer(&w, A, A, SessionKind::Shell),
            AgentView {
                agent_key: &key,
                agent_id: &agent_id,
                team_id: "team-2",
                limits: LocalLimits::default(),
            },
            &w.verifier,
            now(),
        );
        assert_eq!(reason(result), RejectReason::SessionTokenInvalid);
    }

    #[test]
    fn a_substituted_operator_key_or_kind_is_refused() {
        let w = world();
        // The server swaps in its own handshake half: the token's cnf/ekh no longer match.
        let mut swapped = offer(&w, A, A, SessionKind::Shell);
        let (_, mitm) =
            OperatorHandshake::start(&Identity::generate().unwrap(), A, w.agent.public_key())
                .unwrap();
        let init = swapped.handshake.as_mut().unwrap();
        init.operator_key = mitm.operator_key.to_bytes().to_vec();
        init.e_op_pub = mitm.e_op_pub.to_bytes().to_vec();
        init.offer_signature = mitm.signature.to_bytes().to_vec();
        assert_eq!(
            reason(check(&w, &swapped, LocalLimits::default())),
            RejectReason::SessionTokenInvalid
        );
        // A shell token presented as an exec offer.
        let mut kind = offer(&w, A, A, SessionKind::Shell);
        kind.kind = SessionKind::Exec as i32;
        kind.exec = Some(ExecSpec {
            argv: vec!["id".into()],
            ..Default::default()
        });
        assert_eq!(
            reason(check(&w, &kind, LocalLimits::default())),
            RejectReason::SessionTokenInvalid
        );
    }

    #[test]
    fn a_forged_offer_signature_is_refused() {
        let w = world();
        let mut forged = offer(&w, A, A, SessionKind::Shell);
        forged.handshake.as_mut().unwrap().offer_signature[0] ^= 1;
        assert_eq!(
            reason(check(&w, &forged, LocalLimits::default())),
            RejectReason::ProofInvalid
        );
    }

    #[test]
    fn local_limits_apply_whatever_the_server_allowed() {
        let w = world();
        let no_shell = LocalLimits {
            allow_shell: false,
            ..LocalLimits::default()
        };
        assert_eq!(
            reason(check(&w, &offer(&w, A, A, SessionKind::Shell), no_shell)),
            RejectReason::AgentLocalPolicy
        );
        let no_exec = LocalLimits {
            allow_exec: false,
            ..LocalLimits::default()
        };
        assert_eq!(
            reason(check(&w, &offer(&w, A, A, SessionKind::Exec), no_exec)),
            RejectReason::AgentLocalPolicy
        );
        assert!(check(&w, &offer(&w, A, A, SessionKind::Exec), no_shell).is_ok());
    }

    #[test]
    fn a_token_signed_by_an_unknown_key_asks_for_a_key_refresh() {
        let w = world();
        let mut offer = offer(&w, A, A, SessionKind::Shell);
        let e_op_pub = offer.handshake.as_ref().unwrap().e_op_pub.clone();
        let claims = claims(&w, A, &e_op_pub, SessionKind::Shell);
        // Same kid "k1" but another key: the signature fails, which is a refusal, not a refresh.
        let impostor = TokenIssuer::new(ISS, "k1", Identity::generate().unwrap()).unwrap();
        offer.session_token = impostor.issue_session(&claims).unwrap();
        assert_eq!(
            reason(check(&w, &offer, LocalLimits::default())),
            RejectReason::SessionTokenInvalid
        );
        let other_kid = TokenIssuer::new(ISS, "k2", Identity::generate().unwrap()).unwrap();
        offer.session_token = other_kid.issue_session(&claims).unwrap();
        assert!(matches!(
            check(&w, &offer, LocalLimits::default()),
            Err(None)
        ));
    }
}
