//! How a TucDesk session's sealed frames travel between viewer and agent.
//!
//! Two layers:
//! - [`MessagePipe`]: a reliable, ordered, message-oriented pipe that carries opaque byte
//!   messages and knows nothing of keys. The WebSocket relay path ([`ws`]) implements it
//!   today; the ICE DataChannel paths (direct, TURN) implement the same trait, so everything
//!   above is path-agnostic.
//! - [`channel`]: the end-to-end session channel on a pipe: each message is one sealed frame
//!   (tucdesk-crypto `frame`), each plaintext one protobuf `Frame`. It exchanges the `Hello`
//!   frames (key confirmation, versions, path), checks lengths before decrypting and rejects
//!   replayed or reordered frames. A pipe never sees plaintext.
#![forbid(unsafe_code)]

pub mod channel;
pub mod memory;
pub mod proofs;
pub mod resume;
pub mod rpc;
pub mod ws;

/// TLS client settings (the `tucdesk-tls` crate).
pub use tucdesk_tls as tls;

use async_trait::async_trait;
use tucdesk_proto::v1::Path;

pub use channel::{ChannelError, Established, SessionReceiver, SessionSender, establish};
pub use ws::{DialOptions, RelayDialError, WsPipe, dial_relay};

/// Why a pipe failed.
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    /// The peer or the relay closed the pipe; `reason` says why when it was given.
    #[error("the connection closed{}", .reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed { reason: Option<String> },
    /// A message was larger than the pipe allows.
    #[error("a message of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    /// The underlying connection broke.
    #[error("transport error: {0}")]
    Io(String),
}

/// A reliable, ordered pipe of whole messages, shared by the tasks that send and receive on
/// it (`send` and `recv` may run concurrently; two concurrent `send`s are serialised).
#[async_trait]
pub trait MessagePipe: Send + Sync {
    /// The path this pipe runs over (reported to the user and audited).
    fn path(&self) -> Path;

    /// Sends one message; waits while the pipe's bounded send buffer is full, so a slow peer
    /// slows the sender instead of growing memory.
    async fn send(&self, message: Vec<u8>) -> Result<(), PipeError>;

    /// The next message, or `None` once the peer closed the pipe cleanly.
    async fn recv(&self) -> Result<Option<Vec<u8>>, PipeError>;

    /// Closes the pipe (best effort; idempotent).
    async fn close(&self);
}

/// A human name for a path, as shown to users.
pub fn path_name(path: Path) -> &'static str {
    match path {
        Path::Direct => "direct (peer to peer)",
        Path::Turn => "TURN relay",
        Path::Ws => "WebSocket relay",
        Path::Unspecified => "unknown",
    }
}
