//! The auth service in-process: bootstraps teams, creates users and logs them in with device
//! keys, and trusts the rendezvous service key the harness generates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tucdesk_auth::password::PasswordHasher;
use tucdesk_auth::secrets::Kek;
use tucdesk_auth::{Auth, AuthConfig, Backends};
use tucdesk_crypto::{Identity, ServiceSigner};
use tucdesk_proto::v1::auth_service_client::AuthServiceClient;
use tucdesk_proto::v1::{
    BeginDeviceBindingRequest, CreateUserRequest, LoginRequest, Role as WireRole, login_response,
};
use tucdesk_svc::bus::MemoryBus;
use tucdesk_svc::cache::MemoryReplayCache;
use tucdesk_svc::ratelimit::MemoryRateLimiter;
use tucdesk_svc::sql::{Database, PoolSettings};
use tucdesk_svc::testing::TestPostgres;

use crate::Backend;
use crate::operator::{Operator, device_proof};

/// The password every harness user gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// A running auth service.
pub struct TestAuth {
    pub auth: Auth,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub issuer: String,
    pub client: AuthServiceClient<Channel>,
    /// Seed of the key rendezvous signs its service assertions with (trusted by this auth);
    /// `None` when the trusted key belongs to a rendezvous outside the harness.
    rendezvous_seed: Option<zeroize::Zeroizing<[u8; 32]>>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    pg: Option<TestPostgres>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestAuth")
            .field("grpc_addr", &self.grpc_addr)
            .finish_non_exhaustive()
    }
}

impl TestAuth {
    /// Starts auth trusting a rendezvous key the harness generates (see
    /// [`TestAuth::rendezvous_signer`]).
    pub async fn start(backend: Backend) -> anyhow::Result<Self> {
        let rendezvous_seed = tucdesk_crypto::rng::random_secret::<32>()?;
        let rendezvous_public = Identity::from_seed(&rendezvous_seed).agent_id();
        Self::start_with(backend, &rendezvous_public, Some(rendezvous_seed), None).await
    }

    /// Starts auth publishing its audit events through `bus` (its outbox publisher), instead
    /// of an in-process bus nobody reads.
    pub async fn start_on_bus(
        backend: Backend,
        bus: Arc<dyn tucdesk_svc::bus::Bus>,
    ) -> anyhow::Result<Self> {
        let rendezvous_seed = tucdesk_crypto::rng::random_secret::<32>()?;
        let rendezvous_public = Identity::from_seed(&rendezvous_seed).agent_id();
        Self::start_with(
            backend,
            &rendezvous_public,
            Some(rendezvous_seed),
            Some(bus),
        )
        .await
    }

    /// Starts auth trusting the service key of a rendezvous running outside the harness (a
    /// `tucdesk-rendezvous` process): `rendezvous_public_key` is its base64url Ed25519 public
    /// key, as `tucdesk-rendezvous service-key` prints it.
    /// [`TestAuth::rendezvous_signer`] is unavailable on such an auth.
    pub async fn start_trusting(
        backend: Backend,
        rendezvous_public_key: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with(backend, rendezvous_public_key, None, None).await
    }

    async fn start_with(
        backend: Backend,
        rendezvous_public: &str,
        rendezvous_seed: Option<zeroize::Zeroizing<[u8; 32]>>,
        bus: Option<Arc<dyn tucdesk_svc::bus::Bus>>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let (db, pg) = match backend {
            Backend::Embedded => {
                let url = format!("sqlite://{}", dir.path().join("auth.db").display());
                (
                    Database::connect(&url, &PoolSettings::default()).await?,
                    None,
                )
            }
            Backend::Real => {
                let pg = TestPostgres::new()
                    .await
                    .context("Postgres must be running")?;
                (pg.db.clone(), Some(pg))
            }
        };
        db.migrate(tucdesk_auth::service::MIGRATIONS).await?;

        let grpc = TcpListener::bind("127.0.0.1:0").await?;
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
        let issuer = format!("http://{http_addr}");
        let config = AuthConfig {
            database_url: "unused://".into(),
            bus_url: "memory://".into(),
            cache_url: "memory://".into(),
            grpc_addr,
            http_addr,
            issuer: issuer.clone(),
            audience: "tucdesk".into(),
            access_ttl: Duration::from_secs(900),
            refresh_lifetime: Duration::from_secs(30 * 24 * 3600),
            session_ttl: Duration::from_secs(300),
            kek: None,
            key_dir: dir.path().join("keys"),
            service_keys: vec![format!("rendezvous={rendezvous_public}")],
        };
        let backends = Backends {
            db,
            bus: bus.unwrap_or_else(|| Arc::new(MemoryBus::new())),
            replay: Arc::new(MemoryReplayCache::new(100_000)),
            limiter: Arc::new(MemoryRateLimiter::new(100_000)),
        };
        let kek = {
            use base64::Engine as _;
            let bytes = tucdesk_crypto::rng::random_array::<32>()?;
            Kek::from_base64(&base64::engine::general_purpose::STANDARD.encode(bytes))?
        };
        let auth = Auth::new(
            config,
            backends,
            kek,
            PasswordHasher::insecure_fast_for_tests(),
        )
        .await?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let (auth, shutdown) = (auth.clone(), shutdown.clone());
            async move {
                if let Err(err) = tucdesk_auth::serve(auth, grpc, http, shutdown).await {
                    eprintln!("test auth stopped: {err:#}");
                }
            }
        });
        let channel = Channel::from_shared(format!("http://{grpc_addr}"))?
            .connect()
            .await?;
        Ok(Self {
            auth,
            grpc_addr,
            http_addr,
            issuer,
            client: AuthServiceClient::new(channel),
            rendezvous_seed,
            shutdown,
            task,
            pg,
            _dir: dir,
        })
    }

    /// The signer a rendezvous replica of this deployment uses (auth trusts its key).
    pub fn rendezvous_signer(&self) -> anyhow::Result<ServiceSigner> {
        let seed = self.rendezvous_seed.as_ref().context(
            "this auth trusts an external rendezvous key (start_trusting); it has no signer",
        )?;
        Ok(tucdesk_rendezvous::auth_link::service_signer(
            Identity::from_seed(seed),
        )?)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// A new team and its owner, logged in on a fresh device. The first team is bootstrapped
    /// as an operator would; auth has no sign-up for further teams yet, so the harness writes
    /// them the way bootstrap does (team, owner, invite) to test tenant isolation.
    pub async fn new_team(&self, owner_email: &str) -> anyhow::Result<Operator> {
        let team_name = format!("team {owner_email}");
        let setup_token = if tucdesk_auth::store::count_teams(self.auth.db()).await? == 0 {
            self.auth
                .bootstrap(&team_name, owner_email)
                .await?
                .setup_token
                .as_str()
                .to_owned()
        } else {
            let mut tx = self.auth.db().begin().await?;
            let (_, user_id) =
                tucdesk_auth::store::create_team_with_owner(&mut tx, &team_name, owner_email)
                    .await?;
            let (token, _) =
                tucdesk_auth::store::create_invite(&mut tx, &user_id, 3_600_000).await?;
            tx.commit().await?;
            token.as_str().to_owned()
        };
        self.auth
            .accept_invite(&setup_token, PASSWORD.to_owned().into())
            .await?;
        self.login(owner_email, Identity::generate()?).await
    }

    /// Creates a user in `admin`'s team with `role` and logs them in on a fresh device.
    pub async fn add_user(
        &self,
        admin: &Operator,
        email: &str,
        role: WireRole,
    ) -> anyhow::Result<Operator> {
        let target = email.to_lowercase();
        let binding = (role as u32).to_be_bytes();
        let proof = device_proof(
            &admin.device,
            tucdesk_auth::admin::CREATE_USER_METHOD,
            &target,
            "",
            &binding,
            b"",
        )?;
        let created = self
            .client
            .clone()
            .create_user(admin.request(CreateUserRequest {
                email: email.to_owned(),
                display_name: email.to_owned(),
                role: role as i32,
                invite_ttl_seconds: 0,
                proof: Some(proof),
            })?)
            .await?
            .into_inner();
        self.auth
            .accept_invite(&created.invite_token, PASSWORD.to_owned().into())
            .await?;
        self.login(email, Identity::generate()?).await
    }

    /// A support principal: `admin` creates a support code scoped to one agent (`agent:<id>`)
    /// or tag (`tag:<tag>`) for `kinds`, and a technician on a fresh device redeems it.
    pub async fn support_principal(
        &self,
        admin: &Operator,
        scope: &str,
        kinds: &[tucdesk_proto::v1::SessionKind],
    ) -> anyhow::Result<Operator> {
        use tucdesk_proto::v1::create_support_code_request::Scope;
        let wire_scope = match scope.split_once(':') {
            Some(("agent", id)) => Scope::AgentId(id.to_owned()),
            Some(("tag", tag)) => Scope::Tag(tag.to_owned()),
            _ => anyhow::bail!("scope must be agent:<id> or tag:<tag>"),
        };
        let kinds: Vec<i32> = kinds.iter().map(|k| *k as i32).collect();
        let binding = tucdesk_auth::support_codes::create_binding(0, 1, &kinds);
        let proof = device_proof(
            &admin.device,
            tucdesk_auth::support_codes::CREATE_METHOD,
            scope,
            "",
            &binding,
            b"",
        )?;
        let created = self
            .client
            .clone()
            .create_support_code(admin.request(tucdesk_proto::v1::CreateSupportCodeRequest {
                scope: Some(wire_scope),
                allowed_kinds: kinds,
                ttl_seconds: 0,
                max_uses: 1,
                note: "test".into(),
                proof: Some(proof),
            })?)
            .await?
            .into_inner();
        let device = Identity::generate()?;
        let challenge = self
            .client
            .clone()
            .begin_device_binding(BeginDeviceBindingRequest {})
            .await?
            .into_inner()
            .challenge;
        let code = tucdesk_crypto::SupportCode::parse(&created.code)?;
        let binding = tucdesk_auth::support_codes::redeem_binding(&code);
        let proof = device_proof(
            &device,
            tucdesk_auth::support_codes::REDEEM_METHOD,
            "",
            "",
            &binding,
            &challenge,
        )?;
        let redeemed = self
            .client
            .clone()
            .redeem_support_code(tucdesk_proto::v1::RedeemSupportCodeRequest {
                protocol_version: tucdesk_proto::PROTOCOL_VERSION,
                code: created.code.clone(),
                device_proof: Some(proof),
                display_name: "Support Technician".into(),
                client: None,
            })
            .await?
            .into_inner();
        let claims = self.auth.verifier().verify_access(
            &redeemed.access_token,
            tucdesk_token::unix_now(),
            tucdesk_token::RequireCnf::No,
        )?;
        Ok(Operator {
            device,
            access_token: redeemed.access_token,
            user_id: claims.sub,
            team_id: claims.team_id,
            email: String::new(),
        })
    }

    /// Session token and relay tickets for a session of `operator` on `agent_id` through
    /// relay node `relay_node_id`, minted by auth exactly as rendezvous asks for them.
    pub async fn mint_session(
        &self,
        operator: &Operator,
        agent_id: &str,
        session_id: &str,
        relay_node_id: &str,
        ttl_seconds: u32,
    ) -> anyhow::Result<tucdesk_proto::v1::MintSessionTokenResponse> {
        let channel = tonic::transport::Channel::from_shared(self.url())?
            .connect()
            .await?;
        let mut client = tucdesk_proto::v1::auth_internal_client::AuthInternalClient::new(channel);
        let assertion = self
            .rendezvous_signer()?
            .issue("auth", tucdesk_token::unix_now())?;
        let mut request = tonic::Request::new(tucdesk_proto::v1::MintSessionTokenRequest {
            session_id: session_id.to_owned(),
            team_id: operator.team_id.clone(),
            agent_id: agent_id.to_owned(),
            user_id: operator.user_id.clone(),
            device_key_thumbprint: operator.device.public_key().jwk_thumbprint(),
            e_op_pub: tucdesk_crypto::rng::random_array::<32>()?.to_vec(),
            kind: tucdesk_proto::v1::SessionKind::Shell as i32,
            relay_node_id: relay_node_id.to_owned(),
            ttl_seconds,
            rendezvous_audience: "tucdesk-test".to_owned(),
        });
        request.metadata_mut().insert(
            tucdesk_proto::metadata::SERVICE_ASSERTION,
            assertion.parse()?,
        );
        Ok(client.mint_session_token(request).await?.into_inner())
    }

    /// Logs `email` in with the harness password on `device`.
    pub async fn login(&self, email: &str, device: Identity) -> anyhow::Result<Operator> {
        let challenge = self
            .client
            .clone()
            .begin_device_binding(BeginDeviceBindingRequest {})
            .await?
            .into_inner()
            .challenge;
        let proof = device_proof(
            &device,
            tucdesk_auth::login::LOGIN_METHOD,
            &email.trim().to_lowercase(),
            "",
            b"",
            &challenge,
        )?;
        let response = self
            .client
            .clone()
            .login(LoginRequest {
                protocol_version: tucdesk_proto::PROTOCOL_VERSION,
                email: email.to_owned(),
                password: PASSWORD.to_owned(),
                totp_code: String::new(),
                device_proof: Some(proof),
                client: None,
            })
            .await?
            .into_inner();
        let tokens = match response.result {
            Some(login_response::Result::Tokens(tokens)) => tokens,
            other => anyhow::bail!("login of {email} did not return tokens: {other:?}"),
        };
        let claims = self.auth.verifier().verify_access(
            &tokens.access_token,
            tucdesk_token::unix_now(),
            tucdesk_token::RequireCnf::No,
        )?;
        Ok(Operator {
            device,
            access_token: tokens.access_token,
            user_id: claims.sub,
            team_id: claims.team_id,
            email: email.to_owned(),
        })
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        if let Some(pg) = self.pg {
            let _ = pg.cleanup().await;
        }
    }
}
