//! Anti-forgery tokens of the consent form: signed, short-lived, single use, and bound to
//! the authorization request they were issued for.
//!
//! `token = base64url(version ‖ expires_at_ms(u64 BE) ‖ random(16) ‖ mac)` with
//! `mac = HMAC-SHA256(KEK subkey "oauth-form-mac", version ‖ expiry ‖ random ‖
//! SHA-256(binding))`, where `binding` encodes the request parameters. A token therefore
//! cannot be moved to a request with another client, redirect URI, state, scope or PKCE
//! challenge; any replica can check it; single use comes from the shared replay cache.

use std::time::Duration;

use hmac::{KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::error::AuthError;
use crate::secrets::Purpose;
use crate::service::Auth;
use crate::store::base64_url;

/// How long the consent page may stay open before it is submitted.
pub const FORM_TOKEN_TTL: Duration = Duration::from_secs(10 * 60);

const VERSION: u8 = 1;
const RANDOM_LEN: usize = 16;
const MAC_LEN: usize = 32;
const BODY_LEN: usize = 1 + 8 + RANDOM_LEN;
const TOKEN_LEN: usize = BODY_LEN + MAC_LEN;

/// Longest encoded token accepted (base64url of [`TOKEN_LEN`] bytes is 76 characters).
pub const MAX_FORM_TOKEN_LEN: usize = 96;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Why a form token was refused. One answer for all reasons: the page just asks again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the form expired or was already submitted")]
pub struct FormTokenInvalid;

/// Length-prefixed concatenation of the bound request fields (unambiguous).
pub fn binding(fields: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for field in fields {
        out.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out
}

impl Auth {
    fn form_mac(&self, body: &[u8], binding: &[u8]) -> Result<[u8; MAC_LEN], AuthError> {
        let key = self.inner.kek.subkey(Purpose::OAuthFormMac);
        let mut mac = HmacSha256::new_from_slice(key.as_slice())
            .map_err(|err| AuthError::internal("form token key", err))?;
        mac.update(body);
        mac.update(&Sha256::digest(binding));
        Ok(mac.finalize().into_bytes().into())
    }

    /// A fresh form token for a request with this `binding`.
    pub(crate) fn issue_form_token(
        &self,
        binding: &[u8],
        now_ms: i64,
    ) -> Result<String, AuthError> {
        let ttl = i64::try_from(FORM_TOKEN_TTL.as_millis()).unwrap_or(i64::MAX);
        let expires_at = u64::try_from(now_ms.saturating_add(ttl)).unwrap_or(0);
        let random: [u8; RANDOM_LEN] = tucdesk_crypto::rng::random_array()
            .map_err(|err| AuthError::internal("form token generation", err))?;
        let mut token = Vec::with_capacity(TOKEN_LEN);
        token.push(VERSION);
        token.extend_from_slice(&expires_at.to_be_bytes());
        token.extend_from_slice(&random);
        let mac = self.form_mac(&token, binding)?;
        token.extend_from_slice(&mac);
        Ok(base64_url(&token))
    }

    /// Checks a form token against `binding` and consumes it; a second redemption fails.
    pub(crate) async fn redeem_form_token(
        &self,
        token: &str,
        binding: &[u8],
        now_ms: i64,
    ) -> Result<(), RedeemError> {
        use base64::Engine as _;
        if token.len() > MAX_FORM_TOKEN_LEN {
            return Err(RedeemError::Invalid(FormTokenInvalid));
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| RedeemError::Invalid(FormTokenInvalid))?;
        if bytes.len() != TOKEN_LEN || bytes.first() != Some(&VERSION) {
            return Err(RedeemError::Invalid(FormTokenInvalid));
        }
        let (body, mac) = bytes.split_at(BODY_LEN);
        if !bool::from(self.form_mac(body, binding)?.ct_eq(mac)) {
            return Err(RedeemError::Invalid(FormTokenInvalid));
        }
        let mut expiry = [0u8; 8];
        expiry.copy_from_slice(&body[1..9]);
        let expires_at = i64::try_from(u64::from_be_bytes(expiry)).unwrap_or(0);
        let remaining = expires_at.saturating_sub(now_ms);
        if remaining <= 0 {
            return Err(RedeemError::Invalid(FormTokenInvalid));
        }
        let key = format!("oauth-form:{}", base64_url(&body[9..]));
        let ttl = Duration::from_millis(u64::try_from(remaining).unwrap_or(1));
        match self.inner.replay.insert_if_absent(&key, ttl).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(RedeemError::Invalid(FormTokenInvalid)),
            // Unknown whether it was used: fail closed.
            Err(err) => Err(AuthError::internal("form token replay cache", err).into()),
        }
    }
}

/// A refused token, or a backend failure while checking it.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    #[error(transparent)]
    Invalid(#[from] FormTokenInvalid),
    #[error(transparent)]
    Auth(#[from] AuthError),
}
