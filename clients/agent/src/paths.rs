//! The agent's side of choosing a session path (SPEC §5 step 5). The operator picks: it offers a
//! DataChannel over ICE (direct or through TURN) and falls back to the WebSocket relay when
//! that does not connect in time. The agent cannot know which the operator will use, so it
//! answers both at once, among the paths rendezvous allowed for the session, and serves the
//! first that connects; the other attempt is dropped.

use std::sync::Arc;

use tokio::sync::mpsc;
use tucdesk_p2p::{P2pOptions, Signaling, SignalingError};
use tucdesk_proto::v1::agent_message::Kind as AgentKind;
use tucdesk_proto::v1::session_signal::Signal;
use tucdesk_proto::v1::{ConnectivityInfo, Path, SessionSignal, Side};
use tucdesk_transport::{DialOptions, MessagePipe};

use crate::link::LinkHandle;

/// Signals queued for one session's ICE negotiation (the operator sends at most 64
/// candidates and one description; more waiting means it is not being read).
pub const SIGNAL_QUEUE: usize = 80;

/// One session's signaling over the agent's rendezvous link: signals from the operator
/// arrive on `inbound` (routed by session id), signals to the operator go out on the link.
#[derive(Debug)]
pub struct LinkSignaling {
    session_id: String,
    link: LinkHandle,
    inbound: mpsc::Receiver<SessionSignal>,
    /// Skip signals until the operator's next description: what came before it belongs to an
    /// earlier negotiation (late candidates, its end-of-candidates).
    skip_to_description: bool,
}

impl LinkSignaling {
    pub fn new(session_id: &str, link: LinkHandle, inbound: mpsc::Receiver<SessionSignal>) -> Self {
        Self {
            session_id: session_id.to_owned(),
            link,
            inbound,
            skip_to_description: false,
        }
    }

    /// A new negotiation starts (a resume): signals left from the earlier one are skipped.
    /// They cannot simply be drained now, as the new description may already be queued
    /// (rendezvous delivers the renewal and the signals on different subjects).
    pub fn expect_new_negotiation(&mut self) {
        self.skip_to_description = true;
    }
}

#[async_trait::async_trait]
impl Signaling for LinkSignaling {
    async fn send(&mut self, mut signal: SessionSignal) -> Result<(), SignalingError> {
        signal.session_id.clone_from(&self.session_id);
        self.link
            .send(AgentKind::Signal(signal))
            .await
            .map_err(|()| SignalingError::Closed)
    }

    async fn recv(&mut self) -> Result<Option<SessionSignal>, SignalingError> {
        loop {
            let signal = self.inbound.recv().await;
            if self.skip_to_description {
                match &signal {
                    Some(SessionSignal {
                        signal: Some(Signal::Description(_)),
                        ..
                    }) => self.skip_to_description = false,
                    Some(_) => continue,
                    None => {}
                }
            }
            return Ok(signal);
        }
    }
}

/// Which kinds of path rendezvous allowed (an empty list allows every path).
fn allowed(connectivity: &ConnectivityInfo) -> (bool, bool) {
    if connectivity.paths.is_empty() {
        return (true, true);
    }
    let has = |path: Path| connectivity.paths.contains(&(path as i32));
    (has(Path::Direct) || has(Path::Turn), has(Path::Ws))
}

/// Connects the session's pipe over whichever allowed path the operator uses first.
pub async fn connect(
    session_id: &str,
    connectivity: ConnectivityInfo,
    dial: &DialOptions,
    p2p: &P2pOptions,
    signaling: &mut LinkSignaling,
) -> Result<Arc<dyn MessagePipe>, String> {
    let (p2p_allowed, ws_allowed) = allowed(&connectivity);
    let relay = async {
        match (&connectivity.relay, ws_allowed) {
            (Some(endpoint), true) => {
                tucdesk_transport::dial_relay(endpoint, session_id, Side::Agent, dial)
                    .await
                    .map(|pipe| Arc::new(pipe) as Arc<dyn MessagePipe>)
                    .map_err(|err| format!("WebSocket relay: {err}"))
            }
            (None, true) => Err("WebSocket relay: the offer named no relay".to_owned()),
            (_, false) => Err("WebSocket relay: not allowed for this session".to_owned()),
        }
    };
    let ice = async {
        match (&connectivity.ice, p2p_allowed) {
            (Some(ice), true) => tucdesk_p2p::accept(session_id, ice, p2p, signaling)
                .await
                .map(|pipe| Arc::new(pipe) as Arc<dyn MessagePipe>)
                .map_err(|err| format!("direct/TURN: {err}")),
            (None, true) => Err("direct/TURN: the offer has no ICE configuration".to_owned()),
            (_, false) => Err("direct/TURN: not allowed for this session".to_owned()),
        }
    };
    tokio::pin!(relay, ice);
    let (mut relay_failed, mut ice_failed) = (None, None);
    loop {
        tokio::select! {
            done = &mut relay, if relay_failed.is_none() => match done {
                Ok(pipe) => return Ok(pipe),
                Err(err) => relay_failed = Some(err),
            },
            done = &mut ice, if ice_failed.is_none() => match done {
                Ok(pipe) => return Ok(pipe),
                Err(err) => ice_failed = Some(err),
            },
        }
        if let (Some(relay), Some(ice)) = (&relay_failed, &ice_failed) {
            return Err(format!("no path connected ({ice}; {relay})"));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn with(paths: &[Path]) -> ConnectivityInfo {
        ConnectivityInfo {
            paths: paths.iter().map(|p| *p as i32).collect(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_new_negotiation_skips_what_the_last_one_left_behind() {
        use tucdesk_proto::v1::{IceCandidate, SessionDescription};
        let (queue, inbound) = mpsc::channel(8);
        let mut signaling = LinkSignaling::new("s", LinkHandle::default(), inbound);
        let signal = |signal| SessionSignal {
            session_id: "s".into(),
            signal: Some(signal),
        };
        let candidate = |text: &str| {
            signal(Signal::Candidate(IceCandidate {
                candidate: text.into(),
                ..Default::default()
            }))
        };
        let description = signal(Signal::Description(SessionDescription {
            sdp: "fresh".into(),
            ..Default::default()
        }));
        // Left from the first negotiation, then the resume's own signals (already queued when
        // the renewal is processed).
        for queued in [
            candidate("stale"),
            signal(Signal::EndOfCandidates(true)),
            description.clone(),
            candidate("fresh"),
        ] {
            queue.send(queued).await.unwrap();
        }
        signaling.expect_new_negotiation();
        assert_eq!(signaling.recv().await.unwrap(), Some(description));
        assert_eq!(signaling.recv().await.unwrap(), Some(candidate("fresh")));
    }

    #[test]
    fn the_allowed_paths_follow_rendezvous() {
        assert_eq!(allowed(&with(&[])), (true, true));
        assert_eq!(allowed(&with(&[Path::Ws])), (false, true));
        assert_eq!(allowed(&with(&[Path::Turn])), (true, false));
        assert_eq!(allowed(&with(&[Path::Direct, Path::Ws])), (true, true));
    }
}
