//! Transactional outbox (SPEC §6): events are written to the `outbox` table in the same
//! transaction as the state change they describe, and a publisher task moves them to a
//! durable bus stream after commit.
//!
//! Guarantees:
//! - **Nothing lost**: a row is marked published only after the stream acknowledged it; while
//!   the bus is down the publisher retries with capped exponential backoff.
//! - **No duplicates downstream**: each publish carries the event id as de-duplication id, so
//!   a row re-sent after a crash between "acked" and "marked" is dropped by the stream.
//! - **Order**: rows are published in id order and the publisher stops at the first failure,
//!   so a later event never overtakes an earlier one. On Postgres one publisher at a time holds
//!   an advisory lock, so several replicas sharing a database do not interleave.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, BusError, Headers, MAX_DEDUP_ID_LEN, MAX_PAYLOAD};
use crate::on_tx;
use crate::sql::{Database, SqlError, Tx, now_ms};

/// Rows moved per round trip; bounds both the transaction and the memory of one batch.
pub const PUBLISH_BATCH: i64 = 100;

/// How often the publisher looks for rows even without a wake-up (rows written by another
/// process sharing the database, or a wake-up lost to a crash).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Backoff bounds while the bus refuses publishes.
pub const RETRY_MIN: Duration = Duration::from_millis(100);
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// Published rows are kept this long (for inspection), then deleted.
pub const RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// First half of the Postgres advisory lock that serialises publishers sharing one outbox;
/// the second half is the schema's hash, so services (or tests) that share a database in
/// separate schemas do not wait on each other. Arbitrary but fixed: the ASCII of "tucd".
const PUBLISHER_LOCK_CLASS: i32 = 0x7475_6364;

/// Longest `last_error` kept on a row.
const MAX_ERROR_TEXT: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error("outbox event is invalid: {0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("outbox headers are not valid JSON: {0}")]
    Headers(#[from] serde_json::Error),
}

impl From<sqlx::Error> for OutboxError {
    fn from(err: sqlx::Error) -> Self {
        Self::Sql(SqlError::Query(err))
    }
}

/// An event to publish once the surrounding transaction commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Unique id; the stream's de-duplication id and the consumer's idempotency key.
    pub event_id: String,
    pub team_id: String,
    /// Stream subject, e.g. `audit.{team_id}.{action}`.
    pub subject: String,
    /// Trace context and similar metadata.
    pub headers: Headers,
    pub payload: Vec<u8>,
}

/// Inserts `event` in the caller's transaction; it is published only if that commits.
pub async fn enqueue(tx: &mut Tx, event: &OutboxEvent) -> Result<(), OutboxError> {
    if event.event_id.is_empty() || event.event_id.len() > MAX_DEDUP_ID_LEN {
        return Err(OutboxError::Invalid("event id is empty or too long"));
    }
    if event.payload.len() > MAX_PAYLOAD {
        return Err(OutboxError::Invalid("payload exceeds the bus limit"));
    }
    crate::bus::validate_subject(&event.subject)
        .map_err(|_| OutboxError::Invalid("subject is not a valid bus subject"))?;
    let headers = serde_json::to_string(&event.headers)?;
    const INSERT: &str = "INSERT INTO outbox (event_id, team_id, subject, headers, payload, created_at_ms) \
                          VALUES ($1, $2, $3, $4, $5, $6)";
    on_tx!(tx, |conn| {
        sqlx::query(INSERT)
            .bind(&event.event_id)
            .bind(&event.team_id)
            .bind(&event.subject)
            .bind(&headers)
            .bind(&event.payload)
            .bind(now_ms())
            .execute(conn)
            .await?
            .rows_affected()
    });
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
struct PendingRow {
    id: i64,
    event_id: String,
    subject: String,
    headers: String,
    payload: Vec<u8>,
}

/// Counts of what is waiting, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxStats {
    pub pending: i64,
    pub published: i64,
}

/// Moves committed outbox rows to the bus.
#[derive(Debug, Clone)]
pub struct OutboxPublisher {
    db: Database,
    bus: Arc<dyn Bus>,
    wake: Arc<Notify>,
}

/// Result of one publishing pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassOutcome {
    pub published: usize,
    /// The bus refused a publish; the rest waits for the next pass.
    pub stalled: bool,
}

impl OutboxPublisher {
    pub fn new(db: Database, bus: Arc<dyn Bus>) -> Self {
        Self {
            db,
            bus,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Asks the publisher to look now; call after committing a transaction that enqueued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Publishes until nothing is pending or the bus refuses, then waits for a wake-up or
    /// the poll interval; returns when `shutdown` fires (after the pass in flight).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = RETRY_MIN;
        let mut last_cleanup = tokio::time::Instant::now();
        loop {
            let delay = match self.publish_pending().await {
                Ok(PassOutcome { stalled: false, .. }) => {
                    backoff = RETRY_MIN;
                    POLL_INTERVAL
                }
                Ok(PassOutcome { stalled: true, .. }) => next_backoff(&mut backoff),
                Err(err) => {
                    tracing::warn!(error = %err, "outbox pass failed; retrying");
                    next_backoff(&mut backoff)
                }
            };
            if last_cleanup.elapsed() >= POLL_INTERVAL * 60 {
                if let Err(err) = self
                    .delete_published_before(now_ms() - retention_ms())
                    .await
                {
                    tracing::warn!(error = %err, "outbox cleanup failed");
                }
                last_cleanup = tokio::time::Instant::now();
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified(), if backoff == RETRY_MIN => {}
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Publishes pending rows in order until none is left or the bus refuses one.
    pub async fn publish_pending(&self) -> Result<PassOutcome, OutboxError> {
        let mut total = 0;
        loop {
            let pass = self.publish_batch().await?;
            total += pass.published;
            if pass.stalled || pass.published < usize::try_from(PUBLISH_BATCH).unwrap_or(0) {
                return Ok(PassOutcome {
                    published: total,
                    stalled: pass.stalled,
                });
            }
        }
    }

    async fn publish_batch(&self) -> Result<PassOutcome, OutboxError> {
        let mut tx = self.db.begin().await?;
        if let Tx::Postgres(conn) = &mut tx {
            let locked: bool = sqlx::query_scalar(
                "SELECT pg_try_advisory_xact_lock($1, hashtext(current_schema()))",
            )
            .bind(PUBLISHER_LOCK_CLASS)
            .fetch_one(&mut **conn)
            .await?;
            if !locked {
                // Another replica is publishing this database's rows right now.
                tx.rollback().await?;
                return Ok(PassOutcome {
                    published: 0,
                    stalled: false,
                });
            }
        }
        const PENDING: &str = "SELECT id, event_id, subject, headers, payload FROM outbox \
                               WHERE published_at_ms IS NULL ORDER BY id LIMIT $1";
        let rows: Vec<PendingRow> = on_tx!(&mut tx, |conn| {
            sqlx::query_as(PENDING)
                .bind(PUBLISH_BATCH)
                .fetch_all(conn)
                .await?
        });
        let mut outcome = PassOutcome {
            published: 0,
            stalled: false,
        };
        for row in rows {
            let headers: Headers = serde_json::from_str(&row.headers)?;
            let sent = self
                .bus
                .stream_publish(
                    &row.subject,
                    &row.event_id,
                    headers,
                    Bytes::from(row.payload),
                )
                .await;
            match sent {
                Ok(_) => {
                    const MARK: &str = "UPDATE outbox SET published_at_ms = $1, attempts = attempts + 1 \
                                        WHERE id = $2";
                    on_tx!(&mut tx, |conn| {
                        sqlx::query(MARK)
                            .bind(now_ms())
                            .bind(row.id)
                            .execute(conn)
                            .await?
                            .rows_affected()
                    });
                    outcome.published += 1;
                }
                Err(err) => {
                    tracing::warn!(
                        event_id = %row.event_id,
                        subject = %row.subject,
                        error = %err,
                        "outbox publish refused; will retry"
                    );
                    let mut text = err.to_string();
                    text.truncate(MAX_ERROR_TEXT);
                    const FAILED: &str =
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $1 WHERE id = $2";
                    on_tx!(&mut tx, |conn| {
                        sqlx::query(FAILED)
                            .bind(&text)
                            .bind(row.id)
                            .execute(conn)
                            .await?
                            .rows_affected()
                    });
                    outcome.stalled = true;
                    break;
                }
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Deletes rows published before `cutoff_ms`; returns how many.
    pub async fn delete_published_before(&self, cutoff_ms: i64) -> Result<u64, OutboxError> {
        const DELETE: &str =
            "DELETE FROM outbox WHERE published_at_ms IS NOT NULL AND published_at_ms < $1";
        let result = crate::on_pool!(&self.db, |pool| {
            sqlx::query(DELETE)
                .bind(cutoff_ms)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(result)
    }

    pub async fn stats(&self) -> Result<OutboxStats, OutboxError> {
        const STATS: &str = "SELECT \
             COALESCE(SUM(CASE WHEN published_at_ms IS NULL THEN 1 ELSE 0 END), 0) AS pending, \
             COALESCE(SUM(CASE WHEN published_at_ms IS NULL THEN 0 ELSE 1 END), 0) AS published \
             FROM outbox";
        let (pending, published): (i64, i64) = crate::on_pool!(&self.db, |pool| {
            sqlx::query_as(STATS).fetch_one(pool).await?
        });
        Ok(OutboxStats { pending, published })
    }
}

fn retention_ms() -> i64 {
    i64::try_from(RETENTION.as_millis()).unwrap_or(i64::MAX)
}

/// Returns the delay to wait now and doubles the next one, up to [`RETRY_MAX`], with up to
/// 25 % jitter so replicas do not retry in lockstep.
fn next_backoff(backoff: &mut Duration) -> Duration {
    let base = *backoff;
    *backoff = (*backoff * 2).min(RETRY_MAX);
    let jitter_range = u64::try_from(base.as_millis() / 4).unwrap_or(0).max(1);
    let jitter = u64::from(uuid::Uuid::new_v4().as_fields().0) % jitter_range;
    base + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut backoff = RETRY_MIN;
        let first = next_backoff(&mut backoff);
        assert!(first >= RETRY_MIN && first <= RETRY_MIN + RETRY_MIN / 4);
        assert_eq!(backoff, RETRY_MIN * 2);
        for _ in 0..20 {
            next_backoff(&mut backoff);
        }
        assert_eq!(backoff, RETRY_MAX);
    }
}
