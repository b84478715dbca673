//! A test deployment of the audit service: its database (a fresh Postgres schema or a SQLite
//! file), a bus (the machine's NATS or an in-process bus) with a stream and subjects of its
//! own, and a signing key; producers are simulated by publishing `tucdesk.v1.AuditEvent`s to
//! the stream exactly as the outbox publisher does. [`Api`] adds the gRPC API in front of a
//! running replica, with an issuer of access tokens it trusts.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tucdesk_audit::store::entries::{self, EntryFilter};
use tucdesk_audit::{AccessVerifier, Audit, AuditConfig, AuditKey, Backends, MIGRATIONS};
use tucdesk_crypto::Identity;
use tucdesk_crypto::audit::Entry;
use tucdesk_proto::v1 as pb;
use tucdesk_proto::v1::audit_service_client::AuditServiceClient;
use tucdesk_svc::bus::{Bus, Headers, MemoryBus, NatsBus, StreamSpec};
use tucdesk_svc::sql::{Database, PoolSettings};
use tucdesk_svc::testing::{TestPostgres, nats_url, unique_name};
use tucdesk_testkit::Backend;
use tucdesk_token::{AccessClaims, Cnf, KeySet, Role, TokenIssuer, TokenVerifier};

/// How long a test waits for events to settle in the log.
pub const SETTLE: Duration = Duration::from_secs(20);

pub struct Fixture {
    pub backend: Backend,
    pub db: Database,
    pub bus: Arc<dyn Bus>,
    pub config: AuditConfig,
    /// Subject prefix of this fixture's stream: events go to `{prefix}.{team}.{action}`.
    pub prefix: String,
    seed: [u8; 32],
    pg: Option<TestPostgres>,
    nats: Option<NatsBus>,
    _dir: tempfile::TempDir,
}

/// A running ingest loop (consumer + checkpoint timer).
pub struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
    pub audit: Audit,
}

impl Running {
    /// Stops like a graceful shutdown: the batch in progress commits and is acknowledged.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the ingest loop stops")
            .unwrap();
    }

    /// Stops like a crash: the task is aborted wherever it is.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

impl Fixture {
    pub async fn new(backend: Backend) -> Self {
        Self::with(backend, |_| {}).await
    }

    /// A fixture whose configuration `tweak` adjusts (checkpoint cadence, ack wait, …).
    pub async fn with(backend: Backend, tweak: impl FnOnce(&mut AuditConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (db, db_url, pg) = match backend {
            Backend::Embedded => {
                let url = format!("sqlite://{}", dir.path().join("audit.db").display());
                let db = Database::connect(&url, &PoolSettings::default())
                    .await
                    .unwrap();
                (db, url, None)
            }
            Backend::Real => {
                let pg = TestPostgres::new().await.expect("Postgres must be running");
                (pg.db.clone(), pg.url.clone(), Some(pg))
            }
        };
        db.migrate(MIGRATIONS).await.unwrap();
        let (bus, nats): (Arc<dyn Bus>, Option<NatsBus>) = match backend {
            Backend::Embedded => (Arc::new(MemoryBus::new()), None),
            Backend::Real => {
                let nats = NatsBus::connect(&nats_url(), "tucdesk-audit-test")
                    .await
                    .expect("NATS must be running");
                (Arc::new(nats.clone()), Some(nats))
            }
        };
        let prefix = unique_name("audt");
        let mut stream = StreamSpec::new(unique_name("AUDIT_T"), vec![format!("{prefix}.>")]);
        // Test streams expire on their own should a failing test leave one behind.
        stream.max_age = Duration::from_secs(600);
        let mut config = AuditConfig::embedded(&db_url, "unused://");
        config.stream = stream;
        config.consumer_name = unique_name("audit");
        config.ack_wait = Duration::from_secs(2);
        tweak(&mut config);
        // Producers declare the stream too: events published before the service starts wait.
        bus.ensure_stream(&config.stream).await.unwrap();
        Self {
            backend,
            db,
            bus,
            config,
            prefix,
            seed: tucdesk_crypto::rng::random_array::<32>().unwrap(),
            pg,
            nats,
            _dir: dir,
        }
    }

    /// The signing key (the same on every call, like a key file shared by replicas).
    pub fn key(&self) -> AuditKey {
        AuditKey::from_seed(&self.seed).unwrap()
    }

    /// A service instance (a replica) over this fixture's database, bus and key.
    pub async fn audit(&self) -> Audit {
        let backends = Backends {
            db: self.db.clone(),
            bus: self.bus.clone(),
        };
        Audit::new(self.config.clone(), backends, self.key())
            .await
            .unwrap()
    }

    /// Starts a replica's ingest loop.
    pub async fn start(&self) -> Running {
        let audit = self.audit().await;
        let ingest = audit.open_ingest().await.unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(ingest.run(stop.clone()));
        Running { stop, task, audit }
    }

    pub fn subject(&self, event: &pb::AuditEvent) -> String {
        format!("{}.{}.{}", self.prefix, event.team_id, event.action)
    }

    /// Publishes `event` as the outbox publisher does (dedup id = event id).
    pub async fn publish(&self, event: &pb::AuditEvent) {
        self.publish_with_id(event, &event.event_id).await;
    }

    /// Publishes `event` under another de-duplication id (a repeat the stream cannot drop).
    pub async fn publish_with_id(&self, event: &pb::AuditEvent, dedup_id: &str) {
        self.bus
            .stream_publish(
                &self.subject(event),
                dedup_id,
                Headers::new(),
                Bytes::from(event.encode_to_vec()),
            )
            .await
            .unwrap();
    }

    /// Publishes raw bytes on a team's subject.
    pub async fn publish_raw(&self, team: &str, payload: &[u8]) {
        self.bus
            .stream_publish(
                &format!("{}.{team}.junk.payload", self.prefix),
                &unique_name("raw"),
                Headers::new(),
                Bytes::copy_from_slice(payload),
            )
            .await
            .unwrap();
    }

    /// Every stored entry of `team`, in seq order.
    pub async fn chain(&self, team: &str) -> Vec<Entry> {
        entries::query(&self.db, team, &EntryFilter::default(), 100_000, false)
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.into_entry().unwrap().0)
            .collect()
    }

    /// Waits until `team`'s chain has `n` entries; panics after [`SETTLE`].
    pub async fn wait_for(&self, team: &str, n: usize) -> Vec<Entry> {
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let chain = self.chain(team).await;
            if chain.len() >= n || tokio::time::Instant::now() >= deadline {
                assert_eq!(chain.len(), n, "team {team}: entries appended in time");
                return chain;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The Postgres schema of a real-backend fixture.
    pub fn schema(&self) -> Option<&str> {
        self.pg.as_ref().map(|pg| pg.schema.as_str())
    }

    /// Runs raw SQL (tampering, trigger checks).
    pub async fn exec(&self, sql: &str) -> Result<u64, sqlx::Error> {
        tucdesk_svc::on_pool!(&self.db, |pool| {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
    }

    /// Disables the append-only triggers on `audit_entries` as only a superuser (Postgres) or
    /// the file's owner (SQLite) can.
    pub async fn bypass_triggers(&self) {
        match self.backend {
            Backend::Real => {
                self.exec("ALTER TABLE audit_entries DISABLE TRIGGER ALL")
                    .await
                    .unwrap();
            }
            Backend::Embedded => {
                self.exec(
                    "DROP TRIGGER audit_entries_no_update; DROP TRIGGER audit_entries_no_delete;",
                )
                .await
                .unwrap();
            }
        }
    }

    pub async fn cleanup(self) {
        if let Some(nats) = &self.nats {
            let _ = nats.delete_stream(&self.config.stream.name).await;
        }
        if let Some(pg) = self.pg {
            pg.cleanup().await.unwrap();
        }
    }
}

/// A team id no other test uses.
pub fn team(name: &str) -> String {
    unique_name(&format!("team-{name}-"))
}

/// A valid wire event for `team`.
pub fn event(team: &str, action: &str, actor: &str) -> pb::AuditEvent {
    pb::AuditEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        team_id: team.to_owned(),
        actor: Some(pb::Actor {
            kind: pb::ActorKind::User as i32,
            id: actor.to_owned(),
            display: format!("{actor}@example.com"),
        }),
        action: action.to_owned(),
        target: "agent:AAAA".to_owned(),
        occurred_at_ms: u64::try_from(tucdesk_svc::sql::now_ms()).unwrap(),
        session_id: String::new(),
        policy_result: None,
        context_json: r#"{"outcome":"success","bytes":12.5,"argv":["ls","-l"]}"#.to_owned(),
    }
}

/// `iss` and `aud` of the access tokens [`Api`] issues and its replica accepts.
pub const ISS: &str = "https://auth.audit.test";
pub const AUD: &str = "tucdesk";

/// A replica's ingest loop and gRPC API on a loopback port, trusting tokens from `issuer`.
pub struct Api {
    pub f: Fixture,
    pub running: Running,
    pub addr: SocketAddr,
    pub issuer: TokenIssuer,
    shutdown: CancellationToken,
}

impl Api {
    pub async fn start(f: Fixture) -> Self {
        let issuer = TokenIssuer::new(ISS, "k1", Identity::generate().unwrap()).unwrap();
        let keys = KeySet::from_keys([(issuer.kid().to_owned(), issuer.public_key())]).unwrap();
        let access = AccessVerifier::fixed(TokenVerifier::new(keys, ISS, AUD));
        let running = f.start().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(tucdesk_audit::serve_api(
            running.audit.clone(),
            access,
            listener,
            shutdown.clone(),
        ));
        Self {
            f,
            running,
            addr,
            issuer,
            shutdown,
        }
    }

    pub fn token_with(&self, team: &str, role: Role, cnf: bool) -> String {
        let now = tucdesk_token::unix_now();
        let claims = AccessClaims {
            iss: ISS.into(),
            sub: format!("user-{}", role.as_str()),
            aud: AUD.into(),
            team_id: team.into(),
            email: Some("reader@example.com".into()),
            role,
            iat: now,
            exp: now + 300,
            nbf: None,
            jti: tucdesk_token::new_jti().unwrap(),
            cnf: cnf.then(|| Cnf::jkt("device-thumbprint")),
            client_id: None,
            scp: None,
            kinds: None,
        };
        self.issuer.issue_access(&claims).unwrap()
    }

    /// A device-bound access token of `team` with `role`.
    pub fn token(&self, team: &str, role: Role) -> String {
        self.token_with(team, role, true)
    }

    pub async fn client(&self) -> AuditServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        AuditServiceClient::new(channel)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.running.stop().await;
        self.f.cleanup().await;
    }
}

/// `message` with `token` as its bearer credential.
pub fn req<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}
