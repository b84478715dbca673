//! Telemetry init in a real process: the global subscriber with the OpenTelemetry layer, OTLP
//! export configured, and trace context carried from a `tracing` span through every carrier
//! into the parent of a new span on the "other side".
//!
//! One test function on purpose: the subscriber is process-global, so everything that depends
//! on it runs in sequence here, in its own test binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tucdesk_svc::config::{LogFormat, TelemetryArgs};
use tucdesk_svc::telemetry::{self, TRACE_SHUTDOWN_TIMEOUT, TelemetryError};
use tucdesk_svc::trace_context::{self, TRACEPARENT};

fn span_context(cx: &Context) -> SpanContext {
    cx.span().span_context().clone()
}

/// Receives `carrier`'s context into a fresh server-side span and checks it joined the trace
/// of `sent` as a child.
fn assert_child_of(sent: &SpanContext, received: Context, carrier: &str) {
    let incoming = tracing::info_span!("incoming", carrier);
    trace_context::set_parent(&incoming, received);
    let child = span_context(&incoming.context());
    assert!(child.is_valid(), "{carrier}: no span context");
    assert_eq!(
        child.trace_id(),
        sent.trace_id(),
        "{carrier}: trace id lost"
    );
    assert_ne!(child.span_id(), sent.span_id(), "{carrier}: not a new span");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_links_spans_across_every_carrier_and_refuses_a_second_init() {
    // A collector address that refuses connections: export is configured but fails fast.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", unused.local_addr().unwrap());
    drop(unused);

    let mut args = TelemetryArgs::new("plumbing-test");
    args.log_format = LogFormat::Json;
    // Logs turned down to warn: info spans must still carry trace context.
    args.log_filter = "warn".to_owned();
    args.otlp_endpoint = Some(endpoint);

    let guard = telemetry::init(&args).expect("first init succeeds");
    assert!(guard.is_exporting());
    assert!(matches!(
        telemetry::init(&TelemetryArgs::new("again")),
        Err(TelemetryError::AlreadyInitialized)
    ));

    let outgoing = tracing::info_span!("outgoing");
    let sent = {
        let _entered = outgoing.enter();
        let sent = span_context(&trace_context::current_context());
        assert!(
            sent.is_valid(),
            "the tracing layer gives spans OpenTelemetry ids"
        );
        assert!(sent.is_sampled());

        let mut metadata = tonic::metadata::MetadataMap::new();
        trace_context::inject_metadata(&mut metadata);
        assert_child_of(&sent, trace_context::extract_metadata(&metadata), "grpc");

        let mut headers = http::HeaderMap::new();
        trace_context::inject_http_headers(&mut headers);
        assert_child_of(&sent, trace_context::extract_http_headers(&headers), "http");

        let mut nats = async_nats::HeaderMap::new();
        trace_context::inject_nats_headers(&mut nats);
        assert_child_of(&sent, trace_context::extract_nats_headers(&nats), "nats");

        let mut map = BTreeMap::new();
        trace_context::inject_map(&mut map);
        assert_child_of(&sent, trace_context::extract_map(&map), "bus");

        // The client interceptor injects the span that is current when the call is made.
        let mut interceptor = trace_context::TracePropagationInterceptor;
        let request =
            tonic::service::Interceptor::call(&mut interceptor, tonic::Request::new(())).unwrap();
        assert_child_of(
            &sent,
            trace_context::extract_metadata(request.metadata()),
            "interceptor",
        );

        // Third-party code using the global propagator gets W3C trace context too.
        let mut global = BTreeMap::new();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(
                &outgoing.context(),
                &mut trace_context::MapInjector(&mut global),
            )
        });
        assert!(global.contains_key(TRACEPARENT));

        // The tonic server span (`Server::builder().trace_fn(grpc_server_span)`).
        let mut request = http::Request::builder()
            .uri("/tucdesk.test.v1.Test/Call")
            .body(())
            .unwrap();
        trace_context::inject_http_headers(request.headers_mut());
        let server_span = trace_context::grpc_server_span(&request);
        let server = span_context(&server_span.context());
        assert_eq!(server.trace_id(), sent.trace_id());
        sent
    };
    drop(outgoing);

    // With nothing incoming, a server span starts a new trace.
    let request = http::Request::builder().uri("/x/Y").body(()).unwrap();
    let root = span_context(&trace_context::grpc_server_span(&request).context());
    assert!(root.is_valid());
    assert_ne!(root.trace_id(), sent.trace_id());

    // Dropping the guard flushes to an unreachable collector: bounded, no panic.
    let started = Instant::now();
    drop(guard);
    assert!(started.elapsed() <= TRACE_SHUTDOWN_TIMEOUT + Duration::from_secs(2));
}
