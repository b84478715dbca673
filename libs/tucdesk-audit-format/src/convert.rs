//! Between the wire (`tucdesk.v1.AuditEvent`, `AuditEntry`, `Checkpoint`) and the hashed forms
//! of `tucdesk_crypto` (`audit::AuditEvent`, `audit::Entry`, `merkle::SignedCheckpoint`).
//!
//! The mapping is one to one (audit.proto): an empty `actor.display`, `session_id` or
//! `policy_result.approver` is absent (`None`); an unset `policy_result` is absent; the
//! context travels as JSON text, parsed strictly (duplicate keys, non-finite numbers and
//! nesting deeper than 32 are refused) and sent back in canonical form, so a client rebuilding
//! the crypto event from a response gets exactly the hashed value. Unspecified or unknown enum
//! values are refused, never guessed.
//!
//! Depends only on `tucdesk-proto` and `tucdesk-crypto`, so clients can use the same mapping.

use tucdesk_crypto::audit::{
    Actor, ActorKind, AuditEvent, Entry, EventError, PolicyDecision, PolicyResult, canonical_json,
};
use tucdesk_crypto::merkle::{Checkpoint, HASH_LEN, SIGNATURE_LEN, SignedCheckpoint};
use tucdesk_proto::v1 as pb;

/// Longest `context_json` read from the wire. The canonical context is at most 16 KiB
/// (`MAX_CONTEXT_BYTES`, checked by validation); producers' compact JSON is close to
/// canonical, and this bound only stops oversized input before it is parsed.
pub const MAX_CONTEXT_JSON_INPUT: usize = 4 * tucdesk_crypto::audit::MAX_CONTEXT_BYTES;

/// Why a wire event is not a valid audit event. Messages name fields, never their content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("actor is missing")]
    MissingActor,
    #[error("actor.kind is unspecified or unknown")]
    BadActorKind,
    #[error("policy_result.decision is unspecified or unknown")]
    BadDecision,
    #[error("context_json is longer than {MAX_CONTEXT_JSON_INPUT} bytes")]
    ContextTooLong,
    #[error("context_json: {0}")]
    Context(String),
    #[error("{0}")]
    Invalid(#[from] EventError),
    #[error("{field} must be exactly {len} bytes")]
    BadLength { field: &'static str, len: usize },
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// The hashed form of a wire event, validated against every bound of the audit format.
pub fn event_from_proto(event: &pb::AuditEvent) -> Result<AuditEvent, ConvertError> {
    let actor = event.actor.as_ref().ok_or(ConvertError::MissingActor)?;
    let kind = match pb::ActorKind::try_from(actor.kind) {
        Ok(pb::ActorKind::User) => ActorKind::User,
        Ok(pb::ActorKind::Agent) => ActorKind::Agent,
        Ok(pb::ActorKind::Service) => ActorKind::Service,
        Ok(pb::ActorKind::System) => ActorKind::System,
        Ok(pb::ActorKind::Unspecified) | Err(_) => return Err(ConvertError::BadActorKind),
    };
    let policy_result = match &event.policy_result {
        None => None,
        Some(p) => Some(PolicyResult {
            decision: match pb::PolicyDecision::try_from(p.decision) {
                Ok(pb::PolicyDecision::Allow) => PolicyDecision::Allow,
                Ok(pb::PolicyDecision::Deny) => PolicyDecision::Deny,
                Ok(pb::PolicyDecision::ApprovalRequired) => PolicyDecision::ApprovalRequired,
                Ok(pb::PolicyDecision::Unspecified) | Err(_) => {
                    return Err(ConvertError::BadDecision);
                }
            },
            rule: p.rule.clone(),
            reason: p.reason.clone(),
            approver: non_empty(&p.approver),
        }),
    };
    if event.context_json.len() > MAX_CONTEXT_JSON_INPUT {
        return Err(ConvertError::ContextTooLong);
    }
    let context = if event.context_json.is_empty() {
        serde_json::Map::new()
    } else {
        // The error names the rule broken (duplicate key, depth, syntax), not the content.
        canonical_json::parse_object(&event.context_json)
            .map_err(|err| ConvertError::Context(context_error_kind(&err).to_owned()))?
    };
    let converted = AuditEvent {
        event_id: event.event_id.clone(),
        team_id: event.team_id.clone(),
        actor: Actor {
            kind,
            id: actor.id.clone(),
            display: non_empty(&actor.display),
        },
        action: event.action.clone(),
        target: event.target.clone(),
        occurred_at: event.occurred_at_ms,
        session_id: non_empty(&event.session_id),
        policy_result,
        context,
    };
    converted.validate()?;
    Ok(converted)
}

fn context_error_kind(err: &tucdesk_crypto::audit::CanonicalJsonError) -> &'static str {
    use tucdesk_crypto::audit::CanonicalJsonError as E;
    match err {
        E::DuplicateKey(_) => "duplicate key",
        E::TooDeep { .. } => "nested too deeply",
        E::NotAnObject => "not a JSON object",
        E::NonFinite => "non-finite number",
        E::Syntax(_) => "invalid JSON",
        E::IntegerOutOfRange => "integer out of range",
        E::TooLarge { .. } => "too large",
    }
}

/// The wire form of a hashed event; the context in canonical JSON.
pub fn event_to_proto(event: &AuditEvent) -> Result<pb::AuditEvent, ConvertError> {
    let context_json = if event.context.is_empty() {
        String::new()
    } else {
        canonical_json::to_string(&serde_json::Value::Object(event.context.clone()))
            .map_err(|err| ConvertError::Context(context_error_kind(&err).to_owned()))?
    };
    Ok(pb::AuditEvent {
        event_id: event.event_id.clone(),
        team_id: event.team_id.clone(),
        actor: Some(pb::Actor {
            kind: match event.actor.kind {
                ActorKind::User => pb::ActorKind::User,
                ActorKind::Agent => pb::ActorKind::Agent,
                ActorKind::Service => pb::ActorKind::Service,
                ActorKind::System => pb::ActorKind::System,
            } as i32,
            id: event.actor.id.clone(),
            display: event.actor.display.clone().unwrap_or_default(),
        }),
        action: event.action.clone(),
        target: event.target.clone(),
        occurred_at_ms: event.occurred_at,
        session_id: event.session_id.clone().unwrap_or_default(),
        policy_result: event.policy_result.as_ref().map(|p| pb::AuditPolicyResult {
            decision: match p.decision {
                PolicyDecision::Allow => pb::PolicyDecision::Allow,
                PolicyDecision::Deny => pb::PolicyDecision::Deny,
                PolicyDecision::ApprovalRequired => pb::PolicyDecision::ApprovalRequired,
            } as i32,
            rule: p.rule.clone(),
            reason: p.reason.clone(),
            approver: p.approver.clone().unwrap_or_default(),
        }),
        context_json,
    })
}

/// The wire form of an entry signed by the key named `key_id`.
pub fn entry_to_proto(entry: &Entry, key_id: &str) -> Result<pb::AuditEntry, ConvertError> {
    Ok(pb::AuditEntry {
        event: Some(event_to_proto(&entry.event)?),
        seq: entry.seq,
        prev_hash: entry.prev_hash.to_vec(),
        hash: entry.hash.to_vec(),
        signature: entry.sig.to_vec(),
        key_id: key_id.to_owned(),
    })
}

fn fixed<const N: usize>(bytes: &[u8], field: &'static str) -> Result<[u8; N], ConvertError> {
    <[u8; N]>::try_from(bytes).map_err(|_| ConvertError::BadLength { field, len: N })
}

/// The crypto entry of a wire entry (for verifiers: then `verify_chain`). Parsing does not
/// verify; it checks lengths and the event's bounds.
pub fn entry_from_proto(entry: &pb::AuditEntry) -> Result<Entry, ConvertError> {
    let event = entry
        .event
        .as_ref()
        .ok_or(ConvertError::Invalid(EventError::Empty { field: "event" }))?;
    Ok(Entry {
        seq: entry.seq,
        prev_hash: fixed::<HASH_LEN>(&entry.prev_hash, "prev_hash")?,
        event: event_from_proto(event)?,
        hash: fixed::<HASH_LEN>(&entry.hash, "hash")?,
        sig: fixed::<SIGNATURE_LEN>(&entry.signature, "signature")?,
    })
}

/// The wire form of a signed checkpoint.
pub fn checkpoint_to_proto(signed: &SignedCheckpoint) -> pb::Checkpoint {
    let c = &signed.checkpoint;
    pb::Checkpoint {
        team_id: c.team_id.clone(),
        tree_size: c.tree_size,
        root_hash: c.root_hash.to_vec(),
        timestamp_ms: c.timestamp_ms,
        key_id: c.key_id.clone(),
        signature: signed.sig.to_vec(),
    }
}

/// The crypto form of a wire checkpoint (then `SignedCheckpoint::verify`).
pub fn checkpoint_from_proto(c: &pb::Checkpoint) -> Result<SignedCheckpoint, ConvertError> {
    Ok(SignedCheckpoint {
        checkpoint: Checkpoint {
            team_id: c.team_id.clone(),
            tree_size: c.tree_size,
            root_hash: fixed::<HASH_LEN>(&c.root_hash, "root_hash")?,
            timestamp_ms: c.timestamp_ms,
            key_id: c.key_id.clone(),
        },
        sig: fixed::<SIGNATURE_LEN>(&c.signature, "signature")?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn wire() -> pb::AuditEvent {
        pb::AuditEvent {
            event_id: "0193a8c4-0000-7000-8000-000000000001".into(),
            team_id: "team-1".into(),
            actor: Some(pb::Actor {
                kind: pb::ActorKind::User as i32,
                id: "user-1".into(),
                display: String::new(),
            }),
            action: "session.start".into(),
            target: "agent:abc".into(),
            occurred_at_ms: 1_767_225_600_000,
            session_id: String::new(),
            policy_result: Some(pb::AuditPolicyResult {
                decision: pb::PolicyDecision::Allow as i32,
                rule: "r".into(),
                reason: "ok".into(),
                approver: String::new(),
            }),
            context_json: r#"{"z":1,"a":{"b":[1.5,"x"]}}"#.into(),
        }
    }

    #[test]
    fn wire_events_roundtrip_with_empty_strings_as_absent() {
        let event = event_from_proto(&wire()).unwrap();
        assert_eq!(event.actor.display, None);
        assert_eq!(event.session_id, None);
        assert_eq!(event.policy_result.as_ref().unwrap().approver, None);
        let back = event_to_proto(&event).unwrap();
        assert_eq!(back.context_json, r#"{"a":{"b":[1.5,"x"]},"z":1}"#);
        assert_eq!(event_from_proto(&back).unwrap(), event);
    }

    #[test]
    fn unknown_enums_bad_context_and_bounds_are_refused() {
        let mut e = wire();
        e.actor.as_mut().unwrap().kind = 0;
        assert_eq!(event_from_proto(&e), Err(ConvertError::BadActorKind));
        let mut e = wire();
        e.policy_result.as_mut().unwrap().decision = 9;
        assert_eq!(event_from_proto(&e), Err(ConvertError::BadDecision));
        let mut e = wire();
        e.context_json = r#"{"a":1,"a":2}"#.into();
        assert!(matches!(
            event_from_proto(&e),
            Err(ConvertError::Context(_))
        ));
        let mut e = wire();
        e.context_json = "x".repeat(MAX_CONTEXT_JSON_INPUT + 1);
        assert_eq!(event_from_proto(&e), Err(ConvertError::ContextTooLong));
        let mut e = wire();
        e.event_id = "not-a-uuid".into();
        assert!(matches!(
            event_from_proto(&e),
            Err(ConvertError::Invalid(_))
        ));
        let mut e = wire();
        e.action = "Login".into();
        assert!(matches!(
            event_from_proto(&e),
            Err(ConvertError::Invalid(_))
        ));
        let mut e = wire();
        e.actor = None;
        assert_eq!(event_from_proto(&e), Err(ConvertError::MissingActor));
    }
}
