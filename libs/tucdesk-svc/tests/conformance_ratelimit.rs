//! One rate-limiter conformance suite, run against the in-process limiter and real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use tucdesk_svc::ratelimit::{
    self, Decision, LimitPolicy, MAX_KEY_LEN, MemoryRateLimiter, RateLimitError, RateLimiter,
    RedisRateLimiter,
};
use tucdesk_svc::testing::{redis_url, unique_name};

/// Long enough that nothing expires during a test that does not wait for it.
const STEADY: LimitPolicy = LimitPolicy {
    name: "conformance-steady",
    max_failures: 5,
    window: Duration::from_secs(60),
    lockout: Duration::from_secs(60),
};

/// Short enough to wait out: the test sleeps well past these before expecting expiry.
const SHORT: LimitPolicy = LimitPolicy {
    name: "conformance-short",
    max_failures: 3,
    window: Duration::from_millis(300),
    lockout: Duration::from_millis(300),
};

/// Comfortably past `SHORT`'s window and lockout.
const WAIT_PAST_SHORT: Duration = Duration::from_millis(800);

async fn fail(limiter: &dyn RateLimiter, key: &str, policy: &LimitPolicy) -> Decision {
    limiter.record_failure(key, policy).await.unwrap()
}

async fn lock(limiter: &dyn RateLimiter, key: &str, policy: &LimitPolicy) {
    for _ in 0..policy.max_failures {
        assert!(fail(limiter, key, policy).await.is_allowed());
    }
    assert!(!limiter.check(key, policy).await.unwrap().is_allowed());
}

fn assert_locked_within(decision: Decision, policy: &LimitPolicy) {
    match decision {
        Decision::Locked { retry_after } => {
            assert!(retry_after > Duration::ZERO, "{decision:?}");
            assert!(retry_after <= policy.lockout, "{decision:?}");
        }
        Decision::Allowed { .. } => panic!("expected a lockout, got {decision:?}"),
    }
}

async fn allowed_until_max_failures_then_locked(limiter: &dyn RateLimiter) {
    let key = unique_name("account");
    assert_eq!(
        limiter.check(&key, &STEADY).await.unwrap(),
        Decision::Allowed { remaining: 5 }
    );
    for remaining in (0..5).rev() {
        assert_eq!(
            fail(limiter, &key, &STEADY).await,
            Decision::Allowed { remaining }
        );
    }
    assert_locked_within(limiter.check(&key, &STEADY).await.unwrap(), &STEADY);
    // Further failures are refused and do not extend the lockout past the policy's.
    for _ in 0..3 {
        assert_locked_within(fail(limiter, &key, &STEADY).await, &STEADY);
    }
    assert_locked_within(limiter.check(&key, &STEADY).await.unwrap(), &STEADY);
}

async fn lockout_and_window_expire(limiter: &dyn RateLimiter) {
    let key = unique_name("expiring");
    lock(limiter, &key, &SHORT).await;
    tokio::time::sleep(WAIT_PAST_SHORT).await;
    // The lockout ended and the count was forgotten with it: a full budget again.
    assert_eq!(
        limiter.check(&key, &SHORT).await.unwrap(),
        Decision::Allowed { remaining: 3 }
    );

    let key = unique_name("window");
    fail(limiter, &key, &SHORT).await;
    fail(limiter, &key, &SHORT).await;
    tokio::time::sleep(WAIT_PAST_SHORT).await;
    assert_eq!(
        fail(limiter, &key, &SHORT).await,
        Decision::Allowed { remaining: 2 },
        "failures of an ended window must not count"
    );
}

async fn reset_clears_the_count_but_not_a_lockout(limiter: &dyn RateLimiter) {
    let key = unique_name("reset");
    for _ in 0..3 {
        fail(limiter, &key, &STEADY).await;
    }
    limiter.reset(&key, &STEADY).await.unwrap();
    assert_eq!(
        limiter.check(&key, &STEADY).await.unwrap(),
        Decision::Allowed { remaining: 5 }
    );
    // Resetting a key never seen is harmless.
    limiter.reset(&unique_name("never"), &STEADY).await.unwrap();

    lock(limiter, &key, &STEADY).await;
    limiter.reset(&key, &STEADY).await.unwrap();
    assert_locked_within(limiter.check(&key, &STEADY).await.unwrap(), &STEADY);
    assert_locked_within(fail(limiter, &key, &STEADY).await, &STEADY);
}

async fn keys_and_policies_are_independent(limiter: &dyn RateLimiter) {
    let key = unique_name("locked");
    lock(limiter, &key, &STEADY).await;
    let other = unique_name("other");
    assert_eq!(
        limiter.check(&other, &STEADY).await.unwrap(),
        Decision::Allowed { remaining: 5 }
    );
    // The same key under another policy has its own count.
    let per_team = LimitPolicy {
        name: "conformance-team",
        ..STEADY
    };
    assert_eq!(
        limiter.check(&key, &per_team).await.unwrap(),
        Decision::Allowed { remaining: 5 }
    );
    // A key that looks like another policy's prefix does not reach into it.
    let tricky = format!("{}:{key}", STEADY.name);
    let outer = LimitPolicy {
        name: "conformance",
        ..STEADY
    };
    assert!(limiter.check(&tricky, &outer).await.unwrap().is_allowed());
}

/// A deployment that lowers a limit must not hand a key more attempts than the new limit.
async fn a_lowered_limit_applies_at_once(limiter: &dyn RateLimiter) {
    let key = unique_name("lowered");
    for _ in 0..4 {
        fail(limiter, &key, &STEADY).await;
    }
    let lowered = LimitPolicy {
        max_failures: 3,
        ..STEADY
    };
    assert_eq!(
        limiter.check(&key, &lowered).await.unwrap(),
        Decision::Allowed { remaining: 0 }
    );
    assert_locked_within(fail(limiter, &key, &lowered).await, &lowered);
    assert_locked_within(limiter.check(&key, &STEADY).await.unwrap(), &STEADY);
}

/// Many rounds, because a race shows only sometimes (the replay cache's get-then-insert
/// passed one round locally and failed in CI).
async fn concurrent_failures_allow_exactly_max(limiter: Arc<dyn RateLimiter>) {
    for _ in 0..200 {
        one_race(limiter.clone()).await;
    }
}

async fn one_race(limiter: Arc<dyn RateLimiter>) {
    const RACERS: usize = 32;
    let key = unique_name("race");
    // Release every task at once so the updates really overlap.
    let start = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let (limiter, key, start) = (limiter.clone(), key.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                limiter.record_failure(&key, &STEADY).await.unwrap()
            })
        })
        .collect();
    let mut remaining_seen = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Decision::Allowed { remaining } => remaining_seen.push(remaining),
            locked => assert_locked_within(locked, &STEADY),
        }
    }
    remaining_seen.sort_unstable();
    // Exactly max allowed, each seeing a distinct count: no two racers shared a step.
    assert_eq!(remaining_seen, vec![0, 1, 2, 3, 4], "of {RACERS} racers");
    assert_locked_within(limiter.check(&key, &STEADY).await.unwrap(), &STEADY);
}

async fn bad_arguments_are_refused(limiter: &dyn RateLimiter) {
    let long = "k".repeat(MAX_KEY_LEN + 1);
    for key in ["", long.as_str()] {
        assert!(matches!(
            limiter.check(key, &STEADY).await,
            Err(RateLimitError::BadKey)
        ));
        assert!(matches!(
            limiter.record_failure(key, &STEADY).await,
            Err(RateLimitError::BadKey)
        ));
        assert!(matches!(
            limiter.reset(key, &STEADY).await,
            Err(RateLimitError::BadKey)
        ));
    }
    let longest = "k".repeat(MAX_KEY_LEN);
    assert!(limiter.check(&longest, &STEADY).await.is_ok());
    let never = LimitPolicy {
        max_failures: 0,
        ..STEADY
    };
    assert!(matches!(
        limiter.record_failure("k", &never).await,
        Err(RateLimitError::BadPolicy { .. })
    ));
}

async fn run_suite(limiter: Arc<dyn RateLimiter>) {
    limiter.ping().await.unwrap();
    allowed_until_max_failures_then_locked(limiter.as_ref()).await;
    lockout_and_window_expire(limiter.as_ref()).await;
    reset_clears_the_count_but_not_a_lockout(limiter.as_ref()).await;
    keys_and_policies_are_independent(limiter.as_ref()).await;
    a_lowered_limit_applies_at_once(limiter.as_ref()).await;
    concurrent_failures_allow_exactly_max(limiter.clone()).await;
    bad_arguments_are_refused(limiter.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limiter_conforms() {
    run_suite(Arc::new(MemoryRateLimiter::new(10_000))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limiter_conforms() {
    let limiter = RedisRateLimiter::connect(&redis_url(), &unique_name("conformance"))
        .await
        .expect("Redis must be running (see DEVELOPERS.md)");
    run_suite(Arc::new(limiter)).await;
}

#[tokio::test]
async fn replicas_share_a_namespace_and_deployments_do_not() {
    let namespace = unique_name("shared");
    let key = unique_name("account");
    let a = ratelimit::connect(&redis_url(), &namespace).await.unwrap();
    let b = ratelimit::connect(&redis_url(), &namespace).await.unwrap();
    let elsewhere = ratelimit::connect(&redis_url(), &unique_name("other"))
        .await
        .unwrap();
    lock(a.as_ref(), &key, &STEADY).await;
    assert_locked_within(b.check(&key, &STEADY).await.unwrap(), &STEADY);
    assert_eq!(
        elsewhere.check(&key, &STEADY).await.unwrap(),
        Decision::Allowed { remaining: 5 }
    );
}

#[tokio::test]
async fn unreachable_redis_is_a_startup_error_naming_the_url() {
    let err = ratelimit::connect("redis://:hunter2@127.0.0.1:1", "t")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RateLimitError::Connect { .. }), "{err:?}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("hunter2"), "password leaked: {text}");
}
