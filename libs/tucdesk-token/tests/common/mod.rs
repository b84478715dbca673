//! Fixtures shared by the integration tests: one fixed issuer key (so a test
//! can also sign by hand with the same key), names and hand-made tokens.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tucdesk_crypto::Identity;
use tucdesk_token::{AccessClaims, Cnf, KeySet, Role, TokenIssuer, TokenVerifier, new_jti};
use zeroize::Zeroizing;

pub const ISS: &str = "https://auth.tucdesk.test";
pub const API: &str = "tucdesk-api";
pub const KID: &str = "auth-2026-01";
pub const NOW: u64 = 1_767_225_600;
/// Fixed issuer seed: tests rebuild the same key to forge tokens by hand.
pub const SEED: [u8; 32] = [0x42; 32];

/// The issuer's signing key (a second copy of the same secret).
pub fn signing_key() -> Identity {
    Identity::from_seed(&Zeroizing::new(SEED))
}

pub fn issuer() -> TokenIssuer {
    TokenIssuer::new(ISS, KID, signing_key()).unwrap()
}

pub fn keys() -> KeySet {
    KeySet::from_keys([(KID.to_owned(), signing_key().public_key())]).unwrap()
}

pub fn verifier() -> TokenVerifier {
    TokenVerifier::new(keys(), ISS, API)
}

/// A device key and its thumbprint (`cnf.jkt`).
pub fn device_jkt() -> String {
    Identity::generate().unwrap().public_key().jwk_thumbprint()
}

pub fn access_claims(jkt: &str, iat: u64) -> AccessClaims {
    AccessClaims {
        iss: ISS.into(),
        sub: "user-1".into(),
        aud: API.into(),
        team_id: "team-1".into(),
        email: Some("ops@example.com".into()),
        role: Role::Operator,
        iat,
        exp: iat + 900,
        nbf: None,
        jti: new_jti().unwrap(),
        cnf: Some(Cnf::jkt(jkt)),
        client_id: None,
        scp: None,
        kinds: None,
    }
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

/// The three parts of a compact token.
pub fn parts(token: &str) -> (String, String, String) {
    let mut it = token.split('.');
    let p = (
        it.next().unwrap().to_owned(),
        it.next().unwrap().to_owned(),
        it.next().unwrap().to_owned(),
    );
    assert!(it.next().is_none());
    p
}
