//! Process-wide logging and tracing setup: `tracing` logs to stderr (pretty on a terminal,
//! JSON otherwise), an `EnvFilter`, OpenTelemetry spans with W3C trace context, and OTLP/gRPC
//! export when an endpoint is configured.
//!
//! ```no_run
//! # async fn run(args: tucdesk_svc::config::TelemetryArgs) -> Result<(), Box<dyn std::error::Error>> {
//! // First thing in `main`, inside the Tokio runtime (the OTLP client needs it).
//! let _telemetry = tucdesk_svc::telemetry::init(&args)?;
//! // … run the service; dropping the guard at the end of `main` flushes pending spans.
//! # Ok(()) }
//! ```
//!
//! Spans get OpenTelemetry ids even when nothing is exported, so a service without a
//! collector still passes its callers' trace context on to the services it calls.

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::level_filters::LevelFilter;
use tracing_log::AsLog;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogFormat, TelemetryArgs};
use crate::redact::redact_url;

/// How long dropping [`TelemetryGuard`] may block to export the last spans. Bounded so an
/// unreachable collector cannot hold up process exit; it fits inside the shutdown budget
/// ([`crate::shutdown::DEFAULT_DRAIN_DEADLINE`] plus this stays under Kubernetes' 30 s).
pub const TRACE_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// Spans (and events inside them) at this level or above become OpenTelemetry spans,
/// whatever the log filter says: trace context must flow even when logs are turned down, and
/// `debug` spans would multiply export volume.
pub const TRACE_LEVEL: LevelFilter = LevelFilter::INFO;

/// Version reported as `service.version` (all workspace crates share one version).
const SERVICE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why telemetry could not be set up. Endpoints in messages are redacted.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {filter:?}: {source}")]
    InvalidFilter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("invalid OTLP endpoint {endpoint}: expected an http:// or https:// URL")]
    InvalidEndpoint { endpoint: String },
    #[error("cannot set up the OTLP exporter for {endpoint}: {message}")]
    Exporter { endpoint: String, message: String },
    #[error("OTLP export needs a Tokio runtime: call telemetry::init from inside it")]
    NoRuntime,
    #[error("telemetry is already initialised in this process")]
    AlreadyInitialized,
}

/// Keeps the tracer provider alive; dropping it flushes and shuts it down (bounded by
/// [`TRACE_SHUTDOWN_TIMEOUT`]). Hold it in `main` until the service has stopped.
///
/// Drop it while the (multi-threaded) Tokio runtime is still running, e.g. at the end of an
/// async `main`: the final export runs on the runtime while the dropping thread waits.
#[derive(Debug)]
#[must_use = "dropping the guard shuts trace export down"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl TelemetryGuard {
    /// Whether spans are exported over OTLP.
    pub fn is_exporting(&self) -> bool {
        self.exporting
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown_with_timeout(TRACE_SHUTDOWN_TIMEOUT) {
            tracing::warn!(%error, "trace export did not shut down cleanly; recent spans may be lost");
        }
    }
}

/// Installs rustls' *ring* provider as the process default, once; later calls (and calls
/// after another component installed a provider) do nothing.
///
/// With both ring and aws-lc-rs compiled in (different dependencies pick different ones)
/// rustls cannot choose a default by itself and panics when a TLS config is built without an
/// explicit provider. Call this at the top of `main`; [`init`] calls it too.
pub fn install_crypto_provider() {
    // `install_default` is itself once-only; its `Err` means a provider is already set, which
    // is exactly the state we want.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Whether logs should be JSON for this format, given whether stderr is a terminal.
pub fn wants_json(format: LogFormat, stderr_is_terminal: bool) -> bool {
    match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !stderr_is_terminal,
    }
}

/// Sets up logging and tracing for the process. Call once, early in `main`, from inside the
/// Tokio runtime; a second call returns [`TelemetryError::AlreadyInitialized`] and changes
/// nothing (convenient in tests).
pub fn init(args: &TelemetryArgs) -> Result<TelemetryGuard, TelemetryError> {
    install_crypto_provider();

    let filter =
        EnvFilter::try_new(&args.log_filter).map_err(|source| TelemetryError::InvalidFilter {
            filter: args.log_filter.clone(),
            source,
        })?;

    let provider = tracer_provider(args)?;
    let exporting = args.otlp_endpoint().is_some();
    let tracer = provider.tracer(args.service_name.clone());

    let stderr_is_terminal = std::io::stderr().is_terminal();
    let json = wants_json(args.log_format, stderr_is_terminal);
    let log_layer: Box<dyn Layer<Registry> + Send + Sync> = if json {
        Box::new(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(std::io::stderr),
        )
    } else {
        Box::new(
            tracing_subscriber::fmt::layer()
                .with_ansi(stderr_is_terminal)
                .with_writer(std::io::stderr),
        )
    };
    // Separate filters: the log filter decides what is printed, not which spans exist, so
    // `TUCDESK_LOG=warn` does not break trace propagation.
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(TRACE_LEVEL);
    let subscriber = tracing_subscriber::registry()
        .with(log_layer.with_filter(filter))
        .with(otel_layer);
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        // Someone (an earlier init, a test harness) owns the global subscriber. Leave it and
        // the global propagator/provider exactly as they are.
        let _ = provider.shutdown_with_timeout(TRACE_SHUTDOWN_TIMEOUT);
        return Err(TelemetryError::AlreadyInitialized);
    }
    // Route records of `log`-based dependencies into the same pipeline. Done after the
    // subscriber so `log` gets its max level, and separately so that a logger installed by
    // someone else costs us those records, not the whole setup.
    let log_bridge = tracing_log::LogTracer::builder()
        .with_max_level(LevelFilter::current().as_log())
        .init();

    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());

    tracing::info!(
        service = %args.service_name,
        log_format = if json { "json" } else { "pretty" },
        otlp_endpoint = args.otlp_endpoint().map(redact_url).as_deref().unwrap_or("off"),
        "telemetry initialised"
    );
    if let Err(error) = log_bridge {
        tracing::warn!(%error, "records of `log`-based libraries are not captured");
    }
    Ok(TelemetryGuard {
        provider,
        exporting,
    })
}

/// The tracer provider: with a batch OTLP/gRPC exporter when an endpoint is set, without any
/// processor otherwise (spans still get ids so context propagates).
fn tracer_provider(args: &TelemetryArgs) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = Resource::builder()
        .with_service_name(args.service_name.clone())
        .with_attribute(KeyValue::new("service.version", SERVICE_VERSION))
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);

    let Some(endpoint) = args.otlp_endpoint() else {
        return Ok(builder.build());
    };
    let redacted = redact_url(endpoint);
    let scheme = url::Url::parse(endpoint)
        .map(|u| u.scheme().to_owned())
        .map_err(|_| TelemetryError::InvalidEndpoint {
            endpoint: redacted.clone(),
        })?;
    if scheme != "http" && scheme != "https" {
        return Err(TelemetryError::InvalidEndpoint { endpoint: redacted });
    }
    // The tonic channel spawns its connection task on the current runtime.
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(TelemetryError::NoRuntime);
    }

    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint);
    if scheme == "https" {
        // Verify the collector against the system trust store (where operators put a
        // private CA), never skip verification.
        exporter = exporter.with_tls_config(
            tonic::transport::ClientTlsConfig::new()
                .with_enabled_roots()
                .assume_http2(true),
        );
    }
    let exporter = exporter.build().map_err(|error| TelemetryError::Exporter {
        // The SDK's message may quote the raw endpoint, credentials included.
        message: error.to_string().replace(endpoint, &redacted),
        endpoint: redacted.clone(),
    })?;
    Ok(builder.with_batch_exporter(exporter).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_format_follows_the_terminal() {
        assert!(!wants_json(LogFormat::Auto, true));
        assert!(wants_json(LogFormat::Auto, false));
        assert!(wants_json(LogFormat::Json, true));
        assert!(!wants_json(LogFormat::Pretty, false));
    }

    #[test]
    fn bad_filter_is_an_error_not_a_panic() {
        let mut args = TelemetryArgs::new("test");
        args.log_filter = "info,tucdesk=notalevel".to_owned();
        assert!(matches!(
            init(&args),
            Err(TelemetryError::InvalidFilter { .. })
        ));
    }

    #[test]
    fn endpoint_errors_are_redacted() {
        let mut args = TelemetryArgs::new("test");
        args.otlp_endpoint = Some("ftp://user:hunter2@collector:4317".to_owned());
        let err = tracer_provider(&args).err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains("ftp://user:***@collector:4317"), "{err}");
        assert!(!err.contains("hunter2"));
    }

    #[test]
    fn export_outside_a_runtime_is_an_error_not_a_panic() {
        let mut args = TelemetryArgs::new("test");
        args.otlp_endpoint = Some("http://127.0.0.1:4317".to_owned());
        assert!(matches!(
            tracer_provider(&args),
            Err(TelemetryError::NoRuntime)
        ));
    }

    #[test]
    fn crypto_provider_install_is_idempotent() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
