//! Harness: the auth service in-process on port 0, on real Postgres or SQLite, driven by
//! the real gRPC clients.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tucdesk_auth::password::PasswordHasher;
use tucdesk_auth::secrets::Kek;
use tucdesk_auth::{Auth, AuthConfig, Backends};
use tucdesk_crypto::{DeviceProof as Proof, DeviceProofContext, Identity, ServiceSigner};
use tucdesk_proto::v1::auth_internal_client::AuthInternalClient;
use tucdesk_proto::v1::auth_service_client::AuthServiceClient;
use tucdesk_proto::v1::{
    BeginDeviceBindingRequest, DeviceProof, LoginRequest, LoginResponse, RefreshRequest, TokenPair,
    login_response,
};
use tucdesk_svc::bus::MemoryBus;
use tucdesk_svc::cache::MemoryReplayCache;
use tucdesk_svc::ratelimit::MemoryRateLimiter;
use tucdesk_svc::sql::{Database, now_ms};
use tucdesk_svc::testing::{TestPostgres, sqlite_in};

pub const PASSWORD: &str = "correct horse battery staple";

#[derive(Debug, Clone, Copy)]
pub enum Engine {
    Postgres,
    Sqlite,
}

/// Runs `$scenario` against Postgres and against SQLite, as two tests.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::TestAuth::start($crate::common::Engine::Postgres).await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::TestAuth::start($crate::common::Engine::Sqlite).await).await;
                }
            )*
        }
    };
}

pub struct TestAuth {
    pub auth: Auth,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub client: AuthServiceClient<Channel>,
    pub internal: AuthInternalClient<Channel>,
    /// The key rendezvous signs its service assertions with (trusted by this auth).
    pub rendezvous: Arc<ServiceSigner>,
    /// The same key-encryption key the service uses (to seal test fixtures).
    pub kek: Kek,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    pg: Option<TestPostgres>,
    _dir: tempfile::TempDir,
}

impl TestAuth {
    pub async fn start(engine: Engine) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (db, pg) = match engine {
            Engine::Sqlite => (sqlite_in(dir.path()).await.unwrap(), None),
            Engine::Postgres => {
                let pg = TestPostgres::new().await.expect("Postgres must be running");
                (pg.db.clone(), Some(pg))
            }
        };
        db.migrate(tucdesk_auth::service::MIGRATIONS).await.unwrap();
        let rendezvous_key = Identity::generate().unwrap();
        let rendezvous_id = rendezvous_key.agent_id();
        let rendezvous_kid = rendezvous_key.fingerprint();
        let rendezvous =
            Arc::new(ServiceSigner::new("rendezvous", &rendezvous_kid, rendezvous_key).unwrap());

        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let config = AuthConfig {
            database_url: "unused://".into(),
            bus_url: "memory://".into(),
            cache_url: "memory://".into(),
            grpc_addr,
            http_addr,
            issuer: format!("http://{http_addr}"),
            audience: "tucdesk".into(),
            access_ttl: Duration::from_secs(900),
            refresh_lifetime: Duration::from_secs(30 * 24 * 3600),
            session_ttl: Duration::from_secs(300),
            kek: None,
            key_dir: dir.path().join("keys"),
            service_keys: vec![format!("rendezvous={rendezvous_id}")],
        };
        let backends = Backends {
            db: db.clone(),
            bus: Arc::new(MemoryBus::new()),
            replay: Arc::new(MemoryReplayCache::new(100_000)),
            limiter: Arc::new(MemoryRateLimiter::new(100_000)),
        };
        let kek_text = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(rand_bytes::<32>())
        };
        let auth = Auth::new(
            config,
            backends,
            Kek::from_base64(&kek_text).unwrap(),
            PasswordHasher::insecure_fast_for_tests(),
        )
        .await
        .unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let (auth, shutdown) = (auth.clone(), shutdown.clone());
            async move {
                tucdesk_auth::serve(auth, grpc, http, shutdown)
                    .await
                    .unwrap();
            }
        });
        let channel = Channel::from_shared(format!("http://{grpc_addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            auth,
            grpc_addr,
            http_addr,
            client: AuthServiceClient::new(channel.clone()),
            internal: AuthInternalClient::new(channel),
            rendezvous,
            kek: Kek::from_base64(&kek_text).unwrap(),
            shutdown,
            task,
            pg,
            _dir: dir,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        if let Some(pg) = self.pg {
            pg.cleanup().await.unwrap();
        }
    }

    pub fn db(&self) -> &Database {
        self.auth.db()
    }

    /// Bootstraps the first team and sets the owner's password; returns (team, user) ids.
    pub async fn owner(&self, email: &str) -> (String, String) {
        let done = self.auth.bootstrap("Acme SRE", email).await.unwrap();
        self.auth
            .accept_invite(done.setup_token.as_str(), PASSWORD.to_owned().into())
            .await
            .unwrap();
        (done.team_id, done.user_id)
    }

    pub async fn challenge(&self) -> Vec<u8> {
        self.client
            .clone()
            .begin_device_binding(BeginDeviceBindingRequest {})
            .await
            .unwrap()
            .into_inner()
            .challenge
    }

    pub async fn login_request(
        &self,
        device: &Identity,
        email: &str,
        password: &str,
    ) -> LoginRequest {
        let challenge = self.challenge().await;
        let target = email.trim().to_lowercase();
        LoginRequest {
            protocol_version: tucdesk_proto::PROTOCOL_VERSION,
            email: email.to_owned(),
            password: password.to_owned(),
            totp_code: String::new(),
            device_proof: Some(proof(
                device,
                tucdesk_auth::login::LOGIN_METHOD,
                &target,
                b"",
                &challenge,
            )),
            client: None,
        }
    }

    pub async fn login(
        &self,
        device: &Identity,
        email: &str,
        password: &str,
    ) -> Result<LoginResponse, tonic::Status> {
        let request = self.login_request(device, email, password).await;
        self.client
            .clone()
            .login(request)
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn tokens(&self, device: &Identity, email: &str) -> TokenPair {
        match self.login(device, email, PASSWORD).await.unwrap().result {
            Some(login_response::Result::Tokens(tokens)) => tokens,
            other => panic!("expected tokens, got {other:?}"),
        }
    }

    pub async fn refresh(
        &self,
        device: &Identity,
        refresh_token: &str,
    ) -> Result<TokenPair, tonic::Status> {
        use sha2::Digest as _;
        let binding = sha2::Sha256::digest(refresh_token.as_bytes());
        self.client
            .clone()
            .refresh(RefreshRequest {
                refresh_token: refresh_token.to_owned(),
                device_proof: Some(proof(
                    device,
                    tucdesk_auth::session::REFRESH_METHOD,
                    "",
                    &binding,
                    b"",
                )),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Turns TOTP on for a user with a known secret, sealed as the service seals it.
    pub async fn enable_totp(&self, user_id: &str, secret: &[u8; 20]) {
        let sealed = self
            .kek
            .seal(
                tucdesk_auth::secrets::Purpose::TotpSeal,
                user_id.as_bytes(),
                secret,
            )
            .unwrap();
        tucdesk_svc::on_pool!(self.db(), |pool| {
            sqlx::query("UPDATE users SET totp_secret = $1, totp_enabled = $2 WHERE id = $3")
                .bind(&sealed)
                .bind(true)
                .bind(user_id)
                .execute(pool)
                .await
                .unwrap()
                .rows_affected()
        });
    }

    /// Actions of the audit events written so far (outbox, in order).
    pub async fn audit_actions(&self) -> Vec<String> {
        let subjects: Vec<String> = tucdesk_svc::on_pool!(self.db(), |pool| {
            sqlx::query_scalar("SELECT subject FROM outbox ORDER BY id")
                .fetch_all(pool)
                .await
                .unwrap()
        });
        subjects
            .into_iter()
            .map(|subject| subject.splitn(3, '.').nth(2).unwrap_or_default().to_owned())
            .collect()
    }
}

/// A device proof as the viewer builds it.
pub fn proof(
    device: &Identity,
    method: &str,
    target: &str,
    binding: &[u8],
    challenge: &[u8],
) -> DeviceProof {
    let ctx = DeviceProofContext {
        method,
        target,
        session_id: "",
        binding,
        challenge,
    };
    let signed = Proof::create(device, &ctx, u64::try_from(now_ms()).unwrap()).unwrap();
    DeviceProof {
        public_key: signed.public_key.to_bytes().to_vec(),
        timestamp_ms: signed.timestamp_ms,
        nonce: signed.nonce,
        signature: signed.signature.to_bytes().to_vec(),
        challenge: challenge.to_vec(),
    }
}

/// The `RejectReason` a status carries.
pub fn reason(status: &tonic::Status) -> tucdesk_proto::v1::RejectReason {
    let detail = tucdesk_auth::error::error_detail(status).unwrap_or_default();
    tucdesk_proto::v1::RejectReason::try_from(detail.reason)
        .unwrap_or(tucdesk_proto::v1::RejectReason::Unspecified)
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    tucdesk_crypto::rng::random_array::<N>().unwrap()
}

/// The current RFC 6238 code (HMAC-SHA1, 6 digits, 30 s), computed independently of the
/// service's implementation.
pub fn totp_now(secret: &[u8]) -> String {
    use hmac::{KeyInit as _, Mac as _};
    let counter = u64::try_from(now_ms() / 1000).unwrap() / 30;
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret).unwrap();
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let value = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!("{:06}", value % 1_000_000)
}
