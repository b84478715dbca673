//! Resuming a session on a new path with fresh keys (docs/networking.md, "Session resume").
//!
//! ```text
//! operator (viewer)                                   agent (holds the session's operator_key)
//! e_op' ← X25519 keygen, epoch = previous + 1
//! sig = Ed25519(device_sk, RESUME_OFFER)       ──▶    epoch > every epoch accepted before?
//!   RESUME_OFFER = "tucdesk-resume-offer-v1"           verify sig with the session's operator_key
//!     ‖ lp(session_id) ‖ agent_pubkey ‖ operator_key   e_ag' ← X25519 keygen
//!     ‖ epoch (u32 BE) ‖ e_op_pub'                     th_r = SHA-256(RESUME_TRANSCRIPT)
//!                                              ◀──    Ed25519(agent_sk, "tucdesk-resume-answer-v1" ‖ th_r)
//! verify with the *pinned* agent key
//!
//! RESUME_TRANSCRIPT = "tucdesk-resume-v1" ‖ lp(session_id) ‖ agent_pubkey ‖ operator_key
//!                     ‖ epoch ‖ e_op_pub' ‖ e_ag_pub'
//! keys: HKDF-SHA256(ikm = X25519(e_op', e_ag'), salt = th_r, info = "tucdesk-session-v1")
//! ```
//!
//! No token is involved: the agent already checked, when the session opened, that the
//! session token binds `operator_key`, so a signature by that key is what admits a resume.
//! The epoch stops a captured offer from being replayed, and the domain tags keep resume
//! signatures from ever passing as the first handshake's (or the reverse). Fresh ephemeral
//! keys on every resume keep forward secrecy per path.

use sha2::{Digest as _, Sha256};

use super::{
    EphemeralPublic, EphemeralSecret, HandshakeError, SessionKeys, TRANSCRIPT_HASH_LEN,
    check_session_id, tagged,
};
use crate::identity::{Identity, PublicKey, Signature};

/// Transcript-hash prefix of a resume.
pub const RESUME_DOMAIN: &[u8] = b"tucdesk-resume-v1";
/// Domain tag of the operator's resume offer signature.
pub const RESUME_OFFER_DOMAIN: &[u8] = b"tucdesk-resume-offer-v1";
/// Domain tag of the agent's signature over `th_r`.
pub const RESUME_ANSWER_DOMAIN: &[u8] = b"tucdesk-resume-answer-v1";

/// The session both sides already agreed on: what every resume message is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeContext {
    pub session_id: String,
    pub agent_key: PublicKey,
    pub operator_key: PublicKey,
}

impl ResumeContext {
    fn prefix(&self, domain: &[u8], epoch: u32) -> Result<Vec<u8>, HandshakeError> {
        let len = check_session_id(&self.session_id)?;
        let mut m = Vec::with_capacity(domain.len() + 2 + self.session_id.len() + 32 + 32 + 4);
        m.extend_from_slice(domain);
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(self.session_id.as_bytes());
        m.extend_from_slice(self.agent_key.as_bytes());
        m.extend_from_slice(self.operator_key.as_bytes());
        m.extend_from_slice(&epoch.to_be_bytes());
        Ok(m)
    }

    /// The bytes the operator signs.
    pub fn offer_message(
        &self,
        epoch: u32,
        e_op_pub: &EphemeralPublic,
    ) -> Result<Vec<u8>, HandshakeError> {
        let mut m = self.prefix(RESUME_OFFER_DOMAIN, epoch)?;
        m.extend_from_slice(&e_op_pub.0);
        Ok(m)
    }

    /// `th_r`.
    pub fn transcript_hash(
        &self,
        epoch: u32,
        e_op_pub: &EphemeralPublic,
        e_ag_pub: &EphemeralPublic,
    ) -> Result<[u8; TRANSCRIPT_HASH_LEN], HandshakeError> {
        let mut h = Sha256::new();
        h.update(self.prefix(RESUME_DOMAIN, epoch)?);
        h.update(e_op_pub.0);
        h.update(e_ag_pub.0);
        Ok(h.finalize().into())
    }
}

/// The operator's resume offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeOffer {
    pub epoch: u32,
    pub e_op_pub: EphemeralPublic,
    pub signature: Signature,
}

/// The agent's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeAnswer {
    pub e_ag_pub: EphemeralPublic,
    pub signature: Signature,
}

/// Operator side between offer and answer.
#[derive(Debug)]
pub struct OperatorResume {
    context: ResumeContext,
    offer: ResumeOffer,
    e_op: EphemeralSecret,
}

impl OperatorResume {
    /// A fresh offer for `epoch`, signed by `device` (whose key is `context.operator_key`).
    pub fn start(
        device: &Identity,
        context: ResumeContext,
        epoch: u32,
    ) -> Result<(Self, ResumeOffer), HandshakeError> {
        let e_op = EphemeralSecret::generate()?;
        let e_op_pub = e_op.public_key();
        let signature = device.sign_raw(&context.offer_message(epoch, &e_op_pub)?);
        let offer = ResumeOffer {
            epoch,
            e_op_pub,
            signature,
        };
        Ok((
            Self {
                context,
                offer,
                e_op,
            },
            offer,
        ))
    }

    /// Checks the answer with the pinned agent key (`context.agent_key`) and derives the
    /// new keys.
    pub fn finish(self, answer: &ResumeAnswer) -> Result<SessionKeys, HandshakeError> {
        let th = self.context.transcript_hash(
            self.offer.epoch,
            &self.offer.e_op_pub,
            &answer.e_ag_pub,
        )?;
        self.context
            .agent_key
            .verify_raw(&tagged(RESUME_ANSWER_DOMAIN, &th), &answer.signature)
            .map_err(|_| HandshakeError::BadAnswerSignature)?;
        let shared = self.e_op.diffie_hellman(&answer.e_ag_pub)?;
        SessionKeys::derive(&shared, th, self.context.session_id)
    }
}

/// Agent side: verifies an offer for a session whose operator key the agent checked when it
/// opened, refuses an epoch not above `last_epoch`, answers and derives the new keys.
pub fn agent_resume(
    identity: &Identity,
    context: &ResumeContext,
    last_epoch: u32,
    offer: &ResumeOffer,
) -> Result<(ResumeAnswer, SessionKeys), HandshakeError> {
    if identity.public_key() != context.agent_key {
        return Err(HandshakeError::WrongAgent);
    }
    if offer.epoch <= last_epoch {
        return Err(HandshakeError::StaleResume);
    }
    context
        .operator_key
        .verify_raw(
            &context.offer_message(offer.epoch, &offer.e_op_pub)?,
            &offer.signature,
        )
        .map_err(|_| HandshakeError::BadOfferSignature)?;
    let e_ag = EphemeralSecret::generate()?;
    let e_ag_pub = e_ag.public_key();
    let th = context.transcript_hash(offer.epoch, &offer.e_op_pub, &e_ag_pub)?;
    let shared = e_ag.diffie_hellman(&offer.e_op_pub)?;
    let keys = SessionKeys::derive(&shared, th, context.session_id.clone())?;
    let answer = ResumeAnswer {
        e_ag_pub,
        signature: identity.sign_raw(&tagged(RESUME_ANSWER_DOMAIN, &th)),
    };
    Ok((answer, keys))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::handshake::{OperatorHandshake, agent_respond};

    const SID: &str = "6f1c5e0a-8a47-4b52-9d6a-0c6a3b1f2e11";

    fn parties() -> (Identity, Identity, ResumeContext) {
        let agent = Identity::generate().unwrap();
        let operator = Identity::generate().unwrap();
        let context = ResumeContext {
            session_id: SID.into(),
            agent_key: agent.public_key(),
            operator_key: operator.public_key(),
        };
        (agent, operator, context)
    }

    /// Both sides' keys agree when each frame sealed by one opens at the other.
    fn agree(operator: SessionKeys, agent: SessionKeys) -> bool {
        let (mut op_seal, mut op_open) = operator.into_operator_channel();
        let (mut ag_seal, mut ag_open) = agent.into_agent_channel();
        let to_agent = op_seal.seal(b"keys").unwrap();
        let to_operator = ag_seal.seal(b"back").unwrap();
        ag_open.open(&to_agent).is_ok() && op_open.open(&to_operator).is_ok()
    }

    #[test]
    fn a_resume_derives_matching_fresh_keys() {
        let (agent, operator, context) = parties();
        let (pending, offer) = OperatorResume::start(&operator, context.clone(), 1).unwrap();
        let (answer, agent_keys) = agent_resume(&agent, &context, 0, &offer).unwrap();
        let operator_keys = pending.finish(&answer).unwrap();
        assert_eq!(
            operator_keys.transcript_hash(),
            agent_keys.transcript_hash()
        );
        // Fresh: a second resume gives another transcript (and keys).
        let (pending2, offer2) = OperatorResume::start(&operator, context.clone(), 2).unwrap();
        let (answer2, agent_keys2) = agent_resume(&agent, &context, 1, &offer2).unwrap();
        let operator_keys2 = pending2.finish(&answer2).unwrap();
        assert_ne!(
            operator_keys.transcript_hash(),
            operator_keys2.transcript_hash()
        );
        assert!(agree(operator_keys, agent_keys));
        assert!(agree(operator_keys2, agent_keys2));
    }

    #[test]
    fn a_replayed_or_stale_offer_is_refused() {
        let (agent, operator, context) = parties();
        let (_, offer) = OperatorResume::start(&operator, context.clone(), 3).unwrap();
        assert!(matches!(
            agent_resume(&agent, &context, 3, &offer),
            Err(HandshakeError::StaleResume)
        ));
        // The epoch is signed: raising it on the wire breaks the signature.
        let mut raised = offer;
        raised.epoch = 9;
        assert!(matches!(
            agent_resume(&agent, &context, 3, &raised),
            Err(HandshakeError::BadOfferSignature)
        ));
    }

    #[test]
    fn only_the_sessions_operator_can_resume_it() {
        let (agent, _, context) = parties();
        let stranger = Identity::generate().unwrap();
        // A stranger signing with its own key, claiming the session's operator key.
        let (_, offer) = OperatorResume::start(&stranger, context.clone(), 1).unwrap();
        assert!(matches!(
            agent_resume(&agent, &context, 0, &offer),
            Err(HandshakeError::BadOfferSignature)
        ));
        // An offer bound to another session does not carry over.
        let (_, operator, _) = parties();
        let other = ResumeContext {
            session_id: "0b7a3c52-1d9e-4f0b-8c2d-5e6f7a8b9c0d".into(),
            ..context.clone()
        };
        let ours = ResumeContext {
            operator_key: operator.public_key(),
            ..context
        };
        let (_, offer) = OperatorResume::start(&operator, other, 1).unwrap();
        assert!(agent_resume(&agent, &ours, 0, &offer).is_err());
    }

    #[test]
    fn an_answer_from_another_agent_is_refused() {
        let (_, operator, context) = parties();
        let (pending, offer) = OperatorResume::start(&operator, context.clone(), 1).unwrap();
        // A relay or rendezvous answering with its own key instead of the pinned agent's.
        let impostor = Identity::generate().unwrap();
        let impostor_context = ResumeContext {
            agent_key: impostor.public_key(),
            ..context
        };
        let (_, impostor_offer) =
            OperatorResume::start(&operator, impostor_context.clone(), 1).unwrap();
        let (answer, _) = agent_resume(&impostor, &impostor_context, 0, &impostor_offer).unwrap();
        let _ = offer;
        assert!(matches!(
            pending.finish(&answer),
            Err(HandshakeError::BadAnswerSignature)
        ));
    }

    #[test]
    fn first_handshake_and_resume_signatures_do_not_cross() {
        let (agent, operator, context) = parties();
        // A first-handshake offer (what rendezvous saw) presented as a resume offer.
        let (_, first) = OperatorHandshake::start(&operator, SID, agent.public_key()).unwrap();
        let as_resume = ResumeOffer {
            epoch: 1,
            e_op_pub: first.e_op_pub,
            signature: first.signature,
        };
        assert!(matches!(
            agent_resume(&agent, &context, 0, &as_resume),
            Err(HandshakeError::BadOfferSignature)
        ));
        // A first-handshake answer presented as a resume answer.
        let (pending, _) = OperatorResume::start(&operator, context, 1).unwrap();
        let (answer, _) = agent_respond(&agent, &first).unwrap();
        let as_resume = ResumeAnswer {
            e_ag_pub: answer.e_ag_pub,
            signature: answer.signature,
        };
        assert!(matches!(
            pending.finish(&as_resume),
            Err(HandshakeError::BadAnswerSignature)
        ));
    }
}
