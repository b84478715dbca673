//! Session key derivation and the per-session key holder.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{
    CONFIRM_DOMAIN, HandshakeError, SESSION_DOMAIN, SESSION_KEY_LEN, TRANSCRIPT_HASH_LEN,
    X25519_LEN, tagged,
};
use crate::frame::{Direction, FrameOpener, FrameSealer};
use crate::identity::{Identity, PublicKey, Signature};

/// HKDF-SHA256 (RFC 5869) extract-and-expand.
pub(crate) fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[u8], okm: &mut [u8]) -> bool {
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, okm)
        .is_ok()
}

/// The two direction keys of one session. Memory only; wiped on drop;
/// `Debug` shows the session id and transcript hash, never the keys.
pub struct SessionKeys {
    session_id: String,
    th: [u8; TRANSCRIPT_HASH_LEN],
    op_to_agent: Zeroizing<[u8; SESSION_KEY_LEN]>,
    agent_to_op: Zeroizing<[u8; SESSION_KEY_LEN]>,
}

impl SessionKeys {
    pub(super) fn derive(
        shared: &Zeroizing<[u8; X25519_LEN]>,
        th: [u8; TRANSCRIPT_HASH_LEN],
        session_id: String,
    ) -> Result<Self, HandshakeError> {
        let mut okm = Zeroizing::new([0u8; 2 * SESSION_KEY_LEN]);
        // 64 bytes is far below HKDF-SHA256's 255 × 32 limit, so expand
        // cannot fail; fail closed if it ever does.
        if !hkdf_sha256(shared.as_slice(), &th, SESSION_DOMAIN, okm.as_mut_slice()) {
            return Err(HandshakeError::KeyDerivation);
        }
        let mut op_to_agent = Zeroizing::new([0u8; SESSION_KEY_LEN]);
        let mut agent_to_op = Zeroizing::new([0u8; SESSION_KEY_LEN]);
        op_to_agent.copy_from_slice(&okm[..SESSION_KEY_LEN]);
        agent_to_op.copy_from_slice(&okm[SESSION_KEY_LEN..]);
        Ok(Self {
            session_id,
            th,
            op_to_agent,
            agent_to_op,
        })
    }

    /// The session id these keys belong to.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The transcript hash `th` (public; both sides can compare or log it).
    pub fn transcript_hash(&self) -> [u8; TRANSCRIPT_HASH_LEN] {
        self.th
    }

    /// Operator's optional signature over the full transcript.
    pub fn confirm(&self, device: &Identity) -> Signature {
        device.sign_raw(&tagged(CONFIRM_DOMAIN, &self.th))
    }

    /// Agent side check of [`SessionKeys::confirm`].
    pub fn verify_confirmation(
        &self,
        operator_key: &PublicKey,
        sig: &Signature,
    ) -> Result<(), HandshakeError> {
        operator_key
            .verify_raw(&tagged(CONFIRM_DOMAIN, &self.th), sig)
            .map_err(|_| HandshakeError::BadConfirmation)
    }

    /// Operator's ends: seal operator→agent, open agent→operator.
    pub fn into_operator_channel(self) -> (FrameSealer, FrameOpener) {
        (
            FrameSealer::new(
                &self.op_to_agent,
                &self.session_id,
                Direction::OperatorToAgent,
                0,
            ),
            FrameOpener::new(
                &self.agent_to_op,
                &self.session_id,
                Direction::AgentToOperator,
            ),
        )
    }

    /// Agent's ends: seal agent→operator, open operator→agent.
    pub fn into_agent_channel(self) -> (FrameSealer, FrameOpener) {
        (
            FrameSealer::new(
                &self.agent_to_op,
                &self.session_id,
                Direction::AgentToOperator,
                0,
            ),
            FrameOpener::new(
                &self.op_to_agent,
                &self.session_id,
                Direction::OperatorToAgent,
            ),
        )
    }

    /// Hazmat access for fixed test vectors: (op→agent, agent→op).
    pub(crate) fn raw_keys(&self) -> (&[u8; SESSION_KEY_LEN], &[u8; SESSION_KEY_LEN]) {
        (&self.op_to_agent, &self.agent_to_op)
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("session_id", &self.session_id)
            .field("transcript_hash", &URL_SAFE_NO_PAD.encode(self.th))
            .finish_non_exhaustive()
    }
}
