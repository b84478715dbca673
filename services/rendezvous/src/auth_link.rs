//! Rendezvous's link to the auth service: the token signing keys every access token is
//! verified against ([`tucdesk_svc::auth_keys`]), and session tokens minted under rendezvous's
//! service assertion.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;
use tucdesk_crypto::{Identity, ServiceSigner};
use tucdesk_proto::v1::auth_internal_client::AuthInternalClient;
use tucdesk_proto::v1::{Jwks, MintSessionTokenRequest, MintSessionTokenResponse};
use tucdesk_svc::auth_keys::{AuthKeys, auth_channel};
use tucdesk_token::TokenVerifier;

use crate::error::RendezvousError;

/// The audience of assertions rendezvous presents to auth.
pub const AUTH_SERVICE_NAME: &str = "auth";
/// Rendezvous's own name in its assertions (auth lets only this name mint session tokens).
pub const SERVICE_NAME: &str = "rendezvous";

#[derive(Debug, Clone)]
pub struct AuthLink {
    keys: AuthKeys,
    internal: AuthInternalClient<Channel>,
    signer: Arc<ServiceSigner>,
    verifier: TokenVerifier,
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
    /// Connects (lazily) to auth at `url` and fetches its keys, retrying up to
    /// `startup_timeout`. Access tokens must carry `iss` = `issuer` and `aud` ∋ `audience`.
    pub async fn connect(
        url: &str,
        issuer: &str,
        audience: &str,
        signer: ServiceSigner,
        startup_timeout: Duration,
    ) -> Result<Self, RendezvousError> {
        let channel =
            auth_channel(url).map_err(|err| RendezvousError::InvalidArgument(err.to_string()))?;
        let keys = AuthKeys::connect(channel.clone(), issuer, startup_timeout)
            .await
            .map_err(|err| {
                tracing::error!(error = %err, auth = url, "auth did not answer at startup");
                RendezvousError::Unavailable("the auth service")
            })?;
        Ok(Self {
            verifier: keys.verifier(audience),
            keys,
            internal: AuthInternalClient::new(channel),
            signer: Arc::new(signer),
        })
    }

    /// Verifies operator access tokens against auth's current keys.
    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    /// The JWKS as last fetched (served to agents in GetServerInfo).
    pub fn jwks(&self) -> Jwks {
        self.keys.jwks()
    }

    /// `iss` of every token auth signs.
    pub fn issuer(&self) -> &str {
        self.keys.issuer()
    }

    /// Refetches the JWKS after a token named an unknown kid, unless that happened recently.
    pub async fn refresh_for_unknown_kid(&self) {
        self.keys.refresh_for_unknown_kid().await;
    }

    /// Refreshes the keys periodically until `shutdown`.
    pub async fn run_refresh(&self, shutdown: tokio_util::sync::CancellationToken) {
        self.keys.run_refresh(shutdown).await;
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
                        RendezvousError::PermissionDenied(
                            "your account or support code may not open sessions now",
                        )
                    }
                    _ => RendezvousError::Unavailable("the auth service"),
                }
            })
    }
}
