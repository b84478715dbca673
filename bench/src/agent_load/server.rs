//! The rendezvous replica under test: the release `tucdesk-rendezvous` binary as a child
//! process (so its memory and CPU are its own), on embedded backends and loopback ports, killed
//! when the guard drops (normal end, error or ctrl-c).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;

use crate::probe;

/// Name of the service binary, looked up next to the bench executable.
const BINARY: &str = "tucdesk-rendezvous";
/// How long the child may take to answer `/readyz` (it connects to auth and migrates SQLite).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between readiness polls.
const READY_POLL: Duration = Duration::from_millis(100);

/// What the child is started with.
#[derive(Debug)]
pub struct Settings<'a> {
    pub dir: &'a Path,
    pub service_key_file: &'a Path,
    pub auth_url: &'a str,
    pub token_issuer: &'a str,
    pub audience: &'a str,
    pub heartbeat_interval: Duration,
    pub max_agents: usize,
}

/// A running `tucdesk-rendezvous`; killed on drop.
#[derive(Debug)]
pub struct RendezvousProcess {
    child: Child,
    pub pid: u32,
    pub grpc_addr: SocketAddr,
    pub ops_addr: SocketAddr,
}

impl Drop for RendezvousProcess {
    fn drop(&mut self) {
        // SIGKILL: the figures are taken, and a drain would only slow the bench's exit.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The service binary built next to this bench (same profile and target dir).
fn binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the tucdesk-bench executable")?;
    let path = exe
        .parent()
        .context("the tucdesk-bench executable has no directory")?
        .join(BINARY);
    if !path.is_file() {
        bail!(
            "{} not found; build it next to the bench with \
             `cargo build --release -p tucdesk-rendezvous` (same CARGO_TARGET_DIR)",
            path.display()
        );
    }
    Ok(path)
}

/// A free loopback port (bound and released; nothing else on this machine races for it).
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?)
}

impl RendezvousProcess {
    /// Starts the child and waits until `/readyz` answers 200.
    pub async fn start(settings: &Settings<'_>) -> anyhow::Result<Self> {
        let binary = binary()?;
        let (grpc_addr, internal_addr, ops_addr) = (free_port()?, free_port()?, free_port()?);
        let database_url = format!("sqlite://{}", settings.dir.join("rdv.db").display());
        let heartbeat = format!("{}ms", settings.heartbeat_interval.as_millis());
        // A fresh code-hash key through the child's environment (never on its command line,
        // where `ps` would show it); without one the service writes a development key file.
        let code_key = base64::engine::general_purpose::STANDARD
            .encode(tucdesk_crypto::rng::random_secret::<32>()?.as_slice());
        // Flags only: `serve` is the default command, and flags given after it would belong
        // to the subcommand, which has none.
        let child = Command::new(&binary)
            .args(["--database-url", &database_url])
            .args(["--bus-url", "memory://"])
            .args(["--cache-url", "memory://"])
            .args(["--grpc-addr", &grpc_addr.to_string()])
            .args(["--internal-addr", &internal_addr.to_string()])
            .args(["--ops-addr", &ops_addr.to_string()])
            .args(["--auth-url", settings.auth_url])
            .args(["--token-issuer", settings.token_issuer])
            .args(["--audience", settings.audience])
            .args(["--heartbeat-interval", &heartbeat])
            .args(["--max-agents", &settings.max_agents.to_string()])
            .arg("--service-key-file")
            .arg(settings.service_key_file)
            .args(["--log", "warn"])
            .env("TUCDESK_RENDEZVOUS_CODE_KEY", code_key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut process = Self {
            pid: child.id(),
            child,
            grpc_addr,
            ops_addr,
        };
        process.wait_ready().await?;
        Ok(process)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{BINARY} exited during startup ({status}); its errors are above");
            }
            if let Ok((200, _)) = probe::http_get(self.ops_addr, "/readyz").await {
                return Ok(());
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                bail!("{BINARY} was not ready within {STARTUP_TIMEOUT:?}");
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Fails if the child has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("{BINARY} exited ({status}); its errors are above"),
            None => Ok(()),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }
}
