//! The signing side, used by the auth service only.

use tucdesk_crypto::jws::{self, JwsHeader, MAX_KID_LEN};
use tucdesk_crypto::{Identity, PublicKey};

use crate::claims::{AccessClaims, RelayTicketClaims, SessionClaims};
use crate::error::TokenError;
use crate::jwk::{Jwk, JwkError};
use crate::kind::{MAX_TOKEN_LEN, TokenKind, check_audience, check_lifetime, check_str};

/// Signs tokens of every kind with one key. Not `Clone`: one copy of the
/// secret key in memory (it is wiped on drop by [`Identity`]).
#[derive(Debug)]
pub struct TokenIssuer {
    kid: String,
    key: Identity,
    issuer: String,
}

impl TokenIssuer {
    /// An issuer named `issuer` (the `iss` of every token) signing with
    /// `key` under `kid`.
    pub fn new(issuer: &str, kid: &str, key: Identity) -> Result<Self, TokenError> {
        check_str(issuer, "iss")?;
        if kid.is_empty() || kid.len() > MAX_KID_LEN {
            return Err(TokenError::InvalidClaim("kid"));
        }
        Ok(Self {
            kid: kid.to_owned(),
            key,
            issuer: issuer.to_owned(),
        })
    }

    /// The `iss` value.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key id in every header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key verifiers need.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// This key as a JWK for the JWKS.
    pub fn jwk(&self) -> Result<Jwk, JwkError> {
        Jwk::from_public_key(&self.kid, &self.key.public_key())
    }

    /// Signs an access token (`typ` `at+jwt`).
    pub fn issue_access(&self, claims: &AccessClaims) -> Result<String, TokenError> {
        self.issue(claims)
    }

    /// Signs a session-scoped viewer token (`typ` `tucdesk-session+jwt`).
    pub fn issue_session(&self, claims: &SessionClaims) -> Result<String, TokenError> {
        self.issue(claims)
    }

    /// Signs a relay ticket (`typ` `tucdesk-relay+jwt`).
    pub fn issue_relay_ticket(&self, claims: &RelayTicketClaims) -> Result<String, TokenError> {
        self.issue(claims)
    }

    /// Applies the verifier's own claim rules before signing, so a token
    /// this issuer mints is never one a verifier refuses for its shape.
    fn issue<C: TokenKind>(&self, claims: &C) -> Result<String, TokenError> {
        if claims.iss() != self.issuer {
            return Err(TokenError::InvalidClaim("iss"));
        }
        check_audience(claims.aud())?;
        check_lifetime(claims)?;
        if claims.nbf().is_some_and(|nbf| nbf >= claims.exp()) {
            return Err(TokenError::InvalidClaim("nbf"));
        }
        claims.check_values()?;
        let header = JwsHeader::eddsa(C::TYP, &self.kid);
        let token = jws::sign(&header, claims, &self.key)?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge { max: MAX_TOKEN_LEN });
        }
        Ok(token)
    }
}
