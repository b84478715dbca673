//! Audit log throughput: how many entries per second one core can append
//! (hash + sign) and verify, and what Merkle roots and proofs cost at the
//! sizes the audit service and `tucdesk audit verify` see.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use tucdesk_crypto::audit::{
    Actor, ActorKind, AuditEvent, ChainBuilder, Entry, PolicyDecision, PolicyResult, verify_chain,
    verify_entry,
};
use tucdesk_crypto::merkle::{
    Hash, MerkleAccumulator, consistency_proof, inclusion_proof, leaf_hash, root,
    verify_consistency, verify_inclusion,
};

/// Leaves in the Merkle benchmarks.
const TREE_SIZE: usize = 10_000;
/// Entries in the whole-chain verification benchmark.
const CHAIN_LEN: u64 = 1_000;

/// A typical policy-decision event (~500 canonical bytes).
fn event(i: u64) -> AuditEvent {
    let Value::Object(context) = json!({
        "kind": "exec",
        "command": "systemctl restart nginx",
        "tags": ["prod", "web"],
        "bytes_in": 1024 * i,
        "path": "p2p",
    }) else {
        unreachable!()
    };
    AuditEvent {
        event_id: format!("018f3a5e-7c1d-7b2a-9f00-{i:012x}"),
        team_id: "team-bench".into(),
        actor: Actor {
            kind: ActorKind::User,
            id: "user-42".into(),
            display: Some("Ada".into()),
        },
        action: "policy.decision".into(),
        target: "agent:q3RbVKxDeTWDKg8v4BwKzjQFQl7p9A1WgbnFTjCRYyE".into(),
        occurred_at: 1_717_171_717_000 + i,
        session_id: Some("018f3a5e-8000-7000-8000-00000000beef".into()),
        policy_result: Some(PolicyResult {
            decision: PolicyDecision::Allow,
            rule: "tag:prod".into(),
            reason: "operator in sre group".into(),
            approver: None,
        }),
        context,
    }
}

fn chain(n: u64, key: &SigningKey) -> Vec<Entry> {
    let mut b = ChainBuilder::new("team-bench").unwrap();
    (1..=n).map(|i| b.append(event(i), key).unwrap()).collect()
}

fn leaves(n: usize) -> Vec<Hash> {
    (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

fn bench_chain(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let vk = key.verifying_key();
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(1));

    let mut builder = ChainBuilder::new("team-bench").unwrap();
    let ev = event(1);
    g.bench_function("append_and_sign", |b| {
        b.iter_batched(
            || ev.clone(),
            |e| builder.append(e, &key).unwrap(),
            BatchSize::SmallInput,
        )
    });

    let entry = chain(1, &key).remove(0);
    g.bench_function("verify_entry", |b| {
        b.iter(|| verify_entry(black_box(&entry), &vk).unwrap())
    });

    let entries = chain(CHAIN_LEN, &key);
    g.throughput(Throughput::Elements(CHAIN_LEN));
    // ~70 ms per iteration: 20 samples keep a full run under a minute.
    g.sample_size(20);
    g.bench_function("verify_chain_1000", |b| {
        b.iter(|| verify_chain(black_box(&entries), &vk).unwrap())
    });
    g.finish();
}

fn bench_merkle(c: &mut Criterion) {
    let tree = leaves(TREE_SIZE);
    let size = TREE_SIZE as u64;
    let r = root(&tree);
    let mut g = c.benchmark_group("merkle");

    g.throughput(Throughput::Elements(size));
    g.bench_function("root_10k", |b| b.iter(|| root(black_box(&tree))));
    g.bench_function("accumulator_push_10k", |b| {
        b.iter(|| {
            let mut acc = MerkleAccumulator::new();
            for leaf in &tree {
                acc.push(*leaf).unwrap();
            }
            acc.root()
        })
    });

    g.throughput(Throughput::Elements(1));
    let index = size / 3;
    let proof = inclusion_proof(&tree, index).unwrap();
    g.bench_function("inclusion_proof_10k", |b| {
        b.iter(|| inclusion_proof(black_box(&tree), index).unwrap())
    });
    g.bench_function("verify_inclusion_10k", |b| {
        b.iter(|| {
            verify_inclusion(&tree[index as usize], index, size, black_box(&proof), &r).unwrap()
        })
    });

    let old = size / 2 + 1;
    let old_root = root(&tree[..old as usize]);
    let cproof = consistency_proof(&tree, old).unwrap();
    g.bench_function("verify_consistency_10k", |b| {
        b.iter(|| verify_consistency(old, size, &old_root, &r, black_box(&cproof)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench_chain, bench_merkle);
criterion_main!(benches);
