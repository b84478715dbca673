//! `registrations`: agent registration proofs verified per second on one core, through
//! `Rendezvous::verify_registration` exactly as Connect and Enroll call it (version floor,
//! shapes, audience, clock skew, replay-cache claim of the nonce, Ed25519 signature), with the
//! replay cache in-process (`memory`) or in Redis.
//!
//! Fresh proofs are generated before each timed stretch (not timed) and verified on a
//! current-thread runtime on a thread of its own. The replica the proofs go to runs on its own
//! runtime (testkit); in the Redis case its Redis client drives the socket from there, so the
//! figure per core is taken from the whole bench process's CPU time, and Redis's own CPU is
//! reported beside it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use tokio::task::JoinSet;
use tucdesk_crypto::Identity;
use tucdesk_crypto::registration::RegistrationProof as CryptoProof;
use tucdesk_proto::v1::{RegistrationProof, RejectReason};
use tucdesk_rendezvous::Rendezvous;
use tucdesk_testkit::agent::wire_proof;
use tucdesk_testkit::{Backend, Deployment};

use crate::probe::{self, Proc};

/// Largest batch of pre-generated proofs: signing one takes ~20 µs, and a batch must be
/// generated and used up well inside the ±30 s window the replica accepts.
pub const MAX_PROOFS: usize = 200_000;
/// Most verifications in flight (the Redis case).
pub const MAX_IN_FLIGHT: usize = 256;
/// A batch is used only while younger than this: proofs are accepted within
/// `MAX_CLOCK_SKEW` (30 s) of the replica's clock.
const PROOF_MAX_AGE: Duration = Duration::from_secs(20);
/// Agent identities the proofs are spread over (the key is parsed on every verification
/// whichever it is).
const IDENTITIES: usize = 64;
/// Already verified proofs replayed after each case; every one must be refused.
const REPLAY_SAMPLE: usize = 1000;
/// A timed stretch shorter than this is not started (the rest of a case's time is noise).
const MIN_STRETCH: Duration = Duration::from_millis(50);

/// Where the replay cache lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Cache {
    /// In-process LRU + TTL cache (embedded deployment: SQLite, memory bus).
    Memory,
    /// Redis `SET NX` with TTL (real deployment: Postgres, Redis, NATS).
    Redis,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub cache: Cache,
    pub duration: Duration,
    pub proofs: usize,
    pub in_flight: usize,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    if options.proofs < REPLAY_SAMPLE || options.proofs > MAX_PROOFS {
        bail!("--proofs must be between {REPLAY_SAMPLE} and {MAX_PROOFS}");
    }
    if options.in_flight == 0 || options.in_flight > MAX_IN_FLIGHT {
        bail!("--in-flight must be between 1 and {MAX_IN_FLIGHT}");
    }
    let backend = match options.cache {
        Cache::Memory => Backend::Embedded,
        Cache::Redis => Backend::Real,
    };
    let deployment = Deployment::new(backend).await.context(
        "starting the deployment (the Redis case needs Postgres, Redis and NATS running)",
    )?;
    let result = measure_on_replica(&deployment, options).await;
    // Drops the scratch schemas whatever happened (the Redis keys expire with their TTL).
    deployment.cleanup().await;
    result
}

async fn measure_on_replica(deployment: &Deployment, options: Options) -> anyhow::Result<()> {
    let replica = deployment.replica().await?;
    let rdv = replica.rdv.clone();
    let audience = deployment.config.audience.clone();
    // The measuring runtime needs a thread of its own: one runtime cannot block on another.
    let measuring = std::thread::Builder::new()
        .name("bench-registrations".into())
        .spawn(move || measure_all(&rdv, &audience, options))
        .context("starting the measuring thread")?;
    let result = tokio::task::spawn_blocking(move || measuring.join())
        .await?
        .map_err(|_| anyhow!("the measuring thread panicked"));
    replica.stop().await;
    result?
}

fn measure_all(rdv: &Rendezvous, audience: &str, options: Options) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let identities = (0..IDENTITIES)
            .map(|_| Identity::generate())
            .collect::<Result<Vec<_>, _>>()?;
        let cases: &[usize] = match options.cache {
            Cache::Memory => &[1],
            Cache::Redis => &[1, options.in_flight],
        };
        let alone = signature_alone(&identities, audience, options.duration)?;
        println!(
            "signature check alone (RegistrationProof::verify, Ed25519 strict): {alone:>7.0} /s, \
             {:.1} µs each",
            1e6 / alone
        );
        let label = match options.cache {
            Cache::Memory => "in-process cache",
            Cache::Redis => "Redis cache",
        };
        for &in_flight in cases {
            let tally = case(rdv, &identities, audience, options, in_flight).await?;
            tally.print(label, in_flight);
            if options.cache == Cache::Redis {
                let (rate, cpu_us) = claims_alone(options.duration, in_flight).await?;
                println!(
                    "  for comparison, the Redis claim alone (SET NX, client on the measuring \
                     thread): {rate:.0} /s, bench CPU {cpu_us:.1} µs each"
                );
            }
        }
        anyhow::Ok(())
    })
}

/// Totals of one case over its timed stretches.
#[derive(Debug, Default)]
struct Tally {
    verified: usize,
    timed: Duration,
    /// CPU time of the bench process while timed.
    cpu: f64,
    /// CPU time of redis-server while timed, when it tells.
    redis_cpu: Option<f64>,
    replays_refused: usize,
    replays: usize,
}

impl Tally {
    fn print(&self, label: &str, in_flight: usize) {
        let n = self.verified.max(1) as f64;
        let rate = n / self.timed.as_secs_f64();
        let cpu_us = self.cpu * 1e6 / n;
        println!(
            "registrations verified ({label}, {in_flight} in flight): {rate:>7.0} /s, \
             {:.1} µs each; bench CPU {cpu_us:.1} µs each → {:.0} /s per core; n = {}",
            1e6 / rate,
            1e6 / cpu_us,
            self.verified
        );
        if let Some(redis) = self.redis_cpu {
            println!(
                "  redis-server CPU: {:.1} µs per verification ({:.0} % of one core)",
                redis * 1e6 / n,
                redis / self.timed.as_secs_f64() * 100.0
            );
        }
        println!(
            "  replayed proofs refused: {}/{} (NONCE_REPLAYED)",
            self.replays_refused, self.replays
        );
    }
}

async fn case(
    rdv: &Rendezvous,
    identities: &[Identity],
    audience: &str,
    options: Options,
    in_flight: usize,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let redis = (options.cache == Cache::Redis).then(tucdesk_svc::testing::redis_url);
    let mut redis_cpu = Some(0.0);
    let mut last = None;
    loop {
        let left = options.duration.saturating_sub(tally.timed);
        if left < MIN_STRETCH {
            break;
        }
        let created = Instant::now();
        let batch = Arc::new(generate(identities, audience, options.proofs)?);
        let redis_before = match &redis {
            Some(url) => probe::redis_cpu_seconds(url).await,
            None => None,
        };
        let cpu_before = probe::cpu_seconds(Proc::Current)?;
        let started = Instant::now();
        let until = (started + left).min(created + PROOF_MAX_AGE);
        let verified = verify_batch(rdv, batch.clone(), in_flight, until).await?;
        tally.timed += started.elapsed();
        tally.cpu += probe::cpu_seconds(Proc::Current)? - cpu_before;
        if let Some(url) = &redis {
            redis_cpu = match (redis_cpu, redis_before, probe::redis_cpu_seconds(url).await) {
                (Some(sum), Some(before), Some(after)) => Some(sum + after - before),
                _ => None,
            };
        }
        tally.verified += verified;
        if verified > 0 {
            last = Some((batch, verified));
        }
    }
    tally.redis_cpu = redis.and(redis_cpu);
    // The first proofs of the last batch were verified (only the last `in_flight` taken may
    // have met the deadline unverified): each must now be refused as a replay.
    let (batch, verified) = last.context("no proof was verified")?;
    for proof in batch
        .iter()
        .take(REPLAY_SAMPLE.min(verified.saturating_sub(in_flight)))
    {
        tally.replays += 1;
        match rdv
            .verify_registration(tucdesk_proto::PROTOCOL_VERSION, Some(proof))
            .await
        {
            Err(err) if err.reason() == RejectReason::NonceReplayed => tally.replays_refused += 1,
            Err(err) => bail!("a replayed proof was refused for another reason: {err}"),
            Ok(_) => bail!("a replayed proof was ACCEPTED: the replay check is broken"),
        }
    }
    if tally.replays == 0 || tally.replays_refused != tally.replays {
        bail!("the replay sanity check did not run");
    }
    Ok(tally)
}

/// The replay-cache claim alone (`SET NX` with TTL, the same key shape and TTL as the
/// service), with a Redis client created on this runtime: how much of a verification's cost
/// the Redis round trip is. Returns claims per second and bench CPU µs per claim.
async fn claims_alone(duration: Duration, in_flight: usize) -> anyhow::Result<(f64, f64)> {
    let namespace = tucdesk_svc::testing::unique_name("bench");
    let cache = tucdesk_svc::cache::connect(&tucdesk_svc::testing::redis_url(), &namespace)
        .await
        .context("connecting to Redis")?;
    let cpu_before = probe::cpu_seconds(Proc::Current)?;
    let started = Instant::now();
    let until = started + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..in_flight {
        let cache = cache.clone();
        tasks.spawn(async move {
            let mut claimed = 0usize;
            while Instant::now() < until {
                let nonce = tucdesk_crypto::rng::random_array::<32>()?;
                let key = format!("reg:{}", hex(&nonce));
                if !cache
                    .insert_if_absent(&key, tucdesk_crypto::REPLAY_WINDOW)
                    .await?
                {
                    bail!("a fresh random nonce was already in the cache");
                }
                claimed += 1;
            }
            anyhow::Ok(claimed)
        });
    }
    let mut claimed = 0;
    while let Some(done) = tasks.join_next().await {
        claimed += done.context("a claiming task panicked")??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = probe::cpu_seconds(Proc::Current)? - cpu_before;
    let n = claimed.max(1) as f64;
    Ok((n / elapsed, cpu * 1e6 / n))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Proofs checked per second by `tucdesk_crypto` alone (audience, skew, Ed25519 strict): no
/// wire parsing, no replay cache. The same few proofs are checked over and over, against the
/// clock they were signed at so that they never go stale.
fn signature_alone(
    identities: &[Identity],
    audience: &str,
    duration: Duration,
) -> anyhow::Result<f64> {
    let now = u64::try_from(tucdesk_svc::sql::now_ms())?;
    let proofs = identities
        .iter()
        .map(|identity| CryptoProof::create(identity, audience, now))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let mut checked = 0u64;
    while started.elapsed() < duration {
        for proof in &proofs {
            proof.verify(audience, now)?;
            checked += 1;
        }
    }
    Ok(checked as f64 / started.elapsed().as_secs_f64())
}

/// `count` fresh proofs signed now, spread over `identities`.
fn generate(
    identities: &[Identity],
    audience: &str,
    count: usize,
) -> anyhow::Result<Vec<RegistrationProof>> {
    let now = u64::try_from(tucdesk_svc::sql::now_ms())?;
    identities
        .iter()
        .cycle()
        .take(count)
        .map(|identity| Ok(wire_proof(&CryptoProof::create(identity, audience, now)?)))
        .collect()
}

/// Verifies proofs of `batch` in order with `in_flight` tasks until the batch or the time
/// runs out; returns how many verified. Any refusal is an error: every proof is fresh.
async fn verify_batch(
    rdv: &Rendezvous,
    batch: Arc<Vec<RegistrationProof>>,
    in_flight: usize,
    until: Instant,
) -> anyhow::Result<usize> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..in_flight {
        let (rdv, batch, next) = (rdv.clone(), batch.clone(), next.clone());
        tasks.spawn(async move {
            let mut verified = 0;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(proof) = batch.get(index) else {
                    return anyhow::Ok(verified);
                };
                if Instant::now() >= until {
                    return Ok(verified);
                }
                rdv.verify_registration(tucdesk_proto::PROTOCOL_VERSION, Some(proof))
                    .await
                    .map_err(|err| anyhow!("fresh proof {index} was refused: {err}"))?;
                verified += 1;
            }
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done.context("a verifying task panicked")??;
    }
    Ok(total)
}
