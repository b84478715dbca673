//! The rendezvous replica under test: the release `tucdesk-rendezvous` binary as a child
//! process (so its memory and CPU are its own), on embedded backends and loopback ports, killed
//! when the guard drops (normal end, error or ctrl-c).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;

use crate::child::{self, ServiceProcess, free_port};

/// Name of the service binary, looked up next to the bench executable.
const BINARY: &str = "tucdesk-rendezvous";

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

/// A running `tucdesk-rendezvous`; killed on drop (by its [`ServiceProcess`]).
#[derive(Debug)]
pub struct RendezvousProcess {
    process: ServiceProcess,
    pub pid: u32,
    pub grpc_addr: SocketAddr,
    pub ops_addr: SocketAddr,
}

impl RendezvousProcess {
    /// Starts the child and waits until `/readyz` answers 200.
    pub async fn start(settings: &Settings<'_>) -> anyhow::Result<Self> {
        let (grpc_addr, internal_addr, ops_addr) = (free_port()?, free_port()?, free_port()?);
        let database_url = format!("sqlite://{}", settings.dir.join("rdv.db").display());
        let heartbeat = format!("{}ms", settings.heartbeat_interval.as_millis());
        // A fresh code-hash key through the child's environment (never on its command line,
        // where `ps` would show it); without one the service writes a development key file.
        let code_key = base64::engine::general_purpose::STANDARD
            .encode(tucdesk_crypto::rng::random_secret::<32>()?.as_slice());
        // Flags only: `serve` is the default command, and flags given after it would belong
        // to the subcommand, which has none.
        let mut command = Command::new(child::binary(BINARY)?);
        command
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
            .env("TUCDESK_RENDEZVOUS_CODE_KEY", code_key);
        let process = ServiceProcess::start(BINARY, command, ops_addr).await?;
        Ok(Self {
            pid: process.pid,
            process,
            grpc_addr,
            ops_addr,
        })
    }

    /// Fails if the child has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.process.check_alive()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }
}
