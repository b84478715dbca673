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

    /// Closes the pipe without a `Close` frame: the session goes on over another path.
    pub async fn abandon(self) {
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

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use tokio::sync::mpsc;
    use tucdesk_proto::v1::{Input, Output};

    pub(crate) use crate::memory::pair;

    /// Both sides' keys from a real handshake.
    fn handshake() -> (tucdesk_crypto::SessionKeys, tucdesk_crypto::SessionKeys) {
        let operator = tucdesk_crypto::Identity::generate().unwrap();
        let agent = tucdesk_crypto::Identity::generate().unwrap();
        let (start, offer) = tucdesk_crypto::OperatorHandshake::start(
            &operator,
            "6f1c5e0a-8a47-4b52-9d6a-0c6a3b1f2e11",
            agent.public_key(),
        )
        .unwrap();
        let (answer, agent_keys) = tucdesk_crypto::agent_respond(&agent, &offer).unwrap();
        (start.finish(&answer).unwrap(), agent_keys)
    }

    fn output(data: &[u8]) -> Frame {
        Frame {
            kind: Some(frame::Kind::Output(Output {
                seq: 1,
                data: data.to_vec(),
            })),
        }
    }

    async fn established(
        operator_keys: tucdesk_crypto::SessionKeys,
        agent_keys: tucdesk_crypto::SessionKeys,
    ) -> (
        Result<Established, ChannelError>,
        Result<Established, ChannelError>,
        Arc<crate::memory::MemoryPipe>,
        mpsc::Sender<Vec<u8>>,
    ) {
        let (op_pipe, agent_pipe, inject) = pair();
        let op = establish(
            op_pipe.clone(),
            operator_keys.into_operator_channel(),
            Side::Operator,
            None,
        );
        let agent = establish(
            agent_pipe,
            agent_keys.into_agent_channel(),
            Side::Agent,
            None,
        );
        let (op, agent) = tokio::join!(op, agent);
        (op, agent, op_pipe, inject)
    }

    #[tokio::test]
    async fn frames_flow_both_ways_once_hellos_match() {
        let (op_keys, agent_keys) = handshake();
        let (op, agent, _, _) = established(op_keys, agent_keys).await;
        let (mut op, mut agent) = (op.unwrap(), agent.unwrap());
        assert_eq!(op.peer.side, Side::Agent as i32);
        agent.sender.send(&output(b"prompt$ ")).await.unwrap();
        assert_eq!(
            op.receiver.recv().await.unwrap().unwrap(),
            output(b"prompt$ ")
        );
        let typed = Frame {
            kind: Some(frame::Kind::Input(Input {
                data: b"ls\n".to_vec(),
            })),
        };
        op.sender.send(&typed).await.unwrap();
        assert_eq!(agent.receiver.recv().await.unwrap().unwrap(), typed);
        assert!(op.sender.bytes() > 0 && agent.receiver.bytes() == op.sender.bytes());
    }

    #[tokio::test]
    async fn different_keys_fail_closed_at_hello() {
        let (op_keys, _) = handshake();
        let (_, agent_keys) = handshake();
        let (op, agent, _, _) = established(op_keys, agent_keys).await;
        assert!(matches!(op, Err(ChannelError::Crypto(_))), "{op:?}");
        assert!(matches!(agent, Err(ChannelError::Crypto(_))), "{agent:?}");
    }

    #[tokio::test]
    async fn a_replayed_or_tampered_frame_is_refused() {
        let (op_keys, agent_keys) = handshake();
        let (op, agent, op_pipe, inject) = established(op_keys, agent_keys).await;
        let (mut op, mut agent) = (op.unwrap(), agent.unwrap());
        op.sender.send(&output(b"once")).await.unwrap();
        agent.receiver.recv().await.unwrap().unwrap();
        // The relay (or anyone on the path) sends the same sealed frame again.
        let last = op_pipe.sent().last().cloned().unwrap();
        drop(inject);
        op_pipe.send(last.clone()).await.unwrap();
        assert!(matches!(
            agent.receiver.recv().await,
            Err(ChannelError::Crypto(_))
        ));
        let mut flipped = last;
        let end = flipped.len() - 1;
        flipped[end] ^= 1;
        op_pipe.send(flipped).await.unwrap();
        assert!(agent.receiver.recv().await.is_err());
    }

    #[tokio::test]
    async fn an_oversized_message_is_refused_before_decryption() {
        let (op_keys, agent_keys) = handshake();
        let (op, _agent, _, inject) = established(op_keys, agent_keys).await;
        let mut op = op.unwrap();
        inject
            .send(vec![0u8; MAX_SEALED_FRAME_LEN + 1])
            .await
            .unwrap();
        let err = op.receiver.recv().await.unwrap_err();
        assert!(matches!(err, ChannelError::TooLarge(_)));
        assert_eq!(err.close_reason(), CloseReason::FrameTooLarge);
    }

    #[tokio::test]
    async fn a_peer_claiming_our_side_is_refused() {
        let (a, b, _) = pair();
        // Both ends say "operator" (with matching keys for each direction).
        let (op_keys, agent_keys) = handshake();
        let first = establish(a, op_keys.into_operator_channel(), Side::Operator, None);
        let second = establish(b, agent_keys.into_agent_channel(), Side::Operator, None);
        let (first, second) = tokio::join!(first, second);
        assert!(
            matches!(first, Err(ChannelError::Handshake(_))),
            "{first:?}"
        );
        assert!(second.is_err());
    }
}
