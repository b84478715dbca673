//! The incremental Merkle tree the audit service keeps per team.

use super::{Hash, MerkleError, empty_root, leaf_hash, node_hash};

/// Incremental Merkle tree: O(log n) state that yields the root of
/// everything appended so far, so the audit service never rereads the log.
///
/// The state is the list of "peaks": roots of the perfect subtrees that make
/// up the tree, largest (leftmost) first, one per set bit of `size`. Persist
/// `size()` and `peaks()` and rebuild with [`MerkleAccumulator::from_parts`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MerkleAccumulator {
    size: u64,
    peaks: Vec<Hash>,
}

impl MerkleAccumulator {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds an accumulator from persisted state. Fails unless there is
    /// exactly one peak per set bit of `size`.
    pub fn from_parts(size: u64, peaks: Vec<Hash>) -> Result<Self, MerkleError> {
        if peaks.len() != size.count_ones() as usize {
            return Err(MerkleError::BadAccumulatorState);
        }
        Ok(Self { size, peaks })
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Roots of the perfect subtrees, largest first.
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// Appends one leaf hash (`leaf_hash(entry_hash)` for the audit log).
    pub fn push(&mut self, leaf_hash: Hash) -> Result<(), MerkleError> {
        let new_size = self.size.checked_add(1).ok_or(MerkleError::TreeTooLarge)?;
        let mut carry = leaf_hash;
        // Each trailing one bit of the old size is a peak of the same height
        // as `carry`: merge them like a binary counter's carry.
        let mut bits = self.size;
        while bits & 1 == 1 {
            let Some(left) = self.peaks.pop() else { break };
            carry = node_hash(&left, &carry);
            bits >>= 1;
        }
        self.peaks.push(carry);
        self.size = new_size;
        Ok(())
    }

    /// Appends the leaf for one audit entry hash.
    pub fn push_entry_hash(&mut self, entry_hash: &Hash) -> Result<(), MerkleError> {
        self.push(leaf_hash(entry_hash))
    }

    /// The Merkle Tree Hash of everything appended so far. Because RFC 6962
    /// splits at the largest power of two, the root is the peaks folded from
    /// the right: `node(p0, node(p1, … node(pk-1, pk)))`.
    pub fn root(&self) -> Hash {
        let mut it = self.peaks.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, peak| node_hash(peak, &acc))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn accumulator_state_must_match_its_size() {
        assert_eq!(
            MerkleAccumulator::from_parts(3, vec![[0; 32]]),
            Err(MerkleError::BadAccumulatorState)
        );
        assert!(MerkleAccumulator::from_parts(3, vec![[0; 32]; 2]).is_ok());
    }
}
