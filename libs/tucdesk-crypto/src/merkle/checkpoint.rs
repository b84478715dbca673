//! The signed checkpoint (tree head) the audit service publishes.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::audit::MAX_ID_LEN;

use super::{Hash, SIGNATURE_LEN, empty_root, hashes_equal, hex_serde};

/// Domain tag at the start of a checkpoint's canonical bytes, so a checkpoint
/// signature can never be mistaken for a signature over anything else.
pub const CHECKPOINT_DOMAIN_TAG: &[u8] = b"tucdesk-audit-checkpoint-v1";

/// Errors from checkpoint signing and verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// A text field is empty or longer than its limit.
    #[error("checkpoint field {field} must be 1..={max} bytes")]
    BadField { field: &'static str, max: usize },
    /// A tree of size 0 must have the empty-tree root.
    #[error("empty tree checkpoint must carry the empty-tree root")]
    BadEmptyRoot,
    /// The signature does not verify under the given key.
    #[error("checkpoint signature does not verify")]
    BadSignature,
}

/// A tree head: the audit log of `team_id` had `tree_size` entries whose
/// Merkle root was `root_hash` at `timestamp_ms` (unix ms), signed by the key
/// named `key_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub team_id: String,
    pub tree_size: u64,
    #[serde(with = "hex_serde::hash")]
    pub root_hash: Hash,
    pub timestamp_ms: u64,
    /// Names the audit signing key (e.g. its `SHA256:` fingerprint) so a
    /// verifier can pick the right key after rotation. Covered by the
    /// signature, but never a substitute for the verifier's trusted key.
    pub key_id: String,
}

/// A checkpoint and the audit key's Ed25519 signature over its canonical bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    #[serde(with = "hex_serde::sig")]
    pub sig: [u8; SIGNATURE_LEN],
}

fn put_str(out: &mut Vec<u8>, field: &'static str, s: &str) -> Result<(), CheckpointError> {
    let bad = CheckpointError::BadField {
        field,
        max: MAX_ID_LEN,
    };
    if s.is_empty() || s.len() > MAX_ID_LEN {
        return Err(bad);
    }
    let len = u32::try_from(s.len()).map_err(|_| bad)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

impl Checkpoint {
    /// Canonical bytes, the signed message:
    /// `"tucdesk-audit-checkpoint-v1" ‖ str(team_id) ‖ u64be(tree_size) ‖
    /// root_hash[32] ‖ u64be(timestamp_ms) ‖ str(key_id)`, where
    /// `str(s) = u32be(len) ‖ utf8`. Both strings are 1..=`MAX_ID_LEN` bytes.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, CheckpointError> {
        if self.tree_size == 0 && !hashes_equal(&self.root_hash, &empty_root()) {
            return Err(CheckpointError::BadEmptyRoot);
        }
        let mut out = Vec::with_capacity(CHECKPOINT_DOMAIN_TAG.len() + 2 * MAX_ID_LEN + 56);
        out.extend_from_slice(CHECKPOINT_DOMAIN_TAG);
        put_str(&mut out, "team_id", &self.team_id)?;
        out.extend_from_slice(&self.tree_size.to_be_bytes());
        out.extend_from_slice(&self.root_hash);
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        put_str(&mut out, "key_id", &self.key_id)?;
        Ok(out)
    }

    /// Signs the checkpoint with the audit key.
    pub fn sign(self, key: &SigningKey) -> Result<SignedCheckpoint, CheckpointError> {
        let sig = key.sign(&self.canonical_bytes()?).to_bytes();
        Ok(SignedCheckpoint {
            checkpoint: self,
            sig,
        })
    }
}

impl SignedCheckpoint {
    /// Parses a checkpoint document (an export line or API body). Only a JSON object is
    /// accepted; use this rather than `serde_json` directly. Parsing does not verify.
    pub fn from_json(text: &str) -> Result<Self, crate::json::JsonObjectError> {
        crate::json::from_json_object(text.as_bytes())
    }

    /// Checks the signature (strict Ed25519: no malleable or small-order
    /// encodings) over the canonical bytes under the verifier's trusted key.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), CheckpointError> {
        let msg = self.checkpoint.canonical_bytes()?;
        key.verify_strict(&msg, &Signature::from_bytes(&self.sig))
            .map_err(|_| CheckpointError::BadSignature)
    }
}
