//! The signed, hash-chained audit log entry (SPEC §6).
//!
//! Each team has one chain. Entry `seq` (1, 2, 3, … with no gaps) carries the
//! event, `prev_hash` (the previous entry's hash, all zero for seq 1),
//! `hash = SHA-256(canonical_bytes)` and `sig = Ed25519(audit key, hash)`.
//! Anyone holding the audit public key can check an export offline with
//! [`verify_chain`], which names the first broken seq and why.
//!
//! The canonical byte layout is the contract every verifier implements; it is
//! specified in `docs/audit-format.md` and pinned by `tests/vectors.json`.
//! The canonical JSON used for the event's `context` is module
//! [`canonical_json`]. Submodules `entry` (canonical bytes, hashing,
//! single-entry verification, export lines) and `chain` (appending and chain
//! verification) are private; their items are re-exported here.

use serde::{Deserialize, Serialize};

use crate::merkle::{HASH_LEN, Hash, SIGNATURE_LEN, hex_serde};

pub mod canonical_json;
mod chain;
mod entry;
pub mod export;

pub use canonical_json::CanonicalJsonError;
pub use chain::{
    AuditError, ChainBuilder, ChainError, ChainFailure, ChainHead, LinkError, append, verify_chain,
    verify_chain_from, verify_link,
};
pub use entry::{
    EntryError, EntryParseError, EventError, canonical_bytes, entry_hash, verify_entry,
};

/// Domain tag at the start of an entry's canonical bytes. The version suffix
/// changes whenever the layout does, so old and new entries never collide.
pub const ENTRY_DOMAIN_TAG: &[u8] = b"tucdesk-audit-entry-v1";

/// `prev_hash` of the first entry (seq 1) of every chain.
pub const GENESIS_PREV_HASH: Hash = [0u8; HASH_LEN];

/// Max bytes of an identifier: `team_id`, `actor.id`, `session_id`,
/// `approver`, checkpoint `key_id`. Base64url Ed25519 ids are 43 bytes and
/// UUIDs 36; 128 leaves room for prefixed forms without admitting blobs.
pub const MAX_ID_LEN: usize = 128;

/// Max bytes of `actor.display` (a human-readable name or email).
pub const MAX_DISPLAY_LEN: usize = 256;

/// Max bytes of `action` (`auth.login`, `session.start`, …).
pub const MAX_ACTION_LEN: usize = 128;

/// Max bytes of `target` (an agent id, a tag selector, a user, a path).
pub const MAX_TARGET_LEN: usize = 512;

/// Max bytes of `policy_result.rule`.
pub const MAX_RULE_LEN: usize = 256;

/// Max bytes of `policy_result.reason`.
pub const MAX_REASON_LEN: usize = 1024;

/// Max bytes of `context` in canonical JSON. Audit rows are stored, exported
/// and shipped to SIEMs for years; large payloads (recordings, outputs)
/// belong in their own stores and are referenced by hash from the context.
pub const MAX_CONTEXT_BYTES: usize = 16 * 1024;

/// Max nesting depth of `context` (the top-level object is depth 1). Bounds
/// recursion in every parser and canonicalizer that touches it.
pub const MAX_CONTEXT_DEPTH: usize = 32;

/// Max length of one NDJSON export line holding one entry. JSON escaping can
/// blow a control character up to 6 bytes, so this is generous next to
/// [`MAX_CANONICAL_ENTRY_BYTES`]; readers check it before parsing.
pub const MAX_ENTRY_JSON_LEN: usize = 256 * 1024;

/// Length of a canonical UUID string (`8-4-4-4-12` lowercase hex).
const UUID_LEN: usize = 36;

/// Upper bound of [`canonical_bytes`] output, for sizing buffers and columns:
/// the fixed-size parts, four option flags, thirteen 4-byte length prefixes
/// and every field at its limit.
pub const MAX_CANONICAL_ENTRY_BYTES: usize = ENTRY_DOMAIN_TAG.len()
    + 8 // seq
    + HASH_LEN // prev_hash
    + 8 // occurred_at
    + 4 // option flags: display, session_id, policy_result, approver
    + 4 * 13 // length prefixes
    + MAX_ID_LEN // team_id
    + UUID_LEN // event_id
    + 7 // actor kind, longest is "service"
    + MAX_ID_LEN // actor.id
    + MAX_DISPLAY_LEN
    + MAX_ACTION_LEN
    + MAX_TARGET_LEN
    + MAX_ID_LEN // session_id
    + 17 // decision, longest is "approval_required"
    + MAX_RULE_LEN
    + MAX_REASON_LEN
    + MAX_ID_LEN // approver
    + MAX_CONTEXT_BYTES;

/// Who performed the action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A person (operator, admin) authenticated by the auth service.
    User,
    /// A managed host's `tucdesk-agent`, by its identity key.
    Agent,
    /// A TucDesk service acting on its own (relay, recorder, …).
    Service,
    /// The system itself (schedulers, expiry, startup).
    System,
}

impl ActorKind {
    /// The wire name, also used in canonical bytes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Agent => "agent",
            Self::Service => "service",
            Self::System => "system",
        }
    }
}

/// The actor of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    pub kind: ActorKind,
    /// Stable id (user id, agent id, service name); never a display name.
    pub id: String,
    /// Human-readable name at the time of the event, for SIEM readability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

/// Outcome of policy evaluation (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyDecision {
    Allow,
    Deny,
    /// The request waits for a human approval (a later event records the
    /// approval or the denial).
    ApprovalRequired,
}

impl PolicyDecision {
    /// The wire name, also used in canonical bytes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::ApprovalRequired => "approval_required",
        }
    }
}

/// The decision, the rule that decided it, why, and who approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyResult {
    pub decision: PolicyDecision,
    pub rule: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
}

/// One audit event as producers publish it (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// Canonical lowercase UUID; also the JetStream de-duplication id.
    pub event_id: String,
    pub team_id: String,
    pub actor: Actor,
    /// Dotted lowercase name: `[a-z][a-z0-9_]*` segments, at least two
    /// (`auth.login`, `session.start`, `policy.decision`).
    pub action: String,
    /// What the action was applied to; may be empty when there is none.
    pub target: String,
    /// When the action happened, unix milliseconds (producer clock).
    pub occurred_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_result: Option<PolicyResult>,
    /// Free-form details, hashed as canonical JSON. Parsed strictly:
    /// duplicate keys, non-finite numbers and over-deep nesting are errors.
    #[serde(default, deserialize_with = "canonical_json::deserialize_object")]
    pub context: serde_json::Map<String, serde_json::Value>,
}

/// One link of a team's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub seq: u64,
    #[serde(with = "hex_serde::hash")]
    pub prev_hash: Hash,
    pub event: AuditEvent,
    #[serde(with = "hex_serde::hash")]
    pub hash: Hash,
    #[serde(with = "hex_serde::sig")]
    pub sig: [u8; SIGNATURE_LEN],
}
