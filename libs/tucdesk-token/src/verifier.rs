//! The verifying side, used by every service (and the agent).
//!
//! Order of checks, cheapest and most structural first, so junk costs no
//! signature verification and no key lookup happens for a token with the
//! wrong algorithm:
//!
//! 1. length ≤ [`MAX_TOKEN_LEN`] → `TooLarge`;
//! 2. header `alg` is `EdDSA` (read on its own, before anything else, so
//!    `none`/`HS256`/`RS256` always report `UnsupportedAlgorithm`);
//! 3. strict compact JWS: three canonical base64url parts, header exactly
//!    `{alg, typ, kid}`, 64-byte signature → `Malformed`;
//! 4. `typ` is this kind's → `WrongType`;
//! 5. `kid` is in the key set → `UnknownKey`;
//! 6. strict Ed25519 signature → `BadSignature`;
//! 7. payload is exactly this kind's claim set → `ClaimsMalformed`;
//! 8. `iss` → `WrongIssuer`; `aud` bounded and containing ours →
//!    `InvalidClaim("aud")` / `WrongAudience`;
//! 9. `0 < exp − iat ≤ max lifetime` → `BadLifetime`; `iat`/`nbf` not after
//!    now + leeway → `NotYetValid`; now before `exp` + leeway → `Expired`;
//! 10. claim values bounded → `InvalidClaim`;
//! 11. kind bindings: `cnf.jkt` (constant time) → `CnfMissing` /
//!     `CnfMismatch`; session/ticket fields → `BindingMismatch`.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use tucdesk_crypto::jws::{self, ALG_EDDSA};

use crate::claims::{AccessClaims, RelayTicketClaims, SessionClaims, SessionKind, Side, ekh};
use crate::error::{Binding, TokenError};
use crate::keyset::KeySet;
use crate::kind::{MAX_TOKEN_LEN, TokenKind, check_audience, check_lifetime, ct_eq};

/// Clock difference tolerated on `exp`, `nbf` and `iat` by default.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Largest leeway a verifier can be configured with; more would stretch a
/// 5-minute session token noticeably.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);

/// Whether an access token must be bound to a device key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequireCnf<'a> {
    /// No binding required (the claim, if present, is returned unchecked).
    No,
    /// `cnf.jkt` must equal this RFC 7638 thumbprint of the caller's
    /// device key.
    Thumbprint(&'a str),
}

/// What a session token must be bound to. `session_id` is always checked;
/// the agent also checks the rest against the offer it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpectedSession<'a> {
    /// The session being set up (`sid`).
    pub session_id: &'a str,
    /// The verifying agent's own id (`agent_id`).
    pub agent_id: Option<&'a str>,
    /// The team of the agent (`team_id`).
    pub team_id: Option<&'a str>,
    /// The offered kind (`kind`).
    pub kind: Option<SessionKind>,
    /// Thumbprint of the key that signed the offer (`cnf.jkt`).
    pub device_key_thumbprint: Option<&'a str>,
    /// The offered operator ephemeral X25519 key (hashed into `ekh`).
    pub e_op_pub: Option<&'a [u8]>,
}

/// Verifies tokens from one issuer addressed to one audience. Cheap to
/// build: a service with several audiences holds one per audience, all
/// sharing a [`KeySet`].
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    keys: KeySet,
    issuer: String,
    audience: String,
    leeway_secs: u64,
}

#[derive(Deserialize)]
struct AlgOnly {
    alg: String,
}

/// Step 2: the header's `alg`, read on its own. Any other header problem
/// is left to the strict decoder (step 3).
fn check_alg_first(token: &str) -> Result<(), TokenError> {
    let header = token.split_once('.').map_or(token, |(h, _)| h);
    let json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed("header encoding"))?;
    let h: AlgOnly = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed("header"))?;
    if h.alg != ALG_EDDSA {
        return Err(TokenError::UnsupportedAlgorithm);
    }
    Ok(())
}

impl TokenVerifier {
    /// Accepts tokens signed by a key in `keys`, with `iss` = `issuer` and
    /// `audience` in `aud`, with [`DEFAULT_LEEWAY`].
    pub fn new(keys: KeySet, issuer: &str, audience: &str) -> Self {
        Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway_secs: DEFAULT_LEEWAY.as_secs(),
        }
    }

    /// Sets the leeway, capped at [`MAX_LEEWAY`].
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway_secs = leeway.min(MAX_LEEWAY).as_secs();
        self
    }

    /// The leeway in force.
    pub fn leeway(&self) -> Duration {
        Duration::from_secs(self.leeway_secs)
    }

    /// The key set (shared: replacing it here updates every clone).
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// Verifies an access token at `now_secs` (Unix seconds).
    pub fn verify_access(
        &self,
        token: &str,
        now_secs: u64,
        cnf: RequireCnf<'_>,
    ) -> Result<AccessClaims, TokenError> {
        let claims: AccessClaims = self.verify(token, now_secs)?;
        if let RequireCnf::Thumbprint(expected) = cnf {
            let bound = claims.cnf.as_ref().ok_or(TokenError::CnfMissing)?;
            if !ct_eq(&bound.jkt, expected) {
                return Err(TokenError::CnfMismatch);
            }
        }
        Ok(claims)
    }

    /// Verifies a session token and its bindings.
    pub fn verify_session(
        &self,
        token: &str,
        now_secs: u64,
        expected: &ExpectedSession<'_>,
    ) -> Result<SessionClaims, TokenError> {
        let claims: SessionClaims = self.verify(token, now_secs)?;
        let mismatch = TokenError::BindingMismatch;
        if claims.sid != expected.session_id {
            return Err(mismatch(Binding::SessionId));
        }
        if expected.agent_id.is_some_and(|a| a != claims.agent_id) {
            return Err(mismatch(Binding::AgentId));
        }
        if expected.team_id.is_some_and(|t| t != claims.team_id) {
            return Err(mismatch(Binding::TeamId));
        }
        if expected.kind.is_some_and(|k| k != claims.kind) {
            return Err(mismatch(Binding::Kind));
        }
        if let Some(jkt) = expected.device_key_thumbprint
            && !ct_eq(&claims.cnf.jkt, jkt)
        {
            return Err(TokenError::CnfMismatch);
        }
        if let Some(e_op_pub) = expected.e_op_pub
            && !ct_eq(&claims.ekh, &ekh(e_op_pub))
        {
            return Err(mismatch(Binding::HandshakeKey));
        }
        Ok(claims)
    }

    /// Verifies a relay ticket presented for `session_id` by `side`. The
    /// caller enforces one live connection per `jti`.
    pub fn verify_relay_ticket(
        &self,
        token: &str,
        now_secs: u64,
        session_id: &str,
        side: Side,
    ) -> Result<RelayTicketClaims, TokenError> {
        let claims: RelayTicketClaims = self.verify(token, now_secs)?;
        if claims.sid != session_id {
            return Err(TokenError::BindingMismatch(Binding::SessionId));
        }
        if claims.side != side {
            return Err(TokenError::BindingMismatch(Binding::Side));
        }
        Ok(claims)
    }

    /// Steps 1–10 of the module docs.
    fn verify<C: TokenKind>(&self, token: &str, now: u64) -> Result<C, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge { max: MAX_TOKEN_LEN });
        }
        check_alg_first(token)?;
        let unverified = jws::decode(token, MAX_TOKEN_LEN)?;
        if unverified.header().typ != C::TYP {
            return Err(TokenError::WrongType { expected: C::TYP });
        }
        let key = self
            .keys
            .get(&unverified.header().kid)
            .ok_or(TokenError::UnknownKey)?;
        let verified = unverified.verify(&key)?;
        let claims: C = verified.claims().map_err(|_| TokenError::ClaimsMalformed)?;
        if claims.iss() != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        check_audience(claims.aud())?;
        if !claims.aud().contains(&self.audience) {
            return Err(TokenError::WrongAudience);
        }
        self.check_time(&claims, now)?;
        claims.check_values()?;
        Ok(claims)
    }

    fn check_time<C: TokenKind>(&self, claims: &C, now: u64) -> Result<(), TokenError> {
        check_lifetime(claims)?;
        let latest_start = now.saturating_add(self.leeway_secs);
        if claims.iat() > latest_start || claims.nbf().is_some_and(|nbf| nbf > latest_start) {
            return Err(TokenError::NotYetValid);
        }
        if now >= claims.exp().saturating_add(self.leeway_secs) {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}
