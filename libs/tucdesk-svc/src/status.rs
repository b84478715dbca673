//! gRPC errors the way every service reports them: the status code for the kind of failure,
//! the message, and an `ErrorDetail` in the status details (the machine-readable reason and
//! hints such as when to retry), so clients never parse messages.

use std::time::Duration;

use prost::Message as _;
use tonic::{Code, Status};
use tucdesk_proto::v1::{ErrorDetail, RejectReason};

/// A status with `code` whose message is `detail.message` and whose details carry `detail`.
pub fn with_detail(code: Code, detail: ErrorDetail) -> Status {
    let message = detail.message.clone();
    Status::with_details(code, message, detail.encode_to_vec().into())
}

/// The detail for `reason` with `message`; the hints stay unset.
pub fn detail(reason: RejectReason, message: String) -> ErrorDetail {
    ErrorDetail {
        reason: reason as i32,
        message,
        ..Default::default()
    }
}

/// `ErrorDetail.retry_after_ms` for a wait.
pub fn retry_after_ms(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)
}

/// The metric label (and HTTP `error` field) of a reject reason: its proto name without the
/// prefix, lowercased.
pub fn reason_label(reason: RejectReason) -> String {
    reason
        .as_str_name()
        .trim_start_matches("REJECT_REASON_")
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_detail_rides_in_the_status() {
        let mut detail = detail(RejectReason::RateLimited, "slow down".into());
        detail.retry_after_ms = retry_after_ms(Duration::from_secs(3));
        let status = with_detail(Code::ResourceExhausted, detail.clone());
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "slow down");
        assert_eq!(ErrorDetail::decode(status.details()).unwrap(), detail);
        assert_eq!(reason_label(RejectReason::RateLimited), "rate_limited");
        assert_eq!(retry_after_ms(Duration::MAX), u64::MAX);
    }
}
