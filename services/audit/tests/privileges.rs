//! The least-privilege Postgres role of docs/audit.md ("Database roles") is enough to run the
//! service, and with it even disabling the append-only triggers is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Fixture, event, team};
use tucdesk_audit::store::checkpoints;
use tucdesk_audit::{Audit, Backends};
use tucdesk_crypto::audit::verify_chain;
use tucdesk_svc::sql::{Database, PoolSettings};
use tucdesk_svc::testing::unique_name;
use tucdesk_testkit::Backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_runs_with_select_and_insert_only_and_cannot_touch_history() {
    let f = Fixture::with(Backend::Real, |c| c.checkpoint_every = 3).await;
    let schema = f.schema().unwrap().to_owned();
    let role = unique_name("tucdesk_audit_role_");
    let grants = format!(
        "CREATE ROLE {role} LOGIN; \
         GRANT USAGE ON SCHEMA \"{schema}\" TO {role}; \
         GRANT SELECT, INSERT ON audit_entries, audit_checkpoints, audit_signing_keys, \
               audit_rejected TO {role}; \
         GRANT SELECT, INSERT, UPDATE ON audit_heads TO {role}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON outbox TO {role}; \
         GRANT USAGE ON SEQUENCE outbox_id_seq TO {role};"
    );
    f.exec(&grants).await.unwrap();

    let url = format!("postgres://{role}@127.0.0.1:5432/test?options=-c%20search_path%3D{schema}");
    let limited = Database::connect(&url, &PoolSettings::default())
        .await
        .unwrap();
    let mut config = f.config.clone();
    config.migrate = false;
    let audit = Audit::new(
        config,
        Backends {
            db: limited.clone(),
            bus: f.bus.clone(),
        },
        f.key(),
    )
    .await
    .unwrap();
    let t = team("least");
    for i in 0..4 {
        f.publish(&event(&t, "auth.login", &format!("u{i}"))).await;
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(audit.open_ingest().await.unwrap().run(stop.clone()));
    let chain = f.wait_for(&t, 4).await;
    verify_chain(&chain, &f.key().verifying_key()).unwrap();
    assert!(checkpoints::at(&limited, &t, 3).await.unwrap().is_some());
    assert!(
        audit
            .checkpoint_team(&t, tucdesk_audit::checkpoint::CheckpointTrigger::Export)
            .await
            .unwrap()
            .is_some()
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap();

    for sql in [
        "UPDATE audit_entries SET target = 'x'",
        "DELETE FROM audit_entries",
        "ALTER TABLE audit_entries DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_entries_append_only ON audit_entries",
        "TRUNCATE audit_checkpoints",
    ] {
        let err = tucdesk_svc::on_pool!(&limited, |pool| {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .expect_err(sql);
        let text = err.to_string();
        assert!(
            text.contains("permission denied") || text.contains("must be owner"),
            "{sql}: {text}"
        );
    }
    limited.close().await;
    f.exec(&format!(
        "REASSIGN OWNED BY {role} TO postgres; DROP OWNED BY {role}; DROP ROLE {role};"
    ))
    .await
    .unwrap();
    f.cleanup().await;
}
