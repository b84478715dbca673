//! A rendezvous deployment in-process: shared backends (Postgres + Redis + NATS, or SQLite +
//! in-process cache and bus), the auth service, and any number of replicas on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tucdesk_crypto::CodeHashKey;
use tucdesk_proto::v1::agent_link_client::AgentLinkClient;
use tucdesk_proto::v1::operator_service_client::OperatorServiceClient;
use tucdesk_proto::v1::rendezvous_internal_client::RendezvousInternalClient;
use tucdesk_proto::v1::{CreateEnrollmentTokenRequest, Role as WireRole};
use tucdesk_rendezvous::auth_link::AuthLink;
use tucdesk_rendezvous::{Backends, Rendezvous, RendezvousConfig};
use tucdesk_svc::bus::{Bus, MemoryBus};
use tucdesk_svc::cache::MemoryReplayCache;
use tucdesk_svc::lease::MemoryLeases;
use tucdesk_svc::ratelimit::MemoryRateLimiter;
use tucdesk_svc::sql::{Database, PoolSettings};
use tucdesk_svc::testing::{TestPostgres, nats_url, redis_url, unique_name};

use crate::Backend;
use crate::auth::TestAuth;
use crate::operator::Operator;
use crate::relay::RelayBeacon;

/// The audience the harness deployment signs registrations for.
pub const AUDIENCE: &str = "tucdesk-test";
/// Heartbeat interval of harness replicas: short, so presence expiry is quick to observe.
pub const TEST_HEARTBEAT: Duration = Duration::from_millis(500);

/// Shared state of one deployment: its database, cache namespace, bus, auth, code key.
pub struct Deployment {
    pub backend: Backend,
    pub auth: TestAuth,
    /// The deployment's database, for the test's own checks (each replica opens its own
    /// pool to `db_url` on its own runtime, as a separate process would).
    pub db: Database,
    db_url: String,
    /// Settings every replica starts from; tests may adjust them before starting replicas.
    pub config: RendezvousConfig,
    namespace: String,
    code_key: [u8; 32],
    memory: Option<MemoryBackends>,
    pg: Option<TestPostgres>,
    _dir: tempfile::TempDir,
}

/// In-process backends shared by every replica of an embedded deployment.
#[derive(Clone)]
struct MemoryBackends {
    bus: Arc<MemoryBus>,
    replay: Arc<MemoryReplayCache>,
    limiter: Arc<MemoryRateLimiter>,
    leases: Arc<MemoryLeases>,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("backend", &self.backend)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Deployment {
    /// Starts auth and prepares the rendezvous database (no replica yet). With
    /// `TUCDESK_TEST_LOG` set (a log filter such as `warn`), the services log to stderr.
    pub async fn new(backend: Backend) -> anyhow::Result<Self> {
        init_test_logging();
        let auth = TestAuth::start(backend).await?;
        let dir = tempfile::tempdir()?;
        let (db, db_url, pg) = match backend {
            Backend::Embedded => {
                let url = format!("sqlite://{}", dir.path().join("rendezvous.db").display());
                (
                    Database::connect(&url, &PoolSettings::default()).await?,
                    url,
                    None,
                )
            }
            Backend::Real => {
                let pg = TestPostgres::new()
                    .await
                    .context("Postgres must be running")?;
                (pg.db.clone(), pg.url.clone(), Some(pg))
            }
        };
        db.migrate(tucdesk_rendezvous::service::MIGRATIONS).await?;
        let memory = (backend == Backend::Embedded).then(|| MemoryBackends {
            bus: Arc::new(MemoryBus::new()),
            replay: Arc::new(MemoryReplayCache::new(1_000_000)),
            limiter: Arc::new(MemoryRateLimiter::new(1_000_000)),
            leases: Arc::new(MemoryLeases::new(1_000_000)),
        });
        let namespace = unique_name("rdv");
        let mut config = RendezvousConfig::embedded("unused://", "unused://", "unused://");
        config.audience = AUDIENCE.to_owned();
        config.auth_url = auth.url();
        config.token_issuer = auth.issuer.clone();
        config.heartbeat_interval = TEST_HEARTBEAT;
        config.offer_timeout = Duration::from_secs(5);
        config.consent_timeout = Duration::from_secs(10);
        config.turn_secret = Some("test-turn-secret".to_owned());
        // A region of its own: concurrent test runs on the same NATS publish relay heartbeats
        // too, and this deployment must prefer its own relay.
        config.region = Some(namespace.clone());
        Ok(Self {
            backend,
            auth,
            db,
            db_url,
            config,
            namespace,
            code_key: tucdesk_crypto::rng::random_array::<32>()?,
            memory,
            pg,
            _dir: dir,
        })
    }

    /// A bus connection (a replica's own, for real backends).
    pub async fn bus(&self) -> anyhow::Result<Arc<dyn Bus>> {
        Ok(match &self.memory {
            Some(memory) => memory.bus.clone(),
            None => tucdesk_svc::bus::connect(&nats_url(), "tucdesk-testkit").await?,
        })
    }

    /// Starts a replica with the deployment's configuration, on a runtime of its own so that
    /// [`TestRendezvous::kill`] can take it down like a crashed process.
    pub async fn replica(&self) -> anyhow::Result<TestRendezvous> {
        self.replica_at(None).await
    }

    /// A replica whose public listener is on `public` (to restart a replica where its agents
    /// and viewers expect it); port 0 when `None`.
    pub async fn replica_at(&self, public: Option<SocketAddr>) -> anyhow::Result<TestRendezvous> {
        let public_addr = public.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-rendezvous")
            .enable_all()
            .build()?;
        let memory = self.memory.clone();
        let (db, namespace, config) = (
            self.db_url.clone(),
            self.namespace.clone(),
            self.config.clone(),
        );
        let code_key = self.code_key;
        let signer = self.auth.rendezvous_signer()?;
        let shutdown = CancellationToken::new();
        let (ready, started) = tokio::sync::oneshot::channel();
        let task = runtime.spawn({
            let shutdown = shutdown.clone();
            async move {
                let built = async {
                    let db = Database::connect(&db, &PoolSettings::default()).await?;
                    let backends = backends(memory.as_ref(), db, &namespace).await?;
                    let auth = AuthLink::connect(
                        &config.auth_url,
                        &config.token_issuer,
                        &config.token_audience,
                        signer,
                        Duration::from_secs(10),
                    )
                    .await?;
                    let public = bind_retrying(public_addr).await?;
                    let internal = TcpListener::bind("127.0.0.1:0").await?;
                    let addrs = (public.local_addr()?, internal.local_addr()?);
                    let rdv = Rendezvous::new(
                        config,
                        backends,
                        auth,
                        CodeHashKey::from_slice(&code_key)?,
                    )
                    .await?;
                    anyhow::Ok((rdv, public, internal, addrs))
                }
                .await;
                let (rdv, public, internal, addrs) = match built {
                    Ok(built) => built,
                    Err(err) => {
                        let _ = ready.send(Err(err));
                        return;
                    }
                };
                let _ = ready.send(Ok((rdv.clone(), addrs)));
                if let Err(err) = tucdesk_rendezvous::serve(rdv, public, internal, shutdown).await {
                    eprintln!("test rendezvous stopped: {err:#}");
                }
            }
        });
        let (rdv, (addr, internal_addr)) =
            started.await.context("the replica runtime stopped")??;
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        Ok(TestRendezvous {
            rdv,
            addr,
            internal_addr,
            channel,
            shutdown,
            task: Some(task),
            runtime: Some(runtime),
        })
    }

    /// Publishes heartbeats of a relay in this deployment's region until dropped.
    pub async fn relay(&self, node_id: &str) -> anyhow::Result<RelayBeacon> {
        let region = self.config.region.clone().unwrap_or_default();
        Ok(RelayBeacon::start(self.bus().await?, node_id, &region))
    }

    /// A new team whose owner is logged in.
    pub async fn team(&self, owner_email: &str) -> anyhow::Result<Operator> {
        self.auth.new_team(owner_email).await
    }

    /// A user of `admin`'s team with `role`, logged in.
    pub async fn user(
        &self,
        admin: &Operator,
        email: &str,
        role: WireRole,
    ) -> anyhow::Result<Operator> {
        self.auth.add_user(admin, email, role).await
    }

    /// Drops the databases (auth's and rendezvous's).
    pub async fn cleanup(self) {
        self.auth.stop().await;
        if let Some(pg) = self.pg {
            let _ = pg.cleanup().await;
        }
    }
}

async fn backends(
    memory: Option<&MemoryBackends>,
    db: Database,
    namespace: &str,
) -> anyhow::Result<Backends> {
    Ok(match memory {
        Some(memory) => Backends {
            db,
            bus: memory.bus.clone(),
            replay: memory.replay.clone(),
            limiter: memory.limiter.clone(),
            leases: memory.leases.clone(),
        },
        None => Backends {
            db,
            bus: tucdesk_svc::bus::connect(&nats_url(), "tucdesk-rendezvous-test").await?,
            replay: tucdesk_svc::cache::connect(&redis_url(), namespace).await?,
            limiter: tucdesk_svc::ratelimit::connect(&redis_url(), namespace).await?,
            leases: tucdesk_svc::lease::connect(&redis_url(), namespace).await?,
        },
    })
}

/// Logs of the in-process services, when `TUCDESK_TEST_LOG` asks for them (once per process;
/// later calls find the subscriber installed and do nothing).
fn init_test_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let Ok(filter) = std::env::var("TUCDESK_TEST_LOG") else {
        return;
    };
    ONCE.call_once(|| {
        let mut args = tucdesk_svc::config::TelemetryArgs::new("test");
        args.log_filter = filter;
        if let Ok(guard) = tucdesk_svc::telemetry::init(&args) {
            // Keep logging for the rest of the test process.
            std::mem::forget(guard);
        }
    });
}

/// One running replica.
pub struct TestRendezvous {
    pub rdv: Rendezvous,
    pub addr: SocketAddr,
    pub internal_addr: SocketAddr,
    pub channel: Channel,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for TestRendezvous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRendezvous")
            .field("addr", &self.addr)
            .field("replica", &self.rdv.replica_id())
            .finish_non_exhaustive()
    }
}

impl Drop for TestRendezvous {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl TestRendezvous {
    pub fn operator_client(&self) -> OperatorServiceClient<Channel> {
        OperatorServiceClient::new(self.channel.clone())
    }

    pub fn agent_client(&self) -> AgentLinkClient<Channel> {
        AgentLinkClient::new(self.channel.clone())
    }

    pub async fn internal_client(&self) -> anyhow::Result<RendezvousInternalClient<Channel>> {
        let channel = Channel::from_shared(format!("http://{}", self.internal_addr))?
            .connect()
            .await?;
        Ok(RendezvousInternalClient::new(channel))
    }

    /// Creates an enrollment token as `admin` (with the device proof the call needs).
    pub async fn enrollment_token(
        &self,
        admin: &Operator,
        tags: &[&str],
    ) -> anyhow::Result<String> {
        let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
        let binding = tucdesk_rendezvous::enrollment_api::create_binding(&tags, false, 0);
        let proof = admin.proof(
            tucdesk_rendezvous::enrollment_api::CREATE_METHOD,
            "",
            &binding,
        )?;
        let response = self
            .operator_client()
            .create_enrollment_token(admin.request(CreateEnrollmentTokenRequest {
                description: "test".into(),
                tags,
                allow_host_tags: false,
                ttl_seconds: 0,
                proof: Some(proof),
            })?)
            .await?
            .into_inner();
        Ok(response.token)
    }

    /// Simulates a crash: the replica's runtime is dropped with every task on it, so no
    /// cleanup runs (presence leases stay until they expire; connections are cut).
    pub fn kill(&mut self) {
        self.task.take();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// Graceful shutdown: drain, then stop.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Binds `addr`, retrying for a few seconds while a just-killed replica's socket lets go.
async fn bind_retrying(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut attempts = 0;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(err) if attempts >= 50 => return Err(err),
            Err(_) => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
