//! Reusable `clap` pieces that every service flattens into its own `#[derive(Parser)]` config.
//!
//! ```
//! use clap::Parser;
//! use tucdesk_svc::config::{OpsArgs, TelemetryArgs, parse_duration};
//!
//! /// The rendezvous service.
//! #[derive(Debug, Parser)]
//! // A flattened argument's default can be changed per service without touching this crate.
//! #[command(mut_arg("service_name", |a| a.default_value("rendezvous")))]
//! struct Config {
//!     #[command(flatten)]
//!     telemetry: TelemetryArgs,
//!     #[command(flatten)]
//!     ops: OpsArgs,
//!     /// How long a negotiation may wait for the agent.
//!     #[arg(long, env = "TUCDESK_NEGOTIATION_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
//!     negotiation_timeout: std::time::Duration,
//! }
//!
//! let config = Config::try_parse_from(["rendezvous"]).unwrap();
//! assert_eq!(config.telemetry.service_name, "rendezvous");
//! ```
//!
//! Values come from flags or `TUCDESK_…` environment variables (flags win). Nothing here
//! reads or writes the process environment outside clap, and nothing is global.

use std::net::SocketAddr;
use std::time::Duration;

/// Default log filter when `TUCDESK_LOG` is unset: our own and our dependencies' `info`.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// Default service name; each service overrides it (see the module example).
pub const DEFAULT_SERVICE_NAME: &str = "tucdesk";

/// Default address of the ops HTTP server (`/metrics`, `/healthz`, `/readyz`).
///
/// Loopback by default: the ops port is unauthenticated and read-only, so exposing it is an
/// explicit decision (`TUCDESK_OPS_ADDR=0.0.0.0:9090` in containers, behind the cluster network).
pub const DEFAULT_OPS_ADDR: &str = "127.0.0.1:9090";

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable with colours when stderr is a terminal, JSON otherwise.
    #[default]
    Auto,
    /// Human-readable lines, coloured on a terminal.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logging and tracing options shared by every service.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// Log format: `auto` (pretty on a terminal, JSON otherwise), `pretty` or `json`.
    #[arg(
        long = "log-format",
        env = "TUCDESK_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Auto
    )]
    pub log_format: LogFormat,

    /// Log filter in `tracing` EnvFilter syntax, e.g. `info,tucdesk_rendezvous=debug`.
    #[arg(long = "log", env = "TUCDESK_LOG", default_value = DEFAULT_LOG_FILTER)]
    pub log_filter: String,

    /// Service name used in logs, traces (`service.name`) and metrics (`service` label).
    #[arg(long = "service-name", env = "TUCDESK_SERVICE_NAME", default_value = DEFAULT_SERVICE_NAME)]
    pub service_name: String,

    /// OTLP/gRPC collector endpoint for traces, e.g. `http://otel-collector:4317`.
    /// Trace export is off when unset or empty.
    #[arg(long = "otlp-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

impl TelemetryArgs {
    /// Arguments for a test or a tool: `info` filter, `auto` format, no trace export.
    pub fn new(service_name: impl Into<String>) -> Self {
        Self {
            log_format: LogFormat::Auto,
            log_filter: DEFAULT_LOG_FILTER.to_owned(),
            service_name: service_name.into(),
            otlp_endpoint: None,
        }
    }

    /// The OTLP endpoint if trace export is configured (an empty value counts as unset, so
    /// `OTEL_EXPORTER_OTLP_ENDPOINT=` in a compose file turns export off).
    pub fn otlp_endpoint(&self) -> Option<&str> {
        self.otlp_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
    }
}

/// Options of the ops HTTP server every service runs.
#[derive(Debug, Clone, clap::Args)]
pub struct OpsArgs {
    /// Listen address of the ops HTTP server (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long = "ops-addr", env = "TUCDESK_OPS_ADDR", default_value = DEFAULT_OPS_ADDR)]
    pub ops_addr: SocketAddr,
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationParseError {
    #[error("empty duration")]
    Empty,
    #[error(
        "invalid duration {0:?}: expected a number followed by a unit, e.g. 250ms, 30s, 5m, 1h30m"
    )]
    Invalid(String),
    #[error("unknown unit {unit:?} in duration {input:?}: use ms, s, m, h or d")]
    UnknownUnit { input: String, unit: String },
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parse a human duration: one or more `<integer><unit>` parts with unit `ms`, `s`, `m`, `h`
/// or `d`, e.g. `250ms`, `30s`, `5m`, `1h30m`. A bare number is rejected on purpose: whether
/// `30` means seconds or milliseconds is exactly the ambiguity that causes outages.
///
/// Use it as `#[arg(value_parser = parse_duration)]`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationParseError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationParseError::Empty);
    }
    let invalid = || DurationParseError::Invalid(input.to_owned());
    let overflow = || DurationParseError::Overflow(input.to_owned());

    let mut total_ms: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(invalid)?;
        if digits_end == 0 {
            return Err(invalid());
        }
        let (digits, after) = rest.split_at(digits_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let value: u64 = digits.parse().map_err(|_| overflow())?;
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            other => {
                return Err(DurationParseError::UnknownUnit {
                    input: input.to_owned(),
                    unit: other.to_owned(),
                });
            }
        };
        let part = value.checked_mul(unit_ms).ok_or_else(overflow)?;
        total_ms = total_ms.checked_add(part).ok_or_else(overflow)?;
        rest = next;
    }
    Ok(Duration::from_millis(total_ms))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(mut_arg("service_name", |a| a.default_value("rendezvous")))]
    struct TestConfig {
        #[command(flatten)]
        telemetry: TelemetryArgs,
        #[command(flatten)]
        ops: OpsArgs,
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        timeout: Duration,
    }

    #[test]
    fn parses_single_unit_durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
    }

    #[test]
    fn parses_compound_durations() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(
            parse_duration("1m30s500ms"),
            Ok(Duration::from_millis(90_500))
        );
    }

    #[test]
    fn rejects_ambiguous_or_malformed_durations() {
        assert_eq!(parse_duration(""), Err(DurationParseError::Empty));
        assert!(matches!(
            parse_duration("30"),
            Err(DurationParseError::Invalid(_))
        ));
        assert!(matches!(
            parse_duration("s"),
            Err(DurationParseError::Invalid(_))
        ));
        assert!(matches!(
            parse_duration("-5s"),
            Err(DurationParseError::Invalid(_))
        ));
        assert!(matches!(
            parse_duration("1.5s"),
            Err(DurationParseError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("5 s"),
            Err(DurationParseError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("5sec"),
            Err(DurationParseError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("99999999999999999999s"),
            Err(DurationParseError::Overflow(_))
        ));
        assert!(matches!(
            parse_duration("999999999999999d"),
            Err(DurationParseError::Overflow(_))
        ));
    }

    #[test]
    fn flattened_args_have_defaults_and_per_service_name() {
        let config = TestConfig::try_parse_from(["svc"]).unwrap();
        assert_eq!(config.telemetry.log_format, LogFormat::Auto);
        assert_eq!(config.telemetry.log_filter, DEFAULT_LOG_FILTER);
        assert_eq!(config.telemetry.service_name, "rendezvous");
        assert_eq!(config.ops.ops_addr, DEFAULT_OPS_ADDR.parse().unwrap());
        assert_eq!(config.timeout, Duration::from_secs(30));
    }

    #[test]
    fn flags_override_defaults() {
        let config = TestConfig::try_parse_from([
            "svc",
            "--log-format",
            "json",
            "--log",
            "debug",
            "--ops-addr",
            "0.0.0.0:9100",
            "--otlp-endpoint",
            "http://collector:4317",
            "--timeout",
            "250ms",
        ])
        .unwrap();
        assert_eq!(config.telemetry.log_format, LogFormat::Json);
        assert_eq!(config.telemetry.log_filter, "debug");
        assert_eq!(config.ops.ops_addr, "0.0.0.0:9100".parse().unwrap());
        assert_eq!(
            config.telemetry.otlp_endpoint(),
            Some("http://collector:4317")
        );
        assert_eq!(config.timeout, Duration::from_millis(250));
    }

    #[test]
    fn bad_duration_flag_is_a_clap_error() {
        let err = TestConfig::try_parse_from(["svc", "--timeout", "30"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn empty_otlp_endpoint_means_disabled() {
        let mut args = TelemetryArgs::new("x");
        assert_eq!(args.otlp_endpoint(), None);
        args.otlp_endpoint = Some("  ".to_owned());
        assert_eq!(args.otlp_endpoint(), None);
    }
}
