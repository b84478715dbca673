//! TucDesk rendezvous service (SPEC §2, §4, §5): agent enrollment and signed registration,
//! presence across replicas, policy and approvals, and session negotiation.
//!
//! Library first: [`serve`] runs the gRPC services on given listeners, so tests and
//! `tucdesk-standalone` run the service in-process exactly as `main.rs` does.
//!
//! | module | concern |
//! |---|---|
//! | [`registration`], [`enroll`], [`link`] | proofs, enrollment, agent streams and presence |
//! | [`routing`] | reaching the replica that holds an agent, over the bus |
//! | [`caller`], [`agents_api`] | operator authentication, agent administration |
//! | [`policy`], [`policy_api`], [`approvals`] | team policy, its API, the approval gate |
//! | [`recording_api`] | team recording settings (mode, age recipients) and what offers say about recording |
//! | [`negotiate`], [`sessions`], [`signals`] | CreateSession, session lifecycle, ICE signaling |
//! | [`relays`], [`turn`], [`auth_link`] | relay choice, TURN credentials, session tokens |
//! | [`store`] | the service's tables |
#![forbid(unsafe_code)]

pub mod agents_api;
pub mod approvals;
pub mod auth_link;
pub mod caller;
pub mod config;
pub mod enroll;
pub mod enrollment_api;
pub mod error;
pub mod grpc;
pub mod internal;
pub mod link;
pub mod metrics;
pub mod negotiate;
pub mod policy;
pub mod policy_api;
pub mod recording_api;
pub mod registration;
pub mod relays;
pub mod routing;
pub mod service;
pub mod sessions;
pub mod signals;
pub mod slots;
pub mod store;
pub mod turn;

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tucdesk_crypto::CodeHashKey;
use tucdesk_proto::v1::agent_link_server::AgentLinkServer;
use tucdesk_proto::v1::operator_service_server::OperatorServiceServer;
use tucdesk_proto::v1::rendezvous_internal_server::RendezvousInternalServer;
use tucdesk_proto::v1::{GetServerInfoResponse, ProtocolInfo};

pub use config::RendezvousConfig;
pub use error::RendezvousError;
pub use service::{Backends, Rendezvous};

/// Largest message on the agent stream and other agent calls.
pub const MAX_AGENT_MESSAGE: usize = tucdesk_proto::limits::MAX_AGENT_STREAM_MESSAGE_LEN;
/// Largest operator or internal request (a 256 KiB policy document is the biggest).
pub const MAX_OPERATOR_MESSAGE: usize = tucdesk_proto::limits::MAX_GRPC_MESSAGE_LEN;
/// HTTP/2 streams one client connection may open at once.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 64;
/// Calls one client connection may have in progress at once.
pub const MAX_CALLS_PER_CONNECTION: usize = 64;
/// WatchApprovals streams one user may hold at once (on one replica).
pub const MAX_WATCHERS_PER_USER: usize = 4;
/// SessionSignals streams one session may have at once (on one replica).
pub const MAX_SIGNAL_STREAMS_PER_SESSION: usize = 4;
/// How long agents get to read their `Reconnect` before the listeners close.
pub const DRAIN_FLUSH: Duration = Duration::from_millis(500);
/// HTTP/2 keepalive on agent connections: a host that vanished without closing its TCP
/// connection is noticed within interval + timeout.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

impl Rendezvous {
    /// What GetServerInfo answers.
    pub fn server_info(&self) -> GetServerInfoResponse {
        GetServerInfoResponse {
            audience: self.config().audience.clone(),
            protocol: Some(ProtocolInfo {
                protocol_version: tucdesk_proto::PROTOCOL_VERSION,
                min_protocol_version: self.config().min_agent_version,
                server_version: env!("CARGO_PKG_VERSION").to_owned(),
            }),
            server_time_ms: u64::try_from(tucdesk_svc::sql::now_ms()).unwrap_or(0),
            max_clock_skew_ms: u32::try_from(tucdesk_crypto::MAX_CLOCK_SKEW.as_millis())
                .unwrap_or(u32::MAX),
            jwks: Some(self.inner.auth.jwks()),
            token_issuer: self.inner.auth.issuer().to_owned(),
        }
    }

    /// Runs the background work (audit outbox, JWKS refresh, relay heartbeats, approval
    /// expiry) until `shutdown`.
    pub async fn run_background(&self, shutdown: CancellationToken) {
        let outbox = tokio::spawn(self.inner.outbox.clone().run(shutdown.clone()));
        let jwks = {
            let (auth, shutdown) = (self.inner.auth.clone(), shutdown.clone());
            tokio::spawn(async move { auth.run_refresh(shutdown).await })
        };
        let relays = {
            let (relays, bus, shutdown) = (
                self.inner.relays.clone(),
                self.inner.bus.clone(),
                shutdown.clone(),
            );
            tokio::spawn(async move { relays.run(bus, shutdown).await })
        };
        let sweeper = {
            let (rdv, shutdown) = (self.clone(), shutdown.clone());
            tokio::spawn(async move { rdv.run_approval_sweeper(shutdown).await })
        };
        let _ = tokio::join!(outbox, jwks, relays, sweeper);
    }
}

/// Serves AgentLink and OperatorService on `public` and RendezvousInternal on `internal`
/// until `shutdown`, running the background work alongside. On shutdown the replica drains:
/// agents are told to reconnect elsewhere, waits end, then the listeners close.
pub async fn serve(
    rdv: Rendezvous,
    public: TcpListener,
    internal: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let grpc = grpc::RendezvousGrpc::new(rdv.clone());
    let stop_listening = CancellationToken::new();
    let drain = {
        let (rdv, shutdown, stop) = (rdv.clone(), shutdown.clone(), stop_listening.clone());
        async move {
            shutdown.cancelled().await;
            rdv.start_draining();
            tokio::time::sleep(DRAIN_FLUSH).await;
            stop.cancel();
        }
    };
    let public_server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        // One agent or viewer needs a handful of concurrent calls; bound what one connection
        // can make the replica do at once.
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .concurrency_limit_per_connection(MAX_CALLS_PER_CONNECTION)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(
            AgentLinkServer::new(grpc.clone()).max_decoding_message_size(MAX_AGENT_MESSAGE),
        )
        .add_service(
            OperatorServiceServer::new(grpc.clone())
                .max_decoding_message_size(MAX_OPERATOR_MESSAGE),
        )
        .serve_with_incoming_shutdown(tucdesk_svc::net::nodelay_incoming(public), {
            let stop = stop_listening.clone();
            async move { stop.cancelled().await }
        });
    let internal_server = tonic::transport::Server::builder()
        .add_service(
            RendezvousInternalServer::new(grpc).max_decoding_message_size(MAX_OPERATOR_MESSAGE),
        )
        .serve_with_incoming_shutdown(tucdesk_svc::net::nodelay_incoming(internal), {
            let stop = stop_listening.clone();
            async move { stop.cancelled().await }
        });
    let background = rdv.run_background(stop_listening.clone());
    let (public_result, internal_result, (), ()) =
        tokio::join!(public_server, internal_server, background, drain);
    public_result?;
    internal_result?;
    Ok(())
}

/// The code-hash key from the configuration, or the development key file next to the
/// service key.
pub fn load_code_key(config: &RendezvousConfig) -> Result<CodeHashKey, RendezvousError> {
    use base64::Engine as _;
    match config.code_key.as_deref() {
        Some(text) if !text.trim().is_empty() => {
            let bytes = zeroize::Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|_| {
                        RendezvousError::InvalidArgument(
                            "TUCDESK_RENDEZVOUS_CODE_KEY is not base64".into(),
                        )
                    })?,
            );
            CodeHashKey::from_slice(&bytes).map_err(|_| {
                RendezvousError::InvalidArgument(
                    "TUCDESK_RENDEZVOUS_CODE_KEY must be 32 bytes".into(),
                )
            })
        }
        _ => {
            let dir = config
                .service_key_file
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default();
            let path = dir.join("code.key");
            tracing::warn!(
                path = %path.display(),
                "TUCDESK_RENDEZVOUS_CODE_KEY is not set: using a development key from a local \
                 file; set it in production (and the same on every replica)"
            );
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(&dir)
                    .map_err(|err| RendezvousError::internal("creating the key directory", err))?;
            }
            let key = tucdesk_crypto::keyfile::load_or_create_secret(&path).map_err(|err| {
                RendezvousError::internal("loading the development code key", err)
            })?;
            CodeHashKey::from_slice(key.as_slice())
                .map_err(|err| RendezvousError::internal("the development code key", err))
        }
    }
}

/// Builds the service from its configuration: backends, keys, the link to auth.
pub async fn build(config: RendezvousConfig) -> anyhow::Result<Rendezvous> {
    let backends = Backends::connect(&config).await?;
    let code_key = load_code_key(&config)?;
    let identity = auth_link::load_or_create_service_key(&config.service_key_file)?;
    let signer = auth_link::service_signer(identity)?;
    let auth = auth_link::AuthLink::connect(
        &config.auth_url,
        &config.token_issuer,
        &config.token_audience,
        signer,
        config.auth_startup_timeout,
    )
    .await?;
    Ok(Rendezvous::new(config, backends, auth, code_key).await?)
}
