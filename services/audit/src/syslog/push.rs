//! The push loop: one task per replica, pushing only while it holds the `syslog` lease.
//!
//! Each pass picks the teams whose log is past their cursor (least recently pushed first),
//! reads what follows each cursor — entries in seq order, each checkpoint right after the
//! entry that completes it, checkpoints signed later before the next entries — into one
//! bounded batch, writes it, waits [`CONFIRM_DELAY`], checks that the collector has not
//! closed the connection, and only then moves the cursors. A batch whose connection broke is
//! sent again after the reconnect: at-least-once, duplicates limited to that last batch.

use std::time::Duration;

use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tucdesk_svc::sql::now_ms;

use super::SyslogUrl;
use super::message::{self, Framer};
use super::transport::{Backoff, Connection, TransportError, client_config};
use crate::error::{AuditError, StartError};
use crate::service::Audit;
use crate::store::entries::{self, EntryFilter};
use crate::store::syslog::{self as cursors, Behind, Cursor};
use crate::store::{checkpoints, db_int};

/// How often the stored log is looked at when nothing in this replica woke the pusher (other
/// replicas append too).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Teams looked at per pass (the rest follow on the next).
pub const TEAMS_PER_PASS: u32 = 100;
/// Most messages in one batch (the in-memory bound, with [`MAX_BATCH_BYTES`]).
pub const MAX_BATCH_MESSAGES: usize = 500;
/// Most bytes of framed messages in one batch.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// After a batch is written, how long the connection must stay open before the cursors move
/// (TCP syslog has no acknowledgements; a collector that died or closed usually shows by
/// then as end of stream or a reset).
pub const CONFIRM_DELAY: Duration = Duration::from_millis(200);
/// The lease row that makes one replica the pusher.
pub const LEASE_NAME: &str = "syslog";
/// How long a lease lasts without renewal (another replica takes over after it).
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// The holder renews its lease once it is this old.
pub const LEASE_RENEW_AFTER: Duration = Duration::from_secs(10);
/// How often a replica without the lease tries to take it.
pub const LEASE_RETRY: Duration = Duration::from_secs(5);

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
enum PushError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Store(#[from] AuditError),
}

impl PushError {
    fn stage(&self) -> &'static str {
        match self {
            Self::Transport(err) => err.stage(),
            Self::Store(_) => "database",
        }
    }
}

/// The configured pusher; [`SyslogPusher::run`] drives it.
pub struct SyslogPusher {
    audit: Audit,
    url: SyslogUrl,
    tls: Option<TlsConnector>,
    framer: Framer,
    /// This replica's lease holder id.
    holder: String,
}

impl std::fmt::Debug for SyslogPusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogPusher")
            .field("url", &self.url)
            .field("framer", &self.framer)
            .finish_non_exhaustive()
    }
}

impl Audit {
    /// The syslog pusher when `--syslog-url` is set (its TLS settings read now, so a bad CA
    /// file stops the start), else `None`.
    pub fn syslog_pusher(&self) -> Result<Option<SyslogPusher>, StartError> {
        let config = self.config();
        let Some(url) = config.syslog_url.clone() else {
            return Ok(None);
        };
        let tls = if url.tls {
            let config = client_config(config.syslog_ca_file.as_deref())
                .map_err(|err| StartError::Config(err.to_string()))?;
            Some(TlsConnector::from(config))
        } else {
            None
        };
        let hostname = match &config.syslog_hostname {
            Some(name) => message::sanitize_token(name, message::MAX_HOSTNAME_LEN),
            None => super::system_hostname(),
        };
        let holder = tucdesk_crypto::rng::random_array::<8>()
            .map(hex::encode)
            .map_err(|_| StartError::Config("no randomness for the syslog lease id".into()))?;
        Ok(Some(SyslogPusher {
            audit: self.clone(),
            url,
            tls,
            framer: Framer {
                format: config.syslog_format,
                facility: config.syslog_facility,
                severity: config.syslog_severity,
                hostname,
                procid: std::process::id().to_string(),
                bom: config.syslog_bom,
            },
            holder,
        }))
    }
}

/// Messages read for one write, and the cursor moves they complete.
#[derive(Default)]
struct Batch {
    frames: Vec<Vec<u8>>,
    bytes: usize,
    entries: u64,
    checkpoints: u64,
    /// `(team, cursor read, cursor after this batch)`.
    advances: Vec<(String, Cursor, Cursor)>,
}

impl Batch {
    fn full(&self) -> bool {
        self.frames.len() >= MAX_BATCH_MESSAGES || self.bytes >= MAX_BATCH_BYTES
    }

    /// Adds `frame` unless the batch is full (an empty batch takes any frame).
    fn push(&mut self, frame: Vec<u8>) -> bool {
        if !self.frames.is_empty()
            && (self.frames.len() >= MAX_BATCH_MESSAGES
                || self.bytes + frame.len() > MAX_BATCH_BYTES)
        {
            return false;
        }
        self.bytes += frame.len();
        self.frames.push(frame);
        true
    }
}

impl SyslogPusher {
    /// Pushes until `stop`, reconnecting with jittered exponential backoff; wakes on the
    /// service's appends and checkpoints, and every [`POLL_INTERVAL`].
    pub async fn run(self, stop: CancellationToken) {
        let metrics = self.audit.metrics().clone();
        tracing::info!(collector = %self.url, format = ?self.framer.format, "audit syslog push enabled");
        let mut conn: Option<Connection> = None;
        let mut backoff = Backoff::default();
        let mut renew_at: Option<Instant> = None;
        while !stop.is_cancelled() {
            match self.hold_lease(&mut renew_at).await {
                Ok(true) => {}
                Ok(false) => {
                    if let Some(conn) = conn.take() {
                        tracing::info!("another replica holds the syslog lease; stopped pushing");
                        conn.close().await;
                    }
                    metrics.syslog_connected.set(0);
                    pause(&stop, LEASE_RETRY).await;
                    continue;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "syslog lease check failed; retrying");
                    pause(&stop, LEASE_RETRY).await;
                    continue;
                }
            }
            match self.pass(&mut conn).await {
                Ok(true) => backoff.reset(),
                Ok(false) => {
                    let wake = self.audit.inner.log_changed.notified();
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = wake => {}
                        () = tokio::time::sleep(POLL_INTERVAL) => {}
                    }
                }
                Err(err) => {
                    metrics
                        .syslog_errors
                        .with_label_values(&[err.stage()])
                        .inc();
                    metrics.syslog_connected.set(0);
                    if let Some(conn) = conn.take() {
                        conn.close().await;
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        error = %err,
                        collector = %self.url,
                        retry_in = ?delay,
                        "audit syslog push failed; resending from the confirmed cursors"
                    );
                    pause(&stop, delay).await;
                }
            }
        }
        if let Some(conn) = conn.take() {
            conn.close().await;
        }
        metrics.syslog_connected.set(0);
        if renew_at.is_some()
            && let Err(err) =
                cursors::release_lease(self.audit.db(), LEASE_NAME, &self.holder).await
        {
            tracing::warn!(error = %err, "releasing the syslog lease failed; it expires by itself");
        }
    }

    /// Takes or renews the lease when due; `true` while this replica holds it.
    async fn hold_lease(&self, renew_at: &mut Option<Instant>) -> Result<bool, AuditError> {
        if renew_at.is_some_and(|at| Instant::now() < at) {
            return Ok(true);
        }
        let now = now_ms();
        let ttl = i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX);
        let held = cursors::acquire_lease(
            self.audit.db(),
            LEASE_NAME,
            &self.holder,
            now,
            now.saturating_add(ttl),
        )
        .await?;
        if held && renew_at.is_none() {
            tracing::info!("this replica holds the syslog lease and pushes");
        }
        *renew_at = held.then(|| Instant::now() + LEASE_RENEW_AFTER);
        Ok(held)
    }

    /// One pass: `true` when a batch was sent and confirmed (more may be waiting).
    async fn pass(&self, conn: &mut Option<Connection>) -> Result<bool, PushError> {
        let db = self.audit.db();
        let metrics = self.audit.metrics();
        let lag = cursors::lag(db).await?;
        metrics
            .syslog_lag
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
        let teams = cursors::teams_behind(db, TEAMS_PER_PASS).await?;
        let mut batch = Batch::default();
        for team in &teams {
            if batch.full() {
                break;
            }
            self.collect_team(team, &mut batch).await?;
        }
        if batch.frames.is_empty() {
            return Ok(false);
        }
        // An idle connection the collector closed meanwhile is replaced without a backoff.
        if let Some(open) = conn.as_mut()
            && open.probe().await.is_err()
        {
            tracing::info!(collector = %self.url, "the syslog collector closed the idle connection; reconnecting");
            *conn = None;
        }
        let open = match conn {
            Some(open) => open,
            None => {
                let opened = Connection::open(&self.url, self.tls.as_ref()).await?;
                tracing::info!(collector = %self.url, "audit syslog push connected");
                metrics.syslog_connected.set(1);
                conn.insert(opened)
            }
        };
        open.send(&batch.frames).await?;
        tokio::time::sleep(CONFIRM_DELAY).await;
        open.probe().await?;
        let now = now_ms();
        for (team, expected, to) in &batch.advances {
            if !cursors::advance(db, team, *expected, *to, now).await? {
                tracing::debug!(team, "another replica moved the syslog cursor first");
            }
        }
        metrics
            .syslog_pushed
            .with_label_values(&["entry"])
            .inc_by(batch.entries);
        metrics
            .syslog_pushed
            .with_label_values(&["checkpoint"])
            .inc_by(batch.checkpoints);
        metrics
            .syslog_lag
            .set(i64::try_from(lag.saturating_sub(batch.entries)).unwrap_or(i64::MAX));
        Ok(true)
    }

    /// Adds what follows `team`'s cursor to `batch`, as far as it has room.
    async fn collect_team(&self, team: &Behind, batch: &mut Batch) -> Result<(), AuditError> {
        let db = self.audit.db();
        let room = MAX_BATCH_MESSAGES.saturating_sub(batch.frames.len()).max(1);
        let limit = u32::try_from(room).unwrap_or(u32::MAX);
        let start = team.cursor;
        let pending = checkpoints::list(db, &team.team_id, start.checkpoint_size, 0, limit).await?;
        // With a full page of checkpoints, entries past the last one wait, so that none of
        // the checkpoints not read yet could be sent after entries it covers.
        let mut upto = team.tree_size;
        if pending.len() >= room
            && let Some(last) = pending.last()
        {
            upto = upto.min(last.checkpoint.tree_size);
        }
        let rows = if start.last_seq < upto {
            let filter = EntryFilter {
                from_seq: db_int(start.last_seq.saturating_add(1))?,
                to_seq: db_int(upto)?,
                ..EntryFilter::default()
            };
            entries::query(db, &team.team_id, &filter, limit, false).await?
        } else {
            Vec::new()
        };
        let mut pending = pending.into_iter().peekable();
        let mut to = start;
        // Checkpoints signed after the entries they cover were pushed go first.
        'fill: {
            while let Some(cp) = pending.next_if(|cp| cp.checkpoint.tree_size <= to.last_seq) {
                if !batch.push(self.framer.checkpoint(&cp).map_err(encoding)?) {
                    break 'fill;
                }
                to.checkpoint_size = cp.checkpoint.tree_size;
                batch.checkpoints += 1;
            }
            for row in rows {
                let (entry, _key_id) = row.into_entry()?;
                if entry.seq != to.last_seq.saturating_add(1) {
                    return Err(AuditError::internal(
                        "audit chain has a gap; syslog push halted",
                        format!(
                            "team {}: expected seq {}, found {}",
                            team.team_id,
                            to.last_seq.saturating_add(1),
                            entry.seq
                        ),
                    ));
                }
                if !batch.push(self.framer.entry(&entry).map_err(encoding)?) {
                    break 'fill;
                }
                to.last_seq = entry.seq;
                batch.entries += 1;
                while let Some(cp) = pending.next_if(|cp| cp.checkpoint.tree_size <= to.last_seq) {
                    if !batch.push(self.framer.checkpoint(&cp).map_err(encoding)?) {
                        break 'fill;
                    }
                    to.checkpoint_size = cp.checkpoint.tree_size;
                    batch.checkpoints += 1;
                }
            }
        }
        if to != start {
            batch.advances.push((team.team_id.clone(), start, to));
        }
        Ok(())
    }
}

fn encoding(err: serde_json::Error) -> AuditError {
    AuditError::internal("encoding a syslog message", err)
}

/// Sleeps `delay` unless `stop` comes first.
async fn pause(stop: &CancellationToken, delay: Duration) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(delay) => {}
    }
}
