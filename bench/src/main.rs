//! `tucdesk-bench`: load tools whose figures go into `docs/BENCHMARKS.md`.
//!
//! Every run is bounded in time (at most [`MAX_SECONDS`]) and talks only to in-process services,
//! the local databases and, for `agent-load` and `relay`, a `tucdesk-rendezvous` or
//! `tucdesk-relay` child process on loopback; `ssh` runs a `tucdesk-standalone` stack, a
//! `tucdesk-agent` and a throwaway `sshd` as child processes, all on loopback; `audit` runs the
//! audit service in-process on the local Postgres (a scratch schema) and a SQLite temp file.

mod agent_load;
mod audit;
mod child;
mod phase;
mod probe;
mod registrations;
mod relay;
mod ssh;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use sha2::Digest as _;
use tucdesk_auth::password::PasswordHasher;
use tucdesk_auth::secrets::Kek;
use tucdesk_auth::{Auth, AuthConfig, Backends};
use tucdesk_crypto::{DeviceProof, DeviceProofContext, Identity};
use tucdesk_svc::sql::now_ms;

/// Longest run any subcommand accepts.
const MAX_SECONDS: u64 = 300;

/// TucDesk load tools (bounded in time; loopback and in-process only).
#[derive(Debug, Parser)]
#[command(name = "tucdesk-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Access tokens signed and verified per second (one core, no I/O).
    Tokens {
        /// How long to run each half, in seconds.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Refresh-token rotations per second through the auth service on a real database
    /// (a fresh schema in the Postgres test database by default).
    Refresh {
        /// `postgres://…` (a scratch schema is created and dropped) or `sqlite` for a temp file.
        #[arg(long, default_value = "postgres")]
        database: String,
        /// Concurrent clients, each with its own device and refresh family.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Agent registration proofs verified per second on one core, replay check included
    /// (`Rendezvous::verify_registration`), with the replay cache in-process or in Redis.
    Registrations {
        /// Where the replay cache lives (`redis` uses the Postgres/Redis/NATS of this machine).
        #[arg(long, value_enum, default_value = "memory")]
        cache: registrations::Cache,
        /// How long each case is timed, in seconds.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Proofs generated (untimed) per batch.
        #[arg(long, default_value_t = 100_000)]
        proofs: usize,
        /// Verifications in flight in the second Redis case (the first has one).
        #[arg(long, default_value_t = 16)]
        in_flight: usize,
    },
    /// Simulated agents connected to one `tucdesk-rendezvous` process (the release binary next
    /// to this one), each on its own connection: the replica's memory per agent and CPU per
    /// heartbeat.
    AgentLoad {
        /// Agents to enroll and keep connected (at most 20 000).
        #[arg(long, default_value_t = 10_000)]
        agents: usize,
        /// Heartbeat interval the replica announces to agents.
        #[arg(long, default_value = "1s", value_parser = tucdesk_svc::config::parse_duration)]
        heartbeat_interval: Duration,
        /// CPU measurement window with every agent heartbeating, in seconds.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// The WebSocket relay of one `tucdesk-relay` process (the release binary next to this
    /// one), each figure next to a baseline measured the same way in the same run: throughput
    /// and ping-pong round trips for 1 and N sessions, and the node's memory per idle paired
    /// session.
    Relay {
        /// Concurrent sessions of the second throughput and latency cases (at most 5000).
        #[arg(long, default_value_t = 100)]
        sessions: usize,
        /// Measuring window of each case, in seconds (at most 120; each case also warms up 1 s).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Paired sessions held open, with nothing flowing, for the memory figure (at most 5000).
        #[arg(long, default_value_t = 1000)]
        idle_sessions: usize,
        /// Size of each streamed message, in bytes (at most one sealed frame, 65 560).
        #[arg(long, default_value_t = 16 * 1024)]
        message_size: usize,
    },
    /// Interactive sessions of TucDesk (`tucdesk connect` through a `tucdesk-standalone`
    /// stack to a `tucdesk-agent`, the release binaries next to this one) against OpenSSH
    /// (`ssh -tt` to a throwaway `sshd`; needs `apt-get install openssh-server
    /// openssh-client`), measured the same way in the same run on loopback: session setup,
    /// keystroke echo round trip, output throughput.
    Ssh {
        /// Session setups timed per client (at most 100), after one warm-up each.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Keystrokes timed per client (at most 5000).
        #[arg(long, default_value_t = 300)]
        samples: usize,
        /// Output streamed per client, in MB of base64 lines (at most 100).
        #[arg(long, default_value_t = 100)]
        file_mb: u64,
        /// Times each client streams that output (at most 10); the median counts.
        #[arg(long, default_value_t = 3)]
        streams: usize,
        /// Run both remote shells with HOME set to an empty directory, so that neither reads
        /// the user's rc files (setup then measures the session, not the shell's start-up).
        #[arg(long)]
        lean_shell: bool,
        /// Paths TucDesk is measured over, each as its own client beside ssh, comma
        /// separated: direct, turn (starts the stack with coturn), ws.
        #[arg(long, value_delimiter = ',', default_value = "direct,ws", value_parser = ssh::SessionPath::parse)]
        paths: Vec<ssh::SessionPath>,
    },
    /// Audit log entries appended per second through the audit service's append path
    /// (`Audit::append_deliveries`: hash, Ed25519 signature, Merkle accumulator, checkpoints,
    /// one transaction per batch) on Postgres (a scratch schema in the test database) and
    /// SQLite (a temp file) at batch sizes 1, 100 and 1000; then entries per second of the
    /// offline export verifier (`verify_export`).
    Audit {
        /// Most entries appended per cell at batch sizes 100 and 1000 (batch 1: a tenth).
        #[arg(long, default_value_t = 20_000)]
        entries: usize,
        /// Most seconds per cell; a cell stops at whichever limit comes first.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Entries in the export that is verified (with a checkpoint every 10 000).
        #[arg(long, default_value_t = 100_000)]
        export_entries: usize,
        /// Which databases to measure.
        #[arg(long, value_enum, default_value = "both")]
        database: audit::Databases,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Tokens { seconds } => tokens(bounded(seconds)?),
        Command::Refresh {
            database,
            concurrency,
            seconds,
        } => refresh(&database, concurrency.clamp(1, 64), bounded(seconds)?).await,
        Command::Registrations {
            cache,
            seconds,
            proofs,
            in_flight,
        } => {
            registrations::run(registrations::Options {
                cache,
                duration: bounded(seconds)?,
                proofs,
                in_flight,
            })
            .await
        }
        Command::AgentLoad {
            agents,
            heartbeat_interval,
            seconds,
        } => {
            let options = agent_load::Options {
                agents,
                heartbeat_interval,
                window: bounded(seconds)?,
            };
            interruptible(agent_load::run(options)).await
        }
        Command::Relay {
            sessions,
            seconds,
            idle_sessions,
            message_size,
        } => {
            interruptible(relay::run(relay::Options {
                sessions,
                window: Duration::from_secs(seconds),
                idle_sessions,
                message_size,
            }))
            .await
        }
        Command::Ssh {
            runs,
            samples,
            file_mb,
            streams,
            lean_shell,
            paths,
        } => {
            interruptible(ssh::run(ssh::Options {
                runs,
                samples,
                file_mb,
                streams,
                lean_shell,
                paths,
            }))
            .await
        }
        Command::Audit {
            entries,
            seconds,
            export_entries,
            database,
        } => {
            interruptible(audit::run(audit::Options {
                databases: database,
                entries,
                limit: bounded(seconds)?,
                export_entries,
            }))
            .await
        }
    }
}

/// Runs `run` until it ends or ctrl-c: dropping it then kills the service child process (its
/// guard's Drop).
async fn interruptible(run: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::select! {
        result = run => result,
        interrupted = tokio::signal::ctrl_c() => {
            interrupted?;
            bail!("interrupted");
        }
    }
}

fn bounded(seconds: u64) -> anyhow::Result<Duration> {
    if seconds == 0 || seconds > MAX_SECONDS {
        bail!("--seconds must be between 1 and {MAX_SECONDS}");
    }
    Ok(Duration::from_secs(seconds))
}

fn tokens(duration: Duration) -> anyhow::Result<()> {
    let key = Identity::generate()?;
    let public = key.public_key();
    let issuer = tucdesk_token::TokenIssuer::new("https://auth.bench", "k1", key)?;
    let now = tucdesk_token::unix_now();
    let claims = tucdesk_token::AccessClaims {
        iss: "https://auth.bench".into(),
        sub: "0193a8c4-0000-7000-8000-000000000001".into(),
        aud: tucdesk_token::Audience::One("tucdesk".into()),
        team_id: "0193a8c4-0000-7000-8000-000000000002".into(),
        email: Some("operator@acme.example".into()),
        role: tucdesk_token::Role::Operator,
        iat: now,
        exp: now + 900,
        nbf: None,
        jti: tucdesk_token::new_jti()?,
        cnf: Some(tucdesk_token::Cnf::jkt(public.jwk_thumbprint())),
        client_id: None,
        scp: None,
        kinds: None,
    };
    let (issued, token) = rate(duration, || issuer.issue_access(&claims))?;
    let verifier = tucdesk_token::TokenVerifier::new(
        tucdesk_token::KeySet::from_keys([("k1".to_owned(), public)])?,
        "https://auth.bench",
        "tucdesk",
    );
    let (verified, _) = rate(duration, || {
        verifier.verify_access(&token, now, tucdesk_token::RequireCnf::No)
    })?;
    println!("access tokens signed:   {issued:>10.0} /s");
    println!("access tokens verified: {verified:>10.0} /s");
    Ok(())
}

/// Calls `f` repeatedly for `duration`; returns calls per second and the last result.
fn rate<T, E: Into<anyhow::Error>>(
    duration: Duration,
    mut f: impl FnMut() -> Result<T, E>,
) -> anyhow::Result<(f64, T)> {
    let start = Instant::now();
    let mut count = 0u64;
    let mut last = f().map_err(Into::into)?;
    while start.elapsed() < duration {
        last = f().map_err(Into::into)?;
        count += 1;
    }
    Ok((count as f64 / start.elapsed().as_secs_f64(), last))
}

async fn refresh(database: &str, concurrency: usize, duration: Duration) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("tucdesk-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (db, pg) = if database == "sqlite" {
        (tucdesk_svc::testing::sqlite_in(&dir).await?, None)
    } else {
        let pg = tucdesk_svc::testing::TestPostgres::new()
            .await
            .context("connecting to the Postgres test database (TUCDESK_TEST_POSTGRES_URL)")?;
        (pg.db.clone(), Some(pg))
    };
    db.migrate(tucdesk_auth::service::MIGRATIONS).await?;
    let config = AuthConfig {
        database_url: database.into(),
        bus_url: "memory://".into(),
        cache_url: "memory://".into(),
        grpc_addr: "127.0.0.1:0".parse()?,
        http_addr: "127.0.0.1:0".parse()?,
        issuer: "https://auth.bench".into(),
        audience: "tucdesk".into(),
        access_ttl: Duration::from_secs(900),
        refresh_lifetime: Duration::from_secs(86_400),
        session_ttl: Duration::from_secs(300),
        kek: None,
        key_dir: dir.join("keys"),
        service_keys: Vec::new(),
    };
    let backends = Backends {
        db: db.clone(),
        bus: Arc::new(tucdesk_svc::bus::MemoryBus::new()),
        replay: Arc::new(tucdesk_svc::cache::MemoryReplayCache::new(10_000_000)),
        limiter: Arc::new(tucdesk_svc::ratelimit::MemoryRateLimiter::new(100_000)),
    };
    let auth = Auth::new(
        config,
        backends,
        Kek::generate()?,
        PasswordHasher::insecure_fast_for_tests(),
    )
    .await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let publisher = tokio::spawn(auth.outbox().clone().run(shutdown.clone()));
    let done = auth.bootstrap("Bench", "bench@acme.example").await?;
    let password = "a long benchmark password";
    auth.accept_invite(done.setup_token.as_str(), password.to_owned().into())
        .await?;

    let deadline = Instant::now() + duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let auth = auth.clone();
        workers.push(tokio::spawn(async move {
            let device = Identity::generate()?;
            let mut token = first_refresh_token(&auth, &device, password).await?;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let proof = refresh_proof(&device, &token)?;
                let issued = auth.refresh(&token, Some(&proof)).await?;
                latencies.push(started.elapsed());
                token = issued.refresh.token.to_string();
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    shutdown.cancel();
    publisher.await?;
    latencies.sort();
    let per_second = latencies.len() as f64 / duration.as_secs_f64();
    let pct = |p: f64| {
        let index = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(index).copied().unwrap_or_default()
    };
    println!(
        "refresh rotations ({}, {concurrency} clients): {per_second:.0} /s, p50 {:?}, p99 {:?}, n = {}",
        if pg.is_some() { "postgres" } else { "sqlite" },
        pct(0.50),
        pct(0.99),
        latencies.len()
    );
    if let Some(pg) = pg {
        pg.cleanup().await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn first_refresh_token(
    auth: &Auth,
    device: &Identity,
    password: &str,
) -> anyhow::Result<String> {
    let (challenge, _) = auth.begin_device_binding()?;
    let email = "bench@acme.example";
    let ctx = DeviceProofContext {
        method: tucdesk_auth::login::LOGIN_METHOD,
        target: email,
        session_id: "",
        binding: b"",
        challenge: &challenge,
    };
    let request = tucdesk_proto::v1::LoginRequest {
        protocol_version: tucdesk_proto::PROTOCOL_VERSION,
        email: email.into(),
        password: password.into(),
        totp_code: String::new(),
        device_proof: Some(to_wire(
            &DeviceProof::create(device, &ctx, now())?,
            &challenge,
        )),
        client: None,
    };
    match auth.login(&request, None).await? {
        tucdesk_auth::login::LoginOutcome::Tokens(tokens) => Ok(tokens.refresh.token.to_string()),
        tucdesk_auth::login::LoginOutcome::TotpRequired => bail!("bench user has TOTP"),
    }
}

fn refresh_proof(device: &Identity, token: &str) -> anyhow::Result<tucdesk_proto::v1::DeviceProof> {
    let binding = sha2::Sha256::digest(token.as_bytes());
    let ctx = DeviceProofContext {
        method: tucdesk_auth::session::REFRESH_METHOD,
        target: "",
        session_id: "",
        binding: &binding,
        challenge: b"",
    };
    Ok(to_wire(&DeviceProof::create(device, &ctx, now())?, b""))
}

fn to_wire(proof: &DeviceProof, challenge: &[u8]) -> tucdesk_proto::v1::DeviceProof {
    tucdesk_proto::v1::DeviceProof {
        public_key: proof.public_key.to_bytes().to_vec(),
        timestamp_ms: proof.timestamp_ms,
        nonce: proof.nonce.clone(),
        signature: proof.signature.to_bytes().to_vec(),
        challenge: challenge.to_vec(),
    }
}

fn now() -> u64 {
    u64::try_from(now_ms()).unwrap_or(0)
}
