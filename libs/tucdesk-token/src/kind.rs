//! What distinguishes the three token kinds: `typ`, maximum lifetime and the
//! claim-value checks shared by the issuer and the verifier, so that the
//! issuer never mints a token the verifier would refuse.

use serde::Serialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq as _;

use crate::claims::{AccessClaims, Audience, RelayTicketClaims, SessionClaims};
use crate::error::TokenError;

/// `typ` of an access token (RFC 9068), shared with tucdesk-crypto's
/// service assertions so the separation is defined in one place.
pub const ACCESS_TOKEN_TYP: &str = tucdesk_crypto::assertion::ACCESS_TOKEN_TYP;
/// `typ` of a session-scoped viewer token.
pub const SESSION_TOKEN_TYP: &str = "tucdesk-session+jwt";
/// `typ` of a relay ticket.
pub const RELAY_TICKET_TYP: &str = "tucdesk-relay+jwt";

/// Largest token accepted or issued (docs/protocol.md §13, the same value
/// as `tucdesk_proto::limits::MAX_TOKEN_LEN`).
pub const MAX_TOKEN_LEN: usize = 4 * 1024;
/// Default access token lifetime (SPEC §3: 15 min).
pub const DEFAULT_ACCESS_TOKEN_LIFETIME_SECS: u64 = 15 * 60;
/// Longest access token lifetime accepted (support-code tokens live up to
/// 1 h; ordinary ones 15 min).
pub const MAX_ACCESS_TOKEN_LIFETIME_SECS: u64 = 60 * 60;
/// Longest session token lifetime (SPEC §3: ~5 min; `ttl_seconds` ≤ 300).
pub const MAX_SESSION_TOKEN_LIFETIME_SECS: u64 = 5 * 60;
/// Longest relay ticket lifetime: tickets only cover session setup, like
/// the session token they are minted with.
pub const MAX_RELAY_TICKET_LIFETIME_SECS: u64 = 5 * 60;
/// Longest string claim (`sub`, `team_id`, `email`, `scp`, `jti`, …);
/// the longest legitimate one is an OAuth scope of 512 bytes.
pub const MAX_CLAIM_LEN: usize = 512;
/// Most audiences in an `aud` array (session tokens carry two).
pub const MAX_AUDIENCES: usize = 4;

const _: () = assert!(DEFAULT_ACCESS_TOKEN_LIFETIME_SECS <= MAX_ACCESS_TOKEN_LIFETIME_SECS);

/// A claim set of one token kind. Sealed: implemented for the three claim
/// structs of this crate only.
pub(crate) trait TokenKind: Serialize + DeserializeOwned {
    const TYP: &'static str;
    const MAX_LIFETIME_SECS: u64;
    fn iss(&self) -> &str;
    fn aud(&self) -> &Audience;
    fn iat(&self) -> u64;
    fn exp(&self) -> u64;
    fn nbf(&self) -> Option<u64> {
        None
    }
    /// Value checks beyond iss/aud/time (non-empty, bounded strings).
    fn check_values(&self) -> Result<(), TokenError>;
}

/// A required string claim: 1..=[`MAX_CLAIM_LEN`] bytes.
pub(crate) fn check_str(value: &str, name: &'static str) -> Result<(), TokenError> {
    if value.is_empty() || value.len() > MAX_CLAIM_LEN {
        return Err(TokenError::InvalidClaim(name));
    }
    Ok(())
}

fn check_opt(value: Option<&str>, name: &'static str) -> Result<(), TokenError> {
    value.map_or(Ok(()), |v| check_str(v, name))
}

/// `aud`: 1..=[`MAX_AUDIENCES`] entries, each a valid string claim.
pub(crate) fn check_audience(aud: &Audience) -> Result<(), TokenError> {
    if aud.is_empty() || aud.len() > MAX_AUDIENCES {
        return Err(TokenError::InvalidClaim("aud"));
    }
    match aud {
        Audience::One(a) => check_str(a, "aud"),
        Audience::Many(v) => v.iter().try_for_each(|a| check_str(a, "aud")),
    }
}

/// Constant-time string equality for key-binding values (lengths are
/// public: thumbprints and hashes have fixed lengths).
pub(crate) fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl TokenKind for AccessClaims {
    const TYP: &'static str = ACCESS_TOKEN_TYP;
    const MAX_LIFETIME_SECS: u64 = MAX_ACCESS_TOKEN_LIFETIME_SECS;
    fn iss(&self) -> &str {
        &self.iss
    }
    fn aud(&self) -> &Audience {
        &self.aud
    }
    fn iat(&self) -> u64 {
        self.iat
    }
    fn exp(&self) -> u64 {
        self.exp
    }
    fn nbf(&self) -> Option<u64> {
        self.nbf
    }
    fn check_values(&self) -> Result<(), TokenError> {
        check_str(&self.sub, "sub")?;
        check_str(&self.team_id, "team_id")?;
        check_str(&self.jti, "jti")?;
        check_opt(self.email.as_deref(), "email")?;
        check_opt(self.cnf.as_ref().map(|c| c.jkt.as_str()), "cnf.jkt")?;
        check_opt(self.client_id.as_deref(), "client_id")?;
        check_opt(self.scp.as_deref(), "scp")?;
        if self.kinds.as_ref().is_some_and(Vec::is_empty) {
            return Err(TokenError::InvalidClaim("kinds"));
        }
        Ok(())
    }
}

impl TokenKind for SessionClaims {
    const TYP: &'static str = SESSION_TOKEN_TYP;
    const MAX_LIFETIME_SECS: u64 = MAX_SESSION_TOKEN_LIFETIME_SECS;
    fn iss(&self) -> &str {
        &self.iss
    }
    fn aud(&self) -> &Audience {
        &self.aud
    }
    fn iat(&self) -> u64 {
        self.iat
    }
    fn exp(&self) -> u64 {
        self.exp
    }
    fn check_values(&self) -> Result<(), TokenError> {
        check_str(&self.sub, "sub")?;
        check_str(&self.team_id, "team_id")?;
        check_str(&self.sid, "sid")?;
        check_str(&self.agent_id, "agent_id")?;
        check_str(&self.cnf.jkt, "cnf.jkt")?;
        check_str(&self.ekh, "ekh")?;
        check_str(&self.jti, "jti")
    }
}

impl TokenKind for RelayTicketClaims {
    const TYP: &'static str = RELAY_TICKET_TYP;
    const MAX_LIFETIME_SECS: u64 = MAX_RELAY_TICKET_LIFETIME_SECS;
    fn iss(&self) -> &str {
        &self.iss
    }
    fn aud(&self) -> &Audience {
        &self.aud
    }
    fn iat(&self) -> u64 {
        self.iat
    }
    fn exp(&self) -> u64 {
        self.exp
    }
    fn check_values(&self) -> Result<(), TokenError> {
        check_str(&self.sid, "sid")?;
        check_str(&self.team_id, "team_id")?;
        check_str(&self.jti, "jti")
    }
}

/// `0 < exp − iat ≤ max`.
pub(crate) fn check_lifetime<C: TokenKind>(claims: &C) -> Result<(), TokenError> {
    let lifetime = claims
        .exp()
        .checked_sub(claims.iat())
        .ok_or(TokenError::BadLifetime)?;
    if lifetime == 0 || lifetime > C::MAX_LIFETIME_SECS {
        return Err(TokenError::BadLifetime);
    }
    Ok(())
}
