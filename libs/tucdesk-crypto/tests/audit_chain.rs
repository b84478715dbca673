//! Audit chain tests: every tampering, deletion, reordering, splice and key
//! substitution is caught, at exactly the seq where it happened.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tucdesk_crypto::audit::{
    Actor, ActorKind, AuditError, AuditEvent, CanonicalJsonError, ChainBuilder, ChainError,
    ChainFailure, ChainHead, Entry, EntryError, EntryParseError, EventError, GENESIS_PREV_HASH,
    LinkError, MAX_ENTRY_JSON_LEN, PolicyDecision, PolicyResult, append, canonical_json,
    entry_hash, verify_chain, verify_chain_from, verify_entry, verify_link,
};
use tucdesk_crypto::merkle::{Checkpoint, MerkleAccumulator, leaf_hash, root};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn event(team: &str, i: u64) -> AuditEvent {
    AuditEvent {
        event_id: format!("00000000-0000-4000-8000-{i:012x}"),
        team_id: team.into(),
        actor: Actor {
            kind: ActorKind::User,
            id: format!("user-{}", i % 3),
            display: Some("Ada".into()),
        },
        action: "session.start".into(),
        target: format!("agent-{i}"),
        occurred_at: 1_700_000_000_000 + i,
        session_id: Some(format!("sess-{i}")),
        policy_result: Some(PolicyResult {
            decision: PolicyDecision::Allow,
            rule: "tag:prod".into(),
            reason: "operator in sre group".into(),
            approver: Some("user-9".into()),
        }),
        context: obj(json!({ "i": i, "path": "p2p", "nested": { "bytes": 10 * i, "ok": true } })),
    }
}

fn chain(team: &str, n: u64, key: &SigningKey) -> Vec<Entry> {
    let mut b = ChainBuilder::new(team).unwrap();
    (1..=n)
        .map(|i| b.append(event(team, i), key).unwrap())
        .collect()
}

fn broken_at(entries: &[Entry]) -> ChainError {
    verify_chain(entries, &key(1).verifying_key()).unwrap_err()
}

/// A field name and a way to tamper with it.
type Tamper = (&'static str, fn(&mut Entry));

/// Every field of an entry, and a tampering of it.
const TAMPERS: [Tamper; 18] = [
    ("seq", |e| e.seq += 1),
    ("prev_hash", |e| e.prev_hash[0] ^= 1),
    ("hash", |e| e.hash[31] ^= 1),
    ("sig", |e| e.sig[0] ^= 1),
    ("team_id", |e| e.event.team_id.push('x')),
    ("event_id", |e| {
        e.event.event_id = "00000000-0000-4000-8000-ffffffffffff".into()
    }),
    ("actor.kind", |e| e.event.actor.kind = ActorKind::System),
    ("actor.id", |e| e.event.actor.id.push('x')),
    ("actor.display", |e| e.event.actor.display = None),
    ("action", |e| e.event.action = "session.end".into()),
    ("target", |e| e.event.target.push('x')),
    ("occurred_at", |e| e.event.occurred_at += 1),
    ("session_id", |e| e.event.session_id = None),
    ("policy_result.decision", |e| {
        e.event.policy_result.as_mut().unwrap().decision = PolicyDecision::Deny
    }),
    ("policy_result.approver", |e| {
        e.event.policy_result.as_mut().unwrap().approver = None
    }),
    ("policy_result", |e| e.event.policy_result = None),
    ("context (new key)", |e| {
        e.event.context.insert("extra".into(), json!(1));
    }),
    ("context (nested value)", |e| {
        e.event.context["nested"]["bytes"] = json!(0)
    }),
];

#[test]
fn an_untouched_chain_verifies() {
    let entries = chain("team-a", 6, &key(1));
    verify_chain(&entries, &key(1).verifying_key()).unwrap();
    assert_eq!(entries[0].prev_hash, GENESIS_PREV_HASH);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
    }
    for w in entries.windows(2) {
        verify_link(&w[0], &w[1]).unwrap();
    }
    verify_chain(&[], &key(1).verifying_key()).unwrap();
}

#[test]
fn a_chain_signed_by_another_key_fails_at_seq_1() {
    let entries = chain("team-a", 3, &key(2));
    assert_eq!(
        broken_at(&entries),
        ChainError {
            seq: 1,
            reason: ChainFailure::BadSignature
        }
    );
}

#[test]
fn rehashing_a_modified_entry_without_the_key_is_caught_by_the_signature() {
    let mut entries = chain("team-a", 5, &key(1));
    entries[2].event.target = "somewhere-else".into();
    entries[2].hash = entries[2].compute_hash().unwrap();
    assert_eq!(
        broken_at(&entries),
        ChainError {
            seq: 3,
            reason: ChainFailure::BadSignature
        }
    );
}

#[test]
fn deleting_a_middle_entry_is_a_gap_at_its_seq() {
    let mut entries = chain("team-a", 6, &key(1));
    entries.remove(3);
    assert_eq!(
        broken_at(&entries),
        ChainError {
            seq: 4,
            reason: ChainFailure::Gap { found: 5 }
        }
    );
    let mut entries = chain("team-a", 6, &key(1));
    entries.remove(0);
    assert_eq!(
        broken_at(&entries),
        ChainError {
            seq: 1,
            reason: ChainFailure::Gap { found: 2 }
        }
    );
}

#[test]
fn reordering_and_duplicating_are_detected() {
    let mut entries = chain("team-a", 6, &key(1));
    entries.swap(2, 3);
    assert_eq!(
        broken_at(&entries),
        ChainError {
            seq: 3,
            reason: ChainFailure::Gap { found: 4 }
        }
    );
    let mut entries = chain("team-a", 6, &key(1));
    entries.insert(3, entries[2].clone());
    assert_eq!(
        broken_at(&entries),
        ChainError {
            seq: 4,
            reason: ChainFailure::Replayed { found: 3 }
        }
    );
}

#[test]
fn an_entry_from_another_teams_chain_is_detected() {
    let a = chain("team-a", 5, &key(1));
    let b = chain("team-b", 5, &key(1));
    let mut spliced = a.clone();
    spliced[2] = b[2].clone();
    assert_eq!(
        broken_at(&spliced),
        ChainError {
            seq: 3,
            reason: ChainFailure::WrongTeam {
                expected: "team-a".into(),
                found: "team-b".into()
            }
        }
    );
}

#[test]
fn a_validly_signed_fork_is_a_broken_link() {
    // The key holder wrote two histories that share seq 1..2; splicing
    // seq 4 of the second after seq 3 of the first breaks the link.
    let key1 = key(1);
    let a = chain("team-a", 5, &key1);
    let mut b = ChainBuilder::resume(&a[1]).unwrap();
    let mut ev = event("team-a", 3);
    ev.target = "forked".into();
    let b3 = b.append(ev, &key1).unwrap();
    let b4 = b.append(event("team-a", 4), &key1).unwrap();
    assert_ne!(b3.hash, a[2].hash);
    let spliced = vec![a[0].clone(), a[1].clone(), a[2].clone(), b4.clone()];
    assert_eq!(
        broken_at(&spliced),
        ChainError {
            seq: 4,
            reason: ChainFailure::BrokenLink
        }
    );
    assert_eq!(verify_link(&a[2], &b4), Err(LinkError::PrevHashMismatch));
}

#[test]
fn genesis_must_be_seq_1_with_a_zero_prev_hash() {
    let k = key(1);
    let ev = event("team-a", 1);
    let prev_hash = [9u8; 32];
    let hash = entry_hash(1, &prev_hash, &ev).unwrap();
    let sig = ed25519_dalek::Signer::sign(&k, &hash).to_bytes();
    let fake = Entry {
        seq: 1,
        prev_hash,
        event: ev,
        hash,
        sig,
    };
    verify_entry(&fake, &k.verifying_key()).unwrap();
    assert_eq!(
        broken_at(&[fake]),
        ChainError {
            seq: 1,
            reason: ChainFailure::BrokenLink
        }
    );
}

#[test]
fn a_continuation_verifies_from_a_trusted_head() {
    let entries = chain("team-a", 8, &key(1));
    let vk = key(1).verifying_key();
    let (first, rest) = entries.split_at(5);
    verify_chain(first, &vk).unwrap();
    let head = ChainHead::of(&first[4]);
    verify_chain_from(Some(&head), rest, &vk).unwrap();

    let mut wrong = head.clone();
    wrong.hash[0] ^= 1;
    assert_eq!(
        verify_chain_from(Some(&wrong), rest, &vk),
        Err(ChainError {
            seq: 6,
            reason: ChainFailure::BrokenLink
        })
    );
    let mut other_team = head.clone();
    other_team.team_id = "team-b".into();
    assert!(matches!(
        verify_chain_from(Some(&other_team), rest, &vk),
        Err(ChainError {
            seq: 6,
            reason: ChainFailure::WrongTeam { .. }
        })
    ));
}

#[test]
fn truncation_is_invisible_to_the_chain_but_not_to_a_checkpoint() {
    let k = key(1);
    let entries = chain("team-a", 10, &k);
    let mut acc = MerkleAccumulator::new();
    for e in &entries {
        acc.push_entry_hash(&e.hash).unwrap();
    }
    let cp = Checkpoint {
        team_id: "team-a".into(),
        tree_size: acc.size(),
        root_hash: acc.root(),
        timestamp_ms: 1_700_000_001_000,
        key_id: "audit-1".into(),
    }
    .sign(&k)
    .unwrap();

    // The attacker drops the last two entries: the chain still verifies...
    let cut = &entries[..8];
    verify_chain(cut, &k.verifying_key()).unwrap();
    // ...but the export no longer matches the signed tree head.
    cp.verify(&k.verifying_key()).unwrap();
    let leaves: Vec<_> = cut.iter().map(|e| leaf_hash(&e.hash)).collect();
    assert_ne!(leaves.len() as u64, cp.checkpoint.tree_size);
    assert_ne!(root(&leaves), cp.checkpoint.root_hash);
    let all: Vec<_> = entries.iter().map(|e| leaf_hash(&e.hash)).collect();
    assert_eq!(root(&all), cp.checkpoint.root_hash);
}

#[test]
fn append_starts_continues_and_refuses_bad_heads() {
    let k = key(1);
    let e1 = append(None, event("team-a", 1), &k).unwrap();
    assert_eq!((e1.seq, e1.prev_hash), (1, GENESIS_PREV_HASH));
    let e2 = append(Some(&e1), event("team-a", 2), &k).unwrap();
    assert_eq!((e2.seq, e2.prev_hash), (2, e1.hash));
    verify_link(&e1, &e2).unwrap();
    // Same result as the builder: signing is deterministic.
    assert_eq!(vec![e1.clone(), e2.clone()], chain("team-a", 2, &k));

    assert!(matches!(
        append(Some(&e1), event("team-b", 2), &k),
        Err(AuditError::TeamMismatch { .. })
    ));
    let mut corrupt = e1.clone();
    corrupt.event.target.push('x');
    assert_eq!(
        append(Some(&corrupt), event("team-a", 2), &k),
        Err(AuditError::CorruptHead)
    );

    let mut bad = event("team-a", 3);
    bad.action = "nodots".into();
    assert_eq!(
        append(Some(&e2), bad, &k),
        Err(AuditError::InvalidEvent(EventError::BadAction))
    );
}

#[test]
fn verify_link_names_what_is_wrong() {
    let a = chain("team-a", 3, &key(1));
    let b = chain("team-b", 3, &key(1));
    assert!(matches!(
        verify_link(&a[0], &b[1]),
        Err(LinkError::WrongTeam { .. })
    ));
    assert_eq!(
        verify_link(&a[0], &a[2]),
        Err(LinkError::SeqNotNext {
            expected: 2,
            found: 3
        })
    );
    assert_eq!(
        verify_link(&a[1], &a[0]),
        Err(LinkError::SeqNotNext {
            expected: 3,
            found: 1
        })
    );
}

#[test]
fn seq_zero_is_never_valid() {
    let mut entries = chain("team-a", 1, &key(1));
    entries[0].seq = 0;
    assert_eq!(
        verify_entry(&entries[0], &key(1).verifying_key()),
        Err(EntryError::ZeroSeq)
    );
}

#[test]
fn ndjson_export_round_trips_and_verifies() {
    let entries = chain("team-a", 4, &key(1));
    let lines: Vec<String> = entries.iter().map(|e| e.to_json_line().unwrap()).collect();
    assert!(lines.iter().all(|l| !l.contains('\n')));
    let back: Vec<Entry> = lines
        .iter()
        .map(|l| Entry::from_json_line(l).unwrap())
        .collect();
    assert_eq!(back, entries);
    verify_chain(&back, &key(1).verifying_key()).unwrap();
}

#[test]
fn export_parsing_is_strict() {
    let line = chain("team-a", 1, &key(1))[0].to_json_line().unwrap();
    let unknown = line.replacen("{", r#"{"note":"x","#, 1);
    assert!(Entry::from_json_line(&unknown).is_err());
    // A second "path" key: a first-wins reader and a last-wins reader would
    // see different events under one signature.
    let dup = line.replacen(r#""path":"p2p""#, r#""path":"p2p","path":"relay""#, 1);
    assert_ne!(dup, line);
    assert!(
        Entry::from_json_line(&dup)
            .unwrap_err()
            .to_string()
            .contains("duplicate object key")
    );
    // Duplicate entry fields are refused by the typed parser as well.
    let dup_seq = line.replacen(r#"{"seq":1,"#, r#"{"seq":1,"seq":2,"#, 1);
    assert_ne!(dup_seq, line);
    assert!(Entry::from_json_line(&dup_seq).is_err());
    let uppercase_hash = line.replacen(r#""hash":""#, r#""hash":"A"#, 1);
    assert!(Entry::from_json_line(&uppercase_hash).is_err());
    let huge = " ".repeat(MAX_ENTRY_JSON_LEN + 1);
    assert_eq!(
        Entry::from_json_line(&huge),
        Err(EntryParseError::TooLong {
            max: MAX_ENTRY_JSON_LEN
        })
    );
}

#[test]
fn integers_a_javascript_verifier_would_round_are_refused() {
    let mut ev = event("team-a", 1);
    ev.context
        .insert("big".into(), json!(9_007_199_254_740_993u64));
    assert_eq!(
        append(None, ev, &key(1)),
        Err(AuditError::InvalidEvent(EventError::Context(
            CanonicalJsonError::IntegerOutOfRange
        )))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn tampering_any_field_of_any_entry_is_caught_at_that_seq(
        n in 1u64..=8, pick: prop::sample::Index, which in 0usize..TAMPERS.len(),
    ) {
        let mut entries = chain("team-a", n, &key(1));
        let at = pick.index(n as usize);
        let (field, tamper) = TAMPERS[which];
        tamper(&mut entries[at]);
        let err = broken_at(&entries);
        prop_assert_eq!(err.seq, at as u64 + 1, "field {}", field);
        let expected_reason_ok = match field {
            "sig" => err.reason == ChainFailure::BadSignature,
            _ => err.reason == ChainFailure::BadHash,
        };
        prop_assert!(expected_reason_ok, "field {}: {:?}", field, err.reason);
    }

    /// A finite float is either refused up front (a whole number in 2^53..1e21, which the
    /// canonical form would write as an unsafe integer) or survives export and verifies.
    #[test]
    fn any_finite_float_in_the_context_is_refused_or_survives_export(bits: u64) {
        let x = f64::from_bits(bits);
        prop_assume!(x.is_finite());
        let text = canonical_json::format_f64(x).unwrap();
        prop_assert_eq!(text.parse::<f64>().unwrap(), x);
        let mut ev = event("team-a", 1);
        ev.context.insert("x".into(), json!(x));
        let unsafe_integer = x.fract() == 0.0 && x.abs() > 9_007_199_254_740_991.0 && x.abs() < 1e21;
        let appended = append(None, ev, &key(1));
        prop_assert_eq!(appended.is_err(), unsafe_integer, "{}", text);
        let Ok(entry) = appended else { return Ok(()) };
        let back = Entry::from_json_line(&entry.to_json_line().unwrap()).unwrap();
        prop_assert!(verify_entry(&back, &key(1).verifying_key()).is_ok());
    }
}
