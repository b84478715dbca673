//! From the session's `IceConfig` (sent by rendezvous) to the WebRTC configuration, bounded.
//!
//! TURN credentials pass through here into the WebRTC stack and nowhere else: nothing in this
//! crate logs or formats an `IceServer`.

use tucdesk_proto::limits::MAX_ICE_URLS;
use tucdesk_proto::v1::{IceConfig, IceTransportPolicy};
use webrtc::peer_connection::{
    RTCConfiguration, RTCConfigurationBuilder, RTCIceServer, RTCIceTransportPolicy,
};

use crate::P2pError;

/// STUN/TURN servers in one configuration, at most.
pub const MAX_ICE_SERVERS: usize = 8;
/// Longest ICE server URL (the proto's bound).
pub const MAX_ICE_URL_LEN: usize = 256;
/// Longest TURN username or credential (REST usernames are `<expiry>:<session id>`).
pub const MAX_ICE_CREDENTIAL_LEN: usize = 256;

fn scheme(url: &str) -> Option<&'static str> {
    ["stun:", "stuns:", "turn:", "turns:"]
        .into_iter()
        .find(|scheme| url.starts_with(scheme))
}

/// The WebRTC configuration for `ice`, or why it is refused.
pub(crate) fn rtc_configuration(ice: &IceConfig) -> Result<RTCConfiguration, P2pError> {
    if ice.servers.len() > MAX_ICE_SERVERS {
        return Err(P2pError::Config("more than 8 ICE servers"));
    }
    let mut servers = Vec::with_capacity(ice.servers.len());
    let mut has_turn = false;
    for server in &ice.servers {
        if server.urls.is_empty() || server.urls.len() > MAX_ICE_URLS {
            return Err(P2pError::Config("an ICE server needs 1 to 8 URLs"));
        }
        for url in &server.urls {
            if url.len() > MAX_ICE_URL_LEN || url.chars().any(|c| c.is_control() || c == ' ') {
                return Err(P2pError::Config("ICE server URL oversized or malformed"));
            }
            match scheme(url) {
                Some("turn:" | "turns:") => has_turn = true,
                Some(_) => {}
                None => return Err(P2pError::Config("ICE server URL scheme is not stun/turn")),
            }
        }
        if server.username.len() > MAX_ICE_CREDENTIAL_LEN
            || server.credential.len() > MAX_ICE_CREDENTIAL_LEN
        {
            return Err(P2pError::Config("TURN credentials oversized"));
        }
        servers.push(RTCIceServer {
            urls: server.urls.clone(),
            username: server.username.clone(),
            credential: server.credential.clone(),
        });
    }
    let policy = match IceTransportPolicy::try_from(ice.transport_policy) {
        Ok(IceTransportPolicy::Relay) => {
            if !has_turn {
                return Err(P2pError::Config("relay-only policy without a TURN server"));
            }
            RTCIceTransportPolicy::Relay
        }
        Ok(IceTransportPolicy::All | IceTransportPolicy::Unspecified) => RTCIceTransportPolicy::All,
        Err(_) => return Err(P2pError::Config("unknown ICE transport policy")),
    };
    Ok(RTCConfigurationBuilder::new()
        .with_ice_servers(servers)
        .with_ice_transport_policy(policy)
        .build())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tucdesk_proto::v1::IceServer;

    fn turn() -> IceServer {
        IceServer {
            urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
            username: "1767225600:session".into(),
            credential: "c2VjcmV0".into(),
        }
    }

    #[test]
    fn relay_policy_maps_to_relay_only() {
        let config = rtc_configuration(&IceConfig {
            servers: vec![turn()],
            expires_at_ms: 0,
            transport_policy: IceTransportPolicy::Relay as i32,
        })
        .unwrap();
        assert_eq!(config.ice_transport_policy(), RTCIceTransportPolicy::Relay);
        let config = rtc_configuration(&IceConfig::default()).unwrap();
        assert_eq!(config.ice_transport_policy(), RTCIceTransportPolicy::All);
    }

    #[test]
    fn relay_only_without_turn_is_refused() {
        let stun = IceServer {
            urls: vec!["stun:127.0.0.1:3478".into()],
            ..Default::default()
        };
        let err = rtc_configuration(&IceConfig {
            servers: vec![stun],
            expires_at_ms: 0,
            transport_policy: IceTransportPolicy::Relay as i32,
        })
        .unwrap_err();
        assert!(matches!(err, P2pError::Config(_)));
    }

    #[test]
    fn bounds_and_schemes_are_enforced() {
        let many = IceConfig {
            servers: vec![turn(); MAX_ICE_SERVERS + 1],
            ..Default::default()
        };
        assert!(rtc_configuration(&many).is_err());
        let mut long = turn();
        long.urls = vec![format!("turn:{}", "h".repeat(MAX_ICE_URL_LEN))];
        assert!(
            rtc_configuration(&IceConfig {
                servers: vec![long],
                ..Default::default()
            })
            .is_err()
        );
        let mut http = turn();
        http.urls = vec!["http://127.0.0.1/".into()];
        assert!(
            rtc_configuration(&IceConfig {
                servers: vec![http],
                ..Default::default()
            })
            .is_err()
        );
        let mut secret = turn();
        secret.credential = "x".repeat(MAX_ICE_CREDENTIAL_LEN + 1);
        assert!(
            rtc_configuration(&IceConfig {
                servers: vec![secret],
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            rtc_configuration(&IceConfig {
                transport_policy: 99,
                ..Default::default()
            })
            .is_err()
        );
    }
}
