//! The viewer's end of a shell session that survives path drops (docs/networking.md,
//! "Session resume").
//!
//! When the path fails without a `Close` from the agent, the viewer asks rendezvous for fresh
//! tickets (RenewConnectivity, which also wakes the agent), connects a new pipe over any
//! path (`auto` order, whatever `--path` forced first), re-runs the key exchange on it with
//! fresh ephemeral keys, checked against the agent's pin, and sends `Resume` with the last
//! output sequence it showed. Output the agent replays that was already shown is skipped, so
//! nothing appears twice; output is acknowledged as it is shown, so the agent can free it.

use std::time::Duration;

use tucdesk_crypto::PublicKey;
use tucdesk_crypto::handshake::resume::ResumeContext;
use tucdesk_proto::v1::{
    CloseReason, Frame, Output, OutputAck, Path, Ping, RenewConnectivityRequest, Resume, frame,
};
use tucdesk_transport::{ChannelError, Established};

use crate::api::{Api, ApiError};
use crate::open::{Opened, SessionSpec};

/// Acknowledge output after this many frames or bytes, whichever comes first.
const ACK_EVERY_FRAMES: u32 = 16;
const ACK_EVERY_BYTES: usize = 256 * 1024;
/// With nothing from the agent for this long, the viewer pings it (the agent answers).
pub const KEEPALIVE: Duration = Duration::from_secs(10);
/// With nothing from the agent for this long, the path is taken for dead and resumed: a path
/// can die without a close (a NAT mapping or a relay host gone), and TCP would not notice
/// while nothing is sent.
pub const DEAD_AFTER: Duration = Duration::from_secs(30);
/// First pause between resume attempts; doubles up to the maximum.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// What came from the agent.
#[derive(Debug)]
pub enum Received {
    Frame(frame::Kind),
    /// The path failed without a `Close`: call [`ShellSession::resume`].
    Dropped(String),
    /// The agent (or something on the path) broke the protocol: the session is over.
    Failed(ChannelError),
}

/// Why a resume gave up.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("the session could not be resumed within {0} s (last attempt: {1})")]
    Timeout(u64, String),
    #[error("the session cannot be resumed: {0}")]
    Refused(String),
}

/// A shell session with its current channel and what resuming it needs.
pub struct ShellSession<'a> {
    api: &'a mut Api,
    spec: SessionSpec,
    context: ResumeContext,
    channel: Established,
    path: Path,
    epoch: u32,
    /// The highest output sequence shown.
    last_seq: u64,
    unacked_frames: u32,
    unacked_bytes: usize,
    earlier_in: u64,
    earlier_out: u64,
    grace: Duration,
    /// When the agent was last heard from (any frame).
    last_heard: tokio::time::Instant,
    pings: u64,
    notice: Box<dyn Fn(&str) + Send + 'a>,
}

impl std::fmt::Debug for ShellSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellSession")
            .field("session_id", &self.context.session_id)
            .field("path", &self.path)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl<'a> ShellSession<'a> {
    /// Wraps an opened shell session. `grace` bounds how long a resume may try; `notice`
    /// tells the user about drops and resumes.
    pub fn new(
        api: &'a mut Api,
        opened: Opened,
        spec: &SessionSpec,
        grace: Duration,
        notice: impl Fn(&str) + Send + 'a,
    ) -> Result<Self, ApiError> {
        let agent_key = PublicKey::from_agent_id(&opened.agent.agent_id)
            .map_err(|_| ApiError::Refused("the agent id is not a key".into()))?;
        let context = ResumeContext {
            session_id: opened.session_id,
            // The key open() checked against the pin.
            agent_key,
            operator_key: api.device.public_key(),
        };
        Ok(Self {
            api,
            spec: SessionSpec {
                // A resume takes whatever path works, whatever the first one was.
                path: Path::Unspecified,
                ..spec.clone()
            },
            context,
            path: opened.path,
            channel: opened.channel,
            epoch: 0,
            last_seq: 0,
            unacked_frames: 0,
            unacked_bytes: 0,
            earlier_in: 0,
            earlier_out: 0,
            grace,
            last_heard: tokio::time::Instant::now(),
            pings: 0,
            notice: Box::new(notice),
        })
    }

    pub fn session_id(&self) -> &str {
        &self.context.session_id
    }

    /// The path the session runs over now.
    pub fn path(&self) -> Path {
        self.path
    }

    /// Sealed bytes sent to the agent over every path.
    pub fn bytes_to_agent(&self) -> u64 {
        self.earlier_out + self.channel.sender.bytes()
    }

    /// Sealed bytes received from the agent over every path.
    pub fn bytes_to_operator(&self) -> u64 {
        self.earlier_in + self.channel.receiver.bytes()
    }

    /// The API the session was opened with (reports at the end).
    pub fn api(&mut self) -> &mut Api {
        self.api
    }

    /// The next frame from the agent. Cancel-safe (nothing is consumed unless returned).
    pub async fn recv(&mut self) -> Received {
        loop {
            match self.channel.receiver.recv().await {
                Ok(Some(Frame { kind: Some(kind) })) => {
                    self.last_heard = tokio::time::Instant::now();
                    return Received::Frame(kind);
                }
                Ok(Some(Frame { kind: None })) => self.last_heard = tokio::time::Instant::now(),
                Ok(None) => return Received::Dropped("the path closed".into()),
                Err(ChannelError::Pipe(err)) => return Received::Dropped(err.to_string()),
                Err(err) => return Received::Failed(err),
            }
        }
    }

    /// Whether `output` is new (not a replay of something shown); counts it for the next
    /// acknowledgement.
    pub fn fresh(&mut self, output: &Output) -> bool {
        if output.seq != 0 && output.seq <= self.last_seq {
            return false;
        }
        self.last_seq = self.last_seq.max(output.seq);
        self.unacked_frames += 1;
        self.unacked_bytes += output.data.len();
        true
    }

    /// Acknowledges shown output when enough has accumulated.
    pub async fn acknowledge(&mut self) -> Result<(), ResumeError> {
        if self.unacked_frames < ACK_EVERY_FRAMES && self.unacked_bytes < ACK_EVERY_BYTES {
            return Ok(());
        }
        self.unacked_frames = 0;
        self.unacked_bytes = 0;
        let ack = Frame {
            kind: Some(frame::Kind::OutputAck(OutputAck { seq: self.last_seq })),
        };
        self.send(&ack).await
    }

    /// Sends a frame, resuming the session first if the path has failed (the frame then goes
    /// on the new path).
    pub async fn send(&mut self, frame: &Frame) -> Result<(), ResumeError> {
        loop {
            match self.channel.sender.send(frame).await {
                Ok(()) => return Ok(()),
                Err(ChannelError::Pipe(err)) => self.resume(&err.to_string()).await?,
                Err(err) => return Err(ResumeError::Refused(err.to_string())),
            }
        }
    }

    /// Keeps a quiet path checked: pings the agent after [`KEEPALIVE`] of silence and resumes
    /// the session after [`DEAD_AFTER`]. Call it every few seconds.
    pub async fn keep_alive(&mut self) -> Result<(), ResumeError> {
        let silent = self.last_heard.elapsed();
        if silent >= DEAD_AFTER {
            return self
                .resume(&format!(
                    "no answer from the agent for {} s",
                    silent.as_secs()
                ))
                .await;
        }
        if silent >= KEEPALIVE {
            self.pings += 1;
            let ping = Frame {
                kind: Some(frame::Kind::Ping(Ping {
                    nonce: self.pings.to_be_bytes().to_vec(),
                })),
            };
            self.send(&ping).await?;
        }
        Ok(())
    }

    /// Ends the session from this side.
    pub async fn close(&mut self, reason: CloseReason, message: &str) {
        self.channel.sender.close(reason, message).await;
    }

    /// Reconnects after a drop: fresh tickets, a new path, a new key exchange, then `Resume`.
    /// Retries until the grace period runs out or rendezvous says the session is over.
    pub async fn resume(&mut self, why: &str) -> Result<(), ResumeError> {
        (self.notice)(&format!(
            "the connection dropped ({why}); resuming the session…"
        ));
        let deadline = tokio::time::Instant::now() + self.grace;
        let mut pause = FIRST_RETRY;
        let mut last_error = why.to_owned();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(ResumeError::Timeout(self.grace.as_secs(), last_error));
            }
            last_error = match tokio::time::timeout(left, self.attempt()).await {
                Ok(Ok(channel)) => {
                    self.switch(channel);
                    self.last_heard = tokio::time::Instant::now();
                    let resume = Frame {
                        kind: Some(frame::Kind::Resume(Resume {
                            last_output_seq: self.last_seq,
                        })),
                    };
                    match self.channel.sender.send(&resume).await {
                        Ok(()) => {
                            (self.notice)(&format!(
                                "resumed via {}",
                                tucdesk_transport::path_name(self.path)
                            ));
                            return Ok(());
                        }
                        Err(err) => err.to_string(),
                    }
                }
                Ok(Err(Attempt::Fatal(why))) => return Err(ResumeError::Refused(why)),
                Ok(Err(Attempt::Retry(why))) => why,
                Err(_) => "timed out".to_owned(),
            };
            tokio::time::sleep(
                pause.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
            )
            .await;
            pause = (pause * 2).min(MAX_RETRY);
        }
    }

    fn switch(&mut self, channel: Established) {
        let old = std::mem::replace(&mut self.channel, channel);
        self.earlier_in += old.receiver.bytes();
        self.earlier_out += old.sender.bytes();
        self.path = self.channel.sender.path();
        tokio::spawn(old.sender.abandon());
    }

    async fn attempt(&mut self) -> Result<Established, Attempt> {
        let request = self
            .api
            .request(RenewConnectivityRequest {
                session_id: self.context.session_id.clone(),
                path: Path::Unspecified as i32,
            })
            .await
            .map_err(|err| Attempt::Retry(err.to_string()))?;
        let connectivity = self
            .api
            .rendezvous()
            .renew_connectivity(request)
            .await
            .map_err(|status| match status.code() {
                // The session ended (the agent gave up or an admin ended it), is not ours, or
                // renewals ran out: retrying cannot help.
                tonic::Code::NotFound
                | tonic::Code::FailedPrecondition
                | tonic::Code::PermissionDenied
                | tonic::Code::ResourceExhausted => {
                    Attempt::Fatal(ApiError::from_status(&status).to_string())
                }
                _ => Attempt::Retry(ApiError::from_status(&status).to_string()),
            })?
            .into_inner();
        self.epoch += 1;
        let session_id = self.context.session_id.clone();
        let pipe = crate::paths::connect(
            self.api,
            &session_id,
            &connectivity,
            &self.spec,
            &|_: &str| {},
        )
        .await
        .map_err(|err| Attempt::Retry(err.to_string()))?;
        tucdesk_transport::resume::offer(pipe, &self.api.device, self.context.clone(), self.epoch)
            .await
            .map_err(|err| Attempt::Retry(err.to_string()))
    }
}

enum Attempt {
    Retry(String),
    Fatal(String),
}
