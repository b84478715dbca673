//! The log is append-only in the database too, and tampering by someone who can bypass that
//! (a superuser disabling the triggers) is found by chain verification at the exact seq; the
//! service itself refuses to extend a chain whose last entry was changed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Fixture, event, team};
use tucdesk_crypto::audit::{ChainError, ChainFailure, verify_chain};
use tucdesk_testkit::{Backend, on_both_backends};

on_both_backends!(
    updates_and_deletes_on_audit_tables_are_refused_by_the_database,
    superuser_tampering_is_found_at_the_exact_seq,
    a_chain_whose_last_entry_was_changed_is_never_extended,
);

async fn append(f: &Fixture, team: &str, n: usize) {
    for i in 0..n {
        f.publish(&event(team, "auth.login", &format!("user-{i}")))
            .await;
    }
}

async fn updates_and_deletes_on_audit_tables_are_refused_by_the_database(backend: Backend) {
    let f = Fixture::with(backend, |c| c.checkpoint_every = 2).await;
    let t = team("ro");
    append(&f, &t, 4).await;
    let running = f.start().await;
    f.wait_for(&t, 4).await;
    running.stop().await;

    let mut refused = vec![
        format!("UPDATE audit_entries SET target = 'x' WHERE team_id = '{t}' AND seq = 2"),
        format!("DELETE FROM audit_entries WHERE team_id = '{t}' AND seq = 4"),
        "DELETE FROM audit_entries".to_owned(),
        format!("UPDATE audit_checkpoints SET tree_size = 3 WHERE team_id = '{t}'"),
        "DELETE FROM audit_checkpoints".to_owned(),
        "UPDATE audit_signing_keys SET key_id = 'other'".to_owned(),
        "DELETE FROM audit_signing_keys".to_owned(),
    ];
    match backend {
        Backend::Real => {
            refused.push("TRUNCATE audit_entries".to_owned());
            refused.push("TRUNCATE audit_checkpoints".to_owned());
            refused.push(format!(
                "INSERT INTO audit_entries SELECT * FROM audit_entries WHERE team_id = '{t}' \
                 AND seq = 1 ON CONFLICT (team_id, seq) DO UPDATE SET target = 'x'"
            ));
        }
        Backend::Embedded => {
            // REPLACE deletes the old row without firing DELETE triggers; the insert trigger
            // stops it.
            refused.push(format!(
                "INSERT OR REPLACE INTO audit_entries SELECT team_id, seq, event_id, prev_hash, \
                 hash, sig, key_id, event_json, occurred_at_ms, action, actor_id, 'x', \
                 session_id, appended_at_ms FROM audit_entries WHERE team_id = '{t}' AND seq = 1"
            ));
        }
    }
    for sql in &refused {
        let err = f.exec(sql).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let chain = f.chain(&t).await;
    assert_eq!(chain.len(), 4);
    verify_chain(&chain, &f.key().verifying_key()).unwrap();
    f.cleanup().await;
}

async fn superuser_tampering_is_found_at_the_exact_seq(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (edited, deleted, rehashed) = (team("edit"), team("del"), team("rehash"));
    append(&f, &edited, 6).await;
    append(&f, &deleted, 6).await;
    append(&f, &rehashed, 3).await;
    let running = f.start().await;
    for t in [&edited, &deleted] {
        f.wait_for(t, 6).await;
    }
    f.wait_for(&rehashed, 3).await;
    running.stop().await;
    let key = f.key().verifying_key();
    f.bypass_triggers().await;

    // A changed field: the entry's hash no longer matches, at its seq.
    f.exec(&format!(
        "UPDATE audit_entries SET event_json = replace(event_json, 'user-3', 'user-9') \
         WHERE team_id = '{edited}' AND seq = 4"
    ))
    .await
    .unwrap();
    assert_eq!(
        verify_chain(&f.chain(&edited).await, &key),
        Err(ChainError {
            seq: 4,
            reason: ChainFailure::BadHash
        })
    );

    // A deleted entry: a gap at its seq.
    f.exec(&format!(
        "DELETE FROM audit_entries WHERE team_id = '{deleted}' AND seq = 3"
    ))
    .await
    .unwrap();
    assert_eq!(
        verify_chain(&f.chain(&deleted).await, &key),
        Err(ChainError {
            seq: 3,
            reason: ChainFailure::Gap { found: 4 }
        })
    );

    // A re-hashed entry (the tamperer recomputes the hash but has no key): bad signature.
    let chain = f.chain(&rehashed).await;
    let mut forged = chain[1].clone();
    forged.event.target = "agent:forged".into();
    forged.hash = forged.compute_hash().unwrap();
    let hex: String = forged.hash.iter().map(|b| format!("{b:02x}")).collect();
    let json = serde_json::to_string(&forged.event)
        .unwrap()
        .replace('\'', "''");
    let hash_literal = match backend {
        Backend::Real => format!("'\\x{hex}'::bytea"),
        Backend::Embedded => format!("X'{hex}'"),
    };
    f.exec(&format!(
        "UPDATE audit_entries SET event_json = '{json}', hash = {hash_literal} \
         WHERE team_id = '{rehashed}' AND seq = 2"
    ))
    .await
    .unwrap();
    assert_eq!(
        verify_chain(&f.chain(&rehashed).await, &key),
        Err(ChainError {
            seq: 2,
            reason: ChainFailure::BadSignature
        })
    );
    f.cleanup().await;
}

async fn a_chain_whose_last_entry_was_changed_is_never_extended(backend: Backend) {
    let f = Fixture::new(backend).await;
    let t = team("stop");
    append(&f, &t, 3).await;
    let running = f.start().await;
    f.wait_for(&t, 3).await;
    running.stop().await;
    f.bypass_triggers().await;
    f.exec(&format!(
        "UPDATE audit_entries SET event_json = replace(event_json, 'user-2', 'user-7') \
         WHERE team_id = '{t}' AND seq = 3"
    ))
    .await
    .unwrap();

    append(&f, &t, 1).await;
    let running = f.start().await;
    assert!(
        tucdesk_testkit::eventually(Duration::from_secs(10), || async {
            running
                .audit
                .metrics()
                .batches
                .with_label_values(&["failed"])
                .get()
                >= 1
        })
        .await,
        "the append is refused"
    );
    assert_eq!(
        f.chain(&t).await.len(),
        3,
        "nothing was built on the bad entry"
    );
    assert!(
        running
            .audit
            .metrics()
            .verification_failures
            .with_label_values(&["chain_head"])
            .get()
            >= 1,
        "the refusal is counted as a verification failure"
    );
    running.kill().await;
    f.cleanup().await;
}
