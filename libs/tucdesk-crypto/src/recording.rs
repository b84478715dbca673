//! Recording signatures (SPEC §7, `recorder.proto`, docs/protocol.md §12): the agent's
//! identity key signs a recording manifest and a freshness proof per upload call.
//!
//! ```text
//! manifest: "tucdesk-recording-manifest-v1" ‖ manifest_bytes
//! upload:   "tucdesk-recording-upload-v1" ‖ lp(method) ‖ lp(session_id) ‖
//!           ciphertext_sha256(32) ‖ u64be(offset) ‖ u64be(timestamp_ms) ‖ nonce(32)
//! ```
//!
//! `lp(x) = u32be(len(x)) ‖ x`. The domain tags keep these signatures apart from every other
//! construction the same identity key signs (registration proofs, handshake answers). The
//! clock-skew window and the nonce's single use are the verifier's to check
//! ([`crate::check_clock_skew`], a replay store); this module only builds and checks bytes.

use crate::identity::{Identity, IdentityError, PublicKey, Signature};

/// Domain tag of a manifest signature.
pub const MANIFEST_DOMAIN: &[u8] = b"tucdesk-recording-manifest-v1";
/// Domain tag of an upload proof.
pub const UPLOAD_DOMAIN: &[u8] = b"tucdesk-recording-upload-v1";
/// Longest manifest signed (`SignedRecordingManifest.manifest`, 16 KiB).
pub const MAX_MANIFEST_LEN: usize = 16 * 1024;
/// Longest `method` or `session_id` in an upload proof.
pub const MAX_UPLOAD_FIELD_LEN: usize = 256;
/// Exact length of the upload proof nonce.
pub const UPLOAD_NONCE_LEN: usize = 32;

/// Why a recording signature could not be made or did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordingSigError {
    #[error("the manifest is empty or longer than 16 KiB")]
    ManifestLength,
    #[error("the method or session id is empty or longer than 256 bytes")]
    FieldLength,
    #[error("the signature does not verify")]
    BadSignature,
}

/// What one upload proof covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadContext<'a> {
    /// The full gRPC method path (`/tucdesk.v1.RecorderService/Upload`).
    pub method: &'a str,
    pub session_id: &'a str,
    pub ciphertext_sha256: &'a [u8; 32],
    /// `UploadStart.offset` (0 for GetUploadStatus).
    pub offset: u64,
    pub timestamp_ms: u64,
    pub nonce: &'a [u8; UPLOAD_NONCE_LEN],
}

fn manifest_message(manifest: &[u8]) -> Result<Vec<u8>, RecordingSigError> {
    if manifest.is_empty() || manifest.len() > MAX_MANIFEST_LEN {
        return Err(RecordingSigError::ManifestLength);
    }
    let mut msg = Vec::with_capacity(MANIFEST_DOMAIN.len() + manifest.len());
    msg.extend_from_slice(MANIFEST_DOMAIN);
    msg.extend_from_slice(manifest);
    Ok(msg)
}

/// The bytes an upload proof signs.
pub fn upload_message(ctx: &UploadContext<'_>) -> Result<Vec<u8>, RecordingSigError> {
    let mut msg = Vec::with_capacity(160 + ctx.method.len() + ctx.session_id.len());
    msg.extend_from_slice(UPLOAD_DOMAIN);
    for field in [ctx.method, ctx.session_id] {
        if field.is_empty() || field.len() > MAX_UPLOAD_FIELD_LEN {
            return Err(RecordingSigError::FieldLength);
        }
        let len = u32::try_from(field.len()).map_err(|_| RecordingSigError::FieldLength)?;
        msg.extend_from_slice(&len.to_be_bytes());
        msg.extend_from_slice(field.as_bytes());
    }
    msg.extend_from_slice(ctx.ciphertext_sha256);
    msg.extend_from_slice(&ctx.offset.to_be_bytes());
    msg.extend_from_slice(&ctx.timestamp_ms.to_be_bytes());
    msg.extend_from_slice(ctx.nonce);
    Ok(msg)
}

/// Signs encoded manifest bytes with the agent's identity.
pub fn sign_manifest(identity: &Identity, manifest: &[u8]) -> Result<Signature, RecordingSigError> {
    Ok(identity.sign_raw(&manifest_message(manifest)?))
}

/// Verifies a manifest signature (strict Ed25519).
pub fn verify_manifest(
    key: &PublicKey,
    manifest: &[u8],
    signature: &Signature,
) -> Result<(), RecordingSigError> {
    key.verify_raw(&manifest_message(manifest)?, signature)
        .map_err(|_: IdentityError| RecordingSigError::BadSignature)
}

/// Signs an upload proof.
pub fn sign_upload(
    identity: &Identity,
    ctx: &UploadContext<'_>,
) -> Result<Signature, RecordingSigError> {
    Ok(identity.sign_raw(&upload_message(ctx)?))
}

/// Verifies an upload proof's signature (the caller checks time and nonce).
pub fn verify_upload(
    key: &PublicKey,
    ctx: &UploadContext<'_>,
    signature: &Signature,
) -> Result<(), RecordingSigError> {
    key.verify_raw(&upload_message(ctx)?, signature)
        .map_err(|_: IdentityError| RecordingSigError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(byte: u8) -> Identity {
        Identity::from_seed(&zeroize::Zeroizing::new([byte; 32]))
    }

    #[test]
    fn manifest_signature_verifies_only_for_the_same_bytes_and_key() {
        let id = identity(1);
        let sig = sign_manifest(&id, b"manifest").unwrap_or_else(|e| panic!("{e}"));
        assert!(verify_manifest(&id.public_key(), b"manifest", &sig).is_ok());
        assert_eq!(
            verify_manifest(&id.public_key(), b"manifesT", &sig),
            Err(RecordingSigError::BadSignature)
        );
        assert!(verify_manifest(&identity(2).public_key(), b"manifest", &sig).is_err());
        assert_eq!(
            sign_manifest(&id, &[0; MAX_MANIFEST_LEN + 1]).err(),
            Some(RecordingSigError::ManifestLength)
        );
    }

    #[test]
    fn upload_proof_covers_every_field_and_is_length_prefixed() {
        let id = identity(3);
        let hash = [7u8; 32];
        let nonce = [9u8; 32];
        let ctx = UploadContext {
            method: "/tucdesk.v1.RecorderService/Upload",
            session_id: "s",
            ciphertext_sha256: &hash,
            offset: 5,
            timestamp_ms: 6,
            nonce: &nonce,
        };
        let msg = upload_message(&ctx).unwrap_or_default();
        let mut expected = UPLOAD_DOMAIN.to_vec();
        expected.extend_from_slice(&34u32.to_be_bytes());
        expected.extend_from_slice(ctx.method.as_bytes());
        expected.extend_from_slice(&1u32.to_be_bytes());
        expected.extend_from_slice(b"s");
        expected.extend_from_slice(&hash);
        expected.extend_from_slice(&5u64.to_be_bytes());
        expected.extend_from_slice(&6u64.to_be_bytes());
        expected.extend_from_slice(&nonce);
        assert_eq!(msg, expected);
        let sig = sign_upload(&id, &ctx).unwrap_or_else(|e| panic!("{e}"));
        assert!(verify_upload(&id.public_key(), &ctx, &sig).is_ok());
        let moved = UploadContext { offset: 6, ..ctx };
        assert!(verify_upload(&id.public_key(), &moved, &sig).is_err());
        let other_method = UploadContext {
            method: "/tucdesk.v1.RecorderService/GetUploadStatus",
            ..ctx
        };
        assert!(verify_upload(&id.public_key(), &other_method, &sig).is_err());
    }
}
