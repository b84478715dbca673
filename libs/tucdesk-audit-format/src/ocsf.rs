//! Audit entries as OCSF 1.3 events (<https://schema.ocsf.io>), for SIEMs that ingest OCSF
//! without post-processing: one JSON object per stored entry, and one per signed checkpoint.
//!
//! Each action maps to a class and an activity ([`catalogue`]); an unknown action becomes an
//! API Activity with activity "Other" (99) rather than being dropped. The event's fields land
//! where OCSF expects them (`time`, `actor`, `user`, `src_endpoint`, `dst_endpoint`, `entity`,
//! `api`, `status_id`, `metadata.uid` = event id, `metadata.sequence` = seq); the rest of the
//! context, the raw target and policy result, and the entry's chain fields (`prev_hash`,
//! `hash`, `sig` in hex) go under `unmapped`, so every OCSF event can be traced back to the
//! signed entry it came from and that entry verified on its own. The OCSF object itself is not
//! signed: the NDJSON export is the evidence, this is its projection.
//!
//! Pure and deterministic: the same entry always gives the same JSON value.

mod attributes;
pub mod catalogue;

use serde_json::{Map, Value, json};
use tucdesk_crypto::audit::{AuditEvent, Entry, PolicyDecision};
use tucdesk_crypto::merkle::SignedCheckpoint;

use attributes::{actor, context_str, dst_endpoint, entity, put, source, src_endpoint, text, user};

pub use catalogue::{ACTIONS, ActionMapping, Activity, Class, FALLBACK, Severity, lookup, mapping};

/// The OCSF schema version the objects follow (`metadata.version`).
pub const OCSF_VERSION: &str = "1.3.0";
/// `metadata.product.name` and `vendor_name`.
pub const PRODUCT_NAME: &str = "TucDesk";
pub const VENDOR_NAME: &str = "TucDesk";
/// `metadata.log_name` of every object.
pub const LOG_NAME: &str = "tucdesk-audit";
/// `metadata.event_code` of a checkpoint (entries carry their action).
pub const CHECKPOINT_EVENT_CODE: &str = "audit.checkpoint";

/// Context keys mapped to OCSF attributes, and therefore not repeated under
/// `unmapped.context`.
const MAPPED_CONTEXT_KEYS: [&str; 5] = [
    "outcome",
    "reason",
    "client_ip",
    "source",
    "device_key_thumbprint",
];

/// `type_uid`: class uid × 100 + activity id (OCSF).
pub const fn type_uid(class: Class, activity: Activity) -> u64 {
    class.uid() as u64 * 100 + activity.id as u64
}

/// OCSF `status_id` with its `status` caption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Unknown,
    Success,
    Failure,
    /// Neither (`approval_required`, an outcome OCSF has no value for); the caption is ours.
    Other(String),
}

impl Status {
    pub fn id(&self) -> u32 {
        match self {
            Self::Unknown => 0,
            Self::Success => 1,
            Self::Failure => 2,
            Self::Other(_) => 99,
        }
    }

    pub fn caption(&self) -> &str {
        match self {
            Self::Unknown => "Unknown",
            Self::Success => "Success",
            Self::Failure => "Failure",
            Self::Other(caption) => caption,
        }
    }
}

/// The status of an event: its context `outcome` when it has one; otherwise success for a
/// catalogued action (the producer records what happened), or the policy decision, or unknown.
pub fn status_of(event: &AuditEvent, known: bool) -> Status {
    if let Some(outcome) = event.context.get("outcome").and_then(Value::as_str) {
        return match outcome {
            "success" | "allowed" | "approved" => Status::Success,
            "failure" | "denied" => Status::Failure,
            other => Status::Other(other.to_owned()),
        };
    }
    if known {
        return Status::Success;
    }
    match event.policy_result.as_ref().map(|p| p.decision) {
        Some(PolicyDecision::Allow) => Status::Success,
        Some(PolicyDecision::Deny) => Status::Failure,
        Some(PolicyDecision::ApprovalRequired) => Status::Other("approval_required".into()),
        None => Status::Unknown,
    }
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// One line for people reading the SIEM: action, actor, target, status.
fn message(event: &AuditEvent, status: &Status) -> String {
    let a = &event.actor;
    let mut out = format!("{} by {} {}", event.action, a.kind.as_str(), a.id);
    if let Some(display) = &a.display {
        out.push_str(&format!(" ({display})"));
    }
    if !event.target.is_empty() {
        out.push_str(&format!(" on {}", event.target));
    }
    out.push_str(&format!(": {}", status.caption().to_ascii_lowercase()));
    out
}

/// The class-independent head of an OCSF object.
fn head(
    class: Class,
    activity: Activity,
    severity: Severity,
    status: &Status,
    time: u64,
) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("class_uid".into(), Value::from(class.uid()));
    out.insert("class_name".into(), Value::from(class.name()));
    out.insert("category_uid".into(), Value::from(class.category_uid()));
    out.insert("category_name".into(), Value::from(class.category_name()));
    out.insert("activity_id".into(), Value::from(activity.id));
    out.insert("activity_name".into(), Value::from(activity.name));
    out.insert("type_uid".into(), Value::from(type_uid(class, activity)));
    out.insert(
        "type_name".into(),
        Value::from(format!("{}: {}", class.name(), activity.name)),
    );
    out.insert("severity_id".into(), Value::from(severity.id()));
    out.insert("severity".into(), Value::from(severity.name()));
    out.insert("status_id".into(), Value::from(status.id()));
    out.insert("status".into(), Value::from(status.caption()));
    out.insert("time".into(), Value::from(time));
    out
}

fn metadata(uid: &str, event_code: &str, sequence: u64, tenant: &str, feature: &str) -> Value {
    json!({
        "version": OCSF_VERSION,
        "product": {
            "name": PRODUCT_NAME,
            "vendor_name": VENDOR_NAME,
            "feature": { "name": feature },
        },
        "uid": uid,
        "log_name": LOG_NAME,
        "sequence": sequence,
        "event_code": event_code,
        "tenant_uid": tenant,
    })
}

/// The severity of an event: its action's base severity, at least [`Severity::Low`] when it
/// failed or was denied (the `severity_id` of [`entry_to_ocsf`]).
pub fn severity_of(event: &AuditEvent) -> Severity {
    let known = catalogue::lookup(&event.action);
    let row = known.unwrap_or(&FALLBACK);
    severity_for(row, &status_of(event, known.is_some()))
}

fn severity_for(row: &ActionMapping, status: &Status) -> Severity {
    if *status == Status::Failure {
        row.severity.max(Severity::Low)
    } else {
        row.severity
    }
}

/// The OCSF event of a stored entry.
pub fn entry_to_ocsf(entry: &Entry) -> Value {
    let event = &entry.event;
    let known = catalogue::lookup(&event.action);
    let row = known.unwrap_or(&FALLBACK);
    let known = known.is_some();
    let status = status_of(event, known);
    let severity = severity_for(row, &status);
    let mut out = head(
        row.class,
        row.activity,
        severity,
        &status,
        event.occurred_at,
    );
    put(
        &mut out,
        "status_detail",
        text(context_str(event, "reason")),
    );
    out.insert("message".into(), Value::from(message(event, &status)));
    out.insert("actor".into(), actor(event));
    if row.class.has_user() {
        out.insert("user".into(), user(event));
    }
    if row.class == Class::EntityManagement {
        out.insert("entity".into(), entity(event));
    }
    let src = src_endpoint(event);
    if row.class == Class::ApiActivity {
        out.insert(
            "api".into(),
            json!({ "operation": event.action, "service": { "name": source(event) } }),
        );
        // Required by API Activity: say so when the source is not known.
        out.insert(
            "src_endpoint".into(),
            src.unwrap_or_else(|| json!({ "name": "unknown" })),
        );
    } else {
        put(&mut out, "src_endpoint", src);
    }
    put(&mut out, "dst_endpoint", dst_endpoint(event));

    let mut meta = metadata(
        &event.event_id,
        &event.action,
        entry.seq,
        &event.team_id,
        source(event),
    );
    if let (Some(session), Some(meta)) = (&event.session_id, meta.as_object_mut()) {
        meta.insert("correlation_uid".into(), Value::from(session.as_str()));
    }
    out.insert("metadata".into(), meta);
    out.insert("unmapped".into(), unmapped(entry));
    Value::Object(out)
}

/// What OCSF has no place for: the rest of the context, the raw target and policy result,
/// and the chain fields that tie the object to its signed entry.
fn unmapped(entry: &Entry) -> Value {
    let event = &entry.event;
    let mut unmapped = Map::new();
    unmapped.insert(
        "chain".into(),
        json!({
            "seq": entry.seq,
            "prev_hash": hex(&entry.prev_hash),
            "hash": hex(&entry.hash),
            "sig": hex(&entry.sig),
        }),
    );
    unmapped.insert("actor_kind".into(), Value::from(event.actor.kind.as_str()));
    if !event.target.is_empty() {
        unmapped.insert("target".into(), Value::from(event.target.as_str()));
    }
    if let Some(session) = &event.session_id {
        unmapped.insert("session_id".into(), Value::from(session.as_str()));
    }
    if let Some(p) = &event.policy_result {
        let mut policy = Map::new();
        policy.insert("decision".into(), Value::from(p.decision.as_str()));
        policy.insert("rule".into(), Value::from(p.rule.as_str()));
        policy.insert("reason".into(), Value::from(p.reason.as_str()));
        put(&mut policy, "approver", text(p.approver.as_deref()));
        unmapped.insert("policy_result".into(), Value::Object(policy));
    }
    let rest: Map<String, Value> = event
        .context
        .iter()
        .filter(|(key, value)| !(MAPPED_CONTEXT_KEYS.contains(&key.as_str()) && value.is_string()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    if !rest.is_empty() {
        unmapped.insert("context".into(), Value::Object(rest));
    }
    Value::Object(unmapped)
}

/// The OCSF event of a signed checkpoint (Event Log Activity, "Checkpoint"): the tree head in
/// `unmapped.checkpoint`, exactly the NDJSON checkpoint line's object, so a SIEM keeps the
/// signed heads that later exports must be consistent with.
pub fn checkpoint_to_ocsf(signed: &SignedCheckpoint) -> Value {
    let c = &signed.checkpoint;
    let class = Class::EventLogActivity;
    let activity = Activity {
        id: catalogue::OTHER_ACTIVITY_ID,
        name: "Checkpoint",
    };
    let mut out = head(
        class,
        activity,
        Severity::Informational,
        &Status::Success,
        c.timestamp_ms,
    );
    out.insert(
        "message".into(),
        Value::from(format!(
            "signed checkpoint of team {} at tree size {}",
            c.team_id, c.tree_size
        )),
    );
    out.insert(
        "actor".into(),
        json!({ "app_name": "tucdesk-audit", "app_uid": c.key_id }),
    );
    out.insert(
        "device".into(),
        json!({ "type_id": 0, "type": "Unknown", "name": "tucdesk-audit" }),
    );
    out.insert(
        "metadata".into(),
        metadata(
            &format!("checkpoint:{}:{}", c.team_id, c.tree_size),
            CHECKPOINT_EVENT_CODE,
            c.tree_size,
            &c.team_id,
            "audit",
        ),
    );
    out.insert(
        "unmapped".into(),
        json!({
            "checkpoint": {
                "checkpoint": {
                    "team_id": c.team_id,
                    "tree_size": c.tree_size,
                    "root_hash": hex(&c.root_hash),
                    "timestamp_ms": c.timestamp_ms,
                    "key_id": c.key_id,
                },
                "sig": hex(&signed.sig),
            }
        }),
    );
    Value::Object(out)
}

#[cfg(test)]
mod tests;
