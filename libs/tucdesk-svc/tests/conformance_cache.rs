//! One replay-cache conformance suite, run against the in-process cache and real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use tucdesk_svc::cache::{self, CacheError, MemoryReplayCache, RedisReplayCache, ReplayCache};
use tucdesk_svc::testing::{redis_url, unique_name};

async fn first_sighting_wins_and_repeats_are_refused(cache: &dyn ReplayCache) {
    let key = unique_name("nonce");
    assert!(
        cache
            .insert_if_absent(&key, Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(
        !cache
            .insert_if_absent(&key, Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(
        !cache
            .insert_if_absent(&key, Duration::from_secs(1))
            .await
            .unwrap()
    );
    let other = unique_name("nonce");
    assert!(
        cache
            .insert_if_absent(&other, Duration::from_secs(60))
            .await
            .unwrap()
    );
}

async fn a_key_is_forgotten_after_its_ttl(cache: &dyn ReplayCache) {
    let key = unique_name("ttl");
    assert!(
        cache
            .insert_if_absent(&key, Duration::from_millis(200))
            .await
            .unwrap()
    );
    assert!(
        !cache
            .insert_if_absent(&key, Duration::from_millis(200))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        cache
            .insert_if_absent(&key, Duration::from_millis(200))
            .await
            .unwrap()
    );
}

/// Many rounds, because a race shows only sometimes (a get-then-insert cache passed one
/// round locally and failed in CI).
async fn concurrent_inserts_of_one_key_admit_exactly_one(cache: Arc<dyn ReplayCache>) {
    for _ in 0..200 {
        one_race(cache.clone()).await;
    }
}

async fn one_race(cache: Arc<dyn ReplayCache>) {
    const RACERS: usize = 32;
    let key = unique_name("race");
    // Release every task at once so the inserts really overlap.
    let start = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let (cache, key, start) = (cache.clone(), key.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                cache
                    .insert_if_absent(&key, Duration::from_secs(60))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        if task.await.unwrap() {
            admitted += 1;
        }
    }
    assert_eq!(
        admitted, 1,
        "exactly one of {RACERS} concurrent inserts may win"
    );
}

async fn bad_arguments_are_refused(cache: &dyn ReplayCache) {
    assert!(matches!(
        cache.insert_if_absent("", Duration::from_secs(1)).await,
        Err(CacheError::BadKey)
    ));
    assert!(matches!(
        cache.insert_if_absent("k", Duration::ZERO).await,
        Err(CacheError::BadTtl)
    ));
}

async fn run_suite(cache: Arc<dyn ReplayCache>) {
    cache.ping().await.unwrap();
    first_sighting_wins_and_repeats_are_refused(cache.as_ref()).await;
    a_key_is_forgotten_after_its_ttl(cache.as_ref()).await;
    concurrent_inserts_of_one_key_admit_exactly_one(cache.clone()).await;
    bad_arguments_are_refused(cache.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cache_conforms() {
    run_suite(Arc::new(MemoryReplayCache::new(10_000))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cache_conforms() {
    let cache = RedisReplayCache::connect(&redis_url(), &unique_name("conformance"))
        .await
        .expect("Redis must be running (see DEVELOPERS.md)");
    run_suite(Arc::new(cache)).await;
}

#[tokio::test]
async fn namespaces_keep_deployments_apart() {
    let key = unique_name("shared");
    let a = cache::connect(&redis_url(), &unique_name("a"))
        .await
        .unwrap();
    let b = cache::connect(&redis_url(), &unique_name("b"))
        .await
        .unwrap();
    assert!(
        a.insert_if_absent(&key, Duration::from_secs(5))
            .await
            .unwrap()
    );
    assert!(
        b.insert_if_absent(&key, Duration::from_secs(5))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn unreachable_redis_is_a_startup_error_naming_the_url() {
    let err = cache::connect("redis://:hunter2@127.0.0.1:1", "t")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, CacheError::Connect { .. }), "{err:?}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("hunter2"), "password leaked: {text}");
}
