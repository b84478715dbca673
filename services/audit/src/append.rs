//! Appending one batch of validated events in ONE transaction (SPEC §6): per team, the next
//! seq after the stored head, `prev_hash` = the last entry's hash, `hash` and `sig` from
//! `tucdesk_crypto::audit::ChainBuilder`, the Merkle accumulator advanced, and a signed
//! checkpoint every `checkpoint_every` entries. Events already in the log (a redelivery) are
//! skipped, so each event id is appended at most once.
//!
//! Concurrency: if another replica extends a chain first, an insert hits the
//! `(team_id, seq)` primary key (or the head's optimistic check fails) and the whole
//! transaction is a [`WriteError::Conflict`]; the caller rolls back, and retries from the
//! reloaded heads.

use std::collections::{HashMap, HashSet};

use tucdesk_crypto::audit::{AuditEvent, ChainBuilder};
use tucdesk_crypto::merkle::{Checkpoint, SignedCheckpoint};
use tucdesk_svc::sql::{Tx, now_ms};

use crate::error::AuditError;
use crate::service::Audit;
use crate::store::heads::{self, Head};
use crate::store::rejected::{self, DeadLetter};
use crate::store::{WriteError, checkpoints, entries};

/// What one committed batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub appended: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub checkpoints: u64,
}

impl Audit {
    /// Appends `events` (validated, in stream order) and stores `dead` letters, all in one
    /// transaction, committed before this returns `Ok`.
    pub(crate) async fn append_batch(
        &self,
        events: &[AuditEvent],
        dead: &[DeadLetter],
    ) -> Result<BatchOutcome, WriteError> {
        let now = now_ms();
        let mut outcome = BatchOutcome::default();
        let mut tx = self.inner.db.begin().await?;

        // Group by team, keeping stream order within each team; drop repeats (within the
        // batch, and redeliveries of events already in the log: one lookup for the batch).
        let ids: Vec<&str> = events.iter().map(|event| event.event_id.as_str()).collect();
        let stored = entries::existing_event_ids(&mut tx, &ids).await?;
        let mut seen = HashSet::new();
        let mut order: Vec<&str> = Vec::new();
        let mut by_team: HashMap<&str, Vec<&AuditEvent>> = HashMap::new();
        for event in events {
            if !seen.insert(event.event_id.as_str()) || stored.contains(&event.event_id) {
                outcome.duplicates += 1;
                continue;
            }
            let team = event.team_id.as_str();
            by_team
                .entry(team)
                .or_insert_with(|| {
                    order.push(team);
                    Vec::new()
                })
                .push(event);
        }

        for team in order {
            let events = by_team.remove(team).unwrap_or_default();
            let (appended, checkpoints) = self.append_team(&mut tx, team, &events, now).await?;
            outcome.appended += appended;
            outcome.checkpoints += checkpoints;
        }
        for letter in dead {
            rejected::insert(&mut tx, letter, now).await?;
            outcome.rejected += 1;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Extends one team's chain by `events`; returns (entries appended, checkpoints made).
    async fn append_team(
        &self,
        tx: &mut Tx,
        team_id: &str,
        events: &[&AuditEvent],
        now: i64,
    ) -> Result<(u64, u64), WriteError> {
        let stored = heads::load_in(tx, team_id).await?;
        let expected = stored
            .as_ref()
            .map(|head| (head.tree_size, head.checkpoint_size));
        let mut head = stored.unwrap_or_else(|| Head::empty(team_id, now));
        let mut builder = self.resume_chain(tx, &head).await?;
        let key = &self.inner.key;
        let every = self.inner.config.checkpoint_every;
        let mut made = Vec::new();
        let mut appended = Vec::with_capacity(events.len());
        for event in events {
            let entry = builder
                .append((*event).clone(), key.signing_key())
                .map_err(|err| AuditError::internal("appending an audit entry", err))?;
            head.accumulator
                .push_entry_hash(&entry.hash)
                .map_err(|err| AuditError::internal("advancing the Merkle accumulator", err))?;
            head.tree_size = entry.seq;
            head.last_hash = entry.hash;
            appended.push(entry);
            if head.tree_size - head.checkpoint_size >= every {
                made.push(self.sign_checkpoint(&head, now)?);
                head.checkpoint_size = head.tree_size;
                head.checkpoint_at_ms = now;
            }
        }
        // Entries first: a checkpoint only ever covers rows already inserted.
        entries::insert_many(tx, &appended, key.key_id(), now).await?;
        for signed in &made {
            checkpoints::insert(tx, signed).await?;
        }
        heads::save(tx, &head, expected, now).await?;
        Ok((appended.len() as u64, made.len() as u64))
    }

    /// A chain builder positioned after `head`. The last stored entry is read back and its
    /// hash recomputed (`ChainBuilder::resume`), and it must be the entry the head names:
    /// nothing is ever appended after a corrupted or inconsistent row (fail closed).
    async fn resume_chain(&self, tx: &mut Tx, head: &Head) -> Result<ChainBuilder, WriteError> {
        if head.tree_size == 0 {
            return ChainBuilder::new(head.team_id.clone())
                .map_err(|err| AuditError::internal("starting an audit chain", err).into());
        }
        let row = entries::get_in(tx, &head.team_id, head.tree_size)
            .await?
            .ok_or_else(|| {
                AuditError::internal(
                    "audit chain head points past the stored entries",
                    &head.team_id,
                )
            })?;
        let failed = || {
            self.inner
                .metrics
                .verification_failures
                .with_label_values(&["chain_head"])
                .inc();
        };
        let (last, _) = row.into_entry().inspect_err(|_| failed())?;
        if last.hash != head.last_hash || last.event.team_id != head.team_id {
            failed();
            return Err(AuditError::internal(
                "audit chain head does not match its last entry",
                &head.team_id,
            )
            .into());
        }
        ChainBuilder::resume(&last).map_err(|err| {
            failed();
            AuditError::internal(
                "the last stored audit entry does not verify; refusing to extend its chain",
                format!("team {}: {err}", head.team_id),
            )
            .into()
        })
    }

    /// Signs the checkpoint of `head`'s current tree.
    pub(crate) fn sign_checkpoint(
        &self,
        head: &Head,
        now: i64,
    ) -> Result<SignedCheckpoint, AuditError> {
        let key = &self.inner.key;
        Checkpoint {
            team_id: head.team_id.clone(),
            tree_size: head.tree_size,
            root_hash: head.accumulator.root(),
            timestamp_ms: u64::try_from(now).unwrap_or(0),
            key_id: key.key_id().to_owned(),
        }
        .sign(key.signing_key())
        .map_err(|err| AuditError::internal("signing a checkpoint", err))
    }
}
