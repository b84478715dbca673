//! The logged-in viewer's view of the services: clients for auth and rendezvous, access
//! tokens refreshed before they expire (with a device proof, as auth requires), and device
//! proofs for sensitive requests.

use std::path::PathBuf;

use tonic::transport::Channel;
use tucdesk_crypto::{DeviceProofContext, Identity, proof_scopes};
use tucdesk_proto::v1::auth_service_client::AuthServiceClient;
use tucdesk_proto::v1::operator_service_client::OperatorServiceClient;
use tucdesk_proto::v1::{
    BeginDeviceBindingRequest, DeviceProof, LoginRequest, RefreshRequest, RejectReason, Role,
    SoftwareInfo, TokenPair, login_response,
};
use tucdesk_transport::rpc::{self, describe};

use crate::config::{ConfigDir, ConfigError, Credentials};

/// Refresh the access token when it has less than this left.
const REFRESH_MARGIN_SECS: i64 = 60;
/// Largest message accepted from the services.
const MAX_MESSAGE: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Setup(String),
    /// A server refused, in one line.
    #[error("{0}")]
    Refused(String),
    #[error("your login has ended ({0}); run `tucdesk login` again")]
    LoginEnded(String),
    #[error("this account has TOTP enabled: pass --totp CODE")]
    TotpRequired,
}

impl ApiError {
    pub fn from_status(status: &tonic::Status) -> Self {
        ApiError::Refused(describe(status))
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A device proof for `method` over `target`, `session_id` and `binding`.
pub fn device_proof(
    device: &Identity,
    method: &str,
    target: &str,
    session_id: &str,
    binding: &[u8],
    challenge: &[u8],
) -> Result<DeviceProof, ApiError> {
    let ctx = DeviceProofContext {
        method,
        target,
        session_id,
        binding,
        challenge,
    };
    tucdesk_transport::proofs::device_proof(device, &ctx, now_ms())
        .map_err(|err| ApiError::Setup(format!("signing with the device key: {err}")))
}

/// A fresh single-use challenge for a proof that needs one.
async fn challenge(auth: &mut AuthServiceClient<Channel>) -> Result<Vec<u8>, ApiError> {
    Ok(auth
        .begin_device_binding(BeginDeviceBindingRequest {})
        .await
        .map_err(|s| ApiError::from_status(&s))?
        .into_inner()
        .challenge)
}

fn auth_client(
    url: &str,
    ca: Option<&std::path::Path>,
) -> Result<AuthServiceClient<Channel>, ApiError> {
    Ok(AuthServiceClient::new(
        rpc::channel(url, ca, false).map_err(|err| ApiError::Setup(err.to_string()))?,
    )
    .max_decoding_message_size(MAX_MESSAGE))
}

fn software() -> SoftwareInfo {
    SoftwareInfo {
        name: "tucdesk".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
    }
}

fn role_name(role: i32) -> String {
    Role::try_from(role)
        .map(|r| {
            r.as_str_name()
                .trim_start_matches("ROLE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| "unknown".into())
}

fn apply_tokens(credentials: &mut Credentials, pair: TokenPair) {
    credentials.access_token = pair.access_token;
    credentials.access_expires_at = pair
        .access_token_expires_at
        .map_or(now_secs() + 300, |t| t.seconds);
    credentials.refresh_token = pair.refresh_token;
    if let Some(user) = pair.user {
        credentials.email = user.email;
        credentials.user_id = user.user_id;
        credentials.team_id = user.team_id;
        credentials.role = role_name(user.role);
    }
}

/// Where to log in.
#[derive(Debug, Clone)]
pub struct LoginTarget {
    pub auth: String,
    pub rendezvous: String,
    pub audit: String,
    /// Recorder URL, when recordings are used.
    pub recorder: Option<String>,
    pub ca_file: Option<PathBuf>,
}

/// The recorder URL to store: the one given, else the one stored for the same rendezvous (so
/// logging in again without `--recorder` keeps it).
fn recorder_url(config: &ConfigDir, target: &LoginTarget) -> Option<String> {
    target.recorder.clone().or_else(|| {
        config
            .credentials()
            .ok()
            .filter(|stored| stored.rendezvous == target.rendezvous)
            .and_then(|stored| stored.recorder)
    })
}

/// Email + password (+ TOTP) login with a device-key proof; stores the tokens.
pub async fn login(
    config: &ConfigDir,
    target: LoginTarget,
    email: &str,
    password: &zeroize::Zeroizing<String>,
    totp: Option<&str>,
) -> Result<Credentials, ApiError> {
    let device = config.device_key()?;
    let mut auth = auth_client(&target.auth, target.ca_file.as_deref())?;
    let challenge = challenge(&mut auth).await?;
    let proof = device_proof(
        &device,
        proof_scopes::LOGIN,
        &email.to_lowercase(),
        "",
        b"",
        &challenge,
    )?;
    let response = auth
        .login(LoginRequest {
            protocol_version: tucdesk_proto::PROTOCOL_VERSION,
            email: email.to_owned(),
            password: password.as_str().to_owned(),
            totp_code: totp.unwrap_or_default().to_owned(),
            device_proof: Some(proof),
            client: Some(software()),
        })
        .await
        .map_err(|s| ApiError::from_status(&s))?
        .into_inner();
    let pair = match response.result {
        Some(login_response::Result::Tokens(pair)) => pair,
        Some(login_response::Result::TotpRequired(_)) => return Err(ApiError::TotpRequired),
        None => return Err(ApiError::Refused("empty login answer".into())),
    };
    let recorder = recorder_url(config, &target);
    let mut credentials = Credentials {
        auth: target.auth,
        rendezvous: target.rendezvous,
        audit: target.audit,
        recorder,
        ca_file: target.ca_file,
        email: email.to_owned(),
        user_id: String::new(),
        team_id: String::new(),
        role: String::new(),
        access_token: String::new(),
        access_expires_at: 0,
        refresh_token: String::new(),
    };
    apply_tokens(&mut credentials, pair);
    config.save_credentials(&credentials)?;
    Ok(credentials)
}

/// Redeems a support code (a technician's one-time access, scoped by the admin who made it to
/// one agent or a tag) with this device's key; stores the short-lived token. There is no refresh
/// token: when it expires, the technician needs a new code.
pub async fn redeem_support_code(
    config: &ConfigDir,
    target: LoginTarget,
    code: &str,
    display_name: &str,
) -> Result<Credentials, ApiError> {
    let parsed = tucdesk_crypto::SupportCode::parse(code)
        .map_err(|_| ApiError::Refused("that is not a support code (like K7M2Q-9XH4R-…)".into()))?;
    let device = config.device_key()?;
    let mut auth = auth_client(&target.auth, target.ca_file.as_deref())?;
    let challenge = challenge(&mut auth).await?;
    let binding = proof_scopes::redeem_binding(&parsed);
    let proof = device_proof(
        &device,
        proof_scopes::REDEEM_SUPPORT_CODE,
        "",
        "",
        &binding,
        &challenge,
    )?;
    let redeemed = auth
        .redeem_support_code(tucdesk_proto::v1::RedeemSupportCodeRequest {
            protocol_version: tucdesk_proto::PROTOCOL_VERSION,
            code: code.to_owned(),
            device_proof: Some(proof),
            display_name: display_name.to_owned(),
            client: Some(software()),
        })
        .await
        .map_err(|s| ApiError::from_status(&s))?
        .into_inner();
    let recorder = recorder_url(config, &target);
    let credentials = Credentials {
        auth: target.auth,
        rendezvous: target.rendezvous,
        audit: target.audit,
        recorder,
        ca_file: target.ca_file,
        email: display_name.to_owned(),
        user_id: String::new(),
        team_id: redeemed.team_id,
        role: "support".into(),
        access_token: redeemed.access_token,
        access_expires_at: redeemed.expires_at.map_or(now_secs() + 300, |t| t.seconds),
        refresh_token: String::new(),
    };
    config.save_credentials(&credentials)?;
    Ok(credentials)
}

/// Sets the first password with an invite or setup token.
pub async fn accept_invite(
    target: &LoginTarget,
    token: &str,
    password: &zeroize::Zeroizing<String>,
) -> Result<(), ApiError> {
    let mut auth = auth_client(&target.auth, target.ca_file.as_deref())?;
    auth.accept_invite(tucdesk_proto::v1::AcceptInviteRequest {
        invite_token: token.to_owned(),
        password: password.as_str().to_owned(),
    })
    .await
    .map_err(|s| ApiError::from_status(&s))?;
    Ok(())
}

/// A logged-in viewer.
pub struct Api {
    config: ConfigDir,
    pub device: Identity,
    pub credentials: Credentials,
    auth: AuthServiceClient<Channel>,
    rendezvous: OperatorServiceClient<Channel>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Api {
    /// Loads the credentials and the device key.
    pub fn open(config: &ConfigDir) -> Result<Self, ApiError> {
        let credentials = config.credentials()?;
        let device = config.device_key()?;
        let ca = credentials.ca_file.clone();
        let auth = auth_client(&credentials.auth, ca.as_deref())?;
        // One connection for every call (each call carries its own deadline, see `request`):
        // a second connection would cost a second TCP and HTTP/2 handshake per command.
        let channel = rpc::channel(&credentials.rendezvous, ca.as_deref(), true)
            .map_err(|err| ApiError::Setup(err.to_string()))?;
        let rendezvous = OperatorServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
        Ok(Self {
            config: config.clone(),
            device,
            credentials,
            auth,
            rendezvous,
        })
    }

    /// A current access token, refreshed (and stored) when close to expiry.
    pub async fn token(&mut self) -> Result<String, ApiError> {
        if self.credentials.access_expires_at - now_secs() > REFRESH_MARGIN_SECS {
            return Ok(self.credentials.access_token.clone());
        }
        if self.credentials.refresh_token.is_empty() {
            // A support code's token: usable to its end, never refreshed.
            if self.credentials.access_expires_at > now_secs() {
                return Ok(self.credentials.access_token.clone());
            }
            return Err(ApiError::LoginEnded(
                "the support code's access has expired; ask for a new code".into(),
            ));
        }
        let binding = proof_scopes::refresh_binding(&self.credentials.refresh_token);
        let proof = device_proof(&self.device, proof_scopes::REFRESH, "", "", &binding, b"")?;
        let pair = self
            .auth
            .refresh(RefreshRequest {
                refresh_token: self.credentials.refresh_token.clone(),
                device_proof: Some(proof),
            })
            .await
            .map_err(|status| match rpc::reason(&status) {
                RejectReason::TokenReused
                | RejectReason::TokenInvalid
                | RejectReason::TokenExpired
                | RejectReason::AccountDisabled
                | RejectReason::DeviceKeyMismatch => ApiError::LoginEnded(describe(&status)),
                _ => ApiError::from_status(&status),
            })?
            .into_inner();
        apply_tokens(&mut self.credentials, pair);
        self.config.save_credentials(&self.credentials)?;
        Ok(self.credentials.access_token.clone())
    }

    /// `message` with a current bearer token, the protocol version header and the unary call
    /// deadline ([`rpc::CALL_TIMEOUT`]; calls that wait longer set their own).
    pub async fn request<T>(&mut self, message: T) -> Result<tonic::Request<T>, ApiError> {
        let token = self.token().await?;
        let mut request = tonic::Request::new(message);
        request.set_timeout(rpc::CALL_TIMEOUT);
        let metadata = request.metadata_mut();
        metadata.insert(
            tucdesk_proto::metadata::AUTHORIZATION,
            format!("Bearer {token}")
                .parse()
                .map_err(|_| ApiError::LoginEnded("the stored token is malformed".into()))?,
        );
        metadata.insert(
            tucdesk_proto::metadata::PROTOCOL_VERSION,
            tucdesk_proto::PROTOCOL_VERSION.into(),
        );
        Ok(request)
    }

    /// A proof for a sensitive request.
    pub fn proof(
        &self,
        method: &str,
        target: &str,
        session_id: &str,
        binding: &[u8],
    ) -> Result<DeviceProof, ApiError> {
        device_proof(&self.device, method, target, session_id, binding, b"")
    }

    /// A client for the audit service (streaming: exports can be long).
    pub fn audit(
        &self,
    ) -> Result<tucdesk_proto::v1::audit_service_client::AuditServiceClient<Channel>, ApiError>
    {
        let channel = rpc::channel(
            &self.credentials.audit,
            self.credentials.ca_file.as_deref(),
            true,
        )
        .map_err(|err| ApiError::Setup(err.to_string()))?;
        Ok(
            tucdesk_proto::v1::audit_service_client::AuditServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE),
        )
    }

    /// A client for the recorder (streaming: downloads can be long). An error naming
    /// `tucdesk login --recorder URL` when no recorder URL is stored.
    pub fn recorder(
        &self,
    ) -> Result<tucdesk_proto::v1::recorder_service_client::RecorderServiceClient<Channel>, ApiError>
    {
        let url = self.credentials.recorder.as_deref().ok_or_else(|| {
            ApiError::Setup(
                "no recorder URL is stored; log in again with `tucdesk login --recorder URL` \
                 (the standalone stack's is http://127.0.0.1:7440)"
                    .into(),
            )
        })?;
        let channel = rpc::channel(url, self.credentials.ca_file.as_deref(), true)
            .map_err(|err| ApiError::Setup(err.to_string()))?;
        Ok(
            tucdesk_proto::v1::recorder_service_client::RecorderServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE),
        )
    }

    /// The auth client (unary calls).
    pub fn auth(&self) -> AuthServiceClient<Channel> {
        self.auth.clone()
    }

    /// The rendezvous client.
    pub fn rendezvous(&self) -> OperatorServiceClient<Channel> {
        self.rendezvous.clone()
    }

    /// Revokes this device's refresh family and forgets the credentials.
    pub async fn logout(mut self) -> Result<(), ApiError> {
        if self.credentials.refresh_token.is_empty() {
            // Support access has no family to revoke; it expires on its own.
            self.config.remove_credentials()?;
            return Ok(());
        }
        let request = self
            .request(tucdesk_proto::v1::LogoutRequest {
                refresh_token: self.credentials.refresh_token.clone(),
                all_devices: false,
            })
            .await;
        let result = match request {
            Ok(request) => self
                .auth
                .logout(request)
                .await
                .map(|_| ())
                .map_err(|s| ApiError::from_status(&s)),
            Err(err) => Err(err),
        };
        self.config.remove_credentials()?;
        result
    }
}
