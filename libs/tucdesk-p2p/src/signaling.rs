//! How `SessionSignal`s travel, abstracted: the caller backs [`Signaling`] with the rendezvous
//! `SessionSignals` stream (viewer) or its share of the agent's `Connect` stream (agent), and
//! this crate checks everything that comes out of it ([`Inbound`]).

use async_trait::async_trait;
use tokio::sync::mpsc;
use tucdesk_proto::limits::{MAX_ICE_CANDIDATE_LEN, MAX_ICE_CANDIDATES_PER_SIDE, MAX_SDP_LEN};
use tucdesk_proto::v1::session_signal::Signal;
use tucdesk_proto::v1::{IceCandidate, SdpType, SessionSignal};

use crate::P2pError;

/// Longest `sdp_mid` / `username_fragment` of a candidate accepted (rendezvous' bound too).
pub const MAX_CANDIDATE_FIELD_LEN: usize = 256;
/// Signals naming another session that are skipped before the stream counts as broken.
pub const MAX_FOREIGN_SIGNALS: usize = 64;

/// Why the signaling channel failed.
#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    /// The channel ended (the other side, or the stream carrying it, went away).
    #[error("the signaling channel closed")]
    Closed,
    /// The channel failed (a gRPC status, a broken stream); the text is for the log.
    #[error("the signaling channel failed: {0}")]
    Failed(String),
}

/// A two-way channel of `SessionSignal`s for one session.
#[async_trait]
pub trait Signaling: Send {
    /// Sends one signal to the other side.
    async fn send(&mut self, signal: SessionSignal) -> Result<(), SignalingError>;

    /// The next signal from the other side, `Ok(None)` once the channel ended.
    ///
    /// Must be cancel safe: it runs in a `select!` beside the local ICE events, and a signal
    /// must not be lost when the other branch wins (an `mpsc` receiver and tonic's
    /// `Streaming::message` are).
    async fn recv(&mut self) -> Result<Option<SessionSignal>, SignalingError>;
}

/// One end of an in-process signaling pair (tests, and sides living in one process).
#[derive(Debug)]
pub struct MemorySignaling {
    tx: mpsc::Sender<SessionSignal>,
    rx: mpsc::Receiver<SessionSignal>,
}

/// Two connected in-process [`Signaling`] ends, each buffering up to `capacity` signals.
pub fn memory_pair(capacity: usize) -> (MemorySignaling, MemorySignaling) {
    let (a_tx, a_rx) = mpsc::channel(capacity.max(1));
    let (b_tx, b_rx) = mpsc::channel(capacity.max(1));
    (
        MemorySignaling { tx: a_tx, rx: b_rx },
        MemorySignaling { tx: b_tx, rx: a_rx },
    )
}

#[async_trait]
impl Signaling for MemorySignaling {
    async fn send(&mut self, signal: SessionSignal) -> Result<(), SignalingError> {
        self.tx
            .send(signal)
            .await
            .map_err(|_| SignalingError::Closed)
    }

    async fn recv(&mut self) -> Result<Option<SessionSignal>, SignalingError> {
        Ok(self.rx.recv().await)
    }
}

/// A peer signal that passed the checks.
#[derive(Debug)]
pub(crate) enum Checked {
    Description(String),
    Candidate(IceCandidate),
    EndOfCandidates,
    /// For another session: skipped.
    Foreign,
}

/// The checks on what the peer sends: its session, sizes, counts and order.
#[derive(Debug)]
pub(crate) struct Inbound {
    session_id: String,
    expected: SdpType,
    description_seen: bool,
    end_seen: bool,
    candidates: usize,
    foreign: usize,
}

impl Inbound {
    /// Checks for `session_id`, expecting the peer's description to be of type `expected`.
    pub(crate) fn new(session_id: &str, expected: SdpType) -> Self {
        Self {
            session_id: session_id.to_owned(),
            expected,
            description_seen: false,
            end_seen: false,
            candidates: 0,
            foreign: 0,
        }
    }

    pub(crate) fn check(&mut self, signal: SessionSignal) -> Result<Checked, P2pError> {
        if signal.session_id != self.session_id {
            self.foreign += 1;
            if self.foreign > MAX_FOREIGN_SIGNALS {
                return Err(P2pError::Protocol("too many signals for other sessions"));
            }
            tracing::debug!("skipping a signal for another session");
            return Ok(Checked::Foreign);
        }
        match signal.signal {
            None => Err(P2pError::Protocol("empty signal")),
            Some(Signal::Description(description)) => {
                if self.description_seen {
                    return Err(P2pError::Protocol("a second session description"));
                }
                if description.r#type != self.expected as i32 {
                    return Err(P2pError::Protocol("unexpected session description type"));
                }
                if description.sdp.is_empty() || description.sdp.len() > MAX_SDP_LEN {
                    return Err(P2pError::Protocol("SDP empty or larger than 16 KiB"));
                }
                self.description_seen = true;
                Ok(Checked::Description(description.sdp))
            }
            Some(Signal::Candidate(candidate)) => {
                if self.end_seen {
                    return Err(P2pError::Protocol("a candidate after end of candidates"));
                }
                if candidate.candidate.is_empty()
                    || candidate.candidate.len() > MAX_ICE_CANDIDATE_LEN
                    || candidate.sdp_mid.len() > MAX_CANDIDATE_FIELD_LEN
                    || candidate.username_fragment.len() > MAX_CANDIDATE_FIELD_LEN
                    || candidate.sdp_mline_index > u32::from(u16::MAX)
                    || candidate.candidate.chars().any(char::is_control)
                {
                    return Err(P2pError::Protocol("ICE candidate empty or oversized"));
                }
                self.candidates += 1;
                if self.candidates > MAX_ICE_CANDIDATES_PER_SIDE {
                    return Err(P2pError::Protocol("more than 64 ICE candidates"));
                }
                Ok(Checked::Candidate(candidate))
            }
            Some(Signal::EndOfCandidates(_)) => {
                self.end_seen = true;
                Ok(Checked::EndOfCandidates)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tucdesk_proto::v1::SessionDescription;

    const SESSION: &str = "0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b";

    fn candidate(text: &str) -> SessionSignal {
        SessionSignal {
            session_id: SESSION.into(),
            signal: Some(Signal::Candidate(IceCandidate {
                candidate: text.into(),
                ..Default::default()
            })),
        }
    }

    fn description(kind: SdpType, sdp: String) -> SessionSignal {
        SessionSignal {
            session_id: SESSION.into(),
            signal: Some(Signal::Description(SessionDescription {
                r#type: kind as i32,
                sdp,
            })),
        }
    }

    #[test]
    fn oversized_sdp_and_candidates_are_refused() {
        let mut inbound = Inbound::new(SESSION, SdpType::Answer);
        assert!(matches!(
            inbound.check(description(SdpType::Answer, "v".repeat(MAX_SDP_LEN + 1))),
            Err(P2pError::Protocol(_))
        ));
        let mut inbound = Inbound::new(SESSION, SdpType::Answer);
        assert!(matches!(
            inbound.check(candidate(&"c".repeat(MAX_ICE_CANDIDATE_LEN + 1))),
            Err(P2pError::Protocol(_))
        ));
        let mut long_mid = candidate("candidate:1 1 udp 1 127.0.0.1 9 typ host");
        if let Some(Signal::Candidate(c)) = &mut long_mid.signal {
            c.sdp_mid = "m".repeat(MAX_CANDIDATE_FIELD_LEN + 1);
        }
        assert!(inbound.check(long_mid).is_err());
        assert!(inbound.check(candidate("candidate:1\n")).is_err());
    }

    #[test]
    fn at_most_64_candidates_per_side() {
        let mut inbound = Inbound::new(SESSION, SdpType::Offer);
        for _ in 0..MAX_ICE_CANDIDATES_PER_SIDE {
            inbound
                .check(candidate("candidate:1 1 udp 1 127.0.0.1 9 typ host"))
                .unwrap();
        }
        assert!(matches!(
            inbound.check(candidate("candidate:1 1 udp 1 127.0.0.1 9 typ host")),
            Err(P2pError::Protocol("more than 64 ICE candidates"))
        ));
    }

    #[test]
    fn descriptions_must_be_single_and_of_the_expected_type() {
        let mut inbound = Inbound::new(SESSION, SdpType::Answer);
        assert!(
            inbound
                .check(description(SdpType::Offer, "v=0".into()))
                .is_err()
        );
        let mut inbound = Inbound::new(SESSION, SdpType::Answer);
        assert!(matches!(
            inbound
                .check(description(SdpType::Answer, "v=0".into()))
                .unwrap(),
            Checked::Description(_)
        ));
        assert!(
            inbound
                .check(description(SdpType::Answer, "v=0".into()))
                .is_err()
        );
    }

    #[test]
    fn signals_for_other_sessions_are_skipped_then_refused() {
        let mut inbound = Inbound::new(SESSION, SdpType::Answer);
        let mut foreign = description(SdpType::Answer, "v=0".into());
        foreign.session_id = "another".into();
        for _ in 0..MAX_FOREIGN_SIGNALS {
            assert!(matches!(
                inbound.check(foreign.clone()).unwrap(),
                Checked::Foreign
            ));
        }
        assert!(inbound.check(foreign).is_err());
        // A signal without a session id is not ours either.
        let mut inbound = Inbound::new(SESSION, SdpType::Answer);
        let mut unnamed = description(SdpType::Answer, "v=0".into());
        unnamed.session_id.clear();
        assert!(matches!(inbound.check(unnamed).unwrap(), Checked::Foreign));
        // The foreign ones did not use up the description.
        assert!(matches!(
            inbound
                .check(description(SdpType::Answer, "v=0".into()))
                .unwrap(),
            Checked::Description(_)
        ));
    }

    #[test]
    fn no_candidate_after_end_of_candidates() {
        let mut inbound = Inbound::new(SESSION, SdpType::Answer);
        let end = SessionSignal {
            session_id: SESSION.into(),
            signal: Some(Signal::EndOfCandidates(true)),
        };
        assert!(matches!(
            inbound.check(end).unwrap(),
            Checked::EndOfCandidates
        ));
        assert!(
            inbound
                .check(candidate("candidate:1 1 udp 1 127.0.0.1 9 typ host"))
                .is_err()
        );
    }
}
