//! Known JWT attacks, each crafted by hand and each expected to fail with
//! its own error variant.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::ser::{Serialize, SerializeMap, Serializer};
use sha2::Sha256;
use tucdesk_crypto::Identity;
use tucdesk_crypto::jws::{self, JwsHeader};
use tucdesk_token::*;

fn access_token() -> (String, String) {
    let jkt = device_jkt();
    (
        issuer().issue_access(&access_claims(&jkt, NOW)).unwrap(),
        jkt,
    )
}

fn verify(token: &str) -> Result<AccessClaims, TokenError> {
    verifier().verify_access(token, NOW, RequireCnf::No)
}

#[test]
fn alg_none_is_rejected_before_any_key_lookup() {
    let (token, _) = access_token();
    let (_, payload, _) = parts(&token);
    // An empty key set would answer UnknownKey if a lookup happened first.
    let no_keys = TokenVerifier::new(KeySet::new(), ISS, API);
    let headers = [
        format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{KID}"}}"#),
        r#"{"alg":"none","typ":"JWT"}"#.to_owned(),
        r#"{"alg":"none"}"#.to_owned(),
        r#"{"alg":"None","typ":"at+jwt","kid":"x"}"#.to_owned(),
        r#"{"alg":"NONE"}"#.to_owned(),
    ];
    for header in headers {
        let h = b64(&header);
        for unsigned in [format!("{h}.{payload}."), format!("{h}.{payload}")] {
            for v in [verifier(), no_keys.clone()] {
                assert_eq!(
                    v.verify_access(&unsigned, NOW, RequireCnf::No),
                    Err(TokenError::UnsupportedAlgorithm),
                    "{header} / {unsigned}"
                );
            }
        }
    }
}

#[test]
fn hs256_signed_with_the_public_key_is_rejected() {
    // Classic key confusion: a verifier that lets the token pick the
    // algorithm would check this HMAC with the "key" it has for the kid,
    // the Ed25519 public key, which the attacker knows from the JWKS.
    let (token, _) = access_token();
    let (_, payload, _) = parts(&token);
    let pk = signing_key().public_key();
    let mut claims = access_claims(&device_jkt(), NOW);
    claims.role = Role::Owner;
    let owner_payload = b64(serde_json::to_vec(&claims).unwrap());
    for alg in ["HS256", "HS512", "RS256", "ES256", "eddsa", "Ed25519"] {
        let header = b64(format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"{KID}"}}"#));
        for body in [&payload, &owner_payload] {
            for hmac_key in [pk.as_bytes().as_slice(), pk.jwk_x().as_bytes()] {
                let signing_input = format!("{header}.{body}");
                let mut mac = Hmac::<Sha256>::new_from_slice(hmac_key).unwrap();
                mac.update(signing_input.as_bytes());
                let forged = format!("{signing_input}.{}", b64(mac.finalize().into_bytes()));
                assert_eq!(
                    verify(&forged),
                    Err(TokenError::UnsupportedAlgorithm),
                    "{alg}"
                );
            }
        }
    }
    // Same HMAC, but labelled EdDSA: the 32-byte tag is no Ed25519
    // signature.
    let header = b64(format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{KID}"}}"#));
    let signing_input = format!("{header}.{owner_payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(pk.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    let forged = format!("{signing_input}.{}", b64(mac.finalize().into_bytes()));
    assert_eq!(
        verify(&forged),
        Err(TokenError::Malformed("signature length"))
    );
}

#[test]
fn unknown_kid_is_rejected_and_a_stranger_key_under_a_known_kid_fails_the_signature() {
    let claims = access_claims(&device_jkt(), NOW);
    let stranger = Identity::generate().unwrap();
    let other_kid = TokenIssuer::new(ISS, "attacker", Identity::generate().unwrap()).unwrap();
    assert_eq!(
        verify(&other_kid.issue_access(&claims).unwrap()),
        Err(TokenError::UnknownKey)
    );
    let same_kid = TokenIssuer::new(ISS, KID, stranger).unwrap();
    assert_eq!(
        verify(&same_kid.issue_access(&claims).unwrap()),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn rotated_out_key_stops_verifying_at_once() {
    let (token, _) = access_token();
    let v = verifier();
    verify(&token).unwrap();
    let next = Identity::generate().unwrap().public_key();
    v.keys()
        .replace([("auth-2026-02".to_owned(), next)])
        .unwrap();
    assert_eq!(
        v.verify_access(&token, NOW, RequireCnf::No),
        Err(TokenError::UnknownKey)
    );
}

#[test]
fn wrong_audience_is_rejected() {
    let i = issuer();
    let mut claims = access_claims(&device_jkt(), NOW);
    claims.aud = "another-api".into();
    assert_eq!(
        verify(&i.issue_access(&claims).unwrap()),
        Err(TokenError::WrongAudience)
    );
    claims.aud = vec!["a".to_owned(), "b".to_owned()].into();
    assert_eq!(
        verify(&i.issue_access(&claims).unwrap()),
        Err(TokenError::WrongAudience)
    );
    // A prefix or case variant of ours is not ours.
    claims.aud = API.to_uppercase().into();
    assert_eq!(
        verify(&i.issue_access(&claims).unwrap()),
        Err(TokenError::WrongAudience)
    );
    claims.aud = vec!["a".to_owned(), API.to_owned()].into();
    verify(&i.issue_access(&claims).unwrap()).unwrap();
}

#[test]
fn wrong_issuer_is_rejected() {
    let other = TokenIssuer::new("https://evil.test", KID, signing_key()).unwrap();
    let mut claims = access_claims(&device_jkt(), NOW);
    claims.iss = "https://evil.test".into();
    assert_eq!(
        verify(&other.issue_access(&claims).unwrap()),
        Err(TokenError::WrongIssuer)
    );
}

#[test]
fn expired_and_not_yet_valid_tokens_are_rejected() {
    let (token, _) = access_token();
    let v = verifier();
    let leeway = DEFAULT_LEEWAY.as_secs();
    assert_eq!(
        v.verify_access(&token, NOW + 900 + leeway, RequireCnf::No),
        Err(TokenError::Expired)
    );
    assert_eq!(
        v.verify_access(&token, NOW - leeway - 1, RequireCnf::No),
        Err(TokenError::NotYetValid)
    );
    let mut claims = access_claims(&device_jkt(), NOW);
    claims.nbf = Some(NOW + 120);
    let later = issuer().issue_access(&claims).unwrap();
    assert_eq!(
        v.verify_access(&later, NOW, RequireCnf::No),
        Err(TokenError::NotYetValid)
    );
    v.verify_access(&later, NOW + 120, RequireCnf::No).unwrap();
}

#[test]
fn token_kinds_never_verify_as_one_another() {
    let i = issuer();
    let agent = Identity::generate().unwrap().agent_id();
    let session = SessionClaims {
        iss: ISS.into(),
        sub: "user-1".into(),
        aud: vec![agent.clone(), API.to_owned()].into(),
        team_id: "team-1".into(),
        sid: "sess-1".into(),
        agent_id: agent,
        kind: SessionKind::Shell,
        cnf: Cnf::jkt(device_jkt()),
        ekh: ekh(&[1; 32]),
        iat: NOW,
        exp: NOW + 300,
        jti: new_jti().unwrap(),
    };
    let ticket = RelayTicketClaims {
        iss: ISS.into(),
        aud: API.into(),
        sid: "sess-1".into(),
        side: Side::Operator,
        team_id: "team-1".into(),
        iat: NOW,
        exp: NOW + 300,
        jti: new_jti().unwrap(),
    };
    let session_token = i.issue_session(&session).unwrap();
    let relay_ticket = i.issue_relay_ticket(&ticket).unwrap();
    let (access, _) = access_token();
    let v = verifier();
    let sid = ExpectedSession {
        session_id: "sess-1",
        ..Default::default()
    };

    let as_access = Err(TokenError::WrongType {
        expected: ACCESS_TOKEN_TYP,
    });
    assert_eq!(verify(&session_token), as_access);
    assert_eq!(verify(&relay_ticket), as_access);

    let as_session = Err(TokenError::WrongType {
        expected: SESSION_TOKEN_TYP,
    });
    assert_eq!(v.verify_session(&access, NOW, &sid), as_session);
    assert_eq!(v.verify_session(&relay_ticket, NOW, &sid), as_session);

    let as_ticket = Err(TokenError::WrongType {
        expected: RELAY_TICKET_TYP,
    });
    assert_eq!(
        v.verify_relay_ticket(&access, NOW, "sess-1", Side::Operator),
        as_ticket
    );
    assert_eq!(
        v.verify_relay_ticket(&session_token, NOW, "sess-1", Side::Operator),
        as_ticket
    );

    // Even re-signed by the real key with the access `typ`, a session claim
    // set is not an access claim set.
    let relabelled = jws::sign(
        &JwsHeader::eddsa(ACCESS_TOKEN_TYP, KID),
        &session,
        &signing_key(),
    )
    .unwrap();
    assert_eq!(verify(&relabelled), Err(TokenError::ClaimsMalformed));
    // Nor does a service assertion's typ pass.
    let svc = jws::sign(
        &JwsHeader::eddsa(tucdesk_crypto::assertion::SERVICE_ASSERTION_TYP, KID),
        &access_claims(&device_jkt(), NOW),
        &signing_key(),
    )
    .unwrap();
    assert_eq!(verify(&svc), as_access);
}

#[test]
fn cnf_must_match_the_device_key_when_required() {
    let (token, jkt) = access_token();
    let v = verifier();
    v.verify_access(&token, NOW, RequireCnf::Thumbprint(&jkt))
        .unwrap();
    assert_eq!(
        v.verify_access(&token, NOW, RequireCnf::Thumbprint(&device_jkt())),
        Err(TokenError::CnfMismatch)
    );
    assert_eq!(
        v.verify_access(&token, NOW, RequireCnf::Thumbprint("")),
        Err(TokenError::CnfMismatch)
    );
    let mut unbound = access_claims(&jkt, NOW);
    unbound.cnf = None;
    let unbound = issuer().issue_access(&unbound).unwrap();
    assert_eq!(
        v.verify_access(&unbound, NOW, RequireCnf::Thumbprint(&jkt)),
        Err(TokenError::CnfMissing)
    );
    v.verify_access(&unbound, NOW, RequireCnf::No).unwrap();
}

#[test]
fn oversize_token_is_rejected_before_decoding() {
    let big = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(
        verify(&big),
        Err(TokenError::TooLarge { max: MAX_TOKEN_LEN })
    );
    // A genuinely signed token over the cap is refused at issue time.
    let mut claims = access_claims(&device_jkt(), NOW);
    claims.aud = Audience::Many((0..4).map(|i| format!("{i}{}", "a".repeat(500))).collect());
    claims.scp = Some("s".repeat(MAX_CLAIM_LEN));
    claims.client_id = Some("c".repeat(MAX_CLAIM_LEN));
    claims.email = Some("e".repeat(MAX_CLAIM_LEN));
    assert_eq!(
        issuer().issue_access(&claims),
        Err(TokenError::TooLarge { max: MAX_TOKEN_LEN })
    );
}

#[test]
fn tampered_payload_fails_the_signature() {
    let (token, jkt) = access_token();
    let (header, _, sig) = parts(&token);
    let mut claims = access_claims(&jkt, NOW);
    claims.role = Role::Owner;
    claims.team_id = "team-2".into();
    let payload = b64(serde_json::to_vec(&claims).unwrap());
    assert_eq!(
        verify(&format!("{header}.{payload}.{sig}")),
        Err(TokenError::BadSignature)
    );
    // Flipping one signature bit fails too.
    let mut raw = unb64(&sig);
    raw[0] ^= 1;
    let (_, good_payload, _) = parts(&token);
    assert_eq!(
        verify(&format!("{header}.{good_payload}.{}", b64(raw))),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn header_tricks_are_malformed() {
    let (token, _) = access_token();
    let (_, payload, sig) = parts(&token);
    let cases = [
        // jku/jwk/x5u would point to attacker keys; never followed.
        format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{KID}","jku":"https://evil/jwks"}}"#),
        format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{KID}","crit":["exp"]}}"#),
        r#"{"alg":"EdDSA","typ":"at+jwt"}"#.to_owned(),
        format!(r#"{{"alg":"EdDSA","alg":"none","typ":"at+jwt","kid":"{KID}"}}"#),
    ];
    for header in cases {
        let t = format!("{}.{payload}.{sig}", b64(&header));
        assert!(
            matches!(verify(&t), Err(TokenError::Malformed(_))),
            "{header}: {:?}",
            verify(&t)
        );
    }
    // Padding and extra parts.
    assert!(matches!(
        verify(&format!("{token}=")),
        Err(TokenError::Malformed(_))
    ));
    assert!(matches!(
        verify(&format!("{token}.x")),
        Err(TokenError::Malformed(_))
    ));
}

/// Serialises an access claim set with `role` twice: a parser that keeps
/// the last duplicate would read "owner".
struct DuplicateRole(AccessClaims);

impl Serialize for DuplicateRole {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = serde_json::to_value(&self.0).unwrap();
        let mut map = s.serialize_map(None)?;
        for (k, val) in v.as_object().unwrap() {
            map.serialize_entry(k, val)?;
        }
        map.serialize_entry("role", "owner")?;
        map.end()
    }
}

#[test]
fn duplicate_or_unknown_claims_are_rejected_even_when_signed() {
    let claims = access_claims(&device_jkt(), NOW);
    let dup = jws::sign(
        &JwsHeader::eddsa(ACCESS_TOKEN_TYP, KID),
        &DuplicateRole(claims.clone()),
        &signing_key(),
    )
    .unwrap();
    assert_eq!(verify(&dup), Err(TokenError::ClaimsMalformed));

    let mut v = serde_json::to_value(&claims).unwrap();
    v["admin"] = serde_json::Value::Bool(true);
    let extra = jws::sign(&JwsHeader::eddsa(ACCESS_TOKEN_TYP, KID), &v, &signing_key()).unwrap();
    assert_eq!(verify(&extra), Err(TokenError::ClaimsMalformed));

    let mut v = serde_json::to_value(&claims).unwrap();
    v["role"] = "root".into();
    let bad_role = jws::sign(&JwsHeader::eddsa(ACCESS_TOKEN_TYP, KID), &v, &signing_key()).unwrap();
    assert_eq!(verify(&bad_role), Err(TokenError::ClaimsMalformed));
}

#[test]
fn signed_tokens_with_out_of_bounds_lifetime_are_rejected() {
    // Even the real key cannot mint a 1-year token that verifiers accept.
    let mut claims = access_claims(&device_jkt(), NOW);
    claims.exp = NOW + 365 * 24 * 3600;
    let long = jws::sign(
        &JwsHeader::eddsa(ACCESS_TOKEN_TYP, KID),
        &claims,
        &signing_key(),
    )
    .unwrap();
    assert_eq!(verify(&long), Err(TokenError::BadLifetime));
}
