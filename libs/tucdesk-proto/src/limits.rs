//! Bounds the receiver of each message enforces before using a value.
//!
//! The proto comments state these numbers; this module is the one place
//! code takes them from. Exceeding a bound is `REJECT_REASON_INVALID_ARGUMENT`
//! (or `LIMIT_EXCEEDED` for counts and sizes of streams) for a request, and
//! closes only the offending session for a frame.

// --- fixed lengths ---------------------------------------------------------

/// Ed25519 public key (agent identity, operator device key).
pub const ED25519_PUBLIC_KEY_LEN: usize = 32;
/// Ed25519 signature.
pub const ED25519_SIGNATURE_LEN: usize = 64;
/// X25519 ephemeral public key (`e_op_pub`, `e_ag_pub`).
pub const X25519_PUBLIC_KEY_LEN: usize = 32;
/// SHA-256 output (hashes in audit entries, manifests, proofs).
pub const SHA256_LEN: usize = 32;
/// `RegistrationProof.nonce` and `UploadProof.nonce`.
pub const REGISTRATION_NONCE_LEN: usize = 32;
/// `agent_id`: unpadded base64url of a 32-byte key.
pub const AGENT_ID_LEN: usize = 43;
/// Canonical UUID text (`session_id`, `approval_id`, `event_id`, …).
pub const UUID_LEN: usize = 36;

// --- proofs and time ------------------------------------------------------

/// Allowed difference between a signer's `timestamp_ms` and the verifier's
/// clock (registration, device and upload proofs): ±30 s.
pub const MAX_CLOCK_SKEW_MS: u64 = 30_000;
/// Shortest `DeviceProof.nonce`.
pub const MIN_DEVICE_PROOF_NONCE_LEN: usize = 16;
/// Longest `DeviceProof.nonce`.
pub const MAX_DEVICE_PROOF_NONCE_LEN: usize = 32;
/// Longest server challenge (`BeginDeviceBindingResponse.challenge`).
pub const MAX_CHALLENGE_LEN: usize = 256;
/// Longest `RegistrationProof.audience` (rendezvous deployment id).
pub const MAX_AUDIENCE_LEN: usize = 255;
/// Longest token or ticket string accepted anywhere (access, session, relay).
pub const MAX_TOKEN_LEN: usize = 4 * 1024;
/// Longest code a person types (support code, enrollment token).
pub const MAX_CODE_INPUT_LEN: usize = 64;

// --- names, tags, text ----------------------------------------------------

/// Display names (agents, users, technicians).
pub const MAX_NAME_LEN: usize = 128;
/// Tags per agent.
pub const MAX_TAGS: usize = 32;
/// Bytes per tag (`[a-z0-9_.:=/-]`).
pub const MAX_TAG_LEN: usize = 64;
/// Tags in one `ListAgentsRequest` filter.
pub const MAX_TAG_FILTERS: usize = 8;
/// Each `HostInfo` string.
pub const MAX_HOST_FIELD_LEN: usize = 255;
/// `HostInfo.addresses` entries.
pub const MAX_HOST_ADDRESSES: usize = 16;
/// Human-readable messages, reasons and comments.
pub const MAX_MESSAGE_LEN: usize = 512;
/// URLs (relay, recorder, OAuth URIs).
pub const MAX_URL_LEN: usize = 512;

// --- paging ---------------------------------------------------------------

/// `PageRequest.page_size` when 0 is sent.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Largest `PageRequest.page_size`; larger values are capped, not refused.
pub const MAX_PAGE_SIZE: u32 = 500;
/// Longest `PageRequest.page_token`.
pub const MAX_PAGE_TOKEN_LEN: usize = 512;

// --- end-to-end frames ----------------------------------------------------

/// Largest encoded `Frame` (plaintext of one sealed frame). Equal to
/// `tucdesk_crypto::frame::MAX_FRAME_PLAINTEXT_LEN`.
pub const MAX_FRAME_LEN: usize = 64 * 1024;
/// Bytes a sealed frame adds: 8-byte counter + 16-byte GCM tag.
pub const SEALED_FRAME_OVERHEAD: usize = 8 + 16;
/// Largest sealed frame on any path (DataChannel, WebSocket relay).
pub const MAX_SEALED_FRAME_LEN: usize = MAX_FRAME_LEN + SEALED_FRAME_OVERHEAD;
/// `Output.data` and `ExecOutput.data`.
pub const MAX_OUTPUT_CHUNK_LEN: usize = 32 * 1024;
/// `Input.data` (larger pastes are split).
pub const MAX_INPUT_CHUNK_LEN: usize = 16 * 1024;
/// `ExecRequest.stdin` and `ExecStdin.data`.
pub const MAX_EXEC_STDIN_CHUNK_LEN: usize = 32 * 1024;
/// `Resize` / `TerminalSize` cols and rows: 1..=this.
pub const MAX_TERMINAL_DIMENSION: u32 = 1000;
/// Shortest `Ping.nonce` / `ServerPing.nonce`.
pub const MIN_PING_NONCE_LEN: usize = 8;
/// Longest `Ping.nonce` / `ServerPing.nonce`.
pub const MAX_PING_NONCE_LEN: usize = 32;
/// `Hello.features` entries, and bytes per entry.
pub const MAX_HELLO_FEATURES: usize = 16;
/// Bytes per `Hello.features` entry.
pub const MAX_FEATURE_LEN: usize = 32;

// --- exec -----------------------------------------------------------------

/// `ExecSpec.argv` entries (at least 1).
pub const MAX_EXEC_ARGS: usize = 256;
/// Bytes per argv entry.
pub const MAX_EXEC_ARG_LEN: usize = 4096;
/// Bytes of all argv entries together.
pub const MAX_EXEC_ARGV_TOTAL_LEN: usize = 16 * 1024;
/// `ExecSpec.env` entries.
pub const MAX_EXEC_ENV: usize = 64;
/// Bytes per environment variable name.
pub const MAX_EXEC_ENV_NAME_LEN: usize = 128;
/// Bytes per environment variable value.
pub const MAX_EXEC_ENV_VALUE_LEN: usize = 4096;
/// Bytes of all environment names and values together.
pub const MAX_EXEC_ENV_TOTAL_LEN: usize = 8 * 1024;
/// `ExecSpec.cwd`.
pub const MAX_EXEC_CWD_LEN: usize = 4096;
/// `ExecSpec.timeout_ms` (24 h).
pub const MAX_EXEC_TIMEOUT_MS: u32 = 24 * 60 * 60 * 1000;

// --- rendezvous -----------------------------------------------------------

/// Encoded `AgentMessage` / `ServerMessage` on the agent stream.
pub const MAX_AGENT_STREAM_MESSAGE_LEN: usize = 64 * 1024;
/// `Register.active_session_ids` entries.
pub const MAX_ACTIVE_SESSION_IDS: usize = 64;
/// `SessionDescription.sdp`.
pub const MAX_SDP_LEN: usize = 16 * 1024;
/// `IceCandidate.candidate`.
pub const MAX_ICE_CANDIDATE_LEN: usize = 1024;
/// Trickled candidates per side per session.
pub const MAX_ICE_CANDIDATES_PER_SIDE: usize = 64;
/// `IceServer.urls` entries (and `RelayHeartbeat` URL lists).
pub const MAX_ICE_URLS: usize = 8;
/// `Policy.yaml` / `PutPolicyRequest.yaml`.
pub const MAX_POLICY_YAML_LEN: usize = 256 * 1024;

// --- relay ----------------------------------------------------------------

/// Encoded `RelayHello` (one WebSocket message before pairing).
pub const MAX_RELAY_HELLO_LEN: usize = 8 * 1024;

// --- audit ----------------------------------------------------------------

/// `AuditEvent.context_json`.
pub const MAX_AUDIT_CONTEXT_JSON_LEN: usize = 16 * 1024;
/// Hashes in an inclusion or consistency proof.
pub const MAX_AUDIT_PROOF_HASHES: usize = 64;

// --- recordings -----------------------------------------------------------

/// `UploadRequest.chunk` and `GetRecordingResponse.chunk`.
pub const MAX_RECORDING_CHUNK_LEN: usize = 256 * 1024;
/// `RecordingManifest.ciphertext_size` (2 GiB).
pub const MAX_RECORDING_LEN: u64 = 2 * 1024 * 1024 * 1024;
/// `SignedRecordingManifest.manifest`.
pub const MAX_MANIFEST_LEN: usize = 16 * 1024;
/// Age recipients per recording / team.
pub const MAX_AGE_RECIPIENTS: usize = 16;

// --- transport --------------------------------------------------------------

/// Decoding limit every gRPC server and client sets
/// (`max_decoding_message_size`); the per-message bounds above are tighter.
pub const MAX_GRPC_MESSAGE_LEN: usize = 1024 * 1024;

// The largest chunks must fit inside their envelopes with room for framing.
const _: () = assert!(MAX_OUTPUT_CHUNK_LEN + 64 <= MAX_FRAME_LEN);
const _: () = assert!(MAX_EXEC_STDIN_CHUNK_LEN + 64 <= MAX_FRAME_LEN);
const _: () = assert!(MAX_RECORDING_CHUNK_LEN + 64 <= MAX_GRPC_MESSAGE_LEN);
const _: () = assert!(MAX_TOKEN_LEN + 256 <= MAX_RELAY_HELLO_LEN);
// An ExecSpec at its limits plus the inline stdin still fits one Frame.
const _: () = assert!(
    MAX_EXEC_ARGV_TOTAL_LEN
        + MAX_EXEC_ARGS * 3
        + MAX_EXEC_ENV_TOTAL_LEN
        + MAX_EXEC_ENV * 8
        + MAX_EXEC_CWD_LEN
        + MAX_EXEC_STDIN_CHUNK_LEN
        + 64
        <= MAX_FRAME_LEN
);
