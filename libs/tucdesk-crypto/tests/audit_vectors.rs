//! The `audit_chain` and `merkle` sections of `tests/vectors.json`: fixed
//! inputs and the exact bytes, hashes and signatures they must produce, for
//! every other implementation of the audit format (CLI, web verifier, SIEM
//! plug-ins) to check against.
//!
//! Regenerate after an intentional format change (and bump the domain tag):
//! `cargo test -p tucdesk-crypto --test audit_vectors -- --ignored write_audit_vectors`
//! rewrites only the `audit_chain` and `merkle` keys of the file, in place.
//! Only those two keys are ours; the rest of the file belongs to the other
//! crypto vectors and is never rewritten from here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tucdesk_crypto::audit::{
    Actor, ActorKind, AuditEvent, ChainBuilder, Entry, PolicyDecision, PolicyResult, verify_chain,
};
use tucdesk_crypto::merkle::{
    Checkpoint, Hash, SignedCheckpoint, consistency_proof, inclusion_proof, leaf_hash, root,
    verify_consistency, verify_inclusion,
};

/// A fixed, obviously-not-secret Ed25519 seed: bytes 0x00..=0x1f.
fn vector_key() -> SigningKey {
    let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
    SigningKey::from_bytes(&seed)
}

const TEAM: &str = "team-vectors";
const MERKLE_LEAVES: usize = 7;
const INCLUSION_CASES: [(u64, u64); 2] = [(2, 7), (6, 7)];
const CONSISTENCY_CASES: [(u64, u64); 2] = [(3, 7), (4, 7)];

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

/// Three events covering every optional field, escapes, non-ASCII text and
/// the ECMAScript number forms.
fn vector_events() -> Vec<AuditEvent> {
    vec![
        AuditEvent {
            event_id: "018f3a5e-7c1d-7b2a-9f00-000000000001".into(),
            team_id: TEAM.into(),
            actor: Actor {
                kind: ActorKind::User,
                id: "user-42".into(),
                display: Some("Ada Lovelace".into()),
            },
            action: "auth.login".into(),
            target: String::new(),
            occurred_at: 1_717_171_717_000,
            session_id: None,
            policy_result: None,
            context: obj(json!({ "mfa": "totp", "ip": "192.0.2.10", "user_agent": "tucdesk/0.1" })),
        },
        AuditEvent {
            event_id: "018f3a5e-7c1d-7b2a-9f00-000000000002".into(),
            team_id: TEAM.into(),
            actor: Actor {
                kind: ActorKind::Service,
                id: "rendezvous".into(),
                display: None,
            },
            action: "policy.decision".into(),
            target: "agent:q3RbVKxDeTWDKg8v4BwKzjQFQl7p9A1WgbnFTjCRYyE".into(),
            occurred_at: 1_717_171_718_250,
            session_id: Some("018f3a5e-8000-7000-8000-00000000beef".into()),
            policy_result: Some(PolicyResult {
                decision: PolicyDecision::Allow,
                rule: "tag:prod requires approval".into(),
                reason: "approved by a second admin".into(),
                approver: Some("user-7".into()),
            }),
            context: obj(json!({
                "kind": "shell",
                "tags": ["prod", "db"],
                "window": { "tz": "Europe/Berlin", "days": [1, 2, 3, 4, 5] }
            })),
        },
        AuditEvent {
            event_id: "018f3a5e-7c1d-7b2a-9f00-000000000003".into(),
            team_id: TEAM.into(),
            actor: Actor {
                kind: ActorKind::Agent,
                id: "q3RbVKxDeTWDKg8v4BwKzjQFQl7p9A1WgbnFTjCRYyE".into(),
                display: None,
            },
            action: "session.end".into(),
            target: "agent:q3RbVKxDeTWDKg8v4BwKzjQFQl7p9A1WgbnFTjCRYyE".into(),
            occurred_at: 1_717_171_901_000,
            session_id: Some("018f3a5e-8000-7000-8000-00000000beef".into()),
            policy_result: None,
            context: obj(json!({
                "path": "p2p",
                "bytes_in": 1_048_576,
                "bytes_out": 52,
                "delta": -17,
                "loss_ratio": 0.25,
                "big": 1e21,
                "tiny": 1e-7,
                "note": "ünïcødé ✓ \"quoted\"\n\ttab\u{1}",
                "none": null,
                "flags": [true, false]
            })),
        },
    ]
}

fn hx(b: &[u8]) -> String {
    hex::encode(b)
}

fn hashes_hex(v: &[Hash]) -> Vec<String> {
    v.iter().map(|h| hx(h)).collect()
}

/// OpenSSH-style fingerprint (SPEC §2) used as the checkpoint key id.
fn fingerprint(vk: &VerifyingKey) -> String {
    let digest = Sha256::digest(vk.as_bytes());
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

fn build_audit_chain() -> (Value, Vec<Entry>) {
    let key = vector_key();
    let mut builder = ChainBuilder::new(TEAM).unwrap();
    let entries: Vec<Entry> = vector_events()
        .into_iter()
        .map(|e| builder.append(e, &key).unwrap())
        .collect();
    let rows: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "seq": e.seq,
                "event": serde_json::to_value(&e.event).unwrap(),
                "prev_hash_hex": hx(&e.prev_hash),
                "canonical_bytes_hex": hx(&e.canonical_bytes().unwrap()),
                "hash_hex": hx(&e.hash),
                "sig_hex": hx(&e.sig),
                "export_line": e.to_json_line().unwrap(),
            })
        })
        .collect();
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(&e.hash)).collect();
    let value = json!({
        "description": "Audit chain entries (docs/audit-format.md): canonical bytes, \
            hash = SHA-256(canonical bytes), sig = Ed25519(key, hash), and the RFC 6962 \
            root over leaf_hash(entry hash). Signing key seed is bytes 00..1f.",
        "signing_key_seed_hex": hx(&key.to_bytes()),
        "verifying_key_hex": hx(key.verifying_key().as_bytes()),
        "entries": rows,
        "tree_root_hex": hx(&root(&leaves)),
    });
    (value, entries)
}

fn merkle_leaf_data() -> Vec<Hash> {
    (0..MERKLE_LEAVES)
        .map(|i| Sha256::digest(format!("tucdesk-merkle-vector-{i}")).into())
        .collect()
}

fn build_merkle() -> Value {
    let key = vector_key();
    let data = merkle_leaf_data();
    let leaves: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
    let roots: Vec<String> = (0..=leaves.len())
        .map(|n| hx(&root(&leaves[..n])))
        .collect();
    let inclusion: Vec<Value> = INCLUSION_CASES
        .iter()
        .map(|&(index, size)| {
            let proof = inclusion_proof(&leaves[..size as usize], index).unwrap();
            json!({ "index": index, "tree_size": size, "proof_hex": hashes_hex(&proof) })
        })
        .collect();
    let consistency: Vec<Value> = CONSISTENCY_CASES
        .iter()
        .map(|&(old, new)| {
            let proof = consistency_proof(&leaves[..new as usize], old).unwrap();
            json!({ "old_size": old, "new_size": new, "proof_hex": hashes_hex(&proof) })
        })
        .collect();
    let checkpoint = Checkpoint {
        team_id: TEAM.into(),
        tree_size: leaves.len() as u64,
        root_hash: root(&leaves),
        timestamp_ms: 1_717_171_999_000,
        key_id: fingerprint(&key.verifying_key()),
    };
    let bytes = checkpoint.canonical_bytes().unwrap();
    let signed = checkpoint.sign(&key).unwrap();
    json!({
        "description": "RFC 6962/9162 Merkle tree over 32-byte leaf data (as audit entry \
            hashes are): leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || l || r); \
            roots_hex[n] is the root of the first n leaves. Checkpoint signed with the \
            audit_chain key.",
        "leaf_data_hex": hashes_hex(&data),
        "leaf_hashes_hex": hashes_hex(&leaves),
        "roots_hex": roots,
        "inclusion": inclusion,
        "consistency": consistency,
        "checkpoint": {
            "signed": serde_json::to_value(&signed).unwrap(),
            "canonical_bytes_hex": hx(&bytes),
            "verifying_key_hex": hx(key.verifying_key().as_bytes()),
        },
    })
}

fn build_all() -> Value {
    json!({ "audit_chain": build_audit_chain().0, "merkle": build_merkle() })
}

fn load() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn vectors_json_matches_the_code() {
    let file = load();
    let built = build_all();
    for section in ["audit_chain", "merkle"] {
        assert_eq!(
            file[section], built[section],
            "tests/vectors.json[{section}] differs from what the code produces; if the \
             format change is intended, bump the domain tag and regenerate (see file docs)"
        );
    }
}

fn unhex<const N: usize>(v: &Value) -> [u8; N] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn unhex_list(v: &Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(unhex::<32>).collect()
}

/// What another implementation does with the file: recompute everything
/// from the JSON alone.
#[test]
fn audit_chain_vectors_verify_from_the_json_alone() {
    let v = &load()["audit_chain"];
    let vk = VerifyingKey::from_bytes(&unhex::<32>(&v["verifying_key_hex"])).unwrap();
    let seed = unhex::<32>(&v["signing_key_seed_hex"]);
    assert_eq!(SigningKey::from_bytes(&seed).verifying_key(), vk);
    let mut prev = [0u8; 32];
    let mut entries = Vec::new();
    for (i, row) in v["entries"].as_array().unwrap().iter().enumerate() {
        assert_eq!(row["seq"], json!(i + 1));
        let bytes = hex::decode(row["canonical_bytes_hex"].as_str().unwrap()).unwrap();
        let hash: Hash = Sha256::digest(&bytes).into();
        assert_eq!(hash, unhex::<32>(&row["hash_hex"]));
        assert_eq!(prev, unhex::<32>(&row["prev_hash_hex"]));
        assert!(bytes.starts_with(b"tucdesk-audit-entry-v1"));
        vk.verify_strict(&hash, &Signature::from_bytes(&unhex::<64>(&row["sig_hex"])))
            .unwrap();
        let entry = Entry::from_json_line(row["export_line"].as_str().unwrap()).unwrap();
        assert_eq!(entry.canonical_bytes().unwrap(), bytes);
        assert_eq!(serde_json::to_value(&entry.event).unwrap(), row["event"]);
        prev = hash;
        entries.push(entry);
    }
    verify_chain(&entries, &vk).unwrap();
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(&e.hash)).collect();
    assert_eq!(root(&leaves), unhex::<32>(&v["tree_root_hex"]));
}

#[test]
fn merkle_vectors_verify_from_the_json_alone() {
    let v = &load()["merkle"];
    let data = unhex_list(&v["leaf_data_hex"]);
    let leaves = unhex_list(&v["leaf_hashes_hex"]);
    let roots = unhex_list(&v["roots_hex"]);
    for (d, l) in data.iter().zip(&leaves) {
        let mut pre = vec![0u8];
        pre.extend_from_slice(d);
        assert_eq!(<Hash>::from(Sha256::digest(&pre)), *l);
    }
    for (n, r) in roots.iter().enumerate() {
        assert_eq!(root(&leaves[..n]), *r);
    }
    for case in v["inclusion"].as_array().unwrap() {
        let (index, size) = (
            case["index"].as_u64().unwrap(),
            case["tree_size"].as_u64().unwrap(),
        );
        let proof = unhex_list(&case["proof_hex"]);
        verify_inclusion(
            &leaves[index as usize],
            index,
            size,
            &proof,
            &roots[size as usize],
        )
        .unwrap();
    }
    for case in v["consistency"].as_array().unwrap() {
        let (old, new) = (
            case["old_size"].as_u64().unwrap(),
            case["new_size"].as_u64().unwrap(),
        );
        let proof = unhex_list(&case["proof_hex"]);
        verify_consistency(old, new, &roots[old as usize], &roots[new as usize], &proof).unwrap();
    }
    let cp = &v["checkpoint"];
    let signed: SignedCheckpoint = serde_json::from_value(cp["signed"].clone()).unwrap();
    let vk = VerifyingKey::from_bytes(&unhex::<32>(&cp["verifying_key_hex"])).unwrap();
    signed.verify(&vk).unwrap();
    let bytes = hex::decode(cp["canonical_bytes_hex"].as_str().unwrap()).unwrap();
    assert_eq!(signed.checkpoint.canonical_bytes().unwrap(), bytes);
    vk.verify_strict(&bytes, &Signature::from_bytes(&signed.sig))
        .unwrap();
    assert_eq!(signed.checkpoint.root_hash, *roots.last().unwrap());
}

/// Without `TUCDESK_BLESS_VECTORS=1`: the file's `audit_chain` and `merkle` keys equal
/// what the code generates today. With it: rewrites those two keys (read-modify-write;
/// every other key of the file, its order and its formatting stay as they are).
#[test]
fn audit_vectors_match_the_generator() {
    let generated = build_all();
    if std::env::var_os("TUCDESK_BLESS_VECTORS").is_none() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors.json");
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for key in ["audit_chain", "merkle"] {
            assert_eq!(
                file[key], generated[key],
                "vectors.json `{key}` is stale; rerun with TUCDESK_BLESS_VECTORS=1 after a deliberate format change"
            );
        }
        return;
    }
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("audit_vectors.gen.json");
    std::fs::write(&tmp, serde_json::to_string(&generated).unwrap()).unwrap();
    const MERGE: &str = r#"
import json, sys
path, gen = sys.argv[1], sys.argv[2]
with open(path) as f:
    before = f.read()
cur = json.loads(before)
new = json.load(open(gen))
for k in ("audit_chain", "merkle"):
    cur[k] = new[k]
with open(path) as f:
    assert f.read() == before, "vectors.json changed while merging; run again"
with open(path, "w") as f:
    json.dump(cur, f, indent=2, ensure_ascii=False)
    f.write("\n")
"#;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors.json");
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(MERGE)
        .arg(path)
        .arg(&tmp)
        .status()
        .unwrap();
    assert!(status.success());
}
