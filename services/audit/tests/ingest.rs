//! Events published on the bus become verifying, gap-free chains, once each, across restarts
//! and redeliveries; checkpoints are signed and match the stored entries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Fixture, event, team};
use tucdesk_audit::convert::event_from_proto;
use tucdesk_audit::store::checkpoints;
use tucdesk_crypto::audit::verify_chain;
use tucdesk_crypto::merkle::{leaf_hash, root};
use tucdesk_testkit::{Backend, on_both_backends};

on_both_backends!(
    published_events_become_one_verifying_chain_per_team,
    the_same_event_delivered_twice_is_one_entry,
    a_restart_continues_the_chain_without_loss_or_duplicates,
    invalid_events_are_dead_lettered_without_blocking_the_stream,
    a_checkpoint_after_n_entries_verifies_and_matches_the_stored_root,
    two_replicas_racing_for_one_chain_keep_it_gap_free,
);

async fn published_events_become_one_verifying_chain_per_team(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (a, b) = (team("a"), team("b"));
    let mut sent_a = Vec::new();
    let mut sent_b = Vec::new();
    for i in 0..7 {
        let e = event(&a, "auth.login", &format!("user-{i}"));
        f.publish(&e).await;
        sent_a.push(e);
        if i % 2 == 0 {
            let e = event(&b, "session.start", "user-b");
            f.publish(&e).await;
            sent_b.push(e);
        }
    }
    let running = f.start().await;
    let key = f.key().verifying_key();
    for (team, sent) in [(&a, &sent_a), (&b, &sent_b)] {
        let chain = f.wait_for(team, sent.len()).await;
        verify_chain(&chain, &key).unwrap();
        let seqs: Vec<u64> = chain.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=sent.len() as u64).collect::<Vec<_>>());
        // Stream order within the team, each event exactly as published.
        for (entry, wire) in chain.iter().zip(sent.iter()) {
            assert_eq!(entry.event, event_from_proto(wire).unwrap());
        }
    }
    assert_eq!(
        running.audit.metrics().appended.get(),
        (sent_a.len() + sent_b.len()) as u64
    );
    running.stop().await;
    f.cleanup().await;
}

async fn the_same_event_delivered_twice_is_one_entry(backend: Backend) {
    let f = Fixture::new(backend).await;
    let t = team("dup");
    let first = event(&t, "auth.login", "u1");
    let second = event(&t, "auth.logout", "u1");
    f.publish(&first).await;
    // A repeat the stream's de-duplication cannot catch (outside its window, or another id).
    f.publish_with_id(&first, "another-dedup-id").await;
    f.publish(&second).await;
    f.publish_with_id(&first, "yet-another-dedup-id").await;
    let running = f.start().await;
    let chain = f.wait_for(&t, 2).await;
    verify_chain(&chain, &f.key().verifying_key()).unwrap();
    assert_eq!(chain[0].event.event_id, first.event_id);
    assert_eq!(chain[1].event.event_id, second.event_id);
    assert!(
        tucdesk_testkit::eventually(Duration::from_secs(10), || async {
            running.audit.metrics().duplicates.get() == 2
        })
        .await
    );
    // Nothing else arrives later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(f.chain(&t).await.len(), 2);
    running.stop().await;
    f.cleanup().await;
}

async fn a_restart_continues_the_chain_without_loss_or_duplicates(backend: Backend) {
    let f = Fixture::new(backend).await;
    let t = team("restart");
    let mut sent = Vec::new();
    for i in 0..5 {
        let e = event(&t, "exec.command", &format!("u{i}"));
        f.publish(&e).await;
        sent.push(e);
    }
    let running = f.start().await;
    f.wait_for(&t, 5).await;
    running.stop().await;

    // While stopped: more events, and a replica that appends a batch and dies before
    // acknowledging it (the stream delivers it again to whoever comes next).
    for i in 5..12 {
        let e = event(&t, "exec.command", &format!("u{i}"));
        f.publish(&e).await;
        sent.push(e);
    }
    let dying = f.audit().await;
    let mut consumer = f
        .bus
        .durable_consumer(&dying.consumer_spec())
        .await
        .unwrap();
    let batch = consumer.fetch(3, Duration::from_secs(5)).await.unwrap();
    assert_eq!(batch.len(), 3);
    let outcome = dying.append_deliveries(&batch).await.unwrap();
    assert_eq!(outcome.appended, 3);
    drop(batch);
    drop(consumer);
    // Another replica takes messages and crashes before committing anything.
    let mut consumer = f
        .bus
        .durable_consumer(&dying.consumer_spec())
        .await
        .unwrap();
    let lost = consumer.fetch(2, Duration::from_secs(5)).await.unwrap();
    assert_eq!(lost.len(), 2);
    drop(lost);
    drop(consumer);

    let running = f.start().await;
    let chain = f.wait_for(&t, 12).await;
    verify_chain(&chain, &f.key().verifying_key()).unwrap();
    // Every event exactly once (redeliveries may come after newer events: the chain's order
    // is the order of appending).
    let mut ids: Vec<&str> = chain.iter().map(|e| e.event.event_id.as_str()).collect();
    let mut expected: Vec<&str> = sent.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(
        &ids[..8],
        &expected[..8],
        "the first chain continues where it stopped"
    );
    ids.sort_unstable();
    expected.sort_unstable();
    assert_eq!(ids, expected, "every event once");
    // The appended-but-unacknowledged batch came back and was recognised.
    assert!(
        tucdesk_testkit::eventually(Duration::from_secs(15), || async {
            running.audit.metrics().duplicates.get() >= 3
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(f.chain(&t).await.len(), 12);
    running.stop().await;
    f.cleanup().await;
}

async fn invalid_events_are_dead_lettered_without_blocking_the_stream(backend: Backend) {
    let f = Fixture::new(backend).await;
    let t = team("junk");
    let good = event(&t, "auth.login", "u1");
    let mut bad = event(&t, "auth.login", "u1");
    bad.context_json = r#"{"a":1,"a":2}"#.into();
    let mut no_actor = event(&t, "Auth.Login", "u1");
    no_actor.actor = None;
    f.publish(&bad).await;
    f.publish_raw(&t, &[0xff, 0xff, 0xff]).await;
    f.publish(&no_actor).await;
    f.publish(&good).await;
    let running = f.start().await;
    let chain = f.wait_for(&t, 1).await;
    assert_eq!(chain[0].event.event_id, good.event_id);
    assert_eq!(chain[0].seq, 1);
    let rejected: i64 = tucdesk_svc::on_pool!(&f.db, |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_rejected")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(rejected, 3);
    let metrics = running.audit.metrics();
    let counted: u64 = [
        "undecodable",
        "actor",
        "context",
        "invalid",
        "policy_result",
    ]
    .iter()
    .map(|r| metrics.rejected.with_label_values(&[r]).get())
    .sum();
    assert_eq!(counted, 3);
    running.stop().await;
    f.cleanup().await;
}

async fn a_checkpoint_after_n_entries_verifies_and_matches_the_stored_root(backend: Backend) {
    let f = Fixture::with(backend, |c| {
        c.checkpoint_every = 5;
        c.checkpoint_interval = Duration::from_millis(500);
    })
    .await;
    let t = team("cp");
    for i in 0..12 {
        f.publish(&event(&t, "auth.login", &format!("u{i}"))).await;
    }
    let running = f.start().await;
    let chain = f.wait_for(&t, 12).await;
    let key = f.key().verifying_key();
    let leaves: Vec<_> = chain.iter().map(|e| leaf_hash(&e.hash)).collect();
    for size in [5u64, 10] {
        let cp = checkpoints::at(&f.db, &t, size).await.unwrap().unwrap();
        cp.verify(&key).unwrap();
        assert_eq!(cp.checkpoint.team_id, t);
        assert_eq!(cp.checkpoint.key_id, f.key().key_id());
        assert_eq!(cp.checkpoint.root_hash, root(&leaves[..size as usize]));
    }
    // The last two entries get a time-triggered checkpoint.
    assert!(
        tucdesk_testkit::eventually(Duration::from_secs(10), || async {
            checkpoints::at(&f.db, &t, 12).await.unwrap().is_some()
        })
        .await
    );
    let last = checkpoints::at(&f.db, &t, 12).await.unwrap().unwrap();
    last.verify(&key).unwrap();
    assert_eq!(last.checkpoint.root_hash, root(&leaves));
    let metrics = running.audit.metrics();
    assert_eq!(metrics.checkpoints.with_label_values(&["count"]).get(), 2);
    assert!(metrics.checkpoints.with_label_values(&["time"]).get() >= 1);
    running.stop().await;
    f.cleanup().await;
}

async fn two_replicas_racing_for_one_chain_keep_it_gap_free(backend: Backend) {
    let f = Fixture::with(backend, |c| {
        c.batch_size = 3;
        c.checkpoint_every = 7;
    })
    .await;
    let t = team("race");
    let (first, second) = (f.start().await, f.start().await);
    let mut sent = Vec::new();
    for i in 0..60 {
        let e = event(&t, "auth.login", &format!("u{i}"));
        f.publish(&e).await;
        sent.push(e.event_id);
    }
    let chain = f.wait_for(&t, 60).await;
    let key = f.key().verifying_key();
    verify_chain(&chain, &key).unwrap();
    let mut ids: Vec<String> = chain.iter().map(|e| e.event.event_id.clone()).collect();
    ids.sort_unstable();
    sent.sort_unstable();
    assert_eq!(ids, sent, "every event once");
    let leaves: Vec<_> = chain.iter().map(|e| leaf_hash(&e.hash)).collect();
    for size in (7..=56).step_by(7) {
        let cp = checkpoints::at(&f.db, &t, size).await.unwrap().unwrap();
        cp.verify(&key).unwrap();
        assert_eq!(cp.checkpoint.root_hash, root(&leaves[..size as usize]));
    }
    let appended = first.audit.metrics().appended.get() + second.audit.metrics().appended.get();
    assert_eq!(appended, 60);
    first.stop().await;
    second.stop().await;
    f.cleanup().await;
}
