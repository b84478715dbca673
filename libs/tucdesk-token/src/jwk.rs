//! JWKS JSON (RFC 7517) with Ed25519 OKP keys (RFC 8037):
//!
//! ```json
//! {"keys":[{"kty":"OKP","crv":"Ed25519","x":"<b64url pk>","kid":"<kid>","use":"sig","alg":"EdDSA"}]}
//! ```
//!
//! Parsing is bounded: at most [`MAX_JWKS_BYTES`] of input and
//! [`MAX_JWKS_KEYS`] keys. A key is accepted only as an Ed25519 signing key:
//! `kty` OKP, `crv` Ed25519, `use` (if present) `sig`, `alg` (if present)
//! EdDSA, `x` a valid non-weak point, `kid` 1..=64 bytes and unique. Other
//! members are ignored as RFC 7517 §4 requires, except `d`: a JWKS carrying
//! private key material is a publisher mistake we refuse to build on.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use tucdesk_crypto::PublicKey;
use tucdesk_crypto::jws::{ALG_EDDSA, MAX_KID_LEN};

/// Most keys in a JWKS: current, next and a few retired keys whose tokens
/// may still be live.
pub const MAX_JWKS_KEYS: usize = 16;
/// Largest JWKS document parsed (one key is about 150 bytes).
pub const MAX_JWKS_BYTES: usize = 16 * 1024;
/// JWK `kty` of Ed25519 keys.
pub const KTY_OKP: &str = "OKP";
/// JWK `crv` of Ed25519 keys.
pub const CRV_ED25519: &str = "Ed25519";
/// JWK `use` of signing keys.
pub const USE_SIG: &str = "sig";

/// Why a JWKS or JWK was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// The document exceeds [`MAX_JWKS_BYTES`].
    #[error("JWKS exceeds {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    /// Not JSON of the JWKS shape.
    #[error("malformed JWKS")]
    Malformed,
    /// More than [`MAX_JWKS_KEYS`] keys.
    #[error("JWKS has more than {MAX_JWKS_KEYS} keys")]
    TooManyKeys,
    /// Two keys share a `kid`.
    #[error("duplicate kid in JWKS")]
    DuplicateKid,
    /// `kid` empty or longer than 64 bytes.
    #[error("kid must be 1..={MAX_KID_LEN} bytes")]
    BadKid,
    /// `kty`, `crv`, `use` or `alg` is not an Ed25519 signing key's.
    #[error("unsupported JWK: {0}")]
    Unsupported(&'static str),
    /// The JWK carries a private key (`d`).
    #[error("JWK contains private key material")]
    PrivateKeyMaterial,
    /// `x` is not 32 bytes of unpadded base64url, or not a valid point.
    #[error("invalid Ed25519 public key in JWK")]
    InvalidKey,
}

/// One public signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "JwkWire")]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// Unpadded base64url of the 32-byte public key.
    pub x: String,
    /// Key id, as in the token header.
    pub kid: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// Always `EdDSA`.
    pub alg: String,
}

/// A JWKS on the wire, before validation.
#[derive(Deserialize)]
struct JwksWire {
    keys: Vec<JwkWire>,
}

/// A JWK on the wire, before validation.
#[derive(Deserialize)]
struct JwkWire {
    kty: String,
    crv: String,
    x: String,
    kid: String,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    d: Option<IgnoredAny>,
}

impl TryFrom<JwkWire> for Jwk {
    type Error = JwkError;

    fn try_from(w: JwkWire) -> Result<Self, JwkError> {
        if w.d.is_some() {
            return Err(JwkError::PrivateKeyMaterial);
        }
        if w.kty != KTY_OKP {
            return Err(JwkError::Unsupported("kty"));
        }
        if w.crv != CRV_ED25519 {
            return Err(JwkError::Unsupported("crv"));
        }
        if w.use_.as_deref().is_some_and(|u| u != USE_SIG) {
            return Err(JwkError::Unsupported("use"));
        }
        if w.alg.as_deref().is_some_and(|a| a != ALG_EDDSA) {
            return Err(JwkError::Unsupported("alg"));
        }
        check_kid(&w.kid)?;
        let jwk = Jwk {
            kty: w.kty,
            crv: w.crv,
            x: w.x,
            kid: w.kid,
            use_: USE_SIG.to_owned(),
            alg: ALG_EDDSA.to_owned(),
        };
        jwk.public_key()?;
        Ok(jwk)
    }
}

/// Checks a `kid` is 1..=[`MAX_KID_LEN`] bytes (the JWS header's bound).
pub(crate) fn check_kid(kid: &str) -> Result<(), JwkError> {
    if kid.is_empty() || kid.len() > MAX_KID_LEN {
        return Err(JwkError::BadKid);
    }
    Ok(())
}

impl Jwk {
    /// The JWK of `key` under `kid`.
    pub fn from_public_key(kid: &str, key: &PublicKey) -> Result<Self, JwkError> {
        check_kid(kid)?;
        Ok(Self {
            kty: KTY_OKP.to_owned(),
            crv: CRV_ED25519.to_owned(),
            x: key.jwk_x(),
            kid: kid.to_owned(),
            use_: USE_SIG.to_owned(),
            alg: ALG_EDDSA.to_owned(),
        })
    }

    /// The public key in `x` (strict: canonical unpadded base64url, 32
    /// bytes, valid and not of small order).
    pub fn public_key(&self) -> Result<PublicKey, JwkError> {
        if self.kty != KTY_OKP || self.crv != CRV_ED25519 {
            return Err(JwkError::Unsupported("kty/crv"));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(&self.x)
            .map_err(|_| JwkError::InvalidKey)?;
        PublicKey::from_slice(&bytes).map_err(|_| JwkError::InvalidKey)
    }
}

/// A JWK set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// Parses and validates a JWKS document (see the module docs).
    pub fn from_json(body: &[u8]) -> Result<Self, JwkError> {
        if body.len() > MAX_JWKS_BYTES {
            return Err(JwkError::TooLarge);
        }
        // The byte cap bounds how many entries serde can allocate here; the
        // wire form keeps validation out of serde so each reason stays typed.
        let wire: JwksWire = serde_json::from_slice(body).map_err(|_| JwkError::Malformed)?;
        if wire.keys.len() > MAX_JWKS_KEYS {
            return Err(JwkError::TooManyKeys);
        }
        let jwks = Jwks {
            keys: wire
                .keys
                .into_iter()
                .map(Jwk::try_from)
                .collect::<Result<_, _>>()?,
        };
        jwks.validate()?;
        Ok(jwks)
    }

    /// The JSON document (what `/.well-known/jwks.json` serves).
    pub fn to_json(&self) -> Result<String, JwkError> {
        serde_json::to_string(self).map_err(|_| JwkError::Malformed)
    }

    /// Checks the key count and `kid` uniqueness.
    pub fn validate(&self) -> Result<(), JwkError> {
        if self.keys.len() > MAX_JWKS_KEYS {
            return Err(JwkError::TooManyKeys);
        }
        for (i, k) in self.keys.iter().enumerate() {
            check_kid(&k.kid)?;
            if self.keys[..i].iter().any(|o| o.kid == k.kid) {
                return Err(JwkError::DuplicateKid);
            }
        }
        Ok(())
    }

    /// `(kid, key)` pairs, every key validated.
    pub fn public_keys(&self) -> Result<Vec<(String, PublicKey)>, JwkError> {
        self.validate()?;
        self.keys
            .iter()
            .map(|k| Ok((k.kid.clone(), k.public_key()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use tucdesk_crypto::Identity;

    fn key() -> PublicKey {
        Identity::generate().unwrap().public_key()
    }

    #[test]
    fn jwks_roundtrips_with_the_rfc_8037_shape() {
        let pk = key();
        let jwks = Jwks {
            keys: vec![Jwk::from_public_key("k1", &pk).unwrap()],
        };
        let json = jwks.to_json().unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"keys":[{"kty":"OKP","crv":"Ed25519","x":pk.jwk_x(),"kid":"k1","use":"sig","alg":"EdDSA"}]})
        );
        let back = Jwks::from_json(json.as_bytes()).unwrap();
        assert_eq!(back, jwks);
        assert_eq!(back.public_keys().unwrap(), vec![("k1".to_owned(), pk)]);
    }

    #[test]
    fn optional_use_and_alg_and_unknown_members_are_tolerated() {
        let pk = key();
        let json = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{}","kid":"a","x5t":"ignored"}}]}}"#,
            pk.jwk_x()
        );
        let jwks = Jwks::from_json(json.as_bytes()).unwrap();
        assert_eq!(jwks.keys[0].alg, "EdDSA");
    }

    fn one(member_overrides: &str, x: &str) -> Result<Jwks, JwkError> {
        let json = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"a",{member_overrides}}}]}}"#
        );
        Jwks::from_json(json.as_bytes())
    }

    #[test]
    fn non_ed25519_or_private_keys_are_rejected() {
        let x = key().jwk_x();
        assert_eq!(
            one(r#""d":"secret""#, &x),
            Err(JwkError::PrivateKeyMaterial)
        );
        assert_eq!(one(r#""use":"enc""#, &x), Err(JwkError::Unsupported("use")));
        assert_eq!(
            one(r#""alg":"HS256""#, &x),
            Err(JwkError::Unsupported("alg"))
        );
        let rsa = r#"{"keys":[{"kty":"RSA","crv":"Ed25519","x":"AAAA","kid":"a"}]}"#;
        assert_eq!(
            Jwks::from_json(rsa.as_bytes()),
            Err(JwkError::Unsupported("kty"))
        );
        let x448 = format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed448","x":"{x}","kid":"a"}}]}}"#);
        assert_eq!(
            Jwks::from_json(x448.as_bytes()),
            Err(JwkError::Unsupported("crv"))
        );
        assert_eq!(one(r#""use":"sig""#, "AAAA"), Err(JwkError::InvalidKey));
        // Small-order point (the identity) is not a usable key.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        assert_eq!(
            one(r#""use":"sig""#, &URL_SAFE_NO_PAD.encode(weak)),
            Err(JwkError::InvalidKey)
        );
    }

    #[test]
    fn size_count_and_kid_bounds_hold() {
        let big = vec![b' '; MAX_JWKS_BYTES + 1];
        assert_eq!(Jwks::from_json(&big), Err(JwkError::TooLarge));

        let pk = key();
        let many = Jwks {
            keys: (0..=MAX_JWKS_KEYS)
                .map(|i| Jwk::from_public_key(&format!("k{i}"), &pk).unwrap())
                .collect(),
        };
        let json = many.to_json().unwrap();
        assert!(json.len() <= MAX_JWKS_BYTES);
        assert_eq!(Jwks::from_json(json.as_bytes()), Err(JwkError::TooManyKeys));

        let dup = Jwks {
            keys: vec![
                Jwk::from_public_key("same", &pk).unwrap(),
                Jwk::from_public_key("same", &key()).unwrap(),
            ],
        };
        assert_eq!(
            Jwks::from_json(dup.to_json().unwrap().as_bytes()),
            Err(JwkError::DuplicateKid)
        );
        assert_eq!(Jwk::from_public_key("", &pk), Err(JwkError::BadKid));
        assert_eq!(
            Jwk::from_public_key(&"k".repeat(MAX_KID_LEN + 1), &pk),
            Err(JwkError::BadKid)
        );
        assert_eq!(Jwks::from_json(b"{\"keys\":5}"), Err(JwkError::Malformed));
        assert_eq!(Jwks::from_json(b"not json"), Err(JwkError::Malformed));
    }
}
