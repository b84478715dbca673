//! The open DataChannel as a [`MessagePipe`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::sync::{Mutex, watch};
use tucdesk_proto::v1::Path;
use tucdesk_transport::{MessagePipe, PipeError};
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelMessage};
use webrtc::error::Error as RtcError;
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState};

use crate::P2pOptions;

/// Longest [`MessagePipe::close`] waits for the peer to acknowledge what was sent.
const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(5);
/// How often `close` looks at the unacknowledged byte count while draining.
const DRAIN_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// A connected ICE DataChannel: the direct or TURN path of one session.
///
/// Sends wait while more than [`P2pOptions::send_buffer_limit`] bytes are unacknowledged by
/// the peer; the peer's SCTP receive window in turn stops the sender while this side does not
/// `recv`. A failed or interrupted connection (ICE disconnected or failed) ends `send` and
/// `recv` with a [`PipeError`], so the session layer can resume on another path.
pub struct P2pPipe {
    pc: Arc<dyn PeerConnection>,
    channel: Arc<dyn DataChannel>,
    path: Path,
    state: watch::Receiver<RTCPeerConnectionState>,
    max_message_len: usize,
    send_buffer_limit: usize,
    closed: AtomicBool,
    send_lock: Mutex<()>,
    recv_lock: Mutex<()>,
    /// Messages that arrived before the channel reported open, delivered first.
    early: std::sync::Mutex<std::collections::VecDeque<RTCDataChannelMessage>>,
}

impl std::fmt::Debug for P2pPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2pPipe")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Why [`P2pPipe::try_send`] did not send.
#[derive(Debug, thiserror::Error)]
pub enum TrySendError {
    /// The send buffer is at its limit; the message was not sent.
    #[error("the send buffer is full")]
    Full,
    #[error(transparent)]
    Pipe(#[from] PipeError),
}

fn pipe_error(err: RtcError) -> PipeError {
    match err {
        RtcError::ErrDataChannelClosed => PipeError::Closed { reason: None },
        other => PipeError::Io(other.to_string()),
    }
}

/// The error for a connection in `state`, if it is interrupted, failed or closed.
fn state_error(state: RTCPeerConnectionState) -> Option<PipeError> {
    match state {
        RTCPeerConnectionState::Disconnected => Some(PipeError::Io(
            "the peer-to-peer connection was interrupted".into(),
        )),
        RTCPeerConnectionState::Failed => {
            Some(PipeError::Io("the peer-to-peer connection failed".into()))
        }
        RTCPeerConnectionState::Closed => Some(PipeError::Closed {
            reason: Some("the peer-to-peer connection closed".into()),
        }),
        _ => None,
    }
}

/// Resolves once the connection is interrupted, failed or closed.
async fn lost(mut state: watch::Receiver<RTCPeerConnectionState>) -> PipeError {
    loop {
        let current = *state.borrow_and_update();
        if let Some(err) = state_error(current) {
            return err;
        }
        if state.changed().await.is_err() {
            return PipeError::Closed { reason: None };
        }
    }
}

impl P2pPipe {
    pub(crate) fn new(
        pc: Arc<dyn PeerConnection>,
        channel: Arc<dyn DataChannel>,
        path: Path,
        state: watch::Receiver<RTCPeerConnectionState>,
        options: &P2pOptions,
        early: Vec<RTCDataChannelMessage>,
    ) -> Self {
        Self {
            pc,
            channel,
            path,
            state,
            max_message_len: options.max_message_len,
            send_buffer_limit: options.send_buffer_limit,
            closed: AtomicBool::new(false),
            send_lock: Mutex::new(()),
            recv_lock: Mutex::new(()),
            early: std::sync::Mutex::new(early.into()),
        }
    }

    /// A received message, if it is binary and within the size limit.
    fn accept(&self, message: RTCDataChannelMessage) -> Result<Vec<u8>, PipeError> {
        if message.is_string {
            return Err(PipeError::Io("the peer sent a text message".into()));
        }
        if message.data.len() > self.max_message_len {
            return Err(PipeError::TooLarge {
                len: message.data.len(),
                max: self.max_message_len,
            });
        }
        Ok(Vec::from(message.data))
    }

    /// Bytes handed to the channel and not yet acknowledged by the peer.
    pub async fn buffered_amount(&self) -> usize {
        self.channel.outstanding_bytes().await.unwrap_or(0)
    }

    /// The bound on [`buffered_amount`](Self::buffered_amount) that `send` waits on (one
    /// message may overshoot it, as a message is never split).
    pub fn send_buffer_limit(&self) -> usize {
        self.send_buffer_limit
    }

    fn check_send(&self, message: &[u8]) -> Result<(), PipeError> {
        if message.len() > self.max_message_len {
            return Err(PipeError::TooLarge {
                len: message.len(),
                max: self.max_message_len,
            });
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(PipeError::Closed { reason: None });
        }
        // A send into a lost connection would be queued and never acknowledged.
        match state_error(*self.state.borrow()) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Sends `message` unless the send buffer is at its limit (never waits for the peer).
    pub async fn try_send(&self, message: Vec<u8>) -> Result<(), TrySendError> {
        self.check_send(&message)?;
        let _serial = self.send_lock.lock().await;
        match self
            .channel
            .try_send(BytesMut::from(Bytes::from(message)))
            .await
        {
            Ok(()) => Ok(()),
            Err(RtcError::ErrSendBufferFull) => Err(TrySendError::Full),
            Err(err) => Err(pipe_error(err).into()),
        }
    }
}

#[async_trait]
impl MessagePipe for P2pPipe {
    fn path(&self) -> Path {
        self.path
    }

    async fn send(&self, message: Vec<u8>) -> Result<(), PipeError> {
        self.check_send(&message)?;
        let _serial = self.send_lock.lock().await;
        let data = BytesMut::from(Bytes::from(message));
        tokio::select! {
            biased;
            sent = self.channel.send(data) => sent.map_err(pipe_error),
            err = lost(self.state.clone()) => Err(err),
        }
    }

    async fn recv(&self) -> Result<Option<Vec<u8>>, PipeError> {
        let _serial = self.recv_lock.lock().await;
        let early = self
            .early
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front();
        if let Some(message) = early {
            return self.accept(message).map(Some);
        }
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Ok(None);
            }
            // Messages already received are delivered before a loss is reported.
            let event = tokio::select! {
                biased;
                event = self.channel.poll() => event,
                err = lost(self.state.clone()) => return Err(err),
            };
            match event {
                Some(DataChannelEvent::OnMessage(message)) => {
                    return self.accept(message).map(Some);
                }
                Some(DataChannelEvent::OnClose) | None => return Ok(None),
                Some(DataChannelEvent::OnError) => {
                    return Err(PipeError::Io("the data channel failed".into()));
                }
                Some(_) => continue,
            }
        }
    }

    async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Closing the channel discards what the peer has not acknowledged yet, and the last
        // message sent is usually the one that matters (an exit status, a close reason): let
        // it drain first, for a bounded time, unless the connection is already gone.
        let drained = async {
            while self.channel.outstanding_bytes().await.unwrap_or(0) > 0 {
                tokio::time::sleep(DRAIN_POLL).await;
            }
        };
        tokio::select! {
            () = drained => {}
            _ = lost(self.state.clone()) => {}
            () = tokio::time::sleep(CLOSE_LINGER) => {}
        }
        let _ = self.channel.close().await;
        let _ = self.pc.close().await;
    }
}

impl Drop for P2pPipe {
    fn drop(&mut self) {
        // The driver task runs until the connection is closed; a pipe dropped without
        // `close` must not leave it (and its sockets) behind.
        if !self.closed.swap(true, Ordering::AcqRel)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let pc = self.pc.clone();
            runtime.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}
