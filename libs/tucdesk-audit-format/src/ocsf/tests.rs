#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use serde_json::{Value, json};
use tucdesk_crypto::audit::{
    Actor, ActorKind, AuditEvent, Entry, PolicyDecision, PolicyResult, canonical_json,
};
use tucdesk_crypto::merkle::{Checkpoint, SignedCheckpoint};

use super::*;

/// Every action the services emit and where it must land: (action, class uid, activity id).
/// Kept by hand on purpose: changing a mapping means changing this table too.
const EXPECTED: &[(&str, u32, u32)] = &[
    ("auth.login", 3002, 1),
    ("auth.login_failed", 3002, 1),
    ("auth.logout", 3002, 2),
    ("auth.refresh", 3002, 99),
    ("auth.refresh_failed", 3002, 99),
    ("auth.refresh_reused", 3002, 99),
    ("auth.oauth_token", 3002, 1),
    ("auth.oauth_token_failed", 3002, 1),
    ("auth.oauth_code_reused", 3002, 99),
    ("auth.totp_recovery_code_used", 3002, 99),
    ("auth.support_code_redeemed", 3002, 1),
    ("auth.support_code_failed", 3002, 1),
    ("auth.bootstrap", 3001, 1),
    ("auth.user_created", 3001, 1),
    ("auth.invite_accepted", 3001, 2),
    ("auth.user_enabled", 3001, 2),
    ("auth.user_disabled", 3001, 5),
    ("auth.password_changed", 3001, 3),
    ("auth.password_change_failed", 3001, 3),
    ("auth.totp_enrollment_started", 3001, 99),
    ("auth.totp_enabled", 3001, 10),
    ("auth.totp_disabled", 3001, 11),
    ("auth.totp_disable_failed", 3001, 11),
    ("auth.role_changed", 3001, 7),
    ("auth.device_key_bound", 3001, 99),
    ("auth.session_token_minted", 3003, 1),
    ("auth.session_token_refused", 3003, 1),
    ("auth.oauth_grant", 3003, 1),
    ("auth.oauth_client_registered", 3004, 1),
    ("auth.oauth_client_revoked", 3004, 9),
    ("auth.oauth_grant_revoked", 3004, 9),
    ("auth.support_code_created", 3004, 1),
    ("auth.support_code_revoked", 3004, 9),
    ("auth.signing_key_rotated", 3004, 1),
    ("agent.registered", 3002, 1),
    ("agent.registration_rejected", 3002, 1),
    ("agent.disconnected", 3002, 2),
    ("agent.enrolled", 3004, 6),
    ("agent.enroll_failed", 3004, 6),
    ("agent.renamed", 3004, 5),
    ("agent.tags_changed", 3004, 3),
    ("agent.revoked", 3004, 7),
    ("enrollment_token.created", 3004, 1),
    ("enrollment_token.revoked", 3004, 9),
    ("policy.updated", 3004, 3),
    ("policy.explained", 3004, 2),
    ("recording.settings.updated", 3004, 3),
    ("policy.decision", 3003, 99),
    ("session.requested", 3003, 99),
    ("session.offered", 3003, 99),
    ("session.accepted", 3003, 99),
    ("session.refused", 3003, 99),
    ("approval.requested", 3003, 99),
    ("approval.approved", 3003, 99),
    ("approval.denied", 3003, 99),
    ("approval.expired", 3003, 99),
    ("approval.self_approval_refused", 3003, 99),
    ("session.start", 6003, 1),
    ("session.path_changed", 6003, 3),
    ("session.connectivity_renewed", 6003, 3),
    ("session.end", 6003, 4),
    ("session.terminated", 6003, 4),
    ("recording.upload", 6003, 1),
    ("recording.upload_rejected", 6003, 1),
    ("recording.download", 6003, 2),
    ("audit.query", 6003, 2),
    ("audit.export", 6003, 2),
];

fn event(action: &str, context: Value) -> AuditEvent {
    AuditEvent {
        event_id: "0193a8c4-0000-7000-8000-000000000001".into(),
        team_id: "team-1".into(),
        actor: Actor {
            kind: ActorKind::User,
            id: "user-1".into(),
            display: Some("alice@example.com".into()),
        },
        action: action.into(),
        target: "agent:AAAA".into(),
        occurred_at: 1_767_225_600_123,
        session_id: None,
        policy_result: None,
        context: match context {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        },
    }
}

fn entry(event: AuditEvent) -> Entry {
    Entry {
        seq: 42,
        prev_hash: [1; 32],
        event,
        hash: [0xab; 32],
        sig: [0xcd; 64],
    }
}

fn ocsf(action: &str, context: Value) -> Value {
    entry_to_ocsf(&entry(event(action, context)))
}

#[test]
fn every_emitted_action_maps_to_its_class_and_activity() {
    let mut seen = HashSet::new();
    for row in ACTIONS {
        assert!(seen.insert(row.action), "{} listed twice", row.action);
    }
    assert_eq!(ACTIONS.len(), EXPECTED.len(), "catalogue and table differ");
    for (action, class, activity) in EXPECTED {
        let row = lookup(action).unwrap_or_else(|| panic!("{action} is not catalogued"));
        assert_eq!(row.class.uid(), *class, "{action}");
        assert_eq!(row.activity.id, *activity, "{action}");
        let out = ocsf(action, json!({}));
        assert_eq!(out["class_uid"], *class, "{action}");
        assert_eq!(out["activity_id"], *activity, "{action}");
        assert_eq!(out["activity_name"], row.activity.name, "{action}");
        assert_ne!(out["activity_name"], "Other", "{action} is named");
    }
}

#[test]
fn type_uid_is_class_times_100_plus_activity() {
    for row in ACTIONS {
        let out = ocsf(row.action, json!({}));
        let expected = u64::from(row.class.uid()) * 100 + u64::from(row.activity.id);
        assert_eq!(out["type_uid"], expected, "{}", row.action);
        assert_eq!(
            out["type_name"],
            format!("{}: {}", row.class.name(), row.activity.name)
        );
    }
    assert_eq!(ocsf("auth.login", json!({}))["type_uid"], 300_201);
    assert_eq!(ocsf("exec.command", json!({}))["type_uid"], 600_399);
    assert_eq!(ocsf("policy.decision", json!({}))["type_uid"], 300_399);
}

#[test]
fn every_object_carries_the_fields_its_class_requires() {
    let unknown = ["exec.command", "recording.upload", "a.b"];
    for action in ACTIONS.iter().map(|r| r.action).chain(unknown) {
        for kind in [
            ActorKind::User,
            ActorKind::Agent,
            ActorKind::Service,
            ActorKind::System,
        ] {
            let mut e = event(action, json!({}));
            e.actor.kind = kind;
            e.target = String::new();
            let out = entry_to_ocsf(&entry(e));
            for field in [
                "class_uid",
                "class_name",
                "category_uid",
                "category_name",
                "activity_id",
                "activity_name",
                "type_uid",
                "severity_id",
                "status_id",
                "status",
                "time",
                "message",
                "actor",
                "metadata",
            ] {
                assert!(!out[field].is_null(), "{action}/{kind:?}: {field}");
            }
            assert_eq!(out["time"], 1_767_225_600_123_u64);
            let meta = &out["metadata"];
            assert_eq!(meta["version"], OCSF_VERSION);
            assert_eq!(meta["product"]["name"], "TucDesk");
            assert!(meta["product"]["vendor_name"].is_string());
            assert_eq!(meta["uid"], "0193a8c4-0000-7000-8000-000000000001");
            assert_eq!(meta["log_name"], "tucdesk-audit");
            assert_eq!(meta["sequence"], 42);
            assert_eq!(meta["event_code"], action);
            assert_eq!(meta["tenant_uid"], "team-1");
            let chain = &out["unmapped"]["chain"];
            assert_eq!(chain["seq"], 42);
            assert_eq!(chain["hash"], "ab".repeat(32));
            assert_eq!(chain["sig"], "cd".repeat(64));
            assert_eq!(chain["prev_hash"], "01".repeat(32));
            match out["class_uid"].as_u64().unwrap() {
                3001..=3003 => assert!(out["user"]["uid"].is_string(), "{action}"),
                3004 => assert!(out["entity"]["type"].is_string(), "{action}"),
                6003 => {
                    assert_eq!(out["api"]["operation"], action);
                    assert!(out["src_endpoint"].is_object(), "{action}");
                }
                other => panic!("{action}: unexpected class {other}"),
            }
        }
    }
}

#[test]
fn unknown_actions_fall_back_to_api_activity_other() {
    let out = ocsf("exec.command", json!({ "argv": ["ls"] }));
    assert_eq!(out["class_uid"], 6003);
    assert_eq!(out["class_name"], "API Activity");
    assert_eq!(out["category_uid"], 6);
    assert_eq!(out["activity_id"], 99);
    assert_eq!(out["activity_name"], "Other");
    assert_eq!(out["api"]["operation"], "exec.command");
    assert_eq!(out["metadata"]["event_code"], "exec.command");
    assert_eq!(out["unmapped"]["context"]["argv"], json!(["ls"]));
    // No outcome and no policy result: OCSF "Unknown", not a guess.
    assert_eq!(out["status_id"], 0);
    assert_eq!(mapping("exec.command"), &FALLBACK);
}

#[test]
fn the_same_entry_always_gives_the_same_object() {
    let context = r#"{"z":1,"outcome":"success","a":{"y":[1,2],"b":"x"},"client_ip":"10.0.0.1"}"#;
    let reordered = r#"{"client_ip":"10.0.0.1","a":{"b":"x","y":[1,2]},"outcome":"success","z":1}"#;
    let mut one = event("auth.login", json!({}));
    one.context = canonical_json::parse_object(context).unwrap();
    let mut two = one.clone();
    two.context = canonical_json::parse_object(reordered).unwrap();
    let first = serde_json::to_string(&entry_to_ocsf(&entry(one.clone()))).unwrap();
    assert_eq!(
        first,
        serde_json::to_string(&entry_to_ocsf(&entry(one))).unwrap()
    );
    assert_eq!(
        first,
        serde_json::to_string(&entry_to_ocsf(&entry(two))).unwrap()
    );
}

#[test]
fn outcome_and_policy_set_status_and_failures_raise_severity() {
    let ok = ocsf("auth.login", json!({ "outcome": "success" }));
    assert_eq!(
        (ok["status_id"].clone(), ok["status"].clone()),
        (json!(1), json!("Success"))
    );
    assert_eq!(ok["severity_id"], 1);

    let failed = ocsf(
        "auth.login_failed",
        json!({ "outcome": "failure", "reason": "BAD_CREDENTIALS" }),
    );
    assert_eq!(failed["status_id"], 2);
    assert_eq!(failed["status_detail"], "BAD_CREDENTIALS");
    assert_eq!(failed["severity_id"], 2);

    // A denial of an otherwise informational action is at least Low.
    let denied = ocsf("policy.decision", json!({ "outcome": "denied" }));
    assert_eq!(
        (denied["status_id"].clone(), denied["severity_id"].clone()),
        (json!(2), json!(2))
    );
    let pending = ocsf("policy.decision", json!({ "outcome": "approval_required" }));
    assert_eq!(pending["status_id"], 99);
    assert_eq!(pending["status"], "approval_required");
    // Reuse detection is High whatever the outcome.
    assert_eq!(
        ocsf("auth.refresh_reused", json!({ "outcome": "denied" }))["severity_id"],
        4
    );
    // A catalogued fact without an outcome happened.
    assert_eq!(ocsf("session.start", json!({}))["status_id"], 1);

    let mut unknown = event("exec.command", json!({}));
    unknown.policy_result = Some(PolicyResult {
        decision: PolicyDecision::Deny,
        rule: "night".into(),
        reason: "outside hours".into(),
        approver: None,
    });
    assert_eq!(entry_to_ocsf(&entry(unknown))["status_id"], 2);
}

#[test]
fn severity_of_is_the_severity_id_of_the_ocsf_object() {
    for (action, context) in [
        ("auth.login", json!({ "outcome": "success" })),
        ("auth.login_failed", json!({ "outcome": "failure" })),
        ("policy.decision", json!({ "outcome": "denied" })),
        ("auth.refresh_reused", json!({ "outcome": "denied" })),
        (
            "approval.self_approval_refused",
            json!({ "outcome": "denied" }),
        ),
        ("exec.command", json!({})),
    ] {
        let e = event(action, context);
        assert_eq!(
            json!(severity_of(&e).id()),
            entry_to_ocsf(&entry(e))["severity_id"],
            "{action}"
        );
    }
}

#[test]
fn context_lands_in_ocsf_attributes_and_the_rest_in_unmapped() {
    let mut e = event(
        "policy.decision",
        json!({
            "outcome": "allowed",
            "client_ip": "192.0.2.7",
            "device_key_thumbprint": "jkt-1",
            "source": "rendezvous",
            "policy_version": 7,
            "principal": "user",
        }),
    );
    e.session_id = Some("s-1".into());
    e.policy_result = Some(PolicyResult {
        decision: PolicyDecision::Allow,
        rule: "ops".into(),
        reason: "on call".into(),
        approver: Some("user-9".into()),
    });
    let out = entry_to_ocsf(&entry(e));
    assert_eq!(
        out["src_endpoint"],
        json!({ "ip": "192.0.2.7", "uid": "jkt-1" })
    );
    assert_eq!(out["dst_endpoint"], json!({ "uid": "AAAA" }));
    assert_eq!(out["user"]["uid"], "user-1");
    assert_eq!(out["user"]["email_addr"], "alice@example.com");
    assert_eq!(out["actor"]["user"]["uid"], "user-1");
    assert_eq!(
        out["actor"]["authorizations"],
        json!([{ "decision": "allow", "policy": { "name": "ops", "desc": "on call", "version": "7" } }])
    );
    assert_eq!(out["metadata"]["correlation_uid"], "s-1");
    assert_eq!(out["metadata"]["product"]["feature"]["name"], "rendezvous");
    let unmapped = &out["unmapped"];
    assert_eq!(unmapped["policy_result"]["approver"], "user-9");
    assert_eq!(unmapped["session_id"], "s-1");
    assert_eq!(unmapped["target"], "agent:AAAA");
    assert_eq!(
        unmapped["context"],
        json!({ "policy_version": 7, "principal": "user" })
    );
}

#[test]
fn targets_name_the_user_entity_and_agent_concerned() {
    let mut e = event(
        "auth.role_changed",
        json!({ "from": "operator", "to": "admin" }),
    );
    e.target = "user:user-2".into();
    let out = entry_to_ocsf(&entry(e));
    assert_eq!(out["user"], json!({ "uid": "user-2" }));
    assert_eq!(out["actor"]["user"]["uid"], "user-1");

    let mut e = event("auth.login_failed", json!({ "outcome": "failure" }));
    e.target = "email:bob@example.com".into();
    e.actor.id = "anonymous".into();
    e.actor.display = None;
    let out = entry_to_ocsf(&entry(e));
    assert_eq!(
        out["user"],
        json!({ "name": "bob@example.com", "email_addr": "bob@example.com" })
    );

    let mut e = event("auth.session_token_minted", json!({ "operator": "user-3" }));
    e.actor = Actor {
        kind: ActorKind::Service,
        id: "rendezvous".into(),
        display: None,
    };
    let out = entry_to_ocsf(&entry(e));
    assert_eq!(out["user"]["uid"], "user-3");
    assert_eq!(out["actor"]["app_name"], "rendezvous");

    let mut e = event("agent.registered", json!({ "client_ip": "198.51.100.2" }));
    e.actor = Actor {
        kind: ActorKind::Agent,
        id: "AAAA".into(),
        display: Some("laptop".into()),
    };
    let out = entry_to_ocsf(&entry(e));
    assert_eq!(out["actor"]["app_uid"], "AAAA");
    assert_eq!(
        out["src_endpoint"],
        json!({ "ip": "198.51.100.2", "uid": "AAAA", "name": "laptop" })
    );
    assert_eq!(out["user"]["type"], "Agent");
    assert!(out.get("dst_endpoint").is_none());

    let mut e = event("policy.updated", json!({}));
    e.target = "policy".into();
    assert_eq!(
        entry_to_ocsf(&entry(e))["entity"],
        json!({ "type": "policy", "name": "policy" })
    );
    let e = event("agent.revoked", json!({}));
    assert_eq!(
        entry_to_ocsf(&entry(e))["entity"],
        json!({ "type": "agent", "uid": "AAAA" })
    );
}

#[test]
fn a_checkpoint_becomes_an_event_log_object_holding_the_signed_head() {
    let signed = SignedCheckpoint {
        checkpoint: Checkpoint {
            team_id: "team-1".into(),
            tree_size: 10,
            root_hash: [7; 32],
            timestamp_ms: 1_767_225_600_000,
            key_id: "SHA256:abc".into(),
        },
        sig: [9; 64],
    };
    let out = checkpoint_to_ocsf(&signed);
    assert_eq!(out["class_uid"], 1008);
    assert_eq!(out["type_uid"], 100_899);
    assert_eq!(out["activity_name"], "Checkpoint");
    assert_eq!(out["metadata"]["sequence"], 10);
    assert_eq!(out["metadata"]["event_code"], CHECKPOINT_EVENT_CODE);
    let line = serde_json::to_string(&out["unmapped"]["checkpoint"]).unwrap();
    assert_eq!(SignedCheckpoint::from_json(&line).unwrap(), signed);
    assert_eq!(
        out["unmapped"]["checkpoint"],
        serde_json::to_value(&signed).unwrap()
    );
}
