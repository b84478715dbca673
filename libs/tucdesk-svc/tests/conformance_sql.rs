//! SQL layer conformance: the same checks against real Postgres and SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tucdesk_svc::on_pool;
use tucdesk_svc::outbox::{self, OutboxEvent};
use tucdesk_svc::sql::{Database, Engine, Migrations, PoolSettings, SqlError};
use tucdesk_svc::testing::{TestPostgres, sqlite_in};

static EMPTY_PG: sqlx::migrate::Migrator = sqlx::migrate!("tests/migrations/postgres");
static EMPTY_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("tests/migrations/sqlite");

/// A stand-in service schema with one table, to check service migrations run beside the kit's.
const SERVICE: Migrations = Migrations {
    postgres: &EMPTY_PG,
    sqlite: &EMPTY_SQLITE,
};

fn event(id: &str) -> OutboxEvent {
    OutboxEvent {
        event_id: id.to_owned(),
        team_id: "team-1".to_owned(),
        subject: "audit.team-1.test".to_owned(),
        headers: Default::default(),
        payload: vec![0, 159, 146, 150, 255],
    }
}

async fn count(db: &Database, table: &str) -> i64 {
    on_pool!(db, |pool| {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(pool)
            .await
            .unwrap()
    })
}

async fn run_suite(db: &Database) {
    db.ping().await.unwrap();
    // Applying the same migrations again is a no-op, as on every restart.
    db.migrate(SERVICE).await.unwrap();
    db.migrate(SERVICE).await.unwrap();
    assert_eq!(count(db, "outbox").await, 0);
    assert_eq!(count(db, "widgets").await, 0);

    // Rolled back: the event never existed.
    let mut tx = db.begin().await.unwrap();
    outbox::enqueue(&mut tx, &event("e-rolled-back"))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(count(db, "outbox").await, 0);

    // Committed together with the state change.
    let mut tx = db.begin().await.unwrap();
    tucdesk_svc::on_tx!(&mut tx, |conn| {
        sqlx::query("INSERT INTO widgets (name, blob, at_ms) VALUES ($1, $2, $3)")
            .bind("w")
            .bind(vec![1u8, 2, 3])
            .bind(i64::MAX)
            .execute(conn)
            .await
            .unwrap()
            .rows_affected()
    });
    outbox::enqueue(&mut tx, &event("e-committed"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(count(db, "outbox").await, 1);

    // The same SQL text with $n placeholders reads back identical values on both engines.
    let (blob, at): (Vec<u8>, i64) = on_pool!(db, |pool| {
        sqlx::query_as("SELECT blob, at_ms FROM widgets WHERE name = $1")
            .bind("w")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(blob, [1, 2, 3]);
    assert_eq!(at, i64::MAX);

    // Event ids are unique: a second insert with the same id fails and rolls back.
    let mut tx = db.begin().await.unwrap();
    assert!(
        outbox::enqueue(&mut tx, &event("e-committed"))
            .await
            .is_err()
    );
    drop(tx);

    // Oversized or malformed events never reach the table.
    let mut tx = db.begin().await.unwrap();
    let mut bad = event("e-bad");
    bad.subject = "not a subject".to_owned();
    assert!(outbox::enqueue(&mut tx, &bad).await.is_err());
    let mut huge = event("e-huge");
    huge.payload = vec![0; tucdesk_svc::bus::MAX_PAYLOAD + 1];
    assert!(outbox::enqueue(&mut tx, &huge).await.is_err());
    let mut long_id = event("");
    long_id.event_id = "x".repeat(200);
    assert!(outbox::enqueue(&mut tx, &long_id).await.is_err());
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn postgres_conforms() {
    let pg = TestPostgres::migrated(SERVICE)
        .await
        .expect("Postgres must be running");
    assert_eq!(pg.db.engine(), Engine::Postgres);
    run_suite(&pg.db).await;
    pg.cleanup().await.unwrap();
}

#[tokio::test]
async fn sqlite_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_in(dir.path()).await.unwrap();
    db.migrate(SERVICE).await.unwrap();
    assert_eq!(db.engine(), Engine::Sqlite);
    run_suite(&db).await;
}

#[tokio::test]
async fn in_memory_sqlite_keeps_one_database() {
    let db = Database::connect_and_migrate("sqlite::memory:", &PoolSettings::default(), SERVICE)
        .await
        .unwrap();
    run_suite(&db).await;
}

#[tokio::test]
async fn unreachable_postgres_is_a_startup_error_naming_the_url() {
    let err = Database::connect(
        "postgres://tucdesk:hunter2@127.0.0.1:1/tucdesk",
        &PoolSettings::default(),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SqlError::Connect { .. }), "{err:?}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("hunter2"), "password leaked: {text}");
}
