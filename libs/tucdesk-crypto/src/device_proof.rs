//! Device proofs: an operator's device key signs the context of a sensitive
//! request (SPEC §3, `DeviceProof` in `common.proto`, docs/protocol.md
//! "Device proofs").
//!
//! Signed bytes (`lp(x) = u32be(len(x)) ‖ x`):
//!
//! ```text
//! "tucdesk-device-proof-v1" ‖ lp(method) ‖ lp(target) ‖ lp(session_id) ‖
//! lp(binding) ‖ lp(challenge) ‖ u64be(timestamp_ms) ‖ lp(nonce)
//! ```
//!
//! Every variable-length field carries a length prefix, so no two different
//! contexts produce the same bytes (moving a byte from `target` into
//! `session_id` changes the prefixes). The domain tag keeps these signatures
//! apart from every other construction signed by the same key (session offer
//! and confirmation signatures).
//!
//! [`DeviceProof::verify`] checks, cheapest first: field lengths, nonce
//! length, the key's RFC 7638 thumbprint against the token's `cnf.jkt` (when
//! the call is authenticated), `|timestamp − now| ≤ MAX_CLOCK_SKEW`, and
//! finally the signature (strict Ed25519). Two checks stay with the caller:
//! claiming [`DeviceProof::replay_key`] in its replay cache (TTL
//! [`REPLAY_WINDOW`](crate::registration::REPLAY_WINDOW)), and validating and
//! consuming the challenge where the method requires one.

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::identity::{Identity, PublicKey, SIGNATURE_LEN, Signature};
use crate::registration::{RegistrationError, check_clock_skew};
use crate::rng::{RngError, random_array};

/// Domain tag of a device proof.
pub const DEVICE_PROOF_DOMAIN: &[u8] = b"tucdesk-device-proof-v1";
/// Longest `method` (a full gRPC path such as
/// `/tucdesk.v1.OperatorService/RevokeAgent`); it must not be empty.
pub const MAX_METHOD_LEN: usize = 128;
/// Longest `target` (an id, an email, `tag:<tag>`…).
pub const MAX_TARGET_LEN: usize = 256;
/// Longest `session_id`.
pub const MAX_SESSION_ID_LEN: usize = 256;
/// Longest `binding` (a digest or a few big-endian integers in practice).
pub const MAX_BINDING_LEN: usize = 256;
/// Longest server challenge (docs/protocol.md §13).
pub const MAX_CHALLENGE_LEN: usize = 256;
/// Shortest nonce: 128 bits keep accidental repeats out of the replay cache.
pub const MIN_NONCE_LEN: usize = 16;
/// Longest nonce accepted (bounds the signed message and the cache key).
pub const MAX_NONCE_LEN: usize = 32;
/// Nonce length drawn by [`DeviceProof::create`].
pub const DEFAULT_NONCE_LEN: usize = 32;

const _: () = assert!(DEFAULT_NONCE_LEN >= MIN_NONCE_LEN && DEFAULT_NONCE_LEN <= MAX_NONCE_LEN);

/// Which context field broke its length bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofField {
    /// `method`: 1..=[`MAX_METHOD_LEN`] bytes.
    Method,
    /// `target`: ≤ [`MAX_TARGET_LEN`] bytes.
    Target,
    /// `session_id`: ≤ [`MAX_SESSION_ID_LEN`] bytes.
    SessionId,
    /// `binding`: ≤ [`MAX_BINDING_LEN`] bytes.
    Binding,
    /// `challenge`: ≤ [`MAX_CHALLENGE_LEN`] bytes.
    Challenge,
}

/// Why a device proof was not made or not accepted. All of them map to
/// `PROOF_INVALID` on the wire; the variant is for logs and audit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceProofError {
    /// A context field is empty where it must not be, or too long.
    #[error("device proof field {0:?} has an invalid length")]
    FieldLength(ProofField),
    /// Nonce not within `MIN_NONCE_LEN..=MAX_NONCE_LEN` bytes.
    #[error("device proof nonce must be {MIN_NONCE_LEN}..={MAX_NONCE_LEN} bytes")]
    BadNonceLength,
    /// The public key is not a valid, non-weak Ed25519 key of 32 bytes.
    #[error("invalid device public key")]
    InvalidPublicKey,
    /// The signature is not 64 bytes.
    #[error("device proof signature must be {SIGNATURE_LEN} bytes")]
    BadSignatureLength,
    /// The key's thumbprint is not the token's `cnf.jkt`.
    #[error("device key does not match the token's cnf.jkt")]
    KeyMismatch,
    /// Timestamp older than the allowed skew.
    #[error("device proof timestamp is too old")]
    Expired,
    /// Timestamp further in the future than the allowed skew.
    #[error("device proof timestamp is in the future")]
    FromTheFuture,
    /// Signature does not verify for this context.
    #[error("device proof signature does not verify")]
    BadSignature,
    /// The OS RNG failed while drawing a nonce.
    #[error("OS random number generator failed")]
    Rng,
}

impl From<RngError> for DeviceProofError {
    fn from(_: RngError) -> Self {
        DeviceProofError::Rng
    }
}

/// The request context a proof covers. `binding` and `challenge` are raw
/// bytes; what goes in each field per method is in docs/protocol.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceProofContext<'a> {
    /// Full gRPC method path.
    pub method: &'a str,
    /// Object acted on, or `""`.
    pub target: &'a str,
    /// Session concerned, or `""`.
    pub session_id: &'a str,
    /// Digest or encoding of the request's other parameters, or empty.
    pub binding: &'a [u8],
    /// Server challenge where the method requires one, else empty.
    pub challenge: &'a [u8],
}

impl DeviceProofContext<'_> {
    fn check_lengths(&self) -> Result<(), DeviceProofError> {
        let fields = [
            (self.method.len(), MAX_METHOD_LEN, ProofField::Method),
            (self.target.len(), MAX_TARGET_LEN, ProofField::Target),
            (
                self.session_id.len(),
                MAX_SESSION_ID_LEN,
                ProofField::SessionId,
            ),
            (self.binding.len(), MAX_BINDING_LEN, ProofField::Binding),
            (
                self.challenge.len(),
                MAX_CHALLENGE_LEN,
                ProofField::Challenge,
            ),
        ];
        for (len, max, field) in fields {
            if len > max {
                return Err(DeviceProofError::FieldLength(field));
            }
        }
        // A proof for "no method" would be valid for whichever method a
        // server forgot to fill in.
        if self.method.is_empty() {
            return Err(DeviceProofError::FieldLength(ProofField::Method));
        }
        Ok(())
    }
}

fn check_nonce(nonce: &[u8]) -> Result<(), DeviceProofError> {
    if (MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&nonce.len()) {
        Ok(())
    } else {
        Err(DeviceProofError::BadNonceLength)
    }
}

fn push_lp(msg: &mut Vec<u8>, field: &[u8]) {
    // Every field is capped far below u32::MAX before we get here.
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    msg.extend_from_slice(&len.to_be_bytes());
    msg.extend_from_slice(field);
}

/// Builds the exact signed byte string (layout in the module docs), after
/// checking every length bound.
pub fn device_proof_message(
    ctx: &DeviceProofContext<'_>,
    timestamp_ms: u64,
    nonce: &[u8],
) -> Result<Vec<u8>, DeviceProofError> {
    ctx.check_lengths()?;
    check_nonce(nonce)?;
    let variable = ctx.method.len()
        + ctx.target.len()
        + ctx.session_id.len()
        + ctx.binding.len()
        + ctx.challenge.len()
        + nonce.len();
    let mut msg = Vec::with_capacity(DEVICE_PROOF_DOMAIN.len() + 6 * 4 + 8 + variable);
    msg.extend_from_slice(DEVICE_PROOF_DOMAIN);
    push_lp(&mut msg, ctx.method.as_bytes());
    push_lp(&mut msg, ctx.target.as_bytes());
    push_lp(&mut msg, ctx.session_id.as_bytes());
    push_lp(&mut msg, ctx.binding);
    push_lp(&mut msg, ctx.challenge);
    msg.extend_from_slice(&timestamp_ms.to_be_bytes());
    push_lp(&mut msg, nonce);
    Ok(msg)
}

/// A device proof as carried in `DeviceProof` (the challenge travels in the
/// same message but is part of the [`DeviceProofContext`] here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceProof {
    /// The operator's device key.
    pub public_key: PublicKey,
    /// Signer's clock, Unix milliseconds.
    pub timestamp_ms: u64,
    /// Single-use random nonce, `MIN_NONCE_LEN..=MAX_NONCE_LEN` bytes.
    pub nonce: Vec<u8>,
    /// Ed25519 signature over [`device_proof_message`].
    pub signature: Signature,
}

impl DeviceProof {
    /// Signs `ctx` with a fresh random nonce of [`DEFAULT_NONCE_LEN`] bytes.
    pub fn create(
        identity: &Identity,
        ctx: &DeviceProofContext<'_>,
        now_ms: u64,
    ) -> Result<Self, DeviceProofError> {
        let nonce = random_array::<DEFAULT_NONCE_LEN>()?;
        Self::sign(identity, ctx, now_ms, &nonce)
    }

    /// Signs `ctx` with a caller-supplied nonce. The nonce must be fresh and
    /// random: a repeated one is rejected as a replay.
    pub fn sign(
        identity: &Identity,
        ctx: &DeviceProofContext<'_>,
        now_ms: u64,
        nonce: &[u8],
    ) -> Result<Self, DeviceProofError> {
        let msg = device_proof_message(ctx, now_ms, nonce)?;
        Ok(Self {
            public_key: identity.public_key(),
            timestamp_ms: now_ms,
            nonce: nonce.to_vec(),
            signature: identity.sign_raw(&msg),
        })
    }

    /// Builds a proof from the wire message's raw fields, checking the key
    /// (32 bytes, valid, not weak), nonce and signature lengths.
    pub fn from_parts(
        public_key: &[u8],
        timestamp_ms: u64,
        nonce: &[u8],
        signature: &[u8],
    ) -> Result<Self, DeviceProofError> {
        let public_key =
            PublicKey::from_slice(public_key).map_err(|_| DeviceProofError::InvalidPublicKey)?;
        check_nonce(nonce)?;
        let signature =
            Signature::from_slice(signature).ok_or(DeviceProofError::BadSignatureLength)?;
        Ok(Self {
            public_key,
            timestamp_ms,
            nonce: nonce.to_vec(),
            signature,
        })
    }

    /// Verifies the proof for `ctx` at `now_ms`. With `expected_thumbprint`
    /// (the access token's `cnf.jkt`), the key must be the one the token is
    /// bound to. See the module docs for the order of checks and for what
    /// the caller still has to do (replay cache, challenge).
    pub fn verify(
        &self,
        ctx: &DeviceProofContext<'_>,
        now_ms: u64,
        expected_thumbprint: Option<&str>,
    ) -> Result<(), DeviceProofError> {
        ctx.check_lengths()?;
        check_nonce(&self.nonce)?;
        if let Some(expected) = expected_thumbprint {
            let actual = self.public_key.jwk_thumbprint();
            // Thumbprint lengths are public (43 chars); the contents are
            // compared in constant time.
            if !bool::from(actual.as_bytes().ct_eq(expected.as_bytes())) {
                return Err(DeviceProofError::KeyMismatch);
            }
        }
        check_clock_skew(self.timestamp_ms, now_ms).map_err(|e| match e {
            RegistrationError::FromTheFuture => DeviceProofError::FromTheFuture,
            _ => DeviceProofError::Expired,
        })?;
        let msg = device_proof_message(ctx, self.timestamp_ms, &self.nonce)?;
        self.public_key
            .verify_raw(&msg, &self.signature)
            .map_err(|_| DeviceProofError::BadSignature)
    }

    /// Key for the caller's replay cache: lowercase hex of
    /// `SHA-256(public_key ‖ nonce)`. Independent of the context, so one
    /// nonce cannot be used twice even for two different methods; keyed by
    /// the device key, so two devices never collide.
    pub fn replay_key(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = Sha256::new()
            .chain_update(self.public_key.as_bytes())
            .chain_update(&self.nonce)
            .finalize();
        let mut out = String::with_capacity(digest.len() * 2);
        for byte in digest {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out
    }
}

#[cfg(test)]
mod tests;
