//! Merkle proofs (RFC 6962/9162) as a verifier receives them from an audit
//! export or `GetInclusionProof` / `GetConsistencyProof`: arbitrary sizes,
//! indices, roots and proofs.
//!
//! The fuzzer builds a small tree (up to `MAX_LEAVES` one-byte leaves, so
//! equal leaves are common), then runs inclusion and consistency checks whose
//! inputs start from the honest proof and are edited (replace, insert,
//! remove hashes; other sizes, indices and roots, up to `u64::MAX`).
//! - Verification never panics or loops, and refuses over-long proofs,
//!   out-of-range indices and shrinking trees with the documented errors.
//! - Against the honest root(s) of a real tree, a proof is accepted exactly
//!   when it is the honest proof (and, for inclusion, the leaf is the real
//!   leaf at that index): no hash is optional, nothing can be appended.
//! - The edge rules of `verify_consistency` (empty old tree, equal sizes).
//! - `MerkleAccumulator` agrees with `root` and only accepts consistent state.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use tucdesk_crypto::merkle::{
    Hash, MAX_PROOF_LEN, MerkleAccumulator, MerkleError, consistency_proof, empty_root,
    inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion,
};

/// Largest tree built per input.
const MAX_LEAVES: u8 = 40;
/// Checks per input.
const MAX_CHECKS: usize = 8;
/// Edits applied to one honest proof.
const MAX_EDITS: u8 = 4;

struct Tree {
    leaves: Vec<Hash>,
    /// `roots[k]` is the root of the first `k` leaves.
    roots: Vec<Hash>,
    /// Hashes the fuzzer may put anywhere.
    palette: Vec<Hash>,
}

impl Tree {
    fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    fn pick(&self, u: &mut Unstructured<'_>) -> Result<Hash> {
        Ok(self.palette[usize::from(u.arbitrary::<u8>()?) % self.palette.len()])
    }

    /// A size: mostly within the tree (or just past it), sometimes any u64.
    fn size_choice(&self, u: &mut Unstructured<'_>, below: u64) -> Result<u64> {
        Ok(match u.arbitrary::<u8>()? % 8 {
            0 => u.arbitrary::<u64>()?,
            1 => u64::MAX - u64::from(u.arbitrary::<u8>()?),
            _ => u64::from(u.arbitrary::<u8>()?) % (below + 2),
        })
    }

    fn edit(&self, u: &mut Unstructured<'_>, mut proof: Vec<Hash>) -> Result<Vec<Hash>> {
        for _ in 0..u.arbitrary::<u8>()? % (MAX_EDITS + 1) {
            let kind = u.arbitrary::<u8>()?;
            let pos = usize::from(u.arbitrary::<u8>()?) % (proof.len() + 1);
            match kind % 5 {
                0 if pos < proof.len() => proof[pos] = self.pick(u)?,
                1 => proof.insert(pos, self.pick(u)?),
                2 if pos < proof.len() => {
                    proof.remove(pos);
                }
                3 => proof.resize(MAX_PROOF_LEN + usize::from(kind >> 7), self.pick(u)?),
                4 if pos + 1 < proof.len() => proof.swap(pos, pos + 1),
                _ => {}
            }
        }
        Ok(proof)
    }
}

fn build(u: &mut Unstructured<'_>) -> Result<Tree> {
    let n = u.arbitrary::<u8>()? % (MAX_LEAVES + 1);
    let mut leaves = Vec::with_capacity(usize::from(n));
    let mut roots = vec![empty_root()];
    let mut acc = MerkleAccumulator::new();
    for _ in 0..n {
        let leaf = leaf_hash(&[u.arbitrary::<u8>()? % 4]);
        leaves.push(leaf);
        acc.push(leaf).expect("small tree");
        roots.push(acc.root());
    }
    assert_eq!(
        roots[usize::from(n)],
        root(&leaves),
        "accumulator root differs"
    );
    let rebuilt = MerkleAccumulator::from_parts(acc.size(), acc.peaks().to_vec());
    assert_eq!(rebuilt.as_ref(), Ok(&acc));
    let mut palette = vec![[0u8; 32], empty_root()];
    palette.extend(&leaves);
    palette.extend(&roots);
    Ok(Tree {
        leaves,
        roots,
        palette,
    })
}

fn inclusion(tree: &mut Tree, u: &mut Unstructured<'_>) -> Result<()> {
    let size = tree.size_choice(u, tree.size())?;
    let index = match u.arbitrary::<u8>()? % 8 {
        0 => u.arbitrary::<u64>()?,
        _ => u64::from(u.arbitrary::<u8>()?) % size.saturating_add(1).max(1),
    };
    let real = size <= tree.size() && index < size;
    let honest = if real {
        let k = usize::try_from(size).expect("small");
        let i = usize::try_from(index).expect("small");
        assert_eq!(tree.roots[k], root(&tree.leaves[..k]));
        Some((
            tree.leaves[i],
            inclusion_proof(&tree.leaves[..k], index).expect("in range"),
            tree.roots[k],
        ))
    } else {
        None
    };
    if let Some((_, proof, _)) = &honest {
        tree.palette.extend(proof);
    }
    let leaf = match (&honest, u.arbitrary::<u8>()? % 4) {
        (Some((leaf, _, _)), 0..=2) => *leaf,
        _ => tree.pick(u)?,
    };
    let root_hash = match (&honest, u.arbitrary::<u8>()? % 4) {
        (Some((_, _, r)), 0..=2) => *r,
        _ => tree.pick(u)?,
    };
    let start = honest
        .as_ref()
        .map(|(_, p, _)| p.clone())
        .unwrap_or_default();
    let proof = tree.edit(u, start)?;

    let result = verify_inclusion(&leaf, index, size, &proof, &root_hash);
    if proof.len() > MAX_PROOF_LEN {
        assert!(
            matches!(result, Err(MerkleError::ProofTooLong { .. })),
            "{result:?}"
        );
    } else if index >= size {
        assert!(
            matches!(result, Err(MerkleError::IndexOutOfRange { .. })),
            "{result:?}"
        );
    } else if let Some((real_leaf, real_proof, real_root)) = honest
        && root_hash == real_root
    {
        assert_eq!(
            result.is_ok(),
            leaf == real_leaf && proof == real_proof,
            "inclusion of index {index} in size {size}: {result:?}"
        );
    }
    Ok(())
}

fn consistency(tree: &mut Tree, u: &mut Unstructured<'_>) -> Result<()> {
    let new_size = tree.size_choice(u, tree.size())?;
    let old_size = match u.arbitrary::<u8>()? % 8 {
        0 => u.arbitrary::<u64>()?,
        _ => u64::from(u.arbitrary::<u8>()?) % new_size.saturating_add(2).max(1),
    };
    let real = new_size <= tree.size() && old_size <= new_size;
    let honest = if real {
        let (m, n) = (
            usize::try_from(old_size).expect("small"),
            usize::try_from(new_size).expect("small"),
        );
        Some((
            consistency_proof(&tree.leaves[..n], old_size).expect("in range"),
            tree.roots[m],
            tree.roots[n],
        ))
    } else {
        None
    };
    if let Some((proof, _, _)) = &honest {
        tree.palette.extend(proof);
    }
    let old_root = match (&honest, u.arbitrary::<u8>()? % 4) {
        (Some((_, r, _)), 0..=2) => *r,
        _ => tree.pick(u)?,
    };
    let new_root = match (&honest, u.arbitrary::<u8>()? % 4) {
        (Some((_, _, r)), 0..=2) => *r,
        _ => tree.pick(u)?,
    };
    let start = honest
        .as_ref()
        .map(|(p, _, _)| p.clone())
        .unwrap_or_default();
    let proof = tree.edit(u, start)?;

    let result = verify_consistency(old_size, new_size, &old_root, &new_root, &proof);
    if proof.len() > MAX_PROOF_LEN {
        assert!(
            matches!(result, Err(MerkleError::ProofTooLong { .. })),
            "{result:?}"
        );
        return Ok(());
    }
    if old_size > new_size {
        assert!(
            matches!(result, Err(MerkleError::OldSizeExceedsNewSize { .. })),
            "{result:?}"
        );
        return Ok(());
    }
    // The documented edges hold for any sizes.
    if old_size == 0 {
        let ok = proof.is_empty()
            && old_root == empty_root()
            && (new_size != 0 || new_root == empty_root());
        assert_eq!(result.is_ok(), ok, "old size 0: {result:?}");
    } else if old_size == new_size {
        assert_eq!(
            result.is_ok(),
            proof.is_empty() && old_root == new_root,
            "equal sizes: {result:?}"
        );
    }
    if let Some((real_proof, real_old, real_new)) = honest
        && old_root == real_old
        && new_root == real_new
    {
        assert_eq!(
            result.is_ok(),
            proof == real_proof,
            "consistency {old_size} -> {new_size}: {result:?}"
        );
    }
    Ok(())
}

/// Persisted accumulator state from an untrusted store.
fn accumulator(tree: &Tree, u: &mut Unstructured<'_>) -> Result<()> {
    let size = tree.size_choice(u, tree.size())?;
    let count = usize::from(u.arbitrary::<u8>()? % 70);
    let peaks: Vec<Hash> = (0..count).map(|_| tree.pick(u)).collect::<Result<_>>()?;
    match MerkleAccumulator::from_parts(size, peaks) {
        Ok(mut acc) => {
            assert_eq!(count, size.count_ones() as usize);
            let _ = acc.root();
            match acc.push(tree.pick(u)?) {
                Ok(()) => {
                    assert_eq!(acc.size(), size + 1);
                    assert_eq!(acc.peaks().len(), acc.size().count_ones() as usize);
                }
                Err(e) => assert_eq!((size, e), (u64::MAX, MerkleError::TreeTooLarge)),
            }
        }
        Err(e) => {
            assert_eq!(e, MerkleError::BadAccumulatorState);
            assert_ne!(count, size.count_ones() as usize);
        }
    }
    Ok(())
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let mut tree = build(&mut u)?;
    for _ in 0..MAX_CHECKS {
        if u.is_empty() {
            break;
        }
        match u.arbitrary::<u8>()? % 3 {
            0 => inclusion(&mut tree, &mut u)?,
            1 => consistency(&mut tree, &mut u)?,
            _ => accumulator(&tree, &mut u)?,
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
