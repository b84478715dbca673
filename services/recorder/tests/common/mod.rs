//! Shared set-up for the recorder suites: the service in-process on port 0 over SQLite or the
//! real Postgres, a local directory or a real S3 API (moto_server), a fake rendezvous
//! directory, and agents that make real age files, manifests and proofs.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tucdesk_crypto::Identity;
use tucdesk_proto::v1::recorder_service_client::RecorderServiceClient;
use tucdesk_proto::v1::{
    GetRecordingRequest, RecordingInfo, RecordingManifest, SessionKind, SignedRecordingManifest,
    UploadRequest, UploadResponse, UploadStart, get_recording_response, upload_request,
};
use tucdesk_recorder::directory::{AgentDirectory, AgentRecord, SessionRecord};
use tucdesk_recorder::{AccessVerifier, Backends, Recorder, RecorderConfig, RecorderError};
use tucdesk_recording::manifest::{
    UPLOAD_METHOD, build_manifest, make_upload_proof, sign_manifest,
};
use tucdesk_recording::{FinishedRecording, SpoolMeta};
use tucdesk_svc::testing::TestPostgres;
use tucdesk_token::{AccessClaims, Cnf, KeySet, Role, TokenIssuer, TokenVerifier};

pub const ISS: &str = "https://auth.recorder.test";
pub const AUD: &str = "tucdesk";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Dir,
    S3,
}

/// Rendezvous as a table: agents and sessions the test declares.
#[derive(Debug, Default)]
pub struct FakeDirectory {
    agents: Mutex<HashMap<String, AgentRecord>>,
    sessions: Mutex<HashMap<(String, String), SessionRecord>>,
}

impl FakeDirectory {
    pub fn add_agent(&self, identity: &Identity, team_id: &str, revoked: bool) {
        self.agents.lock().unwrap().insert(
            identity.agent_id(),
            AgentRecord {
                agent_id: identity.agent_id(),
                team_id: team_id.to_owned(),
                public_key: identity.public_key(),
                revoked,
            },
        );
    }

    pub fn add_session(&self, session_id: &str, team_id: &str, agent_id: &str, operator: &str) {
        self.sessions.lock().unwrap().insert(
            (session_id.to_owned(), team_id.to_owned()),
            SessionRecord {
                session_id: session_id.to_owned(),
                agent_id: agent_id.to_owned(),
                operator_user_id: operator.to_owned(),
            },
        );
    }
}

#[async_trait::async_trait]
impl AgentDirectory for FakeDirectory {
    async fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, RecorderError> {
        Ok(self.agents.lock().unwrap().get(agent_id).cloned())
    }

    async fn session(
        &self,
        session_id: &str,
        team_id: &str,
    ) -> Result<Option<SessionRecord>, RecorderError> {
        Ok(self
            .sessions
            .lock()
            .unwrap()
            .get(&(session_id.to_owned(), team_id.to_owned()))
            .cloned())
    }
}

/// moto_server (a real S3 API from PyPI) on a free loopback port, killed on drop.
pub struct Moto {
    child: std::process::Child,
    pub endpoint: String,
    addr: SocketAddr,
}

impl Moto {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = match std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(err) => panic!(
                "cannot start moto_server ({err}); the S3 tests need it: \
                 python3 -m pip install 'moto[server]'"
            ),
        };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut moto = Self {
            child,
            endpoint: format!("http://{addr}"),
            addr,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!(
                    "moto_server exited ({status}); install it: python3 -m pip install 'moto[server]'"
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not start in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto.wait_ready();
        moto
    }

    fn request(&self, head: &str) -> String {
        let mut stream = std::net::TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).ok();
        response
    }

    fn wait_ready(&mut self) {
        for _ in 0..100 {
            let response = self.request(&format!(
                "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                self.addr
            ));
            if response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto_server never answered");
    }

    /// Creates `bucket` through the S3 API (CreateBucket).
    pub fn create_bucket(&self, bucket: &str) {
        let response = self.request(&format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        ));
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "CreateBucket failed: {response}"
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// The recorder on a loopback port.
pub struct Harness {
    pub recorder: Recorder,
    pub addr: SocketAddr,
    pub issuer: TokenIssuer,
    pub directory: Arc<FakeDirectory>,
    /// The local store's directory (Dir only).
    pub store_dir: PathBuf,
    shutdown: CancellationToken,
    pg: Option<TestPostgres>,
    moto: Option<Moto>,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start(db: Db, store: StoreKind) -> Self {
        Self::start_with(db, store, None).await
    }

    /// With `rendezvous` as the directory instead of the fake one.
    pub async fn start_with(
        db: Db,
        store: StoreKind,
        rendezvous: Option<Arc<dyn AgentDirectory>>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (database_url, pg) = match db {
            Db::Sqlite => (
                format!("sqlite://{}", dir.path().join("recorder.db").display()),
                None,
            ),
            Db::Postgres => {
                let pg = TestPostgres::new().await.expect("Postgres must be running");
                (pg.url.clone(), Some(pg))
            }
        };
        let store_dir = dir.path().join("objects");
        let (store_url, moto) = match store {
            StoreKind::Dir => (format!("file://{}", store_dir.display()), None),
            StoreKind::S3 => {
                let moto = Moto::start();
                moto.create_bucket("recordings");
                ("s3://recordings".to_owned(), Some(moto))
            }
        };
        let mut config = RecorderConfig::embedded(&database_url, "memory://", &store_url);
        if let Some(moto) = &moto {
            config.s3_endpoint = Some(moto.endpoint.clone());
            config.s3_access_key_id = Some("testing".into());
            config.s3_secret_access_key = Some("testing".into());
        }
        // Small limit for the size test; everything else stays far below it.
        config.max_recording_bytes = 8 * 1024 * 1024;
        let directory = Arc::new(FakeDirectory::default());
        let used: Arc<dyn AgentDirectory> = match rendezvous {
            Some(rendezvous) => rendezvous,
            None => directory.clone(),
        };
        let backends = Backends::connect(&config, used).await.unwrap();
        let recorder = Recorder::new(config, backends).await.unwrap();
        let issuer = TokenIssuer::new(ISS, "k1", Identity::generate().unwrap()).unwrap();
        let keys = KeySet::from_keys([(issuer.kid().to_owned(), issuer.public_key())]).unwrap();
        let access = AccessVerifier::fixed(TokenVerifier::new(keys, ISS, AUD));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(tucdesk_recorder::serve(
            recorder.clone(),
            access,
            listener,
            shutdown.clone(),
        ));
        Self {
            recorder,
            addr,
            issuer,
            directory,
            store_dir,
            shutdown,
            pg,
            moto,
            _dir: dir,
        }
    }

    pub async fn client(&self) -> RecorderServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        RecorderServiceClient::new(channel)
            .max_decoding_message_size(tucdesk_proto::limits::MAX_GRPC_MESSAGE_LEN)
    }

    /// An access token of `user` in `team` with `role`, bound to a device.
    pub fn token(&self, team: &str, user: &str, role: Role) -> String {
        let now = tucdesk_token::unix_now();
        let claims = AccessClaims {
            iss: ISS.into(),
            sub: user.into(),
            aud: AUD.into(),
            team_id: team.into(),
            email: Some(format!("{user}@example.com")),
            role,
            iat: now,
            exp: now + 300,
            nbf: None,
            jti: tucdesk_token::new_jti().unwrap(),
            cnf: Some(Cnf::jkt("device-thumbprint")),
            client_id: None,
            scp: None,
            kinds: None,
        };
        self.issuer.issue_access(&claims).unwrap()
    }

    /// Audit actions in the outbox, in order.
    pub async fn audit_actions(&self) -> Vec<String> {
        let payloads: Vec<Vec<u8>> = tucdesk_svc::on_pool!(self.recorder.db(), |pool| {
            sqlx::query_scalar("SELECT payload FROM outbox ORDER BY id")
                .fetch_all(pool)
                .await
                .unwrap()
        });
        payloads
            .iter()
            .map(|p| {
                tucdesk_proto::v1::AuditEvent::decode(p.as_slice())
                    .unwrap()
                    .action
            })
            .collect()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.recorder.db().close().await;
        if let Some(pg) = self.pg {
            pg.cleanup().await.unwrap();
        }
        drop(self.moto);
    }
}

/// An agent enrolled (in the fake directory) in `team`.
pub struct Agent {
    pub identity: Identity,
    pub team: String,
}

impl Agent {
    pub fn new(h: &Harness, team: &str) -> Self {
        let identity = Identity::generate().unwrap();
        h.directory.add_agent(&identity, team, false);
        Self {
            identity,
            team: team.to_owned(),
        }
    }
}

/// A recording made the way the agent makes it: an age file to the team key, a signed
/// manifest.
pub struct Made {
    pub session_id: String,
    pub manifest: RecordingManifest,
    pub signed: SignedRecordingManifest,
    pub ciphertext: Vec<u8>,
    pub team_key: age::x25519::Identity,
}

pub fn session_text(len: usize) -> Vec<u8> {
    let header = tucdesk_recording::CastHeader {
        width: 80,
        height: 24,
        timestamp: 1_700_000_000,
        term: Some("xterm".into()),
        shell: None,
    };
    let mut writer = tucdesk_recording::CastWriter::new(Vec::new(), &header).unwrap();
    let mut i = 0u64;
    while writer.written() < len as u64 {
        writer
            .output(
                Duration::from_millis(i),
                format!("line {i} of the session\r\n").as_bytes(),
            )
            .unwrap();
        i += 1;
    }
    writer.finish().unwrap()
}

/// A recording of a new session of `agent`, opened by `operator`, about `plaintext_len`
/// bytes, declared in the fake directory.
pub fn record(h: &Harness, agent: &Agent, operator: &str, plaintext_len: usize) -> Made {
    let session_id = uuid::Uuid::new_v4().to_string();
    h.directory.add_session(
        &session_id,
        &agent.team,
        &agent.identity.agent_id(),
        operator,
    );
    make(
        &agent.identity,
        &agent.team,
        &session_id,
        operator,
        plaintext_len,
    )
}

/// A recording of `session_id` signed by `identity`, naming `team`, without declaring
/// anything.
pub fn make(
    identity: &Identity,
    team: &str,
    session_id: &str,
    operator: &str,
    plaintext_len: usize,
) -> Made {
    let team_key = age::x25519::Identity::generate();
    let plaintext = session_text(plaintext_len);
    let ciphertext =
        tucdesk_recording::crypt::encrypt_bytes(&[team_key.to_public()], &plaintext).unwrap();
    let meta = SpoolMeta {
        session_id: session_id.to_owned(),
        agent_id: identity.agent_id(),
        team_id: team.to_owned(),
        operator_user_id: operator.to_owned(),
        operator_display: format!("{operator}@example.com"),
        kind: SessionKind::Shell as i32,
        started_at_ms: 1_735_775_999_000,
        recipients: vec![team_key.to_public().to_string()],
    };
    let finished = FinishedRecording {
        path: PathBuf::new(),
        plaintext_size: plaintext.len() as u64,
        plaintext_sha256: tucdesk_recording::crypt::sha256(&plaintext),
        ciphertext_size: ciphertext.len() as u64,
        ciphertext_sha256: tucdesk_recording::crypt::sha256(&ciphertext),
    };
    let manifest = build_manifest(&meta, &finished, 1_735_776_060_000, "test");
    let signed = sign_manifest(identity, &manifest).unwrap();
    Made {
        session_id: session_id.to_owned(),
        manifest,
        signed,
        ciphertext,
        team_key,
    }
}

/// The `start` message of an Upload at `offset`, with a fresh proof by `signer`.
pub fn start(signer: &Identity, made: &Made, offset: u64, timestamp_ms: u64) -> UploadRequest {
    let sha: [u8; 32] = made.manifest.ciphertext_sha256.clone().try_into().unwrap();
    let proof = make_upload_proof(
        signer,
        UPLOAD_METHOD,
        &made.session_id,
        &sha,
        offset,
        timestamp_ms,
    )
    .unwrap();
    UploadRequest {
        kind: Some(upload_request::Kind::Start(UploadStart {
            protocol_version: tucdesk_proto::PROTOCOL_VERSION,
            manifest: Some(made.signed.clone()),
            offset,
            proof: Some(proof),
        })),
    }
}

pub fn now_ms() -> u64 {
    u64::try_from(tucdesk_svc::sql::now_ms()).unwrap()
}

/// One Upload call: `start` then `bytes` in chunks of 256 KiB.
pub async fn send(
    client: &mut RecorderServiceClient<Channel>,
    start: UploadRequest,
    bytes: &[u8],
) -> Result<UploadResponse, tonic::Status> {
    let mut messages = vec![start];
    for chunk in bytes.chunks(tucdesk_proto::limits::MAX_RECORDING_CHUNK_LEN) {
        messages.push(UploadRequest {
            kind: Some(upload_request::Kind::Chunk(chunk.to_vec())),
        });
    }
    client
        .upload(tokio_stream::iter(messages))
        .await
        .map(tonic::Response::into_inner)
}

/// A whole upload by the agent that made it.
pub async fn upload(
    client: &mut RecorderServiceClient<Channel>,
    agent: &Agent,
    made: &Made,
) -> Result<UploadResponse, tonic::Status> {
    send(
        client,
        start(&agent.identity, made, 0, now_ms()),
        &made.ciphertext,
    )
    .await
}

/// `message` with `token` as its bearer credential.
pub fn req<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Get: the info and the ciphertext.
pub async fn download(
    client: &mut RecorderServiceClient<Channel>,
    token: &str,
    session_id: &str,
) -> Result<(RecordingInfo, Vec<u8>), tonic::Status> {
    let mut stream = client
        .get(req(
            GetRecordingRequest {
                session_id: session_id.to_owned(),
            },
            token,
        ))
        .await?
        .into_inner();
    let mut info = None;
    let mut bytes = Vec::new();
    while let Some(message) = stream.next().await {
        match message?.kind {
            Some(get_recording_response::Kind::Info(i)) => {
                assert!(
                    info.is_none() && bytes.is_empty(),
                    "info must come first, once"
                );
                info = Some(i);
            }
            Some(get_recording_response::Kind::Chunk(c)) => {
                assert!(c.len() <= tucdesk_proto::limits::MAX_RECORDING_CHUNK_LEN);
                bytes.extend_from_slice(&c);
            }
            None => panic!("empty message"),
        }
    }
    Ok((info.expect("no info"), bytes))
}

/// Every object key in the local store directory.
pub fn stored_files(h: &Harness) -> Vec<String> {
    fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(&h.store_dir, &h.store_dir, &mut out);
    out.sort();
    out
}
