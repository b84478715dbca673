//! Offline verification of exports: a good export passes with its checkpoints; a tampered,
//! deleted, truncated or rewritten history, a forged checkpoint and the wrong key are each
//! found, at the line and seq where they are.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;

use ed25519_dalek::SigningKey;
use serde_json::json;
use tucdesk_crypto::audit::export::{ExportFailure, verify_export};
use tucdesk_crypto::audit::{
    Actor, ActorKind, AuditEvent, ChainBuilder, ChainFailure, Entry, MAX_ENTRY_JSON_LEN,
};
use tucdesk_crypto::merkle::{Checkpoint, MerkleAccumulator};

const TEAM: &str = "team-a";

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn event(i: u64, target: &str) -> AuditEvent {
    AuditEvent {
        event_id: format!("00000000-0000-4000-8000-{i:012x}"),
        team_id: TEAM.into(),
        actor: Actor {
            kind: ActorKind::User,
            id: "user-1".into(),
            display: None,
        },
        action: "session.start".into(),
        target: target.into(),
        occurred_at: 1_700_000_000_000 + i,
        session_id: None,
        policy_result: None,
        context: json!({ "i": i }).as_object().unwrap().clone(),
    }
}

fn entries(n: u64, key: &SigningKey, target_of: impl Fn(u64) -> String) -> Vec<Entry> {
    let mut chain = ChainBuilder::new(TEAM).unwrap();
    (1..=n)
        .map(|i| chain.append(event(i, &target_of(i)), key).unwrap())
        .collect()
}

fn checkpoint_line(entries: &[Entry], size: usize, key: &SigningKey) -> String {
    let mut acc = MerkleAccumulator::new();
    for entry in &entries[..size] {
        acc.push_entry_hash(&entry.hash).unwrap();
    }
    let signed = Checkpoint {
        team_id: TEAM.into(),
        tree_size: size as u64,
        root_hash: acc.root(),
        timestamp_ms: 1_700_000_100_000,
        key_id: "SHA256:test".into(),
    }
    .sign(key)
    .unwrap();
    serde_json::to_string(&signed).unwrap()
}

/// Entries as lines, with checkpoints of sizes `at` placed after their last entry.
fn export(entries: &[Entry], at: &[usize], key: &SigningKey) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        lines.push(entry.to_json_line().unwrap());
        if at.contains(&(i + 1)) {
            lines.push(checkpoint_line(entries, i + 1, key));
        }
    }
    lines
}

fn verify(
    lines: &[String],
    key: &SigningKey,
) -> Result<tucdesk_crypto::audit::export::ExportSummary, tucdesk_crypto::audit::export::ExportError>
{
    let text = lines.join("\n") + "\n";
    verify_export(
        || Ok(Cursor::new(text.clone().into_bytes())),
        &key.verifying_key(),
    )
}

fn target(i: u64) -> String {
    format!("agent-{i}")
}

#[test]
fn a_good_export_verifies_with_its_checkpoints() {
    let k = key(1);
    let chain = entries(50, &k, target);
    let summary = verify(&export(&chain, &[0, 10, 32, 50], &k), &k).unwrap();
    assert_eq!(summary.entries, 50);
    assert_eq!(summary.team_id, TEAM);
    assert_eq!(summary.checkpoints, 3);
    assert_eq!(summary.checkpointed, 50);
    // Checkpoints may also come first, all together.
    let mut lines: Vec<String> = [10, 50]
        .iter()
        .map(|&n| checkpoint_line(&chain, n, &k))
        .collect();
    lines.extend(chain.iter().map(|e| e.to_json_line().unwrap()));
    assert!(verify(&lines, &k).is_ok());
}

#[test]
fn a_tampered_entry_is_found_at_its_seq() {
    let k = key(1);
    let chain = entries(20, &k, target);
    let mut lines = export(&chain, &[20], &k);
    lines[6] = lines[6].replace("agent-7", "agent-X");
    let err = verify(&lines, &k).unwrap_err();
    assert_eq!(err.seq, Some(7));
    assert_eq!(err.line, 7);
    assert_eq!(err.reason, ExportFailure::Chain(ChainFailure::BadHash));
}

#[test]
fn a_deleted_entry_is_a_gap() {
    let k = key(1);
    let chain = entries(20, &k, target);
    let mut lines = export(&chain, &[], &k);
    lines.remove(11);
    let err = verify(&lines, &k).unwrap_err();
    assert_eq!(err.seq, Some(12));
    assert_eq!(
        err.reason,
        ExportFailure::Chain(ChainFailure::Gap { found: 13 })
    );
}

#[test]
fn a_cut_off_tail_is_caught_by_a_checkpoint() {
    let k = key(1);
    let chain = entries(30, &k, target);
    let mut lines = export(&chain, &[30], &k);
    // Keep the checkpoint of size 30, drop the last five entries before it.
    let checkpoint = lines.pop().unwrap();
    lines.truncate(25);
    lines.push(checkpoint);
    let err = verify(&lines, &k).unwrap_err();
    assert_eq!(
        err.reason,
        ExportFailure::Truncated {
            tree_size: 30,
            held: 25
        }
    );
}

#[test]
fn a_history_rewritten_by_the_key_holder_contradicts_the_checkpoint() {
    let k = key(1);
    let original = entries(20, &k, target);
    let checkpoint = checkpoint_line(&original, 20, &k);
    // The same key re-signs a different history: the chain itself verifies...
    let rewritten = entries(20, &k, |i| {
        if i == 4 {
            "nothing-to-see".into()
        } else {
            target(i)
        }
    });
    let mut lines = export(&rewritten, &[], &k);
    assert!(verify(&lines, &k).is_ok());
    // ...but not against a checkpoint published before the rewrite.
    lines.push(checkpoint);
    let err = verify(&lines, &k).unwrap_err();
    assert_eq!(err.reason, ExportFailure::RootMismatch { tree_size: 20 });
    assert_eq!(err.line, 21);
}

#[test]
fn a_forged_checkpoint_and_a_wrong_key_are_refused() {
    let k = key(1);
    let chain = entries(5, &k, target);
    let mut lines = export(&chain, &[], &k);
    lines.push(checkpoint_line(&chain, 5, &key(2)));
    assert_eq!(
        verify(&lines, &k).unwrap_err().reason,
        ExportFailure::CheckpointSignature
    );
    let err = verify(&export(&chain, &[], &k), &key(3)).unwrap_err();
    assert_eq!(err.seq, Some(1));
    assert_eq!(err.reason, ExportFailure::Chain(ChainFailure::BadSignature));
}

#[test]
fn malformed_oversized_and_empty_exports_are_refused() {
    let k = key(1);
    let chain = entries(3, &k, target);
    let mut lines = export(&chain, &[], &k);
    lines.insert(1, "{\"seq\": \"one\"}".into());
    assert!(matches!(
        verify(&lines, &k).unwrap_err().reason,
        ExportFailure::Malformed(_)
    ));
    let long = vec!["x".repeat(MAX_ENTRY_JSON_LEN + 10)];
    assert_eq!(
        verify(&long, &k).unwrap_err().reason,
        ExportFailure::LineTooLong
    );
    assert_eq!(verify(&[], &k).unwrap_err().reason, ExportFailure::Empty);
}
