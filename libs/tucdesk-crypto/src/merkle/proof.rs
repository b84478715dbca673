//! Inclusion and consistency proofs: generation (RFC 9162 §2.1.3.1,
//! §2.1.4.1) and verification (§2.1.3.2, §2.1.4.2), with proof length capped
//! at [`MAX_PROOF_LEN`] before any hashing.

use super::{
    Hash, MAX_PROOF_LEN, MerkleError, empty_root, hashes_equal, node_hash, split_point,
    subtree_root,
};

fn to_index(value: u64) -> Result<usize, MerkleError> {
    usize::try_from(value).map_err(|_| MerkleError::TreeTooLarge)
}

/// Inclusion proof (audit path, RFC 9162 §2.1.3.1) for the leaf at `index`
/// in the tree made of all of `leaf_hashes`. Costs O(n) hashing.
pub fn inclusion_proof(leaf_hashes: &[Hash], index: u64) -> Result<Vec<Hash>, MerkleError> {
    let tree_size = leaf_hashes.len() as u64;
    let idx = to_index(index)?;
    if idx >= leaf_hashes.len() {
        return Err(MerkleError::IndexOutOfRange { index, tree_size });
    }
    let mut proof = Vec::new();
    path(idx, leaf_hashes, &mut proof);
    Ok(proof)
}

/// PATH(m, D[n]) from RFC 9162 §2.1.3.1; hashes are appended leaf-first.
fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split_point(leaves.len());
    let (left, right) = leaves.split_at(k);
    if m < k {
        path(m, left, out);
        out.push(subtree_root(right));
    } else {
        path(m - k, right, out);
        out.push(subtree_root(left));
    }
}

/// Verifies an inclusion proof as RFC 9162 §2.1.3.2 specifies: `leaf_hash`
/// is leaf number `index` of the tree of `tree_size` leaves whose root is
/// `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(MerkleError::ProofTooLong {
            len: proof.len(),
            max: MAX_PROOF_LEN,
        });
    }
    // Step 1.
    if index >= tree_size {
        return Err(MerkleError::IndexOutOfRange { index, tree_size });
    }
    // Steps 2 and 3.
    let (mut fn_, mut sn) = (index, tree_size - 1);
    let mut r = *leaf_hash;
    // Step 4.
    for p in proof {
        if sn == 0 {
            return Err(MerkleError::WrongProofLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5.
    if sn != 0 {
        return Err(MerkleError::WrongProofLength);
    }
    if hashes_equal(&r, root) {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch)
    }
}

/// Consistency proof (RFC 9162 §2.1.4.1) that the tree of the first
/// `old_size` leaves is a prefix of the tree made of all of `leaf_hashes`.
///
/// The RFC defines proofs for `0 < old_size < new_size`; for `old_size == 0`
/// and `old_size == new_size` there is nothing to prove and the proof is
/// empty (see [`verify_consistency`]).
pub fn consistency_proof(leaf_hashes: &[Hash], old_size: u64) -> Result<Vec<Hash>, MerkleError> {
    let new_size = leaf_hashes.len() as u64;
    let m = to_index(old_size)?;
    if m > leaf_hashes.len() {
        return Err(MerkleError::OldSizeExceedsNewSize { old_size, new_size });
    }
    let mut proof = Vec::new();
    if m > 0 && m < leaf_hashes.len() {
        subproof(m, leaf_hashes, true, &mut proof);
    }
    Ok(proof)
}

/// SUBPROOF(m, D[n], b) from RFC 9162 §2.1.4.1. `b` says whether the subtree
/// is the old tree itself (whose root the verifier already has).
fn subproof(m: usize, leaves: &[Hash], b: bool, out: &mut Vec<Hash>) {
    if m == leaves.len() {
        if !b {
            out.push(subtree_root(leaves));
        }
        return;
    }
    let k = split_point(leaves.len());
    let (left, right) = leaves.split_at(k);
    if m <= k {
        subproof(m, left, b, out);
        out.push(subtree_root(right));
    } else {
        subproof(m - k, right, false, out);
        out.push(subtree_root(left));
    }
}

/// Verifies that the tree of `new_size` leaves with root `new_root` only
/// appended to the tree of `old_size` leaves with root `old_root`.
///
/// For `0 < old_size < new_size` this is the algorithm of RFC 9162
/// §2.1.4.2, step by step. The RFC defines proofs only for that range; the
/// edges follow from its definitions (SUBPROOF(m, D[m], true) is empty, and
/// the empty tree is a prefix of every tree) and are handled strictly:
/// - `old_size > new_size`: rejected (a log never shrinks);
/// - `old_size == new_size`: the proof must be empty and the roots equal;
/// - `old_size == 0`: the proof must be empty and `old_root` must be the
///   empty-tree root `SHA-256("")`; `new_root` is not constrained.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(MerkleError::ProofTooLong {
            len: proof.len(),
            max: MAX_PROOF_LEN,
        });
    }
    if old_size > new_size {
        return Err(MerkleError::OldSizeExceedsNewSize { old_size, new_size });
    }
    if old_size == new_size || old_size == 0 {
        if !proof.is_empty() {
            return Err(MerkleError::UnexpectedProof);
        }
        let expected_old = if old_size == 0 {
            empty_root()
        } else {
            *new_root
        };
        let mut ok = hashes_equal(old_root, &expected_old);
        if old_size == 0 && new_size == 0 {
            ok &= hashes_equal(new_root, &expected_old);
        }
        return if ok {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch)
        };
    }
    // Step 1.
    let Some((first, rest)) = proof.split_first() else {
        return Err(MerkleError::EmptyProof);
    };
    // Steps 2 and 5: when `old_size` is a power of two the old root is itself
    // a node of the new tree, so it is the implicit first path element.
    let (start, path) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        (first, rest)
    };
    let (mut fr, mut sr) = (*start, *start);
    // Step 3.
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    // Step 4.
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 6.
    for c in path {
        if sn == 0 {
            return Err(MerkleError::WrongProofLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 7.
    if sn != 0 {
        return Err(MerkleError::WrongProofLength);
    }
    let ok = hashes_equal(&fr, old_root) & hashes_equal(&sr, new_root);
    if ok {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn oversized_proofs_are_rejected_before_any_hashing() {
        let h = [7u8; 32];
        let long = vec![h; MAX_PROOF_LEN + 1];
        assert!(matches!(
            verify_inclusion(&h, 0, u64::MAX, &long, &h),
            Err(MerkleError::ProofTooLong { .. })
        ));
        assert!(matches!(
            verify_consistency(3, u64::MAX, &h, &h, &long),
            Err(MerkleError::ProofTooLong { .. })
        ));
    }
}
