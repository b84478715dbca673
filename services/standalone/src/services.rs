//! Building each service on the shared embedded backends, the way its `build()` does from a
//! configuration, but with listeners already bound (port 0 works) and one bus, replay cache,
//! rate limiter and lease map for all.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tucdesk_audit::{AccessVerifier, Audit, AuditConfig, AuditKey};
use tucdesk_auth::password::PasswordHasher;
use tucdesk_auth::{Auth, AuthConfig};
use tucdesk_crypto::Identity;
use tucdesk_relay::{Relay, RelayConfig};
use tucdesk_rendezvous::auth_link::AuthLink;
use tucdesk_rendezvous::{Rendezvous, RendezvousConfig};
use tucdesk_svc::auth_keys::AuthKeys;
use tucdesk_svc::bus::{Bus, MemoryBus};
use tucdesk_svc::cache::MemoryReplayCache;
use tucdesk_svc::lease::MemoryLeases;
use tucdesk_svc::ratelimit::MemoryRateLimiter;
use tucdesk_svc::sql::{Database, Migrations, PoolSettings};

use crate::config::StandaloneConfig;

/// Entries each in-process map (replay cache, rate limiter, leases) holds at most.
pub const MEMORY_CAPACITY: u64 = 1_000_000;
/// `aud` of access tokens (auth's default).
pub const TOKEN_AUDIENCE: &str = "tucdesk";
/// Access-token lifetime (auth's default).
pub const ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
/// Refresh-token family lifetime (auth's default).
pub const REFRESH_LIFETIME: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Session-token and relay-ticket lifetime (auth's default).
pub const SESSION_TTL: Duration = Duration::from_secs(5 * 60);
/// How long rendezvous and the relay retry reaching auth at startup (it is in-process and
/// already serving, so this only covers a slow start).
pub const AUTH_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Relay region, and the region rendezvous prefers, so it picks the in-process relay.
pub const REGION: &str = "standalone";
/// Node id of the in-process relay (the audience of its tickets).
pub const RELAY_NODE_ID: &str = "standalone-relay";
/// Replica id of the in-process rendezvous.
pub const RENDEZVOUS_REPLICA_ID: &str = "standalone";
/// On shutdown, how long live relay sessions may go on before they are closed (the relay's
/// own default of 10 minutes suits a fleet, not a process on a laptop).
pub const RELAY_DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// How often the relay health-checks the local coturn (`--turn`) with a real allocation (the
/// relay's own default of 30 s would leave a fresh stack's coturn unknown for that long).
pub const COTURN_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The backends every service shares.
#[derive(Debug, Clone)]
pub struct SharedBackends {
    pub bus: Arc<dyn Bus>,
    pub replay: Arc<MemoryReplayCache>,
    pub limiter: Arc<MemoryRateLimiter>,
    pub leases: Arc<MemoryLeases>,
}

impl Default for SharedBackends {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedBackends {
    /// Fresh in-process backends, each bounded by [`MEMORY_CAPACITY`].
    pub fn new() -> Self {
        Self {
            bus: Arc::new(MemoryBus::new()),
            replay: Arc::new(MemoryReplayCache::new(MEMORY_CAPACITY)),
            limiter: Arc::new(MemoryRateLimiter::new(MEMORY_CAPACITY)),
            leases: Arc::new(MemoryLeases::new(MEMORY_CAPACITY)),
        }
    }
}

/// Where each service's files live inside the data directory.
#[derive(Debug, Clone)]
pub struct DataLayout {
    pub auth_db: PathBuf,
    pub rendezvous_db: PathBuf,
    /// The audit log (hash chains, checkpoints).
    pub audit_db: PathBuf,
    /// The audit signing key (created on first start, 0600).
    pub audit_key: PathBuf,
    /// Auth's development KEK (`<dir>/kek`).
    pub auth_key_dir: PathBuf,
    /// Rendezvous's service key; its development code key sits beside it (`code.key`).
    pub rendezvous_service_key: PathBuf,
    /// The recorder's upload progress and listing (`recorder.db`).
    pub recorder_db: PathBuf,
    /// The recorder's service key (rendezvous trusts it for agent and session lookups).
    pub recorder_service_key: PathBuf,
    /// The recordings (age files and signed manifests), `tenants/{team}/recordings/…`.
    pub recordings_dir: PathBuf,
    /// Directories created private (0700) before any key is written.
    pub private_dirs: Vec<PathBuf>,
}

impl DataLayout {
    pub fn new(config: &StandaloneConfig) -> Self {
        Self {
            auth_db: config.data_path("auth.db"),
            rendezvous_db: config.data_path("rendezvous.db"),
            audit_db: config.data_path("audit.db"),
            audit_key: config.data_path("keys/audit/audit.key"),
            auth_key_dir: config.data_path("keys/auth"),
            rendezvous_service_key: config.data_path("keys/rendezvous/service.key"),
            recorder_db: config.data_path("recorder.db"),
            recorder_service_key: config.data_path("keys/recorder/service.key"),
            recordings_dir: config.data_path("recordings"),
            private_dirs: vec![
                config.data_path("keys"),
                config.data_path("keys/auth"),
                config.data_path("keys/rendezvous"),
                config.data_path("keys/audit"),
                config.data_path("keys/recorder"),
                config.data_path("recordings"),
            ],
        }
    }
}

/// The addresses and URLs services use to find each other.
#[derive(Debug, Clone)]
pub struct Wiring {
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
    /// `http://<auth gRPC>` as dialled from this process.
    pub auth_url: String,
    /// `iss` of every token: the public URL of auth's HTTP listener.
    pub issuer: String,
    /// The relay's public WebSocket base URL.
    pub relay_ws_url: String,
    /// The relay's public STUN URL.
    pub stun_url: String,
    /// The recorder's public gRPC URL, told to agents with every offer (where to upload).
    pub recorder_url: String,
    /// coturn, with `--turn`: where it listens, its URL and the secret.
    pub turn: Option<crate::turn::TurnSettings>,
}

async fn sqlite(path: &std::path::Path, migrations: Migrations) -> anyhow::Result<Database> {
    let url = format!("sqlite://{}", path.display());
    let db = Database::connect(&url, &PoolSettings::default())
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    db.migrate(migrations)
        .await
        .with_context(|| format!("migrating {}", path.display()))?;
    Ok(db)
}

/// Rendezvous's service key, created (0600) on first start. Unlike the rendezvous binary this
/// asks nobody to configure auth: standalone hands the public key to auth itself.
pub fn load_or_create_service_key(path: &Path) -> anyhow::Result<Identity> {
    if path.exists() {
        return Identity::load_from_file(path)
            .with_context(|| format!("loading the rendezvous service key {}", path.display()));
    }
    let identity = Identity::generate()?;
    identity
        .save_to_file(path)
        .with_context(|| format!("saving the rendezvous service key {}", path.display()))?;
    tracing::info!(path = %path.display(), "created the rendezvous service key");
    Ok(identity)
}

/// Auth on `auth.db`, trusting rendezvous's service key (`rendezvous_public`).
pub async fn build_auth(
    layout: &DataLayout,
    wiring: &Wiring,
    shared: &SharedBackends,
    rendezvous_public: &str,
) -> anyhow::Result<Auth> {
    let db = sqlite(&layout.auth_db, tucdesk_auth::service::MIGRATIONS).await?;
    let config = AuthConfig {
        database_url: format!("sqlite://{}", layout.auth_db.display()),
        bus_url: "memory://".into(),
        cache_url: "memory://".into(),
        grpc_addr: wiring.auth_grpc,
        http_addr: wiring.auth_http,
        issuer: wiring.issuer.clone(),
        audience: TOKEN_AUDIENCE.into(),
        access_ttl: ACCESS_TTL,
        refresh_lifetime: REFRESH_LIFETIME,
        session_ttl: SESSION_TTL,
        kek: None,
        key_dir: layout.auth_key_dir.clone(),
        service_keys: vec![format!(
            "{}={rendezvous_public}",
            tucdesk_rendezvous::auth_link::SERVICE_NAME
        )],
    };
    let kek = tucdesk_auth::load_kek(&config).context("loading auth's key-encryption key")?;
    let passwords = PasswordHasher::new();
    passwords.warm_up().await?;
    let backends = tucdesk_auth::Backends {
        db,
        bus: shared.bus.clone(),
        replay: shared.replay.clone(),
        limiter: shared.limiter.clone(),
    };
    Ok(Auth::new(config, backends, kek, passwords).await?)
}

/// Rendezvous on `rendezvous.db`, signing to auth with `identity`, preferring the relay's
/// region; with `--turn` it mints TURN credentials with coturn's secret, otherwise sessions
/// get STUN and the WebSocket relay only.
pub async fn build_rendezvous(
    layout: &DataLayout,
    wiring: &Wiring,
    shared: &SharedBackends,
    identity: Identity,
    recorder_public: &str,
) -> anyhow::Result<Rendezvous> {
    let db = sqlite(
        &layout.rendezvous_db,
        tucdesk_rendezvous::service::MIGRATIONS,
    )
    .await?;
    let mut config = RendezvousConfig::embedded(
        &format!("sqlite://{}", layout.rendezvous_db.display()),
        "memory://",
        "memory://",
    );
    config.grpc_addr = wiring.rendezvous;
    config.internal_addr = wiring.rendezvous_internal;
    config.replica_id = Some(RENDEZVOUS_REPLICA_ID.to_owned());
    config.auth_url = wiring.auth_url.clone();
    config.token_issuer = wiring.issuer.clone();
    config.token_audience = TOKEN_AUDIENCE.to_owned();
    config.auth_startup_timeout = AUTH_STARTUP_TIMEOUT;
    config.service_key_file = layout.rendezvous_service_key.clone();
    config.code_key = None;
    // The in-process recorder looks up agent keys and sessions on the internal listener.
    config.service_keys = vec![format!(
        "{}={recorder_public}",
        tucdesk_recorder::directory::SERVICE_NAME
    )];
    config.recorder_url = Some(wiring.recorder_url.clone());
    config.turn_secret = wiring
        .turn
        .as_ref()
        .map(|turn| turn.secret.expose().to_owned());
    config.region = Some(REGION.to_owned());
    let code_key = tucdesk_rendezvous::load_code_key(&config)?;
    let signer = tucdesk_rendezvous::auth_link::service_signer(identity)?;
    let auth = AuthLink::connect(
        &config.auth_url,
        &config.token_issuer,
        &config.token_audience,
        signer,
        config.auth_startup_timeout,
    )
    .await?;
    let backends = tucdesk_rendezvous::Backends {
        db,
        bus: shared.bus.clone(),
        replay: shared.replay.clone(),
        limiter: shared.limiter.clone(),
        leases: shared.leases.clone(),
    };
    Ok(Rendezvous::new(config, backends, auth, code_key).await?)
}

/// The relay node, its tickets verified against auth's keys. Returns the keys too: the
/// caller runs their refresh alongside the node.
pub async fn build_relay(
    config: &StandaloneConfig,
    wiring: &Wiring,
    shared: &SharedBackends,
) -> anyhow::Result<(Relay, AuthKeys)> {
    let mut relay = RelayConfig::embedded();
    relay.node_id = RELAY_NODE_ID.to_owned();
    relay.region = REGION.to_owned();
    relay.ws_addr = wiring.relay_ws;
    relay.stun_addr = wiring.relay_stun;
    relay.admin_addr = wiring.relay_admin;
    relay.ws_url = Some(wiring.relay_ws_url.clone());
    relay.stun_urls = vec![wiring.stun_url.clone()];
    relay.turn_urls = wiring.turn.iter().map(|turn| turn.url.clone()).collect();
    relay.tls_cert.clone_from(&config.relay_tls_cert);
    relay.tls_key.clone_from(&config.relay_tls_key);
    relay.bus_url = "memory://".into();
    relay.auth_url = wiring.auth_url.clone();
    relay.token_issuer = wiring.issuer.clone();
    relay.auth_startup_timeout = AUTH_STARTUP_TIMEOUT;
    relay.service_keys = Vec::new();
    relay.drain_deadline = RELAY_DRAIN_DEADLINE;
    // Without --turn the node reports "no coturn configured", which rendezvous does not count
    // against it (the WebSocket path and STUN do not need coturn). With it, the node
    // health-checks coturn with real allocations and reports that in its heartbeat.
    relay.turn_secret = wiring
        .turn
        .as_ref()
        .map(|turn| turn.secret.expose().to_owned());
    relay.coturn_addr = wiring.turn.as_ref().map(|turn| turn.dial_addr());
    relay.coturn_realm = crate::turn::TURN_REALM.to_owned();
    relay.coturn_check_interval = COTURN_CHECK_INTERVAL;
    let channel = tucdesk_svc::auth_keys::auth_channel(&relay.auth_url)?;
    let keys = AuthKeys::connect(channel, &relay.token_issuer, relay.auth_startup_timeout)
        .await
        .context("the relay fetching auth's keys")?;
    let tickets = tucdesk_relay::tickets::Tickets::new(keys.verifier(&relay.node_id));
    let node = Relay::new(relay, shared.bus.clone(), tickets)?;
    Ok((node, keys))
}

/// The audit service on `audit.db`, consuming the shared bus's `AUDIT` stream and signing with
/// `keys/audit/audit.key` (created on first start). Built before the other services, so its
/// consumer exists before they publish (the in-process bus forgets what every existing
/// consumer acknowledged).
pub async fn build_audit(layout: &DataLayout, shared: &SharedBackends) -> anyhow::Result<Audit> {
    let db = sqlite(&layout.audit_db, tucdesk_audit::MIGRATIONS).await?;
    let mut config = AuditConfig::embedded(
        &format!("sqlite://{}", layout.audit_db.display()),
        "memory://",
    );
    config.key_file = layout.audit_key.clone();
    let key = AuditKey::load_or_create(&config.key_file, false)
        .context("loading the audit signing key")?;
    let backends = tucdesk_audit::Backends {
        db,
        bus: shared.bus.clone(),
    };
    Ok(Audit::new(config, backends, key).await?)
}

/// Verification of access tokens for the audit API, following auth's keys.
pub async fn audit_access(wiring: &Wiring) -> anyhow::Result<AccessVerifier> {
    let channel = tucdesk_svc::auth_keys::auth_channel(&wiring.auth_url)?;
    let keys = AuthKeys::connect(channel, &wiring.issuer, AUTH_STARTUP_TIMEOUT)
        .await
        .context("the audit service fetching auth's keys")?;
    Ok(AccessVerifier::from_auth(keys, TOKEN_AUDIENCE))
}

/// The recorder on `recorder.db`, storing recordings under `recordings/` in the data
/// directory, looking agents and sessions up at rendezvous's internal listener.
pub async fn build_recorder(
    layout: &DataLayout,
    wiring: &Wiring,
    shared: &SharedBackends,
    identity: Identity,
) -> anyhow::Result<tucdesk_recorder::Recorder> {
    let db = sqlite(&layout.recorder_db, tucdesk_recorder::MIGRATIONS).await?;
    let mut config = tucdesk_recorder::RecorderConfig::embedded(
        &format!("sqlite://{}", layout.recorder_db.display()),
        "memory://",
        &format!("file://{}", layout.recordings_dir.display()),
    );
    config.grpc_addr = wiring.recorder;
    config.rendezvous_internal_url = format!(
        "http://{}",
        crate::config::dial_addr(wiring.rendezvous_internal)
    );
    config.service_key_file = layout.recorder_service_key.clone();
    config.auth_url = wiring.auth_url.clone();
    config.token_issuer = wiring.issuer.clone();
    config.token_audience = TOKEN_AUDIENCE.to_owned();
    let signer = tucdesk_recorder::directory::service_signer(identity)?;
    let directory =
        tucdesk_recorder::RendezvousDirectory::new(&config.rendezvous_internal_url, signer)?;
    let backends = tucdesk_recorder::Backends {
        db,
        bus: shared.bus.clone(),
        store: tucdesk_recorder::objects::open(&config)?,
        directory: Arc::new(directory),
    };
    Ok(tucdesk_recorder::Recorder::new(config, backends).await?)
}

/// Verification of access tokens for the recorder's List and Get, following auth's keys.
pub async fn recorder_access(wiring: &Wiring) -> anyhow::Result<tucdesk_recorder::AccessVerifier> {
    let channel = tucdesk_svc::auth_keys::auth_channel(&wiring.auth_url)?;
    let keys = AuthKeys::connect(channel, &wiring.issuer, AUTH_STARTUP_TIMEOUT)
        .await
        .context("the recorder fetching auth's keys")?;
    Ok(tucdesk_recorder::AccessVerifier::from_auth(
        keys,
        TOKEN_AUDIENCE,
    ))
}
