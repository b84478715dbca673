//! `audit_rejected`: dead letters, stream messages that are not valid audit events.

use tucdesk_svc::on_tx;
use tucdesk_svc::sql::Tx;

use super::WriteError;

/// Payloads up to this size are kept for investigation; larger ones only by digest and length.
pub const MAX_KEPT_PAYLOAD: usize = 64 * 1024;

/// One rejected message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// SHA-256 of the payload: a redelivery is stored once.
    pub digest: [u8; 32],
    pub subject: String,
    /// The event id when the payload decoded and the id is a canonical UUID.
    pub event_id: Option<String>,
    /// Why it was refused (a field name and rule, never content).
    pub reason: String,
    pub payload: Vec<u8>,
}

/// Stores `letter` unless a message with the same digest already was.
pub async fn insert(tx: &mut Tx, letter: &DeadLetter, now_ms: i64) -> Result<(), WriteError> {
    let kept = (letter.payload.len() <= MAX_KEPT_PAYLOAD).then_some(&letter.payload[..]);
    let len = i64::try_from(letter.payload.len()).unwrap_or(i64::MAX);
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO audit_rejected (digest, subject, event_id, reason, payload, payload_len, \
             received_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(&letter.digest[..])
        .bind(&letter.subject)
        .bind(letter.event_id.as_deref())
        .bind(&letter.reason)
        .bind(kept)
        .bind(len)
        .bind(now_ms)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(())
}
