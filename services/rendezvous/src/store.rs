//! The rendezvous database: one module per table family, the same SQL on Postgres and SQLite.
//!
//! Every query that reads an operator-visible object filters by `team_id` from verified claims;
//! functions that do not take a team id are for the agent side (whose team comes from the
//! enrolled record) and internal callers.

pub mod agents;
pub mod approvals;
pub mod enrollment;
pub mod paging;
pub mod policies;
pub mod recording;
pub mod sessions;

use prost::Message;

use crate::error::RendezvousError;

/// Unix ms → protobuf timestamp.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// Protobuf timestamp → Unix ms (saturating).
pub fn timestamp_ms(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
}

/// Decodes a stored protobuf message; a stored value that no longer decodes is an internal
/// error (logged), never a panic.
pub fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M, RendezvousError> {
    Ok(M::decode(bytes)?)
}

/// Decodes an optional stored message, `None` staying `None`.
pub fn decode_opt<M: Message + Default>(
    bytes: Option<&[u8]>,
) -> Result<Option<M>, RendezvousError> {
    bytes.map(decode).transpose()
}

/// `true` when a sqlx error is a unique-constraint violation (duplicate key) on either engine.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}
