//! Audit delivery through a NATS outage: auth keeps acting while its NATS server is down (its
//! events wait in its Postgres outbox), and once NATS returns every event reaches the audit
//! service's chain exactly once. Runs on a NATS server of its own (JetStream on disk), so
//! stopping it touches no other test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tucdesk_audit::store::entries::{self, EntryFilter};
use tucdesk_audit::{Audit, AuditConfig, AuditKey, Backends, MIGRATIONS};
use tucdesk_svc::sql::Database;
use tucdesk_svc::testing::TestPostgres;
use tucdesk_testkit::{Backend, TestAuth, eventually};

const NATS_SERVER: &str = "/usr/sbin/nats-server";
const SETTLE: Duration = Duration::from_secs(30);

/// A NATS server with JetStream on a store directory that survives restarts.
struct PrivateNats {
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateNats {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut nats = Self {
            port,
            store: tempfile::tempdir().unwrap(),
            child: None,
        };
        nats.resume();
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn resume(&mut self) {
        let child = Command::new(NATS_SERVER)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (the CI installs it)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn event_ids_in_outbox(db: &Database, team: &str) -> BTreeSet<String> {
    let Database::Postgres(pool) = db else {
        panic!("the outage test runs on Postgres")
    };
    let rows: Vec<(String,)> = sqlx::query_as("SELECT event_id FROM outbox WHERE team_id = $1")
        .bind(team)
        .fetch_all(pool)
        .await
        .unwrap();
    rows.into_iter().map(|(id,)| id).collect()
}

async fn logged(db: &Database, team: &str) -> Vec<tucdesk_crypto::audit::Entry> {
    entries::query(db, team, &EntryFilter::default(), 100_000, false)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.into_entry().unwrap().0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_after_a_nats_outage() {
    let mut nats = PrivateNats::start();
    let bus = tucdesk_svc::bus::connect(&nats.url(), "audit-outage-test")
        .await
        .unwrap();
    let auth = TestAuth::start_on_bus(Backend::Real, bus.clone())
        .await
        .unwrap();

    let audit_pg = TestPostgres::new().await.unwrap();
    audit_pg.db.migrate(MIGRATIONS).await.unwrap();
    let mut config = AuditConfig::embedded(&audit_pg.url, "unused://");
    config.ack_wait = Duration::from_secs(2);
    let audit = Audit::new(
        config,
        Backends {
            db: audit_pg.db.clone(),
            bus: bus.clone(),
        },
        AuditKey::generate().unwrap(),
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let ingest = audit.open_ingest().await.unwrap();
    let running = tokio::spawn(ingest.run(stop.clone()));

    // Before the outage: a team, its owner's first login.
    let owner = auth.new_team("owner@outage.example").await.unwrap();
    let team = owner.team_id.clone();
    let before = event_ids_in_outbox(auth.auth.db(), &team).await.len();
    assert!(
        eventually(SETTLE, || async {
            logged(&audit_pg.db, &team).await.len() >= before
        })
        .await,
        "events before the outage did not arrive"
    );

    // NATS goes away; auth keeps working and its events wait in the outbox.
    nats.stop();
    for i in 0..3 {
        auth.add_user(
            &owner,
            &format!("user{i}@outage.example"),
            tucdesk_proto::v1::Role::Operator,
        )
        .await
        .unwrap();
    }
    let during = event_ids_in_outbox(auth.auth.db(), &team).await;
    assert!(
        during.len() > before,
        "auth stopped acting while NATS was down"
    );

    // NATS comes back (same JetStream store): everything arrives, nothing twice.
    nats.resume();
    let expected: BTreeSet<String> = during;
    let arrived = eventually(SETTLE, || async {
        logged(&audit_pg.db, &team).await.len() >= expected.len()
    })
    .await;
    let chain = logged(&audit_pg.db, &team).await;
    assert!(
        arrived,
        "only {} of {} events arrived",
        chain.len(),
        expected.len()
    );
    let ids: Vec<String> = chain.iter().map(|e| e.event.event_id.clone()).collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "an event was appended twice");
    assert_eq!(
        unique, expected,
        "the log holds exactly the outbox's events"
    );
    tucdesk_crypto::audit::verify_chain(&chain, &audit.key().verifying_key()).unwrap();

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
    drop(auth);
    let _ = audit_pg.cleanup().await;
    let _: Arc<dyn tucdesk_svc::bus::Bus> = bus;
}
