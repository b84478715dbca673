//! Offline verification of an audit export (docs/audit-format.md, "What an offline verifier
//! checks"): NDJSON where each line is an entry (`{"seq":…}`) or a signed checkpoint
//! (`{"checkpoint":{…},"sig":…}`), in any interleaving, for one team.
//!
//! Two passes over the input, so memory stays O(log n) whatever the export's size: the first
//! verifies every entry and link (streaming) and every checkpoint's signature and collects the
//! checkpoints; the second recomputes the Merkle root at each checkpoint's size. The first
//! failure is reported with its line and, for entries, the seq expected there.

use std::collections::BTreeMap;
use std::io::BufRead;

/// The audit service's verification key (re-exported so verifiers need no Ed25519 crate).
pub use ed25519_dalek::VerifyingKey;

use super::chain::{ChainFailure, ChainHead};
use super::{Entry, GENESIS_PREV_HASH, MAX_ENTRY_JSON_LEN};
use crate::merkle::{Hash, MerkleAccumulator, SignedCheckpoint, hashes_equal};

/// Most checkpoints one export may carry (each is kept in memory between the passes).
pub const MAX_EXPORT_CHECKPOINTS: usize = 1_000_000;

/// Where and why an export failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: {reason}", .seq.map(|s| format!(" (seq {s})")).unwrap_or_default())]
pub struct ExportError {
    /// 1-based line number in the export (0 when the failure is about the whole file).
    pub line: u64,
    /// The seq expected at that position, for entry failures.
    pub seq: Option<u64>,
    pub reason: ExportFailure,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportFailure {
    #[error("reading the export: {0}")]
    Io(String),
    #[error("line longer than {MAX_ENTRY_JSON_LEN} bytes")]
    LineTooLong,
    #[error("not an entry or checkpoint line: {0}")]
    Malformed(String),
    #[error(transparent)]
    Chain(#[from] ChainFailure),
    #[error("checkpoint signature does not verify under this key")]
    CheckpointSignature,
    #[error("checkpoint is for team {found}, the export for team {expected}")]
    CheckpointTeam { expected: String, found: String },
    #[error(
        "checkpoint says {tree_size} entries but the export holds only {held} (entries were cut off)"
    )]
    Truncated { tree_size: u64, held: u64 },
    #[error(
        "the Merkle root of the first {tree_size} entries differs from the signed checkpoint (history rewritten)"
    )]
    RootMismatch { tree_size: u64 },
    #[error("more than {MAX_EXPORT_CHECKPOINTS} checkpoints")]
    TooManyCheckpoints,
    #[error("the export holds no entries")]
    Empty,
}

/// What a verified export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub team_id: String,
    pub entries: u64,
    /// The newest entry (what a later export must continue from).
    pub head: ChainHead,
    /// Checkpoints verified (signature, team, root).
    pub checkpoints: usize,
    /// The largest checkpointed size (entries after it are chained and signed but not yet
    /// covered by a checkpoint).
    pub checkpointed: u64,
}

enum Line {
    Entry(Box<Entry>),
    Checkpoint(Box<SignedCheckpoint>),
    Blank,
}

fn parse_line(text: &str) -> Result<Line, ExportFailure> {
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if trimmed.trim().is_empty() {
        return Ok(Line::Blank);
    }
    if trimmed.len() > MAX_ENTRY_JSON_LEN {
        return Err(ExportFailure::LineTooLong);
    }
    if trimmed.trim_start().starts_with("{\"checkpoint\"") {
        return SignedCheckpoint::from_json(trimmed)
            .map(|c| Line::Checkpoint(Box::new(c)))
            .map_err(|err| ExportFailure::Malformed(err.to_string()));
    }
    Entry::from_json_line(trimmed)
        .map(|e| Line::Entry(Box::new(e)))
        .map_err(|err| ExportFailure::Malformed(err.to_string()))
}

/// Reads one line with the length bound applied before the whole line is buffered.
fn read_bounded<R: BufRead>(reader: &mut R, buf: &mut Vec<u8>) -> Result<usize, ExportFailure> {
    buf.clear();
    let mut limited = std::io::Read::take(&mut *reader, MAX_ENTRY_JSON_LEN as u64 + 2);
    let read = limited
        .read_until(b'\n', buf)
        .map_err(|err| ExportFailure::Io(err.to_string()))?;
    if buf.len() > MAX_ENTRY_JSON_LEN + 1 && buf.last() != Some(&b'\n') {
        return Err(ExportFailure::LineTooLong);
    }
    Ok(read)
}

/// Verifies an export: `open` is called twice and must yield the same bytes each time.
pub fn verify_export<R, F>(mut open: F, key: &VerifyingKey) -> Result<ExportSummary, ExportError>
where
    R: BufRead,
    F: FnMut() -> std::io::Result<R>,
{
    let io = |err: std::io::Error| ExportError {
        line: 0,
        seq: None,
        reason: ExportFailure::Io(err.to_string()),
    };
    // Pass 1: entries as a chain, checkpoints by signature; remember checkpoints by size.
    let mut reader = open().map_err(io)?;
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let mut head: Option<ChainHead> = None;
    let mut checkpoints: BTreeMap<u64, (u64, Hash)> = BTreeMap::new();
    let mut checkpoint_count = 0usize;
    let mut checkpoint_team: Option<(u64, String)> = None;
    loop {
        let read = read_bounded(&mut reader, &mut buf).map_err(|reason| ExportError {
            line: line_no + 1,
            seq: None,
            reason,
        })?;
        if read == 0 {
            break;
        }
        line_no += 1;
        let at = |reason, seq| ExportError {
            line: line_no,
            seq,
            reason,
        };
        let text = std::str::from_utf8(&buf)
            .map_err(|_| at(ExportFailure::Malformed("not UTF-8".into()), None))?;
        match parse_line(text).map_err(|r| at(r, None))? {
            Line::Blank => {}
            Line::Entry(entry) => {
                let expected = head.as_ref().map_or(1, |h| h.seq.saturating_add(1));
                check_next(head.as_ref(), &entry, key)
                    .map_err(|reason| at(reason.into(), Some(expected)))?;
                head = Some(ChainHead::of(&entry));
            }
            Line::Checkpoint(signed) => {
                signed
                    .verify(key)
                    .map_err(|_| at(ExportFailure::CheckpointSignature, None))?;
                checkpoint_count += 1;
                if checkpoint_count > MAX_EXPORT_CHECKPOINTS {
                    return Err(at(ExportFailure::TooManyCheckpoints, None));
                }
                let cp = signed.checkpoint;
                if checkpoint_team.is_none() {
                    checkpoint_team = Some((line_no, cp.team_id.clone()));
                }
                if let Some((_, team)) = &checkpoint_team
                    && *team != cp.team_id
                {
                    return Err(at(
                        ExportFailure::CheckpointTeam {
                            expected: team.clone(),
                            found: cp.team_id,
                        },
                        None,
                    ));
                }
                // Two checkpoints of one size must agree: keep the first, compare later.
                if let Some((_, root)) = checkpoints.get(&cp.tree_size) {
                    if !hashes_equal(root, &cp.root_hash) {
                        return Err(at(
                            ExportFailure::RootMismatch {
                                tree_size: cp.tree_size,
                            },
                            None,
                        ));
                    }
                } else {
                    checkpoints.insert(cp.tree_size, (line_no, cp.root_hash));
                }
            }
        }
    }
    let head = head.ok_or(ExportError {
        line: 0,
        seq: None,
        reason: ExportFailure::Empty,
    })?;
    if let Some((line, team)) = checkpoint_team
        && team != head.team_id
    {
        return Err(ExportError {
            line,
            seq: None,
            reason: ExportFailure::CheckpointTeam {
                expected: head.team_id.clone(),
                found: team,
            },
        });
    }
    if let Some((&tree_size, &(line, _))) = checkpoints.iter().next_back()
        && tree_size > head.seq
    {
        return Err(ExportError {
            line,
            seq: None,
            reason: ExportFailure::Truncated {
                tree_size,
                held: head.seq,
            },
        });
    }

    // Pass 2: the Merkle root at each checkpointed size.
    let mut reader = open().map_err(io)?;
    let mut accumulator = MerkleAccumulator::new();
    let mut pending = checkpoints.iter().peekable();
    // A checkpoint of size 0 is checked against the empty tree.
    while let Some(&(&0, &(line, root))) = pending.peek() {
        if !hashes_equal(&root, &accumulator.root()) {
            return Err(ExportError {
                line,
                seq: None,
                reason: ExportFailure::RootMismatch { tree_size: 0 },
            });
        }
        pending.next();
    }
    while pending.peek().is_some() {
        let read = read_bounded(&mut reader, &mut buf).map_err(|reason| ExportError {
            line: 0,
            seq: None,
            reason,
        })?;
        if read == 0 {
            break;
        }
        let text = std::str::from_utf8(&buf).map_err(|_| ExportError {
            line: 0,
            seq: None,
            reason: ExportFailure::Malformed("the export changed between passes".into()),
        })?;
        if let Ok(Line::Entry(entry)) = parse_line(text) {
            accumulator
                .push_entry_hash(&entry.hash)
                .map_err(|err| ExportError {
                    line: 0,
                    seq: Some(entry.seq),
                    reason: ExportFailure::Malformed(err.to_string()),
                })?;
            while let Some(&(&size, &(line, root))) = pending.peek() {
                if size != accumulator.size() {
                    break;
                }
                if !hashes_equal(&root, &accumulator.root()) {
                    return Err(ExportError {
                        line,
                        seq: None,
                        reason: ExportFailure::RootMismatch { tree_size: size },
                    });
                }
                pending.next();
            }
        }
    }
    if let Some(&(&tree_size, &(line, _))) = pending.peek() {
        return Err(ExportError {
            line,
            seq: None,
            reason: ExportFailure::Truncated {
                tree_size,
                held: accumulator.size(),
            },
        });
    }
    Ok(ExportSummary {
        team_id: head.team_id.clone(),
        entries: head.seq,
        checkpointed: checkpoints.keys().next_back().copied().unwrap_or(0),
        checkpoints: checkpoint_count,
        head,
    })
}

/// One step of chain verification: `entry` continues `head` (or starts the chain).
fn check_next(
    head: Option<&ChainHead>,
    entry: &Entry,
    key: &VerifyingKey,
) -> Result<(), ChainFailure> {
    super::verify_entry(entry, key).map_err(ChainFailure::from)?;
    let expected = head.map_or(1, |h| h.seq.saturating_add(1));
    if let Some(head) = head
        && head.team_id != entry.event.team_id
    {
        return Err(ChainFailure::WrongTeam {
            expected: head.team_id.clone(),
            found: entry.event.team_id.clone(),
        });
    }
    if entry.seq > expected {
        return Err(ChainFailure::Gap { found: entry.seq });
    }
    if entry.seq < expected {
        return Err(ChainFailure::Replayed { found: entry.seq });
    }
    let prev = head.map_or(GENESIS_PREV_HASH, |h| h.hash);
    if !hashes_equal(&prev, &entry.prev_hash) {
        return Err(ChainFailure::BrokenLink);
    }
    Ok(())
}
