//! The durable consumer of the `AUDIT` stream: fetch a batch, decode and validate each event,
//! append the valid ones and dead-letter the invalid ones in one transaction, and acknowledge
//! the batch only after that transaction committed.
//!
//! Delivery guarantees (docs/audit.md): every event published to the stream is appended
//! exactly once per event id: a batch that fails is not acknowledged and comes back after the
//! ack wait; a redelivery of an appended event is recognised by its id and acknowledged
//! without a second entry. An invalid event is stored in `audit_rejected` (never hashed or
//! signed), logged with its id only, and acknowledged, so it cannot block the stream.

use std::time::Duration;

use futures::StreamExt as _;
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;
use tucdesk_crypto::audit::AuditEvent;
use tucdesk_proto::v1 as pb;
use tucdesk_svc::bus::{ConsumerSpec, Delivery, DurableConsumer};
use tucdesk_svc::sql::now_ms;

use crate::append::BatchOutcome;
use crate::convert::{ConvertError, event_from_proto};
use crate::error::{AuditError, StartError};
use crate::service::Audit;
use crate::store::WriteError;
use crate::store::rejected::DeadLetter;

/// How long one fetch waits for events (also how quickly the loop notices a stop).
pub const FETCH_WAIT: Duration = Duration::from_millis(500);
/// Attempts at one batch while other replicas keep winning the race for a chain.
pub const MAX_APPEND_ATTEMPTS: u32 = 8;
/// First pause after a conflict; doubles per attempt.
const CONFLICT_BACKOFF: Duration = Duration::from_millis(20);
/// Pause after a failed fetch or append before trying again.
pub const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// After a stop, how long the consumer keeps draining what is already on the stream (what the
/// producers published last; only matters for the in-process bus, which forgets it on exit).
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// Fetch wait while draining.
const DRAIN_FETCH_WAIT: Duration = Duration::from_millis(100);
/// Acknowledgements awaiting the server's confirmation at once, per batch.
const ACKS_IN_FLIGHT: usize = 64;
/// Most unacknowledged events per consumer across replicas (backpressure).
pub const MAX_ACK_PENDING: usize = 10_000;

/// The consumer, opened; [`Ingest::run`] drives it.
pub struct Ingest {
    audit: Audit,
    consumer: Box<dyn DurableConsumer>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").finish_non_exhaustive()
    }
}

impl Audit {
    /// Opens the durable consumer on the stream. In a process sharing an in-process bus with
    /// the producers (standalone), open it before they publish: that bus forgets messages every
    /// existing consumer acknowledged.
    pub async fn open_ingest(&self) -> Result<Ingest, StartError> {
        let consumer = self
            .inner
            .bus
            .durable_consumer(&self.consumer_spec())
            .await?;
        Ok(Ingest {
            audit: self.clone(),
            consumer,
        })
    }

    /// The durable consumer every replica shares (the same spec opens the same consumer).
    pub fn consumer_spec(&self) -> ConsumerSpec {
        let config = &self.inner.config;
        let mut spec = ConsumerSpec::new(&config.stream.name, &config.consumer_name);
        spec.filter_subject = config.filter_subject();
        spec.ack_wait = config.ack_wait;
        spec.max_ack_pending = MAX_ACK_PENDING.max(config.batch_size);
        spec
    }

    /// Decodes, appends and acknowledges one fetched batch. `Err` leaves the batch
    /// unacknowledged (it is delivered again after the ack wait).
    pub async fn ingest(&self, batch: Vec<Delivery>) -> Result<BatchOutcome, AuditError> {
        let outcome = self.append_deliveries(&batch).await?;
        // Committed: now, and only now, acknowledge. A failed ack means a redelivery, which
        // is recognised by its event id. Acks are confirmed by the server, so they go out a
        // few dozen at a time rather than one round trip after another.
        let mut acks = futures::stream::iter(batch.into_iter().map(Delivery::ack))
            .buffer_unordered(ACKS_IN_FLIGHT);
        while let Some(acked) = acks.next().await {
            if let Err(err) = acked {
                tracing::warn!(error = %err, "acknowledging an audit event failed; it will be redelivered");
            }
        }
        Ok(outcome)
    }

    /// Decodes and appends one fetched batch in one transaction, committed when this returns
    /// `Ok`, without acknowledging it ([`Audit::ingest`] does both).
    pub async fn append_deliveries(&self, batch: &[Delivery]) -> Result<BatchOutcome, AuditError> {
        let metrics = &self.inner.metrics;
        if let Some(last) = batch.last() {
            metrics
                .backlog_events
                .set(i64::try_from(last.pending).unwrap_or(i64::MAX));
        }
        let mut events = Vec::with_capacity(batch.len());
        let mut dead = Vec::new();
        for delivery in batch {
            if delivery.delivered > 1 {
                metrics.redeliveries.inc();
            }
            match decode(delivery) {
                Ok(event) => events.push(event),
                Err(letter) => dead.push(*letter),
            }
        }
        let oldest = events.iter().map(|e| e.occurred_at).min();
        let outcome = self.append_with_retries(&events, &dead, oldest).await?;
        if outcome.appended > 0 || outcome.checkpoints > 0 {
            self.inner.log_changed.notify_one();
        }
        metrics.batches.with_label_values(&["committed"]).inc();
        metrics.appended.inc_by(outcome.appended);
        metrics.duplicates.inc_by(outcome.duplicates);
        metrics
            .checkpoints
            .with_label_values(&["count"])
            .inc_by(outcome.checkpoints);
        for letter in &dead {
            metrics
                .rejected
                .with_label_values(&[reason_label(&letter.reason)])
                .inc();
        }
        Ok(outcome)
    }

    async fn append_with_retries(
        &self,
        events: &[AuditEvent],
        dead: &[DeadLetter],
        oldest: Option<u64>,
    ) -> Result<BatchOutcome, AuditError> {
        let metrics = &self.inner.metrics;
        let mut backoff = CONFLICT_BACKOFF;
        for attempt in 1..=MAX_APPEND_ATTEMPTS {
            if let Some(oldest) = oldest {
                let now = u64::try_from(now_ms()).unwrap_or(0);
                let lag = now.saturating_sub(oldest) / 1000;
                metrics
                    .lag_seconds
                    .set(i64::try_from(lag).unwrap_or(i64::MAX));
            }
            match self.append_batch(events, dead).await {
                Ok(outcome) => return Ok(outcome),
                Err(WriteError::Conflict) => {
                    metrics.batches.with_label_values(&["conflict"]).inc();
                    tracing::debug!(attempt, "another writer extended a chain first; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                }
                Err(WriteError::Failed(err)) => {
                    metrics.batches.with_label_values(&["failed"]).inc();
                    return Err(err);
                }
            }
        }
        metrics.batches.with_label_values(&["failed"]).inc();
        Err(AuditError::Unavailable("the audit log (write contention)"))
    }
}

impl Ingest {
    /// Appends events until `stop`, signing time-triggered checkpoints alongside; then drains
    /// what is already on the stream (for up to [`DRAIN_DEADLINE`]) and returns. A batch in
    /// progress always finishes (commit and ack) before the loop looks at `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let checkpointer = {
            let (audit, stop) = (self.audit.clone(), stop.clone());
            async move { audit.run_checkpointer(stop).await }
        };
        tokio::join!(self.consume(stop), checkpointer);
    }

    async fn consume(mut self, stop: CancellationToken) {
        let batch_size = self.audit.inner.config.batch_size;
        tracing::info!(
            stream = %self.audit.inner.config.stream.name,
            consumer = %self.audit.inner.config.consumer_name,
            "audit log consuming events"
        );
        while !stop.is_cancelled() {
            let fetched = tokio::select! {
                () = stop.cancelled() => break,
                fetched = self.consumer.fetch(batch_size, FETCH_WAIT) => fetched,
            };
            if !self.handle(fetched).await {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(RETRY_PAUSE) => {}
                }
            }
        }
        let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE;
        while tokio::time::Instant::now() < deadline {
            match self.consumer.fetch(batch_size, DRAIN_FETCH_WAIT).await {
                Ok(batch) if batch.is_empty() => break,
                fetched => {
                    if !self.handle(fetched).await {
                        break;
                    }
                }
            }
        }
    }

    /// Processes one fetch result; `false` when something failed (pause before the next).
    async fn handle(&mut self, fetched: Result<Vec<Delivery>, tucdesk_svc::bus::BusError>) -> bool {
        match fetched {
            Ok(batch) if batch.is_empty() => {
                let metrics = &self.audit.inner.metrics;
                metrics.lag_seconds.set(0);
                metrics.backlog_events.set(0);
                true
            }
            Ok(batch) => match ingest_traced(&self.audit, batch).await {
                Ok(_) => true,
                Err(err) => {
                    tracing::error!(error = %err, "appending audit events failed; the batch will be redelivered");
                    false
                }
            },
            Err(err) => {
                tracing::warn!(error = %err, "fetching audit events failed; retrying");
                false
            }
        }
    }
}

/// [`Audit::ingest`] in a span continuing the trace of the batch's first event (W3C trace
/// context from its message headers, as producers inject it).
async fn ingest_traced(audit: &Audit, batch: Vec<Delivery>) -> Result<BatchOutcome, AuditError> {
    use tracing::Instrument as _;
    let span = tracing::info_span!("audit.append_batch", events = batch.len());
    if let Some(first) = batch.first() {
        tucdesk_svc::trace_context::set_parent(
            &span,
            tucdesk_svc::trace_context::extract_map(&first.headers),
        );
    }
    audit.ingest(batch).instrument(span).await
}

/// The crypto event of a delivery, or its dead letter. Logged with the event id (when it is a
/// well-formed one) and the reason, never the content.
fn decode(delivery: &Delivery) -> Result<AuditEvent, Box<DeadLetter>> {
    let reject = |event_id: Option<String>, reason: String| {
        tracing::warn!(
            subject = %delivery.subject,
            event_id = event_id.as_deref().unwrap_or("-"),
            stream_sequence = delivery.stream_sequence,
            %reason,
            "rejected an invalid audit event (dead-lettered, acknowledged)"
        );
        Box::new(DeadLetter {
            digest: Sha256::digest(&delivery.payload).into(),
            subject: delivery.subject.clone(),
            event_id,
            reason,
            payload: delivery.payload.to_vec(),
        })
    };
    let wire = match pb::AuditEvent::decode(delivery.payload.as_ref()) {
        Ok(wire) => wire,
        Err(_) => return Err(reject(None, REASON_UNDECODABLE.to_owned())),
    };
    let event_id = is_uuid(&wire.event_id).then(|| wire.event_id.clone());
    event_from_proto(&wire).map_err(|err| reject(event_id, reason_text(&err)))
}

const REASON_UNDECODABLE: &str = "undecodable: not a tucdesk.v1.AuditEvent";

fn reason_text(err: &ConvertError) -> String {
    let label = match err {
        ConvertError::MissingActor | ConvertError::BadActorKind => "actor",
        ConvertError::BadDecision => "policy_result",
        ConvertError::ContextTooLong | ConvertError::Context(_) => "context",
        ConvertError::Invalid(_) | ConvertError::BadLength { .. } => "invalid",
    };
    format!("{label}: {err}")
}

/// The metric label of a dead letter's reason (its prefix before `:`).
fn reason_label(reason: &str) -> &'static str {
    match reason.split(':').next().unwrap_or_default() {
        "undecodable" => "undecodable",
        "actor" => "actor",
        "policy_result" => "policy_result",
        "context" => "context",
        _ => "invalid",
    }
}

/// Whether `s` is a canonical lowercase UUID (safe to log).
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => matches!(c, b'0'..=b'9' | b'a'..=b'f'),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_have_bounded_labels_and_only_uuids_are_logged() {
        assert_eq!(reason_label(REASON_UNDECODABLE), "undecodable");
        assert_eq!(
            reason_label(&reason_text(&ConvertError::BadActorKind)),
            "actor"
        );
        assert_eq!(reason_label("whatever"), "invalid");
        assert!(is_uuid("0193a8c4-0000-7000-8000-000000000001"));
        assert!(!is_uuid("0193A8C4-0000-7000-8000-000000000001"));
        assert!(!is_uuid("<script>"));
    }
}
