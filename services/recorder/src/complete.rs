//! Completing an upload: join the staged parts (in offset order) into one object while hashing
//! them, compare size and SHA-256 with the signed manifest, and only then create the final
//! objects (never replacing one), mark the row complete and audit `recording.upload` in the
//! same transaction. A mismatch discards the staging so the agent uploads again from 0.

use futures::StreamExt as _;
use object_store::ObjectStoreExt as _;
use object_store::{PutMode, PutOptions, PutPayload, WriteMultipart};
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use tucdesk_proto::v1::ActorKind;
use tucdesk_svc::audit_events::{self, AuditRecord};
use tucdesk_svc::sql::now_ms;

use crate::db;
use crate::error::RecorderError;
use crate::objects;
use crate::service::Recorder;
use crate::upload::Verified;

/// Size of the parts of the multipart upload that joins the staged parts.
pub const JOIN_PART_LEN: usize = 8 * 1024 * 1024;
/// Multipart parts in flight while joining.
pub const JOIN_CONCURRENCY: usize = 2;

impl Recorder {
    pub(crate) async fn complete(&self, verified: &Verified) -> Result<(), RecorderError> {
        let row = &verified.row;
        let parts = db::parts(self.db(), &row.team_id, &row.session_id).await?;
        let mut expected = 0i64;
        for part in &parts {
            if part.part_offset != expected {
                return Err(RecorderError::internal(
                    "staged parts have a gap",
                    &row.session_id,
                ));
            }
            expected += part.part_len;
        }
        let prefix = objects::upload_prefix(&row.team_id, &row.session_id, &row.ciphertext_sha256);
        let call = uuid::Uuid::new_v4().simple().to_string();
        let assembled = objects::path(&objects::assembled_key(&prefix, &call))?;
        let (size, hash) = self.join(&parts, &assembled).await?;
        if size != row.ciphertext_size() || hash.as_slice() != row.ciphertext_sha256.as_slice() {
            self.metrics().integrity_failures.inc();
            tracing::warn!(team_id = %row.team_id, session_id = %row.session_id, size,
                "uploaded recording does not match its manifest; staging discarded");
            self.discard(verified, &parts, Some(&assembled)).await;
            db::clear_parts(self.db(), &row.team_id, &row.session_id, true, now_ms()).await?;
            let record = upload_event(verified, "recording.upload_rejected")
                .context("outcome", "failure")
                .context("reason", "hash_mismatch");
            self.audit_alone(record).await?;
            return Err(RecorderError::InvalidArgument(
                "the uploaded bytes do not match the manifest's size and SHA-256; upload again \
                 from byte 0"
                    .into(),
            ));
        }
        let result = self.publish(verified, &assembled).await;
        self.store().delete(&assembled).await.ok();
        result?;
        let mut tx = self.db().begin().await?;
        if db::mark_complete(&mut tx, &row.team_id, &row.session_id, now_ms()).await? {
            let record = upload_event(verified, "recording.upload").context("outcome", "success");
            audit_events::record(&mut tx, record).await?;
            tx.commit().await?;
            self.outbox().wake();
            self.metrics().completed.inc();
        } else {
            tx.rollback().await?;
        }
        self.discard(verified, &parts, None).await;
        db::clear_parts(self.db(), &row.team_id, &row.session_id, false, now_ms()).await?;
        Ok(())
    }

    /// Streams the parts into one object at `target`; returns its size and SHA-256.
    async fn join(
        &self,
        parts: &[db::PartRow],
        target: &object_store::path::Path,
    ) -> Result<(u64, [u8; 32]), RecorderError> {
        let upload = self.store().put_multipart(target).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, JOIN_PART_LEN);
        let mut hash = Sha256::new();
        let mut size = 0u64;
        let copied: Result<(), RecorderError> = async {
            for part in parts {
                let mut bytes = self
                    .store()
                    .get(&objects::path(&part.object_key)?)
                    .await?
                    .into_stream();
                while let Some(chunk) = bytes.next().await {
                    let chunk = chunk?;
                    hash.update(&chunk);
                    size += chunk.len() as u64;
                    writer.wait_for_capacity(JOIN_CONCURRENCY).await?;
                    writer.put(chunk);
                }
            }
            Ok(())
        }
        .await;
        match copied {
            Ok(()) => {
                writer.finish().await?;
                Ok((size, hash.finalize().into()))
            }
            Err(err) => {
                writer.abort().await.ok();
                Err(err)
            }
        }
    }

    /// Creates the manifest and recording objects; an existing one is accepted only when it
    /// is identical (a retry after a crash), never replaced.
    async fn publish(
        &self,
        verified: &Verified,
        assembled: &object_store::path::Path,
    ) -> Result<(), RecorderError> {
        let row = &verified.row;
        let final_path = objects::path(&row.object_key)?;
        let manifest_path = objects::path(&objects::manifest_key(&row.object_key))?;
        let manifest_bytes = verified.signed.encode_to_vec();
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store()
            .put_opts(
                &manifest_path,
                PutPayload::from(manifest_bytes.clone()),
                create,
            )
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                let existing = self.store().get(&manifest_path).await?.bytes().await?;
                if existing.as_ref() != manifest_bytes.as_slice() {
                    return Err(RecorderError::AlreadyExists("a recording of this session"));
                }
            }
            Err(err) => return Err(err.into()),
        }
        match self
            .store()
            .copy_if_not_exists(assembled, &final_path)
            .await
        {
            Ok(()) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let (size, hash) = self.hash_object(&final_path).await?;
                if size == row.ciphertext_size() && hash.as_slice() == row.ciphertext_sha256 {
                    Ok(())
                } else {
                    Err(RecorderError::AlreadyExists("a recording of this session"))
                }
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn hash_object(
        &self,
        path: &object_store::path::Path,
    ) -> Result<(u64, [u8; 32]), RecorderError> {
        let mut stream = self.store().get(path).await?.into_stream();
        let mut hash = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            hash.update(&chunk);
            size += chunk.len() as u64;
        }
        Ok((size, hash.finalize().into()))
    }

    /// Deletes staged objects (best effort: leftovers are harmless and under `uploads/`).
    async fn discard(
        &self,
        verified: &Verified,
        parts: &[db::PartRow],
        assembled: Option<&object_store::path::Path>,
    ) {
        for part in parts {
            if let Ok(path) = objects::path(&part.object_key) {
                self.store().delete(&path).await.ok();
            }
        }
        if let Some(path) = assembled {
            self.store().delete(path).await.ok();
        }
        tracing::debug!(session_id = %verified.row.session_id, parts = parts.len(), "staging removed");
    }
}

/// The audit event of an upload outcome, by the agent.
fn upload_event(verified: &Verified, action: &str) -> AuditRecord {
    let m = &verified.manifest;
    AuditRecord::new(
        &m.team_id,
        action,
        ActorKind::Agent,
        &verified.agent.agent_id,
    )
    .target(format!("recording:{}", m.session_id))
    .session(m.session_id.clone())
    .context("source", "recorder")
    .context("object_key", verified.row.object_key.clone())
    .context("ciphertext_size", m.ciphertext_size)
    .context("ciphertext_sha256", hex::encode(&m.ciphertext_sha256))
    .context("operator_user_id", m.operator_user_id.clone())
    .context("started_at_ms", m.started_at_ms)
    .context("ended_at_ms", m.ended_at_ms)
}
