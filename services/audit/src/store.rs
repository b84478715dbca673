//! The audit database: one module per table, the same SQL on Postgres and SQLite.
//!
//! Every read that serves a caller filters by `team_id` from verified claims. The append-only
//! tables are only ever inserted into and selected from here; no UPDATE or DELETE statement
//! on them exists in this crate (the syslog push's cursor and lease, [`syslog`], are not part
//! of the log and are updated in place).

pub mod checkpoints;
pub mod entries;
pub mod heads;
pub mod keys;
pub mod rejected;
pub mod syslog;

use tucdesk_crypto::merkle::{HASH_LEN, Hash, SIGNATURE_LEN};

use crate::error::AuditError;

/// `true` when a sqlx error is a unique-constraint violation (duplicate key) on either engine,
/// or SQLite's append-only trigger refusing an insert over an existing row.
pub fn is_conflict(err: &sqlx::Error) -> bool {
    err.as_database_error().is_some_and(|db| {
        db.kind() == sqlx::error::ErrorKind::UniqueViolation
            || db.message().contains("append-only: the row exists")
    })
}

/// A stored sequence number or size as the database's signed 64-bit integer.
pub fn db_int(value: u64) -> Result<i64, AuditError> {
    i64::try_from(value).map_err(|_| AuditError::InvalidArgument("number out of range".into()))
}

/// A database integer that must not be negative.
pub fn from_db_int(value: i64) -> Result<u64, AuditError> {
    u64::try_from(value).map_err(|_| AuditError::internal("stored number is negative", value))
}

/// A stored 32-byte hash.
pub fn stored_hash(bytes: &[u8]) -> Result<Hash, AuditError> {
    <[u8; HASH_LEN]>::try_from(bytes)
        .map_err(|_| AuditError::internal("stored hash has the wrong length", bytes.len()))
}

/// A stored 64-byte signature.
pub fn stored_sig(bytes: &[u8]) -> Result<[u8; SIGNATURE_LEN], AuditError> {
    <[u8; SIGNATURE_LEN]>::try_from(bytes)
        .map_err(|_| AuditError::internal("stored signature has the wrong length", bytes.len()))
}

/// Why a write inside an append or checkpoint transaction failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Another writer (replica) extended the chain or wrote the row first: roll back, reload
    /// and retry.
    #[error("another writer changed the row first")]
    Conflict,
    #[error(transparent)]
    Failed(#[from] AuditError),
}

impl From<sqlx::Error> for WriteError {
    fn from(err: sqlx::Error) -> Self {
        if is_conflict(&err) {
            Self::Conflict
        } else {
            Self::Failed(AuditError::from(err))
        }
    }
}

impl From<tucdesk_svc::sql::SqlError> for WriteError {
    fn from(err: tucdesk_svc::sql::SqlError) -> Self {
        match err {
            tucdesk_svc::sql::SqlError::Query(err) => Self::from(err),
            other => Self::Failed(AuditError::from(other)),
        }
    }
}
