//! Account self-service through the real gRPC client on both engines: password change, TOTP
//! enrolment with recovery codes, and moving the device-key binding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{PASSWORD, TestAuth, proof, reason, totp_now};
use sha2::Digest as _;
use tonic::Code;
use tucdesk_auth::account::{
    BEGIN_TOTP_METHOD, BIND_DEVICE_KEY_METHOD, CHANGE_PASSWORD_METHOD, DISABLE_TOTP_METHOD,
    RECOVERY_CODE_COUNT,
};
use tucdesk_crypto::Identity;
use tucdesk_proto::v1::{
    BeginTotpEnrollmentRequest, BeginTotpEnrollmentResponse, BindDeviceKeyRequest,
    ChangePasswordRequest, ConfirmTotpEnrollmentRequest, DisableTotpRequest, LoginResponse,
    RejectReason, TokenPair, WhoAmIRequest, login_response,
};
use tucdesk_token::{RequireCnf, unix_now};

const OWNER: &str = "owner@acme.example";
const NEW_PASSWORD: &str = "a brand new long passphrase";

fn authed<T>(message: T, tokens: &TokenPair) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", tokens.access_token).parse().unwrap(),
    );
    request
}

fn change_request(
    tokens: &TokenPair,
    signer: &Identity,
    target: &str,
    current: &str,
    new: &str,
) -> tonic::Request<ChangePasswordRequest> {
    authed(
        ChangePasswordRequest {
            current_password: current.to_owned(),
            new_password: new.to_owned(),
            proof: Some(proof(signer, CHANGE_PASSWORD_METHOD, target, b"", b"")),
        },
        tokens,
    )
}

async fn change_password(
    t: &TestAuth,
    device: &Identity,
    tokens: &TokenPair,
    user_id: &str,
    current: &str,
    new: &str,
) -> Result<(), tonic::Status> {
    let request = change_request(tokens, device, user_id, current, new);
    t.client.clone().change_password(request).await.map(drop)
}

async fn begin_totp(
    t: &TestAuth,
    device: &Identity,
    tokens: &TokenPair,
    user_id: &str,
) -> Result<BeginTotpEnrollmentResponse, tonic::Status> {
    let request = authed(
        BeginTotpEnrollmentRequest {
            proof: Some(proof(device, BEGIN_TOTP_METHOD, user_id, b"", b"")),
        },
        tokens,
    );
    t.client
        .clone()
        .begin_totp_enrollment(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn confirm_totp(
    t: &TestAuth,
    tokens: &TokenPair,
    code: &str,
) -> Result<Vec<String>, tonic::Status> {
    let request = authed(
        ConfirmTotpEnrollmentRequest {
            code: code.to_owned(),
        },
        tokens,
    );
    let response = t.client.clone().confirm_totp_enrollment(request).await?;
    Ok(response.into_inner().recovery_codes)
}

async fn disable_totp(
    t: &TestAuth,
    device: &Identity,
    tokens: &TokenPair,
    user_id: &str,
    code: &str,
) -> Result<(), tonic::Status> {
    let request = authed(
        DisableTotpRequest {
            code: code.to_owned(),
            proof: Some(proof(device, DISABLE_TOTP_METHOD, user_id, b"", b"")),
        },
        tokens,
    );
    t.client.clone().disable_totp(request).await.map(drop)
}

async fn login_with_code(
    t: &TestAuth,
    device: &Identity,
    code: &str,
) -> Result<LoginResponse, tonic::Status> {
    let mut request = t.login_request(device, OWNER, PASSWORD).await;
    request.totp_code = code.to_owned();
    t.client
        .clone()
        .login(request)
        .await
        .map(tonic::Response::into_inner)
}

fn is_tokens(response: &LoginResponse) -> bool {
    matches!(response.result, Some(login_response::Result::Tokens(_)))
}

/// RFC 4648 base32 without padding, decoded independently of the service.
fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in text.bytes() {
        let value = ALPHABET.iter().position(|a| *a == c).unwrap();
        buffer = (buffer << 5) | u32::try_from(value).unwrap();
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).unwrap());
        }
    }
    out
}

async fn change_password_checks_the_current_one_and_signs_out_other_devices(t: TestAuth) {
    let (_, user_id) = t.owner(OWNER).await;
    let desk = Identity::generate().unwrap();
    let laptop = Identity::generate().unwrap();
    let desk_tokens = t.tokens(&desk, OWNER).await;
    let laptop_tokens = t.tokens(&laptop, OWNER).await;

    let err = change_password(
        &t,
        &desk,
        &desk_tokens,
        &user_id,
        "wrong guess!!",
        NEW_PASSWORD,
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&err), RejectReason::InvalidCredentials);
    change_password(&t, &desk, &desk_tokens, &user_id, PASSWORD, NEW_PASSWORD)
        .await
        .unwrap();

    // The old password is gone, the new one works.
    let err = t.login(&desk, OWNER, PASSWORD).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::InvalidCredentials);
    assert!(is_tokens(
        &t.login(&desk, OWNER, NEW_PASSWORD).await.unwrap()
    ));
    // Every other device is signed out; this one keeps its session.
    let err = t
        .refresh(&laptop, &laptop_tokens.refresh_token)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    t.refresh(&desk, &desk_tokens.refresh_token).await.unwrap();

    let actions = t.audit_actions().await;
    assert!(actions.iter().any(|a| a == "auth.password_change_failed"));
    assert!(actions.iter().any(|a| a == "auth.password_changed"));
    t.stop().await;
}

async fn a_stolen_access_token_cannot_change_the_password(t: TestAuth) {
    let (_, user_id) = t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let tokens = t.tokens(&device, OWNER).await;
    let thief = Identity::generate().unwrap();

    // Signed by a key the token is not bound to.
    let err = change_password(&t, &thief, &tokens, &user_id, PASSWORD, NEW_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::DeviceKeyMismatch);
    // No proof.
    let mut request = change_request(&tokens, &device, &user_id, PASSWORD, NEW_PASSWORD);
    request.get_mut().proof = None;
    let err = t.client.clone().change_password(request).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::ProofInvalid);
    // The right key, but a proof for another target or another method.
    let other = uuid::Uuid::now_v7().to_string();
    let err = change_password(&t, &device, &tokens, &other, PASSWORD, NEW_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::ProofInvalid);
    let mut request = change_request(&tokens, &device, &user_id, PASSWORD, NEW_PASSWORD);
    request.get_mut().proof = Some(proof(&device, DISABLE_TOTP_METHOD, &user_id, b"", b""));
    let err = t.client.clone().change_password(request).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::ProofInvalid);
    // No token: the proof alone is not enough either.
    let mut request = change_request(&tokens, &device, &user_id, PASSWORD, NEW_PASSWORD);
    request.metadata_mut().remove("authorization");
    let err = t.client.clone().change_password(request).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // Nothing changed.
    assert!(is_tokens(&t.login(&device, OWNER, PASSWORD).await.unwrap()));
    t.stop().await;
}

async fn password_change_guesses_count_toward_the_login_lockout(t: TestAuth) {
    let (_, user_id) = t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let tokens = t.tokens(&device, OWNER).await;

    // New-password policy and sameness are refused before any guess is counted.
    for new in ["short", PASSWORD] {
        let err = change_password(&t, &device, &tokens, &user_id, PASSWORD, new)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    let limit = tucdesk_auth::login::LOGIN_ACCOUNT_LIMIT.max_failures;
    for _ in 0..limit {
        let err = change_password(
            &t,
            &device,
            &tokens,
            &user_id,
            "wrong guess!!",
            NEW_PASSWORD,
        )
        .await
        .unwrap_err();
        assert_eq!(reason(&err), RejectReason::InvalidCredentials);
    }
    // Locked for password changes and for logins alike, even with the right password.
    let err = change_password(&t, &device, &tokens, &user_id, PASSWORD, NEW_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::AccountLocked);
    let err = t.login(&device, OWNER, PASSWORD).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::AccountLocked);
    t.stop().await;
}

async fn totp_enrolment_login_recovery_codes_and_disable(t: TestAuth) {
    let (_, user_id) = t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let tokens = t.tokens(&device, OWNER).await;

    let started = begin_totp(&t, &device, &tokens, &user_id).await.unwrap();
    let secret = base32_decode(&started.secret_base32);
    assert_eq!(secret.len(), 20);
    assert!(started.otpauth_uri.starts_with("otpauth://totp/TucDesk:"));
    assert!(started.otpauth_uri.contains(&started.secret_base32));
    let expires = started.expires_at.unwrap().seconds;
    let in_10_min = i64::try_from(unix_now()).unwrap() + 600;
    assert!((expires - in_10_min).abs() < 30, "{expires} vs {in_10_min}");
    // Not on yet: login still needs no code.
    assert!(is_tokens(&t.login(&device, OWNER, PASSWORD).await.unwrap()));
    // The sealed secret in the database is not the secret.
    let stored: Vec<u8> = tucdesk_svc::on_pool!(t.db(), |pool| {
        sqlx::query_scalar("SELECT totp_pending_secret FROM users WHERE id = $1")
            .bind(&user_id)
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert!(!stored.windows(secret.len()).any(|w| w == secret.as_slice()));

    let err = confirm_totp(&t, &tokens, "000000").await;
    if let Err(err) = &err {
        assert_eq!(reason(err), RejectReason::TotpInvalid);
    }
    let code = totp_now(&secret);
    let recovery = match err {
        // "000000" happened to be the current code (one chance in a million).
        Ok(codes) => codes,
        Err(_) => confirm_totp(&t, &tokens, &code).await.unwrap(),
    };
    assert_eq!(recovery.len(), RECOVERY_CODE_COUNT);
    let mut distinct = recovery.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), RECOVERY_CODE_COUNT);
    // Stored as hashes only.
    let hashes: Vec<Vec<u8>> = tucdesk_svc::on_pool!(t.db(), |pool| {
        sqlx::query_scalar("SELECT code_hash FROM totp_recovery_codes WHERE user_id = $1")
            .bind(&user_id)
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert_eq!(hashes.len(), RECOVERY_CODE_COUNT);
    assert!(
        hashes
            .iter()
            .all(|h| h.len() == 32 && h.as_slice() != recovery[0].as_bytes())
    );
    // Enrolling again while on: refused.
    let err = begin_totp(&t, &device, &tokens, &user_id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    // Now login asks for a code; the confirming code's step is already used.
    let response = t.login(&device, OWNER, PASSWORD).await.unwrap();
    assert!(matches!(
        response.result,
        Some(login_response::Result::TotpRequired(_))
    ));
    let err = login_with_code(&t, &device, &code).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::TotpInvalid);
    // A recovery code works once, typed sloppily or not.
    let sloppy = recovery[0].to_lowercase().replace('-', " ");
    assert!(is_tokens(
        &login_with_code(&t, &device, &sloppy).await.unwrap()
    ));
    let err = login_with_code(&t, &device, &recovery[0])
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::TotpInvalid);
    let err = login_with_code(&t, &device, "ABCD-EFGH-JKMN-PQRS")
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::TotpInvalid);
    // Racing two logins with one recovery code: exactly one wins.
    let (a, b) = tokio::join!(
        login_with_code(&t, &device, &recovery[1]),
        login_with_code(&t, &device, &recovery[1]),
    );
    assert!(a.is_ok() != b.is_ok(), "{a:?} / {b:?}");

    // Disabling needs a proof and a valid code; a wrong one changes nothing.
    let err = disable_totp(&t, &device, &tokens, &user_id, "ZZZZ-ZZZZ-ZZZZ-ZZZZ")
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::TotpInvalid);
    let thief = Identity::generate().unwrap();
    let err = disable_totp(&t, &thief, &tokens, &user_id, &recovery[2])
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::DeviceKeyMismatch);
    disable_totp(&t, &device, &tokens, &user_id, &recovery[2])
        .await
        .unwrap();
    assert!(is_tokens(&t.login(&device, OWNER, PASSWORD).await.unwrap()));
    let left: i64 = tucdesk_svc::on_pool!(t.db(), |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM totp_recovery_codes WHERE user_id = $1")
            .bind(&user_id)
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(left, 0);

    let actions = t.audit_actions().await;
    for action in [
        "auth.totp_enrollment_started",
        "auth.totp_enabled",
        "auth.totp_recovery_code_used",
        "auth.totp_disable_failed",
        "auth.totp_disabled",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }
    t.stop().await;
}

async fn totp_is_disabled_with_a_current_code(t: TestAuth) {
    let (_, user_id) = t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let tokens = t.tokens(&device, OWNER).await;
    let secret = [9u8; 20];
    t.enable_totp(&user_id, &secret).await;
    let code = totp_now(&secret);
    disable_totp(&t, &device, &tokens, &user_id, &code)
        .await
        .unwrap();
    // Off now: disabling again is NOT_FOUND, and login needs no code.
    let err = disable_totp(&t, &device, &tokens, &user_id, &code)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(is_tokens(&t.login(&device, OWNER, PASSWORD).await.unwrap()));
    t.stop().await;
}

async fn a_pending_enrolment_expires(t: TestAuth) {
    let (_, user_id) = t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let tokens = t.tokens(&device, OWNER).await;

    // Nothing started.
    let err = confirm_totp(&t, &tokens, "123456").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let started = begin_totp(&t, &device, &tokens, &user_id).await.unwrap();
    let secret = base32_decode(&started.secret_base32);
    tucdesk_svc::on_pool!(t.db(), |pool| {
        sqlx::query("UPDATE users SET totp_pending_expires_at_ms = $1 WHERE id = $2")
            .bind(tucdesk_svc::sql::now_ms() - 1)
            .bind(&user_id)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected()
    });
    let err = confirm_totp(&t, &tokens, &totp_now(&secret))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // TOTP stayed off.
    assert!(is_tokens(&t.login(&device, OWNER, PASSWORD).await.unwrap()));

    // A restarted enrolment replaces the old secret: the old secret's code does not confirm.
    let restarted = begin_totp(&t, &device, &tokens, &user_id).await.unwrap();
    assert_ne!(restarted.secret_base32, started.secret_base32);
    let fresh = base32_decode(&restarted.secret_base32);
    if totp_now(&secret) != totp_now(&fresh) {
        let err = confirm_totp(&t, &tokens, &totp_now(&secret))
            .await
            .unwrap_err();
        assert_eq!(reason(&err), RejectReason::TotpInvalid);
    }
    confirm_totp(&t, &tokens, &totp_now(&fresh)).await.unwrap();
    t.stop().await;
}

async fn confirmation_guesses_are_limited(t: TestAuth) {
    let (_, user_id) = t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let tokens = t.tokens(&device, OWNER).await;
    let started = begin_totp(&t, &device, &tokens, &user_id).await.unwrap();
    let secret = base32_decode(&started.secret_base32);
    let right = totp_now(&secret);
    let wrong = if right == "111111" {
        "222222"
    } else {
        "111111"
    };
    let limit = tucdesk_auth::account::TOTP_CODE_LIMIT.max_failures;
    for _ in 0..limit {
        let err = confirm_totp(&t, &tokens, wrong).await.unwrap_err();
        assert_eq!(reason(&err), RejectReason::TotpInvalid);
    }
    let err = confirm_totp(&t, &tokens, &right).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::AccountLocked);
    t.stop().await;
}

fn bind_request(
    tokens: &TokenPair,
    current: &Identity,
    new: &Identity,
    user_id: &str,
    challenge: &[u8],
) -> tonic::Request<BindDeviceKeyRequest> {
    let new_key = new.public_key().to_bytes();
    let binding = sha2::Sha256::digest(new_key);
    authed(
        BindDeviceKeyRequest {
            current_proof: Some(proof(
                current,
                BIND_DEVICE_KEY_METHOD,
                user_id,
                &binding,
                b"",
            )),
            new_proof: Some(proof(new, BIND_DEVICE_KEY_METHOD, user_id, b"", challenge)),
        },
        tokens,
    )
}

async fn bind_device_key_moves_the_binding(t: TestAuth) {
    let (_, user_id) = t.owner(OWNER).await;
    let old = Identity::generate().unwrap();
    let tokens = t.tokens(&old, OWNER).await;
    let new = Identity::generate().unwrap();
    let thief = Identity::generate().unwrap();

    // A thief with the access token cannot move it to its own key.
    let request = bind_request(&tokens, &thief, &thief, &user_id, &t.challenge().await);
    let err = t.client.clone().bind_device_key(request).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::DeviceKeyMismatch);
    // The current key's proof must cover the new key.
    let mut request = bind_request(&tokens, &old, &new, &user_id, &t.challenge().await);
    request.get_mut().new_proof = Some(proof(
        &thief,
        BIND_DEVICE_KEY_METHOD,
        &user_id,
        b"",
        &t.challenge().await,
    ));
    let err = t.client.clone().bind_device_key(request).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::ProofInvalid);
    // The new key's proof needs a server challenge.
    let request = bind_request(&tokens, &old, &new, &user_id, b"");
    let err = t.client.clone().bind_device_key(request).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // Proofs for another user id.
    let other = uuid::Uuid::now_v7().to_string();
    let request = bind_request(&tokens, &old, &new, &other, &t.challenge().await);
    let err = t.client.clone().bind_device_key(request).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::ProofInvalid);
    // The old session is still alive after all those refusals.
    let tokens = t.refresh(&old, &tokens.refresh_token).await.unwrap();

    let request = bind_request(&tokens, &old, &new, &user_id, &t.challenge().await);
    let moved = t
        .client
        .clone()
        .bind_device_key(request)
        .await
        .unwrap()
        .into_inner();
    let claims = t.auth.authenticate(&moved.access_token).unwrap();
    let new_jkt = new.public_key().jwk_thumbprint();
    assert_eq!(claims.cnf.unwrap().jkt, new_jkt);
    t.auth
        .verifier()
        .verify_access(
            &moved.access_token,
            unix_now(),
            RequireCnf::Thumbprint(&new_jkt),
        )
        .unwrap();
    // The old family is revoked; the new one refreshes with the new key only.
    let err = t.refresh(&old, &tokens.refresh_token).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = t.refresh(&old, &moved.refresh_token).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::DeviceKeyMismatch);
    let next = t.refresh(&new, &moved.refresh_token).await.unwrap();
    // Sensitive calls now need the new key.
    let err = change_password(&t, &old, &next, &user_id, PASSWORD, NEW_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::DeviceKeyMismatch);
    let me = t
        .client
        .clone()
        .who_am_i(authed(WhoAmIRequest {}, &next))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.principal.unwrap().device_key_thumbprint, new_jkt);
    assert!(
        t.audit_actions()
            .await
            .iter()
            .any(|a| a == "auth.device_key_bound")
    );
    t.stop().await;
}

on_both_engines!(
    change_password_checks_the_current_one_and_signs_out_other_devices,
    a_stolen_access_token_cannot_change_the_password,
    password_change_guesses_count_toward_the_login_lockout,
    totp_enrolment_login_recovery_codes_and_disable,
    totp_is_disabled_with_a_current_code,
    a_pending_enrolment_expires,
    confirmation_guesses_are_limited,
    bind_device_key_moves_the_binding,
);
