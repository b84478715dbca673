//! Registration proof, presented by an agent on every connect (SPEC §2).
//!
//! Signed bytes (all integers big-endian):
//!
//! ```text
//! "tucdesk-register-v1"        19 bytes, domain tag
//! u16 len(audience) ‖ audience  rendezvous deployment id, UTF-8, 1..=255 bytes
//! agent_pubkey                  32 bytes
//! nonce                         32 bytes, fresh from the agent's CSPRNG
//! timestamp_ms                  u64, Unix time in milliseconds
//! ```
//!
//! The SPEC writes `audience ‖ agent_pubkey ‖ …`; the audience is the only
//! variable-length field, so it carries a u16 length prefix: without it the
//! audience `"ab"` followed by a key starting with `c` and the audience `"abc"`
//! would share a prefix and the parse of the signed bytes would be ambiguous.
//! The field order is the SPEC's.
//!
//! The verifier checks, in this order: audience is ours, timestamp within
//! [`MAX_CLOCK_SKEW`], signature. The caller then checks the nonce against
//! its replay cache (TTL [`REPLAY_WINDOW`]) and the key against enrollment.

use std::time::Duration;

use crate::identity::{Identity, PUBLIC_KEY_LEN, PublicKey, Signature};
use crate::rng::{RngError, random_array};

/// Domain tag: these bytes can never be mistaken for any other signed object.
pub const REGISTER_DOMAIN: &[u8] = b"tucdesk-register-v1";
/// Length of the registration nonce.
pub const NONCE_LEN: usize = 32;
/// Longest accepted audience (deployment id); bounds the signed message.
pub const MAX_AUDIENCE_LEN: usize = 255;
/// Accepted distance between the proof's timestamp and the verifier's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);
/// How long a verifier must remember a seen nonce. A proof stays valid for
/// `2 × MAX_CLOCK_SKEW` of verifier time (from `ts − skew` to `ts + skew`), so
/// the TTL must be at least that; the extra skew covers clock drift between
/// rendezvous replicas sharing one nonce cache.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(3 * MAX_CLOCK_SKEW.as_secs());

const _: () = assert!(REPLAY_WINDOW.as_millis() >= 2 * MAX_CLOCK_SKEW.as_millis());

/// Why a registration proof was rejected. Each variant is a distinct,
/// countable and auditable reason (SPEC §2).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistrationError {
    /// Audience empty or longer than [`MAX_AUDIENCE_LEN`].
    #[error("audience must be 1..={MAX_AUDIENCE_LEN} bytes")]
    BadAudience,
    /// Proof was made for another deployment.
    #[error("proof is for a different audience")]
    WrongAudience,
    /// Timestamp too far in the past.
    #[error("proof timestamp is too old")]
    Expired,
    /// Timestamp too far in the future.
    #[error("proof timestamp is in the future")]
    FromTheFuture,
    /// Signature does not verify for the presented key.
    #[error("registration signature does not verify")]
    BadSignature,
}

/// A registration proof as carried on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationProof {
    /// The audience the agent signed for.
    pub audience: String,
    /// The agent's identity key.
    pub agent_key: PublicKey,
    /// Fresh random nonce, checked against the replay cache by the caller.
    pub nonce: [u8; NONCE_LEN],
    /// Agent clock, Unix milliseconds.
    pub timestamp_ms: u64,
    /// Ed25519 signature over [`registration_message`].
    pub signature: Signature,
}

/// Builds the exact signed byte string (see the module docs for the layout).
pub fn registration_message(
    audience: &str,
    agent_key: &PublicKey,
    nonce: &[u8; NONCE_LEN],
    timestamp_ms: u64,
) -> Result<Vec<u8>, RegistrationError> {
    let aud = audience.as_bytes();
    if aud.is_empty() || aud.len() > MAX_AUDIENCE_LEN {
        return Err(RegistrationError::BadAudience);
    }
    let aud_len = u16::try_from(aud.len()).map_err(|_| RegistrationError::BadAudience)?;
    let mut msg =
        Vec::with_capacity(REGISTER_DOMAIN.len() + 2 + aud.len() + PUBLIC_KEY_LEN + NONCE_LEN + 8);
    msg.extend_from_slice(REGISTER_DOMAIN);
    msg.extend_from_slice(&aud_len.to_be_bytes());
    msg.extend_from_slice(aud);
    msg.extend_from_slice(agent_key.as_bytes());
    msg.extend_from_slice(nonce);
    msg.extend_from_slice(&timestamp_ms.to_be_bytes());
    Ok(msg)
}

/// Checks `|timestamp_ms − now_ms| ≤ MAX_CLOCK_SKEW` (inclusive bounds).
pub fn check_clock_skew(timestamp_ms: u64, now_ms: u64) -> Result<(), RegistrationError> {
    let skew = u64::try_from(MAX_CLOCK_SKEW.as_millis()).unwrap_or(u64::MAX);
    if timestamp_ms < now_ms.saturating_sub(skew) {
        return Err(RegistrationError::Expired);
    }
    if timestamp_ms > now_ms.saturating_add(skew) {
        return Err(RegistrationError::FromTheFuture);
    }
    Ok(())
}

impl RegistrationProof {
    /// Creates a proof with a fresh random nonce.
    pub fn create(
        identity: &Identity,
        audience: &str,
        timestamp_ms: u64,
    ) -> Result<Self, RegistrationProofCreateError> {
        let nonce = random_array::<NONCE_LEN>()?;
        Ok(Self::create_with_nonce(
            identity,
            audience,
            nonce,
            timestamp_ms,
        )?)
    }

    /// Creates a proof with a caller-supplied nonce. Meant for fixed test
    /// vectors; in production use [`RegistrationProof::create`], because a
    /// repeated nonce is rejected as a replay.
    pub fn create_with_nonce(
        identity: &Identity,
        audience: &str,
        nonce: [u8; NONCE_LEN],
        timestamp_ms: u64,
    ) -> Result<Self, RegistrationError> {
        let agent_key = identity.public_key();
        let msg = registration_message(audience, &agent_key, &nonce, timestamp_ms)?;
        Ok(Self {
            audience: audience.to_owned(),
            agent_key,
            nonce,
            timestamp_ms,
            signature: identity.sign_raw(&msg),
        })
    }

    /// Verifies audience, clock skew and signature. The caller must still
    /// claim the nonce in its replay cache (`SET NX`, TTL [`REPLAY_WINDOW`])
    /// and check that `agent_key` is enrolled and not revoked.
    pub fn verify(&self, expected_audience: &str, now_ms: u64) -> Result<(), RegistrationError> {
        // Cheap checks first so junk costs no signature verification.
        if self.audience != expected_audience {
            return Err(RegistrationError::WrongAudience);
        }
        check_clock_skew(self.timestamp_ms, now_ms)?;
        let msg = registration_message(
            &self.audience,
            &self.agent_key,
            &self.nonce,
            self.timestamp_ms,
        )?;
        self.agent_key
            .verify_raw(&msg, &self.signature)
            .map_err(|_| RegistrationError::BadSignature)
    }
}

/// Creating a proof failed: RNG failure or an invalid audience.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationProofCreateError {
    /// The OS RNG failed while drawing the nonce.
    #[error(transparent)]
    Rng(#[from] RngError),
    /// The audience is not acceptable.
    #[error(transparent)]
    Invalid(#[from] RegistrationError),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const NOW: u64 = 1_767_225_600_000;
    const AUD: &str = "rdv-prod-eu1";

    #[test]
    fn valid_proof_verifies() {
        let id = Identity::generate().unwrap();
        let proof = RegistrationProof::create(&id, AUD, NOW).unwrap();
        proof.verify(AUD, NOW).unwrap();
        proof.verify(AUD, NOW + 30_000).unwrap();
        proof.verify(AUD, NOW - 30_000).unwrap();
    }

    #[test]
    fn skew_outside_thirty_seconds_is_rejected() {
        let id = Identity::generate().unwrap();
        let proof = RegistrationProof::create(&id, AUD, NOW).unwrap();
        assert_eq!(
            proof.verify(AUD, NOW + 30_001),
            Err(RegistrationError::Expired)
        );
        assert_eq!(
            proof.verify(AUD, NOW - 30_001),
            Err(RegistrationError::FromTheFuture)
        );
    }

    #[test]
    fn proof_for_another_audience_is_rejected() {
        let id = Identity::generate().unwrap();
        let proof = RegistrationProof::create(&id, "rdv-staging", NOW).unwrap();
        assert_eq!(
            proof.verify(AUD, NOW),
            Err(RegistrationError::WrongAudience)
        );
        // Even if an attacker rewrites the audience field, the signature
        // binds the original one.
        let mut moved = proof.clone();
        moved.audience = AUD.to_owned();
        assert_eq!(moved.verify(AUD, NOW), Err(RegistrationError::BadSignature));
    }

    #[test]
    fn every_signed_field_is_bound() {
        let id = Identity::generate().unwrap();
        let proof = RegistrationProof::create(&id, AUD, NOW).unwrap();
        let mut p = proof.clone();
        p.nonce[0] ^= 1;
        assert_eq!(p.verify(AUD, NOW), Err(RegistrationError::BadSignature));
        let mut p = proof.clone();
        p.timestamp_ms += 1;
        assert_eq!(p.verify(AUD, NOW), Err(RegistrationError::BadSignature));
        let mut p = proof.clone();
        p.agent_key = Identity::generate().unwrap().public_key();
        assert_eq!(p.verify(AUD, NOW), Err(RegistrationError::BadSignature));
    }

    #[test]
    fn audience_length_prefix_removes_ambiguity() {
        let id = Identity::generate().unwrap();
        let key = id.public_key();
        let nonce = [7u8; NONCE_LEN];
        let a = registration_message("ab", &key, &nonce, NOW).unwrap();
        let b = registration_message("abc", &key, &nonce, NOW).unwrap();
        assert_ne!(
            a[..REGISTER_DOMAIN.len() + 2],
            b[..REGISTER_DOMAIN.len() + 2]
        );
        assert_eq!(
            registration_message("", &key, &nonce, NOW),
            Err(RegistrationError::BadAudience)
        );
        assert_eq!(
            registration_message(&"x".repeat(MAX_AUDIENCE_LEN + 1), &key, &nonce, NOW),
            Err(RegistrationError::BadAudience)
        );
    }

    #[test]
    fn nonces_are_fresh() {
        let id = Identity::generate().unwrap();
        let a = RegistrationProof::create(&id, AUD, NOW).unwrap();
        let b = RegistrationProof::create(&id, AUD, NOW).unwrap();
        assert_ne!(a.nonce, b.nonce);
    }

    #[test]
    fn replay_window_covers_twice_the_skew() {
        assert!(REPLAY_WINDOW >= 2 * MAX_CLOCK_SKEW);
        assert_eq!(MAX_CLOCK_SKEW, Duration::from_secs(30));
    }
}
