//! Service assertions: short-lived EdDSA JWTs one service presents to another.
//!
//! ```text
//! header = {"alg":"EdDSA","typ":"tucdesk-svc+jwt","kid":"<kid>"}
//! claims = {"iss":"<calling service>","aud":"<callee>","iat":<s>,"exp":<s>,"jti":"<id>"}
//! ```
//!
//! The verifier holds a [`ServiceKeyring`] (configured, never fetched from the
//! caller) mapping `kid` → (service name, Ed25519 key) and accepts a token
//! only if: length ≤ [`MAX_ASSERTION_LEN`]; strict compact JWS; `alg` is
//! `EdDSA`; `typ` is exactly [`SERVICE_ASSERTION_TYP`] (so a user's access
//! token, `typ` = [`ACCESS_TOKEN_TYP`], never passes, even if someone
//! configured the same key for both); `kid` known; signature valid; `iss`
//! equals the service bound to that `kid` (a key of service A cannot speak
//! for B); `aud` equals the verifier; `0 < exp − iat ≤ 60 s`; `iat` not more
//! than [`ASSERTION_LEEWAY_SECS`] in the future; `exp` not more than that in
//! the past. Unknown claims are rejected. The returned `jti` lets a callee
//! keep a replay cache for [`MAX_ASSERTION_LIFETIME_SECS`] if it wants one.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::identity::{Identity, PublicKey};
use crate::jws::{self, JwsError, JwsHeader};
use crate::rng::{RngError, random_array};

/// `typ` of a service assertion.
pub const SERVICE_ASSERTION_TYP: &str = "tucdesk-svc+jwt";
/// `typ` of a user access token (RFC 9068), defined here so the auth service
/// uses the same constant and the separation is tested in one place.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Longest lifetime (`exp − iat`) accepted, in seconds.
pub const MAX_ASSERTION_LIFETIME_SECS: u64 = 60;
/// Lifetime used by [`ServiceSigner::issue`], in seconds.
pub const DEFAULT_ASSERTION_LIFETIME_SECS: u64 = 30;
/// Clock difference tolerated between services, in seconds.
pub const ASSERTION_LEEWAY_SECS: u64 = 5;
/// Largest assertion accepted; real ones are ~350 bytes.
pub const MAX_ASSERTION_LEN: usize = 1024;
/// Longest service name (`iss`/`aud`).
pub const MAX_SERVICE_NAME_LEN: usize = 64;
/// Longest `jti` accepted.
pub const MAX_JTI_LEN: usize = 64;
/// Random bytes in a generated `jti` (128 bits).
pub const JTI_BYTES: usize = 16;

/// Why an assertion was not issued or not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AssertionError {
    /// Token structure, encoding, header or size problem.
    #[error(transparent)]
    Jws(#[from] JwsError),
    /// `typ` is not a service assertion (e.g. a user access token).
    #[error("token is not a service assertion")]
    WrongType,
    /// `kid` not in the keyring.
    #[error("unknown signing key")]
    UnknownKey,
    /// `iss` is not the service the key belongs to.
    #[error("issuer does not own the signing key")]
    IssuerMismatch,
    /// `aud` is not this service.
    #[error("assertion is for another audience")]
    WrongAudience,
    /// `exp` has passed (beyond leeway).
    #[error("assertion expired")]
    Expired,
    /// `iat` is in the future (beyond leeway).
    #[error("assertion not yet valid")]
    NotYetValid,
    /// `exp − iat` is not in `1..=60` seconds.
    #[error("assertion lifetime must be 1..={MAX_ASSERTION_LIFETIME_SECS} seconds")]
    BadLifetime,
    /// A claim is empty or too long.
    #[error("invalid claim: {0}")]
    InvalidClaim(&'static str),
    /// A keyring entry with this `kid` already exists.
    #[error("duplicate key id in keyring")]
    DuplicateKid,
    /// The OS RNG failed.
    #[error("OS random number generator failed")]
    Rng,
}

impl From<RngError> for AssertionError {
    fn from(_: RngError) -> Self {
        AssertionError::Rng
    }
}

/// Claims of a service assertion; unknown members are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceClaims {
    /// Calling service.
    pub iss: String,
    /// Called service.
    pub aud: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Unique token id.
    pub jti: String,
}

fn check_name(name: &str, what: &'static str) -> Result<(), AssertionError> {
    if name.is_empty() || name.len() > MAX_SERVICE_NAME_LEN {
        return Err(AssertionError::InvalidClaim(what));
    }
    Ok(())
}

/// A service's signing side: name, key id and key.
#[derive(Debug)]
pub struct ServiceSigner {
    service: String,
    kid: String,
    key: Identity,
}

impl ServiceSigner {
    /// Binds a key to a service name and key id.
    pub fn new(service: &str, kid: &str, key: Identity) -> Result<Self, AssertionError> {
        check_name(service, "iss")?;
        if kid.is_empty() || kid.len() > jws::MAX_KID_LEN {
            return Err(AssertionError::InvalidClaim("kid"));
        }
        Ok(Self {
            service: service.to_owned(),
            kid: kid.to_owned(),
            key,
        })
    }

    /// The public key to put into the callee's keyring.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// Issues an assertion for `audience`, valid for
    /// [`DEFAULT_ASSERTION_LIFETIME_SECS`] from `now_secs`, random `jti`.
    pub fn issue(&self, audience: &str, now_secs: u64) -> Result<String, AssertionError> {
        let jti = URL_SAFE_NO_PAD.encode(random_array::<JTI_BYTES>()?);
        self.issue_with(audience, now_secs, DEFAULT_ASSERTION_LIFETIME_SECS, &jti)
    }

    /// Issues with explicit lifetime and `jti` (fixed vectors, tests).
    pub fn issue_with(
        &self,
        audience: &str,
        iat: u64,
        lifetime_secs: u64,
        jti: &str,
    ) -> Result<String, AssertionError> {
        check_name(audience, "aud")?;
        if lifetime_secs == 0 || lifetime_secs > MAX_ASSERTION_LIFETIME_SECS {
            return Err(AssertionError::BadLifetime);
        }
        if jti.is_empty() || jti.len() > MAX_JTI_LEN {
            return Err(AssertionError::InvalidClaim("jti"));
        }
        let claims = ServiceClaims {
            iss: self.service.clone(),
            aud: audience.to_owned(),
            iat,
            exp: iat.saturating_add(lifetime_secs),
            jti: jti.to_owned(),
        };
        let header = JwsHeader::eddsa(SERVICE_ASSERTION_TYP, &self.kid);
        Ok(jws::sign(&header, &claims, &self.key)?)
    }
}

/// Trusted service keys: `kid` → (service name, key). Built from config.
#[derive(Debug, Default, Clone)]
pub struct ServiceKeyring {
    keys: HashMap<String, (String, PublicKey)>,
}

impl ServiceKeyring {
    /// An empty keyring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `key` under `kid` for assertions issued by `service`.
    pub fn insert(
        &mut self,
        kid: &str,
        service: &str,
        key: PublicKey,
    ) -> Result<(), AssertionError> {
        check_name(service, "iss")?;
        if kid.is_empty() || kid.len() > jws::MAX_KID_LEN {
            return Err(AssertionError::InvalidClaim("kid"));
        }
        if self.keys.contains_key(kid) {
            return Err(AssertionError::DuplicateKid);
        }
        self.keys.insert(kid.to_owned(), (service.to_owned(), key));
        Ok(())
    }

    /// A keyring from configuration entries `name=<base64url Ed25519 public key>` (blank
    /// entries ignored). Each key's kid is its fingerprint, which the calling service derives
    /// the same way. The error names the entry's service, never more than the entry shows.
    pub fn from_entries(entries: &[String]) -> Result<Self, String> {
        let mut keyring = Self::new();
        for entry in entries.iter().filter(|entry| !entry.trim().is_empty()) {
            let (name, key) = entry.split_once('=').ok_or_else(|| {
                format!("service key {entry:?} must look like name=<base64url public key>")
            })?;
            let public = PublicKey::from_agent_id(key.trim())
                .map_err(|_| format!("service key for {name} is not an Ed25519 key"))?;
            keyring
                .insert(&public.fingerprint(), name.trim(), public)
                .map_err(|err| format!("service key {name}: {err}"))?;
        }
        Ok(keyring)
    }

    /// Verifies an assertion addressed to `audience` (this service) at
    /// `now_secs`. See the module docs for every rule.
    pub fn verify(
        &self,
        token: &str,
        audience: &str,
        now_secs: u64,
    ) -> Result<ServiceClaims, AssertionError> {
        let unverified = jws::decode(token, MAX_ASSERTION_LEN)?;
        if unverified.header().typ != SERVICE_ASSERTION_TYP {
            return Err(AssertionError::WrongType);
        }
        let (service, key) = self
            .keys
            .get(&unverified.header().kid)
            .ok_or(AssertionError::UnknownKey)?;
        let verified = unverified.verify(key)?;
        let claims: ServiceClaims = verified.claims()?;
        if &claims.iss != service {
            return Err(AssertionError::IssuerMismatch);
        }
        if claims.aud != audience {
            return Err(AssertionError::WrongAudience);
        }
        if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
            return Err(AssertionError::InvalidClaim("jti"));
        }
        let lifetime = claims
            .exp
            .checked_sub(claims.iat)
            .ok_or(AssertionError::BadLifetime)?;
        if lifetime == 0 || lifetime > MAX_ASSERTION_LIFETIME_SECS {
            return Err(AssertionError::BadLifetime);
        }
        if claims.iat > now_secs.saturating_add(ASSERTION_LEEWAY_SECS) {
            return Err(AssertionError::NotYetValid);
        }
        if now_secs >= claims.exp.saturating_add(ASSERTION_LEEWAY_SECS) {
            return Err(AssertionError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests;
