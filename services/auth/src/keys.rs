//! JWT signing keys: Ed25519 with a `kid`, sealed at rest under the KEK, rotated on demand.
//!
//! Exactly one key signs at a time. `rotate` makes a new key current and retires the old one,
//! which stays published in the JWKS until every token it signed has expired
//! (`published_until_ms = retired_at + longest token lifetime`), so verifiers never reject a
//! token that was valid when issued. Replicas pick up a rotation on their next reload.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tucdesk_crypto::{Identity, PublicKey};
use tucdesk_svc::on_pool;
use tucdesk_svc::sql::{Database, now_ms};
use zeroize::Zeroizing;

use crate::error::AuthError;
use crate::secrets::{Kek, Purpose};

/// How often replicas re-read the key table to notice another replica's rotation.
pub const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// Ed25519 seed length.
const SEED_LEN: usize = 32;

/// A published verification key.
#[derive(Debug, Clone)]
pub struct PublishedKey {
    pub kid: String,
    pub public_key: PublicKey,
    pub created_at_ms: i64,
    /// `None` while the key is current; after retirement, when it leaves the JWKS.
    pub published_until_ms: Option<i64>,
}

/// The current signing key plus every key still published.
#[derive(Debug)]
pub struct KeyRing {
    pub current_kid: String,
    pub current: Identity,
    pub published: Vec<PublishedKey>,
}

/// Loads, creates and rotates signing keys; cheap to clone.
#[derive(Debug, Clone)]
pub struct SigningKeys {
    db: Database,
    kek: Arc<Kek>,
    ring: Arc<RwLock<Arc<KeyRing>>>,
    /// The published keys as a verifier key set; clones share it, so every verifier built on
    /// it sees a rotation as soon as [`SigningKeys::reload`] runs.
    key_set: tucdesk_token::KeySet,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    kid: String,
    public_key: Vec<u8>,
    private_key_sealed: Option<Vec<u8>>,
    created_at_ms: i64,
    retired_at_ms: Option<i64>,
    published_until_ms: Option<i64>,
}

fn replace_keys(set: &tucdesk_token::KeySet, ring: &KeyRing) -> Result<(), AuthError> {
    set.replace(
        ring.published
            .iter()
            .map(|key| (key.kid.clone(), key.public_key)),
    )
    .map_err(|err| AuthError::internal("publishing signing keys", err))
}

fn new_kid() -> String {
    // Time-ordered, so `kid`s sort by age in logs and the JWKS.
    format!("k{}", uuid::Uuid::now_v7().simple())
}

impl SigningKeys {
    /// Loads the key ring, creating the first key on a fresh database.
    pub async fn load_or_create(db: Database, kek: Arc<Kek>) -> Result<Self, AuthError> {
        if Self::read_ring(&db, &kek).await?.is_none() {
            Self::insert_new_key(&db, &kek).await?;
        }
        let ring = Self::read_ring(&db, &kek)
            .await?
            .ok_or_else(|| AuthError::internal("signing keys", "no current key after creation"))?;
        let key_set = tucdesk_token::KeySet::new();
        replace_keys(&key_set, &ring)?;
        Ok(Self {
            db,
            kek,
            ring: Arc::new(RwLock::new(Arc::new(ring))),
            key_set,
        })
    }

    /// The published keys, shared with every verifier built on them.
    pub fn key_set(&self) -> &tucdesk_token::KeySet {
        &self.key_set
    }

    /// The keys to sign and publish with right now.
    pub fn ring(&self) -> Arc<KeyRing> {
        match self.ring.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the table (another replica may have rotated).
    pub async fn reload(&self) -> Result<(), AuthError> {
        if let Some(ring) = Self::read_ring(&self.db, &self.kek).await? {
            replace_keys(&self.key_set, &ring)?;
            let mut slot = match self.ring.write() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            *slot = Arc::new(ring);
        }
        Ok(())
    }

    /// Makes a new key current; the old one stays published for `longest_token_lifetime`.
    /// Returns the new `kid`.
    pub async fn rotate(&self, longest_token_lifetime: Duration) -> Result<String, AuthError> {
        let now = now_ms();
        let keep_ms = i64::try_from(longest_token_lifetime.as_millis()).unwrap_or(i64::MAX);
        let mut tx = self.db.begin().await?;
        tucdesk_svc::on_tx!(&mut tx, |conn| {
            sqlx::query(
                "UPDATE signing_keys SET retired_at_ms = $1, published_until_ms = $2 \
                 WHERE retired_at_ms IS NULL",
            )
            .bind(now)
            .bind(now.saturating_add(keep_ms))
            .execute(conn)
            .await?
            .rows_affected()
        });
        let kid = Self::insert_key_in(&mut tx, &self.kek).await?;
        let record = tucdesk_svc::audit_events::AuditRecord::new(
            tucdesk_svc::audit_events::SYSTEM_TEAM,
            "auth.signing_key_rotated",
            tucdesk_proto::v1::ActorKind::System,
            "tucdesk-auth",
        )
        .target(format!("signing_key:{kid}"))
        .context("outcome", "success")
        .context("source", "auth")
        .context("retired_published_until_ms", now.saturating_add(keep_ms));
        tucdesk_svc::audit_events::record(&mut tx, record).await?;
        tx.commit().await?;
        self.reload().await?;
        Ok(kid)
    }

    async fn insert_new_key(db: &Database, kek: &Kek) -> Result<String, AuthError> {
        let mut tx = db.begin().await?;
        let kid = Self::insert_key_in(&mut tx, kek).await?;
        tx.commit().await?;
        Ok(kid)
    }

    async fn insert_key_in(tx: &mut tucdesk_svc::sql::Tx, kek: &Kek) -> Result<String, AuthError> {
        let seed = tucdesk_crypto::rng::random_secret::<SEED_LEN>()
            .map_err(|err| AuthError::internal("signing key generation", err))?;
        let identity = Identity::from_seed(&seed);
        let kid = new_kid();
        let sealed = kek.seal(Purpose::SigningKeySeal, kid.as_bytes(), seed.as_slice())?;
        let public = identity.public_key().to_bytes().to_vec();
        tucdesk_svc::on_tx!(tx, |conn| {
            sqlx::query(
                "INSERT INTO signing_keys (kid, public_key, private_key_sealed, created_at_ms) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&kid)
            .bind(&public)
            .bind(&sealed)
            .bind(now_ms())
            .execute(conn)
            .await?
            .rows_affected()
        });
        tracing::info!(%kid, "created JWT signing key");
        Ok(kid)
    }

    async fn read_ring(db: &Database, kek: &Kek) -> Result<Option<KeyRing>, AuthError> {
        let now = now_ms();
        let rows: Vec<KeyRow> = on_pool!(db, |pool| {
            sqlx::query_as(
                "SELECT kid, public_key, private_key_sealed, created_at_ms, retired_at_ms, \
                 published_until_ms FROM signing_keys \
                 WHERE retired_at_ms IS NULL OR published_until_ms > $1 \
                 ORDER BY created_at_ms DESC",
            )
            .bind(now)
            .fetch_all(pool)
            .await?
        });
        let mut current = None;
        let mut published = Vec::with_capacity(rows.len());
        for row in rows {
            let public_key = PublicKey::from_slice(&row.public_key)
                .map_err(|err| AuthError::internal("stored signing key is invalid", err))?;
            if row.retired_at_ms.is_none() && current.is_none() {
                let sealed = row.private_key_sealed.as_deref().ok_or_else(|| {
                    AuthError::internal("signing keys", "current key has no private part")
                })?;
                let opened = kek.open(Purpose::SigningKeySeal, row.kid.as_bytes(), sealed)?;
                let seed: Zeroizing<[u8; SEED_LEN]> =
                    Zeroizing::new(opened.as_slice().try_into().map_err(|_| {
                        AuthError::internal("signing keys", "bad sealed seed length")
                    })?);
                let identity = Identity::from_seed(&seed);
                if identity.public_key() != public_key {
                    return Err(AuthError::internal(
                        "signing keys",
                        "sealed seed does not match the stored public key",
                    ));
                }
                current = Some((row.kid.clone(), identity));
            }
            published.push(PublishedKey {
                kid: row.kid,
                public_key,
                created_at_ms: row.created_at_ms,
                published_until_ms: row.published_until_ms,
            });
        }
        Ok(current.map(|(current_kid, current)| KeyRing {
            current_kid,
            current,
            published,
        }))
    }
}
