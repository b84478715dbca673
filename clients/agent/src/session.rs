//! One accepted session from the relay dial to the final report: the sealed channel, the shell
//! or command, limits (idle, duration, input rate), and what rendezvous is told (start with the
//! path, end with bytes and reason; never content).

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tucdesk_crypto::SessionKeys;
use tucdesk_proto::v1::agent_message::Kind as AgentKind;
use tucdesk_proto::v1::{
    CloseReason, ConnectivityInfo, Path, SessionEvent, SessionEventKind, SessionKind,
    SessionReport, Side,
};
use tucdesk_transport::{ChannelError, DialOptions, SessionSender};

use crate::link::LinkHandle;
use crate::offer::VerifiedOffer;

/// How the session ended, for the report.
#[derive(Debug)]
pub struct Ended {
    pub reason: CloseReason,
    pub message: String,
}

impl Ended {
    pub fn closed(reason: CloseReason) -> Self {
        Self {
            reason,
            message: String::new(),
        }
    }
    pub fn by_operator() -> Self {
        Self {
            reason: CloseReason::Normal,
            message: "closed by the operator".into(),
        }
    }
    pub fn gone() -> Self {
        Self {
            reason: CloseReason::Unspecified,
            message: "the connection ended".into(),
        }
    }
    pub fn failed(message: String) -> Self {
        Self {
            reason: CloseReason::Unspecified,
            message,
        }
    }
    pub fn transport(err: ChannelError) -> Self {
        Self::failed(err.to_string())
    }
}

/// Tells the operator why the session ends (best effort) and closes it.
pub async fn protocol_error(sender: &mut SessionSender, reason: CloseReason, why: &str) -> Ended {
    tracing::warn!(reason = reason.as_str_name(), why, "closing a session");
    sender.close(reason, why).await;
    Ended {
        reason,
        message: why.to_owned(),
    }
}

/// Token bucket on input bytes (keystrokes, pastes, stdin) from the operator.
#[derive(Debug)]
pub struct InputBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl InputBucket {
    /// Takes `n` bytes; false when the operator sends faster than allowed.
    pub fn take(&mut self, n: usize) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        let n = n as f64;
        if n > self.tokens {
            return false;
        }
        self.tokens -= n;
        true
    }
}

/// How long a shell waits for a resume after its path drops, unless configured.
pub const DEFAULT_RESUME_GRACE: Duration = Duration::from_secs(60);

/// Per-session limits of this host.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// No input for this long ends a shell.
    pub idle_timeout: Duration,
    pub max_duration: Duration,
    /// Input bytes per second, with a burst of `input_burst`.
    pub input_rate: u32,
    pub input_burst: u32,
    /// How long a shell whose path dropped waits for the viewer to resume it.
    pub resume_grace: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(60 * 60),
            max_duration: Duration::from_secs(12 * 60 * 60),
            input_rate: 4 * 1024 * 1024,
            input_burst: 16 * 1024 * 1024,
            resume_grace: DEFAULT_RESUME_GRACE,
        }
    }
}

impl SessionLimits {
    pub fn input_bucket(&self) -> InputBucket {
        InputBucket {
            rate: f64::from(self.input_rate),
            burst: f64::from(self.input_burst),
            tokens: f64::from(self.input_burst),
            at: Instant::now(),
        }
    }
}

/// Ends a session from outside (an admin's TerminateSession, the agent shutting down), with
/// the reason the operator is told.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    token: CancellationToken,
    reason: Arc<AtomicI32>,
}

impl Stop {
    pub fn stop(&self, reason: CloseReason) {
        let _ = self
            .reason
            .compare_exchange(0, reason as i32, Ordering::AcqRel, Ordering::Acquire);
        self.token.cancel();
    }

    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    pub fn reason(&self) -> CloseReason {
        CloseReason::try_from(self.reason.load(Ordering::Acquire))
            .ok()
            .filter(|r| *r != CloseReason::Unspecified)
            .unwrap_or(CloseReason::Terminated)
    }
}

fn report(link: &LinkHandle, session_id: &str, report: SessionReport) {
    link.send_best_effort(AgentKind::SessionEvent(SessionEvent {
        session_id: session_id.to_owned(),
        report: Some(report),
    }));
}

/// Reports that the session runs (again) over `path`: audited with it.
fn report_path(link: &LinkHandle, session_id: &str, kind: SessionEventKind, path: Path) {
    report(
        link,
        session_id,
        SessionReport {
            kind: kind as i32,
            path: path as i32,
            ..Default::default()
        },
    );
}

/// How an accepted session connects: what rendezvous offered, and the local settings.
#[derive(Debug)]
pub struct Paths {
    pub connectivity: ConnectivityInfo,
    pub dial: DialOptions,
    pub p2p: tucdesk_p2p::P2pOptions,
    pub signaling: crate::paths::LinkSignaling,
    /// Fresh tickets for resuming the session on a new path (the viewer's renewals).
    pub renewals: tokio::sync::mpsc::Receiver<ConnectivityInfo>,
}

/// Runs an accepted session: connects over the path the operator takes, confirms keys, serves
/// it, reports.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    offer: VerifiedOffer,
    identity: Arc<tucdesk_crypto::Identity>,
    keys: SessionKeys,
    mut paths: Paths,
    limits: SessionLimits,
    link: LinkHandle,
    stop: Stop,
    recording: Option<crate::recording::ActiveRecording>,
) {
    let started = Instant::now();
    let session_id = offer.session_id.clone();
    let channel = async {
        let pipe = crate::paths::connect(
            &session_id,
            paths.connectivity.clone(),
            &paths.dial,
            &paths.p2p,
            &mut paths.signaling,
        )
        .await?;
        tucdesk_transport::establish(pipe, keys.into_agent_channel(), Side::Agent, None)
            .await
            .map_err(|err| err.to_string())
    };
    let established = tokio::select! {
        established = channel => established,
        () = stop.cancelled() => Err("stopped before the operator joined".to_owned()),
    };
    let mut established = match established {
        Ok(established) => established,
        Err(message) => {
            tracing::warn!(session_id, error = %message, "session did not start");
            if let Some(recording) = recording {
                recording.discard().await;
            }
            report(
                &link,
                &session_id,
                SessionReport {
                    kind: SessionEventKind::Ended as i32,
                    message: tucdesk_transport::ws::printable(&message),
                    duration_ms: millis(started.elapsed()),
                    ..Default::default()
                },
            );
            return;
        }
    };
    let path = established.sender.path();
    tracing::info!(
        session_id,
        kind = offer.kind.as_str_name(),
        operator = %offer.operator.email,
        path = tucdesk_transport::path_name(path),
        "session started"
    );
    report_path(&link, &session_id, SessionEventKind::Started, path);
    let (running, mut recorder) = match recording {
        Some(recording) => {
            let (running, recorder) = recording.start();
            (Some(running), recorder)
        }
        None => (None, crate::recording::ShellRecorder::inactive()),
    };
    let (ended, path, bytes_in, bytes_out) = match (offer.kind, &offer.exec) {
        (SessionKind::Exec, Some(spec)) => {
            let (sender, receiver) = (&mut established.sender, &mut established.receiver);
            let ended = crate::exec::run(sender, receiver, spec, &limits, &stop).await;
            (ended, path, receiver.bytes(), sender.bytes())
        }
        _ => {
            // A shell outlives its paths: resume attempts run beside it for its lifetime.
            let (resumed_tx, resumed) = tokio::sync::mpsc::channel(1);
            let acceptor = crate::resume::Acceptor {
                identity,
                context: tucdesk_crypto::handshake::resume::ResumeContext {
                    session_id: session_id.clone(),
                    agent_key: offer.handshake.agent_key,
                    operator_key: offer.handshake.operator_key,
                },
                dial: paths.dial,
                p2p: paths.p2p,
                signaling: paths.signaling,
                renewals: paths.renewals,
            };
            let acceptor = tokio::spawn(acceptor.run(resumed_tx));
            let path_link = link.clone();
            let path_session = session_id.clone();
            let mut conn = crate::resume::Resumable::new(
                established,
                resumed,
                limits.resume_grace,
                Box::new(move |path| {
                    report_path(
                        &path_link,
                        &path_session,
                        SessionEventKind::PathChanged,
                        path,
                    );
                }),
            );
            let ended = crate::shell::run(
                &mut conn,
                offer.initial_size.as_ref(),
                &limits,
                &stop,
                &mut recorder,
            )
            .await;
            acceptor.abort();
            (ended, conn.path(), conn.bytes_in(), conn.bytes_out())
        }
    };
    // The recorder's queue closes with the shell's handle; then the spool is finished.
    drop(recorder);
    let recorded = match running {
        Some(running) => running.finish().await,
        None => false,
    };
    tracing::info!(
        session_id,
        reason = ended.reason.as_str_name(),
        bytes_in,
        bytes_out,
        recorded,
        "session ended"
    );
    report(
        &link,
        &session_id,
        SessionReport {
            kind: SessionEventKind::Ended as i32,
            path: path as i32,
            bytes_to_agent: bytes_in,
            bytes_to_operator: bytes_out,
            close_reason: ended.reason as i32,
            message: tucdesk_transport::ws::printable(&ended.message),
            duration_ms: millis(started.elapsed()),
            recorded,
        },
    );
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_input_bucket_refuses_a_burst_beyond_its_size() {
        let limits = SessionLimits {
            input_rate: 10,
            input_burst: 100,
            ..Default::default()
        };
        let mut bucket = limits.input_bucket();
        assert!(bucket.take(60));
        assert!(bucket.take(40));
        assert!(!bucket.take(50));
    }

    #[test]
    fn the_first_stop_reason_wins() {
        let stop = Stop::default();
        assert!(!stop.is_stopped());
        stop.stop(CloseReason::AgentShutdown);
        stop.stop(CloseReason::Terminated);
        assert!(stop.is_stopped());
        assert_eq!(stop.reason(), CloseReason::AgentShutdown);
    }
}
