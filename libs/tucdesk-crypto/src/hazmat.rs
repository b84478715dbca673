//! Hazardous constructors for fixed test vectors, fuzzing and benchmarks.
//!
//! Everything here bypasses a guarantee the normal API gives: a chosen
//! ephemeral scalar can be reused (no forward secrecy), and a sealer built
//! from raw key bytes can repeat a (key, nonce) pair if the same key is used
//! twice, which breaks AES-GCM completely. Production code derives keys only
//! through [`crate::handshake`]; nothing outside tests, benches, fuzz targets
//! and vector generators should call into this module.

use zeroize::Zeroizing;

use crate::frame::{Direction, FrameOpener, FrameSealer};
use crate::handshake::{
    EphemeralSecret, HandshakeError, OperatorHandshake, SESSION_KEY_LEN, SessionAnswer,
    SessionKeys, SessionOffer, X25519_LEN,
};
use crate::identity::{Identity, PublicKey};

/// An ephemeral secret from fixed bytes (RFC 7748 vectors, our vectors).
pub fn ephemeral_secret_from_bytes(bytes: [u8; X25519_LEN]) -> EphemeralSecret {
    EphemeralSecret::from_bytes(Zeroizing::new(bytes))
}

/// [`OperatorHandshake::start`] with a chosen ephemeral secret.
pub fn operator_start_with(
    device: &Identity,
    session_id: &str,
    agent_key: PublicKey,
    e_op: EphemeralSecret,
) -> Result<(OperatorHandshake, SessionOffer), HandshakeError> {
    OperatorHandshake::start_with(device, session_id, agent_key, e_op)
}

/// [`crate::handshake::agent_respond`] with a chosen ephemeral secret.
pub fn agent_respond_with(
    identity: &Identity,
    offer: &SessionOffer,
    e_ag: EphemeralSecret,
) -> Result<(SessionAnswer, SessionKeys), HandshakeError> {
    crate::handshake::agent_respond_with(identity, offer, e_ag)
}

/// The raw direction keys `(operator→agent, agent→operator)`.
pub fn session_key_bytes(keys: &SessionKeys) -> ([u8; SESSION_KEY_LEN], [u8; SESSION_KEY_LEN]) {
    let (a, b) = keys.raw_keys();
    (*a, *b)
}

/// A sealer over raw key bytes, starting at `start_counter` (e.g. near
/// [`crate::frame::MAX_COUNTER`] to exercise the wrap refusal).
pub fn frame_sealer(
    key: &[u8; SESSION_KEY_LEN],
    session_id: &str,
    direction: Direction,
    start_counter: u64,
) -> FrameSealer {
    FrameSealer::new(key, session_id, direction, start_counter)
}

/// An opener over raw key bytes.
pub fn frame_opener(
    key: &[u8; SESSION_KEY_LEN],
    session_id: &str,
    direction: Direction,
) -> FrameOpener {
    FrameOpener::new(key, session_id, direction)
}

/// HKDF-SHA256 (RFC 5869) as the handshake uses it, for RFC vectors.
/// Returns `false` if `okm` is longer than 255 × 32 bytes.
pub fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[u8], okm: &mut [u8]) -> bool {
    crate::handshake::hkdf_sha256(ikm, salt, info, okm)
}
