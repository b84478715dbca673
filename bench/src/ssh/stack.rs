//! The TucDesk side, set up the way a user does it with the release binaries next to this
//! one: `tucdesk-standalone` on loopback ports chosen here, the owner's first login with the
//! setup token, an enrollment token, `tucdesk-agent enroll` then `run`, and `tucdesk connect`
//! as the client (its session goes through the stack's relay).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::output;
use crate::child::{self, Background, ServiceProcess, free_port, free_udp_port};

const STANDALONE: &str = "tucdesk-standalone";
const AGENT: &str = "tucdesk-agent";
const VIEWER: &str = "tucdesk";
const VIEWER_PACKAGE: &str = "tucdesk-viewer";
/// The enrolled host's name, as `tucdesk connect` names it.
pub const AGENT_NAME: &str = "bench-host";
/// The owner the standalone stack creates on first start.
const ADMIN_EMAIL: &str = "admin@tucdesk.local";
/// What the viewer prints on stderr once the session is open (before any output).
pub const OPENED_MARKER: &str = "tucdesk: connected to";
/// How long one setup command (login with its password hashing, enrollment) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the agent may take to show up online, and the pause between looks.
const ONLINE_TIMEOUT: Duration = Duration::from_secs(30);
const ONLINE_POLL: Duration = Duration::from_millis(200);

/// The three binaries, found before anything starts.
#[derive(Debug, Clone)]
pub struct Binaries {
    standalone: PathBuf,
    agent: PathBuf,
    viewer: PathBuf,
}

impl Binaries {
    pub fn find() -> anyhow::Result<Self> {
        Ok(Self {
            standalone: child::binary(STANDALONE)?,
            agent: child::binary(AGENT)?,
            viewer: child::binary_of(VIEWER, VIEWER_PACKAGE)?,
        })
    }
}

/// A running stack with one enrolled, online agent; both processes are killed on drop.
#[derive(Debug)]
pub struct TucDesk {
    standalone: ServiceProcess,
    agent: Background,
    viewer: PathBuf,
    config_dir: PathBuf,
    pub standalone_pid: u32,
    pub agent_pid: u32,
}

impl TucDesk {
    /// Starts the stack with its state in `dir`, logs in, enrolls and starts the agent, and
    /// waits until rendezvous lists it online. With `home`, the agent runs with `HOME` set to
    /// it, and so do its shells (so the login shell reads no rc file of the user).
    pub async fn start(
        binaries: &Binaries,
        dir: &Path,
        home: Option<&Path>,
        turn: bool,
    ) -> anyhow::Result<Self> {
        let data = dir.join("data");
        let config_dir = dir.join("viewer");
        let state = dir.join("agent");
        let ops = free_port()?;
        let (auth, rendezvous) = (free_port()?, free_port()?);
        let mut command = Command::new(&binaries.standalone);
        command
            .arg("--data-dir")
            .arg(&data)
            .args(["--host", "127.0.0.1"])
            .args(["--ops-port", &ops.port().to_string()])
            .args(["--auth-port", &auth.port().to_string()])
            .args(["--auth-http-port", &free_port()?.port().to_string()])
            .args(["--rendezvous-port", &rendezvous.port().to_string()])
            .args([
                "--rendezvous-internal-port",
                &free_port()?.port().to_string(),
            ])
            .args(["--relay-port", &free_port()?.port().to_string()])
            .args(["--stun-port", &free_udp_port()?.port().to_string()])
            .args(["--relay-admin-port", &free_port()?.port().to_string()])
            // Errors only: its start-up warnings (development keys, not for production) are
            // known and would only clutter the report.
            .args(["--log", "error"]);
        if turn {
            // coturn beside the relay, allowed to relay between loopback peers (the bench's
            // agent and client both live on 127.0.0.1).
            command
                .arg("--turn")
                .args(["--turn-port", &free_udp_port()?.port().to_string()])
                .args(["--turn-allow-peer", "127.0.0.0/8"]);
        }
        let standalone = ServiceProcess::start(STANDALONE, command, ops).await?;
        let rendezvous_url = url(rendezvous);

        let setup_token = std::fs::read_to_string(data.join("setup-token"))
            .context("reading the standalone stack's setup token")?;
        let password = format!("bench-{}", uuid::Uuid::new_v4());
        let mut login = viewer(&binaries.viewer, &config_dir);
        login
            .arg("login")
            .args(["--auth", &url(auth)])
            .args(["--rendezvous", &rendezvous_url])
            .args(["--email", ADMIN_EMAIL])
            .args(["--setup-token", setup_token.trim()])
            .arg("--password-stdin");
        let stdin = format!("{password}\n");
        output(
            login,
            "tucdesk login",
            Some(stdin.as_bytes()),
            COMMAND_TIMEOUT,
        )
        .await?;

        let mut create = viewer(&binaries.viewer, &config_dir);
        create.args(["enroll-token", "create", "--tags", "bench"]);
        let created = output(create, "tucdesk enroll-token create", None, COMMAND_TIMEOUT).await?;
        let token = created
            .lines()
            .next()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .context("tucdesk enroll-token create printed no token")?;
        let mut enroll = tokio::process::Command::new(&binaries.agent);
        enroll
            .arg("--state-dir")
            .arg(&state)
            .arg("enroll")
            .args(["--server", &rendezvous_url])
            .args(["--token", token])
            .args(["--name", AGENT_NAME]);
        output(enroll, "tucdesk-agent enroll", None, COMMAND_TIMEOUT).await?;

        let mut run = Command::new(&binaries.agent);
        run.arg("--state-dir").arg(&state).arg("run");
        // Direct and TURN paths on loopback only, like everything else in the bench.
        run.env("TUCDESK_ICE_BIND", LOOPBACK_ICE);
        if let Some(home) = home {
            run.env("HOME", home);
        }
        let agent = Background::spawn(AGENT, run, &dir.join("agent.log"))?;
        let mut stack = Self {
            standalone_pid: standalone.pid,
            agent_pid: agent.pid,
            standalone,
            agent,
            viewer: binaries.viewer.clone(),
            config_dir,
        };
        stack.wait_online().await?;
        Ok(stack)
    }

    async fn wait_online(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            self.check_alive()?;
            let mut list = viewer(&self.viewer, &self.config_dir);
            list.args(["agents", "--json"]);
            let listed = output(list, "tucdesk agents --json", None, COMMAND_TIMEOUT).await?;
            let agents: serde_json::Value =
                serde_json::from_str(&listed).context("parsing `tucdesk agents --json`")?;
            let online = agents.as_array().is_some_and(|agents| {
                agents
                    .iter()
                    .any(|a| a["name"] == AGENT_NAME && a["online"].as_bool().unwrap_or_default())
            });
            if online {
                return Ok(());
            }
            if started.elapsed() > ONLINE_TIMEOUT {
                bail!(
                    "the agent was not online within {ONLINE_TIMEOUT:?}; the end of its log:\n{}",
                    self.agent.log_tail()
                );
            }
            tokio::time::sleep(ONLINE_POLL).await;
        }
    }

    /// Fails if the stack or the agent has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.standalone.check_alive()?;
        self.agent.check_alive()
    }

    /// `tucdesk connect` to the agent over `path` (its key pinned on first use).
    pub fn client(&self, path: &str) -> tokio::process::Command {
        let mut command = viewer(&self.viewer, &self.config_dir);
        command.args(["connect", AGENT_NAME, "--accept-new", "--path", path]);
        command
    }

    /// The stack's coturn processes (children of the standalone process named `turnserver`),
    /// when it runs one.
    pub fn turn_pids(&self) -> Option<Vec<u32>> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.standalone_pid)).ok()?;
        let mut found = Vec::new();
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for pid in children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
            {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "turnserver" {
                    found.push(pid);
                }
            }
        }
        (!found.is_empty()).then_some(found)
    }
}

/// Where the agent and the client bind their direct/TURN sockets.
const LOOPBACK_ICE: &str = "127.0.0.1:0";

fn viewer(binary: &Path, config_dir: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary);
    command.arg("--config-dir").arg(config_dir);
    command.env("TUCDESK_ICE_BIND", LOOPBACK_ICE);
    command
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}
