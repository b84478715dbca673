//! Outbox conformance: every SQL engine with every bus, including the bus going down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tucdesk_svc::bus::{
    Bus, BusError, ConsumerSpec, DurableConsumer, Headers, MemoryBus, Message, NatsBus, PublishAck,
    StreamSpec, Subscription,
};
use tucdesk_svc::outbox::{self, OutboxEvent, OutboxPublisher, PassOutcome};
use tucdesk_svc::sql::Database;
use tucdesk_svc::testing::{TestPostgres, nats_url, sqlite_in, unique_name};

const WAIT: Duration = Duration::from_secs(5);

/// Wraps a real bus; `allow` says how many more stream publishes succeed before it
/// "goes down" (negative: unlimited).
#[derive(Debug)]
struct FlakyBus {
    inner: Arc<dyn Bus>,
    allow: AtomicI64,
}

impl FlakyBus {
    fn set_allow(&self, n: i64) {
        self.allow.store(n, Ordering::SeqCst);
    }
}

#[async_trait]
impl Bus for FlakyBus {
    async fn publish(&self, s: &str, h: Headers, p: Bytes) -> Result<(), BusError> {
        self.inner.publish(s, h, p).await
    }
    async fn subscribe(&self, s: &str) -> Result<Subscription, BusError> {
        self.inner.subscribe(s).await
    }
    async fn request(
        &self,
        s: &str,
        h: Headers,
        p: Bytes,
        t: Duration,
    ) -> Result<Message, BusError> {
        self.inner.request(s, h, p, t).await
    }
    async fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), BusError> {
        self.inner.ensure_stream(spec).await
    }
    async fn stream_publish(
        &self,
        subject: &str,
        id: &str,
        h: Headers,
        p: Bytes,
    ) -> Result<PublishAck, BusError> {
        let allowed = self
            .allow
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                n if n < 0 => Some(n),
                0 => None,
                n => Some(n - 1),
            })
            .is_ok();
        if !allowed {
            return Err(BusError::Backend("simulated outage".into()));
        }
        self.inner.stream_publish(subject, id, h, p).await
    }
    async fn durable_consumer(
        &self,
        spec: &ConsumerSpec,
    ) -> Result<Box<dyn DurableConsumer>, BusError> {
        self.inner.durable_consumer(spec).await
    }
    async fn ping(&self) -> Result<(), BusError> {
        self.inner.ping().await
    }
}

struct Fixture {
    db: Database,
    bus: Arc<FlakyBus>,
    prefix: String,
    consumer: ConsumerSpec,
    cleanup: Vec<Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send>>,
}

enum Sql {
    Postgres,
    Sqlite,
}
enum BusKind {
    Memory,
    Nats,
}

impl Fixture {
    async fn new(sql: Sql, bus_kind: BusKind, dir: &std::path::Path) -> Self {
        let mut cleanup: Vec<Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send>> =
            Vec::new();
        let db = match sql {
            Sql::Sqlite => {
                let db = sqlite_in(dir).await.unwrap();
                db.migrate(NO_SERVICE_TABLES).await.unwrap();
                db
            }
            Sql::Postgres => {
                let pg = TestPostgres::migrated(NO_SERVICE_TABLES).await.unwrap();
                let db = pg.db.clone();
                cleanup.push(Box::new(move || {
                    Box::pin(async move { pg.cleanup().await.unwrap() })
                }));
                db
            }
        };
        let inner: Arc<dyn Bus> = match bus_kind {
            BusKind::Memory => Arc::new(MemoryBus::new()),
            BusKind::Nats => Arc::new(NatsBus::connect(&nats_url(), "outbox-test").await.unwrap()),
        };
        let prefix = unique_name("ob");
        let stream = unique_name("OUTBOX");
        let mut spec = StreamSpec::new(&stream, vec![format!("{prefix}.>")]);
        spec.max_age = Duration::from_secs(600);
        inner.ensure_stream(&spec).await.unwrap();
        if let BusKind::Nats = bus_kind {
            let nats = NatsBus::connect(&nats_url(), "outbox-test-cleanup")
                .await
                .unwrap();
            let stream = stream.clone();
            cleanup.push(Box::new(move || {
                Box::pin(async move { nats.delete_stream(&stream).await.unwrap() })
            }));
        }
        Self {
            db,
            bus: Arc::new(FlakyBus {
                inner,
                allow: AtomicI64::new(-1),
            }),
            prefix,
            consumer: ConsumerSpec::new(&stream, "audit"),
            cleanup,
        }
    }

    fn publisher(&self) -> OutboxPublisher {
        OutboxPublisher::new(self.db.clone(), self.bus.clone())
    }

    fn event(&self, id: &str) -> OutboxEvent {
        let mut headers = Headers::new();
        headers.insert("traceparent".into(), format!("00-{id}"));
        OutboxEvent {
            event_id: format!("{}-{id}", self.prefix),
            team_id: "team-1".into(),
            subject: format!("{}.team-1.test", self.prefix),
            headers,
            payload: id.as_bytes().to_vec(),
        }
    }

    async fn enqueue(&self, ids: &[&str]) {
        let mut tx = self.db.begin().await.unwrap();
        for id in ids {
            outbox::enqueue(&mut tx, &self.event(id)).await.unwrap();
        }
        tx.commit().await.unwrap();
    }

    /// Everything the stream delivers to the audit consumer, acked, as payload strings.
    async fn drain(&self, consumer: &mut Box<dyn DurableConsumer>) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let batch = consumer
                .fetch(50, Duration::from_millis(700))
                .await
                .unwrap();
            if batch.is_empty() {
                return seen;
            }
            for delivery in batch {
                assert_eq!(
                    delivery.dedup_id.as_deref().unwrap(),
                    format!(
                        "{}-{}",
                        self.prefix,
                        String::from_utf8_lossy(&delivery.payload)
                    )
                );
                assert!(delivery.headers.contains_key("traceparent"));
                seen.push(String::from_utf8(delivery.payload.to_vec()).unwrap());
                delivery.ack().await.unwrap();
            }
        }
    }

    async fn finish(self) {
        for job in self.cleanup {
            job().await;
        }
    }
}

// The stand-in service schema of the SQL suite; the outbox itself comes from the kit.
static NONE_PG: sqlx::migrate::Migrator = sqlx::migrate!("tests/migrations/postgres");
static NONE_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("tests/migrations/sqlite");
const NO_SERVICE_TABLES: tucdesk_svc::sql::Migrations = tucdesk_svc::sql::Migrations {
    postgres: &NONE_PG,
    sqlite: &NONE_SQLITE,
};

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{i:04}")).collect()
}

async fn committed_events_arrive_in_order_once(f: &Fixture) {
    let mut consumer = f.bus.durable_consumer(&f.consumer).await.unwrap();
    // More than one publishing batch, to cross batch boundaries.
    let first = names(0..150);
    f.enqueue(&first.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let mut tx = f.db.begin().await.unwrap();
    outbox::enqueue(&mut tx, &f.event("rolled-back"))
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    let outcome = f.publisher().publish_pending().await.unwrap();
    assert_eq!(
        outcome,
        PassOutcome {
            published: 150,
            stalled: false
        }
    );
    assert_eq!(f.drain(&mut consumer).await, first);
    let stats = f.publisher().stats().await.unwrap();
    assert_eq!((stats.pending, stats.published), (0, 150));
}

async fn nothing_is_lost_or_reordered_while_the_bus_is_down(f: &Fixture) {
    let mut consumer = f.bus.durable_consumer(&f.consumer).await.unwrap();
    let publisher = f.publisher();
    f.enqueue(&["a1", "a2", "a3", "a4"]).await;

    // The bus accepts two publishes, then goes down.
    f.bus.set_allow(2);
    let outcome = publisher.publish_pending().await.unwrap();
    assert_eq!(
        outcome,
        PassOutcome {
            published: 2,
            stalled: true
        }
    );
    f.enqueue(&["a5"]).await;
    let outcome = publisher.publish_pending().await.unwrap();
    assert_eq!(
        outcome,
        PassOutcome {
            published: 0,
            stalled: true
        }
    );
    assert_eq!(publisher.stats().await.unwrap().pending, 3);

    f.bus.set_allow(-1);
    let outcome = publisher.publish_pending().await.unwrap();
    assert_eq!(
        outcome,
        PassOutcome {
            published: 3,
            stalled: false
        }
    );
    assert_eq!(f.drain(&mut consumer).await, ["a1", "a2", "a3", "a4", "a5"]);
}

async fn a_republished_row_is_deduplicated(f: &Fixture) {
    let mut consumer = f.bus.durable_consumer(&f.consumer).await.unwrap();
    f.enqueue(&["b1"]).await;
    // The publisher crashed after the stream stored b1 but before the row was marked.
    let event = f.event("b1");
    f.bus
        .stream_publish(
            &event.subject,
            &event.event_id,
            event.headers.clone(),
            Bytes::from(event.payload),
        )
        .await
        .unwrap();
    f.publisher().publish_pending().await.unwrap();
    assert_eq!(f.drain(&mut consumer).await, ["b1"]);
}

async fn the_publisher_task_wakes_on_commit_and_stops_on_shutdown(f: &Fixture) {
    let mut consumer = f.bus.durable_consumer(&f.consumer).await.unwrap();
    let publisher = f.publisher();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(publisher.clone().run(shutdown.clone()));
    f.enqueue(&["c1"]).await;
    publisher.wake();
    let batch = consumer.fetch(1, WAIT).await.unwrap();
    assert_eq!(batch.len(), 1);
    batch.into_iter().next().unwrap().ack().await.unwrap();
    shutdown.cancel();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

async fn published_rows_are_cleaned_up(f: &Fixture) {
    let publisher = f.publisher();
    let before = publisher.stats().await.unwrap();
    assert!(before.published > 0);
    let deleted = publisher.delete_published_before(i64::MAX).await.unwrap();
    assert_eq!(deleted, u64::try_from(before.published).unwrap());
    assert_eq!(publisher.stats().await.unwrap().published, 0);
}

async fn run_suite(sql: Sql, bus: BusKind) {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::new(sql, bus, dir.path()).await;
    committed_events_arrive_in_order_once(&f).await;
    nothing_is_lost_or_reordered_while_the_bus_is_down(&f).await;
    a_republished_row_is_deduplicated(&f).await;
    the_publisher_task_wakes_on_commit_and_stops_on_shutdown(&f).await;
    published_rows_are_cleaned_up(&f).await;
    f.finish().await;
}

#[tokio::test]
async fn sqlite_with_memory_bus() {
    run_suite(Sql::Sqlite, BusKind::Memory).await;
}

#[tokio::test]
async fn sqlite_with_nats() {
    run_suite(Sql::Sqlite, BusKind::Nats).await;
}

#[tokio::test]
async fn postgres_with_memory_bus() {
    run_suite(Sql::Postgres, BusKind::Memory).await;
}

#[tokio::test]
async fn postgres_with_nats() {
    run_suite(Sql::Postgres, BusKind::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_on_postgres_keep_order_and_publish_once() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::new(Sql::Postgres, BusKind::Nats, dir.path()).await;
    let mut consumer = f.bus.durable_consumer(&f.consumer).await.unwrap();
    let ids = names(0..120);
    for chunk in ids.chunks(10) {
        f.enqueue(&chunk.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
    }
    let (a, b) = (f.publisher(), f.publisher());
    let (ra, rb) = tokio::join!(
        async {
            let mut n = 0;
            while a.stats().await.unwrap().pending > 0 {
                n += a.publish_pending().await.unwrap().published;
            }
            n
        },
        async {
            let mut n = 0;
            while b.stats().await.unwrap().pending > 0 {
                n += b.publish_pending().await.unwrap().published;
            }
            n
        }
    );
    assert_eq!(ra + rb, 120, "every row marked published exactly once");
    assert_eq!(f.drain(&mut consumer).await, ids);
    f.finish().await;
}
