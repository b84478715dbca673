//! Following the auth service's token signing keys (its JWKS over gRPC), for every service that
//! verifies tokens auth issued: access tokens (rendezvous), relay tickets (relay), and later
//! audit and recorder.
//!
//! The JWKS is fetched at startup with bounded retries (a service whose auth never answers
//! fails to start rather than refusing every caller), refreshed every [`JWKS_REFRESH`], and
//! refetched early when a token names an unknown `kid` (at most every
//! [`UNKNOWN_KID_REFETCH_MIN`], so forged kids cannot make us hammer auth). A refresh replaces
//! the trusted keys all at once or not at all.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tucdesk_proto::v1::auth_service_client::AuthServiceClient;
use tucdesk_proto::v1::{GetJwksRequest, Jwks};
use tucdesk_token::{KeySet, TokenVerifier};

/// How often the JWKS is refreshed (auth publishes a new key well before signing with it).
pub const JWKS_REFRESH: Duration = Duration::from_secs(60);
/// Fastest refetch triggered by tokens with an unknown `kid`.
pub const UNKNOWN_KID_REFETCH_MIN: Duration = Duration::from_secs(10);
/// Bound on every call to auth.
pub const AUTH_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on connecting to auth.
pub const AUTH_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between startup attempts to reach auth.
const STARTUP_RETRY: Duration = Duration::from_millis(500);
/// Most keys accepted from auth's JWKS (as tucdesk-token bounds a JSON JWKS).
const MAX_JWKS_KEYS: usize = tucdesk_token::jwk::MAX_JWKS_KEYS;

#[derive(Debug, thiserror::Error)]
pub enum AuthKeysError {
    #[error("auth URL {0:?} is invalid")]
    BadUrl(String),
    #[error("the auth service did not answer: {0}")]
    Unavailable(String),
    #[error("auth's JWKS is invalid: {0}")]
    InvalidJwks(String),
}

/// The auth service's current verification keys, kept fresh; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuthKeys {
    client: AuthServiceClient<Channel>,
    keys: KeySet,
    jwks: Arc<Mutex<Jwks>>,
    last_fetch: Arc<Mutex<Option<Instant>>>,
    issuer: String,
}

/// A lazily connecting channel to auth with the kit's timeouts.
pub fn auth_channel(url: &str) -> Result<Channel, AuthKeysError> {
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|_| AuthKeysError::BadUrl(url.to_owned()))?
        .connect_timeout(AUTH_CONNECT_TIMEOUT)
        .timeout(AUTH_CALL_TIMEOUT)
        .connect_lazy())
}

impl AuthKeys {
    /// Follows the keys of the auth service on `channel`, whose tokens carry `iss` = `issuer`;
    /// fetches them now, retrying up to `startup_timeout`.
    pub async fn connect(
        channel: Channel,
        issuer: &str,
        startup_timeout: Duration,
    ) -> Result<Self, AuthKeysError> {
        let keys = Self {
            client: AuthServiceClient::new(channel),
            keys: KeySet::new(),
            jwks: Arc::new(Mutex::new(Jwks::default())),
            last_fetch: Arc::new(Mutex::new(None)),
            issuer: issuer.to_owned(),
        };
        let deadline = Instant::now() + startup_timeout;
        loop {
            match keys.refresh().await {
                Ok(()) => return Ok(keys),
                Err(err) if Instant::now() >= deadline => return Err(err),
                Err(_) => tokio::time::sleep(STARTUP_RETRY).await,
            }
        }
    }

    /// The trusted keys (shared: verifiers built on them follow every refresh).
    pub fn key_set(&self) -> &KeySet {
        &self.keys
    }

    /// A verifier for tokens auth addressed to `audience`.
    pub fn verifier(&self, audience: &str) -> TokenVerifier {
        TokenVerifier::new(self.keys.clone(), &self.issuer, audience)
    }

    /// `iss` of every token auth signs.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The JWKS as last fetched.
    pub fn jwks(&self) -> Jwks {
        self.jwks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fetches the JWKS and replaces the trusted keys (all or nothing).
    pub async fn refresh(&self) -> Result<(), AuthKeysError> {
        *self
            .last_fetch
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        let jwks = self
            .client
            .clone()
            .get_jwks(GetJwksRequest {})
            .await
            .map_err(|status| AuthKeysError::Unavailable(format!("{:?}", status.code())))?
            .into_inner();
        let keys = jwks_keys(&jwks)?;
        self.keys
            .replace(keys)
            .map_err(|err| AuthKeysError::InvalidJwks(err.to_string()))?;
        *self.jwks.lock().unwrap_or_else(PoisonError::into_inner) = jwks;
        Ok(())
    }

    /// Refetches the JWKS after a token named an unknown kid, unless that happened recently.
    pub async fn refresh_for_unknown_kid(&self) {
        let recent = self
            .last_fetch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < UNKNOWN_KID_REFETCH_MIN);
        if !recent && let Err(err) = self.refresh().await {
            tracing::warn!(error = %err, "JWKS refetch for an unknown kid failed");
        }
    }

    /// Refreshes the JWKS every [`JWKS_REFRESH`] until `shutdown`.
    pub async fn run_refresh(&self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(JWKS_REFRESH);
        tick.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(err) = self.refresh().await {
                        tracing::warn!(error = %err, "periodic JWKS refresh failed");
                    }
                }
            }
        }
    }
}

/// The keys of a JWKS from auth, each checked as strictly as a JSON JWKS would be.
fn jwks_keys(jwks: &Jwks) -> Result<Vec<(String, tucdesk_crypto::PublicKey)>, AuthKeysError> {
    if jwks.keys.len() > MAX_JWKS_KEYS {
        return Err(AuthKeysError::InvalidJwks("too many keys".into()));
    }
    jwks.keys
        .iter()
        .map(|jwk| {
            if jwk.kty != "OKP" || jwk.crv != "Ed25519" || jwk.alg != "EdDSA" {
                return Err(AuthKeysError::InvalidJwks(format!(
                    "key {} is not an EdDSA Ed25519 key",
                    jwk.kid
                )));
            }
            let key = URL_SAFE_NO_PAD
                .decode(&jwk.x)
                .ok()
                .and_then(|bytes| tucdesk_crypto::PublicKey::from_slice(&bytes).ok())
                .ok_or_else(|| AuthKeysError::InvalidJwks(format!("key {} is invalid", jwk.kid)))?;
            Ok((jwk.kid.clone(), key))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tucdesk_proto::v1::Jwk;

    fn jwk(kid: &str, x: &str) -> Jwk {
        Jwk {
            kid: kid.into(),
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: x.into(),
            alg: "EdDSA".into(),
            r#use: "sig".into(),
            not_before: None,
            not_after: None,
        }
    }

    #[test]
    fn only_ed25519_keys_within_bounds_are_accepted() {
        let valid = tucdesk_crypto::Identity::generate()
            .map(|id| id.public_key().jwk_x())
            .unwrap_or_default();
        assert!(
            jwks_keys(&Jwks {
                keys: vec![jwk("k1", &valid)]
            })
            .is_ok()
        );
        let mut rsa = jwk("k2", &valid);
        rsa.kty = "RSA".into();
        assert!(jwks_keys(&Jwks { keys: vec![rsa] }).is_err());
        assert!(
            jwks_keys(&Jwks {
                keys: vec![jwk("k3", "not-a-key")]
            })
            .is_err()
        );
        let many = (0..=MAX_JWKS_KEYS)
            .map(|i| jwk(&format!("k{i}"), &valid))
            .collect();
        assert!(jwks_keys(&Jwks { keys: many }).is_err());
    }
}
