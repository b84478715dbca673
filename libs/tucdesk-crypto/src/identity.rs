//! Ed25519 identities (SPEC §2): agent identity keys, operator device keys and
//! service signing keys all use the same two types.
//!
//! * [`Identity`] holds the secret seed. It is not `Clone` (one copy in memory),
//!   is wiped on drop (the inner `SigningKey` is `ZeroizeOnDrop`) and its
//!   `Debug` prints only the public `agent_id`.
//! * [`PublicKey`] is the 32-byte verifying key with the derived names people
//!   and tokens use: `agent_id`, the OpenSSH-style fingerprint and the RFC 7638
//!   JWK thumbprint bound into access tokens as `cnf.jkt`.
//!
//! Signing is crate-private: every signed byte string in TucDesk starts with a
//! domain tag and is built by the module that owns that construction, so no
//! caller can get an identity to sign attacker-chosen raw bytes.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::rng::{RngError, random_secret};

/// Length of an Ed25519 public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 secret seed in bytes.
pub const SEED_LEN: usize = 32;
/// Length of an Ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an `agent_id`: 32 bytes in unpadded base64url.
pub const AGENT_ID_LEN: usize = 43;
/// Prefix of the human-readable fingerprint, as OpenSSH prints it.
pub const FINGERPRINT_PREFIX: &str = "SHA256:";

/// Errors about public keys and signatures.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The bytes are not a valid Ed25519 point, or it is a small-order point
    /// with which one signature would verify for many messages.
    #[error("invalid or weak Ed25519 public key")]
    InvalidPublicKey,
    /// The `agent_id` is not 43 characters of unpadded base64url.
    #[error("malformed agent_id")]
    MalformedAgentId,
    /// Signature verification failed (kept opaque on purpose).
    #[error("signature verification failed")]
    BadSignature,
}

/// An Ed25519 signature (64 bytes). Public data, freely copyable.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; SIGNATURE_LEN]);

impl Signature {
    /// Wraps signature bytes received from the network.
    pub fn from_bytes(bytes: [u8; SIGNATURE_LEN]) -> Self {
        Self(bytes)
    }

    /// Parses a signature from a slice, which must be exactly 64 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; SIGNATURE_LEN]>::try_from(bytes).ok().map(Self)
    }

    /// The raw 64 bytes (`R ‖ S`).
    pub fn to_bytes(&self) -> [u8; SIGNATURE_LEN] {
        self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", URL_SAFE_NO_PAD.encode(self.0))
    }
}

/// An Ed25519 public key with TucDesk's derived identifiers.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses a public key, rejecting invalid encodings and small-order
    /// ("weak") points so that a key can never vouch for arbitrary messages.
    pub fn from_bytes(bytes: &[u8; PUBLIC_KEY_LEN]) -> Result<Self, IdentityError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| IdentityError::InvalidPublicKey)?;
        if key.is_weak() {
            return Err(IdentityError::InvalidPublicKey);
        }
        Ok(Self(key))
    }

    /// Parses a public key from a slice of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdentityError> {
        let arr =
            <[u8; PUBLIC_KEY_LEN]>::try_from(bytes).map_err(|_| IdentityError::InvalidPublicKey)?;
        Self::from_bytes(&arr)
    }

    /// Parses an `agent_id` (unpadded base64url of the public key). Padding,
    /// the standard alphabet and non-canonical trailing bits are rejected so
    /// that every key has exactly one `agent_id`.
    pub fn from_agent_id(agent_id: &str) -> Result<Self, IdentityError> {
        if agent_id.len() != AGENT_ID_LEN {
            return Err(IdentityError::MalformedAgentId);
        }
        let mut bytes = [0u8; PUBLIC_KEY_LEN];
        let written = URL_SAFE_NO_PAD
            .decode_slice(agent_id, &mut bytes)
            .map_err(|_| IdentityError::MalformedAgentId)?;
        if written != PUBLIC_KEY_LEN {
            return Err(IdentityError::MalformedAgentId);
        }
        Self::from_bytes(&bytes)
    }

    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.0.to_bytes()
    }

    /// The raw 32 bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        self.0.as_bytes()
    }

    /// `agent_id`: unpadded base64url of the 32-byte public key (SPEC §2).
    pub fn agent_id(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.as_bytes())
    }

    /// `SHA256:<base64 std, no padding, of sha256(pubkey)>`, the form OpenSSH
    /// prints. Note: OpenSSH hashes its wire-format key blob, we hash the raw
    /// 32 key bytes (SPEC §2), so the value differs from `ssh-keygen -l`.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.as_bytes());
        format!("{FINGERPRINT_PREFIX}{}", STANDARD_NO_PAD.encode(digest))
    }

    /// The public JWK members (RFC 8037): `x` is the base64url key.
    pub fn jwk_x(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.as_bytes())
    }

    /// RFC 7638 JWK thumbprint of this key as an OKP/Ed25519 JWK (RFC 8037
    /// §2): `base64url(SHA-256('{"crv":"Ed25519","kty":"OKP","x":"…"}'))`,
    /// required members only, lexicographic order, no whitespace. This is
    /// the `cnf.jkt` value (RFC 7800) bound into an operator's tokens.
    pub fn jwk_thumbprint(&self) -> String {
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, self.jwk_x());
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// Strict Ed25519 verification of `message` (rejects non-canonical and
    /// small-order signature components). Crate-private like signing: public
    /// callers verify through the construction-specific functions.
    pub(crate) fn verify_raw(&self, message: &[u8], sig: &Signature) -> Result<(), IdentityError> {
        let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
        self.0
            .verify_strict(message, &sig)
            .map_err(|_| IdentityError::BadSignature)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.agent_id())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.agent_id())
    }
}

/// A secret Ed25519 identity. Not `Clone`; zeroized on drop; never printed.
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// Generates a fresh identity from the OS CSPRNG (SPEC §2: at install
    /// time on the host; reinstall means a new identity).
    pub fn generate() -> Result<Self, RngError> {
        let seed = random_secret::<SEED_LEN>()?;
        Ok(Self::from_seed(&seed))
    }

    /// Rebuilds an identity from its 32-byte seed (RFC 8032 "private key").
    /// Used by the key file loader and by fixed test vectors.
    pub fn from_seed(seed: &Zeroizing<[u8; SEED_LEN]>) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// Shortcut for `public_key().agent_id()`.
    pub fn agent_id(&self) -> String {
        self.public_key().agent_id()
    }

    /// Shortcut for `public_key().fingerprint()`.
    pub fn fingerprint(&self) -> String {
        self.public_key().fingerprint()
    }

    /// The secret seed, for writing the key file only.
    pub(crate) fn seed(&self) -> Zeroizing<[u8; SEED_LEN]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// Signs raw bytes. Crate-private: callers must go through a
    /// construction that prepends its domain tag.
    pub(crate) fn sign_raw(&self, message: &[u8]) -> Signature {
        Signature(self.key.sign(message).to_bytes())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only public data: the secret seed never reaches a log line.
        f.debug_struct("Identity")
            .field("agent_id", &self.agent_id())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
