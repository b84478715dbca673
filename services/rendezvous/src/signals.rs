//! OperatorService.SessionSignals: ICE signaling between the session's operator and its agent.
//! Plain metadata (SDP, candidates): the session's content is protected end to end above the
//! data channel, so a rendezvous that tampered with signals could only break the path.

use std::time::Duration;

use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status, Streaming};
use tucdesk_proto::limits::{MAX_ICE_CANDIDATE_LEN, MAX_ICE_CANDIDATES_PER_SIDE, MAX_SDP_LEN};
use tucdesk_proto::v1::agent_message::Kind as AgentKind;
use tucdesk_proto::v1::server_message::Kind as ServerKind;
use tucdesk_proto::v1::session_signal::Signal;
use tucdesk_proto::v1::{ServerMessage, SessionDelivery, SessionSignal};
use tucdesk_proto::validate;

use crate::error::RendezvousError;
use crate::routing::session_subject;
use crate::service::Rendezvous;
use crate::store::sessions;

/// How long the first message (naming the session) may take.
const FIRST_SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);
/// A signaling stream quiet in both directions this long is closed.
const SIGNAL_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Signals queued towards the operator.
const SIGNAL_QUEUE: usize = 64;
/// Largest session delivery accepted from the bus.
const MAX_DELIVERY_LEN: usize = MAX_SDP_LEN + 4096;

/// Checks one signal's bounds; candidates are counted by the caller.
fn check_signal(signal: &SessionSignal) -> Result<(), &'static str> {
    match &signal.signal {
        Some(Signal::Description(d)) if d.sdp.len() > MAX_SDP_LEN => Err("SDP larger than 16 KiB"),
        Some(Signal::Candidate(c))
            if c.candidate.len() > MAX_ICE_CANDIDATE_LEN
                || c.sdp_mid.len() > 256
                || c.username_fragment.len() > 256 =>
        {
            Err("ICE candidate larger than 1 KiB")
        }
        None => Err("empty signal"),
        _ => Ok(()),
    }
}

impl Rendezvous {
    pub async fn session_signals(
        &self,
        request: Request<Streaming<SessionSignal>>,
    ) -> Result<ReceiverStream<Result<SessionSignal, Status>>, RendezvousError> {
        let caller = self.caller(&request).await?;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(FIRST_SIGNAL_TIMEOUT, inbound.message())
            .await
            .map_err(|_| RendezvousError::InvalidArgument("no signal within 10 s".into()))?
            .map_err(|_| RendezvousError::InvalidArgument("the signal stream failed".into()))?
            .ok_or_else(|| {
                RendezvousError::InvalidArgument("the first signal names the session".into())
            })?;
        validate::uuid("session_id", &first.session_id).map_err(RendezvousError::invalid)?;
        let row = sessions::find_in_team(self.db(), caller.team_id(), &first.session_id)
            .await?
            .filter(|row| row.user_id == caller.user_id())
            .ok_or(RendezvousError::NotFound("session"))?;
        if !row.is_live() {
            return Err(RendezvousError::refused(
                tucdesk_proto::v1::RejectReason::SessionEnded,
                "the session has ended",
            ));
        }
        let slot =
            self.inner
                .signal_streams
                .try_take(&row.id)
                .ok_or(RendezvousError::LimitExceeded(
                    "too many signaling streams for this session",
                ))?;
        let mut deliveries = self
            .inner
            .bus
            .subscribe(&session_subject(&row.id))
            .await
            .map_err(|err| RendezvousError::internal("subscribing to session signals", err))?;
        let (outbound, receiver) = mpsc::channel(SIGNAL_QUEUE);
        let rdv = self.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let session_id = row.id.clone();
            let agent_id = row.agent_id.clone();
            let mut candidates = 0usize;
            let mut next = Some(first);
            loop {
                if let Some(mut signal) = next.take() {
                    if let Err(why) = check_signal(&signal) {
                        let _ = outbound.try_send(Err(Status::invalid_argument(why)));
                        return;
                    }
                    if !signal.session_id.is_empty() && signal.session_id != session_id {
                        let _ = outbound
                            .try_send(Err(Status::invalid_argument("one session per stream")));
                        return;
                    }
                    if matches!(signal.signal, Some(Signal::Candidate(_))) {
                        candidates += 1;
                        if candidates > MAX_ICE_CANDIDATES_PER_SIDE {
                            let _ = outbound.try_send(Err(Status::resource_exhausted(
                                "more than 64 ICE candidates",
                            )));
                            return;
                        }
                    }
                    signal.session_id = session_id.clone();
                    let message = ServerMessage {
                        kind: Some(ServerKind::Signal(signal)),
                    };
                    rdv.notify_agent(&agent_id, message).await;
                }
                tokio::select! {
                    () = outbound.closed() => return,
                    () = rdv.inner.draining.cancelled() => {
                        let _ = outbound.try_send(Err(Status::unavailable("rendezvous is restarting")));
                        return;
                    }
                    () = tokio::time::sleep(SIGNAL_IDLE_TIMEOUT) => {
                        let _ = outbound.try_send(Err(Status::deadline_exceeded("signaling idle")));
                        return;
                    }
                    message = inbound.message() => match message {
                        Ok(Some(signal)) => next = Some(signal),
                        Ok(None) | Err(_) => return,
                    },
                    delivery = deliveries.next() => {
                        let Some(delivery) = delivery else { return };
                        if delivery.payload.len() > MAX_DELIVERY_LEN {
                            continue;
                        }
                        let Ok(delivery) = SessionDelivery::decode(delivery.payload) else { continue };
                        if delivery.agent_id != agent_id || delivery.session_id != session_id {
                            continue;
                        }
                        if let Some(AgentKind::Signal(signal)) = delivery.message.and_then(|m| m.kind)
                            && let Err(mpsc::error::TrySendError::Full(_)) = outbound.try_send(Ok(signal))
                        {
                            let _ = outbound
                                .send(Err(Status::resource_exhausted("signals are not being read")))
                                .await;
                            return;
                        }
                    }
                }
            }
        });
        Ok(ReceiverStream::new(receiver))
    }
}
