//! Shared pieces of the TucDesk fuzz targets (see `docs/fuzzing.md`): the
//! crypto crate's fixed vectors, used as keys the targets trust, and the list
//! of protobuf messages that arrive from the network.
//!
//! Not a library anyone else uses: it exists so that the targets and
//! `examples/make_seeds.rs` agree on keys and message numbers.
#![forbid(unsafe_code)]

use std::fmt::Debug;
use std::sync::OnceLock;

use prost::Message;
use serde_json::Value;
use tucdesk_proto::v1;

/// `libs/tucdesk-crypto/tests/vectors.json`, the same file every other
/// implementation checks against. Targets use its keys and signed objects as
/// the only valid inputs a fuzzer can start from.
const VECTORS_JSON: &str = include_str!("../../libs/tucdesk-crypto/tests/vectors.json");

/// The parsed vectors file.
pub fn vectors() -> &'static Value {
    static VECTORS: OnceLock<Value> = OnceLock::new();
    VECTORS.get_or_init(|| serde_json::from_str(VECTORS_JSON).expect("vectors.json parses"))
}

/// The value at a JSON pointer in the vectors file (`/handshake/session_id`).
pub fn vector(pointer: &str) -> &'static Value {
    vectors()
        .pointer(pointer)
        .unwrap_or_else(|| panic!("vectors.json has no {pointer}"))
}

/// A string from the vectors file.
pub fn vector_str(pointer: &str) -> &'static str {
    vector(pointer)
        .as_str()
        .unwrap_or_else(|| panic!("vectors.json {pointer} is not a string"))
}

/// A `*_hex` field of the vectors file, decoded.
pub fn vector_bytes(pointer: &str) -> Vec<u8> {
    hex(vector_str(pointer))
}

/// A fixed-length `*_hex` field of the vectors file.
pub fn vector_array<const N: usize>(pointer: &str) -> [u8; N] {
    vector_bytes(pointer)
        .try_into()
        .unwrap_or_else(|_| panic!("vectors.json {pointer} is not {N} bytes"))
}

/// Lowercase or uppercase hex to bytes; panics on malformed input (the
/// vectors file is trusted).
/// Length of the tamper mask the handshake targets apply: `e_pub (32) ‖ signature (64)`.
pub const MASK_LEN: usize = tucdesk_crypto::handshake::X25519_LEN + 64;

/// XORs `mask` into `e_pub ‖ signature` (a tampered half of a handshake).
pub fn masked(
    e_pub: &tucdesk_crypto::EphemeralPublic,
    sig: &tucdesk_crypto::Signature,
    mask: &[u8; MASK_LEN],
) -> (tucdesk_crypto::EphemeralPublic, tucdesk_crypto::Signature) {
    let mut e = e_pub.to_bytes();
    let mut s = sig.to_bytes();
    for (b, m) in e.iter_mut().chain(s.iter_mut()).zip(mask) {
        *b ^= m;
    }
    (
        tucdesk_crypto::EphemeralPublic::from_bytes(e),
        tucdesk_crypto::Signature::from_bytes(s),
    )
}

pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Decodes `bytes` as `M`; when that succeeds, re-encodes, decodes again and
/// requires the same message and the same bytes (prost roundtrip), and that
/// `encoded_len` is exact. Decoding itself must never panic.
pub fn proto_roundtrip<M: Message + Default + PartialEq + Debug>(bytes: &[u8]) {
    let Ok(msg) = M::decode(bytes) else {
        return;
    };
    let encoded = msg.encode_to_vec();
    assert_eq!(encoded.len(), msg.encoded_len(), "encoded_len is not exact");
    let again = M::decode(encoded.as_slice()).expect("a re-encoded message decodes");
    assert_eq!(again, msg, "decode(encode(m)) != m");
    assert_eq!(
        again.encode_to_vec(),
        encoded,
        "encoding is not deterministic"
    );
}

macro_rules! wire_messages {
    ($($name:ident),* $(,)?) => {
        /// Every `tucdesk.v1` message a TucDesk process decodes from bytes it
        /// did not produce: the agent and session streams, end-to-end frame
        /// plaintext, NATS payloads, WebSocket relay messages, audit exports,
        /// recorder uploads, and every gRPC request and response (nested
        /// messages are reached through these). The index is the selector
        /// byte of the `proto_decode` target (modulo the length).
        pub const WIRE_MESSAGES: &[&str] = &[$(stringify!($name)),*];

        const CHECKS: &[fn(&[u8])] = &[$(proto_roundtrip::<v1::$name>),*];
    };
}

wire_messages! {
    // Connection streams, session plaintext, NATS payloads, exports.
    AgentMessage, ServerMessage, Frame, HandshakeInit, HandshakeReply, RegistrationProof,
    RelayHeartbeat, RelayHello, RelayControl, AgentDelivery, SessionDelivery, AuditEvent,
    AuditEntry, Checkpoint, ExportItem, InclusionProof, ConsistencyProof, UploadRequest,
    UploadResponse, UploadProof, RecordingManifest, SignedRecordingManifest,
    GetRecordingResponse, SessionSignal, ErrorDetail, DeviceProof, EnrollRequest,
    CreateSessionRequest, CreateSessionResponse, LoginRequest,
    // Every other gRPC request and response.
    AcceptInviteRequest, AcceptInviteResponse, Agent, Approval, ApprovalEvent,
    BeginDeviceBindingRequest, BeginDeviceBindingResponse, BeginTotpEnrollmentRequest,
    BeginTotpEnrollmentResponse, BindDeviceKeyRequest, ChangePasswordRequest,
    ChangePasswordResponse, ConfirmTotpEnrollmentRequest, ConfirmTotpEnrollmentResponse,
    ConnectivityInfo, CreateEnrollmentTokenRequest, CreateEnrollmentTokenResponse,
    CreateSupportCodeRequest, CreateSupportCodeResponse, CreateUserRequest, CreateUserResponse,
    DecideApprovalRequest, DisableTotpRequest, DisableTotpResponse, DrainRequest,
    EndSessionRequest, EnrollResponse, EnrollmentToken, ExplainPolicyRequest,
    ExportAuditRequest, GetAgentKeyRequest, GetAgentKeyResponse, GetAgentRequest,
    GetApprovalRequest, GetCheckpointRequest, GetConsistencyProofRequest,
    GetInclusionProofRequest, GetJwksRequest, GetPolicyRequest, GetRecordingRequest,
    GetServerInfoRequest, GetServerInfoResponse, GetSessionInfoRequest, GetSessionRequest,
    GetUploadStatusRequest, GetUserRequest, Jwks, ListAgentsRequest, ListAgentsResponse,
    ListApprovalsRequest, ListApprovalsResponse, ListCheckpointsRequest,
    ListCheckpointsResponse, ListEnrollmentTokensRequest, ListEnrollmentTokensResponse,
    ListOAuthClientsRequest, ListOAuthClientsResponse, ListOAuthGrantsRequest,
    ListOAuthGrantsResponse, ListRecordingsRequest, ListRecordingsResponse, ListSessionsRequest,
    ListSessionsResponse, ListSigningKeysRequest, ListSigningKeysResponse,
    ListSupportCodesRequest, ListSupportCodesResponse, ListUsersRequest, ListUsersResponse,
    LoginResponse, LogoutRequest, LogoutResponse, MintSessionTokenRequest,
    MintSessionTokenResponse, OAuthClient, OAuthGrant, Policy, PolicyResult, PutPolicyRequest,
    PutPolicyResponse, QueryAuditRequest, QueryAuditResponse, RedeemSupportCodeRequest,
    RedeemSupportCodeResponse, RefreshRequest, RegisterOAuthClientRequest, RelayStatus,
    RelayStatusRequest, RenameAgentRequest, RenewConnectivityRequest, ReportSessionRequest,
    ReportSessionResponse, RevokeAgentRequest, RevokeEnrollmentTokenRequest,
    RevokeOAuthClientRequest, RevokeOAuthGrantRequest, RevokeSupportCodeRequest, Session,
    SetUserDisabledRequest, SetUserRoleRequest, SupportCode, TagAgentRequest, TokenPair,
    UploadStatus, User, ValidatePolicyRequest, ValidatePolicyResponse, WatchApprovalsRequest,
    WhoAmIRequest, WhoAmIResponse,
    // Appended so the selector bytes of existing seeds keep their message.
    ResumeHandshake,
}

/// Runs [`proto_roundtrip`] for message number `index` of [`WIRE_MESSAGES`].
pub fn check_wire_message(index: usize, bytes: &[u8]) {
    CHECKS[index % CHECKS.len()](bytes);
}

/// The selector byte for a message name (for seeds).
pub fn wire_message_selector(name: &str) -> u8 {
    let index = WIRE_MESSAGES
        .iter()
        .position(|m| *m == name)
        .unwrap_or_else(|| panic!("{name} is not in WIRE_MESSAGES"));
    u8::try_from(index).expect("fewer than 256 wire messages")
}

// One selector byte must be able to reach every message.
const _: () = assert!(WIRE_MESSAGES.len() <= 256);
