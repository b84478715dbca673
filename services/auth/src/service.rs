//! The auth service's shared state and the operations the gRPC and HTTP layers call.

use std::sync::Arc;
use std::time::Duration;

use tucdesk_crypto::ServiceKeyring;
use tucdesk_crypto::jws::{self, JwsHeader};
use tucdesk_proto::v1::ActorKind;
use tucdesk_svc::audit_events::{self, AuditRecord};
use tucdesk_svc::bus::Bus;
use tucdesk_svc::cache::ReplayCache;
use tucdesk_svc::outbox::OutboxPublisher;
use tucdesk_svc::ratelimit::RateLimiter;
use tucdesk_svc::sql::{Database, Migrations, PoolSettings, Tx};
use tucdesk_token::{AccessClaims, Audience, Cnf, Jwk, Jwks, Role, TokenVerifier};

use crate::challenge::Challenges;
use crate::config::AuthConfig;
use crate::error::AuthError;
use crate::keys::SigningKeys;
use crate::password::PasswordHasher;
use crate::secrets::Kek;

static MIGRATIONS_PG: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/auth/postgres");
static MIGRATIONS_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/auth/sqlite");

/// The auth service's own tables, for both engines.
pub const MIGRATIONS: Migrations = Migrations {
    postgres: &MIGRATIONS_PG,
    sqlite: &MIGRATIONS_SQLITE,
};

/// Namespace of this service's keys in a shared cache.
const CACHE_NAMESPACE: &str = "auth";

/// The backends the service runs on. Standalone mode builds them once and shares the
/// in-process bus and caches between services.
#[derive(Debug, Clone)]
pub struct Backends {
    pub db: Database,
    pub bus: Arc<dyn Bus>,
    pub replay: Arc<dyn ReplayCache>,
    pub limiter: Arc<dyn RateLimiter>,
}

impl Backends {
    /// Connects every backend named in `config`; an unreachable one is an error naming it.
    pub async fn connect(config: &AuthConfig) -> anyhow::Result<Self> {
        let db = Database::connect_and_migrate(
            &config.database_url,
            &PoolSettings::default(),
            MIGRATIONS,
        )
        .await?;
        let bus = tucdesk_svc::bus::connect(&config.bus_url, "tucdesk-auth").await?;
        let replay = tucdesk_svc::cache::connect(&config.cache_url, CACHE_NAMESPACE).await?;
        let limiter = tucdesk_svc::ratelimit::connect(&config.cache_url, CACHE_NAMESPACE).await?;
        Ok(Self {
            db,
            bus,
            replay,
            limiter,
        })
    }
}

/// Shared state of one auth service instance; cheap to clone.
#[derive(Debug, Clone)]
pub struct Auth {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub config: AuthConfig,
    pub db: Database,
    pub kek: Arc<Kek>,
    pub keys: SigningKeys,
    pub challenges: Challenges,
    pub replay: Arc<dyn ReplayCache>,
    pub limiter: Arc<dyn RateLimiter>,
    pub outbox: OutboxPublisher,
    pub passwords: PasswordHasher,
    pub service_keys: ServiceKeyring,
    pub metrics: crate::metrics::AuthMetrics,
    pub verifier: TokenVerifier,
}

impl Auth {
    /// Builds the service on connected backends: loads (or creates) the signing keys and
    /// declares the audit stream.
    pub async fn new(
        config: AuthConfig,
        backends: Backends,
        kek: Kek,
        passwords: PasswordHasher,
    ) -> Result<Self, AuthError> {
        check_lifetimes(&config)?;
        let kek = Arc::new(kek);
        backends
            .bus
            .ensure_stream(&audit_events::audit_stream())
            .await
            .map_err(|err| AuthError::internal("declaring the audit stream", err))?;
        let keys = SigningKeys::load_or_create(backends.db.clone(), kek.clone()).await?;
        let service_keys = ServiceKeyring::from_entries(&config.service_keys)
            .map_err(AuthError::InvalidArgument)?;
        let verifier = TokenVerifier::new(keys.key_set().clone(), &config.issuer, &config.audience);
        Ok(Self {
            inner: Arc::new(Inner {
                challenges: Challenges::new(&kek, backends.replay.clone()),
                outbox: OutboxPublisher::new(backends.db.clone(), backends.bus.clone()),
                db: backends.db,
                replay: backends.replay,
                limiter: backends.limiter,
                keys,
                kek,
                passwords,
                service_keys,
                metrics: crate::metrics::AuthMetrics::new()?,
                verifier,
                config,
            }),
        })
    }

    pub fn db(&self) -> &Database {
        &self.inner.db
    }

    pub fn config(&self) -> &AuthConfig {
        &self.inner.config
    }

    pub fn keys(&self) -> &SigningKeys {
        &self.inner.keys
    }

    pub fn metrics(&self) -> &crate::metrics::AuthMetrics {
        &self.inner.metrics
    }

    pub fn outbox(&self) -> &OutboxPublisher {
        &self.inner.outbox
    }

    /// The published verification keys as a JWKS (RFC 7517 / RFC 8037).
    pub fn jwks(&self) -> Result<Jwks, AuthError> {
        let ring = self.inner.keys.ring();
        let keys = ring
            .published
            .iter()
            .map(|key| Jwk::from_public_key(&key.kid, &key.public_key))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| AuthError::internal("building the JWKS", err))?;
        Ok(Jwks { keys })
    }

    /// The verifier for this service's own access tokens (the same checks every service
    /// runs); it follows key rotations.
    pub fn verifier(&self) -> &TokenVerifier {
        &self.inner.verifier
    }

    /// Signs access-token claims with the current key.
    pub(crate) fn sign_access(&self, claims: &AccessClaims) -> Result<String, AuthError> {
        self.sign_with_current(tucdesk_token::ACCESS_TOKEN_TYP, claims)
    }

    /// Signs any token kind (`typ` tells them apart) with the current key.
    pub(crate) fn sign_with_current<C: serde::Serialize>(
        &self,
        typ: &str,
        claims: &C,
    ) -> Result<String, AuthError> {
        let ring = self.inner.keys.ring();
        jws::sign(
            &JwsHeader::eddsa(typ, &ring.current_kid),
            claims,
            &ring.current,
        )
        .map_err(|err| AuthError::internal("signing a token", err))
    }

    /// Claims of a new access token for a user bound to a device key.
    pub(crate) fn access_claims(
        &self,
        user_id: &str,
        team_id: &str,
        email: Option<&str>,
        role: Role,
        device_jkt: &str,
        now_secs: u64,
    ) -> Result<AccessClaims, AuthError> {
        let ttl = self.inner.config.access_ttl.as_secs().max(1);
        Ok(AccessClaims {
            iss: self.inner.config.issuer.clone(),
            sub: user_id.to_owned(),
            aud: Audience::One(self.inner.config.audience.clone()),
            team_id: team_id.to_owned(),
            email: email.map(str::to_owned),
            role,
            iat: now_secs,
            exp: now_secs + ttl,
            nbf: None,
            jti: tucdesk_token::new_jti()
                .map_err(|err| AuthError::internal("token id generation", err))?,
            cnf: Some(Cnf::jkt(device_jkt)),
            client_id: None,
            scp: None,
            kinds: None,
        })
    }

    /// Writes an audit event into the outbox inside `tx`.
    pub(crate) async fn audit(&self, tx: &mut Tx, record: AuditRecord) -> Result<(), AuthError> {
        audit_events::record(tx, record.context("source", "auth")).await?;
        Ok(())
    }

    /// Commits `tx` and asks the outbox publisher to deliver what it recorded.
    pub(crate) async fn commit(&self, tx: Tx) -> Result<(), AuthError> {
        tx.commit().await?;
        self.inner.outbox.wake();
        Ok(())
    }

    /// Records the event, commits, and counts the access + refresh token pair it issued.
    pub(crate) async fn commit_issued_pair(
        &self,
        mut tx: Tx,
        record: AuditRecord,
    ) -> Result<(), AuthError> {
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        self.metrics().issued("access");
        self.metrics().issued("refresh");
        Ok(())
    }

    /// Runs the background work (outbox delivery, key reloads) until `shutdown`.
    pub async fn run_background(&self, shutdown: tokio_util::sync::CancellationToken) {
        let outbox = tokio::spawn(self.inner.outbox.clone().run(shutdown.clone()));
        let keys = self.inner.keys.clone();
        let reload_shutdown = shutdown.clone();
        let reload = tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::keys::KEY_RELOAD_INTERVAL);
            loop {
                tokio::select! {
                    () = reload_shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        if let Err(err) = keys.reload().await {
                            tracing::warn!(error = %err, "signing key reload failed");
                        }
                    }
                }
            }
        });
        let _ = tokio::join!(outbox, reload);
    }

    /// An audit record attributed to a user of a team.
    pub(crate) fn user_event(team_id: &str, action: &str, user_id: &str) -> AuditRecord {
        AuditRecord::new(team_id, action, ActorKind::User, user_id)
    }

    /// The longest lifetime of any token this service signs; a retired key stays published
    /// at least this long.
    pub fn longest_token_lifetime(&self) -> Duration {
        self.inner
            .config
            .access_ttl
            .max(self.inner.config.session_ttl)
    }
}

/// Refuses lifetimes every verifier would reject (tucdesk-token's caps), at startup rather
/// than on the first request.
fn check_lifetimes(config: &AuthConfig) -> Result<(), AuthError> {
    let access = config.access_ttl.as_secs();
    if access == 0 || access > tucdesk_token::MAX_ACCESS_TOKEN_LIFETIME_SECS {
        return Err(AuthError::InvalidArgument(format!(
            "access token lifetime must be between 1 s and {} s",
            tucdesk_token::MAX_ACCESS_TOKEN_LIFETIME_SECS
        )));
    }
    let session = config.session_ttl.as_secs();
    if session == 0 || session > tucdesk_token::MAX_SESSION_TOKEN_LIFETIME_SECS {
        return Err(AuthError::InvalidArgument(format!(
            "session token lifetime must be between 1 s and {} s",
            tucdesk_token::MAX_SESSION_TOKEN_LIFETIME_SECS
        )));
    }
    Ok(())
}
