//! A shell session that outlives its paths (docs/networking.md, "Session resume").
//!
//! When the path under a shell drops without a `Close`, the agent keeps the shell and its
//! output for a grace period. The viewer asks rendezvous for fresh tickets
//! (RenewConnectivity, which reaches this agent as a `ConnectivityUpdate`), both sides
//! connect a new pipe over whatever path works, and re-run the key exchange on it with fresh
//! ephemeral keys ([`tucdesk_transport::resume`]). The viewer then sends `Resume` with the
//! last output sequence it has, and the agent replays what followed from its replay buffer.
//!
//! Output is numbered for the whole session and kept until the viewer acknowledges it, so a
//! drop loses nothing: while no path is up, the buffer fills to its cap and then the shell's
//! output waits (the PTY blocks the shell) instead of being dropped. While a path is up and
//! the viewer does not acknowledge (it cannot keep up, or predates acknowledgements), the
//! oldest output is evicted and a later resume says it was truncated.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tucdesk_crypto::Identity;
use tucdesk_crypto::handshake::resume::ResumeContext;
use tucdesk_proto::v1::{CloseReason, ConnectivityInfo, Frame, Output, Path, Resumed, frame};
use tucdesk_transport::{ChannelError, DialOptions, Established};

use crate::paths::LinkSignaling;

/// Output bytes kept for replay per session.
pub const REPLAY_CAP: usize = 4 * 1024 * 1024;
/// Path renewals queued for one session's resume attempts (a newer one supersedes).
pub const RENEWAL_QUEUE: usize = 4;

/// Output frames not yet acknowledged by the viewer, oldest first.
#[derive(Debug)]
pub struct ReplayBuffer {
    frames: VecDeque<(u64, Vec<u8>)>,
    bytes: usize,
    cap: usize,
    /// The last sequence number assigned (0 = none yet).
    last_seq: u64,
}

impl ReplayBuffer {
    pub fn new(cap: usize) -> Self {
        Self {
            frames: VecDeque::new(),
            bytes: 0,
            cap,
            last_seq: 0,
        }
    }

    /// Numbers and keeps one chunk of output; returns its sequence number.
    pub fn push(&mut self, data: &[u8]) -> u64 {
        self.last_seq += 1;
        self.bytes += data.len();
        self.frames.push_back((self.last_seq, data.to_vec()));
        self.last_seq
    }

    /// The viewer has everything up to `seq`.
    pub fn ack(&mut self, seq: u64) {
        while let Some((first, data)) = self.frames.front() {
            if *first > seq {
                break;
            }
            self.bytes -= data.len();
            self.frames.pop_front();
        }
    }

    /// Drops the oldest output beyond the cap (a path is up but the viewer does not ack).
    pub fn evict_over_cap(&mut self) {
        while self.bytes > self.cap && self.frames.len() > 1 {
            if let Some((_, data)) = self.frames.pop_front() {
                self.bytes -= data.len();
            }
        }
    }

    pub fn is_full(&self) -> bool {
        self.bytes >= self.cap
    }

    /// Where output continues for a viewer that has everything up to `last`: the first
    /// sequence number to send, and whether output between them is gone.
    pub fn resume_point(&self, last: u64) -> (u64, bool) {
        let wanted = last.saturating_add(1).min(self.last_seq + 1);
        let first_kept = self
            .frames
            .front()
            .map_or(self.last_seq + 1, |(seq, _)| *seq);
        let first = wanted.max(first_kept);
        (first, first > wanted)
    }

    /// Kept output from `first` on.
    pub fn from(&self, first: u64) -> impl Iterator<Item = &(u64, Vec<u8>)> {
        self.frames.iter().filter(move |(seq, _)| *seq >= first)
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
}

/// What the session loop gets from the operator.
#[derive(Debug)]
pub enum Event {
    Frame(frame::Kind),
    /// No path came back within the grace period.
    Gone,
    /// The current path carried something that breaks the protocol: the session ends.
    Failed(ChannelError),
}

/// The agent's end of a resumable session: the current channel (if a path is up), the
/// channels resume attempts establish, and the replay buffer.
pub struct Resumable {
    current: Option<Established>,
    resumed: mpsc::Receiver<Established>,
    grace: Duration,
    /// When the session gives up waiting for a path (set while none is up).
    deadline: tokio::time::Instant,
    /// A new path is up but the viewer has not said where its output stops: output waits.
    awaiting_resume: bool,
    replay: ReplayBuffer,
    path: Path,
    /// Sealed bytes carried by channels already replaced.
    earlier_in: u64,
    earlier_out: u64,
    on_path_change: Box<dyn FnMut(Path) + Send>,
}

impl std::fmt::Debug for Resumable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumable")
            .field("connected", &self.current.is_some())
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

enum Step {
    Received(Result<Option<Frame>, ChannelError>),
    Resumed(Option<Box<Established>>),
    GaveUp,
}

impl Resumable {
    pub fn new(
        established: Established,
        resumed: mpsc::Receiver<Established>,
        grace: Duration,
        on_path_change: Box<dyn FnMut(Path) + Send>,
    ) -> Self {
        Self {
            path: established.sender.path(),
            current: Some(established),
            resumed,
            grace,
            deadline: tokio::time::Instant::now(),
            awaiting_resume: false,
            replay: ReplayBuffer::new(REPLAY_CAP),
            earlier_in: 0,
            earlier_out: 0,
            on_path_change,
        }
    }

    /// The path the session runs over (the last one, while none is up).
    pub fn path(&self) -> Path {
        self.path
    }

    /// Sealed bytes received over every path.
    pub fn bytes_in(&self) -> u64 {
        self.earlier_in + self.current.as_ref().map_or(0, |c| c.receiver.bytes())
    }

    /// Sealed bytes sent over every path.
    pub fn bytes_out(&self) -> u64 {
        self.earlier_out + self.current.as_ref().map_or(0, |c| c.sender.bytes())
    }

    /// Whether new output can be taken now. While output can flow it always can; otherwise
    /// only until the replay buffer is full, so a long outage pauses the shell, not loses.
    pub fn accepts_output(&self) -> bool {
        self.flowing() || !self.replay.is_full()
    }

    fn flowing(&self) -> bool {
        self.current.is_some() && !self.awaiting_resume
    }

    fn lost(&mut self, why: &str) {
        if let Some(old) = self.current.take() {
            tracing::info!(
                why,
                grace_secs = self.grace.as_secs(),
                "session path lost; waiting for a resume"
            );
            self.retire(old);
            self.deadline = tokio::time::Instant::now() + self.grace;
        }
    }

    fn retire(&mut self, old: Established) {
        self.earlier_in += old.receiver.bytes();
        self.earlier_out += old.sender.bytes();
        // Closed without a Close frame: the session goes on elsewhere.
        let sender = old.sender;
        tokio::spawn(async move { sender.abandon().await });
    }

    fn switch(&mut self, established: Established) {
        if let Some(old) = self.current.take() {
            self.retire(old);
        }
        let path = established.sender.path();
        tracing::info!(
            path = tucdesk_transport::path_name(path),
            "session resumed on a new path"
        );
        self.path = path;
        self.current = Some(established);
        self.awaiting_resume = true;
        (self.on_path_change)(path);
    }

    /// The next thing the operator sent, waiting through path drops for up to the grace
    /// period. Cancel-safe: state changes only after an awaited step completed.
    pub async fn next(&mut self) -> Event {
        loop {
            let step = match self.current.as_mut() {
                Some(channel) => tokio::select! {
                    biased;
                    resumed = self.resumed.recv() => Step::Resumed(resumed.map(Box::new)),
                    received = channel.receiver.recv() => Step::Received(received),
                },
                None => tokio::select! {
                    resumed = self.resumed.recv() => Step::Resumed(resumed.map(Box::new)),
                    () = tokio::time::sleep_until(self.deadline) => Step::GaveUp,
                },
            };
            match step {
                Step::Received(Ok(Some(Frame { kind: Some(kind) }))) => return Event::Frame(kind),
                Step::Received(Ok(Some(Frame { kind: None }))) => {}
                Step::Received(Ok(None)) => self.lost("the path ended"),
                Step::Received(Err(ChannelError::Pipe(err))) => self.lost(&err.to_string()),
                Step::Received(Err(err)) => return Event::Failed(err),
                Step::Resumed(Some(established)) => self.switch(*established),
                // No resume can come any more: wait out the current path, or end.
                Step::Resumed(None) if self.current.is_some() => {
                    let Some(channel) = self.current.as_mut() else {
                        continue;
                    };
                    match channel.receiver.recv().await {
                        Ok(Some(Frame { kind: Some(kind) })) => return Event::Frame(kind),
                        Ok(Some(_)) => {}
                        Ok(None) | Err(ChannelError::Pipe(_)) => return Event::Gone,
                        Err(err) => return Event::Failed(err),
                    }
                }
                Step::Resumed(None) | Step::GaveUp => return Event::Gone,
            }
        }
    }

    /// Sends `frame` on the current path if output flows; a path that fails is lost (and the
    /// frame with it, which is fine for everything but output, which is replayed).
    async fn send_now(&mut self, frame: &Frame) -> Result<(), ChannelError> {
        let Some(channel) = self.current.as_mut() else {
            return Ok(());
        };
        let step = tokio::select! {
            // A newer path replaces a stuck one (what was unsent is replayed there).
            resumed = self.resumed.recv() => Err(resumed),
            sent = channel.sender.send(frame) => Ok(sent),
        };
        match step {
            Ok(Ok(())) => Ok(()),
            Ok(Err(ChannelError::Pipe(err))) => {
                self.lost(&err.to_string());
                Ok(())
            }
            Ok(Err(err)) => Err(err),
            Err(Some(established)) => {
                self.switch(established);
                Ok(())
            }
            Err(None) => {
                // No resume can come any more; finish the send on the current path.
                match self.current.as_mut() {
                    Some(channel) => match channel.sender.send(frame).await {
                        Err(ChannelError::Pipe(err)) => {
                            self.lost(&err.to_string());
                            Ok(())
                        }
                        other => other,
                    },
                    None => Ok(()),
                }
            }
        }
    }

    /// Numbers one chunk of shell output, keeps it for replay and sends it when output flows.
    pub async fn output(&mut self, data: Vec<u8>) -> Result<(), ChannelError> {
        let seq = self.replay.push(&data);
        if !self.flowing() {
            return Ok(());
        }
        self.replay.evict_over_cap();
        let frame = Frame {
            kind: Some(frame::Kind::Output(Output { seq, data })),
        };
        self.send_now(&frame).await
    }

    /// A frame that only makes sense on the current path (Pong); dropped while none is up.
    pub async fn control(&mut self, frame: &Frame) -> Result<(), ChannelError> {
        if !self.flowing() {
            return Ok(());
        }
        self.send_now(frame).await
    }

    /// The viewer has output up to `seq`.
    pub fn ack(&mut self, seq: u64) {
        self.replay.ack(seq.min(self.replay.last_seq()));
    }

    /// Answers the viewer's `Resume`: says where output continues and replays from there.
    pub async fn resume_from(&mut self, last_output_seq: u64) -> Result<(), ChannelError> {
        self.ack(last_output_seq);
        let (first_seq, truncated) = self.replay.resume_point(last_output_seq);
        if truncated {
            tracing::warn!(
                last_output_seq,
                first_seq,
                "output the viewer missed was no longer buffered"
            );
        }
        let resumed = Frame {
            kind: Some(frame::Kind::Resumed(Resumed {
                first_seq,
                truncated,
            })),
        };
        self.awaiting_resume = false;
        self.send_now(&resumed).await?;
        let pending: Vec<Frame> = self
            .replay
            .from(first_seq)
            .map(|(seq, data)| Frame {
                kind: Some(frame::Kind::Output(Output {
                    seq: *seq,
                    data: data.clone(),
                })),
            })
            .collect();
        for frame in &pending {
            if !self.flowing() {
                break;
            }
            self.send_now(frame).await?;
        }
        Ok(())
    }

    /// Ends the session from this side: `last` (the exit status) and a `Close` are delivered
    /// once output flows again, waiting for a resume if the path is down (output the viewer
    /// has not seen goes first). Returns false when no path came back.
    pub async fn finish(
        &mut self,
        last: Option<Frame>,
        reason: CloseReason,
        message: &str,
    ) -> bool {
        loop {
            if self.flowing() {
                if let Some(last) = &last
                    && self.send_now(last).await.is_err()
                {
                    return false;
                }
                if !self.flowing() {
                    continue;
                }
                if let Some(channel) = self.current.as_mut() {
                    channel.sender.close(reason, message).await;
                }
                return true;
            }
            match self.next().await {
                Event::Frame(frame::Kind::Resume(resume)) => {
                    if self.resume_from(resume.last_output_seq).await.is_err() {
                        return false;
                    }
                }
                Event::Frame(frame::Kind::OutputAck(ack)) => self.ack(ack.seq),
                Event::Frame(frame::Kind::Close(_)) | Event::Gone | Event::Failed(_) => {
                    return false;
                }
                Event::Frame(_) => {}
            }
        }
    }

    /// Closes the current path with `reason` (no waiting for a resume: the session ends now).
    pub async fn close(&mut self, reason: CloseReason, message: &str) {
        if let Some(channel) = self.current.as_mut() {
            channel.sender.close(reason, message).await;
        }
    }
}

/// What a session's resume attempts need.
#[derive(Debug)]
pub struct Acceptor {
    pub identity: Arc<Identity>,
    pub context: ResumeContext,
    pub dial: DialOptions,
    pub p2p: tucdesk_p2p::P2pOptions,
    pub signaling: LinkSignaling,
    /// Fresh tickets from the viewer's RenewConnectivity, routed by the link.
    pub renewals: mpsc::Receiver<ConnectivityInfo>,
}

impl Acceptor {
    /// Answers each renewal with a new path and a resume handshake, handing every channel
    /// that establishes to the session; a newer renewal abandons an attempt still running.
    pub async fn run(mut self, established: mpsc::Sender<Established>) {
        let mut last_epoch = 0u32;
        let mut next = self.renewals.recv().await;
        while let Some(connectivity) = next.take() {
            self.signaling.expect_new_negotiation();
            let session_id = self.context.session_id.clone();
            let outcome = tokio::select! {
                done = attempt(&session_id, connectivity, &self.dial, &self.p2p, &mut self.signaling, &self.identity, &self.context, last_epoch) => Ok(done),
                newer = self.renewals.recv() => Err(newer),
            };
            match outcome {
                Ok(Ok((channel, epoch))) => {
                    last_epoch = epoch;
                    if established.send(channel).await.is_err() {
                        return;
                    }
                    next = self.renewals.recv().await;
                }
                Ok(Err(why)) => {
                    tracing::warn!(session_id, error = %why, "a resume attempt failed");
                    next = self.renewals.recv().await;
                }
                Err(newer) => next = newer,
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    session_id: &str,
    connectivity: ConnectivityInfo,
    dial: &DialOptions,
    p2p: &tucdesk_p2p::P2pOptions,
    signaling: &mut LinkSignaling,
    identity: &Identity,
    context: &ResumeContext,
    last_epoch: u32,
) -> Result<(Established, u32), String> {
    let pipe = crate::paths::connect(session_id, connectivity, dial, p2p, signaling).await?;
    tucdesk_transport::resume::answer(pipe, identity, context, last_epoch)
        .await
        .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tucdesk_proto::v1::{Resume, Side};
    use tucdesk_transport::memory::pair;

    const SID: &str = "6f1c5e0a-8a47-4b52-9d6a-0c6a3b1f2e11";

    /// A fresh channel pair (viewer end, agent end) with fresh keys, as a resume makes.
    async fn channels() -> (Established, Established) {
        let operator = Identity::generate().unwrap();
        let agent = Identity::generate().unwrap();
        let (start, offer) =
            tucdesk_crypto::OperatorHandshake::start(&operator, SID, agent.public_key()).unwrap();
        let (answer, agent_keys) = tucdesk_crypto::agent_respond(&agent, &offer).unwrap();
        let operator_keys = start.finish(&answer).unwrap();
        let (viewer_pipe, agent_pipe, _) = pair();
        let agent_side = tokio::spawn(tucdesk_transport::establish(
            agent_pipe,
            agent_keys.into_agent_channel(),
            Side::Agent,
            None,
        ));
        let viewer = tucdesk_transport::establish(
            viewer_pipe,
            operator_keys.into_operator_channel(),
            Side::Operator,
            None,
        )
        .await
        .unwrap();
        (viewer, agent_side.await.unwrap().unwrap())
    }

    async fn next_output(viewer: &mut Established) -> (u64, Vec<u8>) {
        match viewer.receiver.recv().await.unwrap().and_then(|f| f.kind) {
            Some(frame::Kind::Output(output)) => (output.seq, output.data),
            other => panic!("expected output, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn output_lost_with_a_path_is_replayed_on_the_next_exactly_once() {
        let (mut viewer, agent) = channels().await;
        let (resumed_tx, resumed) = mpsc::channel(1);
        let mut conn = Resumable::new(agent, resumed, Duration::from_secs(30), Box::new(|_| {}));
        conn.output(b"one".to_vec()).await.unwrap();
        conn.output(b"two".to_vec()).await.unwrap();
        assert_eq!(next_output(&mut viewer).await, (1, b"one".to_vec()));
        // The path dies with "two" in flight: the viewer never reads it.
        drop(viewer);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), conn.next())
                .await
                .is_err(),
            "a lost path must not end the session"
        );
        assert!(!conn.flowing());
        // Output while no path is up is kept, not sent.
        conn.output(b"three".to_vec()).await.unwrap();
        // A resume brings a new channel; the viewer says it has seq 1.
        let (mut viewer, agent) = channels().await;
        resumed_tx.send(agent).await.unwrap();
        viewer
            .sender
            .send(&Frame {
                kind: Some(frame::Kind::Resume(Resume { last_output_seq: 1 })),
            })
            .await
            .unwrap();
        match conn.next().await {
            Event::Frame(frame::Kind::Resume(resume)) => {
                conn.resume_from(resume.last_output_seq).await.unwrap();
            }
            other => panic!("expected Resume, got {other:?}"),
        }
        match viewer.receiver.recv().await.unwrap().and_then(|f| f.kind) {
            Some(frame::Kind::Resumed(resumed)) => {
                assert_eq!((resumed.first_seq, resumed.truncated), (2, false));
            }
            other => panic!("expected Resumed, got {other:?}"),
        }
        assert_eq!(next_output(&mut viewer).await, (2, b"two".to_vec()));
        assert_eq!(next_output(&mut viewer).await, (3, b"three".to_vec()));
        // Output flows on the new path with the next number.
        conn.output(b"four".to_vec()).await.unwrap();
        assert_eq!(next_output(&mut viewer).await, (4, b"four".to_vec()));
    }

    #[tokio::test]
    async fn no_resume_within_the_grace_period_ends_the_session() {
        let (viewer, agent) = channels().await;
        let (_resumed_tx, resumed) = mpsc::channel(1);
        let mut conn = Resumable::new(agent, resumed, Duration::from_millis(50), Box::new(|_| {}));
        drop(viewer);
        assert!(matches!(conn.next().await, Event::Gone));
    }

    #[tokio::test]
    async fn a_long_outage_pauses_output_instead_of_dropping_it() {
        let (viewer, agent) = channels().await;
        let (_resumed_tx, resumed) = mpsc::channel(1);
        let mut conn = Resumable::new(agent, resumed, Duration::from_secs(30), Box::new(|_| {}));
        drop(viewer);
        let _ = tokio::time::timeout(Duration::from_millis(100), conn.next()).await;
        let chunk = vec![b'x'; 32 * 1024];
        let mut taken = 0;
        while conn.accepts_output() {
            conn.output(chunk.clone()).await.unwrap();
            taken += chunk.len();
            assert!(
                taken <= REPLAY_CAP + chunk.len(),
                "the buffer grew past its cap"
            );
        }
        assert!(taken >= REPLAY_CAP);
    }

    #[test]
    fn acknowledged_output_leaves_the_buffer_and_the_rest_is_replayed() {
        let mut replay = ReplayBuffer::new(1024);
        for chunk in [b"one".as_slice(), b"two", b"three"] {
            replay.push(chunk);
        }
        replay.ack(1);
        assert_eq!(replay.resume_point(1), (2, false));
        let kept: Vec<u64> = replay.from(2).map(|(seq, _)| *seq).collect();
        assert_eq!(kept, vec![2, 3]);
        // A viewer that has everything: nothing to replay, output goes on at 4.
        assert_eq!(replay.resume_point(3), (4, false));
        // A viewer claiming more than was ever sent does not skip future output.
        assert_eq!(replay.resume_point(99), (4, false));
    }

    #[test]
    fn output_evicted_while_unacknowledged_is_reported_as_truncated() {
        let mut replay = ReplayBuffer::new(8);
        for _ in 0..4 {
            replay.push(b"1234");
        }
        assert!(replay.is_full());
        replay.evict_over_cap();
        assert!(!replay.from(0).any(|(seq, _)| *seq < 3));
        // The viewer had only seq 1: 2 is gone, output resumes at 3, truncated.
        assert_eq!(replay.resume_point(1), (3, true));
    }
}
