//! Rendezvous's link to the auth service: the token signing keys (JWKS) every access token is
//! verified against, and session tokens minted under rendezvous's service assertion.
//!
//! The JWKS is fetched at startup (bounded retries: a deployment whose auth never answers
//! fails to start rather than refusing every caller), refreshed every [`JWKS_REFRESH`], and
//! refetched early when a token names an unknown `kid` (at most every
//! [`UNKNOWN_KID_REFETCH_MIN`], so forged kids cannot make us hammer auth).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tonic::transport::{Channel, Endpoint};
use tucdesk_crypto::{Identity, PublicKey, ServiceSigner};
use tucdesk_proto::v1::auth_internal_client::AuthInternalClient;
use tucdesk_proto::v1::auth_service_client::AuthServiceClient;
use tucdesk_proto::v1::{GetJwksRequest, Jwks, MintSessionTokenRequest, MintSessionTokenResponse};
use tucdesk_token::{KeySet, TokenVerifier};

use crate::error::RendezvousError;

/// How often the JWKS is refreshed (auth publishes a new key well before using it).
pub const JWKS_REFRESH: Duration = Duration::from_secs(60);
/// Fastest refetch triggered by tokens with an unknown `kid`.
pub const UNKNOWN_KID_REFETCH_MIN: Duration = Duration::from_secs(10);
/// Bound on every call to auth.
pub const AUTH_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on connecting to auth.
pub const AUTH_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between startup attempts to reach auth.
const STARTUP_RETRY: Duration = Duration::from_millis(500);
/// The audience of assertions rendezvous presents to auth.
pub const AUTH_SERVICE_NAME: &str = "auth";
/// Rendezvous's own name in its assertions (auth lets only this name mint session tokens).
pub const SERVICE_NAME: &str = "rendezvous";
/// Most keys accepted from auth's JWKS (as tucdesk-token bounds a JSON JWKS).
const MAX_JWKS_KEYS: usize = tucdesk_token::jwk::MAX_JWKS_KEYS;

#[derive(Debug, Clone)]
pub struct AuthLink {
    service: AuthServiceClient<Channel>,
    internal: AuthInternalClient<Channel>,
    signer: Arc<ServiceSigner>,
    keys: KeySet,
    verifier: TokenVerifier,
    jwks: Arc<Mutex<Jwks>>,
    last_fetch: Arc<Mutex<Option<Instant>>>,
    issuer: String,
}

/// Loads rendezvous's service identity, creating it (0600) on first start.
pub fn load_or_create_service_key(path: &Path) -> Result<Identity, RendezvousError> {
    if path.exists() {
        return Identity::load_from_file(path)
            .map_err(|err| RendezvousError::internal("loading the service key", err));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|err| RendezvousError::internal("creating the key directory", err))?;
    }
    let identity = Identity::generate()
        .map_err(|err| RendezvousError::internal("generating the service key", err))?;
    identity
        .save_to_file(path)
        .map_err(|err| RendezvousError::internal("saving the service key", err))?;
    tracing::warn!(
        path = %path.display(),
        public_key = %identity.agent_id(),
        "created a new rendezvous service key; add `rendezvous=<public_key>` to auth's \
         TUCDESK_AUTH_SERVICE_KEYS"
    );
    Ok(identity)
}

/// The signer for an identity: kid = the key's fingerprint, as auth expects.
pub fn service_signer(identity: Identity) -> Result<ServiceSigner, RendezvousError> {
    let kid = identity.fingerprint();
    ServiceSigner::new(SERVICE_NAME, &kid, identity)
        .map_err(|err| RendezvousError::internal("building the service signer", err))
}

impl AuthLink {
    /// Connects (lazily) to auth at `url` and fetches the JWKS, retrying up to
    /// `startup_timeout`.
    pub async fn connect(
        url: &str,
        issuer: &str,
        audience: &str,
        signer: ServiceSigner,
        startup_timeout: Duration,
    ) -> Result<Self, RendezvousError> {
        let channel = Endpoint::from_shared(url.to_owned())
            .map_err(|_| RendezvousError::InvalidArgument(format!("auth URL {url:?} is invalid")))?
            .connect_timeout(AUTH_CONNECT_TIMEOUT)
            .timeout(AUTH_CALL_TIMEOUT)
            .connect_lazy();
        let keys = KeySet::new();
        let link = Self {
            service: AuthServiceClient::new(channel.clone()),
            internal: AuthInternalClient::new(channel),
            signer: Arc::new(signer),
            verifier: TokenVerifier::new(keys.clone(), issuer, audience),
            keys,
            jwks: Arc::new(Mutex::new(Jwks::default())),
            last_fetch: Arc::new(Mutex::new(None)),
            issuer: issuer.to_owned(),
        };
        let deadline = Instant::now() + startup_timeout;
        loop {
            match link.refresh_jwks().await {
                Ok(()) => return Ok(link),
                Err(err) if Instant::now() >= deadline => {
                    tracing::error!(error = %err, auth = url, "auth did not answer at startup");
                    return Err(RendezvousError::Unavailable("the auth service"));
                }
                Err(_) => tokio::time::sleep(STARTUP_RETRY).await,
            }
        }
    }

    /// Verifies operator access tokens against auth's current keys.
    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    /// The JWKS as last fetched (served to agents in GetServerInfo).
    pub fn jwks(&self) -> Jwks {
        self.jwks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `iss` of every token auth signs.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Fetches the JWKS and replaces the trusted keys (all or nothing).
    pub async fn refresh_jwks(&self) -> Result<(), RendezvousError> {
        *self
            .last_fetch
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        let jwks = self
            .service
            .clone()
            .get_jwks(GetJwksRequest {})
            .await
            .map_err(|status| {
                tracing::warn!(code = ?status.code(), "fetching the JWKS from auth failed");
                RendezvousError::Unavailable("the auth service")
            })?
            .into_inner();
        let keys = jwks_keys(&jwks)?;
        self.keys
            .replace(keys)
            .map_err(|err| RendezvousError::internal("auth's JWKS is invalid", err))?;
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
        if !recent && let Err(err) = self.refresh_jwks().await {
            tracing::warn!(error = %err, "JWKS refetch for an unknown kid failed");
        }
    }

    /// Refreshes the JWKS every [`JWKS_REFRESH`] until `shutdown`.
    pub async fn run_refresh(&self, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(JWKS_REFRESH);
        tick.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(err) = self.refresh_jwks().await {
                        tracing::warn!(error = %err, "periodic JWKS refresh failed");
                    }
                }
            }
        }
    }

    /// Mints the session token and both relay tickets for an authorized session.
    pub async fn mint_session_token(
        &self,
        request: MintSessionTokenRequest,
    ) -> Result<MintSessionTokenResponse, RendezvousError> {
        let assertion = self
            .signer
            .issue(AUTH_SERVICE_NAME, tucdesk_token::unix_now())
            .map_err(|err| RendezvousError::internal("signing a service assertion", err))?;
        let mut request = tonic::Request::new(request);
        let value = assertion
            .parse()
            .map_err(|err| RendezvousError::internal("service assertion header", err))?;
        request
            .metadata_mut()
            .insert(tucdesk_proto::metadata::SERVICE_ASSERTION, value);
        self.internal
            .clone()
            .mint_session_token(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| {
                tracing::error!(code = ?status.code(), message = status.message(), "auth refused to mint a session token");
                match status.code() {
                    tonic::Code::NotFound | tonic::Code::PermissionDenied => {
                        RendezvousError::PermissionDenied("your account may not open sessions now")
                    }
                    _ => RendezvousError::Unavailable("the auth service"),
                }
            })
    }
}

/// The keys of a JWKS from auth, each checked as strictly as a JSON JWKS would be.
fn jwks_keys(jwks: &Jwks) -> Result<Vec<(String, PublicKey)>, RendezvousError> {
    if jwks.keys.len() > MAX_JWKS_KEYS {
        return Err(RendezvousError::internal("auth's JWKS", "too many keys"));
    }
    jwks.keys
        .iter()
        .map(|jwk| {
            if jwk.kty != "OKP" || jwk.crv != "Ed25519" || jwk.alg != "EdDSA" {
                return Err(RendezvousError::internal(
                    "auth's JWKS",
                    format!("key {} is not an EdDSA Ed25519 key", jwk.kid),
                ));
            }
            let key = URL_SAFE_NO_PAD
                .decode(&jwk.x)
                .ok()
                .and_then(|bytes| PublicKey::from_slice(&bytes).ok())
                .ok_or_else(|| {
                    RendezvousError::internal("auth's JWKS", format!("key {} is invalid", jwk.kid))
                })?;
            Ok((jwk.kid.clone(), key))
        })
        .collect()
}
