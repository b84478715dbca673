//! The two workloads, identical on every route: a stream (the operator side sends binary
//! messages as fast as it can, the agent side reads and counts them) and a ping-pong (the
//! operator side sends a small message, the agent side echoes it, the operator side records
//! the round trip, and sends the next one on its next tick or at once, see [`Pace`]).
//!
//! Every session runs as two tasks on the bench's runtime. A case starts every task, lets
//! them warm up for [`WARMUP`], then measures over the window; the figures count only what
//! happened inside it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_util::sync::CancellationToken;

use super::routes::Pair;
use crate::probe::{self, CpuWindow, Proc};

/// Time every case runs before its window opens (connections ramp up, TCP windows grow).
pub const WARMUP: Duration = Duration::from_secs(1);
/// How long the tasks may take to stop once the window closed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Round trips kept per session (4 bytes each): far above what a 120 s window yields on two
/// cores, a bound on memory all the same.
const MAX_SAMPLES_PER_SESSION: usize = 4_000_000;

/// What a stream case measured.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub messages: u64,
    pub bytes: u64,
    pub wall: Duration,
    pub relay_cpu: Option<CpuWindow>,
    pub bench_cpu: CpuWindow,
}

impl Throughput {
    pub fn gbit_per_sec(&self) -> f64 {
        self.bytes as f64 * 8.0 / 1e9 / self.wall.as_secs_f64()
    }

    pub fn messages_per_sec(&self) -> f64 {
        self.messages as f64 / self.wall.as_secs_f64()
    }
}

/// What a ping-pong case measured: every round trip of the window, sorted, in nanoseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    pub sorted_ns: Vec<u32>,
    pub wall: Duration,
    pub relay_cpu: Option<CpuWindow>,
    pub bench_cpu: CpuWindow,
}

impl Latency {
    /// The `p`-th quantile (0 < p ≤ 1, nearest rank), in microseconds.
    pub fn quantile_us(&self, p: f64) -> f64 {
        let n = self.sorted_ns.len();
        let rank = ((p * n as f64).ceil() as usize).clamp(1, n.max(1));
        self.sorted_ns
            .get(rank - 1)
            .map_or(f64::NAN, |&ns| f64::from(ns) / 1e3)
    }

    pub fn round_trips_per_sec(&self) -> f64 {
        self.sorted_ns.len() as f64 / self.wall.as_secs_f64()
    }
}

/// CPU readings at one instant: the relay's (when it is the route) and the bench's.
struct Clock {
    at: Instant,
    relay: Option<f64>,
    bench: f64,
}

impl Clock {
    fn read(relay: Option<Proc>) -> anyhow::Result<Self> {
        Ok(Self {
            at: Instant::now(),
            relay: relay.map(probe::cpu_seconds).transpose()?,
            bench: probe::cpu_seconds(Proc::Current)?,
        })
    }

    /// (wall, relay CPU, bench CPU) from `self` to `later`.
    fn until(&self, later: &Clock) -> (Duration, Option<CpuWindow>, CpuWindow) {
        let wall = later.at.duration_since(self.at);
        let relay = self
            .relay
            .zip(later.relay)
            .map(|(before, after)| CpuWindow {
                cpu: after - before,
                wall,
            });
        let bench = CpuWindow {
            cpu: later.bench - self.bench,
            wall,
        };
        (wall, relay, bench)
    }
}

/// Messages and bytes the receiving sides counted, all sessions together.
#[derive(Debug, Default)]
struct Counted {
    messages: AtomicU64,
    bytes: AtomicU64,
}

/// Streams `message_size`-byte messages over every pair for the warm-up and `window`.
/// `relay` is the relay process when it is the route (its CPU is read too).
pub async fn throughput<S>(
    pairs: Vec<Pair<S>>,
    message_size: usize,
    window: Duration,
    relay: Option<Proc>,
) -> anyhow::Result<Throughput>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // A fixed pattern: the relay never looks inside, and the client masks it anyway.
    let payload = Bytes::from((0..message_size).map(|i| i as u8).collect::<Vec<u8>>());
    let counted = Arc::new(Counted::default());
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    for pair in pairs {
        tasks.spawn(send_stream(pair.a, payload.clone(), stop.clone()));
        tasks.spawn(count_stream(pair.b, counted.clone(), stop.clone()));
    }
    tokio::time::sleep(WARMUP).await;
    let (messages, bytes) = (
        counted.messages.load(Ordering::Relaxed),
        counted.bytes.load(Ordering::Relaxed),
    );
    let start = Clock::read(relay)?;
    tokio::time::sleep(window).await;
    let end = Clock::read(relay)?;
    let (messages, bytes) = (
        counted.messages.load(Ordering::Relaxed) - messages,
        counted.bytes.load(Ordering::Relaxed) - bytes,
    );
    stop.cancel();
    finish(tasks).await?;
    let (wall, relay_cpu, bench_cpu) = start.until(&end);
    Ok(Throughput {
        messages,
        bytes,
        wall,
        relay_cpu,
        bench_cpu,
    })
}

/// How a ping-pong side sends its next ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// One ping per session every interval, the sessions' turns spread evenly over it (by
    /// [`pacer`]), like typing: the load stays well below capacity, so that the round trip is
    /// the path's rather than a queue's.
    Every(Duration),
    /// The next ping as soon as the echo is back: the most round trips the machine does, and
    /// with many sessions the round trip is mostly waiting in line for a core.
    BackToBack,
}

/// Ping-pongs `message_size`-byte messages over every pair for the warm-up and `window`.
pub async fn latency<S>(
    pairs: Vec<Pair<S>>,
    message_size: usize,
    pace: Pace,
    window: Duration,
    relay: Option<Proc>,
) -> anyhow::Result<Latency>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let payload = Bytes::from(vec![0x5a; message_size]);
    let stop = CancellationToken::new();
    // Whatever way this returns, the pacer thread stops (the tasks are aborted with their set).
    let _stop_on_return = stop.clone().drop_guard();
    let opens = Instant::now() + WARMUP;
    let turns: Vec<Arc<Notify>> = match pace {
        Pace::Every(_) => pairs.iter().map(|_| Arc::default()).collect(),
        Pace::BackToBack => Vec::new(),
    };
    let mut pings = JoinSet::new();
    let mut echoes = JoinSet::new();
    for (index, pair) in pairs.into_iter().enumerate() {
        let turn = turns.get(index).cloned();
        pings.spawn(ping(pair.a, payload.clone(), turn, opens, stop.clone()));
        echoes.spawn(echo(pair.b, stop.clone()));
    }
    let pacer = match pace {
        Pace::Every(interval) => {
            let stop = stop.clone();
            Some(
                std::thread::Builder::new()
                    .name("bench-pacer".into())
                    .spawn(move || pacer(&turns, interval, &stop))
                    .context("starting the pacer thread")?,
            )
        }
        Pace::BackToBack => None,
    };
    tokio::time::sleep_until(opens.into()).await;
    let start = Clock::read(relay)?;
    tokio::time::sleep(window).await;
    let end = Clock::read(relay)?;
    stop.cancel();
    let mut sorted_ns = Vec::new();
    let joined = tokio::time::timeout(STOP_TIMEOUT, async {
        while let Some(samples) = pings.join_next().await {
            sorted_ns.extend(samples.context("a ping task panicked")??);
        }
        anyhow::Ok(())
    })
    .await;
    joined.context("the ping tasks did not stop")??;
    finish(echoes).await?;
    // The pacer sees the stop within one step (at most the interval): a short blocking join.
    if let Some(pacer) = pacer
        && pacer.join().is_err()
    {
        bail!("the pacer thread panicked");
    }
    sorted_ns.sort_unstable();
    let (wall, relay_cpu, bench_cpu) = start.until(&end);
    Ok(Latency {
        sorted_ns,
        wall,
        relay_cpu,
        bench_cpu,
    })
}

/// Sends one message each way over every pair: warms up the paths of a fresh node.
pub async fn exchange_once<S>(pairs: &mut [Pair<S>]) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for pair in pairs {
        let message = Bytes::from_static(b"warm-up");
        pair.a.send(Message::Binary(message.clone())).await?;
        let echoed = next_binary(&mut pair.b).await?;
        pair.b.send(Message::Binary(echoed)).await?;
        if next_binary(&mut pair.a).await? != message {
            bail!("the warm-up message came back changed");
        }
    }
    Ok(())
}

/// Gives the sessions their turns until `stop`: session `i` at `start + (i + j·n)·interval/n`
/// for every round `j`. On an OS thread of its own with absolute deadlines, because tokio's
/// timers have a 1 ms resolution: 100 sessions every 5 ms would otherwise ping in bursts of
/// 20 and measure the burst's queue. A late turn is given at once (the thread sleeps with
/// the kernel's timer slack, some 50 µs, and may be preempted).
fn pacer(turns: &[Arc<Notify>], interval: Duration, stop: &CancellationToken) {
    let n = u32::try_from(turns.len()).unwrap_or(u32::MAX).max(1);
    let step = interval / n;
    let start = Instant::now();
    let mut next = start;
    for turn in turns.iter().cycle() {
        if stop.is_cancelled() {
            return;
        }
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        turn.notify_one();
        next += step;
    }
}

/// Waits for every task; the first failure is the case's. Errors after the stop are not
/// failures (a side may see its peer's connection close first), so the tasks return `Ok` then.
async fn finish(mut tasks: JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::time::timeout(STOP_TIMEOUT, async {
        while let Some(done) = tasks.join_next().await {
            done.context("a load task panicked")??;
        }
        anyhow::Ok(())
    })
    .await
    .context("the load tasks did not stop")?
}

async fn send_stream<S>(
    mut socket: WebSocketStream<S>,
    payload: Bytes,
    stop: CancellationToken,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        // Each message is written at once (`send` flushes), as a terminal session's frames are.
        let sent = tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(()),
            sent = socket.send(Message::Binary(payload.clone())) => sent,
        };
        if let Err(err) = sent {
            return stopped_or(&stop, err);
        }
    }
}

async fn count_stream<S>(
    mut socket: WebSocketStream<S>,
    counted: Arc<Counted>,
    stop: CancellationToken,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let next = tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(()),
            next = next_binary(&mut socket) => next,
        };
        match next {
            Ok(data) => {
                counted.messages.fetch_add(1, Ordering::Relaxed);
                counted
                    .bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            Err(err) => return stopped_or(&stop, err),
        }
    }
}

/// The operator side of a ping-pong: round trips started at or after `opens` and finished
/// before the stop, in nanoseconds.
async fn ping<S>(
    mut socket: WebSocketStream<S>,
    payload: Bytes,
    turn: Option<Arc<Notify>>,
    opens: Instant,
    stop: CancellationToken,
) -> anyhow::Result<Vec<u32>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut samples = Vec::new();
    loop {
        if let Some(turn) = &turn {
            // A turn given while the last round trip was still out is kept (one at most):
            // the next ping then goes at once, late, without a burst to catch up.
            tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(samples),
                () = turn.notified() => {}
            }
        }
        let started = Instant::now();
        let round_trip = async {
            socket.send(Message::Binary(payload.clone())).await?;
            let echoed = next_binary(&mut socket).await?;
            if echoed.len() != payload.len() {
                bail!(
                    "the echo has {} bytes, {} sent",
                    echoed.len(),
                    payload.len()
                );
            }
            anyhow::Ok(())
        };
        let done = tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(samples),
            done = round_trip => done,
        };
        let rtt = started.elapsed();
        if let Err(err) = done {
            return stopped_or(&stop, err).map(|()| samples);
        }
        if started >= opens && samples.len() < MAX_SAMPLES_PER_SESSION {
            samples.push(u32::try_from(rtt.as_nanos()).unwrap_or(u32::MAX));
        }
    }
}

/// The agent side of a ping-pong: sends every message back as it came.
async fn echo<S>(mut socket: WebSocketStream<S>, stop: CancellationToken) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let next = tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(()),
            next = next_binary(&mut socket) => next,
        };
        let sent = match next {
            Ok(data) => socket.send(Message::Binary(data)).await.map_err(Into::into),
            Err(err) => Err(err),
        };
        if let Err(err) = sent {
            return stopped_or(&stop, err);
        }
    }
}

/// The next binary message (pings and pongs skipped); a close or anything else is an error.
async fn next_binary<S>(socket: &mut WebSocketStream<S>) -> anyhow::Result<Bytes>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match socket.next().await {
            Some(Ok(Message::Binary(data))) => return Ok(data),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(frame))) => bail!("the other side closed ({frame:?})"),
            Some(Ok(Message::Text(_))) => bail!("a text message arrived"),
            Some(Err(err)) => return Err(err).context("reading"),
            None => bail!("the connection ended"),
        }
    }
}

/// `Ok` if the case was already stopping when `err` happened, `err` otherwise.
fn stopped_or(stop: &CancellationToken, err: impl Into<anyhow::Error>) -> anyhow::Result<()> {
    if stop.is_cancelled() {
        Ok(())
    } else {
        Err(err.into())
    }
}
