//! Minimal, strict compact JWS with EdDSA (Ed25519) only (RFC 7515, 8037).
//!
//! Shared by service assertions and by the auth service's access tokens, so
//! every token in TucDesk is parsed by the same small, strict code:
//!
//! * the token length is capped before anything is decoded;
//! * exactly three non-empty base64url parts, no padding, canonical
//!   encoding only, ASCII only;
//! * the protected header must be exactly `{"alg","typ","kid"}` (unknown
//!   members such as `crit`, `jku`, `jwk`, `x5u` are rejected, never
//!   followed), `alg` must be `EdDSA`;
//! * the payload is only reachable after the signature verified
//!   ([`UnverifiedJws::verify`] → [`VerifiedJws`]).
//!
//! Signing input is `ASCII(b64url(header) ‖ "." ‖ b64url(payload))`; it always
//! starts with `eyJ` (base64 of `{"`), so it can never collide with one of
//! our domain-tagged signed messages.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::identity::{Identity, PublicKey, SIGNATURE_LEN, Signature};

/// The only accepted `alg`.
pub const ALG_EDDSA: &str = "EdDSA";
/// Longest `kid` accepted.
pub const MAX_KID_LEN: usize = 64;
/// Longest `typ` accepted.
pub const MAX_TYP_LEN: usize = 32;

/// JWS parse/verify errors. Messages never echo token content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwsError {
    /// Token longer than the caller's cap.
    #[error("token exceeds {max} bytes")]
    TooLarge {
        /// The cap that was applied.
        max: usize,
    },
    /// Structure or encoding is not a strict compact JWS.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` is not `EdDSA`.
    #[error("unsupported alg (only EdDSA is accepted)")]
    UnsupportedAlgorithm,
    /// Signature does not verify.
    #[error("token signature does not verify")]
    BadSignature,
    /// Serialising claims failed.
    #[error("cannot serialise token content")]
    Serialize,
}

/// The protected header: exactly these three members, in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwsHeader {
    /// Always `EdDSA`.
    pub alg: String,
    /// Token type, e.g. `tucdesk-svc+jwt` or `at+jwt`; verifiers insist on
    /// the exact value so one kind of token never passes as another.
    pub typ: String,
    /// Key id, looked up in the verifier's keyring.
    pub kid: String,
}

impl JwsHeader {
    /// An EdDSA header with the given `typ` and `kid`.
    pub fn eddsa(typ: &str, kid: &str) -> Self {
        Self {
            alg: ALG_EDDSA.to_owned(),
            typ: typ.to_owned(),
            kid: kid.to_owned(),
        }
    }
}

/// Serialises and signs a compact JWS.
pub fn sign<C: Serialize>(
    header: &JwsHeader,
    claims: &C,
    key: &Identity,
) -> Result<String, JwsError> {
    if header.alg != ALG_EDDSA {
        return Err(JwsError::UnsupportedAlgorithm);
    }
    let h = serde_json::to_vec(header).map_err(|_| JwsError::Serialize)?;
    let p = serde_json::to_vec(claims).map_err(|_| JwsError::Serialize)?;
    let mut token = URL_SAFE_NO_PAD.encode(h);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(p, &mut token);
    let sig = key.sign_raw(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(sig.to_bytes(), &mut token);
    Ok(token)
}

/// A parsed token whose signature has not been checked yet. Only the header
/// is visible, to pick the key.
#[derive(Debug)]
pub struct UnverifiedJws<'a> {
    header: JwsHeader,
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Signature,
}

fn b64_part(part: &str, what: &'static str) -> Result<Vec<u8>, JwsError> {
    if part.is_empty() {
        return Err(JwsError::Malformed(what));
    }
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwsError::Malformed(what))
}

/// Parses a compact JWS strictly. `max_len` is checked first.
pub fn decode(token: &str, max_len: usize) -> Result<UnverifiedJws<'_>, JwsError> {
    if token.len() > max_len {
        return Err(JwsError::TooLarge { max: max_len });
    }
    if !token.is_ascii() {
        return Err(JwsError::Malformed("non-ASCII"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed("expected three parts"));
    };
    let header_json = b64_part(h, "header encoding")?;
    let header: JwsHeader =
        crate::json::from_json_object(&header_json).map_err(|_| JwsError::Malformed("header"))?;
    if header.alg != ALG_EDDSA {
        return Err(JwsError::UnsupportedAlgorithm);
    }
    if header.kid.is_empty() || header.kid.len() > MAX_KID_LEN {
        return Err(JwsError::Malformed("kid length"));
    }
    if header.typ.is_empty() || header.typ.len() > MAX_TYP_LEN {
        return Err(JwsError::Malformed("typ length"));
    }
    let payload = b64_part(p, "payload encoding")?;
    let sig = b64_part(s, "signature encoding")?;
    if sig.len() != SIGNATURE_LEN {
        return Err(JwsError::Malformed("signature length"));
    }
    let signature = Signature::from_slice(&sig).ok_or(JwsError::Malformed("signature length"))?;
    // h.len() + 1 + p.len() is within `token`, which we already hold.
    let signing_input = token
        .get(..h.len() + 1 + p.len())
        .ok_or(JwsError::Malformed("structure"))?;
    Ok(UnverifiedJws {
        header,
        signing_input,
        payload,
        signature,
    })
}

impl UnverifiedJws<'_> {
    /// The protected header (not yet authenticated: use it only to select
    /// a key and to reject early).
    pub fn header(&self) -> &JwsHeader {
        &self.header
    }

    /// Verifies the signature with `key`.
    pub fn verify(self, key: &PublicKey) -> Result<VerifiedJws, JwsError> {
        key.verify_raw(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| JwsError::BadSignature)?;
        Ok(VerifiedJws {
            header: self.header,
            payload: self.payload,
        })
    }
}

/// A token whose signature verified.
#[derive(Debug)]
pub struct VerifiedJws {
    header: JwsHeader,
    payload: Vec<u8>,
}

impl VerifiedJws {
    /// The authenticated header.
    pub fn header(&self) -> &JwsHeader {
        &self.header
    }

    /// Deserialises the authenticated payload into `T` (use
    /// `#[serde(deny_unknown_fields)]` on `T` for strictness).
    pub fn claims<T: DeserializeOwned>(&self) -> Result<T, JwsError> {
        crate::json::from_json_object(&self.payload).map_err(|_| JwsError::Malformed("claims"))
    }
}
