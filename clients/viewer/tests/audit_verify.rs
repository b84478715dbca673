//! `tucdesk audit verify`: a good export passes (exit 0), a tampered one names the broken line
//! and seq (exit 1), a bad key is a clear error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use ed25519_dalek::SigningKey;
use tucdesk_crypto::audit::{Actor, ActorKind, AuditEvent, ChainBuilder};

fn export(dir: &std::path::Path, key: &SigningKey) -> std::path::PathBuf {
    let mut chain = ChainBuilder::new("team-a").unwrap();
    let mut lines = String::new();
    for i in 1..=12u64 {
        let entry = chain
            .append(
                AuditEvent {
                    event_id: format!("00000000-0000-4000-8000-{i:012x}"),
                    team_id: "team-a".into(),
                    actor: Actor {
                        kind: ActorKind::User,
                        id: "user-1".into(),
                        display: None,
                    },
                    action: "auth.login".into(),
                    target: format!("user:{i}"),
                    occurred_at: 1_700_000_000_000 + i,
                    session_id: None,
                    policy_result: None,
                    context: Default::default(),
                },
                key,
            )
            .unwrap();
        lines.push_str(&entry.to_json_line().unwrap());
        lines.push('\n');
    }
    let path = dir.join("export.ndjson");
    std::fs::write(&path, lines).unwrap();
    path
}

fn key_text(key: &SigningKey) -> String {
    tucdesk_crypto::PublicKey::from_bytes(key.verifying_key().as_bytes())
        .unwrap()
        .agent_id()
}

fn tucdesk(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tucdesk"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_good_export_passes_and_a_tampered_one_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let path = export(dir.path(), &key);
    let file = path.display().to_string();
    let out = tucdesk(&["audit", "verify", &file, "--key", &key_text(&key)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("12 entries"));

    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("user:5\"", "user:6\"")).unwrap();
    let out = tucdesk(&["audit", "verify", &file, "--key", &key_text(&key)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 5 (seq 5)"), "{err}");
    assert!(err.contains("bad hash"), "{err}");

    let out = tucdesk(&["audit", "verify", &file, "--key", "not-a-key"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--key"));
}
