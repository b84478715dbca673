#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::json;

use super::*;

const NOW: u64 = 1_767_225_600;

fn setup() -> (ServiceSigner, ServiceKeyring) {
    let signer =
        ServiceSigner::new("rendezvous", "rdv-2026-01", Identity::generate().unwrap()).unwrap();
    let mut ring = ServiceKeyring::new();
    ring.insert("rdv-2026-01", "rendezvous", signer.public_key())
        .unwrap();
    (signer, ring)
}

fn raw_token(signer: &ServiceSigner, typ: &str, claims: serde_json::Value) -> String {
    jws::sign(&JwsHeader::eddsa(typ, &signer.kid), &claims, &signer.key).unwrap()
}

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[test]
fn issued_assertion_verifies() {
    let (signer, ring) = setup();
    let token = signer.issue("auth", NOW).unwrap();
    let claims = ring.verify(&token, "auth", NOW).unwrap();
    assert_eq!(claims.iss, "rendezvous");
    assert_eq!(claims.aud, "auth");
    assert_eq!(claims.exp - claims.iat, DEFAULT_ASSERTION_LIFETIME_SECS);
    assert!(token.len() < MAX_ASSERTION_LEN);
}

#[test]
fn user_access_token_never_verifies_as_service_assertion() {
    let (signer, ring) = setup();
    // Same key, same kid, plausible claims: only `typ` differs.
    let claims = json!({"iss":"rendezvous","aud":"auth","iat":NOW,"exp":NOW+30,"jti":"x"});
    for typ in [ACCESS_TOKEN_TYP, "JWT", "jwt", "TUCDESK-SVC+JWT"] {
        let token = raw_token(&signer, typ, claims.clone());
        assert_eq!(
            ring.verify(&token, "auth", NOW),
            Err(AssertionError::WrongType),
            "{typ}"
        );
    }
    // A realistic access token with user claims is rejected too.
    let at = raw_token(
        &signer,
        ACCESS_TOKEN_TYP,
        json!({"iss":"rendezvous","sub":"u1","aud":"auth","team_id":"t1","role":"owner",
               "iat":NOW,"exp":NOW+900,"jti":"j","cnf":{"jkt":"abc"}}),
    );
    assert_eq!(
        ring.verify(&at, "auth", NOW),
        Err(AssertionError::WrongType)
    );
}

#[test]
fn non_eddsa_algorithms_are_rejected() {
    let (signer, ring) = setup();
    let good = signer.issue("auth", NOW).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    for alg in ["none", "HS256", "RS256", "ES256", "eddsa"] {
        let h = b64(&json!({"alg":alg,"typ":SERVICE_ASSERTION_TYP,"kid":"rdv-2026-01"}));
        let forged = format!("{h}.{}.{}", parts[1], parts[2]);
        assert_eq!(
            ring.verify(&forged, "auth", NOW),
            Err(AssertionError::Jws(JwsError::UnsupportedAlgorithm)),
            "{alg}"
        );
    }
    let h = b64(&json!({"alg":"none","typ":SERVICE_ASSERTION_TYP,"kid":"rdv-2026-01"}));
    assert!(
        ring.verify(&format!("{h}.{}.", parts[1]), "auth", NOW)
            .is_err()
    );
}

#[test]
fn unknown_kid_and_foreign_issuer_are_rejected() {
    let (signer, mut ring) = setup();
    let stranger =
        ServiceSigner::new("rendezvous", "other", Identity::generate().unwrap()).unwrap();
    let t = stranger.issue("auth", NOW).unwrap();
    assert_eq!(
        ring.verify(&t, "auth", NOW),
        Err(AssertionError::UnknownKey)
    );

    // The relay's key, correctly registered, cannot speak for rendezvous.
    let relay = ServiceSigner::new("relay", "relay-1", Identity::generate().unwrap()).unwrap();
    ring.insert("relay-1", "relay", relay.public_key()).unwrap();
    let claims = json!({"iss":"rendezvous","aud":"auth","iat":NOW,"exp":NOW+30,"jti":"x"});
    let t = raw_token(&relay, SERVICE_ASSERTION_TYP, claims);
    assert_eq!(
        ring.verify(&t, "auth", NOW),
        Err(AssertionError::IssuerMismatch)
    );
    // A rendezvous key id pointing at a token signed by the relay's key.
    let claims = json!({"iss":"rendezvous","aud":"auth","iat":NOW,"exp":NOW+30,"jti":"x"});
    let t = jws::sign(
        &JwsHeader::eddsa(SERVICE_ASSERTION_TYP, "rdv-2026-01"),
        &claims,
        &relay.key,
    )
    .unwrap();
    assert_eq!(
        ring.verify(&t, "auth", NOW),
        Err(AssertionError::Jws(JwsError::BadSignature))
    );
    assert_eq!(
        ring.insert("relay-1", "relay", signer.public_key()),
        Err(AssertionError::DuplicateKid)
    );
}

#[test]
fn wrong_audience_is_rejected() {
    let (signer, ring) = setup();
    let t = signer.issue("audit", NOW).unwrap();
    assert_eq!(
        ring.verify(&t, "auth", NOW),
        Err(AssertionError::WrongAudience)
    );
}

#[test]
fn time_window_and_leeway() {
    let (signer, ring) = setup();
    let t = signer.issue_with("auth", NOW, 30, "j1").unwrap();
    assert!(ring.verify(&t, "auth", NOW).is_ok());
    assert!(ring.verify(&t, "auth", NOW - ASSERTION_LEEWAY_SECS).is_ok());
    assert_eq!(
        ring.verify(&t, "auth", NOW - ASSERTION_LEEWAY_SECS - 1),
        Err(AssertionError::NotYetValid)
    );
    assert!(
        ring.verify(&t, "auth", NOW + 30 + ASSERTION_LEEWAY_SECS - 1)
            .is_ok()
    );
    assert_eq!(
        ring.verify(&t, "auth", NOW + 30 + ASSERTION_LEEWAY_SECS),
        Err(AssertionError::Expired)
    );
}

#[test]
fn lifetime_over_sixty_seconds_is_rejected() {
    let (signer, ring) = setup();
    assert_eq!(
        signer.issue_with("auth", NOW, 61, "j"),
        Err(AssertionError::BadLifetime)
    );
    for (iat, exp) in [
        (NOW, NOW + 61),
        (NOW, NOW),
        (NOW, NOW - 1),
        (NOW - 3600, NOW + 10),
    ] {
        let t = raw_token(
            &signer,
            SERVICE_ASSERTION_TYP,
            json!({"iss":"rendezvous","aud":"auth","iat":iat,"exp":exp,"jti":"x"}),
        );
        assert_eq!(
            ring.verify(&t, "auth", NOW),
            Err(AssertionError::BadLifetime),
            "{iat} {exp}"
        );
    }
    let t = signer.issue_with("auth", NOW, 60, "j").unwrap();
    assert!(ring.verify(&t, "auth", NOW).is_ok());
}

#[test]
fn strict_parsing_rejects_extras_padding_and_oversize() {
    let (signer, ring) = setup();
    // Unknown claim.
    let t = raw_token(
        &signer,
        SERVICE_ASSERTION_TYP,
        json!({"iss":"rendezvous","aud":"auth","iat":NOW,"exp":NOW+30,"jti":"x","team_id":"t"}),
    );
    assert!(matches!(
        ring.verify(&t, "auth", NOW),
        Err(AssertionError::Jws(JwsError::Malformed(_)))
    ));
    // Unknown header member (crit/jku must never be honoured).
    let good = signer.issue("auth", NOW).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let h = b64(
        &json!({"alg":"EdDSA","typ":SERVICE_ASSERTION_TYP,"kid":"rdv-2026-01","jku":"https://evil"}),
    );
    assert!(
        ring.verify(&format!("{h}.{}.{}", parts[1], parts[2]), "auth", NOW)
            .is_err()
    );
    // Duplicate header member.
    let dup = URL_SAFE_NO_PAD
        .encode(br#"{"alg":"EdDSA","typ":"tucdesk-svc+jwt","kid":"rdv-2026-01","alg":"EdDSA"}"#);
    assert!(
        ring.verify(&format!("{dup}.{}.{}", parts[1], parts[2]), "auth", NOW)
            .is_err()
    );
    // Padding, extra parts, empty parts, non-ASCII.
    for bad in [
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{good}.x"),
        format!("{}..{}", parts[0], parts[2]),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}é"),
        String::new(),
    ] {
        assert!(ring.verify(&bad, "auth", NOW).is_err(), "{bad}");
    }
    let huge = "a".repeat(MAX_ASSERTION_LEN + 1);
    assert_eq!(
        ring.verify(&huge, "auth", NOW),
        Err(AssertionError::Jws(JwsError::TooLarge {
            max: MAX_ASSERTION_LEN
        }))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_flipped_bit_fails_verification(pos in any::<prop::sample::Index>(), bit in 0u8..7) {
        let (signer, ring) = setup();
        let token = signer.issue_with("auth", NOW, 30, "jti-1").unwrap();
        let mut bytes = token.into_bytes();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        if let Ok(s) = String::from_utf8(bytes) {
            prop_assert!(ring.verify(&s, "auth", NOW).is_err());
        }
    }
}
