//! `tucdesk-standalone`: every TucDesk service in one process on the embedded defaults
//! (SPEC §1): auth, rendezvous, one relay node and the audit log, on SQLite files in a data
//! directory, one
//! in-process bus, replay cache, rate limiter and lease map shared by all, and development
//! keys in files. For trying TucDesk on one machine, demos and tests; production runs each
//! service on its own with Postgres, Redis, NATS and keys from a secret store.
//!
//! Library first: [`Standalone::start`] binds every listener (port 0 works), builds the
//! services exactly as their `main.rs` would and serves them; `main.rs` only parses flags,
//! prints the summary and waits for a signal. See `docs/standalone.md`.
//!
//! | module | concern |
//! |---|---|
//! | [`config`] | flags, ports, the data directory |
//! | [`services`] | building each service on the shared backends |
//! | [`bootstrap`] | the first team and its setup token on first start |
//! | [`audit_sink`] | readable NDJSON copy of the audit events (`audit-events.ndjson`), beside the signed log of the audit service |
//! | [`ops`] | one `/metrics`, `/healthz`, `/readyz` for the stack |
//! | [`turn`] | the optional coturn (`--turn`): its secret, configuration and process |
//!
//! Without `--turn` sessions get STUN (the relay answers binding requests) and the WebSocket
//! relay, and rendezvous mints no TURN credentials. With it, a supervised `turnserver` runs
//! beside the relay with a secret made at start, and sessions get a TURN path too.
#![forbid(unsafe_code)]

pub mod audit_sink;
pub mod bootstrap;
pub mod config;
mod listen;
pub mod ops;
pub mod services;
mod summary;
pub mod turn;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tucdesk_audit::Audit;
use tucdesk_auth::Auth;
use tucdesk_relay::Relay;
use tucdesk_rendezvous::Rendezvous;

pub use bootstrap::FirstStart;
pub use config::StandaloneConfig;
use listen::{Listeners, bind, create_private_dir};
use services::{DataLayout, SharedBackends, Wiring};

/// After shutdown starts, how long the services get to finish before their tasks are aborted.
pub const SHUTDOWN_DEADLINE: Duration = tucdesk_svc::shutdown::DEFAULT_DRAIN_DEADLINE;
/// How long the audit sink and the audit log get to take the last events after the services
/// stopped (the audit consumer itself stops draining after `tucdesk_audit::ingest::DRAIN_DEADLINE`).
const AUDIT_DRAIN_DEADLINE: Duration = Duration::from_secs(8);

/// Where every listener ended up (ports resolved when 0 was asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub auth_grpc: SocketAddr,
    pub auth_http: SocketAddr,
    pub rendezvous: SocketAddr,
    pub rendezvous_internal: SocketAddr,
    pub relay_ws: SocketAddr,
    pub relay_stun: SocketAddr,
    pub relay_admin: SocketAddr,
    pub audit: SocketAddr,
    pub audit_http: SocketAddr,
    pub recorder: SocketAddr,
    pub ops: SocketAddr,
    /// coturn's UDP listener (with `--turn`).
    pub turn: Option<SocketAddr>,
}

/// The URLs clients use (with the public host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Urls {
    /// Auth gRPC (`tucdesk login --auth`).
    pub auth: String,
    /// Auth HTTP, the `iss` of every token.
    pub issuer: String,
    /// Rendezvous public gRPC (`tucdesk login --rendezvous`, agents).
    pub rendezvous: String,
    /// The relay's WebSocket base URL.
    pub relay_ws: String,
    /// The relay's STUN URL.
    pub stun: String,
    /// The audit service's gRPC (AuditService).
    pub audit: String,
    /// The audit service's HTTP export (`GET <this>/v1/audit/export`).
    pub audit_http: String,
    /// The recorder's gRPC (RecorderService).
    pub recorder: String,
    /// The `turn:` URL the relay advertises (with `--turn`).
    pub turn: Option<String>,
}

type ServiceTask = (&'static str, anyhow::Result<()>);

/// The running stack. Dropping it cancels everything; [`Standalone::shutdown`] and
/// [`Standalone::wait`] stop it gracefully.
pub struct Standalone {
    addresses: Addresses,
    urls: Urls,
    data_dir: PathBuf,
    first_start: Option<FirstStart>,
    auth: Auth,
    rendezvous: Rendezvous,
    relay: Relay,
    audit: Audit,
    shutdown: CancellationToken,
    tasks: JoinSet<ServiceTask>,
    /// Stops the audit consumers (the signed log and the NDJSON sink) once the services have.
    sink_stop: CancellationToken,
    sink: Option<JoinHandle<()>>,
    ingest: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Standalone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standalone")
            .field("addresses", &self.addresses)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.sink_stop.cancel();
    }
}

impl Standalone {
    /// Starts the stack with a shutdown signal of its own.
    pub async fn start(config: StandaloneConfig) -> anyhow::Result<Self> {
        Self::start_with_shutdown(config, CancellationToken::new()).await
    }

    /// Starts the stack; cancelling `shutdown` (e.g. from a signal listener spawned before
    /// this call) stops it.
    pub async fn start_with_shutdown(
        config: StandaloneConfig,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        config.check()?;
        create_private_dir(&config.data_dir)?;
        tracing::warn!(
            data_dir = %config.data_dir.display(),
            "standalone mode: SQLite, in-process bus and cache, and development keys in files \
             under the data directory; not for production"
        );
        let listeners = bind(&config).await?;
        let turn = if config.turn {
            let port = match config.ports()?.turn {
                0 => turn::free_udp_port(config.host)?,
                port => port,
            };
            create_private_dir(&config.data_path(turn::TURN_DIR))?;
            Some(turn::TurnSettings::new(&config, port)?)
        } else {
            None
        };
        let addresses = Addresses {
            auth_grpc: listeners.auth_grpc.local_addr()?,
            auth_http: listeners.auth_http.local_addr()?,
            rendezvous: listeners.rendezvous.local_addr()?,
            rendezvous_internal: listeners.rendezvous_internal.local_addr()?,
            relay_ws: listeners.relay.ws.local_addr()?,
            relay_stun: listeners.relay.stun.local_addr()?,
            relay_admin: listeners.relay.admin.local_addr()?,
            audit: listeners.audit.local_addr()?,
            audit_http: listeners.audit_http.local_addr()?,
            recorder: listeners.recorder.local_addr()?,
            ops: listeners.ops.local_addr()?,
            turn: turn.as_ref().map(|turn| turn.listen),
        };
        let host = config.url_host();
        let scheme = if config.relay_tls_cert.is_some() {
            "wss"
        } else {
            "ws"
        };
        let urls = Urls {
            auth: format!("http://{host}:{}", addresses.auth_grpc.port()),
            issuer: format!("http://{host}:{}", addresses.auth_http.port()),
            rendezvous: format!("http://{host}:{}", addresses.rendezvous.port()),
            relay_ws: format!("{scheme}://{host}:{}/v1/pipe", addresses.relay_ws.port()),
            stun: format!("stun:{host}:{}", addresses.relay_stun.port()),
            audit: format!("http://{host}:{}", addresses.audit.port()),
            audit_http: format!("http://{host}:{}", addresses.audit_http.port()),
            recorder: format!("http://{host}:{}", addresses.recorder.port()),
            turn: turn.as_ref().map(|turn| turn.url.clone()),
        };
        let wiring = Wiring {
            auth_grpc: addresses.auth_grpc,
            auth_http: addresses.auth_http,
            rendezvous: addresses.rendezvous,
            rendezvous_internal: addresses.rendezvous_internal,
            relay_ws: addresses.relay_ws,
            relay_stun: addresses.relay_stun,
            relay_admin: addresses.relay_admin,
            audit: addresses.audit,
            audit_http: addresses.audit_http,
            recorder: addresses.recorder,
            auth_url: format!("http://{}", config::dial_addr(addresses.auth_grpc)),
            issuer: urls.issuer.clone(),
            relay_ws_url: urls.relay_ws.clone(),
            stun_url: urls.stun.clone(),
            recorder_url: urls.recorder.clone(),
            turn,
        };

        let shared = SharedBackends::new();
        let layout = DataLayout::new(&config);
        for dir in &layout.private_dirs {
            create_private_dir(dir)?;
        }
        // Both audit consumers exist before any service publishes.
        let audit = services::build_audit(&layout, &shared).await?;
        let ingest = audit.open_ingest().await?;
        let sink_stop = CancellationToken::new();
        let sink = audit_sink::AuditFileSink::open(
            &shared.bus,
            &config.data_path(audit_sink::AUDIT_LOG_FILE),
        )
        .await?;
        let sink = tokio::spawn(sink.run(sink_stop.clone()));
        let ingest = tokio::spawn(ingest.run(sink_stop.clone()));
        let mut tasks = JoinSet::new();
        let started = start_services(
            &config, &layout, &wiring, &shared, &audit, listeners, &shutdown, &mut tasks,
        )
        .await;
        let (first_start, auth, rendezvous, relay) = match started {
            Ok(started) => started,
            Err(err) => {
                // Stop whatever already runs before reporting the failure.
                shutdown.cancel();
                while tasks.join_next().await.is_some() {}
                sink_stop.cancel();
                let _ = sink.await;
                let _ = ingest.await;
                return Err(err);
            }
        };
        Ok(Self {
            addresses,
            urls,
            data_dir: config.data_dir,
            first_start,
            auth,
            rendezvous,
            relay,
            audit,
            shutdown,
            tasks,
            sink_stop,
            sink: Some(sink),
            ingest: Some(ingest),
        })
    }

    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    pub fn urls(&self) -> &Urls {
        &self.urls
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// What this start bootstrapped: `Some` on the first start of a data directory only.
    pub fn first_start(&self) -> Option<&FirstStart> {
        self.first_start.as_ref()
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    pub fn rendezvous(&self) -> &Rendezvous {
        &self.rendezvous
    }

    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// The audit service (the signed log in `audit.db`).
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// The readable NDJSON copy of the audit events (unsigned; the signed log is `audit.db`).
    pub fn audit_log(&self) -> PathBuf {
        self.data_dir.join(audit_sink::AUDIT_LOG_FILE)
    }

    /// The token that stops the stack when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Starts a graceful shutdown; [`Standalone::wait`] returns once it is done.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// The startup summary (every URL; on first start, how to log in).
    pub fn summary(&self) -> String {
        summary::render(self)
    }

    /// Waits until every service has stopped, then lets the audit log and the audit sink take
    /// the last events and closes the databases. A service that stops on its own (an error) shuts the rest
    /// down; its error is returned. Services still running [`SHUTDOWN_DEADLINE`] after
    /// shutdown started are aborted.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut tasks = std::mem::take(&mut self.tasks);
        let mut first_error: Option<anyhow::Error> = None;
        let deadline = {
            let shutdown = self.shutdown.clone();
            async move {
                shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_DEADLINE).await;
            }
        };
        tokio::pin!(deadline);
        let mut aborted = false;
        loop {
            let next = tokio::select! {
                next = tasks.join_next() => next,
                () = &mut deadline, if !aborted => {
                    aborted = true;
                    tracing::warn!(remaining = tasks.len(), deadline = ?SHUTDOWN_DEADLINE, "services still running at the shutdown deadline; aborting them");
                    tasks.abort_all();
                    first_error.get_or_insert_with(|| anyhow::anyhow!("shutdown deadline passed"));
                    continue;
                }
            };
            let Some(joined) = next else { break };
            let failure = match joined {
                Ok((_, Ok(()))) if self.shutdown.is_cancelled() => None,
                Ok((name, Ok(()))) => Some(anyhow::anyhow!("{name} stopped unexpectedly")),
                Ok((name, Err(err))) => Some(err.context(format!("{name} failed"))),
                Err(err) if err.is_cancelled() => None,
                Err(err) => Some(anyhow::anyhow!("a service task panicked: {err}")),
            };
            if let Some(err) = failure {
                tracing::error!(error = format!("{err:#}"), "stopping the stack");
                self.shutdown.cancel();
                first_error.get_or_insert(err);
            }
        }
        self.sink_stop.cancel();
        let consumers = async {
            if let Some(sink) = self.sink.take() {
                let _ = sink.await;
            }
            if let Some(ingest) = self.ingest.take() {
                let _ = ingest.await;
            }
        };
        if tokio::time::timeout(AUDIT_DRAIN_DEADLINE, consumers)
            .await
            .is_err()
        {
            tracing::warn!("the audit log or sink did not take the last events in time");
        }
        self.auth.db().close().await;
        self.rendezvous.db().close().await;
        self.audit.db().close().await;
        first_error.map_or(Ok(()), Err)
    }
}

/// Builds and spawns every service (the audit log's consumer already runs; its API starts
/// here, once auth serves the keys it verifies tokens with); returns what the handle keeps.
#[allow(clippy::too_many_arguments)]
async fn start_services(
    config: &StandaloneConfig,
    layout: &DataLayout,
    wiring: &Wiring,
    shared: &SharedBackends,
    audit: &Audit,
    listeners: Listeners,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<ServiceTask>,
) -> anyhow::Result<(Option<FirstStart>, Auth, Rendezvous, Relay)> {
    let identity = services::load_or_create_service_key(&layout.rendezvous_service_key)?;
    let recorder_identity =
        tucdesk_recorder::directory::load_or_create_service_key(&layout.recorder_service_key)?;

    // coturn first: rendezvous and the relay are built with its secret and URL.
    if let Some(settings) = &wiring.turn {
        let child = turn::start(settings).await?;
        tracing::info!(url = %settings.url, "coturn is up");
        tasks.spawn({
            let (settings, token) = (settings.clone(), shutdown.clone());
            async move {
                turn::supervise(settings, child, token).await;
                ("coturn", Ok(()))
            }
        });
    }

    let auth = services::build_auth(layout, wiring, shared, &identity.agent_id()).await?;
    let first_start =
        bootstrap::bootstrap_if_empty(&auth, &config.team, &config.admin_email, &config.data_dir)
            .await?;
    tasks.spawn({
        let (auth, token) = (auth.clone(), shutdown.clone());
        let (grpc, http) = (listeners.auth_grpc, listeners.auth_http);
        async move { ("auth", tucdesk_auth::serve(auth, grpc, http, token).await) }
    });

    // Rendezvous before the relay, so it already follows heartbeats when the first arrives.
    let rendezvous = services::build_rendezvous(
        layout,
        wiring,
        shared,
        identity,
        &recorder_identity.agent_id(),
    )
    .await?;
    tasks.spawn({
        let (rdv, token) = (rendezvous.clone(), shutdown.clone());
        let (public, internal) = (listeners.rendezvous, listeners.rendezvous_internal);
        async move {
            let served = tucdesk_rendezvous::serve(rdv, public, internal, token).await;
            ("rendezvous", served)
        }
    });

    let (relay, keys) = services::build_relay(config, wiring, shared).await?;
    let tls = match (&config.relay_tls_cert, &config.relay_tls_key) {
        (Some(cert), Some(key)) => {
            tucdesk_svc::telemetry::install_crypto_provider();
            Some(tucdesk_relay::http::tls_acceptor(cert, key)?)
        }
        _ => None,
    };
    tasks.spawn({
        let token = shutdown.clone();
        async move {
            keys.run_refresh(token).await;
            ("relay key refresh", Ok(()))
        }
    });
    tasks.spawn({
        let (relay, token) = (relay.clone(), shutdown.clone());
        let relay_listeners = listeners.relay;
        async move {
            let served = tucdesk_relay::serve(relay, relay_listeners, tls, token).await;
            ("relay", served)
        }
    });

    let access = services::audit_access(wiring).await?;
    tasks.spawn({
        let (audit, access, token) = (audit.clone(), access.clone(), shutdown.clone());
        let listener = listeners.audit;
        async move {
            let served = tucdesk_audit::serve_api(audit, access, listener, token).await;
            ("audit", served.map_err(anyhow::Error::from))
        }
    });
    tasks.spawn({
        let (audit, token, listener) = (audit.clone(), shutdown.clone(), listeners.audit_http);
        async move {
            let served = tucdesk_audit::serve_http(audit, access, listener, token).await;
            ("audit HTTP export", served.map_err(anyhow::Error::from))
        }
    });

    let recorder = services::build_recorder(layout, wiring, shared, recorder_identity).await?;
    let recorder_access = services::recorder_access(wiring).await?;
    tasks.spawn({
        let (recorder, token, listener) = (recorder.clone(), shutdown.clone(), listeners.recorder);
        async move {
            let served = tucdesk_recorder::serve(recorder, recorder_access, listener, token).await;
            ("recorder", served.map_err(anyhow::Error::from))
        }
    });

    let router = ops::router(&auth, &rendezvous, &relay, audit, shutdown.clone())?;
    tasks.spawn({
        let (ops_listener, token) = (listeners.ops, shutdown.clone());
        async move {
            let served = tucdesk_svc::http::serve(ops_listener, router, token).await;
            ("ops", served.map_err(anyhow::Error::from))
        }
    });
    Ok((first_start, auth, rendezvous, relay))
}
