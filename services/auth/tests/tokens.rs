//! Refresh-token families and session tokens, on both engines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestAuth, reason};
use tonic::Code;
use tucdesk_crypto::Identity;
use tucdesk_proto::v1::{LogoutRequest, MintSessionTokenRequest, RejectReason, SessionKind};
use tucdesk_token::{ExpectedSession, KeySet, Side, TokenVerifier};

const OWNER: &str = "owner@acme.example";

async fn each_refresh_rotates_and_reuse_revokes_the_family(t: TestAuth) {
    t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let first = t.tokens(&device, OWNER).await;
    let second = t.refresh(&device, &first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    let third = t.refresh(&device, &second.refresh_token).await.unwrap();

    // The first token is replayed (stolen copy): refused, and the whole family dies,
    // including the newest token the legitimate client holds.
    let reused = t.refresh(&device, &first.refresh_token).await.unwrap_err();
    assert_eq!(reason(&reused), RejectReason::TokenReused);
    let newest = t.refresh(&device, &third.refresh_token).await.unwrap_err();
    assert_eq!(newest.code(), Code::Unauthenticated);
    assert!(
        t.audit_actions()
            .await
            .contains(&"auth.refresh_reused".to_owned())
    );

    // Another device's login is a different family and unaffected.
    let other = Identity::generate().unwrap();
    let tokens = t.tokens(&other, OWNER).await;
    t.refresh(&other, &tokens.refresh_token).await.unwrap();
    t.stop().await;
}

async fn concurrent_refreshes_with_one_token_let_exactly_one_win(t: TestAuth) {
    t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let tokens = t.tokens(&device, OWNER).await;
    let (a, b) = tokio::join!(
        t.refresh(&device, &tokens.refresh_token),
        t.refresh(&device, &tokens.refresh_token)
    );
    let outcomes = [a.is_ok(), b.is_ok()];
    assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "{outcomes:?}");
    let loser = a.err().or(b.err()).unwrap();
    assert_eq!(reason(&loser), RejectReason::TokenReused);
    t.stop().await;
}

async fn a_refresh_token_is_useless_without_its_device_key(t: TestAuth) {
    t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let tokens = t.tokens(&device, OWNER).await;
    let thief = Identity::generate().unwrap();
    let err = t.refresh(&thief, &tokens.refresh_token).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::DeviceKeyMismatch);
    // The refusal consumed nothing: the owner's device still refreshes.
    t.refresh(&device, &tokens.refresh_token).await.unwrap();
    // Garbage is just invalid.
    let err = t.refresh(&device, "not-a-token").await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::TokenInvalid);
    t.stop().await;
}

async fn logout_revokes_the_family(t: TestAuth) {
    t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let tokens = t.tokens(&device, OWNER).await;
    let other_device = Identity::generate().unwrap();
    let other = t.tokens(&other_device, OWNER).await;
    t.client
        .clone()
        .logout(LogoutRequest {
            refresh_token: tokens.refresh_token.clone(),
            all_devices: false,
        })
        .await
        .unwrap();
    assert!(t.refresh(&device, &tokens.refresh_token).await.is_err());
    // Logout of one device leaves the other signed in; "all devices" ends it too.
    let other = t
        .refresh(&other_device, &other.refresh_token)
        .await
        .unwrap();
    let third_device = Identity::generate().unwrap();
    let third = t.tokens(&third_device, OWNER).await;
    t.client
        .clone()
        .logout(LogoutRequest {
            refresh_token: other.refresh_token.clone(),
            all_devices: true,
        })
        .await
        .unwrap();
    assert!(
        t.refresh(&other_device, &other.refresh_token)
            .await
            .is_err()
    );
    assert!(
        t.refresh(&third_device, &third.refresh_token)
            .await
            .is_err()
    );
    assert!(
        t.audit_actions()
            .await
            .iter()
            .filter(|a| *a == "auth.logout")
            .count()
            == 2
    );
    t.stop().await;
}

fn mint_request(team_id: &str, user_id: &str, device: &Identity) -> MintSessionTokenRequest {
    MintSessionTokenRequest {
        session_id: "0193a8c4-0000-7000-8000-000000000001".into(),
        team_id: team_id.into(),
        agent_id: Identity::generate().unwrap().agent_id(),
        user_id: user_id.into(),
        device_key_thumbprint: device.public_key().jwk_thumbprint(),
        e_op_pub: vec![9; 32],
        kind: SessionKind::Shell as i32,
        relay_node_id: "relay-1".into(),
        ttl_seconds: 0,
        rendezvous_audience: "rdv.acme".into(),
    }
}

async fn session_tokens_need_rendezvous_and_bind_the_session(t: TestAuth) {
    let (team_id, user_id) = t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let request = mint_request(&team_id, &user_id, &device);

    // No assertion, a user's access token, or another service's assertion: refused.
    let err = t
        .internal
        .clone()
        .mint_session_token(request.clone())
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::ServiceAssertionInvalid);
    let access = t.tokens(&device, OWNER).await.access_token;
    let mut with_user_token = tonic::Request::new(request.clone());
    with_user_token.metadata_mut().insert(
        tucdesk_proto::metadata::SERVICE_ASSERTION,
        access.parse().unwrap(),
    );
    let err = t
        .internal
        .clone()
        .mint_session_token(with_user_token)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::ServiceAssertionInvalid);
    let stranger = tucdesk_crypto::ServiceSigner::new(
        "rendezvous",
        "SHA256:stranger",
        Identity::generate().unwrap(),
    )
    .unwrap();
    let err = t
        .internal
        .clone()
        .mint_session_token(asserted(&stranger, request.clone()))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::ServiceAssertionInvalid);

    // Rendezvous: a session token bound to session, agent, team, device key and handshake
    // key, plus one relay ticket per side.
    let minted = t
        .internal
        .clone()
        .mint_session_token(asserted(&t.rendezvous, request.clone()))
        .await
        .unwrap()
        .into_inner();
    let jwks = t.auth.jwks().unwrap();
    let keys = KeySet::from_jwks(&jwks).unwrap();
    let issuer = t.auth.config().issuer.clone();
    let now = tucdesk_token::unix_now();
    let as_agent = TokenVerifier::new(keys.clone(), &issuer, &request.agent_id);
    let claims = as_agent
        .verify_session(
            &minted.session_token,
            now,
            &ExpectedSession {
                session_id: &request.session_id,
                agent_id: Some(&request.agent_id),
                team_id: Some(&team_id),
                kind: Some(tucdesk_token::SessionKind::Shell),
                device_key_thumbprint: Some(&request.device_key_thumbprint),
                e_op_pub: Some(&request.e_op_pub),
            },
        )
        .unwrap();
    assert_eq!(claims.sub, user_id);
    assert!(
        as_agent
            .verify_session(
                &minted.session_token,
                now,
                &ExpectedSession {
                    session_id: &request.session_id,
                    agent_id: Some(&request.agent_id),
                    team_id: Some(&team_id),
                    kind: Some(tucdesk_token::SessionKind::Shell),
                    device_key_thumbprint: Some(&request.device_key_thumbprint),
                    e_op_pub: Some(&[8; 32]),
                },
            )
            .is_err(),
        "another handshake key must not match"
    );
    let relay = TokenVerifier::new(keys, &issuer, "relay-1");
    relay
        .verify_relay_ticket(
            &minted.operator_relay_ticket,
            now,
            &request.session_id,
            Side::Operator,
        )
        .unwrap();
    relay
        .verify_relay_ticket(
            &minted.agent_relay_ticket,
            now,
            &request.session_id,
            Side::Agent,
        )
        .unwrap();
    assert!(
        relay
            .verify_relay_ticket(
                &minted.agent_relay_ticket,
                now,
                &request.session_id,
                Side::Operator
            )
            .is_err()
    );
    // A session token is not an access token.
    assert!(t.auth.authenticate(&minted.session_token).is_err());

    // A user of another team, or a made-up one, gets nothing.
    let mut foreign = request.clone();
    foreign.team_id = "another-team".into();
    let err = t
        .internal
        .clone()
        .mint_session_token(asserted(&t.rendezvous, foreign))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        t.audit_actions()
            .await
            .contains(&"auth.session_token_minted".to_owned())
    );
    t.stop().await;
}

fn asserted(
    signer: &tucdesk_crypto::ServiceSigner,
    request: MintSessionTokenRequest,
) -> tonic::Request<MintSessionTokenRequest> {
    let assertion = signer.issue("auth", tucdesk_token::unix_now()).unwrap();
    let mut request = tonic::Request::new(request);
    request.metadata_mut().insert(
        tucdesk_proto::metadata::SERVICE_ASSERTION,
        assertion.parse().unwrap(),
    );
    request
}

async fn a_family_ends_at_its_absolute_lifetime_whatever_the_activity(t: TestAuth) {
    t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let tokens = t.tokens(&device, OWNER).await;
    let next = t.refresh(&device, &tokens.refresh_token).await.unwrap();
    // The family was started long ago: its absolute lifetime is over even though the token is
    // fresh and unused.
    tucdesk_svc::on_pool!(t.db(), |pool| {
        sqlx::query("UPDATE refresh_families SET expires_at_ms = $1")
            .bind(tucdesk_svc::sql::now_ms() - 1)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected()
    });
    let err = t.refresh(&device, &next.refresh_token).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::TokenExpired);
    t.stop().await;
}

on_both_engines!(
    a_family_ends_at_its_absolute_lifetime_whatever_the_activity,
    each_refresh_rotates_and_reuse_revokes_the_family,
    concurrent_refreshes_with_one_token_let_exactly_one_win,
    a_refresh_token_is_useless_without_its_device_key,
    logout_revokes_the_family,
    session_tokens_need_rendezvous_and_bind_the_session,
);
