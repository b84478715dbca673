//! The WebRTC driver's callbacks, turned into what the negotiation waits on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};
use tucdesk_proto::limits::MAX_ICE_CANDIDATES_PER_SIDE;
use webrtc::data_channel::DataChannel;
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCIceCandidateInit, RTCIceGatheringState,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState,
};

use crate::connect::Role;

/// What the WebRTC driver reports, in order.
#[derive(Debug)]
pub(crate) enum LocalSignal {
    Candidate(RTCIceCandidateInit),
    GatheringComplete,
}

/// Receives the driver's callbacks. They run on the driver's own task, so nothing here waits:
/// bounded queues with `try_send`, watch channels and a one-shot slot.
pub(crate) struct Handler {
    signals: mpsc::Sender<LocalSignal>,
    candidates: AtomicUsize,
    state: watch::Sender<RTCPeerConnectionState>,
    channel: Mutex<Option<oneshot::Sender<Arc<dyn DataChannel>>>>,
}

/// The negotiation's ends of the handler's channels.
pub(crate) struct Local {
    pub(crate) signals: mpsc::Receiver<LocalSignal>,
    pub(crate) state: watch::Receiver<RTCPeerConnectionState>,
    pub(crate) channel: oneshot::Receiver<Arc<dyn DataChannel>>,
}

impl Handler {
    pub(crate) fn new(role: Role) -> (Self, Local) {
        // Never fills: at most MAX_ICE_CANDIDATES_PER_SIDE candidates and one completion go in.
        let (signals_tx, signals_rx) = mpsc::channel(MAX_ICE_CANDIDATES_PER_SIDE + 2);
        let (state_tx, state_rx) = watch::channel(RTCPeerConnectionState::New);
        let (channel_tx, channel_rx) = oneshot::channel();
        let handler = Handler {
            signals: signals_tx,
            candidates: AtomicUsize::new(0),
            state: state_tx,
            // Only the answering side takes a channel the peer opens.
            channel: Mutex::new((role == Role::Answerer).then_some(channel_tx)),
        };
        let local = Local {
            signals: signals_rx,
            state: state_rx,
            channel: channel_rx,
        };
        (handler, local)
    }
}

fn close_in_background(channel: Arc<dyn DataChannel>) {
    tokio::spawn(async move {
        let _ = channel.close().await;
    });
}

#[async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        // The peer refuses more than MAX_ICE_CANDIDATES_PER_SIDE; do not send them.
        if self.candidates.fetch_add(1, Ordering::Relaxed) >= MAX_ICE_CANDIDATES_PER_SIDE {
            tracing::debug!("local ICE candidate beyond the limit not signaled");
            return;
        }
        match event.candidate.to_json() {
            Ok(init) => {
                let _ = self.signals.try_send(LocalSignal::Candidate(init));
            }
            Err(err) => tracing::debug!(error = %err, "local ICE candidate not serialisable"),
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.signals.try_send(LocalSignal::GatheringComplete);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(%state, "peer connection state");
        self.state.send_replace(state);
    }

    async fn on_data_channel(&self, data_channel: Arc<dyn DataChannel>) {
        let slot = self
            .channel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match slot {
            Some(slot) => {
                if let Err(unwanted) = slot.send(data_channel) {
                    close_in_background(unwanted);
                }
            }
            // A session has exactly one channel, opened by the operator side.
            None => close_in_background(data_channel),
        }
    }
}
