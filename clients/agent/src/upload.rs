//! The recordings outbox and its uploader (docs/recordings.md "On the agent").
//!
//! ```text
//! {state}/recordings/outbox/{session}.upload.json   where to upload (written when recording starts)
//! {state}/recordings/outbox/{session}.cast.age      the finished age file
//! {state}/recordings/outbox/{session}.manifest.pb   SignedRecordingManifest, written last
//! ```
//!
//! A recording is ready once its manifest exists. The uploader ([`run`]) asks the recorder
//! `GetUploadStatus`, uploads from `bytes_received` in chunks of 256 KiB with a fresh
//! `UploadProof` per call, and deletes the three files only after the recorder answers
//! `complete`. Failures are retried with jittered exponential backoff; the task runs from
//! the agent's start, so uploads survive restarts. At start, [`recover`] finishes spools a
//! crash left behind and drops outbox leftovers that can never be uploaded.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tucdesk_crypto::Identity;
use tucdesk_proto::v1::recorder_service_client::RecorderServiceClient;
use tucdesk_proto::v1::{
    GetUploadStatusRequest, SignedRecordingManifest, UploadRequest, UploadStart, upload_request,
};
use tucdesk_recording::manifest::{
    UPLOAD_METHOD, UPLOAD_STATUS_METHOD, build_manifest, decode_manifest, make_upload_proof,
    sign_manifest,
};
use tucdesk_recording::{FinishedRecording, SpoolMeta};

use crate::recording::{MAX_OUTBOX_RECORDINGS, Recordings, now_ms};

const TICKET_SUFFIX: &str = ".upload.json";
const CAST_SUFFIX: &str = ".cast.age";
const MANIFEST_SUFFIX: &str = ".manifest.pb";
/// Largest ticket and manifest file read.
const MAX_TICKET_LEN: u64 = 4 * 1024;
const MAX_MANIFEST_FILE_LEN: u64 = tucdesk_proto::limits::MAX_MANIFEST_LEN as u64 + 1024;
/// Most directory entries looked at in one pass over the outbox.
const MAX_SCAN: usize = 4 * MAX_OUTBOX_RECORDINGS;
/// Most spools recovered at one start.
const MAX_RECOVER: usize = 64;
/// Ciphertext per Upload message (the recorder's limit).
const CHUNK_LEN: usize = 256 * 1024;
/// Chunks read ahead of the network.
const CHUNK_QUEUE: usize = 4;
/// Longest one Upload call may take.
const UPLOAD_CALL_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Upload calls per recording and pass (a resume after VERSION_CONFLICT is one more).
const MAX_CALLS: usize = 3;
/// Largest answer read from the recorder.
const MAX_RESPONSE_LEN: usize = 64 * 1024;
/// Backoff between passes that failed: doubles from the first to the last, with jitter.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(5 * 60);
/// A pass over the outbox at least this often, even without news.
const RESCAN: Duration = Duration::from_secs(10 * 60);

/// Where a recording goes, saved when it starts (so a recovered spool knows too).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ticket {
    pub recorder_url: String,
}

pub(crate) fn cast_path(outbox: &Path, session_id: &str) -> PathBuf {
    outbox.join(format!("{session_id}{CAST_SUFFIX}"))
}

fn manifest_path(outbox: &Path, session_id: &str) -> PathBuf {
    outbox.join(format!("{session_id}{MANIFEST_SUFFIX}"))
}

fn ticket_path(outbox: &Path, session_id: &str) -> PathBuf {
    outbox.join(format!("{session_id}{TICKET_SUFFIX}"))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other("file too large"));
    }
    Ok(bytes)
}

pub(crate) fn write_ticket(
    outbox: &Path,
    session_id: &str,
    ticket: &Ticket,
) -> std::io::Result<()> {
    let json = serde_json::to_vec(ticket).map_err(std::io::Error::other)?;
    write_atomic(&ticket_path(outbox, session_id), &json)
}

fn read_ticket(outbox: &Path, session_id: &str) -> Option<Ticket> {
    let bytes = read_bounded(&ticket_path(outbox, session_id), MAX_TICKET_LEN).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Builds, signs and saves the manifest of a finished recording (the last file written).
pub(crate) fn write_manifest(
    outbox: &Path,
    identity: &Identity,
    meta: &SpoolMeta,
    finished: &FinishedRecording,
    ended_at_ms: u64,
) -> Result<(), String> {
    let manifest = build_manifest(meta, finished, ended_at_ms, env!("CARGO_PKG_VERSION"));
    let signed = sign_manifest(identity, &manifest).map_err(|err| err.to_string())?;
    write_atomic(
        &manifest_path(outbox, &meta.session_id),
        &signed.encode_to_vec(),
    )
    .map_err(|err| format!("saving the manifest: {err}"))
}

/// Deletes a recording's outbox files (missing ones are fine).
pub(crate) fn remove_entry(outbox: &Path, session_id: &str) {
    for path in [
        manifest_path(outbox, session_id),
        cast_path(outbox, session_id),
        ticket_path(outbox, session_id),
    ] {
        let _ = std::fs::remove_file(path);
    }
}

/// Session ids with a file ending in `suffix` in the outbox (at most [`MAX_SCAN`] entries
/// looked at, names that are not session ids skipped).
fn sessions_with(outbox: &Path, suffix: &str) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(outbox) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut ids = Vec::new();
    for entry in entries.take(MAX_SCAN) {
        let name = entry?.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_suffix(suffix)) else {
            continue;
        };
        if tucdesk_proto::validate::uuid("session_id", id).is_ok() {
            ids.push(id.to_owned());
        }
    }
    ids.sort();
    Ok(ids)
}

/// Recordings waiting (tickets) and the bytes their files hold.
pub(crate) fn outbox_usage(outbox: &Path) -> std::io::Result<(usize, u64)> {
    let ids = sessions_with(outbox, TICKET_SUFFIX)?;
    let bytes = ids
        .iter()
        .filter_map(|id| std::fs::metadata(cast_path(outbox, id)).ok())
        .map(|m| m.len())
        .sum();
    Ok((ids.len(), bytes))
}

/// At start, before any session: finishes every spool a crash left behind into the outbox
/// (signed manifest, end time = now), and drops outbox files that can never be uploaded.
pub fn recover(recordings: &Recordings, identity: &Identity) {
    let outbox = recordings.outbox_dir();
    let spools = match tucdesk_recording::spool::list_spools(&recordings.spool_dir()) {
        Ok(spools) => spools,
        Err(err) => {
            tracing::warn!(error = %err, "listing interrupted recordings failed");
            Vec::new()
        }
    };
    if !spools.is_empty() {
        if let Err(err) = std::fs::create_dir_all(&outbox) {
            tracing::warn!(error = %err, "creating the recordings outbox failed");
            return;
        }
        match tucdesk_recording::keys::load_or_create_identity(&recordings.spool_key()) {
            Ok((spool_identity, _)) => {
                for dir in spools.iter().take(MAX_RECOVER) {
                    recover_one(&outbox, identity, &spool_identity, dir);
                }
            }
            Err(err) => tracing::warn!(error = %err, "the spool key cannot be read"),
        }
    }
    // Leftovers: a ticket whose session left neither a recording nor a spool, a recording
    // with no manifest (a crash between finishing and signing; nothing to sign it with).
    let spooling = |id: &str| recordings.spool_dir().join(id).exists();
    for id in sessions_with(&outbox, TICKET_SUFFIX).unwrap_or_default() {
        if !spooling(&id) && !manifest_path(&outbox, &id).exists() {
            tracing::warn!(session_id = %id, "dropping a recording that was never finished");
            remove_entry(&outbox, &id);
        }
    }
    for id in sessions_with(&outbox, CAST_SUFFIX).unwrap_or_default() {
        if !spooling(&id) && !manifest_path(&outbox, &id).exists() {
            tracing::warn!(session_id = %id, "dropping a recording without a manifest");
            remove_entry(&outbox, &id);
        }
    }
}

fn recover_one(
    outbox: &Path,
    identity: &Identity,
    spool_identity: &age::x25519::Identity,
    dir: &Path,
) {
    let Some(id) = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|id| tucdesk_proto::validate::uuid("session_id", id).is_ok())
        .map(str::to_owned)
    else {
        return;
    };
    let out = cast_path(outbox, &id);
    // A crash while assembling: the spool is still whole, start over.
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(manifest_path(outbox, &id));
    match tucdesk_recording::spool::recover(dir, spool_identity, &out) {
        Ok(recovered) => {
            match write_manifest(
                outbox,
                identity,
                &recovered.meta,
                &recovered.recording,
                now_ms(),
            ) {
                Ok(()) => tracing::info!(
                    session_id = %id,
                    segments_used = recovered.segments_used,
                    segments_lost = recovered.segments_lost,
                    "recovered an interrupted session recording"
                ),
                Err(why) => {
                    tracing::warn!(session_id = %id, why = %why, "signing a recovered recording failed");
                    remove_entry(outbox, &id);
                }
            }
        }
        Err(err) => {
            tracing::warn!(session_id = %id, error = %err, "an interrupted recording cannot be recovered");
            let _ = tucdesk_recording::spool::remove_spool(dir);
            remove_entry(outbox, &id);
        }
    }
}

/// Uploads the outbox until `shutdown`: at once, whenever a recording is saved, and again
/// with jittered backoff after failures.
pub async fn run(recordings: Recordings, identity: Arc<Identity>, shutdown: CancellationToken) {
    let mut backoff = RETRY_FIRST;
    loop {
        let all_done = tokio::select! {
            done = upload_pending(&recordings, &identity) => done,
            () = shutdown.cancelled() => return,
        };
        let wait = if all_done {
            backoff = RETRY_FIRST;
            RESCAN
        } else {
            let wait = crate::link::jitter(backoff);
            backoff = (backoff * 2).min(RETRY_MAX);
            wait
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = recordings.wake.notified() => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// One pass over the outbox; true when nothing is left to retry.
async fn upload_pending(recordings: &Recordings, identity: &Identity) -> bool {
    let outbox = recordings.outbox_dir();
    let ids = {
        let outbox = outbox.clone();
        tokio::task::spawn_blocking(move || sessions_with(&outbox, MANIFEST_SUFFIX))
            .await
            .unwrap_or_else(|_| Ok(Vec::new()))
    };
    let ids = match ids {
        Ok(ids) => ids,
        Err(err) => {
            tracing::warn!(error = %err, "reading the recordings outbox failed");
            return false;
        }
    };
    let mut all_done = true;
    for id in ids {
        match upload_one(recordings, identity, &outbox, &id).await {
            Ok(object_key) => {
                remove_entry(&outbox, &id);
                tracing::info!(session_id = %id, object_key = %object_key, "session recording uploaded");
            }
            Err(why) => {
                all_done = false;
                tracing::warn!(session_id = %id, why = %why, "session recording not uploaded yet; will retry");
            }
        }
    }
    all_done
}

/// Uploads one recording; `Ok(object key)` once the recorder has it complete.
async fn upload_one(
    recordings: &Recordings,
    identity: &Identity,
    outbox: &Path,
    session_id: &str,
) -> Result<String, String> {
    let ticket = read_ticket(outbox, session_id).ok_or("no readable upload ticket")?;
    let bytes = read_bounded(&manifest_path(outbox, session_id), MAX_MANIFEST_FILE_LEN)
        .map_err(|err| format!("reading the manifest: {err}"))?;
    let signed = SignedRecordingManifest::decode(bytes.as_slice())
        .map_err(|_| "the saved manifest does not decode")?;
    let manifest = decode_manifest(&signed).map_err(|err| err.to_string())?;
    if manifest.session_id != session_id {
        return Err("the saved manifest is for another session".into());
    }
    let hash: [u8; 32] = manifest
        .ciphertext_sha256
        .as_slice()
        .try_into()
        .map_err(|_| "bad hash in the manifest")?;
    let size = manifest.ciphertext_size;
    let path = cast_path(outbox, session_id);
    let on_disk = tokio::fs::metadata(&path)
        .await
        .map_err(|err| format!("the recording file: {err}"))?
        .len();
    if on_disk != size {
        return Err("the recording file does not match its manifest".into());
    }
    let channel =
        tucdesk_transport::rpc::channel(&ticket.recorder_url, recordings.ca_file.as_deref(), true)
            .map_err(|err| format!("the recorder URL: {err}"))?;
    let mut client =
        RecorderServiceClient::new(channel).max_decoding_message_size(MAX_RESPONSE_LEN);
    let describe = |status: &tonic::Status| tucdesk_transport::rpc::describe(status);
    for _ in 0..MAX_CALLS {
        let proof = make_upload_proof(
            identity,
            UPLOAD_STATUS_METHOD,
            session_id,
            &hash,
            0,
            now_ms(),
        )
        .map_err(|err| err.to_string())?;
        let status = tokio::time::timeout(
            tucdesk_transport::rpc::CALL_TIMEOUT,
            client.get_upload_status(GetUploadStatusRequest {
                session_id: session_id.to_owned(),
                agent_id: identity.agent_id(),
                ciphertext_sha256: hash.to_vec(),
                proof: Some(proof),
            }),
        )
        .await
        .map_err(|_| "the recorder did not answer in time".to_owned())?
        .map_err(|status| describe(&status))?
        .into_inner();
        if status.complete {
            // Stored by an earlier call whose answer was lost.
            return Ok("(already stored)".to_owned());
        }
        let offset = status.bytes_received;
        if offset > size {
            return Err("the recorder reports more bytes than the recording has".into());
        }
        let proof = make_upload_proof(identity, UPLOAD_METHOD, session_id, &hash, offset, now_ms())
            .map_err(|err| err.to_string())?;
        let start = UploadRequest {
            kind: Some(upload_request::Kind::Start(UploadStart {
                protocol_version: tucdesk_proto::PROTOCOL_VERSION,
                manifest: Some(signed.clone()),
                offset,
                proof: Some(proof),
            })),
        };
        let chunks = read_chunks(path.clone(), offset, size);
        let requests = tokio_stream::once(start).chain(chunks);
        match tokio::time::timeout(UPLOAD_CALL_TIMEOUT, client.upload(requests)).await {
            Err(_) => return Err("the upload took too long".into()),
            Ok(Ok(response)) => {
                let response = response.into_inner();
                if response.complete {
                    return Ok(tucdesk_transport::ws::printable(&response.object_key));
                }
                return Err(format!(
                    "the recorder has {} of {size} bytes but did not complete",
                    response.bytes_received
                ));
            }
            // Another call moved the offset: ask again and resume there.
            Ok(Err(status)) if status.code() == tonic::Code::Aborted => continue,
            Ok(Err(status)) => return Err(describe(&status)),
        }
    }
    Err("the upload kept conflicting with another one".into())
}

/// The file from `offset` to `size` as Upload chunks, read ahead a few chunks at a time.
fn read_chunks(
    path: PathBuf,
    offset: u64,
    size: u64,
) -> tokio_stream::wrappers::ReceiverStream<UploadRequest> {
    let (tx, rx) = tokio::sync::mpsc::channel(CHUNK_QUEUE);
    tokio::spawn(async move {
        let Ok(mut file) = tokio::fs::File::open(&path).await else {
            return;
        };
        if file.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
            return;
        }
        let mut left = size - offset;
        while left > 0 {
            let len = usize::try_from(left).unwrap_or(CHUNK_LEN).min(CHUNK_LEN);
            let mut buf = vec![0u8; len];
            if file.read_exact(&mut buf).await.is_err() {
                // Ending early makes the recorder see a short upload; it keeps what arrived.
                return;
            }
            left -= len as u64;
            let chunk = UploadRequest {
                kind: Some(upload_request::Kind::Chunk(buf)),
            };
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
