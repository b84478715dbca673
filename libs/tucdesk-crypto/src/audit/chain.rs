//! A team's chain: appending signed entries ([`ChainBuilder`], [`append`])
//! and verifying links and whole chains, naming the first broken seq.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::merkle::{Hash, hashes_equal, hex_serde};

use super::entry::{EntryError, EventError, check_nonempty, entry_hash, verify_entry};
use super::{AuditEvent, Entry, GENESIS_PREV_HASH, MAX_ID_LEN};

/// Why an entry could not be appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("invalid event: {0}")]
    InvalidEvent(#[from] EventError),
    #[error("event belongs to team {found}, chain belongs to team {expected}")]
    TeamMismatch { expected: String, found: String },
    #[error("the chain head's stored hash does not match its contents")]
    CorruptHead,
    #[error("sequence number space exhausted")]
    SeqOverflow,
}

/// Why two entries are not consecutive links of one chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("entries belong to different teams ({prev} then {next})")]
    WrongTeam { prev: String, next: String },
    #[error("expected seq {expected}, found {found}")]
    SeqNotNext { expected: u64, found: u64 },
    #[error("prev_hash does not match the previous entry's hash")]
    PrevHashMismatch,
    #[error("sequence number space exhausted")]
    SeqOverflow,
}

/// What is wrong at the first broken position of a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainFailure {
    #[error("invalid event: {0}")]
    InvalidEvent(EventError),
    #[error("seq 0 is never valid")]
    ZeroSeq,
    #[error("bad hash: the entry was modified")]
    BadHash,
    #[error("bad signature: not signed by this audit key")]
    BadSignature,
    #[error("broken link: prev_hash does not match the previous entry")]
    BrokenLink,
    #[error("gap: found seq {found}, entries are missing before it")]
    Gap { found: u64 },
    #[error("duplicate or reordered entry: found seq {found}")]
    Replayed { found: u64 },
    #[error("entry belongs to team {found}, chain belongs to team {expected}")]
    WrongTeam { expected: String, found: String },
    #[error("sequence number space exhausted")]
    SeqOverflow,
}

impl From<EntryError> for ChainFailure {
    fn from(e: EntryError) -> Self {
        match e {
            EntryError::InvalidEvent(e) => Self::InvalidEvent(e),
            EntryError::ZeroSeq => Self::ZeroSeq,
            EntryError::BadHash => Self::BadHash,
            EntryError::BadSignature => Self::BadSignature,
        }
    }
}

/// The first broken position of a chain. `seq` is the sequence number the
/// verifier expected there: every entry before it verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at seq {seq}: {reason}")]
pub struct ChainError {
    pub seq: u64,
    pub reason: ChainFailure,
}

/// The last verified (or appended) entry of a chain: enough to continue it or
/// to verify a continuation without the earlier entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainHead {
    pub team_id: String,
    pub seq: u64,
    #[serde(with = "hex_serde::hash")]
    pub hash: Hash,
}

impl ChainHead {
    /// The head an entry would make (trusting its stored hash).
    pub fn of(entry: &Entry) -> Self {
        Self {
            team_id: entry.event.team_id.clone(),
            seq: entry.seq,
            hash: entry.hash,
        }
    }
}

/// Appends events to one team's chain, keeping only the head in memory.
/// The audit service owns one per team and serializes appends to it.
#[derive(Debug, Clone)]
pub struct ChainBuilder {
    team_id: String,
    head: Option<(u64, Hash)>,
}

impl ChainBuilder {
    /// A new, empty chain for `team_id`: the first append gets seq 1.
    pub fn new(team_id: impl Into<String>) -> Result<Self, AuditError> {
        let team_id = team_id.into();
        check_nonempty("team_id", &team_id, MAX_ID_LEN)?;
        Ok(Self {
            team_id,
            head: None,
        })
    }

    /// Continues a chain after its stored last entry. Recomputes that entry's
    /// hash first so a corrupted row is never built upon.
    pub fn resume(last: &Entry) -> Result<Self, AuditError> {
        if last.seq == 0 {
            return Err(AuditError::CorruptHead);
        }
        if !hashes_equal(&last.compute_hash()?, &last.hash) {
            return Err(AuditError::CorruptHead);
        }
        Ok(Self {
            team_id: last.event.team_id.clone(),
            head: Some((last.seq, last.hash)),
        })
    }

    /// The team this chain belongs to.
    pub fn team_id(&self) -> &str {
        &self.team_id
    }

    /// The seq the next append will get.
    pub fn next_seq(&self) -> Option<u64> {
        match self.head {
            None => Some(1),
            Some((seq, _)) => seq.checked_add(1),
        }
    }

    /// The last appended entry, if any.
    pub fn head(&self) -> Option<ChainHead> {
        self.head.map(|(seq, hash)| ChainHead {
            team_id: self.team_id.clone(),
            seq,
            hash,
        })
    }

    /// Hashes and signs `event` as the next entry.
    pub fn append(&mut self, event: AuditEvent, key: &SigningKey) -> Result<Entry, AuditError> {
        if event.team_id != self.team_id {
            return Err(AuditError::TeamMismatch {
                expected: self.team_id.clone(),
                found: event.team_id,
            });
        }
        let seq = self.next_seq().ok_or(AuditError::SeqOverflow)?;
        let prev_hash = self.head.map_or(GENESIS_PREV_HASH, |(_, h)| h);
        let hash = entry_hash(seq, &prev_hash, &event)?;
        let sig = key.sign(&hash).to_bytes();
        self.head = Some((seq, hash));
        Ok(Entry {
            seq,
            prev_hash,
            event,
            hash,
            sig,
        })
    }
}

/// Appends `event` after `prev` (or starts a chain when `prev` is `None`).
/// Same as [`ChainBuilder::resume`] + [`ChainBuilder::append`].
pub fn append(
    prev: Option<&Entry>,
    event: AuditEvent,
    key: &SigningKey,
) -> Result<Entry, AuditError> {
    let mut builder = match prev {
        None => ChainBuilder::new(event.team_id.clone())?,
        Some(p) => ChainBuilder::resume(p)?,
    };
    builder.append(event, key)
}

/// Checks that `next` directly follows `prev` in one chain: same team,
/// `next.seq == prev.seq + 1`, `next.prev_hash == prev.hash`. Does not check
/// hashes or signatures (see [`verify_entry`]).
pub fn verify_link(prev: &Entry, next: &Entry) -> Result<(), LinkError> {
    if prev.event.team_id != next.event.team_id {
        return Err(LinkError::WrongTeam {
            prev: prev.event.team_id.clone(),
            next: next.event.team_id.clone(),
        });
    }
    let expected = prev.seq.checked_add(1).ok_or(LinkError::SeqOverflow)?;
    if next.seq != expected {
        return Err(LinkError::SeqNotNext {
            expected,
            found: next.seq,
        });
    }
    if !hashes_equal(&next.prev_hash, &prev.hash) {
        return Err(LinkError::PrevHashMismatch);
    }
    Ok(())
}

/// Verifies a whole chain from its first entry (seq 1, zero `prev_hash`).
/// An empty slice is trivially valid: only a signed checkpoint can show
/// that entries are missing at the end.
pub fn verify_chain(entries: &[Entry], key: &VerifyingKey) -> Result<(), ChainError> {
    verify_chain_from(None, entries, key)
}

/// Verifies `entries` as the continuation of `start` (a head verified
/// earlier), or from genesis when `start` is `None`. Per position, in order:
/// the entry itself ([`verify_entry`]), its team, its seq, its `prev_hash`.
/// The error names the seq expected at the first position that fails.
pub fn verify_chain_from(
    start: Option<&ChainHead>,
    entries: &[Entry],
    key: &VerifyingKey,
) -> Result<(), ChainError> {
    let mut expected_seq = match start {
        None => Some(1),
        Some(head) => head.seq.checked_add(1),
    };
    let mut prev_hash = start.map_or(GENESIS_PREV_HASH, |h| h.hash);
    let mut team: Option<&str> = start.map(|h| h.team_id.as_str());
    for entry in entries {
        let Some(at) = expected_seq else {
            return Err(ChainError {
                seq: u64::MAX,
                reason: ChainFailure::SeqOverflow,
            });
        };
        let fail = |reason| ChainError { seq: at, reason };
        verify_entry(entry, key).map_err(|e| fail(e.into()))?;
        let entry_team = entry.event.team_id.as_str();
        match team {
            Some(t) if t != entry_team => {
                return Err(fail(ChainFailure::WrongTeam {
                    expected: t.to_owned(),
                    found: entry_team.to_owned(),
                }));
            }
            Some(_) => {}
            None => team = Some(entry_team),
        }
        if entry.seq > at {
            return Err(fail(ChainFailure::Gap { found: entry.seq }));
        }
        if entry.seq < at {
            return Err(fail(ChainFailure::Replayed { found: entry.seq }));
        }
        if !hashes_equal(&entry.prev_hash, &prev_hash) {
            return Err(fail(ChainFailure::BrokenLink));
        }
        prev_hash = entry.hash;
        expected_seq = at.checked_add(1);
    }
    Ok(())
}
