//! Merkle tree tests: the published RFC 6962 reference vectors, the
//! corruptions every verifier must reject, and properties over random trees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use tucdesk_crypto::merkle::{
    Checkpoint, CheckpointError, Hash, MAX_PROOF_LEN, MerkleAccumulator, MerkleError,
    SignedCheckpoint, consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash, root,
    verify_consistency, verify_inclusion,
};

// ---------------------------------------------------------------------------
// Reference vectors. Source: transparency-dev/merkle, proof/verify_test.go
// (the Certificate Transparency reference tree, originally from the C++ CT
// merkle_tree_test): leaf inputs, roots of the first 1..8 leaves, inclusion
// proofs (leaf numbers there are 1-based) and consistency proofs.
// ---------------------------------------------------------------------------

const LEAVES_HEX: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

const EMPTY_ROOT_HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Roots of the trees of the first 1..=8 leaves.
const ROOTS_HEX: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (0-based leaf index, tree size, proof).
const INCLUSION: [(u64, u64, &[&str]); 5] = [
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (old size, new size, proof).
const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

/// An arbitrary hash that is in none of the trees.
const SOME_HASH_HEX: &str = "abacaba000000000000000000000000000000000000000000060061e00123456";

fn h(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn hs(v: &[&str]) -> Vec<Hash> {
    v.iter().map(|s| h(s)).collect()
}

fn reference_leaves() -> Vec<Hash> {
    LEAVES_HEX
        .iter()
        .map(|s| leaf_hash(&hex::decode(s).unwrap()))
        .collect()
}

fn reference_root(size: u64) -> Hash {
    if size == 0 {
        h(EMPTY_ROOT_HEX)
    } else {
        h(ROOTS_HEX[size as usize - 1])
    }
}

fn flip(mut x: Hash, byte: usize, bit: u8) -> Hash {
    x[byte % 32] ^= 1 << (bit % 8);
    x
}

#[test]
fn roots_match_the_rfc6962_reference_tree() {
    let leaves = reference_leaves();
    assert_eq!(empty_root(), h(EMPTY_ROOT_HEX));
    for size in 0..=8u64 {
        assert_eq!(
            root(&leaves[..size as usize]),
            reference_root(size),
            "size {size}"
        );
    }
    // Leaf and node prefixes: the size-2 root is node(leaf(""), leaf("00")).
    assert_eq!(node_hash(&leaves[0], &leaves[1]), reference_root(2));
}

#[test]
fn accumulator_matches_the_reference_roots_at_every_size() {
    let mut acc = MerkleAccumulator::new();
    assert_eq!(acc.root(), reference_root(0));
    for (i, leaf) in reference_leaves().into_iter().enumerate() {
        acc.push(leaf).unwrap();
        assert_eq!(acc.root(), reference_root(i as u64 + 1));
    }
}

/// The corruptions transparency-dev's verifierCheck applies to every
/// published inclusion proof; each one must be rejected.
fn corrupt_inclusion(
    index: u64,
    size: u64,
    proof: &[Hash],
    root: Hash,
    leaf: Hash,
) -> Vec<(String, u64, u64, Vec<Hash>, Hash, Hash)> {
    let p = proof.to_vec();
    let mut out = vec![
        (
            "index - 1".into(),
            index.wrapping_sub(1),
            size,
            p.clone(),
            root,
            leaf,
        ),
        ("index + 1".into(), index + 1, size, p.clone(), root, leaf),
        ("index ^ 2".into(), index ^ 2, size, p.clone(), root, leaf),
        ("size * 2".into(), index, size * 2, p.clone(), root, leaf),
        ("size / 2".into(), index, size / 2, p.clone(), root, leaf),
        (
            "wrong leaf".into(),
            index,
            size,
            p.clone(),
            root,
            h(SOME_HASH_HEX),
        ),
        (
            "empty root".into(),
            index,
            size,
            p.clone(),
            h(EMPTY_ROOT_HEX),
            leaf,
        ),
        (
            "random root".into(),
            index,
            size,
            p.clone(),
            h(SOME_HASH_HEX),
            leaf,
        ),
        (
            "trailing zero hash".into(),
            index,
            size,
            [p.clone(), vec![[0; 32]]].concat(),
            root,
            leaf,
        ),
        (
            "trailing root".into(),
            index,
            size,
            [p.clone(), vec![root]].concat(),
            root,
            leaf,
        ),
        (
            "preceding zero hash".into(),
            index,
            size,
            [vec![[0; 32]], p.clone()].concat(),
            root,
            leaf,
        ),
        (
            "preceding root".into(),
            index,
            size,
            [vec![root], p.clone()].concat(),
            root,
            leaf,
        ),
    ];
    for i in 0..p.len() {
        let mut q = p.clone();
        q[i][0] ^= 8;
        out.push((
            format!("modified proof[{i}] bit 3"),
            index,
            size,
            q,
            root,
            leaf,
        ));
    }
    if !p.is_empty() {
        out.push((
            "removed component".into(),
            index,
            size,
            p[..p.len() - 1].to_vec(),
            root,
            leaf,
        ));
    }
    if p.len() > 1 {
        let q = [vec![p[0], h(SOME_HASH_HEX)], p[1..].to_vec()].concat();
        out.push(("inserted component".into(), index, size, q, root, leaf));
    }
    out
}

#[test]
fn published_inclusion_proofs_are_generated_and_verified() {
    let leaves = reference_leaves();
    for (index, size, proof_hex) in INCLUSION {
        let proof = hs(proof_hex);
        let tree = &leaves[..size as usize];
        let root = reference_root(size);
        let leaf = leaves[index as usize];
        assert_eq!(
            inclusion_proof(tree, index).unwrap(),
            proof,
            "generate {index}/{size}"
        );
        verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
        for (desc, i, s, p, r, l) in corrupt_inclusion(index, size, &proof, root, leaf) {
            assert!(
                verify_inclusion(&l, i, s, &p, &r).is_err(),
                "{index}/{size}: accepted {desc}"
            );
        }
    }
}

#[test]
fn inclusion_rejects_impossible_positions() {
    // transparency-dev TestVerifyInclusion: no (index, size) outside the tree
    // verifies, whatever the hashes.
    let some = h(SOME_HASH_HEX);
    for (index, size) in [(0, 0), (1, 0), (2, 1)] {
        assert!(matches!(
            verify_inclusion(&some, index, size, &[], &some),
            Err(MerkleError::IndexOutOfRange { .. })
        ));
    }
    assert_eq!(
        verify_inclusion(&some, 0, 1, &[], &h(EMPTY_ROOT_HEX)),
        Err(MerkleError::RootMismatch)
    );
    // A single-leaf tree's root is its leaf hash, with an empty proof.
    let leaf = leaf_hash(b"data");
    verify_inclusion(&leaf, 0, 1, &[], &leaf).unwrap();
    assert!(inclusion_proof(&[leaf], 1).is_err());
}

/// transparency-dev's corruptConsistencyProof probes.
fn corrupt_consistency(
    s1: u64,
    s2: u64,
    r1: Hash,
    r2: Hash,
    proof: &[Hash],
) -> Vec<(String, u64, u64, Hash, Hash, Vec<Hash>)> {
    let p = proof.to_vec();
    let wrong = h(SOME_HASH_HEX);
    let mut out = vec![
        ("size1 - 1".into(), s1 - 1, s2, r1, r2, p.clone()),
        ("size1 + 1".into(), s1 + 1, s2, r1, r2, p.clone()),
        ("size1 ^ 2".into(), s1 ^ 2, s2, r1, r2, p.clone()),
        ("size2 * 2".into(), s1, s2 * 2, r1, r2, p.clone()),
        ("size2 / 2".into(), s1, s2 / 2, r1, r2, p.clone()),
        ("wrong root1".into(), s1, s2, wrong, r2, p.clone()),
        ("wrong root2".into(), s1, s2, r1, wrong, p.clone()),
        ("swapped roots".into(), s1, s2, r2, r1, p.clone()),
        ("empty proof".into(), s1, s2, r1, r2, vec![]),
        (
            "trailing zero hash".into(),
            s1,
            s2,
            r1,
            r2,
            [p.clone(), vec![[0; 32]]].concat(),
        ),
        (
            "trailing root1".into(),
            s1,
            s2,
            r1,
            r2,
            [p.clone(), vec![r1]].concat(),
        ),
        (
            "trailing root2".into(),
            s1,
            s2,
            r1,
            r2,
            [p.clone(), vec![r2]].concat(),
        ),
        (
            "preceding zero hash".into(),
            s1,
            s2,
            r1,
            r2,
            [vec![[0; 32]], p.clone()].concat(),
        ),
        (
            "preceding root1".into(),
            s1,
            s2,
            r1,
            r2,
            [vec![r1], p.clone()].concat(),
        ),
        (
            "preceding root2".into(),
            s1,
            s2,
            r1,
            r2,
            [vec![r2], p.clone()].concat(),
        ),
        (
            "preceding proof[0]".into(),
            s1,
            s2,
            r1,
            r2,
            [vec![p[0]], p.clone()].concat(),
        ),
        (
            "truncated proof".into(),
            s1,
            s2,
            r1,
            r2,
            p[..p.len() - 1].to_vec(),
        ),
    ];
    for i in 0..p.len() {
        let mut q = p.clone();
        q[i][0] ^= 16;
        out.push((format!("modified proof[{i}] bit 4"), s1, s2, r1, r2, q));
    }
    out
}

#[test]
fn published_consistency_proofs_are_generated_and_verified() {
    let leaves = reference_leaves();
    for (s1, s2, proof_hex) in CONSISTENCY {
        let proof = hs(proof_hex);
        let (r1, r2) = (reference_root(s1), reference_root(s2));
        assert_eq!(
            consistency_proof(&leaves[..s2 as usize], s1).unwrap(),
            proof,
            "generate {s1}->{s2}"
        );
        verify_consistency(s1, s2, &r1, &r2, &proof).unwrap();
        if proof.is_empty() {
            continue;
        }
        for (desc, a, b, x, y, p) in corrupt_consistency(s1, s2, r1, r2, &proof) {
            assert!(
                verify_consistency(a, b, &x, &y, &p).is_err(),
                "{s1}->{s2}: accepted {desc}"
            );
        }
    }
}

#[test]
fn consistency_edge_sizes_follow_the_rfc_definitions() {
    let e = empty_root();
    let (r1, r2) = (h(ROOTS_HEX[0]), h(ROOTS_HEX[1]));
    // Nothing to prove: the empty tree is a prefix of every tree, and a tree
    // is consistent with itself.
    verify_consistency(0, 0, &e, &e, &[]).unwrap();
    verify_consistency(0, 5, &e, &r2, &[]).unwrap();
    verify_consistency(1, 1, &r1, &r1, &[]).unwrap();
    // ...but only with an empty proof and matching roots.
    assert_eq!(
        verify_consistency(1, 1, &r1, &r2, &[]),
        Err(MerkleError::RootMismatch)
    );
    assert_eq!(
        verify_consistency(0, 0, &r1, &r1, &[]),
        Err(MerkleError::RootMismatch)
    );
    assert_eq!(
        verify_consistency(0, 3, &r1, &r2, &[]),
        Err(MerkleError::RootMismatch)
    );
    assert_eq!(
        verify_consistency(1, 1, &r1, &r1, &[e]),
        Err(MerkleError::UnexpectedProof)
    );
    assert_eq!(
        verify_consistency(0, 1, &e, &r1, &[e]),
        Err(MerkleError::UnexpectedProof)
    );
    assert_eq!(
        verify_consistency(0, 0, &e, &e, &[e]),
        Err(MerkleError::UnexpectedProof)
    );
    // A log never shrinks.
    assert!(matches!(
        verify_consistency(1, 0, &r1, &e, &[]),
        Err(MerkleError::OldSizeExceedsNewSize { .. })
    ));
    assert!(matches!(
        verify_consistency(2, 1, &r2, &r1, &[]),
        Err(MerkleError::OldSizeExceedsNewSize { .. })
    ));
    // RFC 9162 §2.1.4.2 step 1.
    assert_eq!(
        verify_consistency(1, 2, &r1, &r2, &[]),
        Err(MerkleError::EmptyProof)
    );
    // Generation mirrors it.
    let leaves = reference_leaves();
    assert!(consistency_proof(&leaves[..3], 0).unwrap().is_empty());
    assert!(consistency_proof(&leaves[..3], 3).unwrap().is_empty());
    assert!(consistency_proof(&leaves[..3], 4).is_err());
}

#[test]
fn proof_length_is_bounded() {
    let leaves = reference_leaves();
    let long = vec![leaves[0]; MAX_PROOF_LEN + 1];
    assert!(matches!(
        verify_inclusion(&leaves[0], 0, 8, &long, &reference_root(8)),
        Err(MerkleError::ProofTooLong { .. })
    ));
    assert!(matches!(
        verify_consistency(3, 8, &reference_root(3), &reference_root(8), &long),
        Err(MerkleError::ProofTooLong { .. })
    ));
}

// ---------------------------------------------------------------------------
// Signed checkpoints
// ---------------------------------------------------------------------------

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn checkpoint() -> Checkpoint {
    Checkpoint {
        team_id: "team-a".into(),
        tree_size: 8,
        root_hash: reference_root(8),
        timestamp_ms: 1_700_000_000_000,
        key_id: "audit-2025".into(),
    }
}

#[test]
fn checkpoint_signature_covers_every_field() {
    let signed = checkpoint().sign(&key()).unwrap();
    let vk = key().verifying_key();
    signed.verify(&vk).unwrap();
    let tampers: [fn(&mut Checkpoint); 5] = [
        |c| c.team_id.push('x'),
        |c| c.tree_size -= 1,
        |c| c.root_hash[31] ^= 1,
        |c| c.timestamp_ms += 1,
        |c| c.key_id.push('x'),
    ];
    for tamper in tampers {
        let mut bad = signed.clone();
        tamper(&mut bad.checkpoint);
        assert_eq!(bad.verify(&vk), Err(CheckpointError::BadSignature));
    }
    let mut bad_sig = signed.clone();
    bad_sig.sig[0] ^= 1;
    assert_eq!(bad_sig.verify(&vk), Err(CheckpointError::BadSignature));
    let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
    assert_eq!(signed.verify(&other), Err(CheckpointError::BadSignature));
}

#[test]
fn checkpoint_json_round_trips_and_rejects_unknown_fields() {
    let signed = checkpoint().sign(&key()).unwrap();
    let json = serde_json::to_string(&signed).unwrap();
    let back: SignedCheckpoint = serde_json::from_str(&json).unwrap();
    assert_eq!(back, signed);
    back.verify(&key().verifying_key()).unwrap();
    let extra = json.replacen("{", r#"{"extra":1,"#, 1);
    assert!(serde_json::from_str::<SignedCheckpoint>(&extra).is_err());
}

#[test]
fn checkpoint_of_an_empty_tree_must_carry_the_empty_root() {
    let mut c = checkpoint();
    c.tree_size = 0;
    assert_eq!(c.clone().sign(&key()), Err(CheckpointError::BadEmptyRoot));
    c.root_hash = empty_root();
    c.sign(&key())
        .unwrap()
        .verify(&key().verifying_key())
        .unwrap();
}

#[test]
fn checkpoint_fields_are_bounded() {
    let mut c = checkpoint();
    c.key_id = String::new();
    assert!(matches!(
        c.sign(&key()),
        Err(CheckpointError::BadField {
            field: "key_id",
            ..
        })
    ));
    let mut c = checkpoint();
    c.team_id = "t".repeat(tucdesk_crypto::audit::MAX_ID_LEN + 1);
    assert!(matches!(
        c.sign(&key()),
        Err(CheckpointError::BadField {
            field: "team_id",
            ..
        })
    ));
}

// ---------------------------------------------------------------------------
// Properties over random trees
// ---------------------------------------------------------------------------

/// Distinct leaf hashes for a tree of `n` leaves.
fn tree(n: usize, seed: u64) -> Vec<Hash> {
    (0..n as u64)
        .map(|i| leaf_hash(&[seed.to_be_bytes(), i.to_be_bytes()].concat()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_inclusion_proof_verifies_and_no_mutation_does(
        n in 1usize..=200, seed: u64, pick: prop::sample::Index, other: prop::sample::Index,
        byte: usize, bit: u8, elem: prop::sample::Index,
    ) {
        let leaves = tree(n, seed);
        let r = root(&leaves);
        let size = n as u64;
        let i = pick.index(n);
        let proof = inclusion_proof(&leaves, i as u64).unwrap();
        prop_assert!(verify_inclusion(&leaves[i], i as u64, size, &proof, &r).is_ok());

        // A changed leaf, root or index never verifies.
        prop_assert!(verify_inclusion(&flip(leaves[i], byte, bit), i as u64, size, &proof, &r).is_err());
        prop_assert!(verify_inclusion(&leaves[i], i as u64, size, &proof, &flip(r, byte, bit)).is_err());
        let j = other.index(n);
        if j != i {
            prop_assert!(verify_inclusion(&leaves[i], j as u64, size, &proof, &r).is_err());
            // Nor does another leaf's proof, nor this proof for another leaf.
            prop_assert!(verify_inclusion(&leaves[j], i as u64, size, &proof, &r).is_err());
        }
        // A changed, added or removed proof hash never verifies.
        if !proof.is_empty() {
            let k = elem.index(proof.len());
            let mut bad = proof.clone();
            bad[k] = flip(bad[k], byte, bit);
            prop_assert!(verify_inclusion(&leaves[i], i as u64, size, &bad, &r).is_err());
            prop_assert!(verify_inclusion(&leaves[i], i as u64, size, &proof[1..], &r).is_err());
        }
        let longer = [proof.clone(), vec![leaves[0]]].concat();
        prop_assert!(verify_inclusion(&leaves[i], i as u64, size, &longer, &r).is_err());
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_rewritten_prefix_never_does(
        n2 in 1usize..=200, seed: u64, pick: prop::sample::Index, changed: prop::sample::Index,
        byte: usize, bit: u8, elem: prop::sample::Index,
    ) {
        let leaves = tree(n2, seed);
        let n1 = pick.index(n2 + 1); // 0..=n2
        let (s1, s2) = (n1 as u64, n2 as u64);
        let (r1, r2) = (root(&leaves[..n1]), root(&leaves));
        let proof = consistency_proof(&leaves, s1).unwrap();
        prop_assert!(proof.len() <= MAX_PROOF_LEN);
        prop_assert!(verify_consistency(s1, s2, &r1, &r2, &proof).is_ok());

        if n1 > 0 {
            // The new tree rewrote one of the old leaves: not an extension,
            // whatever proof the log produces for it.
            let mut forged = leaves.clone();
            let c = changed.index(n1);
            forged[c] = flip(forged[c], byte, bit);
            let forged_root = root(&forged);
            let forged_proof = consistency_proof(&forged, s1).unwrap();
            prop_assert!(verify_consistency(s1, s2, &r1, &forged_root, &forged_proof).is_err());
            prop_assert!(verify_consistency(s1, s2, &r1, &forged_root, &proof).is_err());
        }
        if !proof.is_empty() {
            let k = elem.index(proof.len());
            let mut bad = proof.clone();
            bad[k] = flip(bad[k], byte, bit);
            prop_assert!(verify_consistency(s1, s2, &r1, &r2, &bad).is_err());
            prop_assert!(verify_consistency(s1, s2, &r1, &r2, &proof[..proof.len() - 1]).is_err());
            prop_assert!(verify_consistency(s1, s2, &flip(r1, byte, bit), &r2, &proof).is_err());
            prop_assert!(verify_consistency(s1, s2, &r1, &flip(r2, byte, bit), &proof).is_err());
        }
    }

}

proptest! {
    // Checks every prefix (O(n²) hashing): fewer cases keep debug runs quick.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn accumulator_root_equals_batch_root_at_every_size(n in 0usize..=300, seed: u64) {
        let leaves = tree(n, seed);
        let mut acc = MerkleAccumulator::new();
        prop_assert_eq!(acc.root(), empty_root());
        for (i, leaf) in leaves.iter().enumerate() {
            acc.push(*leaf).unwrap();
            prop_assert_eq!(acc.root(), root(&leaves[..=i]));
            prop_assert_eq!(acc.peaks().len(), (i + 1).count_ones() as usize);
        }
        // Persisted state resumes to the same tree.
        let resumed = MerkleAccumulator::from_parts(acc.size(), acc.peaks().to_vec()).unwrap();
        prop_assert_eq!(resumed, acc);
    }
}
