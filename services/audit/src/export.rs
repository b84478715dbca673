//! `Export` (gRPC) and the HTTP export: the caller's team's entries in seq order, with signed
//! checkpoints, backpressured by the client.
//!
//! Without an upper seq bound the export is a snapshot at the team's current head: a
//! checkpoint is signed for it first (unless the last one already covers it), entries
//! `from_seq..=that size` follow, and the stream ends with that checkpoint, so a verifier of
//! an export from seq 1 can show that nothing was cut off. With `to_seq` it ends with the
//! newest checkpoint at or below `to_seq`. On long exports the newest stored checkpoint is
//! interleaved once at least [`EXPORT_CHECKPOINT_SPACING`] entries passed since the last one
//! sent, after the page of entries that reaches it (so it always follows every entry it covers).

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::codegen::BoxStream;
use tucdesk_crypto::audit::Entry;
use tucdesk_crypto::merkle::SignedCheckpoint;
use tucdesk_proto::v1::export_item::Item;
use tucdesk_proto::v1::{ExportAuditRequest, ExportItem};

use crate::caller::Caller;
use crate::checkpoint::CheckpointTrigger;
use crate::convert::{checkpoint_to_proto, entry_to_proto};
use crate::error::AuditError;
use crate::query::{filter_details, filter_from_proto};
use crate::service::Audit;
use crate::store::entries::EntryFilter;
use crate::store::{checkpoints, entries};

/// Entries read from the database per page.
pub const EXPORT_PAGE: u32 = 500;
/// Items buffered between the reader and the client (backpressure beyond this).
pub const EXPORT_BUFFER: usize = 256;
/// A checkpoint is interleaved at least every this many entries (audit.proto).
pub const EXPORT_CHECKPOINT_SPACING: u64 = 10_000;

/// One item of an export, before it is encoded for gRPC or HTTP.
#[derive(Debug)]
pub enum ExportPiece {
    /// A stored entry and the id of the key that signed it.
    Entry {
        entry: Box<Entry>,
        key_id: String,
    },
    Checkpoint(Box<SignedCheckpoint>),
}

/// The pieces of a running export, in order. An `Err` ends it early (shutdown, a failed
/// read); the channel closing after the last checkpoint is the normal end.
pub type ExportReceiver = mpsc::Receiver<Result<ExportPiece, AuditError>>;

impl Audit {
    /// Starts a gRPC export for `caller`; items flow until the end, the client going away, or
    /// `shutdown` (then the stream ends with UNAVAILABLE).
    pub async fn export(
        &self,
        caller: &Caller,
        request: &ExportAuditRequest,
        shutdown: CancellationToken,
    ) -> Result<BoxStream<ExportItem>, AuditError> {
        let filter = filter_from_proto(request.filter.as_ref())?;
        let pieces = self.start_export(caller, filter, &[], shutdown).await?;
        let items = tokio_stream::wrappers::ReceiverStream::new(pieces).map(|piece| {
            let item = match piece? {
                ExportPiece::Entry { entry, key_id } => {
                    Item::Entry(entry_to_proto(&entry, &key_id).map_err(|err| {
                        AuditError::internal("a stored entry does not convert", err)
                    })?)
                }
                ExportPiece::Checkpoint(cp) => Item::Checkpoint(checkpoint_to_proto(&cp)),
            };
            Ok::<_, AuditError>(ExportItem { item: Some(item) })
        });
        Ok(Box::pin(items.map(|item| item.map_err(Status::from))))
    }

    /// Starts an export of `caller`'s team matching `filter` (the gRPC `Export` and the HTTP
    /// export): takes one of the replica's export slots, records the read (`audit.export`, with
    /// `extra` context), fixes the snapshot, and reads pages of [`EXPORT_PAGE`] entries in the
    /// background into a channel of [`EXPORT_BUFFER`] pieces, so memory stays bounded whatever
    /// the log's size and a slow client slows the reader down.
    pub async fn start_export(
        &self,
        caller: &Caller,
        mut filter: EntryFilter,
        extra: &[(&str, Value)],
        shutdown: CancellationToken,
    ) -> Result<ExportReceiver, AuditError> {
        let permit = self
            .inner
            .export_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| AuditError::LimitExceeded("too many exports in progress"))?;
        self.record_access(caller, "audit.export", filter_details(&filter), extra)
            .await?;
        let team = caller.team_id().to_owned();
        let last = if filter.to_seq == i64::MAX {
            let snapshot = self
                .checkpoint_team(&team, CheckpointTrigger::Export)
                .await?;
            filter.to_seq = snapshot.as_ref().map_or(0, |cp| {
                i64::try_from(cp.checkpoint.tree_size).unwrap_or(i64::MAX)
            });
            snapshot
        } else {
            let upto = u64::try_from(filter.to_seq).unwrap_or(0);
            checkpoints::latest_between(self.db(), &team, 0, upto).await?
        };
        let (sender, receiver) = mpsc::channel(EXPORT_BUFFER);
        let audit = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let stream = ExportRun {
                audit: &audit,
                team: &team,
                sender: &sender,
            };
            let finished = tokio::select! {
                () = shutdown.cancelled() => Err(AuditError::Unavailable("the audit service")),
                done = stream.run(filter, last) => done,
            };
            if let Err(err) = finished {
                let _ = sender.send(Err(err)).await;
            }
        });
        Ok(receiver)
    }
}

struct ExportRun<'a> {
    audit: &'a Audit,
    team: &'a str,
    sender: &'a mpsc::Sender<Result<ExportPiece, AuditError>>,
}

/// The client went away: stop quietly.
struct Gone;

impl ExportRun<'_> {
    async fn send(&self, piece: ExportPiece) -> Result<(), Gone> {
        self.sender.send(Ok(piece)).await.map_err(|_| Gone)
    }

    async fn run(
        &self,
        mut filter: EntryFilter,
        last: Option<SignedCheckpoint>,
    ) -> Result<(), AuditError> {
        match self.stream(&mut filter, last).await {
            Ok(()) | Err(Ok(Gone)) => Ok(()),
            Err(Err(err)) => Err(err),
        }
    }

    async fn stream(
        &self,
        filter: &mut EntryFilter,
        last: Option<SignedCheckpoint>,
    ) -> Result<(), Result<Gone, AuditError>> {
        let db = self.audit.db();
        let mut emitted: u64 = 0;
        while filter.from_seq <= filter.to_seq {
            let rows = entries::query(db, self.team, filter, EXPORT_PAGE, false)
                .await
                .map_err(|err| Err(AuditError::from(err)))?;
            let full = rows.len() == EXPORT_PAGE as usize;
            let Some(page_last) = rows.last().map(|row| row.seq) else {
                break;
            };
            for row in rows {
                let (entry, key_id) = row.into_entry().map_err(Err)?;
                let piece = ExportPiece::Entry {
                    entry: Box::new(entry),
                    key_id,
                };
                self.send(piece).await.map_err(Ok)?;
            }
            let page_last_seq = u64::try_from(page_last).unwrap_or(0);
            if page_last_seq.saturating_sub(emitted) >= EXPORT_CHECKPOINT_SPACING
                && let Some(cp) = checkpoints::latest_between(db, self.team, emitted, page_last_seq)
                    .await
                    .map_err(Err)?
            {
                emitted = cp.checkpoint.tree_size;
                self.send(ExportPiece::Checkpoint(Box::new(cp)))
                    .await
                    .map_err(Ok)?;
            }
            if !full {
                break;
            }
            filter.from_seq = page_last.saturating_add(1);
        }
        if let Some(cp) = last.filter(|cp| cp.checkpoint.tree_size > emitted) {
            self.send(ExportPiece::Checkpoint(Box::new(cp)))
                .await
                .map_err(Ok)?;
        }
        Ok(())
    }
}
