//! The agent's long-lived link to rendezvous: a fresh registration proof on every connect,
//! heartbeats, offers answered after the agent's own checks, and reconnects with jittered
//! exponential backoff (so a rendezvous restart does not bring every agent back at once).
//! Sessions run on the relay, not on the link: they outlive a reconnect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tucdesk_crypto::Identity;
use tucdesk_proto::v1::agent_link_client::AgentLinkClient;
use tucdesk_proto::v1::agent_message::Kind as AgentKind;
use tucdesk_proto::v1::offer_answer::Result as AnswerResult;
use tucdesk_proto::v1::server_message::Kind as ServerKind;
use tucdesk_proto::v1::{
    AgentMessage, AgentPong, CloseReason, ConfigAck, ConnectivityInfo, ConnectivityUpdate,
    GetServerInfoRequest, GetServerInfoResponse, HandshakeReply, Heartbeat, HostInfo, Offer,
    OfferAnswer, OfferProgress, OfferRefusal, OfferStage, Register, RegistrationProof,
    RejectReason, SessionSignal, SoftwareInfo,
};
use tucdesk_token::{KeySet, TokenVerifier};
use tucdesk_transport::DialOptions;

use crate::consent::Consent;
use crate::offer::{AgentView, Refusal, verify_offer};
use crate::session::{SessionLimits, Stop};
use crate::state::Enrollment;

/// Messages queued towards rendezvous.
const SEND_QUEUE: usize = 128;
/// Largest message accepted from rendezvous (the protocol's 64 KiB plus framing slack).
const MAX_SERVER_MESSAGE: usize = 80 * 1024;
/// Time allowed for Registered after connecting.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(15);
/// Backoff between reconnects: doubles from the first to the last, with full jitter.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// After a permanent refusal (revoked, not enrolled, too old), at least this long.
const PERMANENT_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// A link that stayed up this long resets the backoff.
const STABLE_LINK: Duration = Duration::from_secs(60);
/// Longest wait for the person at the host, whatever the offer's deadline says.
const MAX_CONSENT_WAIT: Duration = Duration::from_secs(120);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why a link ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("rendezvous refused the agent ({reason}): {message}")]
    Refused {
        reason: String,
        message: String,
        permanent: bool,
        retry_after: Duration,
    },
    #[error("{0}")]
    Transient(String),
}

/// Sends to rendezvous on whichever link is current; sessions report through it and lose
/// only their report if no link is up at that moment.
#[derive(Debug, Clone, Default)]
pub struct LinkHandle {
    current: Arc<Mutex<Option<mpsc::Sender<AgentMessage>>>>,
}

impl LinkHandle {
    fn set(&self, sender: Option<mpsc::Sender<AgentMessage>>) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = sender;
    }

    /// Queues `kind`, waiting while the link's queue is full; `Err` when the link is down.
    pub async fn send(&self, kind: AgentKind) -> Result<(), ()> {
        let sender = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(())?;
        sender
            .send(AgentMessage { kind: Some(kind) })
            .await
            .map_err(|_| ())
    }

    /// Queues `kind` without waiting; dropped when the link is down or saturated.
    pub fn send_best_effort(&self, kind: AgentKind) {
        let sender = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(sender) = sender {
            let _ = sender.try_send(AgentMessage { kind: Some(kind) });
        }
    }
}

/// How the agent runs.
#[derive(Debug)]
pub struct AgentOptions {
    pub max_sessions: usize,
    pub limits: SessionLimits,
    pub consent: Consent,
    pub dial: DialOptions,
    /// The direct and TURN paths (local UDP addresses, deadline).
    pub p2p: tucdesk_p2p::P2pOptions,
    /// Stop after this many sessions ended (one-time support sessions); `None` = run forever.
    pub session_quota: Option<usize>,
    /// Where session recordings are spooled and queued for upload (`{state}/recordings`);
    /// `None` = this agent cannot record (teams that require recording get no session).
    pub recordings: Option<crate::recording::Recordings>,
}

/// A running agent.
pub struct Agent {
    identity: Arc<Identity>,
    enrollment: Enrollment,
    options: AgentOptions,
    link: LinkHandle,
    verifier: TokenVerifier,
    keys: KeySet,
    /// Offers and sessions in progress, by session id.
    active: Arc<Mutex<HashMap<String, Stop>>>,
    /// Where ICE signals from each session's operator go (the session's negotiation).
    signals: Routes<SessionSignal>,
    /// Where each session's path renewals go (its resume attempts).
    renewals: Routes<ConnectivityInfo>,
    slots: Arc<Semaphore>,
    consent: Arc<Consent>,
    /// Cancelled when the session quota is used up.
    done: CancellationToken,
    finished_sessions: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("agent_id", &self.enrollment.agent_id)
            .finish_non_exhaustive()
    }
}

/// Host facts for display and audit (never trusted for authorization).
pub fn host_info() -> HostInfo {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let os_release = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    let clip = |mut s: String| {
        s.truncate(tucdesk_proto::limits::MAX_HOST_FIELD_LEN);
        s
    };
    HostInfo {
        hostname: clip(hostname),
        agent: Some(SoftwareInfo {
            name: "tucdesk-agent".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
        }),
        os_release: clip(os_release),
        kernel: clip(kernel),
        addresses: Vec::new(),
    }
}

/// A registration proof as the wire carries it, signed now.
pub fn registration_proof(
    identity: &Identity,
    audience: &str,
) -> Result<RegistrationProof, tucdesk_crypto::registration::RegistrationProofCreateError> {
    tucdesk_transport::proofs::registration_proof(identity, audience, now_ms())
}

/// A client for the AgentLink service at `server`.
pub fn agent_client(
    server: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<AgentLinkClient<Channel>, tucdesk_transport::rpc::RpcSetupError> {
    Ok(
        AgentLinkClient::new(tucdesk_transport::rpc::channel(server, ca_file, true)?)
            .max_decoding_message_size(MAX_SERVER_MESSAGE),
    )
}

/// GetServerInfo with a bound, checking the audience and clock against ours.
pub async fn server_info(
    client: &mut AgentLinkClient<Channel>,
) -> Result<GetServerInfoResponse, LinkError> {
    let info = tokio::time::timeout(
        tucdesk_transport::rpc::CALL_TIMEOUT,
        client.get_server_info(GetServerInfoRequest {}),
    )
    .await
    .map_err(|_| LinkError::Transient("rendezvous did not answer GetServerInfo in time".into()))?
    .map_err(|status| LinkError::Transient(tucdesk_transport::rpc::describe(&status)))?
    .into_inner();
    let skew = info.server_time_ms.abs_diff(now_ms());
    if skew > u64::from(info.max_clock_skew_ms.max(1)) {
        return Err(LinkError::Refused {
            reason: "clock skew".into(),
            message: format!(
                "this host's clock is {} s away from the server's; fix NTP on this host",
                skew / 1000
            ),
            permanent: false,
            retry_after: BACKOFF_MAX,
        });
    }
    Ok(info)
}

fn proto_jwks_to_keys(
    jwks: &tucdesk_proto::v1::Jwks,
) -> Result<Vec<(String, tucdesk_crypto::PublicKey)>, tucdesk_token::JwkError> {
    tucdesk_token::Jwks {
        keys: jwks
            .keys
            .iter()
            .map(|k| tucdesk_token::Jwk {
                kty: k.kty.clone(),
                crv: k.crv.clone(),
                x: k.x.clone(),
                kid: k.kid.clone(),
                use_: k.r#use.clone(),
                alg: k.alg.clone(),
            })
            .collect(),
    }
    .public_keys()
}

impl Agent {
    pub fn new(identity: Identity, enrollment: Enrollment, mut options: AgentOptions) -> Self {
        let consent = Arc::new(std::mem::replace(
            &mut options.consent,
            Consent::Unavailable,
        ));
        let keys = KeySet::new();
        // The issuer is learned from the server; until then no token verifies.
        let verifier = TokenVerifier::new(keys.clone(), "", &enrollment.agent_id);
        let slots = Arc::new(Semaphore::new(options.max_sessions.max(1)));
        Self {
            identity: Arc::new(identity),
            enrollment,
            link: LinkHandle::default(),
            verifier,
            keys,
            active: Arc::default(),
            signals: Arc::default(),
            renewals: Arc::default(),
            slots,
            consent,
            done: CancellationToken::new(),
            finished_sessions: Arc::default(),
            options,
        }
    }

    /// Trusts the token keys and issuer the server published.
    fn learn_keys(&mut self, info: &GetServerInfoResponse) -> Result<(), LinkError> {
        let jwks = info.jwks.clone().unwrap_or_default();
        let keys = proto_jwks_to_keys(&jwks)
            .map_err(|err| LinkError::Transient(format!("the server's token keys: {err}")))?;
        self.keys
            .replace(keys)
            .map_err(|err| LinkError::Transient(format!("the server's token keys: {err}")))?;
        self.verifier = TokenVerifier::new(
            self.keys.clone(),
            &info.token_issuer,
            &self.enrollment.agent_id,
        );
        Ok(())
    }

    /// Runs until `shutdown` (or the session quota is used up), reconnecting as needed.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), LinkError> {
        let mut backoff = BACKOFF_FIRST;
        let uploads = CancellationToken::new();
        if let Some(recordings) = self.options.recordings.clone() {
            // Before any session can start a spool: finish what a crash left behind.
            let (r, identity) = (recordings.clone(), self.identity.clone());
            let _ =
                tokio::task::spawn_blocking(move || crate::upload::recover(&r, &identity)).await;
            tokio::spawn(crate::upload::run(
                recordings,
                self.identity.clone(),
                uploads.clone(),
            ));
        }
        let _stop_uploads = uploads.drop_guard();
        let quit = {
            let (shutdown, done) = (shutdown.clone(), self.done.clone());
            async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = done.cancelled() => {}
                }
            }
        };
        tokio::pin!(quit);
        loop {
            let started = Instant::now();
            let outcome = tokio::select! {
                outcome = self.connect_once() => outcome,
                () = &mut quit => break,
            };
            self.link.set(None);
            let wait = match outcome {
                Ok(retry_after) => {
                    tracing::info!("rendezvous asked the agent to reconnect");
                    backoff = BACKOFF_FIRST;
                    retry_after
                }
                Err(LinkError::Refused {
                    reason,
                    message,
                    permanent,
                    retry_after,
                }) => {
                    tracing::error!(%reason, %message, "rendezvous refused the agent");
                    if permanent {
                        PERMANENT_BACKOFF.max(retry_after)
                    } else {
                        retry_after.max(jitter(backoff))
                    }
                }
                Err(LinkError::Transient(message)) => {
                    if started.elapsed() >= STABLE_LINK {
                        backoff = BACKOFF_FIRST;
                    }
                    let wait = jitter(backoff);
                    tracing::warn!(error = %message, retry_in_ms = wait.as_millis() as u64, "link to rendezvous lost");
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    wait
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = &mut quit => break,
            }
        }
        self.stop_all(CloseReason::AgentShutdown).await;
        Ok(())
    }

    /// Ends every offer and session, giving them a moment to tell their operators.
    async fn stop_all(&self, reason: CloseReason) {
        let stops: Vec<Stop> = self
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for stop in &stops {
            stop.stop(reason);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline
            && !self
                .active
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One connection: register, then serve the stream. `Ok(delay)` = reconnect after delay.
    async fn connect_once(&mut self) -> Result<Duration, LinkError> {
        let mut client = agent_client(&self.enrollment.server, self.enrollment.ca_file.as_deref())
            .map_err(|err| LinkError::Refused {
                reason: "configuration".into(),
                message: err.to_string(),
                permanent: true,
                retry_after: PERMANENT_BACKOFF,
            })?;
        let info = server_info(&mut client).await?;
        if info.audience != self.enrollment.audience {
            return Err(LinkError::Refused {
                reason: "audience mismatch".into(),
                message: format!(
                    "the server is deployment {:?}, this agent enrolled with {:?}",
                    tucdesk_transport::ws::printable(&info.audience),
                    self.enrollment.audience
                ),
                permanent: true,
                retry_after: PERMANENT_BACKOFF,
            });
        }
        self.learn_keys(&info)?;

        let (sender, receiver) = mpsc::channel(SEND_QUEUE);
        let proof = registration_proof(&self.identity, &self.enrollment.audience)
            .map_err(|err| LinkError::Transient(format!("signing the registration: {err}")))?;
        let active_session_ids: Vec<String> = self
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .take(64)
            .cloned()
            .collect();
        let register = AgentMessage {
            kind: Some(AgentKind::Register(Register {
                protocol_version: tucdesk_proto::PROTOCOL_VERSION,
                proof: Some(proof),
                host: Some(host_info()),
                active_session_ids,
                config_version: 0,
            })),
        };
        sender
            .send(register)
            .await
            .map_err(|_| LinkError::Transient("link closed".into()))?;
        let mut inbound = client
            .connect(ReceiverStream::new(receiver))
            .await
            .map_err(|status| status_error(&status))?
            .into_inner();
        let first = tokio::time::timeout(REGISTER_TIMEOUT, inbound.message())
            .await
            .map_err(|_| LinkError::Transient("no answer to Register in time".into()))?
            .map_err(|status| status_error(&status))?
            .ok_or_else(|| LinkError::Transient("the stream ended before Registered".into()))?;
        let registered = match first.kind {
            Some(ServerKind::Registered(registered)) => registered,
            Some(ServerKind::Rejected(rejected)) => return Err(rejected_error(&rejected)),
            _ => return Err(LinkError::Transient("unexpected first message".into())),
        };
        tracing::info!(
            agent = %self.enrollment.name,
            fingerprint = %self.enrollment.fingerprint,
            server = %self.enrollment.server,
            "connected to rendezvous"
        );
        self.link.set(Some(sender.clone()));
        let interval = Duration::from_millis(
            u64::from(registered.heartbeat_interval_ms).clamp(1_000, 300_000),
        );
        let mut heartbeat = tokio::time::interval(interval);
        heartbeat.tick().await;

        loop {
            tokio::select! {
                _ = heartbeat.tick() => {
                    let active = self.active.lock().unwrap_or_else(PoisonError::into_inner).len();
                    let beat = AgentKind::Heartbeat(Heartbeat {
                        sent_at_ms: now_ms(),
                        active_sessions: u32::try_from(active).unwrap_or(u32::MAX),
                        load_centi: load_centi(),
                    });
                    if sender.send(AgentMessage { kind: Some(beat) }).await.is_err() {
                        return Err(LinkError::Transient("link closed".into()));
                    }
                }
                message = inbound.message() => {
                    let message = match message {
                        Ok(Some(message)) => message,
                        Ok(None) => return Err(LinkError::Transient("rendezvous closed the stream".into())),
                        Err(status) => return Err(status_error(&status)),
                    };
                    match message.kind {
                        Some(ServerKind::Offer(offer)) => self.on_offer(offer, &client),
                        Some(ServerKind::CancelOffer(cancel)) => self.stop(&cancel.session_id, CloseReason::Terminated),
                        Some(ServerKind::TerminateSession(end)) => {
                            tracing::info!(session_id = %end.session_id, "rendezvous ended a session");
                            self.stop(&end.session_id, CloseReason::Terminated);
                        }
                        Some(ServerKind::Ping(ping)) => {
                            self.link.send_best_effort(AgentKind::Pong(AgentPong { nonce: ping.nonce }));
                        }
                        Some(ServerKind::ConfigUpdate(config)) => {
                            self.link.send_best_effort(AgentKind::ConfigAck(ConfigAck { config_version: config.config_version }));
                        }
                        Some(ServerKind::Reconnect(reconnect)) => {
                            return Ok(Duration::from_millis(u64::from(reconnect.retry_after_ms)).min(BACKOFF_MAX));
                        }
                        Some(ServerKind::Rejected(rejected)) => return Err(rejected_error(&rejected)),
                        Some(ServerKind::Signal(signal)) => self.route_signal(signal),
                        Some(ServerKind::ConnectivityUpdate(update)) => self.route_renewal(update),
                        Some(ServerKind::Registered(_)) | None => {}
                    }
                }
            }
        }
    }

    fn stop(&self, session_id: &str, reason: CloseReason) {
        if let Some(stop) = self
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(session_id)
        {
            stop.stop(reason);
        }
    }

    fn refuse(&self, session_id: &str, refusal: &Refusal) {
        send_refusal(&self.link, session_id, refusal);
    }

    /// Hands an ICE signal to its session's negotiation; signals for sessions this agent is
    /// not negotiating, or beyond what a negotiation reads, are dropped (the negotiation
    /// bounds what it accepts itself).
    fn route_signal(&self, signal: SessionSignal) {
        let session_id = signal.session_id.clone();
        route(&self.signals, &session_id, signal);
    }

    /// Hands fresh tickets to a running session whose viewer is resuming it.
    fn route_renewal(&self, update: ConnectivityUpdate) {
        if let Some(connectivity) = update.connectivity
            && route(&self.renewals, &update.session_id, connectivity)
        {
            tracing::info!(session_id = %update.session_id, "the viewer is resuming a session");
        }
    }

    /// Handles an offer on its own task (consent may take a while).
    fn on_offer(&self, offer: Offer, client: &AgentLinkClient<Channel>) {
        let session_id = offer.session_id.clone();
        tracing::info!(
            session_id = %tucdesk_transport::ws::printable(&session_id),
            operator = %tucdesk_transport::ws::printable(
                &offer.operator.as_ref().map(|o| o.email.clone()).unwrap_or_default()
            ),
            "offer received"
        );
        if tucdesk_proto::validate::uuid("session_id", &session_id).is_err() {
            self.refuse(
                &session_id,
                &Refusal::new(RejectReason::InvalidArgument, "malformed session id"),
            );
            return;
        }
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            self.refuse(
                &session_id,
                &Refusal::new(
                    RejectReason::AgentBusy,
                    "this host has no free session slot",
                ),
            );
            return;
        };
        let stop = Stop::default();
        {
            let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
            if active.contains_key(&session_id) {
                self.refuse(
                    &session_id,
                    &Refusal::new(RejectReason::AlreadyExists, "this session id is in use"),
                );
                return;
            }
            active.insert(session_id.clone(), stop.clone());
        }
        let (signal_sender, signals) = mpsc::channel(crate::paths::SIGNAL_QUEUE);
        self.signals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session_id.clone(), signal_sender);
        let (renewal_sender, renewals) = mpsc::channel(crate::resume::RENEWAL_QUEUE);
        self.renewals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session_id.clone(), renewal_sender);
        let task = OfferTask {
            identity: self.identity.clone(),
            agent_id: self.enrollment.agent_id.clone(),
            team_id: self.enrollment.team_id.clone(),
            limits: self.enrollment.limits,
            verifier: self.verifier.clone(),
            keys: self.keys.clone(),
            client: client.clone(),
            link: self.link.clone(),
            consent: self.consent.clone(),
            session_limits: self.options.limits.clone(),
            dial: self.options.dial.clone(),
            p2p: self.options.p2p.clone(),
            recordings: self.options.recordings.clone(),
            signals,
            renewals,
        };
        let active = self.active.clone();
        let routes = self.signals.clone();
        let renewal_routes = self.renewals.clone();
        let finished = self.finished_sessions.clone();
        let quota = self.options.session_quota;
        let done = self.done.clone();
        tokio::spawn(async move {
            let served = task.handle(offer, stop).await;
            active
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&session_id);
            routes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&session_id);
            renewal_routes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&session_id);
            drop(permit);
            if served {
                let count = finished.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
                if quota.is_some_and(|quota| count >= quota) {
                    done.cancel();
                }
            }
        });
    }
}

/// What one offer's task needs.
struct OfferTask {
    identity: Arc<Identity>,
    agent_id: String,
    team_id: String,
    limits: crate::state::LocalLimits,
    verifier: TokenVerifier,
    keys: KeySet,
    client: AgentLinkClient<Channel>,
    link: LinkHandle,
    consent: Arc<Consent>,
    session_limits: SessionLimits,
    dial: DialOptions,
    p2p: tucdesk_p2p::P2pOptions,
    recordings: Option<crate::recording::Recordings>,
    /// ICE signals from the operator for this offer's session.
    signals: mpsc::Receiver<SessionSignal>,
    /// Path renewals for resuming this offer's session.
    renewals: mpsc::Receiver<ConnectivityInfo>,
}

impl OfferTask {
    fn refuse(&self, session_id: &str, refusal: Refusal) {
        send_refusal(&self.link, session_id, &refusal);
    }

    fn progress(&self, session_id: &str, stage: OfferStage) {
        self.link
            .send_best_effort(AgentKind::OfferProgress(OfferProgress {
                session_id: session_id.to_owned(),
                stage: stage as i32,
            }));
    }

    /// Checks, asks, answers and serves one offer; true when a session ran.
    async fn handle(mut self, offer: Offer, stop: Stop) -> bool {
        let session_id = offer.session_id.clone();
        self.progress(&session_id, OfferStage::Verifying);
        let agent_key = self.identity.public_key();
        let view = AgentView {
            agent_key: &agent_key,
            agent_id: &self.agent_id,
            team_id: &self.team_id,
            limits: self.limits,
        };
        let now = tucdesk_token::unix_now();
        let verified = match verify_offer(&offer, view, &self.verifier, now) {
            Ok(verified) => verified,
            Err(None) => {
                // Signed by a key we have not seen: auth rotated keys; refetch once.
                if let Ok(info) = server_info(&mut self.client).await
                    && let Ok(keys) = proto_jwks_to_keys(&info.jwks.clone().unwrap_or_default())
                {
                    let _ = self.keys.replace(keys);
                }
                match verify_offer(&offer, view, &self.verifier, tucdesk_token::unix_now()) {
                    Ok(verified) => verified,
                    Err(refusal) => {
                        self.refuse(
                            &session_id,
                            refusal.unwrap_or_else(|| {
                                Refusal::new(
                                    RejectReason::SessionTokenInvalid,
                                    "the session token is signed by an unknown key",
                                )
                            }),
                        );
                        return false;
                    }
                }
            }
            Err(Some(refusal)) => {
                self.refuse(&session_id, refusal);
                return false;
            }
        };
        if self.limits.attended {
            self.progress(&session_id, OfferStage::AwaitingConsent);
            let left = Duration::from_millis(offer.answer_deadline_ms.saturating_sub(now_ms()))
                .min(MAX_CONSENT_WAIT);
            let answer = tokio::select! {
                answer = self.consent.ask(&verified, left) => answer,
                () = stop.cancelled() => Err("the request was withdrawn".into()),
            };
            if let Err(why) = answer {
                self.refuse(&session_id, Refusal::new(RejectReason::ConsentDenied, why));
                return false;
            }
        }
        // Whether the session is recorded is settled before answering: a team that requires
        // recording gets no session this host cannot record.
        let recording = match crate::recording::prepare(
            self.recordings.as_ref(),
            &self.identity,
            &self.team_id,
            &offer,
            &verified,
        )
        .await
        {
            Ok(recording) => recording,
            Err(refusal) => {
                self.refuse(&session_id, refusal);
                return false;
            }
        };
        let (answer, keys) =
            match tucdesk_crypto::agent_respond(&self.identity, &verified.handshake) {
                Ok(done) => done,
                Err(err) => {
                    if let Some(recording) = recording {
                        recording.discard().await;
                    }
                    self.refuse(
                        &session_id,
                        Refusal::new(RejectReason::ProofInvalid, format!("handshake: {err}")),
                    );
                    return false;
                }
            };
        self.link
            .send_best_effort(AgentKind::OfferAnswer(OfferAnswer {
                session_id: session_id.clone(),
                result: Some(AnswerResult::Accepted(HandshakeReply {
                    e_ag_pub: answer.e_ag_pub.to_bytes().to_vec(),
                    transcript_signature: answer.signature.to_bytes().to_vec(),
                })),
            }));
        let signaling =
            crate::paths::LinkSignaling::new(&session_id, self.link.clone(), self.signals);
        crate::session::serve(
            verified,
            self.identity.clone(),
            keys,
            crate::session::Paths {
                connectivity: offer.connectivity.unwrap_or_default(),
                dial: self.dial,
                p2p: self.p2p,
                signaling,
                renewals: self.renewals,
            },
            self.session_limits,
            self.link,
            stop,
            recording,
        )
        .await;
        true
    }
}

/// Where what rendezvous sends a running session goes, by session id.
type Routes<T> = Arc<Mutex<HashMap<String, mpsc::Sender<T>>>>;

/// Hands `item` to the session's queue without waiting; false when the session has no route
/// or its queue is full (the session bounds what it takes).
fn route<T>(routes: &Routes<T>, session_id: &str, item: T) -> bool {
    let sender = routes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(session_id)
        .cloned();
    sender.is_some_and(|sender| sender.try_send(item).is_ok())
}

/// Tells rendezvous (and through it the operator) why an offer is refused.
fn send_refusal(link: &LinkHandle, session_id: &str, refusal: &Refusal) {
    tracing::warn!(
        session_id,
        reason = refusal.reason.as_str_name(),
        why = %refusal.message,
        "offer refused"
    );
    link.send_best_effort(AgentKind::OfferAnswer(OfferAnswer {
        session_id: session_id.to_owned(),
        result: Some(AnswerResult::Refused(OfferRefusal {
            reason: refusal.reason as i32,
            message: tucdesk_transport::ws::printable(&refusal.message),
        })),
    }));
}

pub(crate) fn jitter(base: Duration) -> Duration {
    // Full jitter: anywhere in [base/2, base].
    let random = tucdesk_crypto::rng::random_array::<8>()
        .map(u64::from_be_bytes)
        .unwrap_or(0);
    let half = base.as_millis() as u64 / 2;
    Duration::from_millis(half + random % (half + 1))
}

fn load_centi() -> u32 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |load| (load * 100.0) as u32)
}

fn rejected_error(rejected: &tucdesk_proto::v1::Rejected) -> LinkError {
    let reason = RejectReason::try_from(rejected.reason).unwrap_or(RejectReason::Unspecified);
    let permanent = rejected.retry_after_ms == 0
        && matches!(
            reason,
            RejectReason::UpdateRequired
                | RejectReason::AgentRevoked
                | RejectReason::AgentNotEnrolled
                | RejectReason::AudienceMismatch
        );
    LinkError::Refused {
        reason: tucdesk_transport::rpc::reason_words(reason),
        message: tucdesk_transport::ws::printable(&rejected.message),
        permanent,
        retry_after: Duration::from_millis(rejected.retry_after_ms),
    }
}

fn status_error(status: &tonic::Status) -> LinkError {
    let detail = tucdesk_transport::rpc::detail(status);
    if detail.reason != 0 {
        return rejected_error(&tucdesk_proto::v1::Rejected {
            reason: detail.reason,
            message: detail.message,
            min_protocol_version: detail.min_protocol_version,
            retry_after_ms: detail.retry_after_ms,
        });
    }
    LinkError::Transient(tucdesk_transport::rpc::describe(status))
}
