//! The OCSF objects describing who and what an audit event is about: `actor`, `user`,
//! `src_endpoint`, `dst_endpoint`, `entity`, from the event's actor, target and context.

use serde_json::{Map, Value, json};
use tucdesk_crypto::audit::{ActorKind, AuditEvent};

/// The actor id of unauthenticated callers (`tucdesk_svc::audit_events::ANONYMOUS`).
const ANONYMOUS: &str = "anonymous";

pub(super) fn context_str<'a>(event: &'a AuditEvent, key: &str) -> Option<&'a str> {
    event.context.get(key).and_then(Value::as_str)
}

/// `"<kind>:<id>"` split at the first colon; a target without one is a kind alone.
pub(super) fn split_target(target: &str) -> Option<(&str, Option<&str>)> {
    if target.is_empty() {
        return None;
    }
    Some(match target.split_once(':') {
        Some((kind, id)) => (kind, Some(id)),
        None => (target, None),
    })
}

pub(super) fn put(object: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        object.insert(key.to_owned(), value);
    }
}

pub(super) fn text(value: Option<&str>) -> Option<Value> {
    value.map(Value::from)
}

/// The person behind a display name that is an email address.
pub(super) fn email(display: Option<&str>) -> Option<&str> {
    display.filter(|d| d.contains('@') && !d.contains(char::is_whitespace))
}

/// `actor`: a user (uid, name, email), or the agent or service by name.
pub(super) fn actor(event: &AuditEvent) -> Value {
    let a = &event.actor;
    let display = a.display.as_deref();
    let mut actor = Map::new();
    match a.kind {
        ActorKind::User => {
            let mut user = Map::new();
            user.insert("uid".into(), Value::from(a.id.as_str()));
            put(&mut user, "name", text(display));
            put(&mut user, "email_addr", text(email(display)));
            actor.insert("user".into(), Value::Object(user));
        }
        ActorKind::Agent => {
            actor.insert("app_name".into(), Value::from("tucdesk-agent"));
            actor.insert("app_uid".into(), Value::from(a.id.as_str()));
        }
        ActorKind::Service | ActorKind::System => {
            actor.insert("app_name".into(), Value::from(a.id.as_str()));
            actor.insert("app_uid".into(), Value::from(a.id.as_str()));
        }
    }
    if let Some(p) = &event.policy_result {
        let mut policy = Map::new();
        policy.insert("name".into(), Value::from(p.rule.as_str()));
        policy.insert("desc".into(), Value::from(p.reason.as_str()));
        put(
            &mut policy,
            "version",
            event.context.get("policy_version").and_then(|v| match v {
                Value::String(s) => Some(Value::from(s.as_str())),
                Value::Number(n) => Some(Value::from(n.to_string())),
                _ => None,
            }),
        );
        actor.insert(
            "authorizations".into(),
            json!([{ "decision": p.decision.as_str(), "policy": policy }]),
        );
    }
    Value::Object(actor)
}

/// `user`: whom the authentication, account change or session authorization concerns.
pub(super) fn user(event: &AuditEvent) -> Value {
    let a = &event.actor;
    let mut user = Map::new();
    match split_target(&event.target) {
        Some(("user", Some(id))) => {
            user.insert("uid".into(), Value::from(id));
            if a.kind == ActorKind::User && a.id == id {
                put(&mut user, "name", text(a.display.as_deref()));
                put(&mut user, "email_addr", text(email(a.display.as_deref())));
            }
            return Value::Object(user);
        }
        Some(("email", Some(address))) => {
            user.insert("name".into(), Value::from(address));
            user.insert("email_addr".into(), Value::from(address));
            if a.kind == ActorKind::User && a.id != ANONYMOUS {
                user.insert("uid".into(), Value::from(a.id.as_str()));
            }
            return Value::Object(user);
        }
        _ => {}
    }
    if let Some(operator) = context_str(event, "operator") {
        user.insert("uid".into(), Value::from(operator));
        return Value::Object(user);
    }
    user.insert("uid".into(), Value::from(a.id.as_str()));
    put(&mut user, "name", text(a.display.as_deref()));
    match a.kind {
        ActorKind::User => put(&mut user, "email_addr", text(email(a.display.as_deref()))),
        ActorKind::Agent => {
            user.insert("type_id".into(), Value::from(99));
            user.insert("type".into(), Value::from("Agent"));
        }
        ActorKind::Service | ActorKind::System => {
            user.insert("type_id".into(), Value::from(3));
            user.insert("type".into(), Value::from("System"));
        }
    }
    Value::Object(user)
}

/// `src_endpoint`: where the action came from, when known (the client's address, the device
/// key of a person, the agent itself).
pub(super) fn src_endpoint(event: &AuditEvent) -> Option<Value> {
    let mut src = Map::new();
    put(&mut src, "ip", text(context_str(event, "client_ip")));
    match event.actor.kind {
        ActorKind::Agent => {
            src.insert("uid".into(), Value::from(event.actor.id.as_str()));
            put(&mut src, "name", text(event.actor.display.as_deref()));
        }
        _ => put(
            &mut src,
            "uid",
            text(context_str(event, "device_key_thumbprint")),
        ),
    }
    (!src.is_empty()).then_some(Value::Object(src))
}

/// `dst_endpoint`: the agent a person's action was aimed at.
pub(super) fn dst_endpoint(event: &AuditEvent) -> Option<Value> {
    if event.actor.kind == ActorKind::Agent {
        return None;
    }
    let agent = match split_target(&event.target) {
        Some(("agent", Some(id))) => Some(id),
        _ => context_str(event, "agent_id"),
    }?;
    Some(json!({ "uid": agent }))
}

/// `entity`: the managed object, from the target (`<kind>:<id>`).
pub(super) fn entity(event: &AuditEvent) -> Value {
    let mut entity = Map::new();
    match split_target(&event.target) {
        Some((kind, Some(id))) => {
            entity.insert("type".into(), Value::from(kind));
            entity.insert("uid".into(), Value::from(id));
        }
        Some((kind, None)) => {
            entity.insert("type".into(), Value::from(kind));
            entity.insert("name".into(), Value::from(kind));
        }
        None => {
            let kind = event.action.split('.').next().unwrap_or_default();
            entity.insert("type".into(), Value::from(kind));
        }
    }
    Value::Object(entity)
}

/// The producing service: context `source`, else the action's first segment.
pub(super) fn source(event: &AuditEvent) -> &str {
    context_str(event, "source")
        .unwrap_or_else(|| event.action.split('.').next().unwrap_or_default())
}
