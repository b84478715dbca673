//! How the agent and the viewer reach TucDesk's gRPC services: channels with bounded connect
//! and call times, TLS for `https://` (platform roots plus an optional CA file), and one-line
//! descriptions of the errors servers return.

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tucdesk_proto::v1::{ErrorDetail, RejectReason};

/// Bound on connecting to a service.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a unary call. Streams (the agent link, approval waits) set no per-call timeout.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RpcSetupError {
    #[error(
        "{0:?} is not a usable server URL (expected https://host:port or http://127.0.0.1:port)"
    )]
    BadUrl(String),
    #[error("plain http:// is only allowed to loopback; use https:// for {0}")]
    PlainRemote(String),
    #[error("reading the CA file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// A lazily connecting channel to `url`. `streaming` leaves out the per-call timeout.
pub fn channel(
    url: &str,
    ca_file: Option<&Path>,
    streaming: bool,
) -> Result<Channel, RpcSetupError> {
    let parsed = url::Url::parse(url).map_err(|_| RpcSetupError::BadUrl(url.to_owned()))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(RpcSetupError::BadUrl(url.to_owned())),
    };
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|_| RpcSetupError::BadUrl(url.to_owned()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    if !streaming {
        endpoint = endpoint.timeout(CALL_TIMEOUT);
    }
    match parsed.scheme() {
        "https" => {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(path) = ca_file {
                let pem = std::fs::read(path).map_err(|err| RpcSetupError::CaFile {
                    path: path.display().to_string(),
                    message: err.to_string(),
                })?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|err| RpcSetupError::Tls(err.to_string()))?;
        }
        "http" if loopback => {}
        "http" => return Err(RpcSetupError::PlainRemote(url.to_owned())),
        _ => return Err(RpcSetupError::BadUrl(url.to_owned())),
    }
    Ok(endpoint.connect_lazy())
}

/// The `ErrorDetail` a status carries (default when none).
pub fn detail(status: &tonic::Status) -> ErrorDetail {
    prost::Message::decode(status.details()).unwrap_or_default()
}

/// The reject reason a status carries.
pub fn reason(status: &tonic::Status) -> RejectReason {
    RejectReason::try_from(detail(status).reason).unwrap_or(RejectReason::Unspecified)
}

/// A reason in words: `POLICY_DENIED` → "policy denied".
pub fn reason_words(reason: RejectReason) -> String {
    reason
        .as_str_name()
        .trim_start_matches("REJECT_REASON_")
        .to_ascii_lowercase()
        .replace('_', " ")
}

/// One line for people: what failed and why, with the server's reason, the policy rule that
/// decided, and when to retry where the server said so. Server text is made printable.
pub fn describe(status: &tonic::Status) -> String {
    let detail = detail(status);
    let reason = RejectReason::try_from(detail.reason).unwrap_or(RejectReason::Unspecified);
    let message = if detail.message.is_empty() {
        status.message()
    } else {
        detail.message.as_str()
    };
    let mut line = match (reason, status.code()) {
        (RejectReason::Unspecified, tonic::Code::Unavailable) => {
            format!(
                "the server is unreachable ({})",
                crate::ws::printable(message)
            )
        }
        (RejectReason::Unspecified, code) => {
            format!("{code:?}: {}", crate::ws::printable(message))
        }
        (reason, _) => format!(
            "{}: {}",
            reason_words(reason),
            crate::ws::printable(message)
        ),
    };
    if let Some(result) = &detail.policy_result
        && !result.rule.is_empty()
    {
        line.push_str(&format!(
            " (rule {:?}: {})",
            crate::ws::printable(&result.rule),
            crate::ws::printable(&result.reason)
        ));
    }
    if detail.retry_after_ms > 0 {
        line.push_str(&format!(
            "; retry in {} s",
            detail.retry_after_ms.div_ceil(1000)
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prost::Message as _;
    use tucdesk_proto::v1::{PolicyDecision, PolicyResult};

    fn status(code: tonic::Code, detail: ErrorDetail) -> tonic::Status {
        tonic::Status::with_details(code, "fallback", detail.encode_to_vec().into())
    }

    #[test]
    fn a_policy_denial_names_its_rule_and_reason_on_one_line() {
        let denied = status(
            tonic::Code::PermissionDenied,
            ErrorDetail {
                reason: RejectReason::PolicyDenied as i32,
                message: "the policy refused this session".into(),
                policy_result: Some(PolicyResult {
                    decision: PolicyDecision::Deny as i32,
                    rule: "change-freeze".into(),
                    reason: "Change freeze until Monday".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        let line = describe(&denied);
        assert_eq!(
            line,
            "policy denied: the policy refused this session (rule \"change-freeze\": Change freeze until Monday)"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn retry_hints_and_unreachable_servers_are_said_plainly() {
        let limited = status(
            tonic::Code::ResourceExhausted,
            ErrorDetail {
                reason: RejectReason::RateLimited as i32,
                message: "too many attempts".into(),
                retry_after_ms: 1500,
                ..Default::default()
            },
        );
        assert_eq!(
            describe(&limited),
            "rate limited: too many attempts; retry in 2 s"
        );
        let down = tonic::Status::unavailable("connection refused");
        assert_eq!(
            describe(&down),
            "the server is unreachable (connection refused)"
        );
    }

    #[test]
    fn server_text_cannot_drive_the_terminal() {
        let hostile = status(
            tonic::Code::InvalidArgument,
            ErrorDetail {
                reason: RejectReason::InvalidArgument as i32,
                message: "bad\u{1b}]0;pwned\u{7}\nname".into(),
                ..Default::default()
            },
        );
        let line = describe(&hostile);
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }

    #[tokio::test]
    async fn plain_http_is_only_for_loopback() {
        assert!(channel("http://127.0.0.1:7410", None, false).is_ok());
        assert!(matches!(
            channel("http://rdv.example.com:443", None, false),
            Err(RpcSetupError::PlainRemote(_))
        ));
        assert!(matches!(
            channel("ftp://x", None, false),
            Err(RpcSetupError::BadUrl(_))
        ));
    }
}
