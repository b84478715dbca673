//! Recording manifests and upload proofs (`recorder.proto`): built and signed by the agent,
//! verified by the recorder (against the key rendezvous reports) and by the viewer (against
//! its `known_agents` pin).

use prost::Message as _;
use tucdesk_crypto::recording::{self as sig, UploadContext};
use tucdesk_crypto::{Identity, PublicKey, Signature};
use tucdesk_proto::limits::{MAX_MANIFEST_LEN, MAX_RECORDING_LEN};
use tucdesk_proto::v1::{RecordingManifest, SessionKind, SignedRecordingManifest, UploadProof};

use crate::keys::parse_recipients;
use crate::spool::{FinishedRecording, SpoolMeta};

/// `RecordingManifest.format_version` of this layout.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;
/// `RecordingManifest.cast_format`.
pub const CAST_FORMAT: &str = "asciinema-v2";
/// Longest operator user id / display name.
pub const MAX_OPERATOR_FIELD_LEN: usize = 128;
/// Longest team id.
pub const MAX_TEAM_ID_LEN: usize = 128;
/// Longest agent version.
pub const MAX_AGENT_VERSION_LEN: usize = 64;
/// Full gRPC path of Upload (signed into its proof).
pub const UPLOAD_METHOD: &str = "/tucdesk.v1.RecorderService/Upload";
/// Full gRPC path of GetUploadStatus (signed into its proof).
pub const UPLOAD_STATUS_METHOD: &str = "/tucdesk.v1.RecorderService/GetUploadStatus";
/// Exact lengths.
pub const HASH_LEN: usize = 32;
pub const NONCE_LEN: usize = tucdesk_crypto::recording::UPLOAD_NONCE_LEN;
pub const SIGNATURE_LEN: usize = tucdesk_crypto::identity::SIGNATURE_LEN;

/// Why a manifest or proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("invalid manifest: {0}")]
    Invalid(String),
    #[error("the manifest signature does not verify")]
    BadSignature,
    #[error("the manifest was signed by another agent")]
    WrongAgent,
    #[error("invalid upload proof: {0}")]
    ProofInvalid(&'static str),
    #[error("the upload proof is outside the ±30 s window")]
    ProofStale,
    #[error("the upload proof signature does not verify")]
    ProofBadSignature,
}

fn invalid(message: impl Into<String>) -> ManifestError {
    ManifestError::Invalid(message.into())
}

/// Builds the manifest for a finished recording of the session in `meta`.
pub fn build_manifest(
    meta: &SpoolMeta,
    recording: &FinishedRecording,
    ended_at_ms: u64,
    agent_version: &str,
) -> RecordingManifest {
    RecordingManifest {
        format_version: MANIFEST_FORMAT_VERSION,
        session_id: meta.session_id.clone(),
        agent_id: meta.agent_id.clone(),
        team_id: meta.team_id.clone(),
        operator_user_id: meta.operator_user_id.clone(),
        operator_display: meta.operator_display.clone(),
        kind: meta.kind,
        started_at_ms: meta.started_at_ms,
        ended_at_ms: ended_at_ms.max(meta.started_at_ms),
        plaintext_size: recording.plaintext_size,
        plaintext_sha256: recording.plaintext_sha256.to_vec(),
        ciphertext_size: recording.ciphertext_size,
        ciphertext_sha256: recording.ciphertext_sha256.to_vec(),
        age_recipients: meta.recipients.clone(),
        cast_format: CAST_FORMAT.to_owned(),
        agent_version: agent_version.to_owned(),
    }
}

/// Checks every bound of a manifest (proto comments, docs/protocol.md §13).
pub fn check_manifest(m: &RecordingManifest) -> Result<(), ManifestError> {
    if m.format_version != MANIFEST_FORMAT_VERSION {
        return Err(invalid("format_version must be 1"));
    }
    tucdesk_proto::validate::uuid("session_id", &m.session_id)
        .map_err(|err| invalid(err.to_string()))?;
    tucdesk_proto::validate::agent_id("agent_id", &m.agent_id)
        .map_err(|err| invalid(err.to_string()))?;
    if m.team_id.is_empty() || m.team_id.len() > MAX_TEAM_ID_LEN {
        return Err(invalid("team_id must be 1..=128 bytes"));
    }
    if m.operator_user_id.len() > MAX_OPERATOR_FIELD_LEN
        || m.operator_display.len() > MAX_OPERATOR_FIELD_LEN
    {
        return Err(invalid("operator fields must be at most 128 bytes"));
    }
    if SessionKind::try_from(m.kind).is_err() {
        return Err(invalid("unknown session kind"));
    }
    if m.ended_at_ms < m.started_at_ms || m.started_at_ms == 0 {
        return Err(invalid(
            "started_at_ms must be set and not after ended_at_ms",
        ));
    }
    if m.plaintext_sha256.len() != HASH_LEN || m.ciphertext_sha256.len() != HASH_LEN {
        return Err(invalid("hashes must be exactly 32 bytes"));
    }
    if m.ciphertext_size == 0 || m.ciphertext_size > MAX_RECORDING_LEN {
        return Err(invalid("ciphertext_size must be 1..=2 GiB"));
    }
    if m.plaintext_size > MAX_RECORDING_LEN {
        return Err(invalid("plaintext_size must be at most 2 GiB"));
    }
    parse_recipients(&m.age_recipients).map_err(|err| invalid(err.to_string()))?;
    if m.cast_format != CAST_FORMAT {
        return Err(invalid("cast_format must be asciinema-v2"));
    }
    if m.agent_version.len() > MAX_AGENT_VERSION_LEN {
        return Err(invalid("agent_version must be at most 64 bytes"));
    }
    Ok(())
}

/// Checks, encodes and signs a manifest with the agent's identity.
pub fn sign_manifest(
    identity: &Identity,
    manifest: &RecordingManifest,
) -> Result<SignedRecordingManifest, ManifestError> {
    check_manifest(manifest)?;
    if manifest.agent_id != identity.agent_id() {
        return Err(ManifestError::WrongAgent);
    }
    let bytes = manifest.encode_to_vec();
    if bytes.len() > MAX_MANIFEST_LEN {
        return Err(invalid("the encoded manifest exceeds 16 KiB"));
    }
    let signature = sig::sign_manifest(identity, &bytes).map_err(|err| invalid(err.to_string()))?;
    Ok(SignedRecordingManifest {
        manifest: bytes,
        signature: signature.to_bytes().to_vec(),
    })
}

/// Decodes and checks a signed manifest without verifying the signature: for finding the
/// agent whose key verifies it. Never trust the result before [`verify_manifest`].
pub fn decode_manifest(
    signed: &SignedRecordingManifest,
) -> Result<RecordingManifest, ManifestError> {
    if signed.manifest.is_empty() || signed.manifest.len() > MAX_MANIFEST_LEN {
        return Err(invalid("the manifest must be 1..=16 KiB"));
    }
    if signed.signature.len() != SIGNATURE_LEN {
        return Err(invalid("the signature must be exactly 64 bytes"));
    }
    let manifest = RecordingManifest::decode(signed.manifest.as_slice())
        .map_err(|_| invalid("the manifest does not decode"))?;
    check_manifest(&manifest)?;
    Ok(manifest)
}

/// Verifies a signed manifest against the agent key `key` (the recorder: the key rendezvous
/// reports; the viewer: its pin) and returns the manifest. The manifest's `agent_id` must be
/// that key's.
pub fn verify_manifest(
    signed: &SignedRecordingManifest,
    key: &PublicKey,
) -> Result<RecordingManifest, ManifestError> {
    let manifest = decode_manifest(signed)?;
    if manifest.agent_id != key.agent_id() {
        return Err(ManifestError::WrongAgent);
    }
    let signature = Signature::from_slice(&signed.signature).ok_or(ManifestError::BadSignature)?;
    sig::verify_manifest(key, &signed.manifest, &signature)
        .map_err(|_| ManifestError::BadSignature)?;
    Ok(manifest)
}

/// Makes the proof for one upload call (`method` = [`UPLOAD_METHOD`] with the call's offset,
/// or [`UPLOAD_STATUS_METHOD`] with offset 0) at `now_ms`, with a fresh random nonce.
pub fn make_upload_proof(
    identity: &Identity,
    method: &str,
    session_id: &str,
    ciphertext_sha256: &[u8; HASH_LEN],
    offset: u64,
    now_ms: u64,
) -> Result<UploadProof, ManifestError> {
    let nonce: [u8; NONCE_LEN] = tucdesk_crypto::rng::random_array()
        .map_err(|_| ManifestError::ProofInvalid("no randomness"))?;
    let ctx = UploadContext {
        method,
        session_id,
        ciphertext_sha256,
        offset,
        timestamp_ms: now_ms,
        nonce: &nonce,
    };
    let signature =
        sig::sign_upload(identity, &ctx).map_err(|_| ManifestError::ProofInvalid("fields"))?;
    Ok(UploadProof {
        timestamp_ms: now_ms,
        nonce: nonce.to_vec(),
        signature: signature.to_bytes().to_vec(),
    })
}

/// Verifies an upload proof's lengths, time (±30 s of `now_ms`) and signature. Returns the
/// nonce, which the caller must record as used (and refuse when it was).
pub fn verify_upload_proof(
    proof: &UploadProof,
    key: &PublicKey,
    method: &str,
    session_id: &str,
    ciphertext_sha256: &[u8],
    offset: u64,
    now_ms: u64,
) -> Result<[u8; NONCE_LEN], ManifestError> {
    let nonce = <[u8; NONCE_LEN]>::try_from(proof.nonce.as_slice())
        .map_err(|_| ManifestError::ProofInvalid("the nonce must be exactly 32 bytes"))?;
    let hash = <&[u8; HASH_LEN]>::try_from(ciphertext_sha256)
        .map_err(|_| ManifestError::ProofInvalid("the hash must be exactly 32 bytes"))?;
    let signature = Signature::from_slice(&proof.signature).ok_or(ManifestError::ProofInvalid(
        "the signature must be exactly 64 bytes",
    ))?;
    tucdesk_crypto::check_clock_skew(proof.timestamp_ms, now_ms)
        .map_err(|_| ManifestError::ProofStale)?;
    let ctx = UploadContext {
        method,
        session_id,
        ciphertext_sha256: hash,
        offset,
        timestamp_ms: proof.timestamp_ms,
        nonce: &nonce,
    };
    sig::verify_upload(key, &ctx, &signature).map_err(|_| ManifestError::ProofBadSignature)?;
    Ok(nonce)
}

#[cfg(test)]
mod tests;
