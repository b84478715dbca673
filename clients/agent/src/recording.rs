//! Recording shell sessions (SPEC §7, docs/recordings.md "On the agent").
//!
//! Before answering an offer whose `RecordingConfig` asks for a recording, the agent checks it
//! can make one ([`prepare`]): the recorder URL, the team's recipients, room in the outbox, the
//! spool key and a new spool under `{state}/recordings/spool`. What it cannot do decides the
//! offer ([`decide`]): `REQUIRED` refuses with `RECORDING_UNAVAILABLE`, `ON` goes on
//! unrecorded with a warning.
//!
//! While the shell runs, its output and resizes go to a recorder task through a bounded queue
//! ([`ShellRecorder`]); the task writes the encrypted spool on the blocking pool and ticks it
//! about once a second, so the session never waits on the disk for long. When the spool fails
//! mid-session: `REQUIRED` ends the session, `ON` stops recording ([`on_lost`]).
//!
//! At the end, [`ActiveRecording::finish`] writes `{state}/recordings/outbox/{session}.cast.age`
//! and the signed manifest beside it, and wakes the uploader ([`crate::upload`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tucdesk_crypto::Identity;
use tucdesk_proto::v1::{Offer, RecordingConfig, RecordingMode, RejectReason, SessionKind};
use tucdesk_recording::{CastHeader, Spool, SpoolMeta};

use crate::offer::{Refusal, VerifiedOffer};
use crate::upload::{self, Ticket};

/// Under the state directory.
pub const RECORDINGS_DIR: &str = "recordings";
const SPOOL_DIR: &str = "spool";
const OUTBOX_DIR: &str = "outbox";
/// The spool key (age X25519 identity, 0600): protects in-flight sessions only.
const SPOOL_KEY_FILE: &str = "spool.key";
/// Events queued between a shell and its recorder task (each at most one 32 KiB output chunk).
const EVENT_QUEUE: usize = 64;
/// Longest a shell waits for its recorder to take an event; longer counts as a failed spool.
const EVENT_SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the recorder task lets the spool seal an old segment.
const TICK_INTERVAL: Duration = Duration::from_secs(1);
/// Most recordings waiting in the outbox; beyond it new sessions cannot be recorded.
pub const MAX_OUTBOX_RECORDINGS: usize = 256;
/// Most bytes waiting in the outbox.
pub const MAX_OUTBOX_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// Longest recorder URL (RecordingConfig).
const MAX_RECORDER_URL_LEN: usize = 512;

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Where recordings live on this host, and the uploader's wake-up.
#[derive(Debug, Clone)]
pub struct Recordings {
    root: PathBuf,
    /// Extra CA for an https:// recorder with a private CA (the enrollment's).
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) wake: Arc<Notify>,
}

impl Recordings {
    /// Recordings under `root` (normally `{state}/recordings`).
    pub fn new(root: PathBuf, ca_file: Option<PathBuf>) -> Self {
        Self {
            root,
            ca_file,
            wake: Arc::default(),
        }
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.root.join(SPOOL_DIR)
    }

    pub fn outbox_dir(&self) -> PathBuf {
        self.root.join(OUTBOX_DIR)
    }

    pub(crate) fn spool_key(&self) -> PathBuf {
        self.root.join(SPOOL_KEY_FILE)
    }
}

/// What the offer asks for this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Off,
    On,
    Required,
}

/// Only shells are recorded (exec sessions have their own audited command and exit status).
pub fn wanted(config: Option<&RecordingConfig>, kind: SessionKind) -> Want {
    if kind != SessionKind::Shell {
        return Want::Off;
    }
    match config.map(|c| RecordingMode::try_from(c.mode)) {
        Some(Ok(RecordingMode::On)) => Want::On,
        Some(Ok(RecordingMode::Required)) => Want::Required,
        _ => Want::Off,
    }
}

/// Decides an offer from what it asks and whether a recording can be made (`ready` runs only
/// when one is asked for): `Ok(Some)` record, `Ok(None)` go on unrecorded, `Err` refuse.
pub fn decide<T>(
    want: Want,
    ready: impl FnOnce() -> Result<T, String>,
) -> Result<Option<T>, Refusal> {
    if want == Want::Off {
        return Ok(None);
    }
    match ready() {
        Ok(ready) => Ok(Some(ready)),
        Err(why) if want == Want::Required => Err(Refusal::new(
            RejectReason::RecordingUnavailable,
            format!("this team requires session recording and this host cannot record: {why}"),
        )),
        Err(why) => {
            tracing::warn!(why = %why, "this session will not be recorded");
            Ok(None)
        }
    }
}

/// What a shell does when its recording is lost mid-session: `Err` ends the session with that
/// message (`REQUIRED`), `Ok` goes on unrecorded (`ON`).
pub fn on_lost(required: bool) -> Result<(), String> {
    if required {
        Err("the session can no longer be recorded, and this team requires recording".into())
    } else {
        tracing::warn!("the session recording failed; the session goes on unrecorded");
        Ok(())
    }
}

/// What a recording needs to know of its session.
#[derive(Debug, Clone)]
struct SessionFacts {
    session_id: String,
    kind: SessionKind,
    operator_user_id: String,
    operator_display: String,
    initial_size: Option<tucdesk_proto::v1::TerminalSize>,
}

impl SessionFacts {
    fn of(verified: &VerifiedOffer) -> Self {
        let operator = &verified.operator;
        Self {
            session_id: verified.session_id.clone(),
            kind: verified.kind,
            operator_user_id: operator.user_id.clone(),
            operator_display: if operator.display_name.is_empty() {
                operator.email.clone()
            } else {
                operator.display_name.clone()
            },
            initial_size: verified.initial_size,
        }
    }
}

/// Checks the offer's recording config and starts a spool (blocking: run off the runtime).
fn start_spool(
    recordings: &Recordings,
    identity: &Arc<Identity>,
    team_id: &str,
    config: &RecordingConfig,
    verified: &SessionFacts,
) -> Result<ActiveRecording, String> {
    let url = config.recorder_url.as_str();
    if url.is_empty() {
        return Err("the deployment has no recorder configured".into());
    }
    if url.len() > MAX_RECORDER_URL_LEN {
        return Err("the recorder URL is too long".into());
    }
    tucdesk_recording::keys::parse_recipients(&config.age_recipients)
        .map_err(|err| format!("the team's recording recipients: {err}"))?;
    let (count, bytes) = upload::outbox_usage(&recordings.outbox_dir())
        .map_err(|err| format!("the recordings outbox: {err}"))?;
    if count >= MAX_OUTBOX_RECORDINGS || bytes >= MAX_OUTBOX_BYTES {
        return Err(format!(
            "{count} recordings ({bytes} bytes) are still waiting for upload"
        ));
    }
    let (spool_identity, spool_recipient) =
        tucdesk_recording::keys::load_or_create_identity(&recordings.spool_key())
            .map_err(|err| format!("the spool key: {err}"))?;
    let started_at_ms = now_ms();
    let meta = SpoolMeta {
        session_id: verified.session_id.clone(),
        agent_id: identity.agent_id(),
        team_id: team_id.to_owned(),
        operator_user_id: clip(&verified.operator_user_id),
        operator_display: clip(&verified.operator_display),
        kind: verified.kind as i32,
        started_at_ms,
        recipients: config.age_recipients.clone(),
    };
    let (cols, rows) = verified
        .initial_size
        .as_ref()
        .map_or((80, 24), |s| (s.cols, s.rows));
    let header = CastHeader {
        width: u16::try_from(cols.clamp(1, 1000)).unwrap_or(80),
        height: u16::try_from(rows.clamp(1, 1000)).unwrap_or(24),
        timestamp: started_at_ms / 1000,
        term: Some("xterm-256color".into()),
        shell: std::env::var("SHELL")
            .ok()
            .filter(|s| s.len() <= tucdesk_recording::cast::MAX_ENV_VALUE_LEN),
    };
    std::fs::create_dir_all(recordings.outbox_dir())
        .map_err(|err| format!("creating the recordings outbox: {err}"))?;
    let spool = Spool::create(&recordings.spool_dir(), meta, &spool_recipient, &header)
        .map_err(|err| format!("creating the spool: {err}"))?;
    let ticket = Ticket {
        recorder_url: url.to_owned(),
    };
    if let Err(err) = upload::write_ticket(&recordings.outbox_dir(), &verified.session_id, &ticket)
    {
        let _ = tucdesk_recording::spool::remove_spool(spool.dir());
        return Err(format!("writing to the recordings outbox: {err}"));
    }
    Ok(ActiveRecording {
        session_id: verified.session_id.clone(),
        spool: Some(spool),
        spool_identity,
        identity: identity.clone(),
        required: false,
        recordings: recordings.clone(),
        started: Instant::now(),
    })
}

fn clip(text: &str) -> String {
    let mut end = text
        .len()
        .min(tucdesk_recording::manifest::MAX_OPERATOR_FIELD_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Decides whether and how the offer's session is recorded, before the agent answers.
pub async fn prepare(
    recordings: Option<&Recordings>,
    identity: &Arc<Identity>,
    team_id: &str,
    offer: &Offer,
    verified: &VerifiedOffer,
) -> Result<Option<ActiveRecording>, Refusal> {
    let want = wanted(offer.recording.as_ref(), verified.kind);
    if want == Want::Off {
        return Ok(None);
    }
    let Some(recordings) = recordings else {
        return decide(want, || {
            Err::<ActiveRecording, _>("this agent keeps no recordings directory".to_owned())
        });
    };
    let config = offer.recording.clone().unwrap_or_default();
    // The URL is checked like every client checks one (plain http only to loopback).
    let url_ok = if config.recorder_url.is_empty() {
        Err("the deployment has no recorder configured".to_owned())
    } else {
        tucdesk_transport::rpc::channel(&config.recorder_url, recordings.ca_file.as_deref(), true)
            .map(drop)
            .map_err(|err| format!("the recorder URL: {err}"))
    };
    let (recordings_, identity_, team_id_, verified_) = (
        recordings.clone(),
        identity.clone(),
        team_id.to_owned(),
        SessionFacts::of(verified),
    );
    let ready = match url_ok {
        Ok(()) => tokio::task::spawn_blocking(move || {
            start_spool(&recordings_, &identity_, &team_id_, &config, &verified_)
        })
        .await
        .unwrap_or_else(|_| Err("the spool task failed".into())),
        Err(why) => Err(why),
    };
    let decided = decide(want, || ready);
    if let Ok(Some(_)) = &decided {
        tracing::info!(session_id = %verified.session_id, required = want == Want::Required, "recording the session");
    }
    decided.map(|active| {
        active.map(|mut active| {
            active.required = want == Want::Required;
            active
        })
    })
}

/// A recording in progress, owned by the session until it ends.
pub struct ActiveRecording {
    session_id: String,
    spool: Option<Spool>,
    spool_identity: age::x25519::Identity,
    /// The agent's identity, which signs the manifest.
    identity: Arc<Identity>,
    required: bool,
    recordings: Recordings,
    started: Instant,
}

impl std::fmt::Debug for ActiveRecording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveRecording")
            .field("session_id", &self.session_id)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

/// One thing the terminal did, at its time since the recording started.
#[derive(Debug)]
enum Event {
    Output(Duration, Vec<u8>),
    Resize(Duration, u16, u16),
}

/// The recorder task, once started: the shell's end of its queue and the task itself.
pub struct Running {
    task: tokio::task::JoinHandle<Result<Spool, String>>,
    recording: ActiveRecording,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.recording.fmt(f)
    }
}

impl ActiveRecording {
    /// Starts the recorder task; returns the shell's handle.
    pub fn start(mut self) -> (Running, ShellRecorder) {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let spool = self.spool.take();
        let started = self.started;
        let task = tokio::spawn(async move {
            match spool {
                Some(spool) => record(spool, rx, started).await,
                None => Err("no spool".into()),
            }
        });
        let handle = ShellRecorder {
            tx: Some(tx),
            required: self.required,
            started: self.started,
        };
        (
            Running {
                task,
                recording: self,
            },
            handle,
        )
    }

    /// The session never ran: removes the spool and the outbox ticket.
    pub async fn discard(mut self) {
        let spool = self.spool.take();
        let (outbox, session_id) = (self.recordings.outbox_dir(), self.session_id.clone());
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(spool) = spool {
                let _ = tucdesk_recording::spool::remove_spool(spool.dir());
            }
            upload::remove_entry(&outbox, &session_id);
        })
        .await;
    }
}

/// Runs one spool: events as they come, a tick every second; each disk write on the blocking
/// pool. Ends with the spool when the shell's handle is dropped, or with the error (dropping
/// the queue, which the shell notices).
async fn record(
    mut spool: Spool,
    mut rx: mpsc::Receiver<Event>,
    started: Instant,
) -> Result<Spool, String> {
    let mut tick = tokio::time::interval(TICK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            event = rx.recv() => match event {
                Some(event) => Some(event),
                None => return Ok(spool),
            },
            _ = tick.tick() => None,
        };
        let elapsed = started.elapsed();
        let (back, result) = tokio::task::spawn_blocking(move || {
            let result = match event {
                Some(Event::Output(at, data)) => spool.output(at, &data),
                Some(Event::Resize(at, cols, rows)) => spool.resize(at, cols, rows),
                None => spool.tick(elapsed),
            };
            (spool, result)
        })
        .await
        .map_err(|_| "the spool task failed".to_owned())?;
        spool = back;
        if let Err(err) = result {
            let dir = spool.dir().to_path_buf();
            drop(rx);
            let _ =
                tokio::task::spawn_blocking(move || tucdesk_recording::spool::remove_spool(&dir))
                    .await;
            return Err(err.to_string());
        }
    }
}

/// The shell's side of a recording: output and resizes, never waiting long.
#[derive(Debug)]
pub struct ShellRecorder {
    tx: Option<mpsc::Sender<Event>>,
    required: bool,
    started: Instant,
}

impl ShellRecorder {
    /// Records nothing.
    pub fn inactive() -> Self {
        Self {
            tx: None,
            required: false,
            started: Instant::now(),
        }
    }

    pub fn is_active(&self) -> bool {
        self.tx.is_some()
    }

    async fn send(&mut self, event: Event) -> Result<(), String> {
        let Some(tx) = &self.tx else { return Ok(()) };
        match tokio::time::timeout(EVENT_SEND_TIMEOUT, tx.send(event)).await {
            Ok(Ok(())) => Ok(()),
            _ => self.lost_now(),
        }
    }

    fn lost_now(&mut self) -> Result<(), String> {
        self.tx = None;
        on_lost(self.required)
    }

    /// Terminal output; `Err` (with the close message) when the session must end.
    pub async fn output(&mut self, data: &[u8]) -> Result<(), String> {
        let at = self.started.elapsed();
        self.send(Event::Output(at, data.to_vec())).await
    }

    /// A terminal resize (already clamped to the PTY's bounds).
    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<(), String> {
        let at = self.started.elapsed();
        self.send(Event::Resize(at, cols, rows)).await
    }

    /// Resolves when the recorder task has stopped (its spool failed); pending when inactive.
    pub async fn lost(&self) {
        match &self.tx {
            Some(tx) => tx.closed().await,
            None => std::future::pending().await,
        }
    }

    /// After [`Self::lost`]: `Err` with the close message when the session must end.
    pub fn on_lost(&mut self) -> Result<(), String> {
        self.lost_now()
    }
}

impl Running {
    /// Ends the recording after the session (the shell's handle must be dropped first):
    /// finishes the spool into the outbox with its signed manifest and wakes the uploader.
    /// True when a recording was made.
    pub async fn finish(self) -> bool {
        let Running { task, recording } = self;
        let session_id = recording.session_id.clone();
        let outbox = recording.recordings.outbox_dir();
        let spool = match task.await {
            Ok(Ok(spool)) => spool,
            Ok(Err(why)) => {
                tracing::warn!(session_id, why = %why, "the session recording was lost");
                upload::remove_entry(&outbox, &session_id);
                return false;
            }
            Err(_) => {
                tracing::warn!(session_id, "the session recorder stopped");
                upload::remove_entry(&outbox, &session_id);
                return false;
            }
        };
        let identity = recording.identity.clone();
        let spool_identity = recording.spool_identity.clone();
        let done = tokio::task::spawn_blocking(move || {
            let path = upload::cast_path(&outbox, spool.meta().session_id.as_str());
            let meta = spool.meta().clone();
            let finished = spool
                .finish(&spool_identity, &path)
                .map_err(|err| err.to_string())?;
            upload::write_manifest(&outbox, &identity, &meta, &finished, now_ms())?;
            Ok::<_, String>(finished.ciphertext_size)
        })
        .await
        .unwrap_or_else(|_| Err("the finishing task failed".into()));
        match done {
            Ok(size) => {
                tracing::info!(
                    session_id,
                    bytes = size,
                    "session recording saved for upload"
                );
                recording.recordings.wake.notify_one();
                true
            }
            Err(why) => {
                tracing::warn!(session_id, why = %why, "finishing the session recording failed");
                upload::remove_entry(&recording.recordings.outbox_dir(), &session_id);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests;
