//! Signed checkpoints (RFC 6962 tree heads) beyond the count-triggered ones the append
//! transaction makes: every `checkpoint_interval` for each team with uncheckpointed entries,
//! and on demand before an export, so that an export ends with a checkpoint covering every
//! entry in it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tucdesk_crypto::merkle::SignedCheckpoint;
use tucdesk_svc::sql::now_ms;

use crate::error::AuditError;
use crate::service::Audit;
use crate::store::{WriteError, checkpoints, heads};

/// Teams checkpointed per pass of the timer (the rest follow on the next pass).
pub const CHECKPOINT_TEAMS_PER_PASS: u32 = 100;
/// Longest pause between two passes of the checkpoint timer.
pub const MAX_CHECKPOINT_POLL: Duration = Duration::from_secs(5);
/// Attempts at one checkpoint when other writers keep moving the head.
const MAX_CHECKPOINT_ATTEMPTS: usize = 5;

/// Why a checkpoint was signed (the metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointTrigger {
    /// `checkpoint_every` entries were appended (inside the append transaction).
    Count,
    /// `checkpoint_interval` passed with new entries.
    Time,
    /// An export asked for the current head.
    Export,
}

impl CheckpointTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Time => "time",
            Self::Export => "export",
        }
    }
}

impl Audit {
    /// The checkpoint covering every entry of `team_id` now: signs a new one when entries
    /// were appended since the last, else returns the last. `None` when the team has no
    /// entries.
    pub async fn checkpoint_team(
        &self,
        team_id: &str,
        trigger: CheckpointTrigger,
    ) -> Result<Option<SignedCheckpoint>, AuditError> {
        for _ in 0..MAX_CHECKPOINT_ATTEMPTS {
            match self.try_checkpoint(team_id).await {
                Ok(Some((signed, true))) => {
                    self.inner.log_changed.notify_one();
                    self.inner
                        .metrics
                        .checkpoints
                        .with_label_values(&[trigger.as_str()])
                        .inc();
                    return Ok(Some(signed));
                }
                Ok(Some((signed, false))) => return Ok(Some(signed)),
                Ok(None) => return Ok(None),
                Err(WriteError::Conflict) => {}
                Err(WriteError::Failed(err)) => return Err(err),
            }
        }
        // The head kept moving (a busy team): the count-triggered checkpoints cover it.
        checkpoints::latest(&self.inner.db, team_id).await
    }

    /// One attempt: `(checkpoint, newly signed)`.
    async fn try_checkpoint(
        &self,
        team_id: &str,
    ) -> Result<Option<(SignedCheckpoint, bool)>, WriteError> {
        let now = now_ms();
        let mut tx = self.inner.db.begin().await?;
        let Some(mut head) = heads::load_in(&mut tx, team_id).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        if head.tree_size == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        if head.tree_size == head.checkpoint_size {
            tx.rollback().await?;
            let last = checkpoints::at(&self.inner.db, team_id, head.checkpoint_size)
                .await?
                .ok_or_else(|| {
                    AuditError::internal("the head names a checkpoint that is missing", team_id)
                })?;
            return Ok(Some((last, false)));
        }
        let expected = (head.tree_size, head.checkpoint_size);
        let signed = self.sign_checkpoint(&head, now)?;
        checkpoints::insert(&mut tx, &signed).await?;
        head.checkpoint_size = head.tree_size;
        head.checkpoint_at_ms = now;
        heads::save(&mut tx, &head, Some(expected), now).await?;
        tx.commit().await?;
        Ok(Some((signed, true)))
    }

    /// Signs a checkpoint for every team whose last one is older than the interval and that
    /// has entries since, every poll, until `stop`.
    pub async fn run_checkpointer(&self, stop: CancellationToken) {
        let interval = self.inner.config.checkpoint_interval;
        let poll = (interval / 4).clamp(Duration::from_millis(50), MAX_CHECKPOINT_POLL);
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(err) = self.checkpoint_due(interval).await {
                tracing::warn!(error = %err, "checkpoint pass failed; retrying on the next tick");
            }
        }
    }

    /// One pass of the checkpoint timer.
    pub async fn checkpoint_due(&self, interval: Duration) -> Result<(), AuditError> {
        let now = now_ms();
        let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        let due = heads::due_for_checkpoint(
            &self.inner.db,
            now.saturating_sub(interval_ms),
            CHECKPOINT_TEAMS_PER_PASS,
        )
        .await?;
        for team in due {
            self.checkpoint_team(&team, CheckpointTrigger::Time).await?;
        }
        let age = heads::oldest_unchecked(&self.inner.db)
            .await?
            .map_or(0, |at| now.saturating_sub(at) / 1000);
        self.inner.metrics.checkpoint_age_seconds.set(age);
        Ok(())
    }
}
