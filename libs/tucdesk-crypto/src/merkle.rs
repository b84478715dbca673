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

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::audit::MAX_ID_LEN;

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

/// Domain tag at the start of a checkpoint's canonical bytes, so a checkpoint
/// signature can never be mistaken for a signature over anything else.
pub const CHECKPOINT_DOMAIN_TAG: &[u8] = b"tucdesk-audit-checkpoint-v1";

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

/// Errors from checkpoint signing and verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// A text field is empty or longer than its limit.
    #[error("checkpoint field {field} must be 1..={max} bytes")]
    BadField { field: &'static str, max: usize },
    /// A tree of size 0 must have the empty-tree root.
    #[error("empty tree checkpoint must carry the empty-tree root")]
    BadEmptyRoot,
    /// The signature does not verify under the given key.
    #[error("checkpoint signature does not verify")]
    BadSignature,
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

/// A tree head: the audit log of `team_id` had `tree_size` entries whose
/// Merkle root was `root_hash` at `timestamp_ms` (unix ms), signed by the key
/// named `key_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub team_id: String,
    pub tree_size: u64,
    #[serde(with = "hex_serde::hash")]
    pub root_hash: Hash,
    pub timestamp_ms: u64,
    /// Names the audit signing key (e.g. its `SHA256:` fingerprint) so a
    /// verifier can pick the right key after rotation. Covered by the
    /// signature, but never a substitute for the verifier's trusted key.
    pub key_id: String,
}

/// A checkpoint and the audit key's Ed25519 signature over its canonical bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    #[serde(with = "hex_serde::sig")]
    pub sig: [u8; SIGNATURE_LEN],
}

fn put_str(out: &mut Vec<u8>, field: &'static str, s: &str) -> Result<(), CheckpointError> {
    let bad = CheckpointError::BadField {
        field,
        max: MAX_ID_LEN,
    };
    if s.is_empty() || s.len() > MAX_ID_LEN {
        return Err(bad);
    }
    let len = u32::try_from(s.len()).map_err(|_| bad)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

impl Checkpoint {
    /// Canonical bytes, the signed message:
    /// `"tucdesk-audit-checkpoint-v1" ‖ str(team_id) ‖ u64be(tree_size) ‖
    /// root_hash[32] ‖ u64be(timestamp_ms) ‖ str(key_id)`, where
    /// `str(s) = u32be(len) ‖ utf8`. Both strings are 1..=`MAX_ID_LEN` bytes.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, CheckpointError> {
        if self.tree_size == 0 && !hashes_equal(&self.root_hash, &empty_root()) {
            return Err(CheckpointError::BadEmptyRoot);
        }
        let mut out = Vec::with_capacity(CHECKPOINT_DOMAIN_TAG.len() + 2 * MAX_ID_LEN + 56);
        out.extend_from_slice(CHECKPOINT_DOMAIN_TAG);
        put_str(&mut out, "team_id", &self.team_id)?;
        out.extend_from_slice(&self.tree_size.to_be_bytes());
        out.extend_from_slice(&self.root_hash);
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        put_str(&mut out, "key_id", &self.key_id)?;
        Ok(out)
    }

    /// Signs the checkpoint with the audit key.
    pub fn sign(self, key: &SigningKey) -> Result<SignedCheckpoint, CheckpointError> {
        let sig = key.sign(&self.canonical_bytes()?).to_bytes();
        Ok(SignedCheckpoint {
            checkpoint: self,
            sig,
        })
    }
}

impl SignedCheckpoint {
    /// Checks the signature (strict Ed25519: no malleable or small-order
    /// encodings) over the canonical bytes under the verifier's trusted key.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), CheckpointError> {
        let msg = self.checkpoint.canonical_bytes()?;
        key.verify_strict(&msg, &Signature::from_bytes(&self.sig))
            .map_err(|_| CheckpointError::BadSignature)
    }
}

/// Lowercase-hex serde for hashes and signatures in JSON exports.
pub(crate) mod hex_serde {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    const DIGITS: &[u8; 16] = b"0123456789abcdef";

    pub(crate) fn encode(bytes: &[u8]) -> String {
        let mut s = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            s.push(char::from(DIGITS[usize::from(b >> 4)]));
            s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        s
    }

    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }

    /// Decodes exactly `N` bytes of lowercase hex; anything else is an error,
    /// so every value has exactly one textual form.
    pub(crate) fn decode<const N: usize>(s: &str) -> Option<[u8; N]> {
        let raw = s.as_bytes();
        if raw.len() != N * 2 {
            return None;
        }
        let mut out = [0u8; N];
        for (o, pair) in out.iter_mut().zip(raw.chunks_exact(2)) {
            *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(out)
    }

    fn de<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
        // Owned, not `&str`: values from `serde_json::from_value` or escaped
        // text cannot be borrowed.
        let s = String::deserialize(d)?;
        decode::<N>(&s)
            .ok_or_else(|| D::Error::custom(format!("expected {} lowercase hex digits", N * 2)))
    }

    pub(crate) mod hash {
        use super::*;
        pub(crate) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&encode(v))
        }
        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
            de::<D, 32>(d)
        }
    }

    pub(crate) mod sig {
        use super::*;
        pub(crate) fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&encode(v))
        }
        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
            de::<D, 64>(d)
        }
    }
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

    #[test]
    fn accumulator_state_must_match_its_size() {
        assert_eq!(
            MerkleAccumulator::from_parts(3, vec![[0; 32]]),
            Err(MerkleError::BadAccumulatorState)
        );
        assert!(MerkleAccumulator::from_parts(3, vec![[0; 32]; 2]).is_ok());
    }

    #[test]
    fn hex_has_one_textual_form() {
        assert_eq!(hex_serde::decode::<2>("0aff"), Some([0x0a, 0xff]));
        assert_eq!(hex_serde::decode::<2>("0AFF"), None);
        assert_eq!(hex_serde::decode::<2>("0af"), None);
        assert_eq!(hex_serde::encode(&[0x0a, 0xff]), "0aff");
    }
}
