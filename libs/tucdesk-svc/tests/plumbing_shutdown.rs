//! Shutdown: a real SIGTERM cancels the token, and in-flight work drains within the deadline.
//! Its own test binary, because it signals the whole test process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tucdesk_svc::http;
use tucdesk_svc::shutdown::{Shutdown, ShutdownSignal, listen_for_signals};

/// Upper bound for anything in these tests that should be quick.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Time for the spawned listener to install its handlers before we signal ourselves.
const HANDLER_INSTALL_WAIT: Duration = Duration::from_millis(200);

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cancels_the_token_and_stops_the_ops_server() {
    let shutdown = Shutdown::new();
    let listener_task = tokio::spawn(listen_for_signals(shutdown.token()));

    let metrics = http::Metrics::new("test", "0").unwrap();
    let router = http::ops_router(metrics.registry().clone(), http::Readiness::new());
    let tcp = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let server = tokio::spawn(http::serve(tcp, router, shutdown.token()));

    // Work that was in flight when the signal arrived, and finishes after it.
    let finished = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let token = shutdown.token();
        let finished = finished.clone();
        shutdown.spawn(async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            finished.fetch_add(1, Ordering::SeqCst);
        });
    }

    tokio::time::sleep(HANDLER_INSTALL_WAIT).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let received = tokio::time::timeout(TEST_TIMEOUT, listener_task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(received, Some(ShutdownSignal::Terminate));
    assert!(shutdown.is_shutting_down());

    assert!(shutdown.drain(TEST_TIMEOUT).await);
    assert_eq!(finished.load(Ordering::SeqCst), 3);

    tokio::time::timeout(TEST_TIMEOUT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
