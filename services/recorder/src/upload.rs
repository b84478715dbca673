//! Upload and GetUploadStatus: everything in `start` is verified before a byte is accepted;
//! bytes are staged as part objects (one per call and [`PART_LEN`]) with the progress in the
//! database, so an upload resumes on any replica at `bytes_received`; the last byte triggers
//! [`crate::complete`], which checks size and SHA-256 and only then stores the recording.

use std::time::Duration;

use futures::{Stream, StreamExt as _};
use object_store::ObjectStoreExt as _;
use object_store::PutPayload;
use tucdesk_proto::v1::upload_request::Kind;
use tucdesk_proto::v1::{
    GetUploadStatusRequest, RecordingManifest, SignedRecordingManifest, UploadProof, UploadRequest,
    UploadResponse, UploadStart, UploadStatus,
};
use tucdesk_recording::ManifestError;
use tucdesk_recording::manifest::{
    UPLOAD_METHOD, UPLOAD_STATUS_METHOD, decode_manifest, verify_manifest, verify_upload_proof,
};
use tucdesk_svc::sql::now_ms;

use crate::db::{self, RecordingRow, db_int};
use crate::directory::AgentRecord;
use crate::error::RecorderError;
use crate::objects;
use crate::service::Recorder;

/// Bytes buffered per call before they are staged as one part object.
pub const PART_LEN: usize = 8 * 1024 * 1024;
/// Longest wait for the next message of an upload stream.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a used proof nonce is remembered: longer than any proof stays fresh.
pub const NONCE_TTL: Duration = tucdesk_crypto::REPLAY_WINDOW;

/// An upload whose `start` passed every check.
#[derive(Debug)]
pub(crate) struct Verified {
    pub agent: AgentRecord,
    pub manifest: RecordingManifest,
    pub signed: SignedRecordingManifest,
    pub row: RecordingRow,
}

fn manifest_error(err: ManifestError) -> RecorderError {
    match err {
        ManifestError::Invalid(message) => RecorderError::InvalidArgument(message),
        ManifestError::BadSignature | ManifestError::WrongAgent => {
            RecorderError::SignatureInvalid("the manifest is not signed by the agent it names")
        }
        ManifestError::ProofStale => RecorderError::ClockSkew,
        ManifestError::ProofInvalid(why) => RecorderError::ProofInvalid(why),
        ManifestError::ProofBadSignature => {
            RecorderError::ProofInvalid("the signature does not verify")
        }
    }
}

impl Recorder {
    /// The enrolled, active agent `agent_id` (refused otherwise).
    async fn active_agent(&self, agent_id: &str) -> Result<AgentRecord, RecorderError> {
        let agent = self
            .inner
            .directory
            .agent(agent_id)
            .await?
            .ok_or(RecorderError::AgentNotEnrolled)?;
        if agent.revoked {
            return Err(RecorderError::AgentRevoked);
        }
        Ok(agent)
    }

    /// Checks a proof for `method` and spends its nonce.
    #[allow(clippy::too_many_arguments)]
    async fn check_proof(
        &self,
        proof: Option<&UploadProof>,
        agent: &AgentRecord,
        method: &str,
        session_id: &str,
        ciphertext_sha256: &[u8],
        offset: u64,
    ) -> Result<(), RecorderError> {
        let proof = proof.ok_or(RecorderError::ProofInvalid("an upload proof is required"))?;
        let now = now_ms();
        let nonce = verify_upload_proof(
            proof,
            &agent.public_key,
            method,
            session_id,
            ciphertext_sha256,
            offset,
            u64::try_from(now).unwrap_or_default(),
        )
        .map_err(manifest_error)?;
        let ttl = i64::try_from(NONCE_TTL.as_millis()).unwrap_or(i64::MAX);
        if !db::claim_nonce(self.db(), &agent.agent_id, &nonce, now + ttl, now).await? {
            return Err(RecorderError::NonceReplayed);
        }
        Ok(())
    }

    /// Verifies an upload's `start` (version, manifest signature against rendezvous's key,
    /// agent and team, session, size limit, proof and nonce) and finds or creates its row.
    pub(crate) async fn verify_start(
        &self,
        start: &UploadStart,
    ) -> Result<Verified, RecorderError> {
        tucdesk_proto::check_peer_version(
            start.protocol_version,
            tucdesk_proto::MIN_AGENT_PROTOCOL_VERSION,
        )
        .map_err(|err| RecorderError::UpdateRequired {
            got: err.peer,
            min: err.floor,
        })?;
        let signed = start
            .manifest
            .clone()
            .ok_or_else(|| RecorderError::invalid("start.manifest is required"))?;
        let claimed = decode_manifest(&signed).map_err(manifest_error)?;
        let agent = self.active_agent(&claimed.agent_id).await?;
        let manifest = verify_manifest(&signed, &agent.public_key).map_err(manifest_error)?;
        if manifest.team_id != agent.team_id {
            return Err(RecorderError::PermissionDenied(
                "the manifest names a team the agent is not enrolled in",
            ));
        }
        if manifest.ciphertext_size > self.config().max_recording_bytes {
            return Err(RecorderError::LimitExceeded("the recording is too large"));
        }
        self.check_proof(
            start.proof.as_ref(),
            &agent,
            UPLOAD_METHOD,
            &manifest.session_id,
            &manifest.ciphertext_sha256,
            start.offset,
        )
        .await?;
        let session = self
            .inner
            .directory
            .session(&manifest.session_id, &manifest.team_id)
            .await?
            .ok_or(RecorderError::NotFound("session"))?;
        if session.agent_id != manifest.agent_id {
            return Err(RecorderError::PermissionDenied(
                "the session belongs to another agent",
            ));
        }
        if session.operator_user_id != manifest.operator_user_id {
            return Err(RecorderError::InvalidArgument(
                "the manifest's operator is not the session's".into(),
            ));
        }
        let candidate = RecordingRow {
            team_id: manifest.team_id.clone(),
            session_id: manifest.session_id.clone(),
            agent_id: manifest.agent_id.clone(),
            operator_user_id: session.operator_user_id,
            started_at_ms: db_int(manifest.started_at_ms)?,
            manifest: signed.manifest.clone(),
            signature: signed.signature.clone(),
            ciphertext_sha256: manifest.ciphertext_sha256.clone(),
            ciphertext_size: db_int(manifest.ciphertext_size)?,
            object_key: objects::recording_key(
                &manifest.team_id,
                &manifest.session_id,
                manifest.started_at_ms,
            )?,
            bytes_received: 0,
            complete: false,
            uploaded_at_ms: None,
        };
        let row = match db::find(self.db(), &candidate.team_id, &candidate.session_id).await? {
            Some(row) => row,
            None => {
                db::insert(self.db(), &candidate, now_ms()).await?;
                db::find(self.db(), &candidate.team_id, &candidate.session_id)
                    .await?
                    .ok_or_else(|| RecorderError::internal("upload row vanished", "insert"))?
            }
        };
        Ok(Verified {
            agent,
            manifest,
            signed,
            row,
        })
    }

    /// Runs one Upload call over `stream`.
    pub async fn upload<S>(&self, mut stream: S) -> Result<UploadResponse, RecorderError>
    where
        S: Stream<Item = Result<UploadRequest, tonic::Status>> + Unpin + Send,
    {
        let _slot = self
            .inner
            .upload_slots
            .acquire()
            .await
            .map_err(|_| RecorderError::Unavailable("the recorder"))?;
        let start = match next(&mut stream).await? {
            Some(Kind::Start(start)) => start,
            _ => return Err(RecorderError::invalid("the first message must be start")),
        };
        let verified = self.verify_start(&start).await?;
        let row = &verified.row;
        if row.complete {
            // The same recording again (a retry after a lost answer) is reported stored;
            // anything else never replaces it.
            if row.manifest == verified.signed.manifest {
                return Ok(response(row, row.ciphertext_size(), true));
            }
            return Err(RecorderError::AlreadyExists("a recording of this session"));
        }
        if row.ciphertext_sha256 != verified.manifest.ciphertext_sha256
            || row.manifest != verified.signed.manifest
        {
            return Err(RecorderError::AlreadyExists(
                "another upload of this session is in progress",
            ));
        }
        if start.offset != row.bytes_received() {
            return Err(RecorderError::VersionConflict {
                current: row.bytes_received(),
            });
        }
        let received = self.receive(&verified, start.offset, &mut stream).await?;
        if received < row.ciphertext_size() {
            return Ok(response(row, received, false));
        }
        self.complete(&verified).await?;
        Ok(response(row, received, true))
    }

    /// Receives chunks, staging a part every [`PART_LEN`] bytes and at the end of the stream;
    /// returns where the upload stands.
    async fn receive<S>(
        &self,
        verified: &Verified,
        offset: u64,
        stream: &mut S,
    ) -> Result<u64, RecorderError>
    where
        S: Stream<Item = Result<UploadRequest, tonic::Status>> + Unpin + Send,
    {
        let call = uuid::Uuid::new_v4().simple().to_string();
        let prefix = objects::upload_prefix(
            &verified.row.team_id,
            &verified.row.session_id,
            &verified.row.ciphertext_sha256,
        );
        let total = verified.row.ciphertext_size();
        let mut staged = offset;
        let mut buffer: Vec<u8> = Vec::new();
        let outcome = loop {
            let chunk = match next(stream).await {
                Ok(None) => break Ok(()),
                Ok(Some(Kind::Chunk(chunk))) => chunk,
                Ok(Some(Kind::Start(_))) => break Err(RecorderError::invalid("start sent twice")),
                Err(err) => break Err(err),
            };
            if chunk.is_empty() || chunk.len() > tucdesk_proto::limits::MAX_RECORDING_CHUNK_LEN {
                break Err(RecorderError::invalid("a chunk must be 1 byte..=256 KiB"));
            }
            let end = staged + buffer.len() as u64 + chunk.len() as u64;
            if end > total {
                break Err(RecorderError::LimitExceeded(
                    "more bytes than the manifest's ciphertext_size",
                ));
            }
            buffer.extend_from_slice(&chunk);
            if buffer.len() >= PART_LEN {
                let part = std::mem::take(&mut buffer);
                staged = self.stage(verified, &prefix, &call, staged, part).await?;
            }
        };
        // What arrived before the stream ended or broke is kept, so the agent resumes there.
        if !buffer.is_empty() {
            staged = self.stage(verified, &prefix, &call, staged, buffer).await?;
        }
        outcome.map(|()| staged)
    }

    /// Stores one part and advances the upload; returns the new offset.
    async fn stage(
        &self,
        verified: &Verified,
        prefix: &str,
        call: &str,
        offset: u64,
        bytes: Vec<u8>,
    ) -> Result<u64, RecorderError> {
        let len = bytes.len() as u64;
        let key = objects::part_key(prefix, offset, call);
        let path = objects::path(&key)?;
        self.store()
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|err| RecorderError::internal("staging an upload part", err))?;
        let row = &verified.row;
        let mut tx = self.db().begin().await?;
        let moved = db::add_part(
            &mut tx,
            &row.team_id,
            &row.session_id,
            offset,
            len,
            &key,
            now_ms(),
        )
        .await?;
        if !moved {
            tx.rollback().await?;
            self.store().delete(&path).await.ok();
            let current = db::find(self.db(), &row.team_id, &row.session_id)
                .await?
                .map_or(0, |row| row.bytes_received());
            return Err(RecorderError::VersionConflict { current });
        }
        tx.commit().await?;
        self.metrics().bytes_received.inc_by(len);
        Ok(offset + len)
    }

    /// GetUploadStatus: where an upload stands, for the agent that signs the request.
    pub async fn upload_status(
        &self,
        request: &GetUploadStatusRequest,
    ) -> Result<UploadStatus, RecorderError> {
        tucdesk_proto::validate::uuid("session_id", &request.session_id)
            .map_err(RecorderError::invalid)?;
        tucdesk_proto::validate::agent_id("agent_id", &request.agent_id)
            .map_err(RecorderError::invalid)?;
        if request.ciphertext_sha256.len() != 32 {
            return Err(RecorderError::invalid("ciphertext_sha256 must be 32 bytes"));
        }
        let agent = self.active_agent(&request.agent_id).await?;
        self.check_proof(
            request.proof.as_ref(),
            &agent,
            UPLOAD_STATUS_METHOD,
            &request.session_id,
            &request.ciphertext_sha256,
            0,
        )
        .await?;
        // Only this agent's upload of this file is reported; anything else looks like nothing.
        let row = db::find(self.db(), &agent.team_id, &request.session_id)
            .await?
            .filter(|row| {
                row.agent_id == agent.agent_id && row.ciphertext_sha256 == request.ciphertext_sha256
            });
        Ok(match row {
            Some(row) => UploadStatus {
                bytes_received: row.bytes_received(),
                complete: row.complete,
            },
            None => UploadStatus::default(),
        })
    }
}

fn response(row: &RecordingRow, bytes_received: u64, complete: bool) -> UploadResponse {
    UploadResponse {
        object_key: row.object_key.clone(),
        bytes_received,
        complete,
    }
}

/// The next message's content, `None` at the end of the stream.
async fn next<S>(stream: &mut S) -> Result<Option<Kind>, RecorderError>
where
    S: Stream<Item = Result<UploadRequest, tonic::Status>> + Unpin + Send,
{
    match tokio::time::timeout(MESSAGE_TIMEOUT, stream.next()).await {
        Err(_) => Err(RecorderError::invalid("no upload message for 60 s")),
        Ok(None) => Ok(None),
        Ok(Some(Err(status))) => {
            tracing::debug!(code = ?status.code(), "upload stream broke");
            Err(RecorderError::Unavailable("the upload stream"))
        }
        Ok(Some(Ok(message))) => message
            .kind
            .map(Some)
            .ok_or_else(|| RecorderError::invalid("an empty upload message")),
    }
}
