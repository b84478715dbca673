//! Bootstrap, login, lockout, device binding and the tokens they produce, on both engines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{PASSWORD, TestAuth, reason};
use tonic::Code;
use tucdesk_crypto::Identity;
use tucdesk_proto::v1::{RejectReason, WhoAmIRequest, login_response};
use tucdesk_token::{KeySet, RequireCnf, TokenVerifier};

const OWNER: &str = "owner@acme.example";

async fn bootstrap_login_and_whoami(t: TestAuth) {
    let (team_id, user_id) = t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    // Emails are case-insensitive.
    let tokens = t.tokens(&device, "Owner@ACME.example").await;
    assert!(!tokens.refresh_token.is_empty());
    let user = tokens.user.clone().unwrap();
    assert_eq!(
        (user.user_id.as_str(), user.team_id.as_str()),
        (user_id.as_str(), team_id.as_str())
    );

    // The access token verifies with nothing but the published JWKS, and is bound to the
    // device key that signed the login proof.
    let body = reqwest_get(&format!("http://{}/.well-known/jwks.json", t.http_addr)).await;
    let jwks = tucdesk_token::Jwks::from_json(body.as_bytes()).unwrap();
    let verifier = TokenVerifier::new(
        KeySet::from_jwks(&jwks).unwrap(),
        &t.auth.config().issuer,
        "tucdesk",
    );
    let thumbprint = device.public_key().jwk_thumbprint();
    let claims = verifier
        .verify_access(
            &tokens.access_token,
            tucdesk_token::unix_now(),
            RequireCnf::Thumbprint(&thumbprint),
        )
        .unwrap();
    assert_eq!(claims.sub, user_id);
    assert_eq!(claims.team_id, team_id);
    assert_eq!(claims.role, tucdesk_token::Role::Owner);
    let other = Identity::generate().unwrap().public_key().jwk_thumbprint();
    assert!(
        verifier
            .verify_access(
                &tokens.access_token,
                tucdesk_token::unix_now(),
                RequireCnf::Thumbprint(&other)
            )
            .is_err()
    );

    let mut request = tonic::Request::new(WhoAmIRequest {});
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", tokens.access_token).parse().unwrap(),
    );
    let me = t
        .client
        .clone()
        .who_am_i(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.user.unwrap().email, OWNER);
    assert_eq!(me.principal.unwrap().device_key_thumbprint, thumbprint);

    let actions = t.audit_actions().await;
    assert!(
        actions.starts_with(&[
            "auth.bootstrap".to_owned(),
            "auth.invite_accepted".to_owned()
        ]),
        "{actions:?}"
    );
    assert!(actions.contains(&"auth.login".to_owned()));
    t.stop().await;
}

async fn bootstrap_runs_once_and_setup_tokens_work_once(t: TestAuth) {
    let done = t.auth.bootstrap("Acme", OWNER).await.unwrap();
    assert!(matches!(
        t.auth.bootstrap("Other", "x@y.example").await,
        Err(tucdesk_auth::AuthError::AlreadyExists(_))
    ));
    t.auth
        .accept_invite(done.setup_token.as_str(), PASSWORD.to_owned().into())
        .await
        .unwrap();
    assert!(matches!(
        t.auth
            .accept_invite(
                done.setup_token.as_str(),
                "another long password".to_owned().into()
            )
            .await,
        Err(tucdesk_auth::AuthError::TokenInvalid)
    ));
    t.stop().await;
}

async fn unknown_user_and_wrong_password_get_the_same_answer(t: TestAuth) {
    t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let wrong = t
        .login(&device, OWNER, "not the password at all")
        .await
        .unwrap_err();
    let unknown = t
        .login(&device, "nobody@acme.example", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(
        (wrong.code(), wrong.message()),
        (unknown.code(), unknown.message())
    );
    assert_eq!(reason(&wrong), RejectReason::InvalidCredentials);
    assert_eq!(reason(&unknown), RejectReason::InvalidCredentials);
    t.stop().await;
}

async fn repeated_failures_lock_the_account(t: TestAuth) {
    t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let limit = tucdesk_auth::login::LOGIN_ACCOUNT_LIMIT.max_failures;
    for _ in 0..limit - 1 {
        let err = t
            .login(&device, OWNER, "wrong password guess")
            .await
            .unwrap_err();
        assert_eq!(reason(&err), RejectReason::InvalidCredentials);
    }
    // The attempt that reaches the limit is still checked; after it the account is locked,
    // even for the right password.
    t.login(&device, OWNER, "wrong password guess")
        .await
        .unwrap_err();
    let locked = t.login(&device, OWNER, PASSWORD).await.unwrap_err();
    assert_eq!(locked.code(), Code::ResourceExhausted);
    assert_eq!(reason(&locked), RejectReason::AccountLocked);
    let detail = tucdesk_auth::error::error_detail(&locked).unwrap();
    assert!(detail.retry_after_ms > 0);
    let metrics = t.auth.metrics();
    assert_eq!(metrics.lockouts.with_label_values(&["account"]).get(), 1);
    assert_eq!(
        metrics
            .logins
            .with_label_values(&["invalid_credentials"])
            .get(),
        u64::from(limit)
    );
    assert!(
        t.audit_actions()
            .await
            .iter()
            .any(|a| a == "auth.login_failed")
    );
    t.stop().await;
}

async fn login_needs_a_fresh_challenge_and_a_valid_proof(t: TestAuth) {
    t.owner(OWNER).await;
    let device = Identity::generate().unwrap();

    // No proof at all.
    let mut request = t.login_request(&device, OWNER, PASSWORD).await;
    request.device_proof = None;
    let err = t.client.clone().login(request).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::ProofInvalid);

    // A captured request replayed verbatim: the proof nonce and the challenge are spent.
    let request = t.login_request(&device, OWNER, PASSWORD).await;
    t.client.clone().login(request.clone()).await.unwrap();
    let replay = t.client.clone().login(request).await.unwrap_err();
    assert_eq!(replay.code(), Code::Unauthenticated);

    // A proof for another account's email does not carry over.
    let mut request = t
        .login_request(&device, "someone@else.example", PASSWORD)
        .await;
    request.email = OWNER.to_owned();
    let err = t.client.clone().login(request).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::ProofInvalid);

    // An old client gets an explicit UPDATE_REQUIRED.
    let mut request = t.login_request(&device, OWNER, PASSWORD).await;
    request.protocol_version = 0;
    let err = t.client.clone().login(request).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::UpdateRequired);
    t.stop().await;
}

async fn totp_is_asked_for_after_the_password_and_each_code_works_once(t: TestAuth) {
    let (_, user_id) = t.owner(OWNER).await;
    let secret = [7u8; 20];
    t.enable_totp(&user_id, &secret).await;
    let device = Identity::generate().unwrap();

    // Wrong password: the usual answer, no hint that TOTP is on.
    let err = t
        .login(&device, OWNER, "not the password at all")
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::InvalidCredentials);
    // Right password, no code: asked for one.
    let response = t.login(&device, OWNER, PASSWORD).await.unwrap();
    assert!(matches!(
        response.result,
        Some(login_response::Result::TotpRequired(_))
    ));
    // Right password and code: tokens.
    let code = common::totp_now(&secret);
    let mut request = t.login_request(&device, OWNER, PASSWORD).await;
    request.totp_code = code.clone();
    let response = t.client.clone().login(request).await.unwrap().into_inner();
    assert!(matches!(
        response.result,
        Some(login_response::Result::Tokens(_))
    ));
    // The same code again: refused.
    let mut request = t.login_request(&device, OWNER, PASSWORD).await;
    request.totp_code = code;
    let err = t.client.clone().login(request).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::TotpInvalid);
    t.stop().await;
}

async fn rotated_keys_stay_published_until_their_tokens_expire(t: TestAuth) {
    t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let before = t.tokens(&device, OWNER).await;
    let old_kid = t.auth.keys().ring().current_kid.clone();
    let new_kid = t
        .auth
        .keys()
        .rotate(t.auth.longest_token_lifetime())
        .await
        .unwrap();
    assert_ne!(old_kid, new_kid);
    let jwks = t.auth.jwks().unwrap();
    let kids: Vec<_> = jwks.keys.iter().map(|k| k.kid.clone()).collect();
    assert!(
        kids.contains(&old_kid) && kids.contains(&new_kid),
        "{kids:?}"
    );
    // A token signed before the rotation still verifies; new tokens use the new key.
    t.auth.authenticate(&before.access_token).unwrap();
    let after = t.tokens(&Identity::generate().unwrap(), OWNER).await;
    let header = tucdesk_crypto::jws::decode(&after.access_token, 8192).unwrap();
    assert_eq!(header.header().kid, new_kid);
    // The service's own verifier follows the rotation, and the rotation is audited.
    t.auth.authenticate(&after.access_token).unwrap();
    assert!(
        t.audit_actions()
            .await
            .contains(&"auth.signing_key_rotated".to_owned())
    );
    t.stop().await;
}

async fn challenges_are_rate_limited_per_source(t: TestAuth) {
    let limit = tucdesk_auth::login::CHALLENGE_SOURCE_LIMIT.max_failures;
    for _ in 0..limit {
        t.challenge().await;
    }
    let err = t
        .client
        .clone()
        .begin_device_binding(tucdesk_proto::v1::BeginDeviceBindingRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(reason(&err), RejectReason::RateLimited);
    t.stop().await;
}

on_both_engines!(
    challenges_are_rate_limited_per_source,
    bootstrap_login_and_whoami,
    bootstrap_runs_once_and_setup_tokens_work_once,
    unknown_user_and_wrong_password_get_the_same_answer,
    repeated_failures_lock_the_account,
    login_needs_a_fresh_challenge_and_a_valid_proof,
    totp_is_asked_for_after_the_password_and_each_code_works_once,
    rotated_keys_stay_published_until_their_tokens_expire,
);

/// A minimal HTTP/1.1 GET over a raw TCP stream (the JWKS endpoint, as any client sees it).
async fn reqwest_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/jwk-set+json")
    );
    body.to_owned()
}
