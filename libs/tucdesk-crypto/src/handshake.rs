//! End-to-end session handshake (SPEC §5 steps 1–3).
//!
//! ```text
//! operator (viewer)                                   agent
//! e_op ← X25519 keygen
//! offer_sig = Ed25519(device_sk, OFFER)        ──▶    check viewer token (caller),
//!   OFFER = "tucdesk-session-offer-v1"                 verify offer_sig, consent (caller)
//!           ‖ lp(session_id) ‖ agent_pubkey            e_ag ← X25519 keygen
//!           ‖ operator_key ‖ e_op_pub                  th = SHA-256(TRANSCRIPT)
//!                                              ◀──    answer_sig = Ed25519(agent_sk, "tucdesk-session-answer-v1" ‖ th)
//! verify answer_sig with the *pinned* agent key
//! th = SHA-256(TRANSCRIPT)                             shared = X25519(e_ag, e_op_pub)
//! shared = X25519(e_op, e_ag_pub)
//!
//! TRANSCRIPT = "tucdesk-session-v1" ‖ lp(session_id) ‖ agent_pubkey(32)
//!              ‖ operator_key(32) ‖ e_op_pub(32) ‖ e_ag_pub(32)
//! lp(x)      = u16 big-endian length ‖ x        (session_id: 1..=128 bytes UTF-8)
//! okm(64)    = HKDF-SHA256(ikm = shared, salt = th, info = "tucdesk-session-v1")
//! key_op→ag  = okm[0..32],  key_ag→op = okm[32..64]
//! ```
//!
//! The operator signs when it sends the offer, before `e_ag_pub` exists, so
//! its signature covers the offer fields (a prefix of the transcript); the
//! agent's signature covers the full `th`, which includes `e_op_pub`, so both
//! ephemeral keys are authenticated by a long-term key. The operator may
//! additionally sign the full `th` ([`SessionKeys::confirm`], tag
//! `"tucdesk-session-confirm-v1"`). Every signature has its own domain tag,
//! so none can be replayed as another (or as a registration proof).
//!
//! Ephemeral secrets are consumed by value by the Diffie-Hellman step and
//! wiped on drop; an all-zero shared secret (low-order peer point) is refused.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use crate::identity::{Identity, PUBLIC_KEY_LEN, PublicKey, Signature};
use crate::rng::{RngError, random_secret};

mod keys;
pub mod resume;
pub use keys::SessionKeys;
pub(crate) use keys::hkdf_sha256;

/// Transcript-hash prefix and HKDF `info` (SPEC §5).
pub const SESSION_DOMAIN: &[u8] = b"tucdesk-session-v1";
/// Domain tag of the operator's offer signature.
pub const OFFER_DOMAIN: &[u8] = b"tucdesk-session-offer-v1";
/// Domain tag of the agent's signature over `th`.
pub const ANSWER_DOMAIN: &[u8] = b"tucdesk-session-answer-v1";
/// Domain tag of the operator's optional signature over `th`.
pub const CONFIRM_DOMAIN: &[u8] = b"tucdesk-session-confirm-v1";
/// Longest session id accepted; ids are UUIDs in practice (36 bytes).
pub const MAX_SESSION_ID_LEN: usize = 128;
/// X25519 public key / shared secret length.
pub const X25519_LEN: usize = 32;
/// AES-256 key length for one direction.
pub const SESSION_KEY_LEN: usize = 32;
/// Transcript hash length (SHA-256).
pub const TRANSCRIPT_HASH_LEN: usize = 32;

/// Why a handshake step failed. Fail closed: no variant yields keys.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    /// Session id empty or longer than [`MAX_SESSION_ID_LEN`].
    #[error("session id must be 1..={MAX_SESSION_ID_LEN} bytes")]
    BadSessionId,
    /// The offer names another agent key than ours.
    #[error("offer is addressed to a different agent key")]
    WrongAgent,
    /// The operator's offer signature does not verify.
    #[error("operator offer signature does not verify")]
    BadOfferSignature,
    /// The agent's signature over the transcript does not verify: the
    /// answer did not come from the pinned agent (possible substitution).
    #[error("agent transcript signature does not verify")]
    BadAnswerSignature,
    /// The operator's confirmation signature does not verify.
    #[error("operator confirmation signature does not verify")]
    BadConfirmation,
    /// The peer's ephemeral key is a low-order point (all-zero shared secret).
    #[error("peer ephemeral key is a low-order point")]
    NonContributory,
    /// HKDF refused the output length (cannot happen for 64 bytes).
    #[error("session key derivation failed")]
    KeyDerivation,
    /// A resume offer whose epoch is not above every epoch accepted before (a replay).
    #[error("resume offer is stale (replayed or out of order)")]
    StaleResume,
    /// The OS RNG failed.
    #[error("OS random number generator failed")]
    Rng,
}

impl From<RngError> for HandshakeError {
    fn from(_: RngError) -> Self {
        HandshakeError::Rng
    }
}

/// An X25519 ephemeral public key (32 bytes, public).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EphemeralPublic([u8; X25519_LEN]);

impl EphemeralPublic {
    /// Wraps received bytes. Any 32 bytes are an X25519 u-coordinate;
    /// low-order points are caught when the shared secret comes out zero.
    pub fn from_bytes(bytes: [u8; X25519_LEN]) -> Self {
        Self(bytes)
    }
    /// Parses exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; X25519_LEN]>::try_from(bytes).ok().map(Self)
    }
    /// The raw bytes.
    pub fn to_bytes(&self) -> [u8; X25519_LEN] {
        self.0
    }
}

impl fmt::Debug for EphemeralPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EphemeralPublic({})", URL_SAFE_NO_PAD.encode(self.0))
    }
}

/// An X25519 ephemeral secret: not `Clone`, consumed by
/// [`EphemeralSecret::diffie_hellman`], wiped on drop.
pub struct EphemeralSecret(StaticSecret);

impl EphemeralSecret {
    /// A fresh secret from the OS CSPRNG.
    pub fn generate() -> Result<Self, RngError> {
        Ok(Self::from_bytes(random_secret::<X25519_LEN>()?))
    }

    pub(crate) fn from_bytes(bytes: Zeroizing<[u8; X25519_LEN]>) -> Self {
        // StaticSecret is used only because it can be built from fixed bytes
        // (test vectors); this wrapper restores the "use once" guarantee.
        Self(StaticSecret::from(*bytes))
    }

    /// The public key to send to the peer.
    pub fn public_key(&self) -> EphemeralPublic {
        EphemeralPublic(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// X25519 with the peer's key. Consumes (and so wipes) the secret;
    /// refuses an all-zero result, compared in constant time.
    pub fn diffie_hellman(
        self,
        peer: &EphemeralPublic,
    ) -> Result<Zeroizing<[u8; X25519_LEN]>, HandshakeError> {
        let shared = self
            .0
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer.0));
        let out = Zeroizing::new(shared.to_bytes());
        if bool::from(out.ct_eq(&[0u8; X25519_LEN])) {
            return Err(HandshakeError::NonContributory);
        }
        Ok(out)
    }
}

impl fmt::Debug for EphemeralSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EphemeralSecret")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

fn check_session_id(session_id: &str) -> Result<u16, HandshakeError> {
    if session_id.is_empty() || session_id.len() > MAX_SESSION_ID_LEN {
        return Err(HandshakeError::BadSessionId);
    }
    u16::try_from(session_id.len()).map_err(|_| HandshakeError::BadSessionId)
}

/// The operator's signed offer bytes (see module docs).
pub fn offer_message(
    session_id: &str,
    agent_key: &PublicKey,
    operator_key: &PublicKey,
    e_op_pub: &EphemeralPublic,
) -> Result<Vec<u8>, HandshakeError> {
    let len = check_session_id(session_id)?;
    let mut m = Vec::with_capacity(
        OFFER_DOMAIN.len() + 2 + session_id.len() + 2 * PUBLIC_KEY_LEN + X25519_LEN,
    );
    m.extend_from_slice(OFFER_DOMAIN);
    m.extend_from_slice(&len.to_be_bytes());
    m.extend_from_slice(session_id.as_bytes());
    m.extend_from_slice(agent_key.as_bytes());
    m.extend_from_slice(operator_key.as_bytes());
    m.extend_from_slice(&e_op_pub.0);
    Ok(m)
}

/// `th = SHA-256(TRANSCRIPT)` (see module docs).
pub fn transcript_hash(
    session_id: &str,
    agent_key: &PublicKey,
    operator_key: &PublicKey,
    e_op_pub: &EphemeralPublic,
    e_ag_pub: &EphemeralPublic,
) -> Result<[u8; TRANSCRIPT_HASH_LEN], HandshakeError> {
    let len = check_session_id(session_id)?;
    let mut h = Sha256::new();
    h.update(SESSION_DOMAIN);
    h.update(len.to_be_bytes());
    h.update(session_id.as_bytes());
    h.update(agent_key.as_bytes());
    h.update(operator_key.as_bytes());
    h.update(e_op_pub.0);
    h.update(e_ag_pub.0);
    Ok(h.finalize().into())
}

fn tagged(domain: &[u8], th: &[u8; TRANSCRIPT_HASH_LEN]) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + th.len());
    m.extend_from_slice(domain);
    m.extend_from_slice(th);
    m
}

/// Step 1 message: what the viewer sends in `CreateSession`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOffer {
    /// Session id (UTF-8, exactly as carried on the wire).
    pub session_id: String,
    /// The agent the operator intends to reach (its pinned key).
    pub agent_key: PublicKey,
    /// The operator's device key; its JWK thumbprint must equal the viewer
    /// token's `cnf.jkt` (checked by the caller).
    pub operator_key: PublicKey,
    /// Operator ephemeral X25519 key.
    pub e_op_pub: EphemeralPublic,
    /// Device-key signature over [`offer_message`].
    pub signature: Signature,
}

impl SessionOffer {
    /// Verifies the offer is for `our_key` and signed by `operator_key`.
    pub fn verify(&self, our_key: &PublicKey) -> Result<(), HandshakeError> {
        if &self.agent_key != our_key {
            return Err(HandshakeError::WrongAgent);
        }
        let msg = offer_message(
            &self.session_id,
            &self.agent_key,
            &self.operator_key,
            &self.e_op_pub,
        )?;
        self.operator_key
            .verify_raw(&msg, &self.signature)
            .map_err(|_| HandshakeError::BadOfferSignature)
    }
}

impl SessionOffer {
    /// Verifies that `answer` is signed by this offer's agent key over the transcript, and
    /// returns the transcript hash. The viewer does this (inside
    /// [`OperatorHandshake::finish`]) with its pinned key; rendezvous may do it with the
    /// enrolled key to report a broken agent early. It derives no keys.
    pub fn verify_answer(
        &self,
        answer: &SessionAnswer,
    ) -> Result<[u8; TRANSCRIPT_HASH_LEN], HandshakeError> {
        let th = transcript_hash(
            &self.session_id,
            &self.agent_key,
            &self.operator_key,
            &self.e_op_pub,
            &answer.e_ag_pub,
        )?;
        self.agent_key
            .verify_raw(&tagged(ANSWER_DOMAIN, &th), &answer.signature)
            .map_err(|_| HandshakeError::BadAnswerSignature)?;
        Ok(th)
    }
}

/// Step 2 message: the agent's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionAnswer {
    /// Agent ephemeral X25519 key.
    pub e_ag_pub: EphemeralPublic,
    /// Agent identity signature over `"tucdesk-session-answer-v1" ‖ th`.
    pub signature: Signature,
}

/// Operator side state between offer and answer. Not `Clone`.
#[derive(Debug)]
pub struct OperatorHandshake {
    offer: SessionOffer,
    e_op: EphemeralSecret,
}

impl OperatorHandshake {
    /// Creates the offer with a fresh ephemeral key. `agent_key` must be the
    /// key pinned in `known_agents`, not one taken from rendezvous.
    pub fn start(
        device: &Identity,
        session_id: &str,
        agent_key: PublicKey,
    ) -> Result<(Self, SessionOffer), HandshakeError> {
        Self::start_with(device, session_id, agent_key, EphemeralSecret::generate()?)
    }

    pub(crate) fn start_with(
        device: &Identity,
        session_id: &str,
        agent_key: PublicKey,
        e_op: EphemeralSecret,
    ) -> Result<(Self, SessionOffer), HandshakeError> {
        let operator_key = device.public_key();
        let e_op_pub = e_op.public_key();
        let msg = offer_message(session_id, &agent_key, &operator_key, &e_op_pub)?;
        let offer = SessionOffer {
            session_id: session_id.to_owned(),
            agent_key,
            operator_key,
            e_op_pub,
            signature: device.sign_raw(&msg),
        };
        Ok((
            Self {
                offer: offer.clone(),
                e_op,
            },
            offer,
        ))
    }

    /// Verifies the agent's signature with the pinned key and derives the
    /// session keys. Consumes the ephemeral secret whatever the outcome.
    pub fn finish(self, answer: &SessionAnswer) -> Result<SessionKeys, HandshakeError> {
        let th = self.offer.verify_answer(answer)?;
        let shared = self.e_op.diffie_hellman(&answer.e_ag_pub)?;
        SessionKeys::derive(&shared, th, self.offer.session_id)
    }
}

/// Agent side: verifies the offer, answers and derives the keys. The caller
/// must already have checked the viewer token (`session_id`, agent id, team,
/// `cnf.jkt` = `offer.operator_key.jwk_thumbprint()`) and local consent.
pub fn agent_respond(
    identity: &Identity,
    offer: &SessionOffer,
) -> Result<(SessionAnswer, SessionKeys), HandshakeError> {
    agent_respond_with(identity, offer, EphemeralSecret::generate()?)
}

pub(crate) fn agent_respond_with(
    identity: &Identity,
    offer: &SessionOffer,
    e_ag: EphemeralSecret,
) -> Result<(SessionAnswer, SessionKeys), HandshakeError> {
    offer.verify(&identity.public_key())?;
    let e_ag_pub = e_ag.public_key();
    let th = transcript_hash(
        &offer.session_id,
        &offer.agent_key,
        &offer.operator_key,
        &offer.e_op_pub,
        &e_ag_pub,
    )?;
    let shared = e_ag.diffie_hellman(&offer.e_op_pub)?;
    let keys = SessionKeys::derive(&shared, th, offer.session_id.clone())?;
    let answer = SessionAnswer {
        e_ag_pub,
        signature: identity.sign_raw(&tagged(ANSWER_DOMAIN, &th)),
    };
    Ok((answer, keys))
}

#[cfg(test)]
mod tests;
