//! TURN credentials for the ICE servers of a session (TURN REST scheme, minted with
//! `tucdesk_crypto::turn`), and the ICE server list of a relay node.

use std::time::Duration;

use tucdesk_crypto::turn::{TurnCredential, turn_credential};
use tucdesk_proto::v1::IceServer;

use crate::error::RendezvousError;

/// Mints a credential for `session_id` valid until `now_secs + ttl`.
pub fn mint(
    secret: &str,
    session_id: &str,
    now_secs: u64,
    ttl: Duration,
) -> Result<TurnCredential, RendezvousError> {
    turn_credential(
        secret.as_bytes(),
        session_id,
        now_secs.saturating_add(ttl.as_secs()),
    )
    .map_err(|err| RendezvousError::internal("minting TURN credentials", err))
}

/// The ICE servers of a relay node for one side of a session: its STUN URLs, and its TURN
/// URLs with the credential (when TURN is configured).
pub fn ice_servers(
    stun_urls: &[String],
    turn_urls: &[String],
    credential: Option<&TurnCredential>,
) -> Vec<IceServer> {
    let mut servers = Vec::new();
    if !stun_urls.is_empty() {
        servers.push(IceServer {
            urls: stun_urls.to_vec(),
            username: String::new(),
            credential: String::new(),
        });
    }
    if let Some(credential) = credential
        && !turn_urls.is_empty()
    {
        servers.push(IceServer {
            urls: turn_urls.to_vec(),
            username: credential.username.clone(),
            credential: credential.password.as_str().to_owned(),
        });
    }
    servers
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn turn_servers_are_offered_only_with_a_credential() {
        let stun = vec!["stun:relay:3478".to_owned()];
        let turn = vec!["turn:relay:3478?transport=udp".to_owned()];
        assert_eq!(ice_servers(&stun, &turn, None).len(), 1);
        let credential = mint("s", "sid", 0, Duration::from_secs(60)).unwrap();
        let servers = ice_servers(&stun, &turn, Some(&credential));
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[1].username, "60:sid");
    }
}
