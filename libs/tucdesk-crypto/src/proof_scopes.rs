//! What each sensitive request's device proof covers (`docs/protocol.md`, "Device proofs"):
//! the gRPC method and the binding bytes over the request's values. One definition shared by
//! the services that verify proofs and the clients that make them, so the two cannot drift.

use sha2::{Digest as _, Sha256};

pub const LOGIN: &str = "/tucdesk.v1.AuthService/Login";
pub const REFRESH: &str = "/tucdesk.v1.AuthService/Refresh";
pub const CREATE_SUPPORT_CODE: &str = "/tucdesk.v1.AuthService/CreateSupportCode";
pub const REDEEM_SUPPORT_CODE: &str = "/tucdesk.v1.AuthService/RedeemSupportCode";
pub const APPROVE: &str = "/tucdesk.v1.OperatorService/Approve";
pub const DENY: &str = "/tucdesk.v1.OperatorService/Deny";
pub const TAG_AGENT: &str = "/tucdesk.v1.OperatorService/TagAgent";
pub const CREATE_ENROLLMENT_TOKEN: &str = "/tucdesk.v1.OperatorService/CreateEnrollmentToken";
pub const PUT_POLICY: &str = "/tucdesk.v1.OperatorService/PutPolicy";
/// The device-proof target of PutPolicy.
pub const PUT_POLICY_TARGET: &str = "policy";

pub const PUT_RECORDING_SETTINGS: &str = "/tucdesk.v1.OperatorService/PutRecordingSettings";
/// The device-proof target of PutRecordingSettings.
pub const PUT_RECORDING_SETTINGS_TARGET: &str = "recording-settings";

/// `u32be(count) ‖ (u32be(len) ‖ bytes)…`, the `list(xs)` of `docs/protocol.md`.
pub fn encode_list(items: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&u32::try_from(items.len()).unwrap_or(u32::MAX).to_be_bytes());
    for item in items {
        out.extend_from_slice(&u32::try_from(item.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(item.as_bytes());
    }
    out
}

/// Refresh: SHA-256 of the presented refresh token.
pub fn refresh_binding(refresh_token: &str) -> [u8; 32] {
    Sha256::digest(refresh_token.as_bytes()).into()
}

/// TagAgent: `SHA-256(list(add) ‖ list(remove))`.
pub fn tag_binding(add: &[String], remove: &[String]) -> Vec<u8> {
    let mut bytes = encode_list(add);
    bytes.extend_from_slice(&encode_list(remove));
    Sha256::digest(&bytes).to_vec()
}

/// CreateEnrollmentToken: `SHA-256(list(tags) ‖ u8(allow_host_tags) ‖ u32be(ttl_seconds))`.
pub fn enrollment_token_binding(
    tags: &[String],
    allow_host_tags: bool,
    ttl_seconds: u32,
) -> Vec<u8> {
    let mut bytes = encode_list(tags);
    bytes.push(u8::from(allow_host_tags));
    bytes.extend_from_slice(&ttl_seconds.to_be_bytes());
    Sha256::digest(&bytes).to_vec()
}

/// PutPolicy: `SHA-256(u64be(expected_version) ‖ yaml)`.
pub fn put_policy_binding(expected_version: u64, yaml: &str) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(expected_version.to_be_bytes());
    hash.update(yaml.as_bytes());
    hash.finalize().to_vec()
}

/// PutRecordingSettings, over the request's values as sent:
/// `SHA-256(u64be(expected_version) ‖ u32be(mode) ‖ list(recipients) ‖ list(labels))`.
pub fn put_recording_settings_binding(
    expected_version: u64,
    mode: i32,
    recipients: &[String],
    labels: &[String],
) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(expected_version.to_be_bytes());
    hash.update(mode.to_be_bytes());
    hash.update(encode_list(recipients));
    hash.update(encode_list(labels));
    hash.finalize().to_vec()
}

/// CreateSupportCode, over the request's values as sent:
/// `u32be(ttl_seconds) ‖ u32be(max_uses) ‖ u32be(kind)…`.
pub fn support_code_binding(ttl_seconds: u32, max_uses: u32, kinds: &[i32]) -> Vec<u8> {
    let mut binding = Vec::with_capacity(8 + 4 * kinds.len());
    binding.extend_from_slice(&ttl_seconds.to_be_bytes());
    binding.extend_from_slice(&max_uses.to_be_bytes());
    for kind in kinds {
        // The wire value's bits: an enum is an int32 on the wire, signed as u32be.
        binding.extend_from_slice(&kind.to_be_bytes());
    }
    binding
}

/// RedeemSupportCode: SHA-256 of the normalized code, so a proof covers one code only.
pub fn redeem_binding(code: &crate::SupportCode) -> [u8; 32] {
    Sha256::digest(code.normalized().as_bytes()).into()
}
