//! Shared helpers: two in-process peers on 127.0.0.1 with in-memory signaling.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tucdesk_p2p::{
    IceConfig, MemorySignaling, P2pError, P2pOptions, P2pPipe, Signaling, SignalingError,
};
use tucdesk_proto::v1::SessionSignal;

pub const SESSION: &str = "0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b";
/// Signals buffered by the in-memory pair: more than one side ever sends.
pub const SIGNAL_CAPACITY: usize = 128;
/// Safety net so a broken test ends instead of hanging; never what a test asserts on.
pub const GUARD: Duration = Duration::from_secs(60);

/// Loopback only: the tests never send anything off this machine.
pub fn loopback_options() -> P2pOptions {
    P2pOptions {
        udp_addrs: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        connect_deadline: Duration::from_secs(20),
        ..P2pOptions::default()
    }
}

/// Dials and accepts concurrently; returns (operator pipe, agent pipe).
pub async fn connect(
    ice_operator: &IceConfig,
    ice_agent: &IceConfig,
    operator: &P2pOptions,
    agent: &P2pOptions,
) -> (Arc<P2pPipe>, Arc<P2pPipe>) {
    let (mut to_agent, mut to_operator) = tucdesk_p2p::memory_pair(SIGNAL_CAPACITY);
    let (dialed, accepted) = tokio::time::timeout(GUARD, async {
        tokio::join!(
            tucdesk_p2p::dial(SESSION, ice_operator, operator, &mut to_agent),
            tucdesk_p2p::accept(SESSION, ice_agent, agent, &mut to_operator),
        )
    })
    .await
    .expect("negotiation guard");
    (
        Arc::new(dialed.expect("dial")),
        Arc::new(accepted.expect("accept")),
    )
}

pub async fn connect_direct() -> (Arc<P2pPipe>, Arc<P2pPipe>) {
    let ice = IceConfig::default();
    connect(&ice, &ice, &loopback_options(), &loopback_options()).await
}

/// A message carrying its sequence number, `len` bytes long (at least 8).
pub fn numbered(seq: u64, len: usize) -> Vec<u8> {
    let mut message = vec![0u8; len.max(8)];
    message[..8].copy_from_slice(&seq.to_be_bytes());
    for (i, byte) in message.iter_mut().enumerate().skip(8) {
        *byte = (seq as usize).wrapping_add(i) as u8;
    }
    message
}

/// Checks a message made by [`numbered`] and returns its sequence number.
pub fn check_numbered(message: &[u8]) -> u64 {
    let seq = u64::from_be_bytes(message[..8].try_into().unwrap());
    for (i, byte) in message.iter().enumerate().skip(8) {
        assert_eq!(
            *byte,
            (seq as usize).wrapping_add(i) as u8,
            "payload of {seq}"
        );
    }
    seq
}

/// Signaling that first yields `injected` signals, then the real ones.
pub struct Injecting {
    pub inner: MemorySignaling,
    pub injected: VecDeque<SessionSignal>,
}

#[async_trait]
impl Signaling for Injecting {
    async fn send(&mut self, signal: SessionSignal) -> Result<(), SignalingError> {
        self.inner.send(signal).await
    }

    async fn recv(&mut self) -> Result<Option<SessionSignal>, SignalingError> {
        if let Some(signal) = self.injected.pop_front() {
            return Ok(Some(signal));
        }
        self.inner.recv().await
    }
}

pub fn is_deadline(result: &Result<P2pPipe, P2pError>) -> bool {
    matches!(result, Err(P2pError::Deadline(_)))
}

/// The next signal on an in-memory end (the test plays the other side).
pub async fn next_signal(end: &mut MemorySignaling) -> SessionSignal {
    tokio::time::timeout(GUARD, end.recv())
        .await
        .expect("signal guard")
        .expect("signaling")
        .expect("a signal")
}

/// Sends a signal from an in-memory end.
pub async fn push_signal(end: &mut MemorySignaling, signal: SessionSignal) {
    end.send(signal).await.expect("signaling");
}
