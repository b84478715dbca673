//! `relay`: the WebSocket relay of a `tucdesk-relay` process against baselines measured the
//! same way in the same run (see [`routes`]): throughput of 1 and N sessions streaming,
//! round trips of 1 and N sessions ping-ponging, and the node's memory per idle paired
//! session.
//!
//! Auth runs in-process (embedded backend) and mints the tickets; the node is the release
//! binary next to this one, on loopback, killed when the run ends, fails or is interrupted.
//! Clients and node share the machine's cores, and so do the clients and the baselines.

mod load;
mod node;
mod routes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;
use tucdesk_crypto::Identity;
use tucdesk_testkit::{Backend, TestAuth};

use crate::probe::{self, Proc};
use load::{Latency, Pace, Throughput};
use node::{RelayProcess, Sessions};
use routes::{Direct, Forwarder, Pair, Route};

/// Most sessions a case opens, and most idle sessions: each costs two descriptors in the bench
/// and two in the node (four in the bench through the forwarder).
pub const MAX_SESSIONS: usize = 5000;
/// Longest measuring window of one case (a run has 18 cases plus the memory phase).
pub const MAX_SECONDS: u64 = 120;
/// Largest message the node forwards (a sealed frame).
pub const MAX_MESSAGE_SIZE: usize = tucdesk_proto::limits::MAX_SEALED_FRAME_LEN;
/// Message of the ping-pong: about a keystroke's sealed frame.
const PING_SIZE: usize = 64;
/// Interval between the pings of one session in the paced cases: 200 round trips a second,
/// far more than typing needs, still thousands of samples per session in a 10 s window, and
/// with 100 sessions (20 000 round trips a second) well under what the machine can do.
const PING_INTERVAL: Duration = Duration::from_millis(5);
/// Descriptors the bench needs besides the sessions' (auth, runtimes, stdio, probes).
const FD_MARGIN: u64 = 256;
/// Sessions opened, used once and closed before the memory baseline is read, so that what
/// the node sets up on first use (buffers, timers, caches, allocator arenas) is in it.
const WARMUP_SESSIONS: usize = 32;
/// Pause before reading the node's memory, so that in-flight work and allocator caches settle.
const SETTLE: Duration = Duration::from_secs(5);
/// Phase deadlines for opening sessions: a base plus a budget per session, far above what a
/// healthy run needs (minting a session's tickets writes auth's SQLite audit log).
const PHASE_BASE: Duration = Duration::from_secs(60);
const PHASE_PER_SESSION: Duration = Duration::from_millis(50);
/// The operator who opens every session.
const OWNER_EMAIL: &str = "owner@bench.example";
/// Goals of the issue (Tailscale DERP does 1.87 Gbit/s on 2 vCPUs, p99 214 µs).
const GOAL_GBIT: f64 = 2.0;
const GOAL_ADDED_P99_US: f64 = 250.0;
const GOAL_IDLE_KIB: f64 = 32.0;
const KIB: f64 = 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub sessions: usize,
    pub window: Duration,
    pub idle_sessions: usize,
    pub message_size: usize,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    if options.sessions == 0 || options.sessions > MAX_SESSIONS {
        bail!("--sessions must be between 1 and {MAX_SESSIONS}");
    }
    if options.idle_sessions == 0 || options.idle_sessions > MAX_SESSIONS {
        bail!("--idle-sessions must be between 1 and {MAX_SESSIONS}");
    }
    if options.window.is_zero() || options.window > Duration::from_secs(MAX_SECONDS) {
        bail!("--seconds must be between 1 and {MAX_SECONDS}");
    }
    if options.message_size == 0 || options.message_size > MAX_MESSAGE_SIZE {
        bail!("--message-size must be between 1 and {MAX_MESSAGE_SIZE} (a sealed frame)");
    }
    let most = (4 * options.sessions).max(2 * (options.idle_sessions + WARMUP_SESSIONS));
    let needed = most as u64 + FD_MARGIN;
    if let Some(limit) = probe::open_files_limit()?
        && limit < needed
    {
        bail!(
            "these session counts need about {needed} open files in this process; the limit \
             is {limit} (raise it with `ulimit -n`, or open fewer sessions)"
        );
    }
    let auth = Arc::new(
        TestAuth::start(Backend::Embedded)
            .await
            .context("starting the auth service in-process")?,
    );
    let result = measure(options, auth.clone()).await;
    // Every session (and with it every clone) is gone by now, whatever happened.
    if let Ok(auth) = Arc::try_unwrap(auth) {
        auth.stop().await;
    }
    result
}

async fn measure(options: Options, auth: Arc<TestAuth>) -> anyhow::Result<()> {
    let mut relay = RelayProcess::start(&auth).await?;
    let pid = Proc::Pid(relay.pid);
    let sessions = Arc::new(Sessions {
        owner: auth.new_team(OWNER_EMAIL).await?,
        agent_id: Identity::generate()?.agent_id(),
        ws_addr: relay.ws_addr,
        auth,
    });
    let forwarder = Forwarder::start()?;
    let direct = Direct::bind().await?;
    let n = options.sessions;
    let window = options.window;
    println!(
        "relay: tucdesk-relay pid {} on ws://{} (--session-rate 0 --node-rate 0: no byte-rate \
         limit); {n} session(s), {}-byte messages, {:?} windows after {:?} warm-up; baselines: \
         forwarder (TCP copy), direct (one TCP connection)",
        relay.pid,
        relay.ws_addr,
        options.message_size,
        window,
        load::WARMUP
    );

    let memory = idle_memory(&mut relay, &sessions, options.idle_sessions).await?;

    let counts: Vec<usize> = if n == 1 { vec![1] } else { vec![1, n] };
    let mut streams = Vec::new();
    for &k in &counts {
        for route in Route::ALL {
            println!("  stream: {k} session(s) via {}", route.name());
            let result = match route {
                Route::Relay => {
                    let pairs = open_relay(&mut relay, &sessions, k).await?;
                    let result =
                        load::throughput(pairs, options.message_size, window, Some(pid)).await;
                    settled(result, relay.wait_active(0).await)?
                }
                Route::Forwarder => {
                    let pairs = forwarder.open(k).await?;
                    load::throughput(pairs, options.message_size, window, None).await?
                }
                Route::Direct => {
                    let pairs = direct.open(k).await?;
                    load::throughput(pairs, options.message_size, window, None).await?
                }
            };
            streams.push((k, route, result));
        }
    }
    let mut paced = Vec::new();
    let mut back_to_back = Vec::new();
    for (pace, results) in [
        (Pace::Every(PING_INTERVAL), &mut paced),
        (Pace::BackToBack, &mut back_to_back),
    ] {
        for &k in &counts {
            for route in Route::ALL {
                println!(
                    "  ping-pong ({}): {k} session(s) via {}",
                    pace_name(pace),
                    route.name()
                );
                let result = match route {
                    Route::Relay => {
                        let pairs = open_relay(&mut relay, &sessions, k).await?;
                        let result = load::latency(pairs, PING_SIZE, pace, window, Some(pid)).await;
                        settled(result, relay.wait_active(0).await)?
                    }
                    Route::Forwarder => {
                        let pairs = forwarder.open(k).await?;
                        load::latency(pairs, PING_SIZE, pace, window, None).await?
                    }
                    Route::Direct => {
                        let pairs = direct.open(k).await?;
                        load::latency(pairs, PING_SIZE, pace, window, None).await?
                    }
                };
                results.push((k, route, result));
            }
        }
    }
    relay.check_alive()?;
    // VmHWM is updated lazily by the kernel: it can lag behind a VmRSS read a moment earlier.
    let peak = probe::memory(pid)?.peak.max(memory.after.rss);

    println!("results:");
    report_streams(&streams, options.message_size);
    report_pings(&paced, Pace::Every(PING_INTERVAL));
    report_pings(&back_to_back, Pace::BackToBack);
    report_memory(&memory, peak);
    report_goals(&streams, &paced, &memory, n);
    Ok(())
}

/// A relay case's result once the node has ended its sessions: the case's own error first.
fn settled<T>(result: anyhow::Result<T>, ended: anyhow::Result<()>) -> anyhow::Result<T> {
    let value = result?;
    ended?;
    Ok(value)
}

/// Opens `k` sessions through the node (bounded in time, progress for long phases) and checks
/// that the node counts them all as paired.
async fn open_relay(
    relay: &mut RelayProcess,
    sessions: &Arc<Sessions>,
    k: usize,
) -> anyhow::Result<Vec<Pair<MaybeTlsStream<TcpStream>>>> {
    let limit = PHASE_BASE + PHASE_PER_SESSION * u32::try_from(k).unwrap_or(u32::MAX);
    let (pairs, _) = crate::phase::within(
        "session opening",
        limit,
        crate::phase::bounded("sessions opened", vec![(); k], |index, ()| {
            sessions.clone().open(index)
        }),
    )
    .await?;
    relay.wait_active(k).await?;
    Ok(pairs)
}

/// The node's memory around `n` idle paired sessions.
#[derive(Debug, Clone, Copy)]
struct IdleMemory {
    sessions: usize,
    started: probe::Memory,
    before: probe::Memory,
    after: probe::Memory,
    open_time: Duration,
}

impl IdleMemory {
    fn per_session_kib(&self) -> f64 {
        (self.after.rss as f64 - self.before.rss as f64) / self.sessions as f64 / KIB
    }
}

/// Warms the node up, reads its memory, opens `n` sessions (both sides connected, nothing
/// flowing), reads it again once settled, and closes them.
async fn idle_memory(
    relay: &mut RelayProcess,
    sessions: &Arc<Sessions>,
    n: usize,
) -> anyhow::Result<IdleMemory> {
    let pid = Proc::Pid(relay.pid);
    let started = probe::memory(pid)?;
    println!("  memory: warming up with {WARMUP_SESSIONS} sessions");
    let mut warmup = open_relay(relay, sessions, WARMUP_SESSIONS).await?;
    load::exchange_once(&mut warmup).await?;
    drop(warmup);
    relay.wait_active(0).await?;
    tokio::time::sleep(SETTLE).await;
    let before = probe::memory(pid)?;
    println!("  memory: opening {n} idle sessions");
    let opening = Instant::now();
    let idle = open_relay(relay, sessions, n).await?;
    let open_time = opening.elapsed();
    tokio::time::sleep(SETTLE).await;
    relay.wait_active(n).await?;
    let after = probe::memory(pid)?;
    drop(idle);
    relay.wait_active(0).await?;
    Ok(IdleMemory {
        sessions: n,
        started,
        before,
        after,
        open_time,
    })
}

fn cpu(window: Option<probe::CpuWindow>) -> String {
    window.map_or_else(|| "—".to_owned(), |w| format!("{:.0} %", w.percent()))
}

fn report_streams(streams: &[(usize, Route, Throughput)], message_size: usize) {
    println!("  stream of {message_size}-byte messages, one direction per session:");
    println!(
        "    {:>8}  {:<9}  {:>8}  {:>10}  {:>9}  {:>9}",
        "sessions", "route", "Gbit/s", "msgs/s", "relay CPU", "bench CPU"
    );
    for (k, route, t) in streams {
        println!(
            "    {k:>8}  {:<9}  {:>8.2}  {:>10.0}  {:>9}  {:>9}",
            route.name(),
            t.gbit_per_sec(),
            t.messages_per_sec(),
            cpu(t.relay_cpu),
            cpu(Some(t.bench_cpu)),
        );
    }
    for k in distinct(streams) {
        let rate = |route| {
            streams
                .iter()
                .find(|(count, r, _)| *count == k && *r == route)
                .map(|(_, _, t)| t.gbit_per_sec())
        };
        if let (Some(relay), Some(forwarder), Some(direct)) = (
            rate(Route::Relay),
            rate(Route::Forwarder),
            rate(Route::Direct),
        ) {
            println!(
                "    {k} session(s): relay/forwarder {:.2}, relay/direct {:.2}",
                relay / forwarder,
                relay / direct
            );
        }
    }
}

const QUANTILES: [(f64, &str); 3] = [(0.50, "p50"), (0.99, "p99"), (0.999, "p99.9")];

fn pace_name(pace: Pace) -> String {
    match pace {
        Pace::Every(interval) => format!("one every {} ms", interval.as_millis()),
        Pace::BackToBack => "back to back".to_owned(),
    }
}

fn report_pings(pings: &[(usize, Route, Latency)], pace: Pace) {
    println!(
        "  ping-pong of {PING_SIZE}-byte messages, {} per session, round trip in µs:",
        pace_name(pace)
    );
    println!(
        "    {:>8}  {:<9}  {:>8}  {:>8}  {:>8}  {:>10}  {:>10}  {:>9}  {:>9}",
        "sessions", "route", "p50", "p99", "p99.9", "samples", "rtt/s", "relay CPU", "bench CPU"
    );
    for (k, route, l) in pings {
        println!(
            "    {k:>8}  {:<9}  {:>8.1}  {:>8.1}  {:>8.1}  {:>10}  {:>10.0}  {:>9}  {:>9}",
            route.name(),
            l.quantile_us(0.50),
            l.quantile_us(0.99),
            l.quantile_us(0.999),
            l.sorted_ns.len(),
            l.round_trips_per_sec(),
            cpu(l.relay_cpu),
            cpu(Some(l.bench_cpu)),
        );
    }
    for k in distinct(pings) {
        for baseline in [Route::Forwarder, Route::Direct] {
            if let Some(added) = added(pings, k, baseline) {
                let figures: Vec<String> = QUANTILES
                    .iter()
                    .zip(added)
                    .map(|((_, name), us)| format!("{name} {us:+.1}"))
                    .collect();
                println!(
                    "    {k} session(s), added by the relay (relay − {}): {} µs",
                    baseline.name(),
                    figures.join(", ")
                );
            }
        }
    }
}

/// Relay quantiles minus `baseline`'s (a difference of quantiles, not a quantile of
/// differences: the round trips are not paired one to one).
fn added(pings: &[(usize, Route, Latency)], k: usize, baseline: Route) -> Option<[f64; 3]> {
    let find = |route| {
        pings
            .iter()
            .find(|(count, r, _)| *count == k && *r == route)
            .map(|(_, _, l)| l)
    };
    let (relay, base) = (find(Route::Relay)?, find(baseline)?);
    Some(QUANTILES.map(|(p, _)| relay.quantile_us(p) - base.quantile_us(p)))
}

fn distinct<T>(cases: &[(usize, Route, T)]) -> Vec<usize> {
    let mut counts: Vec<usize> = cases.iter().map(|(k, _, _)| *k).collect();
    counts.dedup();
    counts
}

fn report_memory(memory: &IdleMemory, peak: u64) {
    println!(
        "  memory: relay RSS {:.1} MiB at start, {:.1} MiB warmed up (baseline), {:.1} MiB with \
         {} idle paired sessions (opened in {:.1} s), peak over the run {:.1} MiB",
        memory.started.rss as f64 / MIB,
        memory.before.rss as f64 / MIB,
        memory.after.rss as f64 / MIB,
        memory.sessions,
        memory.open_time.as_secs_f64(),
        peak as f64 / MIB
    );
    println!(
        "  memory per idle paired session: {:.1} KiB",
        memory.per_session_kib()
    );
}

fn report_goals(
    streams: &[(usize, Route, Throughput)],
    pings: &[(usize, Route, Latency)],
    memory: &IdleMemory,
    n: usize,
) {
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    println!("goals:");
    if let Some((_, _, t)) = streams
        .iter()
        .find(|(k, route, _)| *k == n && *route == Route::Relay)
    {
        let gbit = t.gbit_per_sec();
        println!(
            "  throughput ≥ {GOAL_GBIT} Gbit/s aggregate ({n} session(s)): {gbit:.2} Gbit/s — {}",
            met(gbit >= GOAL_GBIT)
        );
    }
    if let (Some([_, p99, _]), Some([_, direct, _])) = (
        added(pings, n, Route::Forwarder),
        added(pings, n, Route::Direct),
    ) {
        println!(
            "  p99 added < {GOAL_ADDED_P99_US} µs ({n} session(s), relay − forwarder): {p99:.1} \
             µs — {} (relay − direct, the extra hop included: {direct:.1} µs)",
            met(p99 < GOAL_ADDED_P99_US)
        );
    }
    let kib = memory.per_session_kib();
    println!(
        "  memory < {GOAL_IDLE_KIB} KiB per idle paired session: {kib:.1} KiB — {}",
        met(kib < GOAL_IDLE_KIB)
    );
    println!(
        "  (clients and relay share the two cores: the relay's figures are what it does with \
         the CPU the clients leave it)"
    );
}
