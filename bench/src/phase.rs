//! Running a phase of a load tool: many jobs with a bound on how many run at once (with
//! progress lines for long phases), and a deadline so that a stuck phase fails with a clear
//! error instead of hanging. Shared by `agent-load` and `relay`.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use tokio::task::JoinSet;

/// Jobs in flight while setting up (enrolling or connecting agents, opening relay sessions):
/// enough to keep both cores busy, few enough that SQLite's single writer (auth's audit log,
/// the replica's store) is not buried under waiting transactions.
pub const IN_FLIGHT: usize = 32;
/// Progress is printed every this many jobs, in phases at least that long.
const PROGRESS_EVERY: usize = 1000;

/// Runs `job(i, item)` for every item with at most [`IN_FLIGHT`] running, printing progress
/// when there are at least [`PROGRESS_EVERY`] items; the first error stops the phase (the
/// remaining jobs are aborted when the set drops). The outputs come in completion order.
pub async fn bounded<I, T, F, Fut>(label: &str, items: Vec<I>, job: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize, I) -> Fut,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let started = Instant::now();
    let n = items.len();
    let mut items = items.into_iter().enumerate();
    let mut set = JoinSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        while set.len() < IN_FLIGHT {
            let Some((index, item)) = items.next() else {
                break;
            };
            set.spawn(job(index, item));
        }
        let done = set
            .join_next()
            .await
            .context("no job left to wait for")?
            .context("a job panicked")??;
        out.push(done);
        if n >= PROGRESS_EVERY && (out.len() % PROGRESS_EVERY == 0 || out.len() == n) {
            println!(
                "  {label}: {}/{n} ({:.0} /s)",
                out.len(),
                out.len() as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(out)
}

/// Runs `work` with at most `limit` to finish; returns its output and how long it took.
pub async fn within<T>(
    what: &str,
    limit: Duration,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, Duration)> {
    let started = Instant::now();
    let out = tokio::time::timeout(limit, work)
        .await
        .map_err(|_| anyhow!("the {what} phase did not finish within {limit:?}"))??;
    Ok((out, started.elapsed()))
}
