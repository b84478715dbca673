//! Compact JWS (`tucdesk_crypto::jws::decode`) and the service assertion
//! rules behind it, against an independent reading of the documented format.
//!
//! First byte even: the rest is a token as received (metadata header,
//! relay ticket). Whatever decodes is strictly canonical (three non-empty
//! parts, canonical unpadded base64url, a header that is exactly the JSON
//! object `{alg: "EdDSA", typ, kid}` within bounds, a 64-byte signature), and
//! only the vectors' token verifies under the vectors' key.
//!
//! First byte odd: `header_len ‖ header JSON ‖ payload JSON`. The harness
//! signs them with the vectors' key, which lets the fuzzer reach what only a
//! key holder can: header parsing on a verified token, claims parsing and
//! every service assertion rule. Accepted ⇔ the rules hold (an empty part is
//! malformed, so an empty payload is always refused).
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer as _, SigningKey};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tucdesk_crypto::assertion::{
    ASSERTION_LEEWAY_SECS, MAX_ASSERTION_LEN, MAX_ASSERTION_LIFETIME_SECS, MAX_JTI_LEN,
    SERVICE_ASSERTION_TYP, ServiceKeyring,
};
use tucdesk_crypto::audit::canonical_json;
use tucdesk_crypto::jws::{self, ALG_EDDSA, JwsError, MAX_KID_LEN, MAX_TYP_LEN};
use tucdesk_crypto::{Identity, PublicKey};
use tucdesk_fuzz::{vector, vector_array, vector_str};
use tucdesk_proto::limits::MAX_TOKEN_LEN;
use zeroize::Zeroizing;

/// The service the signing key belongs to in the verifier's keyring.
const ISSUER: &str = "rendezvous";
/// The verifier.
const AUDIENCE: &str = "auth";

struct Fixture {
    signing: SigningKey,
    key: PublicKey,
    stranger: PublicKey,
    token: &'static str,
    now: u64,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let seed = vector_array("/service_assertion/seed_hex");
        Fixture {
            signing: SigningKey::from_bytes(&seed),
            key: Identity::from_seed(&Zeroizing::new(seed)).public_key(),
            stranger: Identity::from_seed(&Zeroizing::new([0x5a; 32])).public_key(),
            token: vector_str("/service_assertion/token"),
            now: vector("/service_assertion/verify_at_secs")
                .as_u64()
                .expect("verify_at_secs"),
        }
    })
}

/// The header rule, read from a generic JSON value: an object with exactly
/// `alg`, `typ` and `kid`, all strings, `alg` = EdDSA, lengths in bounds.
fn header_ok(header: &Value) -> Option<(&str, &str)> {
    let obj = header.as_object()?;
    if obj.len() != 3 || obj.get("alg")?.as_str()? != ALG_EDDSA {
        return None;
    }
    let typ = obj.get("typ")?.as_str()?;
    let kid = obj.get("kid")?.as_str()?;
    ((1..=MAX_TYP_LEN).contains(&typ.len()) && (1..=MAX_KID_LEN).contains(&kid.len()))
        .then_some((typ, kid))
}

/// The claims rule of `assertion.rs`'s module docs, read independently.
fn claims_ok(claims: &Map<String, Value>, now: u64) -> bool {
    let field = |k: &str| claims.get(k);
    let (Some(iss), Some(aud), Some(jti)) = (
        field("iss").and_then(Value::as_str),
        field("aud").and_then(Value::as_str),
        field("jti").and_then(Value::as_str),
    ) else {
        return false;
    };
    let (Some(iat), Some(exp)) = (
        field("iat").and_then(Value::as_u64),
        field("exp").and_then(Value::as_u64),
    ) else {
        return false;
    };
    let lifetime = i128::from(exp) - i128::from(iat);
    claims.len() == 5
        && iss == ISSUER
        && aud == AUDIENCE
        && (1..=MAX_JTI_LEN).contains(&jti.len())
        && (1..=i128::from(MAX_ASSERTION_LIFETIME_SECS)).contains(&lifetime)
        && i128::from(iat) <= i128::from(now) + i128::from(ASSERTION_LEEWAY_SECS)
        && i128::from(now) < i128::from(exp) + i128::from(ASSERTION_LEEWAY_SECS)
}

fn b64(part: &str) -> Vec<u8> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .expect("accepted part is base64url");
    assert_eq!(
        URL_SAFE_NO_PAD.encode(&bytes),
        part,
        "non-canonical base64url accepted"
    );
    bytes
}

/// Any token as received.
fn received(token: &str) {
    let fx = fixture();
    let Ok(unverified) = jws::decode(token, MAX_TOKEN_LEN) else {
        return;
    };
    if !token.is_empty() {
        assert_eq!(
            jws::decode(token, token.len() - 1).err(),
            Some(JwsError::TooLarge {
                max: token.len() - 1
            })
        );
    }
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&b64(parts[0])).expect("accepted header is JSON");
    let (typ, kid) = header_ok(&header).expect("accepted header breaks the header rule");
    assert_eq!(
        (typ, kid),
        (
            unverified.header().typ.as_str(),
            unverified.header().kid.as_str()
        )
    );
    b64(parts[1]);
    assert_eq!(b64(parts[2]).len(), 64);
    if unverified.verify(&fx.key).is_ok() {
        assert_eq!(token, fx.token, "a token the fuzzer made up verified");
    }
}

/// Header and payload signed by the harness.
fn signed(header_json: &[u8], payload_json: &[u8]) {
    let fx = fixture();
    let mut token = URL_SAFE_NO_PAD.encode(header_json);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload_json, &mut token);
    let sig = fx.signing.sign(token.as_bytes()).to_bytes();
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut token);

    let header_value: Option<Value> = serde_json::from_slice(header_json).ok();
    let header_rule = header_value.as_ref().and_then(header_ok);
    // Duplicate members are only visible to a strict parser.
    let header_strict = std::str::from_utf8(header_json)
        .ok()
        .and_then(|h| canonical_json::parse_object(h).ok());
    let decoded = jws::decode(&token, MAX_TOKEN_LEN);
    match &decoded {
        Ok(unverified) => {
            assert!(token.len() <= MAX_TOKEN_LEN);
            let (typ, kid) = header_rule.expect("accepted header breaks the header rule");
            assert_eq!(
                (typ, kid),
                (
                    unverified.header().typ.as_str(),
                    unverified.header().kid.as_str()
                )
            );
        }
        Err(_) => assert!(
            token.len() > MAX_TOKEN_LEN
                || payload_json.is_empty()
                || header_rule.is_none()
                || header_strict.is_none(),
            "a well-formed header was refused"
        ),
    }
    let Ok(unverified) = decoded else {
        return;
    };
    let header = unverified.header().clone();
    assert!(
        jws::decode(&token, MAX_TOKEN_LEN)
            .expect("decodes twice")
            .verify(&fx.stranger)
            .is_err(),
        "verified under the wrong key"
    );
    unverified
        .verify(&fx.key)
        .expect("our own signature verifies");

    // The service assertion rules, with this token's kid bound to ISSUER.
    let mut ring = ServiceKeyring::new();
    ring.insert(&header.kid, ISSUER, fx.key)
        .expect("kid within bounds");
    let result = ring.verify(&token, AUDIENCE, fx.now);
    let payload_strict = std::str::from_utf8(payload_json)
        .ok()
        .and_then(|p| canonical_json::parse_object(p).ok());
    let payload_value: Option<Value> = serde_json::from_slice(payload_json).ok();
    let rule = token.len() <= MAX_ASSERTION_LEN
        && header.typ == SERVICE_ASSERTION_TYP
        && payload_value
            .as_ref()
            .and_then(Value::as_object)
            .is_some_and(|c| claims_ok(c, fx.now));
    match result {
        Ok(claims) => {
            assert!(rule, "assertion accepted against the rules: {claims:?}");
            assert_eq!(claims.iss, ISSUER);
            assert_eq!(claims.aud, AUDIENCE);
        }
        Err(e) => assert!(
            !rule || payload_strict.is_none() || header_strict.is_none(),
            "assertion within the rules refused: {e:?}"
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(token) = std::str::from_utf8(body) {
            received(token);
        }
    } else if let Some((&header_len, rest)) = body.split_first() {
        let (header, payload) = rest.split_at(usize::from(header_len).min(rest.len()));
        signed(header, payload);
    }
});
