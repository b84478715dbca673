//! The direct and TURN session paths (SPEC §5 step 5a and 5b): one ordered, reliable WebRTC
//! DataChannel over ICE, carrying the same sealed frames as the WebSocket relay path.
//!
//! - [`dial`] (operator side) creates the offer and the DataChannel; [`accept`] (agent side)
//!   answers. Both take the session's [`IceConfig`] (STUN from the relay, TURN on coturn with
//!   per-session REST credentials) and trickle candidates both ways over a [`Signaling`]
//!   channel, which the caller backs with whatever carries `SessionSignal`s (the rendezvous
//!   `SessionSignals` stream on the viewer, the `Connect` stream on the agent).
//! - Everything the peer sends through signaling is bounded (SDP, candidates, their count, the
//!   session they name) before it reaches the WebRTC stack.
//! - Negotiation has a deadline ([`P2pOptions::connect_deadline`]); past it the attempt fails
//!   with [`P2pError::Deadline`] so the caller falls back to the WebSocket relay.
//! - The result, [`P2pPipe`], implements [`tucdesk_transport::MessagePipe`]: its path is
//!   `Path::Turn` when either end of the selected candidate pair is a relay candidate and
//!   `Path::Direct` otherwise; sends wait while the DataChannel's outstanding bytes are above
//!   [`P2pOptions::send_buffer_limit`]; received messages are bounded by
//!   [`P2pOptions::max_message_len`].
//!
//! The DataChannel's own DTLS protects nothing we rely on: frames are sealed end to end above
//! it, so a tampering rendezvous or TURN server can only break the path.
#![forbid(unsafe_code)]

mod config;
mod connect;
mod handler;
mod path;
mod pipe;
pub mod signaling;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

pub use connect::{accept, dial};
pub use pipe::{P2pPipe, TrySendError};
pub use signaling::{MemorySignaling, Signaling, SignalingError, memory_pair};
pub use tucdesk_proto::v1::IceConfig;

/// How long [`dial`] and [`accept`] may take, signaling included, unless configured otherwise.
/// ICE tries host, server-reflexive and relay candidate pairs at once, so this one deadline
/// covers both the direct and the TURN path; past it the caller moves on to the WebSocket
/// relay.
pub const DEFAULT_CONNECT_DEADLINE: Duration = Duration::from_secs(10);
/// Bytes handed to the DataChannel but not yet acknowledged by the peer, at most (per pipe):
/// above this, [`MessagePipe::send`](tucdesk_transport::MessagePipe::send) waits.
pub const DEFAULT_SEND_BUFFER_LIMIT: usize = 1024 * 1024;
/// Largest message either way: one sealed session frame (the WebSocket relay's limit too).
pub const DEFAULT_MAX_MESSAGE_LEN: usize = tucdesk_proto::limits::MAX_SEALED_FRAME_LEN;
/// The label of the one DataChannel a session uses.
pub const DATA_CHANNEL_LABEL: &str = "tucdesk-session-v1";

/// Tunables of a peer-to-peer attempt.
#[derive(Debug, Clone)]
pub struct P2pOptions {
    /// Negotiation deadline (signaling, ICE, DTLS, SCTP and the DataChannel open).
    pub connect_deadline: Duration,
    /// Local UDP addresses to bind. A wildcard address stands for every interface of its
    /// family except loopback and link-local; give a concrete address to bind exactly that one
    /// (tests bind `127.0.0.1:0`).
    pub udp_addrs: Vec<SocketAddr>,
    /// Send back-pressure bound, see [`DEFAULT_SEND_BUFFER_LIMIT`].
    pub send_buffer_limit: usize,
    /// Largest message sent or accepted, see [`DEFAULT_MAX_MESSAGE_LEN`]. Messages above it
    /// are refused with `PipeError::TooLarge`. Capped at [`DEFAULT_MAX_MESSAGE_LEN`] for
    /// what the SCTP layer will carry.
    pub max_message_len: usize,
}

impl Default for P2pOptions {
    fn default() -> Self {
        Self {
            connect_deadline: DEFAULT_CONNECT_DEADLINE,
            udp_addrs: vec![
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
            ],
            send_buffer_limit: DEFAULT_SEND_BUFFER_LIMIT,
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
        }
    }
}

/// Why a peer-to-peer attempt failed. Every variant means "fall back to the next path".
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    /// The ICE configuration from rendezvous is unusable (bounds, URL schemes, policy).
    #[error("unusable ICE configuration: {0}")]
    Config(&'static str),
    /// The signaling channel failed or closed before the connection was up.
    #[error("signaling: {0}")]
    Signaling(#[from] SignalingError),
    /// The peer sent signaling we refuse (oversized, too many candidates, out of order).
    #[error("the peer broke the signaling protocol: {0}")]
    Protocol(&'static str),
    /// No connection within the deadline: the peer never answered, or no candidate pair
    /// worked (UDP blocked, TURN unreachable).
    #[error("no direct or TURN connection within {0:?}")]
    Deadline(Duration),
    /// ICE gave up before the deadline (every candidate pair failed).
    #[error("the peer-to-peer connection failed")]
    Failed,
    /// The WebRTC stack refused an operation (e.g. an SDP it cannot parse).
    #[error("WebRTC: {0}")]
    WebRtc(String),
}

impl From<webrtc::error::Error> for P2pError {
    fn from(err: webrtc::error::Error) -> Self {
        P2pError::WebRtc(err.to_string())
    }
}
