//! Device-binding challenges: stateless, MAC'd by the server, single use.
//!
//! `challenge = version(1) ‖ expires_at_ms(u64 BE) ‖ random(16) ‖ HMAC-SHA256(key, all before)`.
//! Any replica can check one without shared state; single use comes from the replay cache
//! (the random part is inserted with the challenge's remaining lifetime), which Redis shares
//! across replicas.

use std::sync::Arc;
use std::time::Duration;

use hmac::{KeyInit as _, Mac as _};
use subtle::ConstantTimeEq as _;
use tucdesk_svc::cache::ReplayCache;
use zeroize::Zeroizing;

use crate::error::AuthError;
use crate::secrets::{KEY_LEN, Kek, Purpose};

/// How long a challenge may be used after it was issued.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(120);

const VERSION: u8 = 1;
const RANDOM_LEN: usize = 16;
const MAC_LEN: usize = 32;
const BODY_LEN: usize = 1 + 8 + RANDOM_LEN;

/// Total length of a challenge.
pub const CHALLENGE_LEN: usize = BODY_LEN + MAC_LEN;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Issues and redeems challenges.
#[derive(Debug, Clone)]
pub struct Challenges {
    key: Arc<Zeroizing<[u8; KEY_LEN]>>,
    used: Arc<dyn ReplayCache>,
}

impl Challenges {
    pub fn new(kek: &Kek, used: Arc<dyn ReplayCache>) -> Self {
        Self {
            key: Arc::new(kek.subkey(Purpose::ChallengeMac)),
            used,
        }
    }

    fn mac(&self, body: &[u8]) -> [u8; MAC_LEN] {
        // HMAC accepts keys of any length, so construction cannot fail for 32 bytes.
        let mut mac = match HmacSha256::new_from_slice(self.key.as_slice()) {
            Ok(mac) => mac,
            Err(_) => return [0; MAC_LEN],
        };
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// A fresh challenge and its expiry (unix ms).
    pub fn issue(&self, now_ms: i64) -> Result<(Vec<u8>, i64), AuthError> {
        let expires_at = now_ms.saturating_add(ttl_ms());
        let random: [u8; RANDOM_LEN] = tucdesk_crypto::rng::random_array()
            .map_err(|err| AuthError::internal("challenge generation", err))?;
        let mut challenge = Vec::with_capacity(CHALLENGE_LEN);
        challenge.push(VERSION);
        challenge.extend_from_slice(&u64::try_from(expires_at).unwrap_or(0).to_be_bytes());
        challenge.extend_from_slice(&random);
        let mac = self.mac(&challenge);
        challenge.extend_from_slice(&mac);
        Ok((challenge, expires_at))
    }

    /// Checks the MAC and expiry, then consumes the challenge (a second redemption fails).
    pub async fn redeem(&self, challenge: &[u8], now_ms: i64) -> Result<(), AuthError> {
        if challenge.len() != CHALLENGE_LEN || challenge[0] != VERSION {
            return Err(AuthError::ChallengeExpired);
        }
        let (body, mac) = challenge.split_at(BODY_LEN);
        if !bool::from(self.mac(body).ct_eq(mac)) {
            return Err(AuthError::ChallengeExpired);
        }
        let mut expiry = [0u8; 8];
        expiry.copy_from_slice(&body[1..9]);
        let expires_at = i64::try_from(u64::from_be_bytes(expiry)).unwrap_or(0);
        let remaining = expires_at.saturating_sub(now_ms);
        if remaining <= 0 {
            return Err(AuthError::ChallengeExpired);
        }
        let key = format!("challenge:{}", hex_lower(&body[9..]));
        let ttl = Duration::from_millis(u64::try_from(remaining).unwrap_or(1));
        match self.used.insert_if_absent(&key, ttl).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(AuthError::ChallengeExpired),
            // Unknown whether it was used: fail closed.
            Err(err) => Err(AuthError::internal("challenge replay cache", err)),
        }
    }
}

fn ttl_ms() -> i64 {
    i64::try_from(CHALLENGE_TTL.as_millis()).unwrap_or(i64::MAX)
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tucdesk_svc::cache::MemoryReplayCache;

    fn challenges() -> Challenges {
        Challenges::new(
            &Kek::generate().unwrap(),
            Arc::new(MemoryReplayCache::new(1000)),
        )
    }

    #[tokio::test]
    async fn a_challenge_works_once() {
        let c = challenges();
        let (challenge, _) = c.issue(1_000).unwrap();
        assert_eq!(challenge.len(), CHALLENGE_LEN);
        c.redeem(&challenge, 2_000).await.unwrap();
        assert!(matches!(
            c.redeem(&challenge, 2_000).await,
            Err(AuthError::ChallengeExpired)
        ));
    }

    #[tokio::test]
    async fn expired_forged_or_foreign_challenges_fail() {
        let c = challenges();
        let (challenge, expires) = c.issue(1_000).unwrap();
        assert!(c.redeem(&challenge, expires).await.is_err());

        let (mut forged, _) = c.issue(1_000).unwrap();
        forged[2] ^= 1; // move the expiry
        assert!(c.redeem(&forged, 2_000).await.is_err());

        let (other, _) = challenges().issue(1_000).unwrap();
        assert!(
            c.redeem(&other, 2_000).await.is_err(),
            "another server's key"
        );
        assert!(c.redeem(&challenge[..10], 2_000).await.is_err());
    }
}
