//! One agent stream: admission, then a single `select!` loop until it ends.

use std::collections::{HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use prost::Message as _;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};
use tucdesk_proto::limits::{
    MAX_ACTIVE_SESSION_IDS, MAX_AGENT_STREAM_MESSAGE_LEN, MAX_ICE_CANDIDATE_LEN, MAX_SDP_LEN,
};
use tucdesk_proto::v1::agent_message::Kind as AgentKind;
use tucdesk_proto::v1::server_message::Kind as ServerKind;
use tucdesk_proto::v1::session_signal::Signal;
use tucdesk_proto::v1::{
    AgentConfig, AgentDelivery, AgentMessage, ProtocolInfo, Reconnect, Register, Registered,
    RejectReason, Rejected, ServerMessage, SessionSignal,
};
use tucdesk_proto::validate;
use tucdesk_svc::bus::{Headers, Subscription};
use tucdesk_svc::sql::now_ms;

use super::{CloseCause, MISSED_HEARTBEATS, PresenceRecord, REGISTER_TIMEOUT, Registration};
use crate::enroll::check_host;
use crate::error::RendezvousError;
use crate::registration::{Attempt, REGISTRATION_REJECTED};
use crate::routing::{ACK_BUSY, ACK_DELIVERED, agent_subject};
use crate::service::Rendezvous;
use crate::store::agents;

/// Sessions remembered per stream as offered to (or confirmed owned by) this agent; the agent
/// may only speak about these.
const TRACKED_SESSIONS: usize = 256;
/// Messages an agent may send in a burst, and per second sustained; beyond that the stream
/// is closed (a well-behaved agent sends a heartbeat every 15 s and a few dozen signals per
/// session).
const MESSAGE_BURST: f64 = 200.0;
const MESSAGES_PER_SECOND: f64 = 50.0;
/// Upper bound of the random delay a draining replica asks agents to wait before they
/// reconnect, so a fleet does not reconnect in one burst.
const DRAIN_RECONNECT_SPREAD_MS: u32 = 5_000;
/// Largest bus delivery accepted (an encoded ServerMessage plus its envelope).
const MAX_DELIVERY_LEN: usize = MAX_AGENT_STREAM_MESSAGE_LEN + 1024;

type Outbound = mpsc::Sender<super::Queued>;

/// A `Rejected` message.
pub fn rejected(
    reason: RejectReason,
    message: &str,
    min_protocol_version: u32,
    retry_after_ms: u64,
) -> ServerMessage {
    ServerMessage {
        kind: Some(ServerKind::Rejected(Rejected {
            reason: reason as i32,
            message: message.to_owned(),
            min_protocol_version,
            retry_after_ms,
        })),
    }
}

/// Ends the stream with `err`: a `Rejected` message, then the matching status.
fn refuse(outbound: &Outbound, err: RendezvousError) {
    let reason = err.reason();
    let (min, retry) = match &err {
        RendezvousError::UpdateRequired { min, .. } => (*min, 0),
        RendezvousError::RateLimited { retry_after } => (
            0,
            u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
        ),
        _ => (0, 0),
    };
    let _ = outbound.try_send(Ok(Box::new(rejected(reason, &err.to_string(), min, retry))));
    let _ = outbound.try_send(Err(Status::from(err)));
}

/// Serves one Connect stream to its end.
pub(super) async fn serve(
    rdv: Rendezvous,
    mut inbound: Streaming<AgentMessage>,
    outbound: Outbound,
    source: Option<IpAddr>,
) {
    let first = tokio::select! {
        first = tokio::time::timeout(REGISTER_TIMEOUT, inbound.message()) => first,
        () = rdv.inner.draining.cancelled() => {
            let _ = outbound.try_send(Ok(Box::new(reconnect("this replica is shutting down"))));
            return;
        }
    };
    let register = match first {
        Ok(Ok(Some(AgentMessage {
            kind: Some(AgentKind::Register(register)),
        }))) => register,
        Ok(Ok(None) | Err(_)) => return,
        Ok(Ok(Some(_))) | Err(_) => {
            refuse(
                &outbound,
                RendezvousError::Registration {
                    reason: RejectReason::ProtocolViolation,
                    message: "the first message must be Register, within 10 s",
                },
            );
            return;
        }
    };
    // Admission, the message handlers and the cleanup are boxed: a task's future stores its
    // largest await inline for as long as the task lives, and these (database queries,
    // audit writes) would otherwise make every idle agent's task ~18 KiB.
    let Some(mut conn) = Box::pin(admit(&rdv, &register, source, &outbound)).await else {
        return;
    };
    let closed_by = conn.run(&mut inbound).await;
    Box::pin(conn.finish(closed_by)).await;
}

fn reconnect(reason: &str) -> ServerMessage {
    let spread = u32::from(tucdesk_crypto::rng::random_array::<2>().map_or(0, u16::from_be_bytes));
    ServerMessage {
        kind: Some(ServerKind::Reconnect(Reconnect {
            retry_after_ms: spread % DRAIN_RECONNECT_SPREAD_MS,
            reason: reason.to_owned(),
        })),
    }
}

/// Checks a Register and sets the stream up; `None` after refusing it.
async fn admit(
    rdv: &Rendezvous,
    register: &Register,
    source: Option<IpAddr>,
    outbound: &Outbound,
) -> Option<Connection> {
    let attempt = Attempt {
        action: REGISTRATION_REJECTED,
        source,
        protocol_version: register.protocol_version,
    };
    if let Err(err) = rdv.check_source(source).await {
        refuse(outbound, err);
        return None;
    }
    let claimed = register
        .proof
        .as_ref()
        .and_then(|p| tucdesk_crypto::PublicKey::from_slice(&p.agent_pubkey).ok())
        .map(|key| key.agent_id());
    let checked = check_register(rdv, register).await;
    let (proof, row) = match checked {
        Ok(ok) => ok,
        Err((err, team)) => {
            let err = match err {
                internal @ RendezvousError::Internal(_) => internal,
                err => {
                    rdv.reject(attempt, claimed.as_deref(), team.as_deref(), err)
                        .await
                }
            };
            refuse(outbound, err);
            return None;
        }
    };
    let Some(registration) = rdv.inner.agents.insert(&proof.agent_id, &row.team_id) else {
        refuse(
            outbound,
            RendezvousError::Unavailable("this replica is full"),
        );
        return None;
    };
    let conn = Connection::open(
        rdv,
        &proof.agent_id,
        &row,
        register,
        registration,
        outbound.clone(),
        source,
    )
    .await;
    match conn {
        Ok(conn) => Some(conn),
        Err(err) => {
            refuse(outbound, err);
            None
        }
    }
}

type Admission = (crate::registration::VerifiedProof, agents::AgentRow);

/// The proof and enrollment checks; the error carries the agent's team once the proof
/// verified (so a revoked agent's attempts land in its team's audit log).
async fn check_register(
    rdv: &Rendezvous,
    register: &Register,
) -> Result<Admission, (RendezvousError, Option<String>)> {
    let proof = rdv
        .verify_registration(register.protocol_version, register.proof.as_ref())
        .await
        .map_err(|err| (err, None))?;
    if register.active_session_ids.len() > MAX_ACTIVE_SESSION_IDS
        || register
            .active_session_ids
            .iter()
            .any(|id| validate::uuid("active_session_ids", id).is_err())
    {
        return Err((
            RendezvousError::InvalidArgument("active_session_ids: at most 64 UUIDs".into()),
            None,
        ));
    }
    if let Some(host) = &register.host {
        check_host(host).map_err(|err| (err, None))?;
    }
    let row = agents::find(rdv.db(), &proof.agent_id)
        .await
        .map_err(|err| (err, None))?;
    match row {
        None => Err((
            RendezvousError::Registration {
                reason: RejectReason::AgentNotEnrolled,
                message: "this key is not enrolled; run `tucdesk-agent enroll` first",
            },
            None,
        )),
        Some(row) if row.is_revoked() => Err((
            RendezvousError::Registration {
                reason: RejectReason::AgentRevoked,
                message: "this agent was revoked; reinstall it to get a new identity",
            },
            Some(row.team_id),
        )),
        Some(row) => Ok((proof, row)),
    }
}

/// A token bucket bounding the agent's message rate.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new() -> Self {
        Self {
            tokens: MESSAGE_BURST,
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * MESSAGES_PER_SECOND;
        self.tokens = (self.tokens + refill).min(MESSAGE_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Session ids this agent may speak about, oldest forgotten first.
#[derive(Debug, Default)]
struct Tracked {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl Tracked {
    fn insert(&mut self, session_id: &str) {
        if self.set.contains(session_id) {
            return;
        }
        if self.order.len() >= TRACKED_SESSIONS
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        self.order.push_back(session_id.to_owned());
        self.set.insert(session_id.to_owned());
    }

    fn contains(&self, session_id: &str) -> bool {
        self.set.contains(session_id)
    }
}

/// Why a stream ended, for the log, the audit event and what the agent is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    ByAgent,
    HeartbeatTimeout,
    Superseded,
    Revoked,
    Draining,
    SlowReader,
    Violation,
}

impl Ended {
    fn label(self) -> &'static str {
        match self {
            Ended::ByAgent => "closed_by_agent",
            Ended::HeartbeatTimeout => "heartbeat_timeout",
            Ended::Superseded => "superseded",
            Ended::Revoked => "revoked",
            Ended::Draining => "replica_draining",
            Ended::SlowReader => "not_reading",
            Ended::Violation => "protocol_violation",
        }
    }
}

struct Connection {
    rdv: Rendezvous,
    agent_id: String,
    team_id: String,
    registration: Registration,
    outbound: Outbound,
    deliveries: Subscription,
    connected_at_ms: i64,
    tracked: Tracked,
    bucket: Bucket,
    source: Option<IpAddr>,
}

impl Connection {
    async fn open(
        rdv: &Rendezvous,
        agent_id: &str,
        row: &agents::AgentRow,
        register: &Register,
        registration: Registration,
        outbound: Outbound,
        source: Option<IpAddr>,
    ) -> Result<Self, RendezvousError> {
        let now = now_ms();
        let heartbeat = rdv.config().heartbeat_interval;
        let record = PresenceRecord {
            replica: rdv.replica_id().to_owned(),
            connected_at_ms: now,
            last_seen_ms: now,
            active_sessions: 0,
        };
        let cleanup = |err: RendezvousError| {
            rdv.inner.agents.remove(agent_id, &registration.conn_id);
            err
        };
        let deliveries = rdv
            .inner
            .bus
            .subscribe(&agent_subject(agent_id))
            .await
            .map_err(|err| {
                cleanup(RendezvousError::internal(
                    "subscribing to agent deliveries",
                    err,
                ))
            })?;
        rdv.presence()
            .acquire(
                agent_id,
                &registration.conn_id,
                &record,
                heartbeat * MISSED_HEARTBEATS,
            )
            .await
            .map_err(|err| cleanup(RendezvousError::internal("taking the presence lease", err)))?;
        // Any other replica still holding an older stream of this agent drops it.
        rdv.notify_agent(
            agent_id,
            rejected(
                RejectReason::Superseded,
                "a newer connection of this agent replaced this one",
                0,
                0,
            ),
        )
        .await;
        rdv.metrics().connected_agents.inc();
        rdv.metrics()
            .registrations
            .with_label_values(&["accepted"])
            .inc();

        let host = register.host.clone().unwrap_or_default();
        let encoded_host = host.encode_to_vec();
        if let Err(err) = agents::touch(
            rdv.db(),
            agent_id,
            Some((&encoded_host, &host.hostname)),
            register.protocol_version,
            now,
        )
        .await
        {
            tracing::warn!(error = %err, "recording an agent's host facts failed");
        }
        let mut audit =
            crate::service::Rendezvous::agent_event(&row.team_id, "agent.registered", agent_id)
                .actor_display(&row.name)
                .context("outcome", "success")
                .context("protocol_version", register.protocol_version)
                .context("replica", rdv.replica_id());
        if let Some(ip) = source {
            audit = audit.context("client_ip", ip.to_string());
        }
        if let Err(err) = rdv.audit_alone(audit).await {
            tracing::error!(error = %err, "auditing a registration failed");
        }

        let mut tracked = Tracked::default();
        for session_id in &register.active_session_ids {
            tracked.insert(session_id);
        }
        let tags = agents::tags_of(rdv.db(), std::slice::from_ref(&row.agent_id))
            .await
            .unwrap_or_default()
            .remove(&row.agent_id)
            .unwrap_or_default();
        let registered = ServerMessage {
            kind: Some(ServerKind::Registered(Registered {
                agent_id: agent_id.to_owned(),
                team_id: row.team_id.clone(),
                name: row.name.clone(),
                tags,
                server_time_ms: u64::try_from(now).unwrap_or(0),
                heartbeat_interval_ms: u32::try_from(heartbeat.as_millis()).unwrap_or(u32::MAX),
                protocol: Some(ProtocolInfo {
                    protocol_version: tucdesk_proto::PROTOCOL_VERSION,
                    min_protocol_version: rdv.config().min_agent_version,
                    server_version: env!("CARGO_PKG_VERSION").to_owned(),
                }),
                config: Some(AgentConfig::default()),
                replica_id: rdv.replica_id().to_owned(),
            })),
        };
        let _ = outbound.try_send(Ok(Box::new(registered)));
        tracing::info!(agent_id, replica = rdv.replica_id(), "agent connected");
        Ok(Self {
            rdv: rdv.clone(),
            agent_id: agent_id.to_owned(),
            team_id: row.team_id.clone(),
            registration,
            outbound,
            deliveries,
            connected_at_ms: now,
            tracked,
            bucket: Bucket::new(),
            source,
        })
    }

    async fn run(&mut self, inbound: &mut Streaming<AgentMessage>) -> Ended {
        let silence = self.rdv.config().heartbeat_interval * MISSED_HEARTBEATS;
        let mut deadline = tokio::time::Instant::now() + silence;
        let draining = self.rdv.inner.draining.clone();
        let close = self.registration.close.clone();
        loop {
            tokio::select! {
                () = close.cancelled() => {
                    return match self.registration.cause() {
                        Some(CloseCause::Revoked) => {
                            self.say(rejected(RejectReason::AgentRevoked, "this agent was revoked", 0, 0));
                            Ended::Revoked
                        }
                        _ => {
                            self.say(rejected(RejectReason::Superseded, "a newer connection of this agent replaced this one", 0, 0));
                            Ended::Superseded
                        }
                    };
                }
                () = draining.cancelled() => {
                    self.say(reconnect("this replica is shutting down"));
                    return Ended::Draining;
                }
                () = tokio::time::sleep_until(deadline) => return Ended::HeartbeatTimeout,
                message = inbound.message() => match message {
                    Ok(Some(message)) => {
                        deadline = tokio::time::Instant::now() + silence;
                        if !self.bucket.take() {
                            self.say(rejected(RejectReason::LimitExceeded, "too many messages", 0, 0));
                            return Ended::Violation;
                        }
                        if let Some(ended) = Box::pin(self.on_agent_message(message)).await {
                            return ended;
                        }
                    }
                    Ok(None) | Err(_) => return Ended::ByAgent,
                },
                delivery = self.deliveries.next() => match delivery {
                    Some(delivery) => {
                        if let Some(ended) = Box::pin(self.on_delivery(delivery)).await {
                            return ended;
                        }
                    }
                    // The bus closed under us: end the stream so the agent reconnects to a
                    // replica that can route to it.
                    None => {
                        self.say(reconnect("routing is unavailable on this replica"));
                        return Ended::Draining;
                    }
                },
            }
        }
    }

    /// Queues a message for the agent, ignoring a full queue (the stream is ending anyway or
    /// the next write will notice).
    fn say(&self, message: ServerMessage) {
        let _ = self.outbound.try_send(Ok(Box::new(message)));
    }

    async fn on_agent_message(&mut self, message: AgentMessage) -> Option<Ended> {
        let kind = message.kind?;
        match kind {
            AgentKind::Register(_) => {
                self.say(rejected(
                    RejectReason::ProtocolViolation,
                    "Register may be sent only once",
                    0,
                    0,
                ));
                Some(Ended::Violation)
            }
            AgentKind::Heartbeat(heartbeat) => {
                self.rdv.metrics().heartbeats.inc();
                let record = PresenceRecord {
                    replica: self.rdv.replica_id().to_owned(),
                    connected_at_ms: self.connected_at_ms,
                    last_seen_ms: now_ms(),
                    active_sessions: heartbeat.active_sessions,
                };
                let ttl = self.rdv.config().heartbeat_interval * MISSED_HEARTBEATS;
                match self
                    .rdv
                    .presence()
                    .renew(&self.agent_id, &self.registration.conn_id, &record, ttl)
                    .await
                {
                    Ok(true) => None,
                    Ok(false) => {
                        self.say(rejected(
                            RejectReason::Superseded,
                            "a newer connection of this agent replaced this one",
                            0,
                            0,
                        ));
                        Some(Ended::Superseded)
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "renewing presence failed");
                        None
                    }
                }
            }
            AgentKind::OfferAnswer(answer) => {
                let session_id = answer.session_id.clone();
                self.forward_if_tracked(&session_id, AgentKind::OfferAnswer(answer))
                    .await;
                None
            }
            AgentKind::OfferProgress(progress) => {
                let session_id = progress.session_id.clone();
                self.forward_if_tracked(&session_id, AgentKind::OfferProgress(progress))
                    .await;
                None
            }
            AgentKind::Signal(signal) => {
                if !signal_in_bounds(&signal) {
                    self.say(rejected(
                        RejectReason::LimitExceeded,
                        "a signal exceeds its bounds",
                        0,
                        0,
                    ));
                    return Some(Ended::Violation);
                }
                let session_id = signal.session_id.clone();
                if self.owns(&session_id).await {
                    self.rdv
                        .publish_to_session(
                            &session_id,
                            &self.agent_id,
                            AgentMessage {
                                kind: Some(AgentKind::Signal(signal)),
                            },
                        )
                        .await;
                }
                None
            }
            AgentKind::SessionEvent(event) => {
                if self.owns(&event.session_id).await
                    && let Some(report) = event.report
                {
                    let actor = crate::sessions::ReportActor::Agent {
                        agent_id: &self.agent_id,
                    };
                    if let Err(err) = self
                        .rdv
                        .apply_session_report(&self.team_id, &event.session_id, &report, actor)
                        .await
                    {
                        tracing::warn!(error = %err, "applying an agent's session report failed");
                    }
                }
                None
            }
            AgentKind::Pong(_) | AgentKind::ConfigAck(_) => None,
        }
    }

    /// Whether this agent may speak about `session_id`: offered on this stream, listed at
    /// registration, or recorded as its session in the database.
    async fn owns(&mut self, session_id: &str) -> bool {
        if validate::uuid("session_id", session_id).is_err() {
            return false;
        }
        if self.tracked.contains(session_id) {
            return true;
        }
        match crate::store::sessions::find(self.rdv.db(), session_id).await {
            Ok(Some(row)) if row.agent_id == self.agent_id => {
                self.tracked.insert(session_id);
                true
            }
            Ok(_) => false,
            Err(err) => {
                tracing::warn!(error = %err, "looking up a session for an agent failed");
                false
            }
        }
    }

    async fn forward_if_tracked(&mut self, session_id: &str, kind: AgentKind) {
        if !self.tracked.contains(session_id) {
            tracing::warn!(agent_id = %self.agent_id, "agent answered an offer it was not sent");
            return;
        }
        self.rdv
            .publish_to_session(
                session_id,
                &self.agent_id,
                AgentMessage { kind: Some(kind) },
            )
            .await;
    }

    async fn on_delivery(&mut self, delivery: tucdesk_svc::bus::Message) -> Option<Ended> {
        let reply = delivery.reply.clone();
        let decoded = (delivery.payload.len() <= MAX_DELIVERY_LEN)
            .then(|| AgentDelivery::decode(delivery.payload).ok())
            .flatten()
            .filter(|d| d.agent_id == self.agent_id);
        let Some(AgentDelivery {
            origin_replica,
            message: Some(message),
            ..
        }) = decoded
        else {
            return None;
        };
        let mut ends = None;
        match &message.kind {
            Some(ServerKind::Rejected(rejection)) => {
                // Our own replica closes its streams through the local registry; a notice we
                // published ourselves is for other replicas.
                if origin_replica == self.rdv.replica_id() {
                    return None;
                }
                ends = Some(if rejection.reason == RejectReason::AgentRevoked as i32 {
                    Ended::Revoked
                } else {
                    Ended::Superseded
                });
            }
            Some(ServerKind::Offer(offer))
                if validate::uuid("session_id", &offer.session_id).is_ok() =>
            {
                self.tracked.insert(&offer.session_id);
            }
            _ => {}
        }
        let queued = self.outbound.try_send(Ok(Box::new(message)));
        let ack = if queued.is_ok() {
            ACK_DELIVERED
        } else {
            ACK_BUSY
        };
        if let Some(reply) = reply
            && let Err(err) = self
                .rdv
                .inner
                .bus
                .publish(&reply, Headers::new(), bytes::Bytes::from_static(ack))
                .await
        {
            tracing::warn!(error = %err, "acknowledging a delivery failed");
        }
        match queued {
            Ok(()) => ends,
            Err(mpsc::error::TrySendError::Full(_)) => Some(Ended::SlowReader),
            Err(mpsc::error::TrySendError::Closed(_)) => Some(Ended::ByAgent),
        }
    }

    /// Deregisters, releases presence and records the disconnect.
    async fn finish(self, ended: Ended) {
        let rdv = &self.rdv;
        rdv.inner
            .agents
            .remove(&self.agent_id, &self.registration.conn_id);
        rdv.metrics().connected_agents.dec();
        match rdv
            .presence()
            .release(&self.agent_id, &self.registration.conn_id)
            .await
        {
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "releasing presence failed"),
        }
        if let Err(err) = agents::touch(rdv.db(), &self.agent_id, None, 0, now_ms()).await {
            tracing::warn!(error = %err, "recording last seen failed");
        }
        let connected = Duration::from_millis(
            u64::try_from(now_ms().saturating_sub(self.connected_at_ms)).unwrap_or(0),
        );
        let mut audit =
            Rendezvous::agent_event(&self.team_id, "agent.disconnected", &self.agent_id)
                .context("reason", ended.label())
                .context(
                    "connected_ms",
                    u64::try_from(connected.as_millis()).unwrap_or(u64::MAX),
                )
                .context("replica", rdv.replica_id());
        if let Some(ip) = self.source {
            audit = audit.context("client_ip", ip.to_string());
        }
        if let Err(err) = rdv.audit_alone(audit).await {
            tracing::error!(error = %err, "auditing a disconnect failed");
        }
        tracing::info!(agent_id = %self.agent_id, reason = ended.label(), "agent disconnected");
    }
}

/// Whether a signal respects the SDP and candidate bounds.
fn signal_in_bounds(signal: &SessionSignal) -> bool {
    match &signal.signal {
        Some(Signal::Description(d)) => d.sdp.len() <= MAX_SDP_LEN,
        Some(Signal::Candidate(c)) => {
            c.candidate.len() <= MAX_ICE_CANDIDATE_LEN
                && c.sdp_mid.len() <= 256
                && c.username_fragment.len() <= 256
        }
        Some(Signal::EndOfCandidates(_)) | None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_sessions_are_bounded_and_forget_the_oldest() {
        let mut tracked = Tracked::default();
        for i in 0..(TRACKED_SESSIONS + 10) {
            tracked.insert(&format!("s{i}"));
        }
        assert_eq!(tracked.order.len(), TRACKED_SESSIONS);
        assert!(!tracked.contains("s0"));
        assert!(tracked.contains(&format!("s{}", TRACKED_SESSIONS + 9)));
    }

    #[test]
    fn a_burst_beyond_the_bucket_is_refused() {
        let mut bucket = Bucket::new();
        let allowed = (0..1000).filter(|_| bucket.take()).count();
        // The burst plus whatever refilled while the loop ran (well under one second).
        assert!(
            allowed >= MESSAGE_BURST as usize && allowed < 1000,
            "{allowed}"
        );
    }
}
