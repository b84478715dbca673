//! W3C trace context (`traceparent`, `tracestate`) across process boundaries.
//!
//! Each carrier we use gets an OpenTelemetry [`Injector`]/[`Extractor`] wrapper and a pair of
//! convenience functions that use the *current* `tracing` span:
//!
//! | carrier | inject | extract |
//! |---|---|---|
//! | gRPC (tonic `MetadataMap`) | [`TracePropagationInterceptor`], [`inject_metadata`] | [`grpc_server_span`], [`extract_metadata`] |
//! | HTTP (`http::HeaderMap`) | [`inject_http_headers`] | [`extract_http_headers`] |
//! | NATS (`async_nats::HeaderMap`) | [`inject_nats_headers`] | [`extract_nats_headers`] |
//! | in-process bus (`BTreeMap<String, String>`) | [`inject_map`] | [`extract_map`] |
//!
//! The W3C propagator is used directly rather than the global one, so propagation works the
//! same whether or not [`crate::telemetry::init`] ran (tests, tools).

use std::collections::BTreeMap;
use std::str::FromStr;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{KeyRef, MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Longest header value we hand to the propagator. `traceparent` is 55 bytes and W3C asks
/// vendors to propagate at least 512 bytes of `tracestate`; anything far beyond that from the
/// network is dropped rather than parsed.
pub const MAX_TRACE_HEADER_LEN: usize = 4096;

/// Header names the W3C propagator reads and writes.
pub const TRACEPARENT: &str = "traceparent";
/// See [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";

fn propagator() -> TraceContextPropagator {
    TraceContextPropagator::new()
}

fn bounded(value: &str) -> Option<&str> {
    (value.len() <= MAX_TRACE_HEADER_LEN).then_some(value)
}

/// The OpenTelemetry context of the current `tracing` span, or the OpenTelemetry thread-local
/// context when no `tracing` span carries one (code that uses the OpenTelemetry API directly).
pub fn current_context() -> Context {
    let from_span = tracing::Span::current().context();
    if from_span.span().span_context().is_valid() {
        from_span
    } else {
        Context::current()
    }
}

/// Writes `cx` into any carrier.
pub fn inject(cx: &Context, carrier: &mut dyn Injector) {
    propagator().inject_context(cx, carrier);
}

/// Reads a context from any carrier; an absent or malformed `traceparent` gives an empty
/// context (a new trace starts), never an error.
pub fn extract(carrier: &dyn Extractor) -> Context {
    propagator().extract(carrier)
}

/// Makes `cx` the remote parent of `span`. Must run before the span is entered. Failures
/// (no OpenTelemetry layer installed, span filtered out) only mean the trace is not linked.
pub fn set_parent(span: &tracing::Span, cx: Context) {
    if let Err(error) = span.set_parent(cx) {
        tracing::trace!(%error, "trace context not attached to span");
    }
}

// ---------------------------------------------------------------------------------------------
// gRPC metadata (tonic)

/// [`Injector`] for tonic request/response metadata.
#[derive(Debug)]
pub struct MetadataInjector<'a>(pub &'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // Keys come from the propagator and are valid; a value that is not valid ASCII
        // metadata is skipped rather than sent half-formed.
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::from_str(&value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// [`Extractor`] for tonic request metadata.
#[derive(Debug)]
pub struct MetadataExtractor<'a>(pub &'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .and_then(|v| v.to_str().ok())
            .and_then(bounded)
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .map(|k| match k {
                KeyRef::Ascii(k) => k.as_str(),
                KeyRef::Binary(k) => k.as_str(),
            })
            .collect()
    }
}

/// Injects the current span's context into gRPC metadata.
pub fn inject_metadata(metadata: &mut MetadataMap) {
    inject(&current_context(), &mut MetadataInjector(metadata));
}

/// Extracts the caller's context from gRPC metadata.
pub fn extract_metadata(metadata: &MetadataMap) -> Context {
    extract(&MetadataExtractor(metadata))
}

/// tonic client interceptor that adds the current span's trace context to every call:
/// `MyClient::with_interceptor(channel, TracePropagationInterceptor)`.
///
/// To combine it with another interceptor (e.g. one adding a bearer token), call
/// [`inject_metadata`] from that interceptor instead.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracePropagationInterceptor;

impl tonic::service::Interceptor for TracePropagationInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        inject_metadata(request.metadata_mut());
        Ok(request)
    }
}

/// Span for one incoming gRPC call, child of the caller's span when the request carries trace
/// context. Use it on the server: `Server::builder().trace_fn(grpc_server_span)`.
pub fn grpc_server_span(request: &http::Request<()>) -> tracing::Span {
    let path = request.uri().path();
    let span = tracing::info_span!(
        "grpc.request",
        otel.name = %path,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = %path,
    );
    set_parent(&span, extract_http_headers(request.headers()));
    span
}

// ---------------------------------------------------------------------------------------------
// HTTP headers

/// [`Injector`] for `http::HeaderMap`.
#[derive(Debug)]
pub struct HttpHeaderInjector<'a>(pub &'a mut http::HeaderMap);

impl Injector for HttpHeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// [`Extractor`] for `http::HeaderMap`.
#[derive(Debug)]
pub struct HttpHeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HttpHeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .and_then(|v| v.to_str().ok())
            .and_then(bounded)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Injects the current span's context into HTTP headers (outgoing request).
pub fn inject_http_headers(headers: &mut http::HeaderMap) {
    inject(&current_context(), &mut HttpHeaderInjector(headers));
}

/// Extracts the caller's context from HTTP headers (incoming request).
pub fn extract_http_headers(headers: &http::HeaderMap) -> Context {
    extract(&HttpHeaderExtractor(headers))
}

// ---------------------------------------------------------------------------------------------
// NATS headers

/// [`Injector`] for NATS message headers.
#[derive(Debug)]
pub struct NatsHeaderInjector<'a>(pub &'a mut async_nats::HeaderMap);

impl Injector for NatsHeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The fallible parsers, because async-nats' `&str` conversions panic on bad input.
        if let (Ok(name), Ok(value)) = (
            async_nats::HeaderName::from_str(key),
            async_nats::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// [`Extractor`] for NATS message headers.
#[derive(Debug)]
pub struct NatsHeaderExtractor<'a>(pub &'a async_nats::HeaderMap);

impl Extractor for NatsHeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let name = async_nats::HeaderName::from_str(key).ok()?;
        self.0
            .get(name)
            .map(async_nats::HeaderValue::as_str)
            .and_then(bounded)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

/// Injects the current span's context into NATS headers (publish).
pub fn inject_nats_headers(headers: &mut async_nats::HeaderMap) {
    inject(&current_context(), &mut NatsHeaderInjector(headers));
}

/// Extracts the publisher's context from NATS headers (consume).
pub fn extract_nats_headers(headers: &async_nats::HeaderMap) -> Context {
    extract(&NatsHeaderExtractor(headers))
}

// ---------------------------------------------------------------------------------------------
// In-process bus headers

/// [`Injector`] for the in-process bus's `BTreeMap<String, String>` headers (keys lower-cased,
/// like HTTP and NATS, so a message keeps the same headers on either bus).
#[derive(Debug)]
pub struct MapInjector<'a>(pub &'a mut BTreeMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_ascii_lowercase(), value);
    }
}

/// [`Extractor`] for the in-process bus's headers.
#[derive(Debug)]
pub struct MapExtractor<'a>(pub &'a BTreeMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .or_else(|| self.0.get(&key.to_ascii_lowercase()))
            .map(String::as_str)
            .and_then(bounded)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Injects the current span's context into in-process bus headers.
pub fn inject_map(headers: &mut BTreeMap<String, String>) {
    inject(&current_context(), &mut MapInjector(headers));
}

/// Extracts the publisher's context from in-process bus headers.
pub fn extract_map(headers: &BTreeMap<String, String>) -> Context {
    extract(&MapExtractor(headers))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, TraceId, Tracer, TracerProvider};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    /// A context with a real, sampled span from an SDK tracer provider.
    fn sampled_context() -> (SdkTracerProvider, Context) {
        let provider = SdkTracerProvider::builder().build();
        let span = provider.tracer("test").start("outgoing");
        let cx = Context::new().with_span(span);
        assert!(cx.span().span_context().is_valid());
        (provider, cx)
    }

    fn ids(cx: &Context) -> SpanContext {
        cx.span().span_context().clone()
    }

    fn assert_same_parent(sent: &Context, received: &Context) {
        let (sent, received) = (ids(sent), ids(received));
        assert_ne!(received.trace_id(), TraceId::INVALID);
        assert_eq!(received.trace_id(), sent.trace_id());
        assert_eq!(received.span_id(), sent.span_id());
        assert!(received.is_sampled());
        assert!(received.is_remote());
    }

    #[test]
    fn grpc_metadata_roundtrip_keeps_the_trace_id() {
        let (_provider, cx) = sampled_context();
        let mut metadata = MetadataMap::new();
        inject(&cx, &mut MetadataInjector(&mut metadata));
        assert!(metadata.get(TRACEPARENT).is_some());
        assert_same_parent(&cx, &extract_metadata(&metadata));
    }

    #[test]
    fn http_headers_roundtrip_keeps_the_trace_id() {
        let (_provider, cx) = sampled_context();
        let mut headers = http::HeaderMap::new();
        inject(&cx, &mut HttpHeaderInjector(&mut headers));
        assert_same_parent(&cx, &extract_http_headers(&headers));
    }

    #[test]
    fn nats_headers_roundtrip_keeps_the_trace_id() {
        let (_provider, cx) = sampled_context();
        let mut headers = async_nats::HeaderMap::new();
        inject(&cx, &mut NatsHeaderInjector(&mut headers));
        assert!(NatsHeaderExtractor(&headers).keys().contains(&TRACEPARENT));
        assert_same_parent(&cx, &extract_nats_headers(&headers));
    }

    #[test]
    fn bus_map_roundtrip_keeps_the_trace_id() {
        let (_provider, cx) = sampled_context();
        let mut headers = BTreeMap::new();
        inject(&cx, &mut MapInjector(&mut headers));
        assert!(headers.contains_key(TRACEPARENT));
        assert_same_parent(&cx, &extract_map(&headers));
    }

    #[test]
    fn interceptor_injects_the_current_context() {
        let (_provider, cx) = sampled_context();
        let _attached = cx.clone().attach();
        let mut interceptor = TracePropagationInterceptor;
        let request =
            tonic::service::Interceptor::call(&mut interceptor, tonic::Request::new(())).unwrap();
        assert_same_parent(&cx, &extract_metadata(request.metadata()));
    }

    #[test]
    fn tracestate_is_carried() {
        let (_provider, cx) = sampled_context();
        let mut headers = BTreeMap::new();
        inject(&cx, &mut MapInjector(&mut headers));
        headers.insert(TRACESTATE.to_owned(), "vendor=abc".to_owned());
        let received = extract_map(&headers);
        assert_eq!(ids(&received).trace_state().header(), "vendor=abc");
    }

    #[test]
    fn missing_or_malformed_context_starts_a_new_trace() {
        assert!(!ids(&extract_map(&BTreeMap::new())).is_valid());
        let mut headers = http::HeaderMap::new();
        headers.insert(TRACEPARENT, http::HeaderValue::from_static("00-garbage"));
        assert!(!ids(&extract_http_headers(&headers)).is_valid());
    }

    #[test]
    fn oversized_header_values_are_ignored() {
        let (_provider, cx) = sampled_context();
        let mut headers = BTreeMap::new();
        inject(&cx, &mut MapInjector(&mut headers));
        headers.insert(
            TRACESTATE.to_owned(),
            format!("v={}", "a".repeat(MAX_TRACE_HEADER_LEN)),
        );
        let received = extract_map(&headers);
        // The parent survives; the oversized tracestate does not.
        assert_eq!(ids(&received).trace_id(), ids(&cx).trace_id());
        assert_eq!(ids(&received).trace_state().header(), "");
    }

    #[test]
    fn grpc_server_span_without_context_is_a_root() {
        let request = http::Request::builder()
            .uri("/tucdesk.rendezvous.v1.Rendezvous/CreateSession")
            .body(())
            .unwrap();
        // No OpenTelemetry layer in unit tests: the span is still created, unlinked.
        let _span = grpc_server_span(&request);
    }
}
