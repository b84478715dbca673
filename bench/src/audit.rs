//! `audit`: entries appended per second through the audit service's own append path, and
//! entries verified per second by the offline export verifier.
//!
//! Append: each cell is a fresh database (a scratch schema in the Postgres test database,
//! dropped afterwards, or a SQLite file in a temporary directory) and a fresh [`Audit`] on an
//! in-process bus. The events of one team are published to the bus's stream and fetched in
//! batches of the cell's size before the clock starts; the timed part is
//! [`Audit::append_deliveries`] on each batch, the call the ingest loop makes between fetch
//! and ack: decode and validate every event, look for its id in the log, chain hash and
//! Ed25519 signature (`ChainBuilder`), row insert, Merkle accumulator, a signed checkpoint
//! every `checkpoint_every` (1000) entries, the head update, and the commit, one transaction
//! per batch. Fetching from the in-process bus and acking are not timed.
//!
//! Export: [`export`] builds a signed chain with checkpoints, as the service exports it, and
//! times `tucdesk_crypto::audit::export::verify_export` over it.

mod export;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use prost::Message as _;
use tucdesk_audit::store::heads;
use tucdesk_audit::{Audit, AuditConfig, AuditKey, Backends, MIGRATIONS};
use tucdesk_proto::v1 as pb;
use tucdesk_svc::bus::{Bus, Delivery, Headers, MemoryBus, StreamSpec};
use tucdesk_svc::sql::{Database, PoolSettings};
use tucdesk_svc::testing::TestPostgres;

use crate::probe::{self, Proc};

/// Batch sizes measured: one event per transaction, the service's default, its maximum.
const BATCH_SIZES: [usize; 3] = [1, 100, tucdesk_audit::config::MAX_BATCH_SIZE];
/// At batch size 1 a cell appends this fraction of `--entries` (one commit per entry).
const SINGLE_FRACTION: usize = 10;
/// Most entries per cell.
pub const MAX_ENTRIES: usize = 200_000;
/// Subjects of the bench's stream.
const SUBJECTS: &str = "bench-audit";
/// Sequential `SELECT 1` round trips timed per database (what one statement costs at least).
const ROUND_TRIPS: usize = 2000;
/// Fetch wait on the in-process bus (everything is already published).
const FETCH_WAIT: Duration = Duration::from_millis(100);
/// Command name of the Postgres server's processes, whose CPU is read from `/proc`.
const POSTGRES_COMM: &str = "postgres";

/// Which databases to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Databases {
    Both,
    Postgres,
    Sqlite,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub databases: Databases,
    /// Most entries per cell (batch 1: a [`SINGLE_FRACTION`] of it).
    pub entries: usize,
    /// Most time per cell.
    pub limit: Duration,
    pub export_entries: usize,
}

/// The database of one cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Postgres,
    Sqlite,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "Postgres",
            Engine::Sqlite => "SQLite",
        }
    }
}

/// What one cell measured.
#[derive(Debug)]
struct Cell {
    engine: Engine,
    batch: usize,
    appended: u64,
    checkpoints: u64,
    wall: Duration,
    /// Time of each `append_deliveries` call, sorted.
    batches: Vec<Duration>,
    /// CPU of this process while timed, in seconds.
    cpu: f64,
    /// CPU of the machine's Postgres processes while timed (Postgres cells).
    postgres_cpu: Option<f64>,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    if options.entries < 1000 || options.entries > MAX_ENTRIES {
        bail!("--entries must be between 1000 and {MAX_ENTRIES}");
    }
    export::check(options.export_entries)?;
    let engines: &[Engine] = match options.databases {
        Databases::Both => &[Engine::Postgres, Engine::Sqlite],
        Databases::Postgres => &[Engine::Postgres],
        Databases::Sqlite => &[Engine::Sqlite],
    };
    println!(
        "audit append: Audit::append_deliveries (decode, id lookup, hash, Ed25519, insert, \
         Merkle, checkpoint every 1000, commit); at most {} entries or {:?} per cell \
         (batch 1: {})",
        options.entries,
        options.limit,
        options.entries / SINGLE_FRACTION
    );
    let mut cells = Vec::new();
    for &engine in engines {
        for batch in BATCH_SIZES {
            let entries = if batch == 1 {
                options.entries / SINGLE_FRACTION
            } else {
                options.entries
            };
            let cell = on_fresh_database(engine, |db, url| {
                measure(db, url, engine, batch, entries, options.limit)
            })
            .await?;
            print_cell(&cell);
            cells.push(cell);
        }
        let trip = on_fresh_database(engine, |db, _| round_trip(db)).await?;
        println!(
            "  {} round trip (SELECT 1, one at a time): p50 {:.0} µs",
            engine.name(),
            trip.as_secs_f64() * 1e6
        );
    }
    export::run(options.export_entries)?;
    Ok(())
}

/// Runs `work` on a new database of `engine` and removes it afterwards, whatever `work`
/// returned. (Interrupted with ctrl-c, a Postgres schema is left for `TestPostgres`'s sweep of
/// stale schemas.)
async fn on_fresh_database<T, F, Fut>(engine: Engine, work: F) -> anyhow::Result<T>
where
    F: FnOnce(Database, String) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    match engine {
        Engine::Postgres => {
            let pg = TestPostgres::new()
                .await
                .context("connecting to the Postgres test database (TUCDESK_TEST_POSTGRES_URL)")?;
            let result = work(pg.db.clone(), pg.url.clone()).await;
            pg.cleanup().await.context("dropping the scratch schema")?;
            result
        }
        Engine::Sqlite => {
            let dir = tempfile::tempdir().context("creating a temporary directory")?;
            let url = format!("sqlite://{}", dir.path().join("audit.db").display());
            let db = Database::connect(&url, &PoolSettings::default()).await?;
            let result = work(db.clone(), url).await;
            db.close().await;
            result
        }
    }
}

async fn measure(
    db: Database,
    url: String,
    engine: Engine,
    batch: usize,
    entries: usize,
    limit: Duration,
) -> anyhow::Result<Cell> {
    db.migrate(MIGRATIONS).await?;
    let bus = Arc::new(MemoryBus::new());
    let mut config = AuditConfig::embedded(&url, "memory://");
    config.stream = StreamSpec::new("AUDIT_BENCH", vec![format!("{SUBJECTS}.>")]);
    config.consumer_name = "bench".into();
    config.batch_size = batch;
    // Nothing is acknowledged while timing: no redelivery may start meanwhile.
    config.ack_wait = tucdesk_audit::config::MAX_ACK_WAIT;
    let backends = Backends {
        db: db.clone(),
        bus: bus.clone(),
    };
    let audit = Audit::new(config, backends, AuditKey::generate()?).await?;

    let team = format!("bench-team-{}", uuid::Uuid::now_v7().simple());
    let batches = published_batches(&audit, bus.as_ref(), &team, batch, entries).await?;

    let postgres = engine == Engine::Postgres;
    let (cpu_before, pg_before) = (probe::cpu_seconds(Proc::Current)?, postgres_cpu(postgres)?);
    let started = Instant::now();
    let (mut appended, mut checkpoints, mut times) = (0, 0, Vec::with_capacity(batches.len()));
    for deliveries in &batches {
        if started.elapsed() >= limit {
            break;
        }
        let call = Instant::now();
        let outcome = audit.append_deliveries(deliveries).await?;
        times.push(call.elapsed());
        if outcome.appended != deliveries.len() as u64 {
            bail!("a batch of {} appended {outcome:?}", deliveries.len());
        }
        appended += outcome.appended;
        checkpoints += outcome.checkpoints;
    }
    let wall = started.elapsed();
    let cpu = probe::cpu_seconds(Proc::Current)? - cpu_before;
    let postgres_cpu = match (pg_before, postgres_cpu(postgres)?) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    let size = heads::load(&db, &team)
        .await?
        .map_or(0, |head| head.tree_size);
    if size != appended {
        bail!("the head says {size} entries, {appended} were appended");
    }
    times.sort();
    Ok(Cell {
        engine,
        batch,
        appended,
        checkpoints,
        wall,
        batches: times,
        cpu,
        postgres_cpu,
    })
}

/// Publishes `entries` events of `team` to the service's stream, as the outbox publisher
/// does, and fetches them back through the service's consumer in batches of `batch` (the
/// deliveries stay unacknowledged).
async fn published_batches(
    audit: &Audit,
    bus: &dyn Bus,
    team: &str,
    batch: usize,
    entries: usize,
) -> anyhow::Result<Vec<Vec<Delivery>>> {
    for i in 0..entries {
        let event = wire_event(team, i)?;
        bus.stream_publish(
            &format!("{SUBJECTS}.{team}.{}", event.action),
            &event.event_id,
            Headers::new(),
            Bytes::from(event.encode_to_vec()),
        )
        .await?;
    }
    let mut spec = audit.consumer_spec();
    spec.max_ack_pending = entries;
    let mut consumer = bus.durable_consumer(&spec).await?;
    let mut batches = Vec::new();
    let mut fetched = 0;
    while fetched < entries {
        let deliveries = consumer.fetch(batch, FETCH_WAIT).await?;
        if deliveries.is_empty() {
            bail!("the stream gave back {fetched} of {entries} events");
        }
        fetched += deliveries.len();
        batches.push(deliveries);
    }
    Ok(batches)
}

/// A valid event of the shape services emit (`exec.command` with a small context).
fn wire_event(team: &str, i: usize) -> anyhow::Result<pb::AuditEvent> {
    Ok(pb::AuditEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        team_id: team.to_owned(),
        actor: Some(pb::Actor {
            kind: pb::ActorKind::User as i32,
            id: format!("0193a8c4-0000-7000-8000-{:012x}", i % 50),
            display: "operator@acme.example".into(),
        }),
        action: "exec.command".into(),
        target: format!("agent:{:08X}", i % 1000),
        occurred_at_ms: u64::try_from(tucdesk_svc::sql::now_ms())?,
        session_id: format!("0193a8c4-0000-7000-9000-{:012x}", i / 20),
        policy_result: None,
        context_json: format!(
            r#"{{"outcome":"success","source":"agent","exit_code":0,"argv":["ls","-l","/var/log/{i}"]}}"#
        ),
    })
}

/// CPU seconds used so far by every process named `postgres` on this machine (the server
/// and its backends; the test database is this machine's), when `postgres`.
fn postgres_cpu(postgres: bool) -> anyhow::Result<Option<f64>> {
    if !postgres {
        return Ok(None);
    }
    let mut total = 0.0;
    for pid in probe::processes_named(POSTGRES_COMM)? {
        // A backend that exits between listing and reading is skipped.
        if let Ok(cpu) = probe::cpu_seconds(Proc::Pid(pid)) {
            total += cpu;
        }
    }
    Ok(Some(total))
}

/// Median time of a `SELECT 1` on `db`'s pool, one at a time.
async fn round_trip(db: Database) -> anyhow::Result<Duration> {
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let started = Instant::now();
        db.ping().await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(quantile(&times, 0.5))
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let index = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(index).copied().unwrap_or_default()
}

fn print_cell(cell: &Cell) {
    let n = cell.appended.max(1) as f64;
    let rate = n / cell.wall.as_secs_f64();
    let postgres = cell
        .postgres_cpu
        .map(|cpu| format!(", Postgres CPU {:.0} µs/entry", cpu * 1e6 / n))
        .unwrap_or_default();
    println!(
        "  {:<8} batch {:>4}: {:>6} entries in {:>5.2} s = {:>7.0} entries/s; per batch p50 {:>8.2} ms, \
         p99 {:>8.2} ms; {} checkpoints; bench CPU {:.0} µs/entry{postgres}; wall {:.0} µs/entry",
        cell.engine.name(),
        cell.batch,
        cell.appended,
        cell.wall.as_secs_f64(),
        rate,
        quantile(&cell.batches, 0.5).as_secs_f64() * 1e3,
        quantile(&cell.batches, 0.99).as_secs_f64() * 1e3,
        cell.checkpoints,
        cell.cpu * 1e6 / n,
        cell.wall.as_secs_f64() * 1e6 / n,
    );
}
