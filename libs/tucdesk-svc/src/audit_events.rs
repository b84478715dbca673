//! Recording audit events (SPEC §6): every service builds a `tucdesk.v1.AuditEvent` with
//! [`AuditRecord`] and writes it with [`record`] into the outbox, in the same transaction as
//! the change it describes. The outbox publisher delivers it to the `AUDIT` stream on
//! `audit.{team_id}.{action}` with the event id as de-duplication id.

use prost::Message as _;
use tucdesk_proto::v1::{Actor, ActorKind, AuditEvent, AuditPolicyResult};

use crate::bus::{Headers, StreamSpec};
use crate::outbox::{self, OutboxError, OutboxEvent};
use crate::sql::{Tx, now_ms};

/// The durable stream audit events travel on.
pub const AUDIT_STREAM: &str = "AUDIT";

/// Team id for events that belong to no team (e.g. a login attempt for an unknown email).
pub const SYSTEM_TEAM: &str = "_system";

/// Actor id for unauthenticated callers.
pub const ANONYMOUS: &str = "anonymous";

/// The `AUDIT` stream's definition, declared by every producer and the audit service.
pub fn audit_stream() -> StreamSpec {
    StreamSpec::new(AUDIT_STREAM, vec!["audit.>".to_owned()])
}

/// An audit event under construction.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    event: AuditEvent,
    context: serde_json::Map<String, serde_json::Value>,
}

impl AuditRecord {
    /// `action` is a dotted lowercase name (`auth.login`); `team_id` comes from verified
    /// claims or the affected row, never from a request body.
    pub fn new(team_id: &str, action: &str, actor_kind: ActorKind, actor_id: &str) -> Self {
        Self {
            event: AuditEvent {
                event_id: uuid::Uuid::now_v7().to_string(),
                team_id: team_id.to_owned(),
                actor: Some(Actor {
                    kind: actor_kind as i32,
                    id: actor_id.to_owned(),
                    display: String::new(),
                }),
                action: action.to_owned(),
                occurred_at_ms: u64::try_from(now_ms()).unwrap_or_default(),
                ..Default::default()
            },
            context: serde_json::Map::new(),
        }
    }

    pub fn actor_display(mut self, display: &str) -> Self {
        if let Some(actor) = self.event.actor.as_mut() {
            actor.display = display.to_owned();
        }
        self
    }

    /// What the action applied to, `"<kind>:<id>"`.
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.event.target = target.into();
        self
    }

    pub fn session(mut self, session_id: impl Into<String>) -> Self {
        self.event.session_id = session_id.into();
        self
    }

    pub fn policy_result(mut self, result: AuditPolicyResult) -> Self {
        self.event.policy_result = Some(result);
        self
    }

    /// Adds a context entry. Never secrets: no passwords, tokens, codes, keys or terminal
    /// content.
    pub fn context(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.context.insert(key.to_owned(), value.into());
        self
    }

    pub fn event_id(&self) -> &str {
        &self.event.event_id
    }

    pub fn action(&self) -> &str {
        &self.event.action
    }

    /// The finished event.
    pub fn into_event(self) -> AuditEvent {
        let mut event = self.event;
        event.context_json = serde_json::Value::Object(self.context).to_string();
        event
    }
}

/// Writes `record` to the outbox inside `tx`; returns the event id.
pub async fn record(tx: &mut Tx, record: AuditRecord) -> Result<String, OutboxError> {
    let mut headers = Headers::new();
    crate::trace_context::inject_map(&mut headers);
    let event = record.into_event();
    let outbox_event = OutboxEvent {
        event_id: event.event_id.clone(),
        team_id: event.team_id.clone(),
        subject: format!("audit.{}.{}", event.team_id, event.action),
        headers,
        payload: event.encode_to_vec(),
    };
    outbox::enqueue(tx, &outbox_event).await?;
    Ok(event.event_id)
}
