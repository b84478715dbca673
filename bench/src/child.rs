//! A service under test as a child process: the release binary next to the bench executable
//! (so its memory and CPU are its own and not the bench's), on loopback ports chosen here,
//! ready once its ops endpoint answers `/readyz`, and killed when the guard drops (normal
//! end, error or ctrl-c). Shared by `agent-load` (rendezvous), `relay` and `ssh` (the
//! standalone stack); [`Background`] is the same guard for helpers without an ops endpoint
//! (`sshd`, an agent).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::probe;

/// How long a child may take to answer `/readyz` (it connects to auth, may migrate SQLite).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between readiness polls.
const READY_POLL: Duration = Duration::from_millis(100);

/// A running service binary; killed on drop.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    name: &'static str,
    pub pid: u32,
    pub ops_addr: SocketAddr,
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        // SIGKILL: the figures are taken, and a drain would only slow the bench's exit.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The service binary `name` built next to this bench (same profile and target dir).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    binary_of(name, name)
}

/// The binary `name` of the package `package`, built next to this bench.
pub fn binary_of(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the tucdesk-bench executable")?;
    let path = exe
        .parent()
        .context("the tucdesk-bench executable has no directory")?
        .join(name);
    if !path.is_file() {
        bail!(
            "{} not found; build it next to the bench with \
             `cargo build --release -p {package}` (same CARGO_TARGET_DIR)",
            path.display()
        );
    }
    Ok(path)
}

/// A free loopback TCP port (bound and released; nothing else on this machine races for it).
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?)
}

/// A free loopback UDP port, the same way.
pub fn free_udp_port() -> anyhow::Result<SocketAddr> {
    let socket =
        std::net::UdpSocket::bind("127.0.0.1:0").context("finding a free loopback UDP port")?;
    Ok(socket.local_addr()?)
}

impl ServiceProcess {
    /// Spawns `command` (the binary and its flags, its ops endpoint on `ops_addr`) with
    /// stdout discarded and stderr shown, and waits until `/readyz` answers 200.
    pub async fn start(
        name: &'static str,
        mut command: Command,
        ops_addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let mut process = Self {
            pid: child.id(),
            child,
            name,
            ops_addr,
        };
        process.wait_ready().await?;
        Ok(process)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited during startup ({status}); its errors are above",
                    self.name
                );
            }
            if let Ok((200, _)) = probe::http_get(self.ops_addr, "/readyz").await {
                return Ok(());
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                bail!("{} was not ready within {STARTUP_TIMEOUT:?}", self.name);
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Fails if the child has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("{} exited ({status}); its errors are above", self.name),
            None => Ok(()),
        }
    }
}

/// How many lines of a helper's log an error shows.
const LOG_TAIL_LINES: usize = 20;

/// A helper process without an ops endpoint (an `sshd`, an agent): its stdout and stderr go to
/// a log file, shown in errors; killed on drop (normal end, error or ctrl-c).
#[derive(Debug)]
pub struct Background {
    child: Child,
    name: &'static str,
    log: PathBuf,
    pub pid: u32,
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Background {
    /// Spawns `command` with stdin closed and stdout and stderr appended to `log`.
    pub fn spawn(name: &'static str, mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("creating {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            pid: child.id(),
            child,
            name,
            log: log.to_owned(),
        })
    }

    /// Fails, with the end of its log, if the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!(
                "{} exited ({status}); the end of its log:\n{}",
                self.name,
                log_tail(&self.log)
            ),
            None => Ok(()),
        }
    }

    /// The end of its log, for an error message.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

/// The last [`LOG_TAIL_LINES`] lines of a log file (empty if it cannot be read).
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}
