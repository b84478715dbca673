//! List and Get for operators. The team is the caller's (claims only); callers without a
//! team-wide role see only recordings of their own sessions; anything else is "not found".

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt as _;
use object_store::ObjectStoreExt as _;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tucdesk_proto::limits::{
    DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_PAGE_TOKEN_LEN, MAX_RECORDING_CHUNK_LEN,
};
use tucdesk_proto::v1::get_recording_response::Kind;
use tucdesk_proto::v1::{
    ActorKind, GetRecordingRequest, GetRecordingResponse, ListRecordingsRequest,
    ListRecordingsResponse, PageResponse, RecordingInfo, RecordingManifest,
    SignedRecordingManifest,
};
use tucdesk_svc::audit_events::AuditRecord;

use crate::caller::Caller;
use crate::db::{self, ListFilter, RecordingRow};
use crate::error::RecorderError;
use crate::objects;
use crate::service::Recorder;

/// Messages of a Get stream buffered ahead of a slow reader.
pub const GET_QUEUE: usize = 4;

/// The stream Get returns.
pub type RecordingStream =
    tokio_stream::wrappers::ReceiverStream<Result<GetRecordingResponse, tonic::Status>>;

fn timestamp_ms(ts: Option<&prost_types::Timestamp>) -> Option<i64> {
    ts.map(|ts| {
        ts.seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(ts.nanos / 1_000_000))
    })
}

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or_default(),
    }
}

fn info(row: &RecordingRow) -> RecordingInfo {
    RecordingInfo {
        session_id: row.session_id.clone(),
        agent_id: row.agent_id.clone(),
        object_key: row.object_key.clone(),
        signed_manifest: Some(SignedRecordingManifest {
            manifest: row.manifest.clone(),
            signature: row.signature.clone(),
        }),
        manifest: RecordingManifest::decode(row.manifest.as_slice()).ok(),
        uploaded_at: row.uploaded_at_ms.map(timestamp),
    }
}

/// Page token: `base64url(u64be(started_at_ms) ‖ session_id)`, the last row of the page.
fn encode_token(row: &RecordingRow) -> String {
    let mut bytes = u64::try_from(row.started_at_ms)
        .unwrap_or_default()
        .to_be_bytes()
        .to_vec();
    bytes.extend_from_slice(row.session_id.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_token(token: &str) -> Result<Option<(i64, String)>, RecorderError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || RecorderError::invalid("page_token is invalid");
    if token.len() > MAX_PAGE_TOKEN_LEN {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let (ms, session) = bytes.split_at_checked(8).ok_or_else(invalid)?;
    let ms = i64::from_be_bytes(<[u8; 8]>::try_from(ms).map_err(|_| invalid())?);
    let session = String::from_utf8(session.to_vec()).map_err(|_| invalid())?;
    Ok(Some((ms, session)))
}

impl Recorder {
    pub async fn list(
        &self,
        caller: &Caller,
        request: &ListRecordingsRequest,
    ) -> Result<ListRecordingsResponse, RecorderError> {
        if !request.agent_id.is_empty() {
            tucdesk_proto::validate::agent_id("agent_id", &request.agent_id)
                .map_err(RecorderError::invalid)?;
        }
        if request.user_id.len() > 128 {
            return Err(RecorderError::invalid("user_id is too long"));
        }
        let operator = match caller.only_operator() {
            Some(own) => own.to_owned(),
            None => request.user_id.clone(),
        };
        let limit = match request.page.as_ref().map_or(0, |p| p.page_size) {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let filter = ListFilter {
            agent_id: request.agent_id.clone(),
            operator_user_id: operator,
            since_ms: timestamp_ms(request.since.as_ref()).unwrap_or(0),
            until_ms: timestamp_ms(request.until.as_ref()).unwrap_or(i64::MAX),
            after: decode_token(request.page.as_ref().map_or("", |p| p.page_token.as_str()))?,
            limit,
        };
        let rows = db::list(self.db(), caller.team_id(), &filter).await?;
        let next_page_token = match rows.last() {
            Some(last) if rows.len() == limit as usize => encode_token(last),
            _ => String::new(),
        };
        Ok(ListRecordingsResponse {
            recordings: rows.iter().map(info).collect(),
            page: Some(PageResponse { next_page_token }),
        })
    }

    /// Get: audits the download (refused when it cannot be recorded), then streams `info` and
    /// the ciphertext in chunks of at most 256 KiB.
    pub async fn get(
        &self,
        caller: &Caller,
        request: &GetRecordingRequest,
        shutdown: CancellationToken,
    ) -> Result<RecordingStream, RecorderError> {
        tucdesk_proto::validate::uuid("session_id", &request.session_id)
            .map_err(RecorderError::invalid)?;
        let row = db::find(self.db(), caller.team_id(), &request.session_id)
            .await?
            .filter(|row| row.complete)
            .filter(|row| {
                caller
                    .only_operator()
                    .is_none_or(|own| row.operator_user_id == own)
            })
            .ok_or(RecorderError::NotFound("recording"))?;
        let object = self.store().get(&objects::path(&row.object_key)?).await?;
        let mut record = AuditRecord::new(
            caller.team_id(),
            "recording.download",
            ActorKind::User,
            caller.user_id(),
        )
        .target(format!("recording:{}", row.session_id))
        .session(row.session_id.clone())
        .context("outcome", "success")
        .context("source", "recorder")
        .context("role", caller.role().as_str())
        .context("object_key", row.object_key.clone())
        .context("agent_id", row.agent_id.clone());
        if let Some(email) = caller.claims.email.as_deref() {
            record = record.actor_display(email);
        }
        self.audit_alone(record).await?;

        let (tx, rx) = tokio::sync::mpsc::channel(GET_QUEUE);
        let metrics = self.metrics().clone();
        let first = GetRecordingResponse {
            kind: Some(Kind::Info(info(&row))),
        };
        tokio::spawn(async move {
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            let mut bytes = object.into_stream();
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => {
                        tx.send(Err(tonic::Status::unavailable("the recorder is shutting down"))).await.ok();
                        return;
                    }
                    next = bytes.next() => next,
                };
                let chunk = match next {
                    None => return,
                    Some(Ok(chunk)) => chunk,
                    Some(Err(err)) => {
                        tracing::error!(error = %err, "reading a recording failed");
                        tx.send(Err(RecorderError::Unavailable("the object store").into()))
                            .await
                            .ok();
                        return;
                    }
                };
                for piece in chunk.chunks(MAX_RECORDING_CHUNK_LEN) {
                    let message = GetRecordingResponse {
                        kind: Some(Kind::Chunk(piece.to_vec())),
                    };
                    if tx.send(Ok(message)).await.is_err() {
                        return;
                    }
                    metrics.bytes_served.inc_by(piece.len() as u64);
                }
            }
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_roundtrip_and_garbage_is_refused() {
        let row = RecordingRow {
            team_id: "t".into(),
            session_id: "0190a5c1-7e2b-7cc0-8000-000000000001".into(),
            agent_id: String::new(),
            operator_user_id: String::new(),
            started_at_ms: 1_700_000_000_000,
            manifest: Vec::new(),
            signature: Vec::new(),
            ciphertext_sha256: Vec::new(),
            ciphertext_size: 1,
            object_key: String::new(),
            bytes_received: 0,
            complete: true,
            uploaded_at_ms: None,
        };
        let token = encode_token(&row);
        assert_eq!(
            decode_token(&token).ok().flatten(),
            Some((row.started_at_ms, row.session_id.clone()))
        );
        assert!(decode_token("!!").is_err());
        assert!(decode_token("AAAA").is_err());
        assert!(decode_token(&"A".repeat(MAX_PAGE_TOKEN_LEN + 1)).is_err());
    }
}
