//! One lease-store conformance suite, run against the in-process store and real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use tucdesk_svc::lease::{self, Lease, LeaseError, Leases, MemoryLeases, RedisLeases};
use tucdesk_svc::testing::{redis_url, unique_name};

/// Long enough that nothing expires during a test that does not wait for it.
const STEADY: Duration = Duration::from_secs(60);
/// Short enough to wait out.
const SHORT: Duration = Duration::from_millis(300);
const WAIT_PAST_SHORT: Duration = Duration::from_millis(800);

fn lease(owner: &str, value: &[u8]) -> Option<Lease> {
    Some(Lease {
        owner: owner.to_owned(),
        value: value.to_vec(),
    })
}

async fn acquire_then_read_back(store: &dyn Leases) {
    let key = unique_name("agent");
    let absent = unique_name("absent");
    store
        .acquire(&key, "conn-1", b"replica-a", STEADY)
        .await
        .unwrap();
    let read = store.get_many(&[key.clone(), absent]).await.unwrap();
    assert_eq!(read, vec![lease("conn-1", b"replica-a"), None]);
    // Values may contain the separator and arbitrary bytes.
    store
        .acquire(&key, "conn-1", b"a\nb\0c", STEADY)
        .await
        .unwrap();
    assert_eq!(
        store.get_many(std::slice::from_ref(&key)).await.unwrap(),
        vec![lease("conn-1", b"a\nb\0c")]
    );
}

async fn a_newer_owner_takes_over_and_the_old_one_cannot_renew_or_release(store: &dyn Leases) {
    let key = unique_name("agent");
    store.acquire(&key, "old", b"1", STEADY).await.unwrap();
    store.acquire(&key, "new", b"2", STEADY).await.unwrap();
    assert!(!store.renew(&key, "old", b"3", STEADY).await.unwrap());
    assert!(!store.release(&key, "old").await.unwrap());
    // An owner whose id is a prefix of the holder's must not count as the holder.
    assert!(!store.release(&key, "ne").await.unwrap());
    assert_eq!(
        store.get_many(std::slice::from_ref(&key)).await.unwrap(),
        vec![lease("new", b"2")]
    );
    assert!(store.renew(&key, "new", b"4", STEADY).await.unwrap());
    assert!(store.release(&key, "new").await.unwrap());
    assert_eq!(store.get_many(&[key]).await.unwrap(), vec![None]);
}

async fn leases_expire_and_renewal_extends_them(store: &dyn Leases) {
    let expiring = unique_name("agent");
    let renewed = unique_name("agent");
    store.acquire(&expiring, "c", b"x", SHORT).await.unwrap();
    store.acquire(&renewed, "c", b"x", SHORT).await.unwrap();
    tokio::time::sleep(SHORT / 2).await;
    assert!(store.renew(&renewed, "c", b"y", STEADY).await.unwrap());
    tokio::time::sleep(WAIT_PAST_SHORT).await;
    let read = store
        .get_many(&[expiring.clone(), renewed.clone()])
        .await
        .unwrap();
    assert_eq!(read, vec![None, lease("c", b"y")]);
    // An expired lease can be renewed by anyone (the holder died; a late heartbeat restores it).
    assert!(store.renew(&expiring, "other", b"z", STEADY).await.unwrap());
}

async fn bad_arguments_are_refused(store: &dyn Leases) {
    let ttl = STEADY;
    for (key, owner) in [("", "o"), ("k", ""), ("k", "a\nb")] {
        assert!(matches!(
            store.acquire(key, owner, b"", ttl).await,
            Err(LeaseError::Bounds(_))
        ));
    }
    let long_key = "k".repeat(lease::MAX_KEY_LEN + 1);
    assert!(store.release(&long_key, "o").await.is_err());
    let big = vec![1u8; lease::MAX_VALUE_LEN + 1];
    assert!(store.renew("k", "o", &big, ttl).await.is_err());
}

async fn run_suite(store: Arc<dyn Leases>) {
    store.ping().await.unwrap();
    acquire_then_read_back(store.as_ref()).await;
    a_newer_owner_takes_over_and_the_old_one_cannot_renew_or_release(store.as_ref()).await;
    leases_expire_and_renewal_extends_them(store.as_ref()).await;
    bad_arguments_are_refused(store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_leases_conform() {
    run_suite(Arc::new(MemoryLeases::new(10_000))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_leases_conform() {
    let store = RedisLeases::connect(&redis_url(), &unique_name("conformance"))
        .await
        .expect("Redis must be running");
    run_suite(Arc::new(store)).await;
}

#[tokio::test]
async fn replicas_share_a_namespace_and_deployments_do_not() {
    let namespace = unique_name("shared");
    let key = unique_name("agent");
    let a = lease::connect(&redis_url(), &namespace).await.unwrap();
    let b = lease::connect(&redis_url(), &namespace).await.unwrap();
    let elsewhere = lease::connect(&redis_url(), &unique_name("other"))
        .await
        .unwrap();
    a.acquire(&key, "conn", b"r", STEADY).await.unwrap();
    assert_eq!(
        b.get_many(std::slice::from_ref(&key)).await.unwrap(),
        vec![lease("conn", b"r")]
    );
    assert_eq!(elsewhere.get_many(&[key]).await.unwrap(), vec![None]);
}
