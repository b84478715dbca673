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
//! This file also holds the canonical JSON used for the event's `context`
//! (module [`canonical_json`]); both live here because the module layout of
//! the crate is fixed.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::merkle::{HASH_LEN, Hash, SIGNATURE_LEN, hashes_equal, hex_serde, sha256};

pub use canonical_json::CanonicalJsonError;

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

/// Why an event cannot be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("field {field} is longer than {max} bytes")]
    TooLong { field: &'static str, max: usize },
    #[error("field {field} must not be empty")]
    Empty { field: &'static str },
    #[error("event_id is not a canonical lowercase UUID")]
    BadEventId,
    #[error("action is not a dotted lowercase name")]
    BadAction,
    #[error("context: {0}")]
    Context(#[from] CanonicalJsonError),
}

/// Why an entry could not be appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("invalid event: {0}")]
    InvalidEvent(#[from] EventError),
    #[error("event belongs to team {found}, chain belongs to team {expected}")]
    TeamMismatch { expected: String, found: String },
    #[error("the chain head's stored hash does not match its contents")]
    CorruptHead,
    #[error("sequence number space exhausted")]
    SeqOverflow,
}

/// Why a single entry does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("invalid event: {0}")]
    InvalidEvent(#[from] EventError),
    #[error("seq 0 is never valid; chains start at 1")]
    ZeroSeq,
    #[error("hash does not match the entry's contents")]
    BadHash,
    #[error("signature does not verify under the audit key")]
    BadSignature,
}

/// Why two entries are not consecutive links of one chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("entries belong to different teams ({prev} then {next})")]
    WrongTeam { prev: String, next: String },
    #[error("expected seq {expected}, found {found}")]
    SeqNotNext { expected: u64, found: u64 },
    #[error("prev_hash does not match the previous entry's hash")]
    PrevHashMismatch,
    #[error("sequence number space exhausted")]
    SeqOverflow,
}

/// What is wrong at the first broken position of a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainFailure {
    #[error("invalid event: {0}")]
    InvalidEvent(EventError),
    #[error("seq 0 is never valid")]
    ZeroSeq,
    #[error("bad hash: the entry was modified")]
    BadHash,
    #[error("bad signature: not signed by this audit key")]
    BadSignature,
    #[error("broken link: prev_hash does not match the previous entry")]
    BrokenLink,
    #[error("gap: found seq {found}, entries are missing before it")]
    Gap { found: u64 },
    #[error("duplicate or reordered entry: found seq {found}")]
    Replayed { found: u64 },
    #[error("entry belongs to team {found}, chain belongs to team {expected}")]
    WrongTeam { expected: String, found: String },
    #[error("sequence number space exhausted")]
    SeqOverflow,
}

impl From<EntryError> for ChainFailure {
    fn from(e: EntryError) -> Self {
        match e {
            EntryError::InvalidEvent(e) => Self::InvalidEvent(e),
            EntryError::ZeroSeq => Self::ZeroSeq,
            EntryError::BadHash => Self::BadHash,
            EntryError::BadSignature => Self::BadSignature,
        }
    }
}

/// The first broken position of a chain. `seq` is the sequence number the
/// verifier expected there: every entry before it verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at seq {seq}: {reason}")]
pub struct ChainError {
    pub seq: u64,
    pub reason: ChainFailure,
}

/// The last verified (or appended) entry of a chain: enough to continue it or
/// to verify a continuation without the earlier entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainHead {
    pub team_id: String,
    pub seq: u64,
    #[serde(with = "hex_serde::hash")]
    pub hash: Hash,
}

impl ChainHead {
    /// The head an entry would make (trusting its stored hash).
    pub fn of(entry: &Entry) -> Self {
        Self {
            team_id: entry.event.team_id.clone(),
            seq: entry.seq,
            hash: entry.hash,
        }
    }
}

// ---------------------------------------------------------------------------
// Canonical bytes
// ---------------------------------------------------------------------------

fn check_len(field: &'static str, s: &str, max: usize) -> Result<(), EventError> {
    if s.len() > max {
        Err(EventError::TooLong { field, max })
    } else {
        Ok(())
    }
}

fn check_nonempty(field: &'static str, s: &str, max: usize) -> Result<(), EventError> {
    if s.is_empty() {
        return Err(EventError::Empty { field });
    }
    check_len(field, s, max)
}

fn is_canonical_uuid(s: &str) -> bool {
    s.len() == UUID_LEN
        && s.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => matches!(c, b'0'..=b'9' | b'a'..=b'f'),
        })
}

fn is_dotted_name(s: &str) -> bool {
    let mut segments = 0usize;
    for seg in s.split('.') {
        let mut bytes = seg.bytes();
        let first_ok = matches!(bytes.next(), Some(b'a'..=b'z'));
        if !first_ok || !bytes.all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_')) {
            return false;
        }
        segments += 1;
    }
    segments >= 2
}

/// Appends `u32be(len) ‖ bytes`. Callers bound `bytes` far below 4 GiB.
fn put_bytes(out: &mut Vec<u8>, field: &'static str, bytes: &[u8]) -> Result<(), EventError> {
    let len = u32::try_from(bytes.len()).map_err(|_| EventError::TooLong {
        field,
        max: u32::MAX as usize,
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn put_str(out: &mut Vec<u8>, field: &'static str, s: &str, max: usize) -> Result<(), EventError> {
    check_len(field, s, max)?;
    put_bytes(out, field, s.as_bytes())
}

/// Option flag byte: 0x00 absent, 0x01 present (then the value follows).
fn put_opt_str(
    out: &mut Vec<u8>,
    field: &'static str,
    s: Option<&str>,
    max: usize,
) -> Result<(), EventError> {
    match s {
        None => out.push(0x00),
        Some(s) => {
            out.push(0x01);
            put_str(out, field, s, max)?;
        }
    }
    Ok(())
}

impl AuditEvent {
    /// Checks every bound and format rule without hashing.
    pub fn validate(&self) -> Result<(), EventError> {
        canonical_bytes(1, &GENESIS_PREV_HASH, self).map(|_| ())
    }
}

/// The canonical bytes of the entry `(seq, prev_hash, event)`: the exact
/// input to SHA-256. `str(s) = u32be(len(s)) ‖ utf8(s)`; `opt(x) = 0x00` if
/// absent or `0x01 ‖ x`; integers are big-endian.
///
/// ```text
/// "tucdesk-audit-entry-v1" ‖ u64be(seq) ‖ prev_hash[32]
/// ‖ str(team_id) ‖ str(event_id)
/// ‖ str(actor.kind) ‖ str(actor.id) ‖ opt(str(actor.display))
/// ‖ str(action) ‖ str(target) ‖ u64be(occurred_at) ‖ opt(str(session_id))
/// ‖ opt(str(decision) ‖ str(rule) ‖ str(reason) ‖ opt(str(approver)))
/// ‖ str(canonical_json(context))
/// ```
///
/// Fails if any field breaks its bound or format, so an oversize or
/// malformed event is never signed.
pub fn canonical_bytes(
    seq: u64,
    prev_hash: &Hash,
    event: &AuditEvent,
) -> Result<Vec<u8>, EventError> {
    if !is_canonical_uuid(&event.event_id) {
        return Err(EventError::BadEventId);
    }
    check_nonempty("team_id", &event.team_id, MAX_ID_LEN)?;
    check_nonempty("actor.id", &event.actor.id, MAX_ID_LEN)?;
    check_len("action", &event.action, MAX_ACTION_LEN)?;
    if !is_dotted_name(&event.action) {
        return Err(EventError::BadAction);
    }
    if let Some(session_id) = &event.session_id {
        check_nonempty("session_id", session_id, MAX_ID_LEN)?;
    }
    let context = canonical_json::to_vec(&event.context, MAX_CONTEXT_BYTES, MAX_CONTEXT_DEPTH)?;

    let mut out = Vec::with_capacity(512 + context.len());
    out.extend_from_slice(ENTRY_DOMAIN_TAG);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(prev_hash);
    put_str(&mut out, "team_id", &event.team_id, MAX_ID_LEN)?;
    put_str(&mut out, "event_id", &event.event_id, UUID_LEN)?;
    put_str(
        &mut out,
        "actor.kind",
        event.actor.kind.as_str(),
        MAX_ID_LEN,
    )?;
    put_str(&mut out, "actor.id", &event.actor.id, MAX_ID_LEN)?;
    put_opt_str(
        &mut out,
        "actor.display",
        event.actor.display.as_deref(),
        MAX_DISPLAY_LEN,
    )?;
    put_str(&mut out, "action", &event.action, MAX_ACTION_LEN)?;
    put_str(&mut out, "target", &event.target, MAX_TARGET_LEN)?;
    out.extend_from_slice(&event.occurred_at.to_be_bytes());
    put_opt_str(
        &mut out,
        "session_id",
        event.session_id.as_deref(),
        MAX_ID_LEN,
    )?;
    match &event.policy_result {
        None => out.push(0x00),
        Some(p) => {
            out.push(0x01);
            put_str(
                &mut out,
                "policy_result.decision",
                p.decision.as_str(),
                MAX_ID_LEN,
            )?;
            put_str(&mut out, "policy_result.rule", &p.rule, MAX_RULE_LEN)?;
            put_str(&mut out, "policy_result.reason", &p.reason, MAX_REASON_LEN)?;
            if let Some(a) = &p.approver {
                check_nonempty("policy_result.approver", a, MAX_ID_LEN)?;
            }
            put_opt_str(
                &mut out,
                "policy_result.approver",
                p.approver.as_deref(),
                MAX_ID_LEN,
            )?;
        }
    }
    put_bytes(&mut out, "context", &context)?;
    Ok(out)
}

/// `SHA-256(canonical_bytes(seq, prev_hash, event))`.
pub fn entry_hash(seq: u64, prev_hash: &Hash, event: &AuditEvent) -> Result<Hash, EventError> {
    Ok(sha256(&[&canonical_bytes(seq, prev_hash, event)?]))
}

impl Entry {
    /// Canonical bytes of this entry (see [`canonical_bytes`]).
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, EventError> {
        canonical_bytes(self.seq, &self.prev_hash, &self.event)
    }

    /// Recomputes the hash from the contents (ignores the stored `hash`).
    pub fn compute_hash(&self) -> Result<Hash, EventError> {
        entry_hash(self.seq, &self.prev_hash, &self.event)
    }

    /// One NDJSON export line (no trailing newline).
    pub fn to_json_line(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Parses one NDJSON export line, refusing lines over
    /// [`MAX_ENTRY_JSON_LEN`] before parsing. Parsing does not verify.
    pub fn from_json_line(line: &str) -> Result<Self, EntryParseError> {
        if line.len() > MAX_ENTRY_JSON_LEN {
            return Err(EntryParseError::TooLong {
                max: MAX_ENTRY_JSON_LEN,
            });
        }
        serde_json::from_str(line).map_err(|e| EntryParseError::Json(e.to_string()))
    }
}

/// Why an export line is not an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryParseError {
    #[error("entry line is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("entry line is not valid entry JSON: {0}")]
    Json(String),
}

// ---------------------------------------------------------------------------
// Appending
// ---------------------------------------------------------------------------

/// Appends events to one team's chain, keeping only the head in memory.
/// The audit service owns one per team and serializes appends to it.
#[derive(Debug, Clone)]
pub struct ChainBuilder {
    team_id: String,
    head: Option<(u64, Hash)>,
}

impl ChainBuilder {
    /// A new, empty chain for `team_id`: the first append gets seq 1.
    pub fn new(team_id: impl Into<String>) -> Result<Self, AuditError> {
        let team_id = team_id.into();
        check_nonempty("team_id", &team_id, MAX_ID_LEN)?;
        Ok(Self {
            team_id,
            head: None,
        })
    }

    /// Continues a chain after its stored last entry. Recomputes that entry's
    /// hash first so a corrupted row is never built upon.
    pub fn resume(last: &Entry) -> Result<Self, AuditError> {
        if last.seq == 0 {
            return Err(AuditError::CorruptHead);
        }
        if !hashes_equal(&last.compute_hash()?, &last.hash) {
            return Err(AuditError::CorruptHead);
        }
        Ok(Self {
            team_id: last.event.team_id.clone(),
            head: Some((last.seq, last.hash)),
        })
    }

    /// The team this chain belongs to.
    pub fn team_id(&self) -> &str {
        &self.team_id
    }

    /// The seq the next append will get.
    pub fn next_seq(&self) -> Option<u64> {
        match self.head {
            None => Some(1),
            Some((seq, _)) => seq.checked_add(1),
        }
    }

    /// The last appended entry, if any.
    pub fn head(&self) -> Option<ChainHead> {
        self.head.map(|(seq, hash)| ChainHead {
            team_id: self.team_id.clone(),
            seq,
            hash,
        })
    }

    /// Hashes and signs `event` as the next entry.
    pub fn append(&mut self, event: AuditEvent, key: &SigningKey) -> Result<Entry, AuditError> {
        if event.team_id != self.team_id {
            return Err(AuditError::TeamMismatch {
                expected: self.team_id.clone(),
                found: event.team_id,
            });
        }
        let seq = self.next_seq().ok_or(AuditError::SeqOverflow)?;
        let prev_hash = self.head.map_or(GENESIS_PREV_HASH, |(_, h)| h);
        let hash = entry_hash(seq, &prev_hash, &event)?;
        let sig = key.sign(&hash).to_bytes();
        self.head = Some((seq, hash));
        Ok(Entry {
            seq,
            prev_hash,
            event,
            hash,
            sig,
        })
    }
}

/// Appends `event` after `prev` (or starts a chain when `prev` is `None`).
/// Same as [`ChainBuilder::resume`] + [`ChainBuilder::append`].
pub fn append(
    prev: Option<&Entry>,
    event: AuditEvent,
    key: &SigningKey,
) -> Result<Entry, AuditError> {
    let mut builder = match prev {
        None => ChainBuilder::new(event.team_id.clone())?,
        Some(p) => ChainBuilder::resume(p)?,
    };
    builder.append(event, key)
}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

/// Checks one entry on its own: the event is well-formed, the stored hash is
/// the hash of the contents, and the signature over it verifies (strict
/// Ed25519) under the audit key.
pub fn verify_entry(entry: &Entry, key: &VerifyingKey) -> Result<(), EntryError> {
    if entry.seq == 0 {
        return Err(EntryError::ZeroSeq);
    }
    let computed = entry.compute_hash()?;
    if !hashes_equal(&computed, &entry.hash) {
        return Err(EntryError::BadHash);
    }
    key.verify_strict(&entry.hash, &Signature::from_bytes(&entry.sig))
        .map_err(|_| EntryError::BadSignature)
}

/// Checks that `next` directly follows `prev` in one chain: same team,
/// `next.seq == prev.seq + 1`, `next.prev_hash == prev.hash`. Does not check
/// hashes or signatures (see [`verify_entry`]).
pub fn verify_link(prev: &Entry, next: &Entry) -> Result<(), LinkError> {
    if prev.event.team_id != next.event.team_id {
        return Err(LinkError::WrongTeam {
            prev: prev.event.team_id.clone(),
            next: next.event.team_id.clone(),
        });
    }
    let expected = prev.seq.checked_add(1).ok_or(LinkError::SeqOverflow)?;
    if next.seq != expected {
        return Err(LinkError::SeqNotNext {
            expected,
            found: next.seq,
        });
    }
    if !hashes_equal(&next.prev_hash, &prev.hash) {
        return Err(LinkError::PrevHashMismatch);
    }
    Ok(())
}

/// Verifies a whole chain from its first entry (seq 1, zero `prev_hash`).
/// An empty slice is trivially valid: only a signed checkpoint can show
/// that entries are missing at the end.
pub fn verify_chain(entries: &[Entry], key: &VerifyingKey) -> Result<(), ChainError> {
    verify_chain_from(None, entries, key)
}

/// Verifies `entries` as the continuation of `start` (a head verified
/// earlier), or from genesis when `start` is `None`. Per position, in order:
/// the entry itself ([`verify_entry`]), its team, its seq, its `prev_hash`.
/// The error names the seq expected at the first position that fails.
pub fn verify_chain_from(
    start: Option<&ChainHead>,
    entries: &[Entry],
    key: &VerifyingKey,
) -> Result<(), ChainError> {
    let mut expected_seq = match start {
        None => Some(1),
        Some(head) => head.seq.checked_add(1),
    };
    let mut prev_hash = start.map_or(GENESIS_PREV_HASH, |h| h.hash);
    let mut team: Option<&str> = start.map(|h| h.team_id.as_str());
    for entry in entries {
        let Some(at) = expected_seq else {
            return Err(ChainError {
                seq: u64::MAX,
                reason: ChainFailure::SeqOverflow,
            });
        };
        let fail = |reason| ChainError { seq: at, reason };
        verify_entry(entry, key).map_err(|e| fail(e.into()))?;
        let entry_team = entry.event.team_id.as_str();
        match team {
            Some(t) if t != entry_team => {
                return Err(fail(ChainFailure::WrongTeam {
                    expected: t.to_owned(),
                    found: entry_team.to_owned(),
                }));
            }
            Some(_) => {}
            None => team = Some(entry_team),
        }
        if entry.seq > at {
            return Err(fail(ChainFailure::Gap { found: entry.seq }));
        }
        if entry.seq < at {
            return Err(fail(ChainFailure::Replayed { found: entry.seq }));
        }
        if !hashes_equal(&entry.prev_hash, &prev_hash) {
            return Err(fail(ChainFailure::BrokenLink));
        }
        prev_hash = entry.hash;
        expected_seq = at.checked_add(1);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Canonical JSON
// ---------------------------------------------------------------------------

/// Canonical JSON for the event context, following RFC 8785 (JCS):
/// object members sorted by the UTF-16 code units of their names, no
/// whitespace, strings with the minimal JSON escapes (`\"`, `\\`, `\b`,
/// `\f`, `\n`, `\r`, `\t`, other controls as `\u00xx`, everything else
/// literal UTF-8), numbers as ECMAScript `Number.prototype.toString`.
///
/// Stricter than RFC 8785 where a difference could let two different
/// stored values hash the same: integers must be exact in an IEEE double
/// (|n| ≤ 2^53 − 1, the I-JSON range), non-finite numbers are errors, and
/// depth and size are capped.
pub mod canonical_json {
    use std::fmt;

    use serde::Deserializer;
    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};

    /// Largest integer magnitude every JSON implementation reads exactly
    /// (2^53 − 1, RFC 7493 §2.2). Larger integers would be silently rounded
    /// by JavaScript verifiers, so they are refused rather than hashed.
    pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

    /// Why a value has no canonical form.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum CanonicalJsonError {
        #[error("non-finite number (NaN or infinity)")]
        NonFinite,
        #[error("integer outside ±(2^53 − 1)")]
        IntegerOutOfRange,
        #[error("nesting deeper than {max}")]
        TooDeep { max: usize },
        #[error("canonical form longer than {max} bytes")]
        TooLarge { max: usize },
        #[error("duplicate object key {0:?}")]
        DuplicateKey(String),
        #[error("context must be a JSON object")]
        NotAnObject,
        #[error("invalid JSON: {0}")]
        Syntax(String),
    }

    struct Writer {
        out: String,
        max_len: usize,
        max_depth: usize,
    }

    impl Writer {
        fn push(&mut self, s: &str) -> Result<(), CanonicalJsonError> {
            if self.out.len() + s.len() > self.max_len {
                return Err(CanonicalJsonError::TooLarge { max: self.max_len });
            }
            self.out.push_str(s);
            Ok(())
        }

        fn string(&mut self, s: &str) -> Result<(), CanonicalJsonError> {
            // Escaping only grows a string: refuse early, before copying.
            if self.out.len() + s.len() + 2 > self.max_len {
                return Err(CanonicalJsonError::TooLarge { max: self.max_len });
            }
            self.push("\"")?;
            let mut start = 0;
            for (i, c) in s.char_indices() {
                let esc: Option<String> = match c {
                    '"' => Some("\\\"".into()),
                    '\\' => Some("\\\\".into()),
                    '\u{08}' => Some("\\b".into()),
                    '\u{0c}' => Some("\\f".into()),
                    '\n' => Some("\\n".into()),
                    '\r' => Some("\\r".into()),
                    '\t' => Some("\\t".into()),
                    c if u32::from(c) < 0x20 => Some(format!("\\u{:04x}", u32::from(c))),
                    _ => None,
                };
                if let Some(esc) = esc {
                    self.push(&s[start..i])?;
                    self.push(&esc)?;
                    start = i + c.len_utf8();
                }
            }
            self.push(&s[start..])?;
            self.push("\"")
        }

        fn value(&mut self, v: &Value, depth: usize) -> Result<(), CanonicalJsonError> {
            match v {
                Value::Null => self.push("null"),
                Value::Bool(true) => self.push("true"),
                Value::Bool(false) => self.push("false"),
                Value::Number(n) => self.push(&number(n)?),
                Value::String(s) => self.string(s),
                Value::Array(items) => {
                    self.enter(depth)?;
                    self.push("[")?;
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            self.push(",")?;
                        }
                        self.value(item, depth + 1)?;
                    }
                    self.push("]")
                }
                Value::Object(map) => self.object(map, depth),
            }
        }

        fn enter(&self, depth: usize) -> Result<(), CanonicalJsonError> {
            if depth > self.max_depth {
                Err(CanonicalJsonError::TooDeep {
                    max: self.max_depth,
                })
            } else {
                Ok(())
            }
        }

        fn object(
            &mut self,
            map: &Map<String, Value>,
            depth: usize,
        ) -> Result<(), CanonicalJsonError> {
            self.enter(depth)?;
            // RFC 8785 §3.2.3 orders by UTF-16 code units, which differs from
            // Rust's byte order for characters above U+FFFF.
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            self.push("{")?;
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    self.push(",")?;
                }
                self.string(k)?;
                self.push(":")?;
                self.value(v, depth + 1)?;
            }
            self.push("}")
        }
    }

    fn number(n: &Number) -> Result<String, CanonicalJsonError> {
        if let Some(i) = n.as_i64() {
            return if i.unsigned_abs() <= MAX_SAFE_INTEGER {
                Ok(i.to_string())
            } else {
                Err(CanonicalJsonError::IntegerOutOfRange)
            };
        }
        if n.is_u64() {
            // Not an i64, so above i64::MAX: far outside the safe range.
            return Err(CanonicalJsonError::IntegerOutOfRange);
        }
        format_f64(n.as_f64().ok_or(CanonicalJsonError::NonFinite)?)
    }

    /// Significant digits that always hold the exact decimal expansion of a
    /// double (the longest, of the smallest subnormal, has 767).
    const EXACT_DIGITS: usize = 780;

    /// Splits Rust's `{:e}` output (`d.ddde[-]x`) into digits and exponent.
    fn sci_parts(sci: &str) -> Result<(String, i32), CanonicalJsonError> {
        let (mantissa, exp) = sci.split_once('e').ok_or(CanonicalJsonError::NonFinite)?;
        let exp = exp.parse().map_err(|_| CanonicalJsonError::NonFinite)?;
        Ok((mantissa.chars().filter(|c| *c != '.').collect(), exp))
    }

    /// Shortest round-trip digits of a finite `x > 0` and the exponent of
    /// the first one, with ECMA-262's tie rule.
    fn shortest_digits(x: f64) -> Result<(String, i32), CanonicalJsonError> {
        let (digits, exp) = sci_parts(&format!("{x:e}"))?;
        // When `x` lies exactly halfway between two shortest candidates, Rust
        // rounds up while ECMA-262 (and so RFC 8785) picks the even one.
        // Detect the tie from the exact decimal expansion of `x`.
        let (exact, exact_exp) = sci_parts(&format!("{:.*e}", EXACT_DIGITS, x))?;
        if exact_exp == exp && exact.len() > digits.len() {
            let (head, tail) = exact.split_at(digits.len());
            let head_even = head.bytes().last().is_some_and(|d| d % 2 == 0);
            if tail.trim_end_matches('0') == "5" && head != digits && head_even {
                let (first, rest) = head.split_at(1);
                if format!("{first}.{rest}e{exp}").parse::<f64>() == Ok(x) {
                    return Ok((head.to_owned(), exp));
                }
            }
        }
        Ok((digits, exp))
    }

    /// ECMAScript `Number.prototype.toString(x)` for finite doubles
    /// (ECMA-262 Number::toString), which RFC 8785 §3.2.2.3 mandates: the
    /// shortest digits that round-trip, laid out in plain or exponent form.
    pub fn format_f64(x: f64) -> Result<String, CanonicalJsonError> {
        if !x.is_finite() {
            return Err(CanonicalJsonError::NonFinite);
        }
        if x == 0.0 {
            return Ok("0".into()); // also -0
        }
        let (digits, exp) = shortest_digits(x.abs())?;
        let k = digits.len() as i32;
        let n = exp + 1; // value = 0.digits × 10^n
        let mut s = String::with_capacity(32);
        if x < 0.0 {
            s.push('-');
        }
        if k <= n && n <= 21 {
            s.push_str(&digits);
            s.extend(std::iter::repeat_n('0', (n - k) as usize));
        } else if 0 < n && n <= 21 {
            let (int, frac) = digits.split_at(n as usize);
            s.push_str(int);
            s.push('.');
            s.push_str(frac);
        } else if -6 < n && n <= 0 {
            s.push_str("0.");
            s.extend(std::iter::repeat_n('0', (-n) as usize));
            s.push_str(&digits);
        } else {
            let (first, rest) = digits.split_at(1);
            s.push_str(first);
            if !rest.is_empty() {
                s.push('.');
                s.push_str(rest);
            }
            s.push('e');
            s.push(if n - 1 < 0 { '-' } else { '+' });
            s.push_str(&(n - 1).abs().to_string());
        }
        Ok(s)
    }

    /// Canonical JSON of an object, refusing output longer than `max_len`
    /// bytes or nesting deeper than `max_depth` (the object itself is 1).
    pub fn to_vec(
        map: &Map<String, Value>,
        max_len: usize,
        max_depth: usize,
    ) -> Result<Vec<u8>, CanonicalJsonError> {
        let mut w = Writer {
            out: String::new(),
            max_len,
            max_depth,
        };
        w.object(map, 1)?;
        Ok(w.out.into_bytes())
    }

    /// Canonical JSON of any value with the audit context limits.
    pub fn to_string(value: &Value) -> Result<String, CanonicalJsonError> {
        let mut w = Writer {
            out: String::new(),
            max_len: super::MAX_CONTEXT_BYTES,
            max_depth: super::MAX_CONTEXT_DEPTH,
        };
        w.value(value, 1)?;
        Ok(w.out)
    }

    /// Parses a context object from JSON text strictly (see
    /// [`deserialize_object`]).
    pub fn parse_object(text: &str) -> Result<Map<String, Value>, CanonicalJsonError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let map = deserialize_object(&mut de).map_err(|e| classify(&e))?;
        de.end()
            .map_err(|e| CanonicalJsonError::Syntax(e.to_string()))?;
        Ok(map)
    }

    /// Recovers our error kind from serde's stringly error, so callers can
    /// tell a policy refusal from malformed text.
    fn classify(e: &serde_json::Error) -> CanonicalJsonError {
        let msg = e.to_string();
        let deep = CanonicalJsonError::TooDeep {
            max: super::MAX_CONTEXT_DEPTH,
        };
        if msg.starts_with(DUPLICATE_KEY_PREFIX) {
            CanonicalJsonError::DuplicateKey(msg)
        } else if msg.starts_with(&deep.to_string()) {
            deep
        } else if msg.starts_with(&CanonicalJsonError::NotAnObject.to_string()) {
            CanonicalJsonError::NotAnObject
        } else if msg.starts_with(&CanonicalJsonError::NonFinite.to_string()) {
            CanonicalJsonError::NonFinite
        } else {
            CanonicalJsonError::Syntax(msg)
        }
    }

    const DUPLICATE_KEY_PREFIX: &str = "duplicate object key";

    /// Serde `deserialize_with` for the context: a JSON object, with
    /// duplicate keys refused (a SIEM reading the first and a verifier
    /// reading the last would see different events under one signature) and
    /// nesting capped at [`super::MAX_CONTEXT_DEPTH`].
    pub fn deserialize_object<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Map<String, Value>, D::Error> {
        match (StrictValue { depth: 1 }).deserialize(d)? {
            Value::Object(map) => Ok(map),
            _ => Err(de::Error::custom(CanonicalJsonError::NotAnObject)),
        }
    }

    struct StrictValue {
        depth: usize,
    }

    impl StrictValue {
        fn child<E: de::Error>(&self) -> Result<Self, E> {
            if self.depth >= super::MAX_CONTEXT_DEPTH {
                return Err(E::custom(CanonicalJsonError::TooDeep {
                    max: super::MAX_CONTEXT_DEPTH,
                }));
            }
            Ok(Self {
                depth: self.depth + 1,
            })
        }
    }

    impl<'de> DeserializeSeed<'de> for StrictValue {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for StrictValue {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
            Number::from_f64(v)
                .map(Value::Number)
                .ok_or_else(|| E::custom(CanonicalJsonError::NonFinite))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(self.child()?)? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
            let mut map = Map::new();
            while let Some(key) = access.next_key::<String>()? {
                if map.contains_key(&key) {
                    return Err(de::Error::custom(format!("{DUPLICATE_KEY_PREFIX} {key:?}")));
                }
                let value = access.next_value_seed(self.child()?)?;
                map.insert(key, value);
            }
            Ok(Value::Object(map))
        }
    }
}
