//! The one rule for protocol versions on connect.

use std::fmt;

use crate::v1::{ErrorDetail, RejectReason};

/// A peer speaks a protocol version below the server's floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateRequired {
    /// The version the peer sent (0 = none).
    pub peer: u32,
    /// The lowest version the server accepts.
    pub floor: u32,
}

impl UpdateRequired {
    /// The `ErrorDetail` to send: `REJECT_REASON_UPDATE_REQUIRED` with the
    /// floor, ready for `Rejected`, `RelayRejected` or `tonic::Status`
    /// details.
    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            reason: RejectReason::UpdateRequired as i32,
            message: self.to_string(),
            min_protocol_version: self.floor,
            ..ErrorDetail::default()
        }
    }
}

impl fmt::Display for UpdateRequired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "protocol version {} is not supported; update to a release speaking version {} or newer",
            self.peer, self.floor
        )
    }
}

impl std::error::Error for UpdateRequired {}

/// Checks a peer's protocol version against a server floor.
///
/// `0` (field not sent, i.e. a build older than versioning) is below every
/// floor, even a misconfigured floor of 0.
pub fn check_peer_version(peer: u32, floor: u32) -> Result<(), UpdateRequired> {
    if peer >= floor && peer != 0 {
        Ok(())
    } else {
        Err(UpdateRequired {
            peer,
            floor: floor.max(1),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{MIN_AGENT_PROTOCOL_VERSION, PROTOCOL_VERSION};

    #[test]
    fn current_version_passes_the_default_floor() {
        assert!(check_peer_version(PROTOCOL_VERSION, MIN_AGENT_PROTOCOL_VERSION).is_ok());
    }

    #[test]
    fn missing_version_gets_update_required() {
        let err = check_peer_version(0, MIN_AGENT_PROTOCOL_VERSION).unwrap_err();
        let detail = err.detail();
        assert_eq!(detail.reason(), RejectReason::UpdateRequired);
        assert_eq!(detail.min_protocol_version, MIN_AGENT_PROTOCOL_VERSION);
    }

    #[test]
    fn old_agent_gets_update_required_with_the_floor() {
        let err = check_peer_version(3, 5).unwrap_err();
        assert_eq!(err, UpdateRequired { peer: 3, floor: 5 });
        assert_eq!(err.detail().min_protocol_version, 5);
        assert!(check_peer_version(5, 5).is_ok());
        assert!(check_peer_version(6, 5).is_ok());
    }

    #[test]
    fn zero_is_rejected_even_with_a_zero_floor() {
        let err = check_peer_version(0, 0).unwrap_err();
        assert_eq!(err.detail().min_protocol_version, 1);
    }
}
