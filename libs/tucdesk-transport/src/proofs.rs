//! The wire forms of the signatures clients make: device proofs (operators, SPEC §3) and
//! registration proofs (agents, SPEC §2). The signing itself is tucdesk-crypto's; this is only
//! the mapping onto the protobuf messages, in one place for the viewer, the agent and the
//! test harness.

use tucdesk_crypto::registration::{
    RegistrationProof as SignedRegistration, RegistrationProofCreateError,
};
use tucdesk_crypto::{DeviceProofContext, DeviceProofError, Identity};
use tucdesk_proto::v1::{DeviceProof, RegistrationProof};

/// A device proof by `device` over the request context, at `now_ms`.
pub fn device_proof(
    device: &Identity,
    ctx: &DeviceProofContext<'_>,
    now_ms: u64,
) -> Result<DeviceProof, DeviceProofError> {
    let proof = tucdesk_crypto::DeviceProof::create(device, ctx, now_ms)?;
    Ok(DeviceProof {
        public_key: proof.public_key.to_bytes().to_vec(),
        timestamp_ms: proof.timestamp_ms,
        nonce: proof.nonce,
        signature: proof.signature.to_bytes().to_vec(),
        challenge: ctx.challenge.to_vec(),
    })
}

/// A signed registration proof as the wire carries it.
pub fn wire_registration(proof: &SignedRegistration) -> RegistrationProof {
    RegistrationProof {
        agent_pubkey: proof.agent_key.to_bytes().to_vec(),
        nonce: proof.nonce.to_vec(),
        timestamp_ms: proof.timestamp_ms,
        signature: proof.signature.to_bytes().to_vec(),
        audience: proof.audience.clone(),
    }
}

/// A fresh registration proof by `identity` for `audience`, signed at `now_ms`.
pub fn registration_proof(
    identity: &Identity,
    audience: &str,
    now_ms: u64,
) -> Result<RegistrationProof, RegistrationProofCreateError> {
    Ok(wire_registration(&SignedRegistration::create(
        identity, audience, now_ms,
    )?))
}
