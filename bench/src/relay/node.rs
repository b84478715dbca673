//! The relay node under test: the release `tucdesk-relay` binary as a child process on
//! loopback, trusting the in-process auth's keys, and sessions opened through it exactly as
//! clients open them (tickets minted by auth, a `RelayHello` per side, waiting then paired).

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;
use tucdesk_proto::v1::RelayControl;
use tucdesk_proto::v1::Side;
use tucdesk_proto::v1::relay_control::Kind;
use tucdesk_testkit::relay_node::{Socket, join, next_control};
use tucdesk_testkit::{Operator, TestAuth};

use super::routes::Pair;
use crate::child::{self, ServiceProcess, free_port, free_udp_port};
use crate::probe;

/// Name of the service binary, looked up next to the bench executable.
const BINARY: &str = "tucdesk-relay";
/// The node's id: the audience its tickets are minted for.
pub const NODE_ID: &str = "bench-relay";
/// Sessions paired, and ended by reason, on the node's ops `/metrics`.
const SESSIONS_METRIC: &str = "tucdesk_relay_sessions_total";
const PAIRED_LABEL: &str = "event=\"paired\"";
/// Pause between reads of the node's session counters while waiting for them to settle.
const METRICS_POLL: Duration = Duration::from_millis(100);
/// How long the node may take to see every session of a phase paired or ended (it closes the
/// other side of each closed session, with a 2 s bound per close).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `tucdesk-relay`; killed on drop (by its [`ServiceProcess`]).
#[derive(Debug)]
pub struct RelayProcess {
    process: ServiceProcess,
    pub pid: u32,
    pub ws_addr: SocketAddr,
    ops_addr: SocketAddr,
}

impl RelayProcess {
    /// Starts the node and waits until it is ready (it has fetched auth's keys by then).
    ///
    /// No per-session rate (`--session-rate 0`) and no node rate (`--node-rate 0`): the tool
    /// measures what the node can forward, not its limits (the node's default 1 GiB/s, i.e.
    /// 8.6 Gbit/s, would be above what two cores do here anyway; with 0 the shared bucket is
    /// still locked per message). Session and waiting caps stay at their defaults (10 000
    /// each), above what the tool opens.
    pub async fn start(auth: &TestAuth) -> anyhow::Result<Self> {
        let (ws_addr, stun_addr, admin_addr, ops_addr) =
            (free_port()?, free_udp_port()?, free_port()?, free_port()?);
        let mut command = Command::new(child::binary(BINARY)?);
        // Flags only: `serve` is the default command.
        command
            .args(["--node-id", NODE_ID])
            .args(["--ws-addr", &ws_addr.to_string()])
            .args(["--stun-addr", &stun_addr.to_string()])
            .args(["--admin-addr", &admin_addr.to_string()])
            .args(["--ops-addr", &ops_addr.to_string()])
            .args(["--bus-url", "memory://"])
            .args(["--auth-url", &auth.url()])
            .args(["--token-issuer", &auth.issuer])
            .args(["--session-rate", "0"])
            .args(["--node-rate", "0"])
            .args(["--log", "warn"]);
        let process = ServiceProcess::start(BINARY, command, ops_addr).await?;
        Ok(Self {
            pid: process.pid,
            process,
            ws_addr,
            ops_addr,
        })
    }

    /// Fails if the node has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.process.check_alive()
    }

    /// Sessions paired and not yet ended, per the node's own counters.
    async fn active_sessions(&self) -> anyhow::Result<f64> {
        let (status, page) = probe::http_get(self.ops_addr, "/metrics").await?;
        if status != 200 {
            bail!("GET /metrics answered {status}");
        }
        let all = probe::labelled_metric(&page, SESSIONS_METRIC, "service=\"relay\"")?;
        let paired = probe::labelled_metric(&page, SESSIONS_METRIC, PAIRED_LABEL)?;
        // Every session is counted once as paired and once more by why it ended.
        Ok(paired - (all - paired))
    }

    /// Waits until the node counts exactly `expected` live sessions: all of a phase paired,
    /// or all of them ended (so that no leftover work runs into the next measurement).
    pub async fn wait_active(&mut self, expected: usize) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            self.check_alive()?;
            let active = self.active_sessions().await?;
            if (active - expected as f64).abs() < 0.5 {
                return Ok(());
            }
            if started.elapsed() > SETTLE_TIMEOUT {
                bail!(
                    "the relay counts {active:.0} live sessions, {expected} expected, after \
                     {SETTLE_TIMEOUT:?}"
                );
            }
            tokio::time::sleep(METRICS_POLL).await;
        }
    }
}

/// What opening a session through the node needs: auth to mint tickets, a team member as the
/// operator, the node's address.
#[derive(Debug)]
pub struct Sessions {
    pub auth: Arc<TestAuth>,
    pub owner: Operator,
    /// Every session is with this (simulated) agent: the node only checks the tickets.
    pub agent_id: String,
    pub ws_addr: SocketAddr,
}

impl Sessions {
    /// Opens one session: tickets from auth, the operator side joins (waiting), the agent side
    /// joins (paired), the operator side is told it is paired.
    pub async fn open(
        self: Arc<Self>,
        index: usize,
    ) -> anyhow::Result<Pair<MaybeTlsStream<TcpStream>>> {
        let session_id = uuid::Uuid::new_v4().to_string();
        let minted = self
            .auth
            .mint_session(&self.owner, &self.agent_id, &session_id, NODE_ID, 0)
            .await
            .with_context(|| format!("minting the tickets of session {index}"))?;
        let url = format!("ws://{}/v1/pipe/{session_id}", self.ws_addr);
        let (mut operator, first) = join(
            &url,
            &session_id,
            Side::Operator,
            &minted.operator_relay_ticket,
        )
        .await
        .with_context(|| format!("the operator side of session {index} joining"))?;
        expect(&first, "waiting", |kind| matches!(kind, Kind::Waiting(_)))?;
        let (agent, second) = join(&url, &session_id, Side::Agent, &minted.agent_relay_ticket)
            .await
            .with_context(|| format!("the agent side of session {index} joining"))?;
        expect(&second, "paired", |kind| matches!(kind, Kind::Paired(_)))?;
        let paired = next_control(&mut operator).await?;
        expect(&paired, "paired", |kind| matches!(kind, Kind::Paired(_)))?;
        no_delay(&operator)?;
        no_delay(&agent)?;
        Ok(Pair {
            a: operator,
            b: agent,
        })
    }
}

fn expect(control: &RelayControl, what: &str, check: impl Fn(&Kind) -> bool) -> anyhow::Result<()> {
    match &control.kind {
        Some(kind) if check(kind) => Ok(()),
        other => bail!("the relay answered {other:?}, {what} expected"),
    }
}

/// Interactive clients send each message at once (the relay does the same on its side):
/// `connect_async` leaves Nagle's algorithm on, so it is turned off here as on every other
/// socket of the tool.
fn no_delay(socket: &Socket) -> anyhow::Result<()> {
    match socket.get_ref() {
        MaybeTlsStream::Plain(stream) => Ok(stream.set_nodelay(true)?),
        _ => bail!("the bench talks to the relay without TLS"),
    }
}
