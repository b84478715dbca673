//! Which path the selected ICE candidate pair is: direct, or through a TURN relay.

use std::sync::Arc;

use tucdesk_proto::v1::Path;
use webrtc::peer_connection::{PeerConnection, RTCIceCandidate, RTCIceCandidateType};

/// The transport address of a signaled relay candidate (`candidate:<foundation> <component>
/// <protocol> <priority> <address> <port> typ relay …`). The selected pair may name such a
/// candidate as peer-reflexive when the peer's checks arrive before its candidate does.
pub(crate) fn relay_address(candidate: &str) -> Option<(String, u16)> {
    let text = candidate.strip_prefix("candidate:").unwrap_or(candidate);
    let fields: Vec<&str> = text.split_ascii_whitespace().take(8).collect();
    match fields.as_slice() {
        [_, _, _, _, address, port, "typ", "relay"] => {
            Some(((*address).to_owned(), port.parse().ok()?))
        }
        _ => None,
    }
}

/// `Path::Turn` when either end of the pair is a TURN relay, `Path::Direct` otherwise.
pub(crate) fn classify(
    local: &RTCIceCandidate,
    remote: &RTCIceCandidate,
    remote_relays: &[(String, u16)],
) -> Path {
    let relayed = local.typ == RTCIceCandidateType::Relay
        || remote.typ == RTCIceCandidateType::Relay
        || remote_relays
            .iter()
            .any(|(address, port)| *address == remote.address && *port == remote.port);
    if relayed { Path::Turn } else { Path::Direct }
}

pub(crate) async fn selected_path(
    pc: &Arc<dyn PeerConnection>,
    remote_relays: &[(String, u16)],
) -> Path {
    let Some(sctp) = pc.sctp().await else {
        return Path::Unspecified;
    };
    match sctp
        .transport()
        .ice_transport()
        .get_selected_candidate_pair()
        .await
    {
        Ok(Some(pair)) => classify(pair.local(), pair.remote(), remote_relays),
        _ => {
            tracing::warn!("no selected ICE candidate pair on an open channel");
            Path::Unspecified
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_candidates_are_recognised() {
        assert_eq!(
            relay_address(
                "candidate:1 1 udp 16777215 127.0.0.1 49160 typ relay raddr 0.0.0.0 rport 0"
            ),
            Some(("127.0.0.1".to_owned(), 49160))
        );
        assert_eq!(
            relay_address("candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"),
            None
        );
        assert_eq!(relay_address("candidate:1 1 udp"), None);
        assert_eq!(
            relay_address("candidate:1 1 udp 1 ::1 99999 typ relay"),
            None
        );
    }

    #[test]
    fn a_relay_on_either_end_is_turn() {
        let host = RTCIceCandidate {
            typ: RTCIceCandidateType::Host,
            address: "127.0.0.1".into(),
            port: 5000,
            ..Default::default()
        };
        let relay = RTCIceCandidate {
            typ: RTCIceCandidateType::Relay,
            address: "127.0.0.1".into(),
            port: 49160,
            ..Default::default()
        };
        let prflx = RTCIceCandidate {
            typ: RTCIceCandidateType::Prflx,
            ..relay.clone()
        };
        assert_eq!(classify(&host, &host, &[]), Path::Direct);
        assert_eq!(classify(&relay, &host, &[]), Path::Turn);
        assert_eq!(classify(&host, &relay, &[]), Path::Turn);
        assert_eq!(classify(&host, &prflx, &[]), Path::Direct);
        assert_eq!(
            classify(&host, &prflx, &[("127.0.0.1".into(), 49160)]),
            Path::Turn
        );
    }
}
