//! Merkle tree over audit entry hashes, as Certificate Transparency defines it
//! (RFC 6962 §2.1, restated with verification algorithms in RFC 9162 §2.1),
//! plus the signed checkpoint (tree head) the audit service publishes.
//!
//! Why: a hash chain shows that nothing was changed *inside* the log, but not
//! that its tail was not cut off or the whole chain rewritten. A signed tree
//! head lets anyone prove that one entry is in the log (inclusion) and that a
//! later tree head only appended to an earlier one (consistency), in O(log n)
//! hashes, with proofs any RFC 6962 implementation can check.
//!
//! All functions take *leaf hashes* (`leaf_hash(data)`), never raw leaf data:
//! for the audit log the leaf data is the 32-byte entry hash, so leaf `i` is
//! `SHA-256(0x00 ‖ hash of the entry with seq i + 1)`.
//!
//! Byte formats are documented in `docs/audit-format.md`.
//!
//! Proofs, the incremental accumulator, checkpoints and the hex encoding of
//! JSON exports live in submodules; the public items are re-exported here.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

mod accumulator;
mod checkpoint;
pub(crate) mod hex_serde;
mod proof;

pub use accumulator::MerkleAccumulator;
pub use checkpoint::{CHECKPOINT_DOMAIN_TAG, Checkpoint, CheckpointError, SignedCheckpoint};
pub use proof::{consistency_proof, inclusion_proof, verify_consistency, verify_inclusion};

/// Length of every hash in the tree (SHA-256).
pub const HASH_LEN: usize = 32;

/// A SHA-256 output: a leaf hash, an interior node hash or a root.
pub type Hash = [u8; HASH_LEN];

/// RFC 6962 leaf prefix. Distinct prefixes for leaves and nodes stop a
/// second-preimage attack that passes an interior node off as a leaf.
pub const LEAF_PREFIX: u8 = 0x00;

/// RFC 6962 interior node prefix.
pub const NODE_PREFIX: u8 = 0x01;

/// Maximum number of hashes accepted in an inclusion or consistency proof.
///
/// A proof has at most one hash per tree level (plus one for a consistency
/// proof's starting node); 64 covers every tree below 2^63 leaves, far beyond
/// any audit log. The cap bounds the work an untrusted proof can demand.
pub const MAX_PROOF_LEN: usize = 64;

/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Errors from proof generation and verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is outside a tree of size {tree_size}")]
    IndexOutOfRange { index: u64, tree_size: u64 },
    /// The older tree is larger than the newer one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    OldSizeExceedsNewSize { old_size: u64, new_size: u64 },
    /// The proof has more hashes than any valid proof can have.
    #[error("proof has {len} hashes, more than the maximum {max}")]
    ProofTooLong { len: usize, max: usize },
    /// The proof has the wrong number of hashes for these tree sizes.
    #[error("proof length does not match the tree sizes")]
    WrongProofLength,
    /// RFC 9162 §2.1.4.2 step 1: a proof between different non-empty trees
    /// cannot be empty.
    #[error("consistency proof is empty")]
    EmptyProof,
    /// A proof was given where there is nothing to prove (equal sizes, or an
    /// empty old tree); accepting extra hashes would make proofs malleable.
    #[error("proof must be empty for these tree sizes")]
    UnexpectedProof,
    /// The proof does not lead to the expected root(s).
    #[error("proof does not match the root hash")]
    RootMismatch,
    /// Persisted accumulator state is inconsistent with its size.
    #[error("accumulator state needs one peak per set bit of its size")]
    BadAccumulatorState,
    /// The tree is larger than this platform can index.
    #[error("tree size does not fit in memory on this platform")]
    TreeTooLarge,
}

/// Constant-time equality of two hashes. Hashes compared here come from
/// untrusted exports and proofs; the comparison is cheap, so we never branch
/// on how many leading bytes matched.
pub(crate) fn hashes_equal(a: &Hash, b: &Hash) -> bool {
    a[..].ct_eq(&b[..]).into()
}

/// SHA-256 of the concatenation of `parts`.
pub(crate) fn sha256(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256("")` (RFC 6962 §2.1).
pub fn empty_root() -> Hash {
    sha256(&[])
}

/// `SHA-256(0x00 ‖ data)`: the hash of one leaf. For the audit log `data` is
/// the 32-byte entry hash.
pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256(&[&[LEAF_PREFIX], data])
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[NODE_PREFIX], left, right])
}

/// The largest power of two strictly smaller than `n` (`n >= 2`): RFC 6962
/// splits a tree of `n` leaves there, not at the midpoint.
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    1usize << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH of a non-empty list of leaf hashes. Recursion depth is the tree height
/// (at most 64).
fn subtree_root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [only] => *only,
        _ => {
            let (left, right) = leaves.split_at(split_point(leaves.len()));
            node_hash(&subtree_root(left), &subtree_root(right))
        }
    }
}

/// Merkle Tree Hash (RFC 9162 §2.1.1) of a list of leaf hashes; the empty
/// list has root `SHA-256("")`.
pub fn root(leaf_hashes: &[Hash]) -> Hash {
    subtree_root(leaf_hashes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn split_is_the_largest_power_of_two_below_n_not_the_midpoint() {
        for (n, k) in [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (6, 4),
            (7, 4),
            (8, 4),
            (9, 8),
            (1000, 512),
        ] {
            assert_eq!(split_point(n), k, "n = {n}");
        }
    }
}
