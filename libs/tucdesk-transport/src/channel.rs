//! The end-to-end session channel: protobuf `Frame`s sealed with the session keys (SPEC §5
//! steps 3–4), one sealed frame per pipe message.
//!
//! [`establish`] sends this side's `Hello` and waits for the peer's: a peer that cannot
//! decrypt ours, or whose `Hello` we cannot decrypt, means the keys disagree, and the session
//! fails closed. After that, [`SessionSender`] and [`SessionReceiver`] are independent halves
//! so that one task can read while another writes.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use tucdesk_crypto::{FrameError, FrameOpener, FrameSealer};
use tucdesk_proto::limits::{MAX_FRAME_LEN, MAX_SEALED_FRAME_LEN};
use tucdesk_proto::v1::{Close, CloseReason, Frame, Hello, Path, Side, frame};
use zeroize::Zeroizing;

use crate::{MessagePipe, PipeError};

/// How long each side waits for the peer's `Hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the session channel failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(transparent)]
    Pipe(#[from] PipeError),
    /// A frame did not authenticate, was replayed, or the counter ran out.
    #[error("frame rejected: {0}")]
    Crypto(#[from] FrameError),
    #[error("a sealed frame of {0} bytes is larger than allowed")]
    TooLarge(usize),
    #[error("the peer sent a frame that does not decode")]
    Malformed,
    #[error("session handshake: {0}")]
    Handshake(String),
    #[error("the peer did not confirm the session keys in time")]
    HelloTimeout,
}

impl ChannelError {
    /// The close reason to tell the peer, when this error is the peer's fault.
    pub fn close_reason(&self) -> CloseReason {
        match self {
            ChannelError::TooLarge(_) => CloseReason::FrameTooLarge,
            ChannelError::Crypto(FrameError::CounterExhausted) => CloseReason::CounterExhausted,
            _ => CloseReason::ProtocolError,
        }
    }
}

/// Sending half: seals frames with this side's key and strictly increasing counters.
pub struct SessionSender {
    pipe: Arc<dyn MessagePipe>,
    sealer: FrameSealer,
    /// Sealed bytes sent (what the path carried), for the session report.
    bytes: u64,
}

/// Receiving half: length check, authentication and replay check, decode.
pub struct SessionReceiver {
    pipe: Arc<dyn MessagePipe>,
    opener: FrameOpener,
    /// Sealed bytes received and accepted.
    bytes: u64,
}

impl std::fmt::Debug for SessionSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSender")
            .field("path", &self.pipe.path())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SessionReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionReceiver")
            .field("path", &self.pipe.path())
            .finish_non_exhaustive()
    }
}

impl SessionSender {
    /// Seals and sends one frame.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), ChannelError> {
        let plaintext = Zeroizing::new(frame.encode_to_vec());
        if plaintext.len() > MAX_FRAME_LEN {
            return Err(ChannelError::TooLarge(plaintext.len()));
        }
        let sealed = self.sealer.seal(&plaintext)?;
        let len = sealed.len() as u64;
        self.pipe.send(sealed).await?;
        self.bytes += len;
        Ok(())
    }

    /// Sends `Close` (best effort) and closes the pipe.
    pub async fn close(&mut self, reason: CloseReason, message: &str) {
        let close = Frame {
            kind: Some(frame::Kind::Close(Close {
                reason: reason as i32,
                message: message.to_owned(),
            })),
        };
        let _ = self.send(&close).await;
        self.pipe.close().await;
    }

    /// The path the session runs over.
    pub fn path(&self) -> Path {
        self.pipe.path()
    }

    /// Sealed bytes sent so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl SessionReceiver {
    /// The next frame, or `None` when the pipe ended without a `Close`.
    pub async fn recv(&mut self) -> Result<Option<Frame>, ChannelError> {
        let Some(sealed) = self.pipe.recv().await? else {
            return Ok(None);
        };
        if sealed.len() > MAX_SEALED_FRAME_LEN {
            return Err(ChannelError::TooLarge(sealed.len()));
        }
        let plaintext = Zeroizing::new(self.opener.open(&sealed)?);
        self.bytes += sealed.len() as u64;
        let frame = Frame::decode(plaintext.as_slice()).map_err(|_| ChannelError::Malformed)?;
        Ok(Some(frame))
    }

    /// Sealed bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// An established session channel.
#[derive(Debug)]
pub struct Established {
    pub sender: SessionSender,
    pub receiver: SessionReceiver,
    /// The peer's `Hello` (versions, features, optional transcript confirmation).
    pub peer: Hello,
}

fn other(side: Side) -> Side {
    match side {
        Side::Operator => Side::Agent,
        _ => Side::Operator,
    }
}

/// Exchanges `Hello` frames on `pipe` with this side's `keys` (sealer, opener) and returns the
/// two halves. `confirmation` is the operator's optional transcript signature.
pub async fn establish(
    pipe: Arc<dyn MessagePipe>,
    keys: (FrameSealer, FrameOpener),
    side: Side,
    confirmation: Option<Vec<u8>>,
) -> Result<Established, ChannelError> {
    let (sealer, opener) = keys;
    let mut sender = SessionSender {
        pipe: pipe.clone(),
        sealer,
        bytes: 0,
    };
    let mut receiver = SessionReceiver {
        pipe,
        opener,
        bytes: 0,
    };
    let hello = Frame {
        kind: Some(frame::Kind::Hello(Hello {
            protocol_version: tucdesk_proto::PROTOCOL_VERSION,
            side: side as i32,
            path: sender.path() as i32,
            max_frame_len: 0,
            features: Vec::new(),
            transcript_confirmation: confirmation.unwrap_or_default(),
        })),
    };
    sender.send(&hello).await?;
    let first = tokio::time::timeout(HELLO_TIMEOUT, receiver.recv())
        .await
        .map_err(|_| ChannelError::HelloTimeout)??;
    let peer = match first {
        Some(Frame {
            kind: Some(frame::Kind::Hello(peer)),
        }) => peer,
        Some(Frame {
            kind: Some(frame::Kind::Close(close)),
        }) => {
            return Err(ChannelError::Handshake(format!(
                "the peer closed the session: {}",
                crate::ws::printable(&close.message)
            )));
        }
        Some(_) => return Err(ChannelError::Handshake("first frame is not Hello".into())),
        None => {
            return Err(ChannelError::Handshake(
                "the pipe closed before Hello".into(),
            ));
        }
    };
    if peer.side != other(side) as i32 {
        return Err(ChannelError::Handshake(
            "the peer claims to be on our side".into(),
        ));
    }
    let floor = match side {
        Side::Agent => tucdesk_proto::MIN_CLIENT_PROTOCOL_VERSION,
        _ => tucdesk_proto::MIN_AGENT_PROTOCOL_VERSION,
    };
    if peer.protocol_version < floor {
        sender
            .close(
                CloseReason::UpdateRequired,
                "protocol version below the floor",
            )
            .await;
        return Err(ChannelError::Handshake(format!(
            "the peer speaks protocol {} but {floor} is the lowest accepted",
            peer.protocol_version
        )));
    }
    Ok(Established {
        sender,
        receiver,
        peer,
    })
}
