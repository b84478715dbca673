//! The ops HTTP server, started on port 0 and driven over real TCP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use prometheus::{IntCounter, Opts};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tucdesk_svc::http::{self, HttpError, Metrics, OPS_SHUTDOWN_GRACE, Readiness};

/// Upper bound for anything in these tests that should be quick.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An ops server on an ephemeral port; dropping it shuts the server down.
struct TestServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), HttpError>>>,
    readiness: Readiness,
    requests: IntCounter,
}

impl TestServer {
    async fn start() -> Self {
        let metrics = Metrics::new("test", "0.0.0-test").unwrap();
        let requests = IntCounter::with_opts(Opts::new(
            "tucdesk_test_requests_total",
            "Requests seen by the test.",
        ))
        .unwrap();
        metrics
            .registry()
            .register(Box::new(requests.clone()))
            .unwrap();

        let shutdown = CancellationToken::new();
        let readiness = Readiness::new()
            .with_timeout(Duration::from_millis(200))
            .with_shutdown(shutdown.clone());
        let router = http::ops_router(metrics.registry().clone(), readiness.clone());
        let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(http::serve(listener, router, shutdown.clone()));
        Self {
            addr,
            shutdown,
            task: Some(task),
            readiness,
            requests,
        }
    }

    async fn get(&self, path: &str) -> Response {
        get(self.addr, path).await
    }

    /// Cancels and waits for `serve` to return.
    async fn stop(mut self) -> Result<(), HttpError> {
        self.shutdown.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(TEST_TIMEOUT, task)
            .await
            .expect("serve did not stop after cancellation")
            .unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    content_type: String,
    body: String,
}

/// Minimal HTTP/1.1 GET over a blocking socket (the crate has no HTTP client dependency).
async fn get(addr: SocketAddr, path: &str) -> Response {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(TEST_TIMEOUT)).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let content_type = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-type")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default();
        Response {
            status,
            content_type,
            body: body.to_owned(),
        }
    })
    .await
    .unwrap()
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn healthz_is_always_ok_while_serving() {
    let server = TestServer::start().await;
    // Liveness does not depend on dependencies: a failing check must not affect it.
    server
        .readiness
        .add_fn("database", || async { Err("down".to_owned()) });
    let response = server.get("/healthz").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.content_type, "application/json");
    assert_eq!(json(&response.body)["status"], "ok");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn readyz_lists_passing_checks() {
    let server = TestServer::start().await;
    server.readiness.add_fn("database", || async { Ok(()) });
    server.readiness.add_fn("bus", || async { Ok(()) });
    let response = server.get("/readyz").await;
    assert_eq!(response.status, 200, "{}", response.body);
    let body = json(&response.body);
    assert_eq!(body["status"], "ready");
    assert_eq!(
        body["checks"],
        serde_json::json!([
            {"name": "database", "status": "ok"},
            {"name": "bus", "status": "ok"},
        ])
    );
    assert!(body.get("failing").is_none());
}

#[tokio::test]
async fn readyz_names_the_failing_check_without_its_detail() {
    let server = TestServer::start().await;
    server.readiness.add_fn("database", || async { Ok(()) });
    server.readiness.add_fn("bus", || async {
        Err("cannot reach nats://svc:hunter2@nats:4222".to_owned())
    });
    let response = server.get("/readyz").await;
    assert_eq!(response.status, 503);
    let body = json(&response.body);
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["failing"], serde_json::json!(["bus"]));
    assert_eq!(body["checks"][0]["status"], "ok");
    assert_eq!(body["checks"][1]["status"], "failed");
    // Details stay in the log: nothing about the URL reaches the prober.
    assert!(!response.body.contains("hunter2"));
    assert!(!response.body.contains("nats://"));
}

#[tokio::test]
async fn readyz_times_out_a_hanging_check() {
    let server = TestServer::start().await;
    server.readiness.add_fn("database", || async {
        tokio::time::sleep(Duration::from_secs(3_600)).await;
        Ok(())
    });
    let response = server.get("/readyz").await;
    assert_eq!(response.status, 503);
    let body = json(&response.body);
    assert_eq!(body["failing"], serde_json::json!(["database"]));
    assert_eq!(body["checks"][0]["status"], "timeout");
}

#[tokio::test]
async fn metrics_expose_registered_counters_in_text_format() {
    let server = TestServer::start().await;
    server.requests.inc_by(3);
    let response = server.get("/metrics").await;
    assert_eq!(response.status, 200);
    assert!(
        response.content_type.starts_with("text/plain"),
        "{}",
        response.content_type
    );
    assert!(
        response
            .body
            .contains("tucdesk_test_requests_total{service=\"test\"} 3"),
        "{}",
        response.body
    );
    assert!(
        response
            .body
            .contains("# TYPE tucdesk_test_requests_total counter")
    );
    assert!(response.body.contains("tucdesk_build_info{"));
}

#[tokio::test]
async fn unknown_paths_are_not_found() {
    let server = TestServer::start().await;
    assert_eq!(server.get("/admin").await.status, 404);
}

#[tokio::test]
async fn cancellation_stops_serve_and_closes_the_port() {
    let server = TestServer::start().await;
    let addr = server.addr;
    assert_eq!(server.get("/healthz").await.status, 200);
    server.stop().await.unwrap();
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "listener still accepting after shutdown");
}

#[tokio::test]
async fn readyz_reports_shutting_down_once_cancelled() {
    // Readiness bound to a token that is cancelled while the server keeps serving, as when a
    // service drains: the prober must see 503 so traffic moves elsewhere.
    let metrics = Metrics::new("test", "0").unwrap();
    let draining = CancellationToken::new();
    let readiness = Readiness::new().with_shutdown(draining.clone());
    let router = http::ops_router(metrics.registry().clone(), readiness);
    let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = CancellationToken::new();
    let task = tokio::spawn(http::serve(listener, router, serving.clone()));

    assert_eq!(get(addr, "/readyz").await.status, 200);
    draining.cancel();
    let response = get(addr, "/readyz").await;
    assert_eq!(response.status, 503);
    assert_eq!(json(&response.body)["status"], "shutting_down");
    assert_eq!(get(addr, "/healthz").await.status, 200);

    serving.cancel();
    tokio::time::timeout(TEST_TIMEOUT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_stalled_client_cannot_hold_shutdown_past_the_grace_period() {
    let server = TestServer::start().await;
    // A client that sends half a request and then goes quiet.
    let stalled = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stalled.writable().await.unwrap();
    stalled
        .try_write(b"GET /healthz HTTP/1.1\r\nHost:")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let started = tokio::time::Instant::now();
    server.stop().await.unwrap();
    assert!(started.elapsed() <= OPS_SHUTDOWN_GRACE + Duration::from_secs(2));
    drop(stalled);
}
