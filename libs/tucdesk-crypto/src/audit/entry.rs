//! One entry on its own: the canonical bytes (the exact input to SHA-256),
//! the entry hash, checking a single entry's hash and signature, and the
//! NDJSON export line.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::merkle::{Hash, hashes_equal, sha256};

use super::{
    AuditEvent, CanonicalJsonError, ENTRY_DOMAIN_TAG, Entry, GENESIS_PREV_HASH, MAX_ACTION_LEN,
    MAX_CONTEXT_BYTES, MAX_CONTEXT_DEPTH, MAX_DISPLAY_LEN, MAX_ENTRY_JSON_LEN, MAX_ID_LEN,
    MAX_REASON_LEN, MAX_RULE_LEN, MAX_TARGET_LEN, UUID_LEN, canonical_json,
};

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

fn check_len(field: &'static str, s: &str, max: usize) -> Result<(), EventError> {
    if s.len() > max {
        Err(EventError::TooLong { field, max })
    } else {
        Ok(())
    }
}

pub(super) fn check_nonempty(field: &'static str, s: &str, max: usize) -> Result<(), EventError> {
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
        crate::json::from_json_object(line.as_bytes())
            .map_err(|e| EntryParseError::Json(e.to_string()))
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
