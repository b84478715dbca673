#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tucdesk_crypto::Identity;

use super::*;

const ISS: &str = "https://auth.tucdesk.test";
const API: &str = "tucdesk-api";
const RDV: &str = "rdv-eu1";
const RELAY: &str = "relay-7";
const NOW: u64 = 1_767_225_600;

fn issuer() -> TokenIssuer {
    TokenIssuer::new(ISS, "k1", Identity::generate().unwrap()).unwrap()
}

fn keys(i: &TokenIssuer) -> KeySet {
    KeySet::from_keys([(i.kid().to_owned(), i.public_key())]).unwrap()
}

fn access(jkt: &str) -> AccessClaims {
    AccessClaims {
        iss: ISS.into(),
        sub: "user-1".into(),
        aud: API.into(),
        team_id: "team-1".into(),
        email: Some("ops@example.com".into()),
        role: Role::Operator,
        iat: NOW,
        exp: NOW + DEFAULT_ACCESS_TOKEN_LIFETIME_SECS,
        nbf: None,
        jti: new_jti().unwrap(),
        cnf: Some(Cnf::jkt(jkt)),
        client_id: None,
        scp: None,
        kinds: None,
    }
}

fn session(agent_id: &str, jkt: &str, e_op_pub: &[u8]) -> SessionClaims {
    SessionClaims {
        iss: ISS.into(),
        sub: "user-1".into(),
        aud: vec![agent_id.to_owned(), RDV.to_owned()].into(),
        team_id: "team-1".into(),
        sid: "sess-1".into(),
        agent_id: agent_id.into(),
        kind: SessionKind::Shell,
        cnf: Cnf::jkt(jkt),
        ekh: ekh(e_op_pub),
        iat: NOW,
        exp: NOW + MAX_SESSION_TOKEN_LIFETIME_SECS,
        jti: new_jti().unwrap(),
    }
}

fn ticket(side: Side) -> RelayTicketClaims {
    RelayTicketClaims {
        iss: ISS.into(),
        aud: RELAY.into(),
        sid: "sess-1".into(),
        side,
        team_id: "team-1".into(),
        iat: NOW,
        exp: NOW + 120,
        jti: new_jti().unwrap(),
    }
}

#[test]
fn access_token_roundtrips_with_cnf_binding() {
    let i = issuer();
    let device = Identity::generate().unwrap().public_key().jwk_thumbprint();
    let mut claims = access(&device);
    claims.scp = Some("tag:web".into());
    claims.kinds = Some(vec![SessionKind::Exec]);
    let token = i.issue_access(&claims).unwrap();
    let v = TokenVerifier::new(keys(&i), ISS, API);
    assert_eq!(
        v.verify_access(&token, NOW, RequireCnf::Thumbprint(&device))
            .unwrap(),
        claims
    );
    assert_eq!(
        v.verify_access(&token, NOW, RequireCnf::No).unwrap(),
        claims
    );
}

#[test]
fn session_token_roundtrips_for_agent_and_rendezvous() {
    let i = issuer();
    let agent = Identity::generate().unwrap().agent_id();
    let jkt = Identity::generate().unwrap().public_key().jwk_thumbprint();
    let e_op = [9u8; 32];
    let claims = session(&agent, &jkt, &e_op);
    let token = i.issue_session(&claims).unwrap();

    let at_agent = TokenVerifier::new(keys(&i), ISS, &agent);
    let full = ExpectedSession {
        session_id: "sess-1",
        agent_id: Some(&agent),
        team_id: Some("team-1"),
        kind: Some(SessionKind::Shell),
        device_key_thumbprint: Some(&jkt),
        e_op_pub: Some(&e_op),
    };
    assert_eq!(at_agent.verify_session(&token, NOW, &full).unwrap(), claims);

    let at_rdv = TokenVerifier::new(keys(&i), ISS, RDV);
    let sid_only = ExpectedSession {
        session_id: "sess-1",
        ..Default::default()
    };
    assert_eq!(
        at_rdv.verify_session(&token, NOW, &sid_only).unwrap(),
        claims
    );
}

#[test]
fn session_bindings_are_each_enforced() {
    let i = issuer();
    let agent = Identity::generate().unwrap().agent_id();
    let jkt = Identity::generate().unwrap().public_key().jwk_thumbprint();
    let e_op = [9u8; 32];
    let token = i.issue_session(&session(&agent, &jkt, &e_op)).unwrap();
    let v = TokenVerifier::new(keys(&i), ISS, &agent);
    let base = ExpectedSession {
        session_id: "sess-1",
        ..Default::default()
    };
    let other_jkt = Identity::generate().unwrap().public_key().jwk_thumbprint();
    let cases = [
        (
            ExpectedSession {
                session_id: "sess-2",
                ..base
            },
            TokenError::BindingMismatch(Binding::SessionId),
        ),
        (
            ExpectedSession {
                agent_id: Some("another-agent"),
                ..base
            },
            TokenError::BindingMismatch(Binding::AgentId),
        ),
        (
            ExpectedSession {
                team_id: Some("team-2"),
                ..base
            },
            TokenError::BindingMismatch(Binding::TeamId),
        ),
        (
            ExpectedSession {
                kind: Some(SessionKind::Exec),
                ..base
            },
            TokenError::BindingMismatch(Binding::Kind),
        ),
        (
            ExpectedSession {
                device_key_thumbprint: Some(&other_jkt),
                ..base
            },
            TokenError::CnfMismatch,
        ),
        (
            ExpectedSession {
                e_op_pub: Some(&[8u8; 32]),
                ..base
            },
            TokenError::BindingMismatch(Binding::HandshakeKey),
        ),
    ];
    for (expected, err) in cases {
        assert_eq!(v.verify_session(&token, NOW, &expected), Err(err));
    }
}

#[test]
fn relay_ticket_roundtrips_and_binds_session_and_side() {
    let i = issuer();
    let claims = ticket(Side::Agent);
    let token = i.issue_relay_ticket(&claims).unwrap();
    let v = TokenVerifier::new(keys(&i), ISS, RELAY);
    assert_eq!(
        v.verify_relay_ticket(&token, NOW, "sess-1", Side::Agent)
            .unwrap(),
        claims
    );
    assert_eq!(
        v.verify_relay_ticket(&token, NOW, "sess-1", Side::Operator),
        Err(TokenError::BindingMismatch(Binding::Side))
    );
    assert_eq!(
        v.verify_relay_ticket(&token, NOW, "sess-2", Side::Agent),
        Err(TokenError::BindingMismatch(Binding::SessionId))
    );
    // Claim names are the documented ones.
    let payload = token.split('.').nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    let mut names: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        ["aud", "exp", "iat", "iss", "jti", "sid", "side", "team_id"]
    );
    assert_eq!(json["side"], "agent");
}

#[test]
fn leeway_bounds_are_inclusive_of_thirty_seconds() {
    let i = issuer();
    let claims = access("jkt");
    let token = i.issue_access(&claims).unwrap();
    let v = TokenVerifier::new(keys(&i), ISS, API);
    assert_eq!(v.leeway(), Duration::from_secs(30));
    let leeway = DEFAULT_LEEWAY.as_secs();
    // Expiry: still fine until exp + leeway.
    v.verify_access(&token, claims.exp + leeway - 1, RequireCnf::No)
        .unwrap();
    assert_eq!(
        v.verify_access(&token, claims.exp + leeway, RequireCnf::No),
        Err(TokenError::Expired)
    );
    // Issued slightly in the future (clock skew): fine within the leeway.
    v.verify_access(&token, NOW - leeway, RequireCnf::No)
        .unwrap();
    assert_eq!(
        v.verify_access(&token, NOW - leeway - 1, RequireCnf::No),
        Err(TokenError::NotYetValid)
    );
    // A configured leeway is capped.
    let wide = v.with_leeway(Duration::from_secs(3600));
    assert_eq!(wide.leeway(), MAX_LEEWAY);
}

#[test]
fn issuer_refuses_tokens_verifiers_would_reject() {
    let i = issuer();
    let mut c = access("jkt");
    c.iss = "https://other".into();
    assert_eq!(i.issue_access(&c), Err(TokenError::InvalidClaim("iss")));

    let mut c = access("jkt");
    c.exp = c.iat + MAX_ACCESS_TOKEN_LIFETIME_SECS + 1;
    assert_eq!(i.issue_access(&c), Err(TokenError::BadLifetime));
    c.exp = c.iat;
    assert_eq!(i.issue_access(&c), Err(TokenError::BadLifetime));

    let mut c = access("jkt");
    c.jti = String::new();
    assert_eq!(i.issue_access(&c), Err(TokenError::InvalidClaim("jti")));

    let mut c = access("jkt");
    c.aud = Audience::Many(vec![]);
    assert_eq!(i.issue_access(&c), Err(TokenError::InvalidClaim("aud")));

    let mut c = access("jkt");
    c.scp = Some("s".repeat(MAX_CLAIM_LEN + 1));
    assert_eq!(i.issue_access(&c), Err(TokenError::InvalidClaim("scp")));

    let mut s = session("agent", "jkt", &[1; 32]);
    s.exp = s.iat + MAX_SESSION_TOKEN_LIFETIME_SECS + 1;
    assert_eq!(i.issue_session(&s), Err(TokenError::BadLifetime));

    let mut t = ticket(Side::Operator);
    t.exp = t.iat + MAX_RELAY_TICKET_LIFETIME_SECS + 1;
    assert_eq!(i.issue_relay_ticket(&t), Err(TokenError::BadLifetime));

    assert!(TokenIssuer::new("", "k", Identity::generate().unwrap()).is_err());
    assert!(TokenIssuer::new(ISS, "", Identity::generate().unwrap()).is_err());
}

#[test]
fn role_order_and_grants() {
    let ranks: Vec<u8> = Role::ALL.iter().map(|r| r.rank()).collect();
    assert!(ranks.windows(2).all(|w| w[0] > w[1]), "strictly descending");
    assert!(Role::Owner.at_least(Role::Admin));
    assert!(Role::Operator.at_least(Role::Viewer));
    assert!(!Role::AiAgent.at_least(Role::Operator));
    assert!(!Role::Auditor.at_least(Role::Viewer));

    for r in Role::ALL {
        assert!(Role::Owner.can_grant(&r));
        assert_eq!(Role::Admin.can_grant(&r), r != Role::Owner);
        for lesser in [Role::Operator, Role::Viewer, Role::AiAgent, Role::Auditor] {
            assert!(!lesser.can_grant(&r));
        }
        assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        assert_eq!(
            serde_json::to_value(r).unwrap(),
            serde_json::Value::String(r.as_str().into())
        );
    }
    assert_eq!("root".parse::<Role>(), Err(UnknownRole));
}

#[test]
fn ekh_is_b64url_sha256() {
    // SHA-256 of the empty string.
    assert_eq!(ekh(b""), "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
}

#[test]
fn jti_is_a_random_uuid_v4() {
    let a = new_jti().unwrap();
    let b = new_jti().unwrap();
    assert_ne!(a, b);
    let u = uuid::Uuid::parse_str(&a).unwrap();
    assert_eq!(u.get_version_num(), 4);
}

#[test]
fn issuer_jwk_verifies_its_tokens() {
    let i = issuer();
    let jwks = Jwks {
        keys: vec![i.jwk().unwrap()],
    };
    let set =
        KeySet::from_jwks(&Jwks::from_json(jwks.to_json().unwrap().as_bytes()).unwrap()).unwrap();
    let token = i.issue_access(&access("jkt")).unwrap();
    TokenVerifier::new(set, ISS, API)
        .verify_access(&token, NOW, RequireCnf::No)
        .unwrap();
}
