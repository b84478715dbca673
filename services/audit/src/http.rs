//! The HTTP export for SIEMs: `GET /v1/audit/export?format=ndjson|ocsf&since=<seq>`.
//!
//! Same callers as the gRPC API ([`AccessVerifier`]: a device-bound access token of an owner,
//! admin or auditor; the team from its claims only), same export machinery
//! ([`Audit::start_export`]: a snapshot checkpoint, pages of entries read as the client takes
//! them, one of the replica's export slots) and the same `audit.export` record of the read.
//! The response is chunked NDJSON, one line per entry in seq order from `since` (default 1):
//!
//! - `format=ndjson` (the default): each line exactly `Entry::to_json_line()`, then the
//!   newest checkpoint covering them as `{"checkpoint":…,"sig":…}` (and one interleaved every
//!   10 000 entries), so `tucdesk audit verify` accepts an export from seq 1 as it is;
//! - `format=ocsf`: the OCSF object of each entry and checkpoint
//!   ([`tucdesk_audit_format::ocsf`]).
//!
//! Resuming: a SIEM remembers the last `seq` it stored and asks for `since=<that + 1>`. A
//! response cut short (shutdown, a failed read) ends without the chunked terminator, so the
//! client sees an incomplete transfer, never a short but well-formed export.
//!
//! Errors are a small JSON body `{"error":"<reason>","message":"…"}`: 400 for a malformed or
//! unknown query parameter, 401 (with `WWW-Authenticate: Bearer`) without a valid token, 403
//! for a role that may not read the log, 429 when the replica's export slots are taken.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tucdesk_audit_format::ocsf;

use crate::caller::AccessVerifier;
use crate::error::{AuditError, StartError, reason_label};
use crate::export::ExportPiece;
use crate::service::Audit;
use crate::store::entries::EntryFilter;

/// The export's path.
pub const EXPORT_PATH: &str = "/v1/audit/export";
/// Longest query string accepted (two short parameters fit many times over).
pub const MAX_QUERY_LEN: usize = 256;
/// Content type of both formats: one JSON object per line.
pub const NDJSON_CONTENT_TYPE: &str = "application/x-ndjson";
/// After shutdown, how long open connections get before the listener stops waiting for them.
/// Running exports end at once (their reader stops); this bounds idle keep-alive clients.
pub const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The metric label of HTTP export requests (`tucdesk_audit_requests_total{method}`).
const METRIC_METHOD: &str = "http_export";

/// What a response holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The signed entries and checkpoints, verifiable offline.
    Ndjson,
    /// Their OCSF projection, for SIEM ingestion.
    Ocsf,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ndjson => "ndjson",
            Self::Ocsf => "ocsf",
        }
    }
}

/// A parsed export query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportQuery {
    pub format: Format,
    /// First seq to return (1-based).
    pub since: u64,
}

fn bad_query(what: &str) -> AuditError {
    AuditError::InvalidArgument(what.to_owned())
}

/// Parses `since`: a decimal seq from 1 to 2^63 − 1, digits only, no sign, no leading zero.
fn parse_since(value: &str) -> Result<u64, AuditError> {
    let bad = || bad_query("since must be a sequence number from 1 (digits only)");
    if value.is_empty()
        || value.len() > 19
        || value.starts_with('0')
        || !value.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let since: u64 = value.parse().map_err(|_| bad())?;
    if i64::try_from(since).is_err() {
        return Err(bad());
    }
    Ok(since)
}

/// Parses the query string strictly: only `format` and `since`, each at most once, no
/// percent-encoding, nothing empty.
pub fn parse_query(raw: Option<&str>) -> Result<ExportQuery, AuditError> {
    let mut query = ExportQuery {
        format: Format::Ndjson,
        since: 1,
    };
    let raw = raw.unwrap_or_default();
    if raw.is_empty() {
        return Ok(query);
    }
    if raw.len() > MAX_QUERY_LEN {
        return Err(bad_query("the query string is too long"));
    }
    let (mut format_seen, mut since_seen) = (false, false);
    for pair in raw.split('&') {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| bad_query("every query parameter needs a value"))?;
        match key {
            "format" if !format_seen => {
                format_seen = true;
                query.format = match value {
                    "ndjson" => Format::Ndjson,
                    "ocsf" => Format::Ocsf,
                    _ => return Err(bad_query("format must be ndjson or ocsf")),
                };
            }
            "since" if !since_seen => {
                since_seen = true;
                query.since = parse_since(value)?;
            }
            "format" | "since" => return Err(bad_query("a query parameter is repeated")),
            _ => {
                return Err(bad_query(
                    "unknown query parameter (only format and since are accepted)",
                ));
            }
        }
    }
    Ok(query)
}

/// The HTTP status of an error.
fn status_of(err: &AuditError) -> StatusCode {
    match err {
        AuditError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        AuditError::Unauthenticated(_) | AuditError::TokenExpired => StatusCode::UNAUTHORIZED,
        AuditError::PermissionDenied(_) => StatusCode::FORBIDDEN,
        AuditError::NotFound(_) => StatusCode::NOT_FOUND,
        AuditError::LimitExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
        AuditError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        AuditError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `{"error":"<reason>","message":"…"}` with the error's status; internal causes are never in
/// the message ([`AuditError::Internal`] displays as "internal error").
pub fn error_response(err: &AuditError) -> Response {
    let status = status_of(err);
    let body = json!({ "error": reason_label(err.reason()), "message": err.to_string() });
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tucdesk-audit\""),
        );
    }
    response
}

#[derive(Debug, Clone)]
struct HttpState {
    audit: Audit,
    access: AccessVerifier,
    shutdown: CancellationToken,
}

/// The HTTP API: the export, and JSON errors for any other path or method.
pub fn router(audit: Audit, access: AccessVerifier, shutdown: CancellationToken) -> Router {
    let state = HttpState {
        audit,
        access,
        shutdown,
    };
    Router::new()
        .route(
            EXPORT_PATH,
            on(MethodFilter::GET, export).fallback(method_not_allowed),
        )
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> Response {
    error_response(&AuditError::NotFound("path"))
}

async fn method_not_allowed() -> Response {
    let body = json!({ "error": "method_not_allowed", "message": "only GET is served here" });
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::ALLOW, "GET"),
        ],
        body.to_string(),
    )
        .into_response()
}

async fn export(
    State(state): State<HttpState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let outcome = start(&state, &headers, query.as_deref()).await;
    let label = match &outcome {
        Ok(_) => "ok".to_owned(),
        Err(err) => reason_label(err.reason()),
    };
    state
        .audit
        .metrics()
        .requests
        .with_label_values(&[METRIC_METHOD, &label])
        .inc();
    match outcome {
        Ok(response) => response,
        Err(err) => error_response(&err),
    }
}

/// Authenticates (first: nothing is parsed for an unauthenticated caller), parses the query,
/// starts the export and answers with its stream.
async fn start(
    state: &HttpState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response, AuditError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|value| {
            value
                .to_str()
                .map_err(|_| AuditError::Unauthenticated("malformed authorization header"))
        })
        .transpose()?;
    let caller = crate::caller::caller_from_authorization(&state.access, authorization).await?;
    let query = parse_query(query)?;
    let filter = EntryFilter {
        from_seq: i64::try_from(query.since).unwrap_or(i64::MAX),
        ..EntryFilter::default()
    };
    let extra = [
        ("format", Value::from(query.format.as_str())),
        ("interface", Value::from("http")),
    ];
    let pieces = state
        .audit
        .start_export(&caller, filter, &extra, state.shutdown.clone())
        .await?;
    let format = query.format;
    let lines = tokio_stream::wrappers::ReceiverStream::new(pieces).map(move |piece| {
        piece.and_then(|piece| line(&piece, format)).map_err(|err| {
            // The status line is long gone: cutting the body short is the only signal left.
            tracing::warn!(error = %err, "HTTP audit export ended early");
            std::io::Error::other(err.to_string())
        })
    });
    Ok((
        [
            (header::CONTENT_TYPE, NDJSON_CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Body::from_stream(lines),
    )
        .into_response())
}

/// One NDJSON line (with its newline) of a piece in `format`.
fn line(piece: &ExportPiece, format: Format) -> Result<Bytes, AuditError> {
    let encoded = match (piece, format) {
        (ExportPiece::Entry { entry, .. }, Format::Ndjson) => entry.to_json_line(),
        (ExportPiece::Checkpoint(cp), Format::Ndjson) => serde_json::to_string(cp),
        (ExportPiece::Entry { entry, .. }, Format::Ocsf) => {
            serde_json::to_string(&ocsf::entry_to_ocsf(entry))
        }
        (ExportPiece::Checkpoint(cp), Format::Ocsf) => {
            serde_json::to_string(&ocsf::checkpoint_to_ocsf(cp))
        }
    }
    .map_err(|err| AuditError::internal("encoding an export line", err))?;
    let mut bytes = encoded.into_bytes();
    bytes.push(b'\n');
    Ok(Bytes::from(bytes))
}

/// Serves the HTTP export on `listener` until `shutdown`; then open connections get
/// [`HTTP_SHUTDOWN_GRACE`] to finish.
pub async fn serve(
    audit: Audit,
    access: AccessVerifier,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "audit HTTP export listening");
    }
    let app = router(audit, access, shutdown.clone());
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    let grace_expired = async {
        shutdown.cancelled().await;
        tokio::time::sleep(HTTP_SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = server => served.map_err(StartError::Http),
        () = grace_expired => {
            tracing::warn!(grace = ?HTTP_SHUTDOWN_GRACE, "audit HTTP connections still open at shutdown; closing");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn queries_are_parsed_strictly() {
        let ok = |raw: Option<&str>| parse_query(raw).unwrap();
        assert_eq!(
            ok(None),
            ExportQuery {
                format: Format::Ndjson,
                since: 1
            }
        );
        assert_eq!(ok(Some("")), ok(None));
        assert_eq!(
            ok(Some("format=ocsf&since=42")),
            ExportQuery {
                format: Format::Ocsf,
                since: 42
            }
        );
        assert_eq!(ok(Some("since=9223372036854775807")).since, i64::MAX as u64);
        for bad in [
            "since=0",
            "since=-1",
            "since=+1",
            "since=01",
            "since=1.0",
            "since=",
            "since=9223372036854775808",
            "since=99999999999999999999",
            "since=1&since=2",
            "format=json",
            "format=NDJSON",
            "format=ndjson&format=ocsf",
            "format",
            "limit=10",
            "since=1&",
            "&since=1",
            "since=%31",
            "team=other",
        ] {
            assert!(
                matches!(parse_query(Some(bad)), Err(AuditError::InvalidArgument(_))),
                "{bad}"
            );
        }
        let long = format!("since=1&format=ndjson{}", "&x=1".repeat(100));
        assert!(parse_query(Some(&long)).is_err());
    }

    #[test]
    fn errors_map_to_http_statuses_with_a_small_json_body() {
        for (err, status) in [
            (bad_query("x"), 400),
            (AuditError::Unauthenticated("no"), 401),
            (AuditError::TokenExpired, 401),
            (AuditError::PermissionDenied("no"), 403),
            (AuditError::LimitExceeded("busy"), 429),
            (
                AuditError::internal("database error", "10.0.0.5 refused"),
                500,
            ),
        ] {
            let response = error_response(&err);
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(
                response.headers().contains_key(header::WWW_AUTHENTICATE),
                status == 401
            );
        }
    }
}
