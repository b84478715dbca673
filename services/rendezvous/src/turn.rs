//! TURN credentials in the TURN REST scheme coturn accepts with `use-auth-secret`:
//! `username = "<expiry unix seconds>:<session_id>"`,
//! `credential = base64(HMAC-SHA1(static-auth-secret, username))`.
//!
//! coturn recomputes the HMAC and refuses the username once its expiry has passed, so the
//! credentials need no state anywhere and die with the negotiation window.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit as _, Mac as _};
use tucdesk_proto::v1::IceServer;
use zeroize::Zeroizing;

use crate::error::RendezvousError;

/// A TURN username and password for one session.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnCredential {
    pub username: String,
    pub password: Zeroizing<String>,
    pub expires_at_secs: u64,
}

impl std::fmt::Debug for TurnCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnCredential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Mints a credential for `session_id` valid until `now_secs + ttl`.
pub fn mint(
    secret: &str,
    session_id: &str,
    now_secs: u64,
    ttl: Duration,
) -> Result<TurnCredential, RendezvousError> {
    let expires_at_secs = now_secs.saturating_add(ttl.as_secs());
    let username = format!("{expires_at_secs}:{session_id}");
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .map_err(|err| RendezvousError::internal("TURN secret", err))?;
    mac.update(username.as_bytes());
    let password = Zeroizing::new(STANDARD.encode(mac.finalize().into_bytes()));
    Ok(TurnCredential {
        username,
        password,
        expires_at_secs,
    })
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
    fn credentials_match_the_turn_rest_scheme() {
        // Expected value computed independently with Python's hmac module.
        let credential = mint(
            "coturn-shared-secret",
            "0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b",
            1_767_225_600 - 300,
            Duration::from_secs(300),
        )
        .unwrap();
        assert_eq!(
            credential.username,
            "1767225600:0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b"
        );
        assert_eq!(credential.password.as_str(), "FpbiCWGbHZMlsD/zGJ6dP+al9nA=");
        assert!(!format!("{credential:?}").contains("FpbiCW"));
    }

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
