//! A TucDesk deployment for process-level tests: auth, a rendezvous replica and a relay node
//! in-process (real Postgres/Redis/NATS or the embedded backends), with the real `tucdesk`
//! viewer and `tucdesk-agent` programs started as processes against them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tucdesk_testkit::relay_node::{TestRelay, test_config};
use tucdesk_testkit::{Backend, Deployment, Operator, TestRendezvous, eventually};

pub const WAIT: Duration = Duration::from_secs(20);
/// Longest a viewer command may take in a test.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Direct and TURN paths bind loopback only: test traffic never leaves this machine's
/// loopback interface (the default binds every other interface).
pub const LOOPBACK_ICE: &str = "127.0.0.1:0";

pub const AGENT_BIN: &str = env!("CARGO_BIN_EXE_e2e-tucdesk-agent");
pub const VIEWER_BIN: &str = env!("CARGO_BIN_EXE_e2e-tucdesk");

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Services for one test.
pub struct Stack {
    pub dep: Deployment,
    pub rdv: TestRendezvous,
    pub relay: TestRelay,
    /// Every payload the relay forwarded.
    pub seen_by_relay: Arc<Mutex<Vec<Vec<u8>>>>,
    pub owner: Operator,
    pub owner_email: String,
    /// The recorder's address, which rendezvous tells agents; nothing listens there until
    /// [`Stack::start_recorder`].
    pub recorder_addr: std::net::SocketAddr,
    recorder: Option<tokio_util::sync::CancellationToken>,
    /// The recorder's database, service key and local-directory object store.
    pub recorder_dir: tempfile::TempDir,
}

impl Stack {
    pub async fn start(backend: Backend) -> Self {
        let mut dep = Deployment::new(backend).await.unwrap();
        let region = dep.config.region.clone().unwrap();
        dep.config.heartbeat_interval = Duration::from_millis(500);
        // A recorder (started on demand) that rendezvous trusts and names in offers.
        let recorder_dir = tempfile::tempdir().unwrap();
        let recorder_key = tucdesk_recorder::directory::load_or_create_service_key(
            &recorder_dir.path().join("service.key"),
        )
        .unwrap();
        dep.config.service_keys.push(format!(
            "{}={}",
            tucdesk_recorder::directory::SERVICE_NAME,
            recorder_key.agent_id()
        ));
        let recorder_addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        dep.config.recorder_url = Some(format!("http://{recorder_addr}"));
        let rdv = dep.replica().await.unwrap();
        let node_id = unique("relay");
        let mut relay_config = test_config(&node_id);
        relay_config.region = region;
        let relay = TestRelay::start(&dep.auth, dep.bus().await.unwrap(), relay_config)
            .await
            .unwrap();
        let seen_by_relay: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let tap = seen_by_relay.clone();
        relay.relay.set_tap(Arc::new(move |payload: &[u8]| {
            tap.lock().unwrap().push(payload.to_vec())
        }));
        assert!(
            eventually(WAIT, || async {
                rdv.rdv
                    .relays()
                    .pick()
                    .is_some_and(|r| r.node_id == node_id)
            })
            .await,
            "rendezvous never saw the relay"
        );
        let owner_email = format!("{}@example.com", unique("owner"));
        let owner = dep.team(&owner_email).await.unwrap();
        Self {
            dep,
            rdv,
            relay,
            seen_by_relay,
            owner,
            owner_email,
            recorder_addr,
            recorder: None,
            recorder_dir,
        }
    }

    /// Starts the recorder in-process on [`Self::recorder_addr`]: SQLite, a local-directory
    /// store, rendezvous's internal API for agents and sessions, auth's keys for callers.
    pub async fn start_recorder(&mut self) {
        let dir = self.recorder_dir.path();
        let mut config = tucdesk_recorder::RecorderConfig::embedded(
            &format!("sqlite://{}", dir.join("recorder.db").display()),
            "memory://",
            &format!("file://{}", self.recordings_store().display()),
        );
        config.grpc_addr = self.recorder_addr;
        let key = tucdesk_recorder::directory::load_or_create_service_key(&dir.join("service.key"))
            .unwrap();
        let directory = tucdesk_recorder::RendezvousDirectory::new(
            &format!("http://{}", self.rdv.internal_addr),
            tucdesk_recorder::directory::service_signer(key).unwrap(),
        )
        .unwrap();
        let backends = tucdesk_recorder::Backends::connect(&config, Arc::new(directory))
            .await
            .unwrap();
        let recorder = tucdesk_recorder::Recorder::new(config, backends)
            .await
            .unwrap();
        let keys = tucdesk_svc::auth_keys::AuthKeys::connect(
            tucdesk_svc::auth_keys::auth_channel(&self.dep.auth.url()).unwrap(),
            &self.dep.auth.issuer,
            WAIT,
        )
        .await
        .unwrap();
        let access = tucdesk_recorder::AccessVerifier::from_auth(keys, "tucdesk");
        let listener = tokio::net::TcpListener::bind(self.recorder_addr)
            .await
            .unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        tokio::spawn(tucdesk_recorder::serve(
            recorder,
            access,
            listener,
            shutdown.clone(),
        ));
        self.recorder = Some(shutdown);
    }

    /// Where the recorder's local-directory store keeps objects.
    pub fn recordings_store(&self) -> PathBuf {
        self.recorder_dir.path().join("objects")
    }

    /// The recorder's gRPC client.
    pub async fn recorder_client(
        &self,
    ) -> tucdesk_proto::v1::recorder_service_client::RecorderServiceClient<tonic::transport::Channel>
    {
        let channel =
            tucdesk_transport::rpc::channel(&format!("http://{}", self.recorder_addr), None, true)
                .unwrap();
        tucdesk_proto::v1::recorder_service_client::RecorderServiceClient::new(channel)
            .max_decoding_message_size(tucdesk_proto::limits::MAX_GRPC_MESSAGE_LEN)
    }

    /// Sets the team's recording mode and recipients (as the owner, with a device proof).
    pub async fn set_recording(
        &self,
        mode: tucdesk_proto::v1::RecordingMode,
        recipients: &[String],
    ) {
        use tucdesk_proto::v1::{
            GetRecordingSettingsRequest, PutRecordingSettingsRequest, RecordingRecipient,
        };
        let mut client = self.rdv.operator_client();
        let current = client
            .get_recording_settings(self.owner.request(GetRecordingSettingsRequest {}).unwrap())
            .await
            .unwrap()
            .into_inner();
        let labels: Vec<String> = recipients.iter().map(|_| "e2e".to_owned()).collect();
        let binding = tucdesk_crypto::proof_scopes::put_recording_settings_binding(
            current.version,
            mode as i32,
            recipients,
            &labels,
        );
        let proof = self
            .owner
            .proof(
                tucdesk_crypto::proof_scopes::PUT_RECORDING_SETTINGS,
                tucdesk_crypto::proof_scopes::PUT_RECORDING_SETTINGS_TARGET,
                &binding,
            )
            .unwrap();
        client
            .put_recording_settings(
                self.owner
                    .request(PutRecordingSettingsRequest {
                        mode: mode as i32,
                        recipients: recipients
                            .iter()
                            .zip(labels)
                            .map(|(recipient, label)| RecordingRecipient {
                                recipient: recipient.clone(),
                                label,
                            })
                            .collect(),
                        expected_version: current.version,
                        proof: Some(proof),
                    })
                    .unwrap(),
            )
            .await
            .unwrap();
    }

    pub fn rendezvous_url(&self) -> String {
        format!("http://{}", self.rdv.addr)
    }

    /// A viewer logged in (through `tucdesk login`) as `email`, whose password is the
    /// harness password.
    pub async fn viewer(&self, email: &str) -> Viewer {
        let viewer = Viewer {
            dir: tempfile::tempdir().unwrap(),
            email: email.to_owned(),
        };
        let out = viewer
            .run_with_stdin(
                &[
                    "login",
                    "--auth",
                    &self.dep.auth.url(),
                    "--rendezvous",
                    &self.rendezvous_url(),
                    "--email",
                    email,
                    "--password-stdin",
                ],
                format!("{}\n", tucdesk_testkit::auth::PASSWORD).as_bytes(),
            )
            .await;
        assert!(out.status.success(), "login failed: {}", stderr(&out));
        viewer
    }

    /// An agent enrolled (with a token `viewer` creates) and running.
    pub async fn agent(&self, viewer: &Viewer, name: &str, enroll_flags: &[&str]) -> Agent {
        let mut agent = Agent::new(name);
        agent.enroll(self, viewer, enroll_flags).await;
        agent.start();
        // Online for rendezvous, and registered for the agent too (rendezvous records the
        // presence just before the agent reads its Registered).
        let registered = eventually(WAIT, || async {
            agent.log().contains("connected to rendezvous")
        })
        .await;
        assert!(
            registered && viewer.sees_online(name).await,
            "agent {name} never came online; its log:\n{}",
            agent.log()
        );
        agent
    }

    /// Payloads the relay forwarded that contain `needle`.
    pub fn relay_saw(&self, needle: &[u8]) -> bool {
        self.seen_by_relay
            .lock()
            .unwrap()
            .iter()
            .any(|payload| payload.windows(needle.len()).any(|w| w == needle))
    }

    /// Kills the rendezvous replica like a crash and starts a new one on the same address.
    pub async fn restart_rendezvous(&mut self) {
        let addr = self.rdv.addr;
        self.rdv.kill();
        self.rdv = self.dep.replica_at(Some(addr)).await.unwrap();
    }

    pub async fn stop(self) {
        if let Some(recorder) = &self.recorder {
            recorder.cancel();
        }
        self.relay.shut_down();
        self.rdv.stop().await;
        self.dep.cleanup().await;
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A `tucdesk` user with its own config dir (device key, tokens, known_agents).
pub struct Viewer {
    pub dir: tempfile::TempDir,
    pub email: String,
}

impl Viewer {
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(VIEWER_BIN);
        command
            .args(args)
            .env("TUCDESK_CONFIG_DIR", self.dir.path())
            .env("TUCDESK_ICE_BIND", LOOPBACK_ICE)
            .env_remove("TUCDESK_PASSWORD")
            .env_remove("TUCDESK_PATH")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs `tucdesk ARGS` with empty stdin.
    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, b"").await
    }

    pub async fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self.command(args).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).await.unwrap();
        drop(stdin);
        tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("tucdesk {args:?} did not finish"))
            .unwrap()
    }

    /// Starts `tucdesk ARGS` without waiting (stdin open).
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        self.command(args).spawn().unwrap()
    }

    pub async fn sees_online(&self, name: &str) -> bool {
        eventually(WAIT, || async {
            let out = self.run(&["agents", "--json"]).await;
            let agents: Vec<serde_json_like::Agent> =
                serde_json_like::parse(&stdout(&out)).unwrap_or_default();
            agents.iter().any(|a| a.name == name && a.online)
        })
        .await
    }
}

/// A `tucdesk-agent` with its own state dir; killed on drop.
pub struct Agent {
    pub name: String,
    pub dir: tempfile::TempDir,
    child: Option<std::process::Child>,
    log_path: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Agent {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("agent.log");
        Self {
            name: name.to_owned(),
            dir,
            child: None,
            log_path,
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub async fn enroll(&mut self, stack: &Stack, viewer: &Viewer, flags: &[&str]) {
        let out = viewer.run(&["enroll-token", "create"]).await;
        assert!(out.status.success(), "enroll-token: {}", stderr(&out));
        let token = stdout(&out).trim().to_owned();
        let state = self.state_dir();
        let mut args = vec![
            "--state-dir".to_owned(),
            state.display().to_string(),
            "enroll".into(),
            "--server".into(),
            stack.rendezvous_url(),
            "--token".into(),
            token,
            "--name".into(),
            self.name.clone(),
        ];
        args.extend(flags.iter().map(|f| (*f).to_owned()));
        let out = tokio::process::Command::new(AGENT_BIN)
            .args(&args)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "enroll: {}", stderr(&out));
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let child = std::process::Command::new(AGENT_BIN)
            .args([
                "--state-dir",
                &self.state_dir().display().to_string(),
                "run",
            ])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("TUCDESK_ICE_BIND", LOOPBACK_ICE)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn fingerprint(&self) -> String {
        let out = std::process::Command::new(AGENT_BIN)
            .args([
                "--state-dir",
                &self.state_dir().display().to_string(),
                "fingerprint",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// Just enough of `tucdesk agents --json` for the tests.
pub mod serde_json_like {
    #[derive(Debug, Default, Clone, PartialEq, Eq)]
    pub struct Agent {
        pub name: String,
        pub online: bool,
        pub agent_id: String,
    }

    pub fn parse(text: &str) -> Option<Vec<Agent>> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        Some(
            value
                .as_array()?
                .iter()
                .map(|a| Agent {
                    name: a["name"].as_str().unwrap_or_default().to_owned(),
                    online: a["online"].as_bool().unwrap_or(false),
                    agent_id: a["agent_id"].as_str().unwrap_or_default().to_owned(),
                })
                .collect(),
        )
    }
}
