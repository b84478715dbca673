//! TucDesk tokens (SPEC §3): the auth service issues them, every other
//! service verifies them with this crate alone (no database, no runtime).
//!
//! | kind | `typ` | claims | verified by |
//! |---|---|---|---|
//! | access token | [`ACCESS_TOKEN_TYP`] `at+jwt` | [`AccessClaims`] | every service, [`TokenVerifier::verify_access`] |
//! | session token | [`SESSION_TOKEN_TYP`] `tucdesk-session+jwt` | [`SessionClaims`] | agent, rendezvous, [`TokenVerifier::verify_session`] |
//! | relay ticket | [`RELAY_TICKET_TYP`] `tucdesk-relay+jwt` | [`RelayTicketClaims`] | relay, [`TokenVerifier::verify_relay_ticket`] |
//!
//! All are compact JWS with `alg` `EdDSA` (Ed25519), built and parsed by
//! `tucdesk_crypto::jws`. Each kind has its own `typ` and its own closed
//! claim set, so no kind ever verifies as another. Keys are published as a
//! JWKS ([`Jwks`]) and held by verifiers in a replaceable [`KeySet`].
//! The README lists every check in order.
#![forbid(unsafe_code)]

pub mod claims;
pub mod error;
pub mod issuer;
pub mod jwk;
pub mod keyset;
mod kind;
pub mod verifier;

pub use claims::{
    AccessClaims, Audience, Cnf, RelayTicketClaims, Role, SessionClaims, SessionKind, Side,
    UnknownRole, ekh, new_jti,
};
pub use error::{Binding, TokenError};
pub use issuer::TokenIssuer;
pub use jwk::{Jwk, JwkError, Jwks, MAX_JWKS_BYTES, MAX_JWKS_KEYS};
pub use keyset::KeySet;
pub use kind::{
    ACCESS_TOKEN_TYP, DEFAULT_ACCESS_TOKEN_LIFETIME_SECS, MAX_ACCESS_TOKEN_LIFETIME_SECS,
    MAX_AUDIENCES, MAX_CLAIM_LEN, MAX_RELAY_TICKET_LIFETIME_SECS, MAX_SESSION_TOKEN_LIFETIME_SECS,
    MAX_TOKEN_LEN, RELAY_TICKET_TYP, SESSION_TOKEN_TYP,
};
pub use verifier::{DEFAULT_LEEWAY, ExpectedSession, MAX_LEEWAY, RequireCnf, TokenVerifier};

/// The current time in Unix seconds, for the `now_secs` arguments. A clock
/// before 1970 yields 0, which makes every token "not yet valid" (fail
/// closed).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
