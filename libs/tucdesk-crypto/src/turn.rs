//! TURN REST credentials (the scheme coturn accepts with `use-auth-secret`, SPEC §5 step 1):
//!
//! ```text
//! username   = "<expiry, Unix seconds>:<label>"        (label: the session id)
//! credential = base64(HMAC-SHA1(shared secret, username))
//! ```
//!
//! coturn recomputes the HMAC and refuses a username whose expiry has passed, so the
//! credentials need no state anywhere and die on their own. Rendezvous mints them per session;
//! a relay node mints one for its coturn health check.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit as _, Mac as _};
use zeroize::Zeroizing;

/// Longest label accepted (session ids are 36 bytes).
pub const MAX_LABEL_LEN: usize = 128;

/// A TURN username and password. The password is wiped on drop and never printed.
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

/// Why a credential could not be minted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TurnCredentialError {
    #[error("the TURN secret is empty")]
    EmptySecret,
    #[error("the label must be 1..=128 bytes without ':' or control characters")]
    BadLabel,
}

/// Mints a credential for `label` valid until `expires_at_secs`.
pub fn turn_credential(
    secret: &[u8],
    label: &str,
    expires_at_secs: u64,
) -> Result<TurnCredential, TurnCredentialError> {
    if secret.is_empty() {
        return Err(TurnCredentialError::EmptySecret);
    }
    if label.is_empty()
        || label.len() > MAX_LABEL_LEN
        || label.contains(':')
        || label.chars().any(char::is_control)
    {
        return Err(TurnCredentialError::BadLabel);
    }
    let username = format!("{expires_at_secs}:{label}");
    // HMAC takes keys of any length; a non-empty key cannot fail.
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret)
        .map_err(|_| TurnCredentialError::EmptySecret)?;
    mac.update(username.as_bytes());
    let password = Zeroizing::new(STANDARD.encode(mac.finalize().into_bytes()));
    Ok(TurnCredential {
        username,
        password,
        expires_at_secs,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn credentials_match_the_turn_rest_scheme() {
        // Expected value computed independently with Python's hmac module.
        let credential = turn_credential(
            b"coturn-shared-secret",
            "0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b",
            1_767_225_600,
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
    fn bad_inputs_are_refused() {
        assert_eq!(
            turn_credential(b"", "x", 1),
            Err(TurnCredentialError::EmptySecret)
        );
        assert_eq!(
            turn_credential(b"s", "", 1),
            Err(TurnCredentialError::BadLabel)
        );
        assert_eq!(
            turn_credential(b"s", "a:b", 1),
            Err(TurnCredentialError::BadLabel)
        );
    }
}
