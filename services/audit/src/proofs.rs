//! Checkpoints, RFC 9162 inclusion and consistency proofs, and the signing keys, for the
//! caller's team.
//!
//! Proofs are computed from the stored entry hashes (`tucdesk_crypto::merkle`, O(n) hashing
//! per proof), bounded by [`MAX_PROOF_TREE_SIZE`] leaves and [`MAX_CONCURRENT_PROOFS`]
//! (crate::service) at once. Before a proof is served, the root recomputed from the stored
//! hashes must equal the signed checkpoint's root: stored entries that no longer match a
//! signed checkpoint are an internal error (logged as tampering), never a proof.

use tucdesk_crypto::merkle::{
    self, Hash, SignedCheckpoint, consistency_proof, inclusion_proof, leaf_hash,
};
use tucdesk_proto::v1::get_inclusion_proof_request::Leaf;
use tucdesk_proto::v1::{
    AuditSigningKey, Checkpoint, ConsistencyProof, GetCheckpointRequest,
    GetConsistencyProofRequest, GetInclusionProofRequest, InclusionProof, ListCheckpointsRequest,
    ListCheckpointsResponse, ListSigningKeysResponse,
};

use crate::caller::Caller;
use crate::convert::{checkpoint_to_proto, entry_to_proto};
use crate::error::AuditError;
use crate::paging;
use crate::service::Audit;
use crate::store::{checkpoints, entries, keys};

/// Largest tree a proof is computed over (2^20 leaves: 32 MiB of hashes, about a second of
/// hashing). Larger logs need proofs from stored subtree hashes (not built yet).
pub const MAX_PROOF_TREE_SIZE: u64 = 1 << 20;

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

impl Audit {
    /// The caller's team's checkpoint at `tree_size`, or the newest when it is 0.
    async fn checkpoint_for(
        &self,
        caller: &Caller,
        tree_size: u64,
    ) -> Result<SignedCheckpoint, AuditError> {
        let found = if tree_size == 0 {
            checkpoints::latest(self.db(), caller.team_id()).await?
        } else {
            checkpoints::at(self.db(), caller.team_id(), tree_size).await?
        };
        found.ok_or(AuditError::NotFound("checkpoint"))
    }

    pub async fn get_checkpoint(
        &self,
        caller: &Caller,
        request: &GetCheckpointRequest,
    ) -> Result<Checkpoint, AuditError> {
        Ok(checkpoint_to_proto(
            &self.checkpoint_for(caller, request.tree_size).await?,
        ))
    }

    /// Checkpoints by tree size ascending, from `since` (on their timestamp).
    pub async fn list_checkpoints(
        &self,
        caller: &Caller,
        request: &ListCheckpointsRequest,
    ) -> Result<ListCheckpointsResponse, AuditError> {
        let since_ms = match &request.since {
            None => 0,
            Some(ts) if (0..1_000_000_000).contains(&ts.nanos) && ts.seconds.abs() < (1 << 40) => {
                ts.seconds * 1000 + i64::from(ts.nanos / 1_000_000)
            }
            Some(_) => return Err(AuditError::InvalidArgument("since is out of range".into())),
        };
        let size = paging::page_size(request.page.as_ref());
        let fingerprint = paging::fingerprint(&[&since_ms.to_be_bytes()]);
        let after = paging::cursor(request.page.as_ref(), &fingerprint)?.unwrap_or(0);
        let found = checkpoints::list(self.db(), caller.team_id(), after, since_ms, size).await?;
        let last = (found.len() == size as usize)
            .then(|| found.last().map(|cp| cp.checkpoint.tree_size))
            .flatten();
        Ok(ListCheckpointsResponse {
            checkpoints: found.iter().map(checkpoint_to_proto).collect(),
            page: Some(paging::next_page(&fingerprint, last)),
        })
    }

    /// The leaf hashes of the caller's team's first `tree_size` entries, checked against the
    /// signed checkpoint at that size.
    async fn checked_leaves(
        &self,
        caller: &Caller,
        checkpoint: &SignedCheckpoint,
    ) -> Result<Vec<Hash>, AuditError> {
        let size = checkpoint.checkpoint.tree_size;
        if size > MAX_PROOF_TREE_SIZE {
            return Err(AuditError::LimitExceeded(
                "proofs over trees this large are not served yet",
            ));
        }
        let _permit = self
            .inner
            .proof_slots
            .acquire()
            .await
            .map_err(|_| AuditError::Unavailable("proofs"))?;
        let hashes = entries::hashes(self.db(), caller.team_id(), size).await?;
        let leaves = tokio::task::spawn_blocking(move || {
            hashes.iter().map(|h| leaf_hash(h)).collect::<Vec<Hash>>()
        })
        .await
        .map_err(|err| AuditError::internal("hashing leaves", err))?;
        self.check_root(caller, &leaves, checkpoint)?;
        Ok(leaves)
    }

    fn check_root(
        &self,
        caller: &Caller,
        leaves: &[Hash],
        checkpoint: &SignedCheckpoint,
    ) -> Result<(), AuditError> {
        let size = usize::try_from(checkpoint.checkpoint.tree_size).unwrap_or(usize::MAX);
        let prefix = leaves.get(..size).ok_or_else(|| {
            AuditError::internal("fewer leaves than the checkpoint covers", caller.team_id())
        })?;
        if merkle::root(prefix) != checkpoint.checkpoint.root_hash {
            self.inner
                .metrics
                .verification_failures
                .with_label_values(&["checkpoint_root"])
                .inc();
            return Err(AuditError::internal(
                "TAMPERING: stored audit entries do not match a signed checkpoint",
                format!(
                    "team {} tree size {}",
                    caller.team_id(),
                    checkpoint.checkpoint.tree_size
                ),
            ));
        }
        Ok(())
    }

    /// RFC 9162 inclusion proof of one entry (by seq or entry hash) in a checkpointed tree.
    pub async fn get_inclusion_proof(
        &self,
        caller: &Caller,
        request: &GetInclusionProofRequest,
    ) -> Result<InclusionProof, AuditError> {
        let row = match &request.leaf {
            Some(Leaf::Seq(seq)) if *seq > 0 => {
                entries::get(self.db(), caller.team_id(), *seq).await?
            }
            Some(Leaf::EntryHash(hash)) => {
                let hash: Hash = hash.as_slice().try_into().map_err(|_| {
                    AuditError::InvalidArgument("entry_hash must be exactly 32 bytes".into())
                })?;
                entries::find_by_hash(self.db(), caller.team_id(), &hash).await?
            }
            _ => {
                return Err(AuditError::InvalidArgument(
                    "a seq (from 1) or an entry_hash is required".into(),
                ));
            }
        };
        let (entry, key_id) = row.ok_or(AuditError::NotFound("entry"))?.into_entry()?;
        let checkpoint = self.checkpoint_for(caller, request.tree_size).await?;
        let tree_size = checkpoint.checkpoint.tree_size;
        if entry.seq > tree_size {
            return Err(AuditError::InvalidArgument(
                "the entry is not in a tree of that size".into(),
            ));
        }
        let leaves = self.checked_leaves(caller, &checkpoint).await?;
        let index = entry.seq - 1;
        let path = inclusion_proof(&leaves, index)
            .map_err(|err| AuditError::internal("building an inclusion proof", err))?;
        Ok(InclusionProof {
            leaf_index: index,
            tree_size,
            audit_path: path.iter().map(|h| h.to_vec()).collect(),
            checkpoint: Some(checkpoint_to_proto(&checkpoint)),
            entry: Some(
                entry_to_proto(&entry, &key_id)
                    .map_err(|err| AuditError::internal("a stored entry does not convert", err))?,
            ),
        })
    }

    /// RFC 9162 consistency proof between two checkpointed tree sizes.
    pub async fn get_consistency_proof(
        &self,
        caller: &Caller,
        request: &GetConsistencyProofRequest,
    ) -> Result<ConsistencyProof, AuditError> {
        if request.first_tree_size == 0 {
            return Err(AuditError::InvalidArgument(
                "first_tree_size must be at least 1".into(),
            ));
        }
        let second = self
            .checkpoint_for(caller, request.second_tree_size)
            .await?;
        if request.first_tree_size > second.checkpoint.tree_size {
            return Err(AuditError::InvalidArgument(
                "first_tree_size is larger than second_tree_size".into(),
            ));
        }
        let first = self.checkpoint_for(caller, request.first_tree_size).await?;
        let leaves = self.checked_leaves(caller, &second).await?;
        self.check_root(caller, &leaves, &first)?;
        let proof = consistency_proof(&leaves, first.checkpoint.tree_size)
            .map_err(|err| AuditError::internal("building a consistency proof", err))?;
        Ok(ConsistencyProof {
            first_tree_size: first.checkpoint.tree_size,
            second_tree_size: second.checkpoint.tree_size,
            proof: proof.iter().map(|h| h.to_vec()).collect(),
            first: Some(checkpoint_to_proto(&first)),
            second: Some(checkpoint_to_proto(&second)),
        })
    }

    /// Every audit key that ever signed; a key is retired when the next one was first used.
    pub async fn list_signing_keys(&self) -> Result<ListSigningKeysResponse, AuditError> {
        let rows = keys::list(self.db()).await?;
        let retired: Vec<Option<i64>> = rows
            .iter()
            .skip(1)
            .map(|next| Some(next.first_used_at_ms))
            .chain(std::iter::once(None))
            .collect();
        Ok(ListSigningKeysResponse {
            keys: rows
                .into_iter()
                .zip(retired)
                .map(|(row, retired_at)| AuditSigningKey {
                    key_id: row.key_id,
                    public_key: row.public_key,
                    created_at: Some(timestamp(row.first_used_at_ms)),
                    retired_at: retired_at.map(timestamp),
                })
                .collect(),
        })
    }
}
