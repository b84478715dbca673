//! `agent-load`: N simulated agents connected to one `tucdesk-rendezvous` process, each over
//! its own TCP + HTTP/2 connection, heartbeating at the interval the replica announces. Reports
//! the replica's memory per connected agent and its CPU per heartbeat.
//!
//! Auth runs in-process (embedded backend) and trusts the service key the bench writes for
//! the replica; the replica runs on embedded backends (SQLite, in-process cache and bus) on
//! loopback ports chosen here, and is killed when the run ends, fails or is interrupted.

mod fleet;
mod server;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio_util::sync::CancellationToken;
use tucdesk_crypto::Identity;
use tucdesk_testkit::{Backend, SimAgent, TestAuth};

use crate::probe::{self, Proc};
use server::{RendezvousProcess, Settings};

/// Most agents one run holds: each needs a file descriptor in the bench and in the replica
/// (the machine's limit is 20 000 per process).
pub const MAX_AGENTS: usize = 20_000;
/// Descriptors the bench needs besides one per agent (auth, runtime, stdio, probes).
const FD_MARGIN: u64 = 256;
/// Heartbeat intervals the replica accepts (its configuration check).
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
const MAX_HEARTBEAT: Duration = Duration::from_secs(600);
/// Pause after a phase before reading memory, so that in-flight work and allocator caches
/// settle.
const SETTLE: Duration = Duration::from_secs(5);
/// Window over which the idle replica's CPU is read, as the baseline of the heartbeat figure.
const IDLE_WINDOW: Duration = Duration::from_secs(3);
/// Phase deadlines: a base plus a budget per agent, far above what a healthy run needs, so a
/// stuck phase fails with a clear error instead of hanging.
const PHASE_BASE: Duration = Duration::from_secs(60);
const PHASE_PER_AGENT: Duration = Duration::from_millis(20);
/// The team owner, who creates the enrollment tokens and lists the fleet.
const OWNER_EMAIL: &str = "owner@bench.example";
/// The deployment audience the simulated agents sign their proofs for.
const AUDIENCE: &str = "tucdesk-bench";
/// Metrics read from the replica's ops endpoint.
const HEARTBEATS_METRIC: &str = "tucdesk_rendezvous_heartbeats_total";
const CONNECTED_METRIC: &str = "tucdesk_rendezvous_connected_agents";
const KIB: f64 = 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub agents: usize,
    pub heartbeat_interval: Duration,
    pub window: Duration,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    if options.agents == 0 || options.agents > MAX_AGENTS {
        bail!("--agents must be between 1 and {MAX_AGENTS}");
    }
    if !(MIN_HEARTBEAT..=MAX_HEARTBEAT).contains(&options.heartbeat_interval) {
        bail!("--heartbeat-interval must be between 100ms and 10m");
    }
    let needed = options.agents as u64 + FD_MARGIN;
    if let Some(limit) = probe::open_files_limit()?
        && limit < needed
    {
        bail!(
            "{} agents need about {needed} open files in this process and in the replica; \
             the limit is {limit} (raise it with `ulimit -n`)",
            options.agents
        );
    }
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let service_key = dir.path().join("service.key");
    let identity = Identity::generate()?;
    identity
        .save_to_file(&service_key)
        .context("writing the replica's service key")?;
    let auth = TestAuth::start_trusting(Backend::Embedded, &identity.agent_id())
        .await
        .context("starting the auth service in-process")?;
    let result = measure(&options, &auth, dir.path(), &service_key).await;
    auth.stop().await;
    result
}

async fn measure(
    options: &Options,
    auth: &TestAuth,
    dir: &Path,
    service_key: &Path,
) -> anyhow::Result<()> {
    let n = options.agents;
    let mut server = RendezvousProcess::start(&Settings {
        dir,
        service_key_file: service_key,
        auth_url: &auth.url(),
        token_issuer: &auth.issuer,
        audience: AUDIENCE,
        heartbeat_interval: options.heartbeat_interval,
        max_agents: n,
    })
    .await?;
    let pid = Proc::Pid(server.pid);
    let url: Arc<str> = server.url().into();
    println!(
        "agent-load: {n} agents, heartbeat every {:?}, {:?} window; tucdesk-rendezvous pid {} \
         on {} (SQLite, cache and bus memory://)",
        options.heartbeat_interval, options.window, server.pid, server.grpc_addr
    );
    let started_rss = probe::memory(pid)?;

    let owner = Arc::new(auth.new_team(OWNER_EMAIL).await?);
    let channel = fleet::channel(&url).await?;
    let audience: Arc<str> = AUDIENCE.into();
    let (agents, enroll_time) = phase("enrollment", n, async {
        crate::phase::bounded("enrolled", vec![(); n], |index, ()| {
            fleet::enroll_one(channel.clone(), owner.clone(), audience.clone(), index)
        })
        .await
    })
    .await?;
    server.check_alive()?;
    tokio::time::sleep(SETTLE).await;
    let baseline = probe::memory(pid)?;
    let idle = probe::cpu_window(pid, IDLE_WINDOW).await?;

    let stop = CancellationToken::new();
    let held = Arc::new(fleet::Held::default());
    let (_, connect_time) = phase("connection", n, async {
        crate::phase::bounded("connected", agents, |index, agent: SimAgent| {
            fleet::connect_and_hold(url.clone(), index, agent, stop.clone(), held.clone())
        })
        .await
    })
    .await?;
    tokio::time::sleep(SETTLE).await;
    server.check_alive()?;
    let loaded = probe::memory(pid)?;
    let connected = probe::scrape(server.ops_addr, CONNECTED_METRIC).await?;

    let heartbeats_before = probe::scrape(server.ops_addr, HEARTBEATS_METRIC).await?;
    let bench_before = probe::cpu_seconds(Proc::Current)?;
    let busy = probe::cpu_window(pid, options.window).await?;
    let heartbeats = probe::scrape(server.ops_addr, HEARTBEATS_METRIC).await? - heartbeats_before;
    let bench_cpu = probe::cpu_seconds(Proc::Current)? - bench_before;
    server.check_alive()?;

    let viewer = auth.login(OWNER_EMAIL, Identity::generate()?).await?;
    let online = fleet::count_online(&url, &viewer).await?;
    let dropped = held.dropped.load(Ordering::Relaxed);
    let after = probe::memory(pid)?;
    stop.cancel();

    let per_agent = (loaded.rss as f64 - baseline.rss as f64) / n as f64;
    let window = busy.wall.as_secs_f64();
    let expected = n as f64 * window / options.heartbeat_interval.as_secs_f64();
    let per_heartbeat_us = busy.cpu * 1e6 / heartbeats.max(1.0);
    println!("results:");
    println!(
        "  enrolled {n} in {:.1} s ({:.0} /s), connected {n} in {:.1} s ({:.0} /s)",
        enroll_time.as_secs_f64(),
        n as f64 / enroll_time.as_secs_f64(),
        connect_time.as_secs_f64(),
        n as f64 / connect_time.as_secs_f64()
    );
    println!(
        "  replica RSS: {:.1} MiB at start, {:.1} MiB enrolled (baseline), {:.1} MiB with {n} \
         connected ({connected:.0} held per its gauge), peak {:.1} MiB",
        started_rss.rss as f64 / MIB,
        baseline.rss as f64 / MIB,
        loaded.rss as f64 / MIB,
        after.peak as f64 / MIB
    );
    println!(
        "  memory per connected agent: {:.1} KiB (goal < 20 KiB)",
        per_agent / KIB
    );
    println!(
        "  heartbeats in {window:.1} s: {heartbeats:.0} ({:.0} /s; {expected:.0} expected)",
        heartbeats / window
    );
    println!(
        "  replica CPU while heartbeating: {:.1} % of one core (idle, enrolled: {:.1} %) → \
         {per_heartbeat_us:.1} µs per heartbeat",
        busy.percent(),
        idle.percent()
    );
    println!(
        "  bench process CPU (the {n} simulated agents, auth): {:.1} % of one core",
        bench_cpu / window * 100.0
    );
    println!("  online per ListAgents(presence ONLINE): {online}/{n}; streams dropped: {dropped}");
    if online != n || dropped != 0 {
        bail!("only {online} of {n} agents were online at the end ({dropped} streams dropped)");
    }
    Ok(())
}

/// Runs `work` under the phase deadline for `n` agents; returns its output and duration.
async fn phase<T>(
    what: &str,
    n: usize,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, Duration)> {
    let limit = PHASE_BASE + PHASE_PER_AGENT * u32::try_from(n).unwrap_or(u32::MAX);
    crate::phase::within(what, limit, work).await
}
