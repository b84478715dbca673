//! OAuth 2.1 + PKCE for AI agents over real HTTP on both engines: registration, the login +
//! consent page, codes, tokens, refresh rotation, and the gRPC management of grants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod oauth_support;

use common::{PASSWORD, TestAuth, proof, reason};
use oauth_support::*;
use tonic::Code;
use tucdesk_crypto::Identity;
use tucdesk_proto::v1::{
    ListOAuthClientsRequest, ListOAuthGrantsRequest, OAuthClient, RegisterOAuthClientRequest,
    RejectReason, RevokeOAuthClientRequest, RevokeOAuthGrantRequest, TokenPair, WhoAmIRequest,
};
use tucdesk_token::{KeySet, RequireCnf, Role, TokenVerifier};

const OWNER: &str = "owner@acme.example";

fn authed<T>(message: T, tokens: &TokenPair) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", tokens.access_token).parse().unwrap(),
    );
    request
}

async fn verifier(t: &TestAuth) -> TokenVerifier {
    let jwks = get(t, "/.well-known/jwks.json").await;
    let jwks = tucdesk_token::Jwks::from_json(jwks.body.as_bytes()).unwrap();
    TokenVerifier::new(
        KeySet::from_jwks(&jwks).unwrap(),
        &t.auth.config().issuer,
        "tucdesk",
    )
}

async fn full_flow_gives_an_agent_token_bound_to_its_client(t: TestAuth) {
    let (team_id, user_id) = t.owner(OWNER).await;
    let client_id = client(&t, "Claude <Desktop> & co", &[LOOPBACK]).await;
    let (code_verifier, challenge) = pkce();

    // The browser gets the page: the client's name (escaped) and the scopes it asks for.
    let page = get(&t, &authorize_target(&client_id, LOOPBACK, &challenge, &[])).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Claude &lt;Desktop&gt; &amp; co"),
        "{}",
        page.body
    );
    assert!(page.body.contains("sessions:shell"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("frame-ancestors 'none'")
    );

    // Sign-in + consent: a 303 to the registered redirect URI with code, state and issuer.
    let done = submit(&t, &page.body, OWNER, PASSWORD, "", "allow").await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(done.header("location").unwrap().starts_with(LOOPBACK));
    let params = done.location_params();
    assert_eq!(params["state"], "st-123");
    assert_eq!(params["iss"], t.auth.config().issuer);
    assert_eq!(params["code"].len(), 43, "256-bit code");

    let response = exchange(&t, &client_id, LOOPBACK, &params["code"], &code_verifier).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.header("cache-control"), Some("no-store"));
    let tokens = response.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(
        tokens["scope"],
        "agents:read sessions:read sessions:exec sessions:shell"
    );
    assert!(tokens["expires_in"].as_u64().unwrap() > 0);

    // Verifiable from the JWKS alone; carries the client, the scope and role ai_agent, and
    // no device binding.
    let claims = verifier(&t)
        .await
        .verify_access(
            tokens["access_token"].as_str().unwrap(),
            tucdesk_token::unix_now(),
            RequireCnf::No,
        )
        .unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.team_id.as_str()),
        (user_id.as_str(), team_id.as_str())
    );
    assert_eq!(claims.client_id.as_deref(), Some(client_id.as_str()));
    assert_eq!(claims.role, Role::AiAgent, "never the owner's role");
    assert!(claims.scp.unwrap().contains("sessions:exec"));
    assert!(claims.cnf.is_none());

    // The gRPC side sees an AI agent; the refresh token is useless to gRPC Refresh (no
    // device key can prove it).
    let pair = TokenPair {
        access_token: tokens["access_token"].as_str().unwrap().to_owned(),
        ..TokenPair::default()
    };
    let me = t
        .client
        .clone()
        .who_am_i(authed(WhoAmIRequest {}, &pair))
        .await
        .unwrap();
    assert_eq!(me.into_inner().principal.unwrap().kind, "ai_agent");
    let device = Identity::generate().unwrap();
    let err = t
        .refresh(&device, tokens["refresh_token"].as_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::DeviceKeyMismatch);
    // ... and the refusal did not spend it.
    let again = refresh(&t, &client_id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(again.status, 200, "{}", again.body);

    let actions = t.audit_actions().await;
    for action in [
        "auth.oauth_client_registered",
        "auth.oauth_grant",
        "auth.oauth_token",
        "auth.refresh",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    t.stop().await;
}

async fn pkce_is_mandatory_s256_only_and_checked(t: TestAuth) {
    t.owner(OWNER).await;
    let client_id = client(&t, "Agent", &[LOOPBACK]).await;
    let (code_verifier, challenge) = pkce();

    // Missing challenge, missing method, `plain`: refused back to the (valid) redirect URI.
    for extra in [
        vec![("code_challenge", "")],
        vec![("code_challenge_method", "")],
        vec![
            ("code_challenge_method", "plain"),
            ("code_challenge", code_verifier.as_str()),
        ],
    ] {
        let response = get(
            &t,
            &authorize_target(&client_id, LOOPBACK, &challenge, &extra),
        )
        .await;
        assert_eq!(response.status, 303, "{extra:?}: {}", response.body);
        let params = response.location_params();
        assert_eq!(params["error"], "invalid_request", "{extra:?}");
        assert_eq!(params["state"], "st-123");
        assert!(!params.contains_key("code"));
    }

    // A wrong verifier is refused, and the code is spent by the attempt.
    let code = code_for(&t, &client_id, LOOPBACK, &challenge, OWNER).await;
    let (other_verifier, _) = pkce();
    let wrong = exchange(&t, &client_id, LOOPBACK, &code, &other_verifier).await;
    assert_eq!(
        (wrong.status, wrong.json()["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let late = exchange(&t, &client_id, LOOPBACK, &code, &code_verifier).await;
    assert_eq!(late.json()["error"], "invalid_grant");

    // The challenge itself as "verifier" (a `plain` downgrade) does not verify either.
    let code = code_for(&t, &client_id, LOOPBACK, &challenge, OWNER).await;
    let plain = exchange(&t, &client_id, LOOPBACK, &code, &challenge).await;
    assert_eq!(plain.json()["error"], "invalid_grant");

    // A malformed verifier is a malformed request.
    let code = code_for(&t, &client_id, LOOPBACK, &challenge, OWNER).await;
    let short = exchange(&t, &client_id, LOOPBACK, &code, "too-short").await;
    assert_eq!(short.json()["error"], "invalid_request");
    t.stop().await;
}

async fn redirect_uris_must_match_and_a_bad_one_is_never_redirected_to(t: TestAuth) {
    t.owner(OWNER).await;
    let https = "https://agent.example/cb";
    let client_id = client(&t, "Agent", &[https, LOOPBACK]).await;
    let (code_verifier, challenge) = pkce();

    for bad in [
        "https://agent.example/cb/other",
        "https://agent.example/cb?x=1",
        "https://evil.example/cb",
        "http://127.0.0.1:33418/other",
        "http://[::1]:33418/callback",
    ] {
        let response = get(&t, &authorize_target(&client_id, bad, &challenge, &[])).await;
        assert_eq!(response.status, 400, "{bad}");
        assert!(
            response.header("location").is_none(),
            "{bad} was redirected to"
        );
        assert!(response.body.contains("registered redirect URIs"));
    }
    // Unknown client: a page too, never a redirect.
    let response = get(
        &t,
        &authorize_target("no-such-client", LOOPBACK, &challenge, &[]),
    )
    .await;
    assert_eq!(response.status, 400);
    assert!(response.header("location").is_none());

    // Loopback: any port (RFC 8252 §7.3).
    let any_port = "http://127.0.0.1:51234/callback";
    let code = code_for(&t, &client_id, any_port, &challenge, OWNER).await;
    // The token request must repeat the exact URI the code was issued for.
    let mismatch = exchange(&t, &client_id, LOOPBACK, &code, &code_verifier).await;
    assert_eq!(mismatch.json()["error"], "invalid_grant");

    let code = code_for(&t, &client_id, https, &challenge, OWNER).await;
    let ok = exchange(&t, &client_id, https, &code, &code_verifier).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    t.stop().await;
}

async fn a_reused_code_is_refused_and_revokes_its_tokens(t: TestAuth) {
    t.owner(OWNER).await;
    let client_id = client(&t, "Agent", &[LOOPBACK]).await;
    let (code_verifier, challenge) = pkce();
    let code = code_for(&t, &client_id, LOOPBACK, &challenge, OWNER).await;
    let first = exchange(&t, &client_id, LOOPBACK, &code, &code_verifier).await;
    assert_eq!(first.status, 200);
    let refresh_token = first.json()["refresh_token"].as_str().unwrap().to_owned();

    let replay = exchange(&t, &client_id, LOOPBACK, &code, &code_verifier).await;
    assert_eq!(
        (replay.status, replay.json()["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let dead = refresh(&t, &client_id, &refresh_token).await;
    assert_eq!(
        dead.json()["error"],
        "invalid_grant",
        "the first exchange's tokens are revoked"
    );
    assert!(
        t.audit_actions()
            .await
            .iter()
            .any(|a| a == "auth.oauth_code_reused")
    );
    t.stop().await;
}

async fn refresh_rotates_and_a_replayed_refresh_token_revokes_the_family(t: TestAuth) {
    t.owner(OWNER).await;
    let (client_id, tokens) = agent_tokens(&t, OWNER).await;
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();

    // Another client cannot use it, and trying does not spend it.
    let other_client = client(&t, "Other", &[LOOPBACK]).await;
    let foreign = refresh(&t, &other_client, &first).await;
    assert_eq!(foreign.json()["error"], "invalid_grant");

    let rotated = refresh(&t, &client_id, &first).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let second = rotated.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    let claims = verifier(&t)
        .await
        .verify_access(
            rotated.json()["access_token"].as_str().unwrap(),
            tucdesk_token::unix_now(),
            RequireCnf::No,
        )
        .unwrap();
    assert_eq!(claims.client_id.as_deref(), Some(client_id.as_str()));

    // Narrowing the scope on refresh is allowed, widening is not.
    let narrowed = post_form(
        &t,
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &second),
            ("client_id", &client_id),
            ("scope", "agents:read"),
        ],
    )
    .await;
    assert_eq!(narrowed.status, 200, "{}", narrowed.body);
    assert_eq!(narrowed.json()["scope"], "agents:read");
    let third = narrowed.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // The spent first token comes back: theft. The whole family dies, newest token included.
    let replay = refresh(&t, &client_id, &first).await;
    assert_eq!(replay.json()["error"], "invalid_grant");
    let newest = refresh(&t, &client_id, &third).await;
    assert_eq!(newest.json()["error"], "invalid_grant");
    assert!(
        t.audit_actions()
            .await
            .iter()
            .any(|a| a == "auth.refresh_reused")
    );
    t.stop().await;
}

async fn registration_refuses_unsafe_or_unbounded_metadata(t: TestAuth) {
    let cases = [
        (
            serde_json::json!({"redirect_uris": ["http://agent.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            serde_json::json!({"redirect_uris": ["myapp:/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            serde_json::json!({"redirect_uris": []}),
            "invalid_redirect_uri",
        ),
        (
            serde_json::json!({"redirect_uris": ([LOOPBACK; 6])}),
            "invalid_redirect_uri",
        ),
        (
            serde_json::json!({"redirect_uris": [format!("https://a.example/{}", "x".repeat(600))]}),
            "invalid_redirect_uri",
        ),
        (
            serde_json::json!({"redirect_uris": [LOOPBACK], "token_endpoint_auth_method": "client_secret_basic"}),
            "invalid_client_metadata",
        ),
        (
            serde_json::json!({"redirect_uris": [LOOPBACK], "client_name": "n".repeat(129)}),
            "invalid_client_metadata",
        ),
        (
            serde_json::json!({"redirect_uris": [LOOPBACK], "scope": "sessions:read admin"}),
            "invalid_client_metadata",
        ),
        (
            serde_json::json!({"redirect_uris": [LOOPBACK], "grant_types": ["implicit"]}),
            "invalid_client_metadata",
        ),
    ];
    for (metadata, error) in cases {
        let response = register(&t, &metadata).await;
        assert_eq!(response.status, 400, "{metadata}: {}", response.body);
        assert_eq!(response.json()["error"], error, "{metadata}");
    }
    let not_json = http(
        t.http_addr,
        "POST",
        "/oauth/register",
        Some("application/json"),
        b"{",
    )
    .await;
    assert_eq!(not_json.json()["error"], "invalid_client_metadata");
    let huge = vec![b' '; 17 * 1024];
    let too_big = http(
        t.http_addr,
        "POST",
        "/oauth/register",
        Some("application/json"),
        &huge,
    )
    .await;
    assert_eq!(too_big.status, 413);

    // A good registration: public, no secret, the defaults filled in.
    let response = register(&t, &serde_json::json!({"redirect_uris": [LOOPBACK]})).await;
    assert_eq!(response.status, 201, "{}", response.body);
    let client = response.json();
    assert_eq!(client["token_endpoint_auth_method"], "none");
    assert!(client.get("client_secret").is_none());
    assert_eq!(client["redirect_uris"], serde_json::json!([LOOPBACK]));
    assert_eq!(
        client["grant_types"],
        serde_json::json!(["authorization_code", "refresh_token"])
    );
    t.stop().await;
}

async fn registration_is_rate_limited_per_source(t: TestAuth) {
    let limit = tucdesk_auth::oauth::register::REGISTER_SOURCE_LIMIT.max_failures;
    for _ in 0..limit {
        client(&t, "Agent", &[LOOPBACK]).await;
    }
    let refused = register(&t, &serde_json::json!({"redirect_uris": [LOOPBACK]})).await;
    assert_eq!(refused.status, 429);
    assert!(refused.header("retry-after").is_some());
    t.stop().await;
}

async fn the_consent_form_needs_a_fresh_token_bound_to_its_request(t: TestAuth) {
    t.owner(OWNER).await;
    let client_id = client(&t, "Agent", &[LOOPBACK]).await;
    let (_, challenge) = pkce();
    let page = get(&t, &authorize_target(&client_id, LOOPBACK, &challenge, &[])).await;
    let fields = hidden_fields(&page.body);
    let token = fields
        .iter()
        .find(|(n, _)| n == "csrf_token")
        .unwrap()
        .1
        .clone();
    let credentials = [
        ("email", OWNER),
        ("password", PASSWORD),
        ("decision", "allow"),
    ];
    let post = |replace: Vec<(&'static str, String)>| {
        let mut params: Vec<(String, String)> = fields.clone();
        for (name, value) in &replace {
            params.retain(|(n, _)| n != name);
            if !value.is_empty() {
                params.push(((*name).to_owned(), value.clone()));
            }
        }
        params.extend(
            credentials
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
        );
        params
    };
    let send = |params: Vec<(String, String)>| {
        let t = &t;
        async move {
            let borrowed: Vec<(&str, &str)> = params
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            post_form(t, "/oauth/authorize", &borrowed).await
        }
    };

    let mut forged = token.clone().into_bytes();
    forged[20] = if forged[20] == b'A' { b'B' } else { b'A' };
    for (case, params) in [
        ("missing", post(vec![("csrf_token", String::new())])),
        (
            "forged",
            post(vec![("csrf_token", String::from_utf8(forged).unwrap())]),
        ),
        (
            "for another state",
            post(vec![("state", "other-state".into())]),
        ),
    ] {
        let response = send(params).await;
        assert_eq!(response.status, 400, "{case}: {}", response.body);
        assert!(
            response.header("location").is_none(),
            "{case} issued a code"
        );
        assert!(
            response.body.contains("expired or was already submitted"),
            "{case}"
        );
    }
    let accepted = send(post(vec![])).await;
    assert_eq!(accepted.status, 303, "{}", accepted.body);
    let replayed = send(post(vec![])).await;
    assert_eq!(replayed.status, 400, "a form token works once");
    assert!(replayed.header("location").is_none());
    t.stop().await;
}

async fn metadata_document_describes_the_server(t: TestAuth) {
    let response = get(&t, "/.well-known/oauth-authorization-server").await;
    assert_eq!(response.status, 200);
    let doc = response.json();
    let issuer = t.auth.config().issuer.clone();
    assert_eq!(doc["issuer"], issuer);
    for (field, path) in [
        ("authorization_endpoint", "/oauth/authorize"),
        ("token_endpoint", "/oauth/token"),
        ("registration_endpoint", "/oauth/register"),
        ("jwks_uri", "/.well-known/jwks.json"),
    ] {
        assert_eq!(doc[field], format!("{issuer}{path}"), "{field}");
    }
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        doc["grant_types_supported"],
        serde_json::json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        serde_json::json!(["none"])
    );
    assert_eq!(
        doc["scopes_supported"],
        serde_json::json!([
            "agents:read",
            "sessions:read",
            "sessions:exec",
            "sessions:shell"
        ])
    );
    t.stop().await;
}

async fn a_script_in_the_client_name_is_shown_as_text(t: TestAuth) {
    let attack = "<script>alert(\"pwned\")</script><img src=x onerror=alert(1)>";
    let client_id = client(&t, attack, &[LOOPBACK]).await;
    let (_, challenge) = pkce();
    let page = get(&t, &authorize_target(&client_id, LOOPBACK, &challenge, &[])).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(
        "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
    ));
    assert!(!page.body.contains("<script"));
    assert!(!page.body.contains("<img"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"));
    t.stop().await;
}

async fn sign_in_failures_share_the_login_lockout(t: TestAuth) {
    t.owner(OWNER).await;
    let client_id = client(&t, "Agent", &[LOOPBACK]).await;
    let (_, challenge) = pkce();
    let target = authorize_target(&client_id, LOOPBACK, &challenge, &[]);
    let mut page = get(&t, &target).await;
    let limit = tucdesk_auth::login::LOGIN_ACCOUNT_LIMIT.max_failures;
    for attempt in 0..limit {
        page = submit(&t, &page.body, OWNER, "wrong password guess", "", "allow").await;
        assert_eq!(page.status, 401, "attempt {attempt}");
        assert!(page.body.contains("invalid email or password"));
        assert!(page.header("location").is_none());
    }
    // Locked, even with the right password, and the gRPC login is locked too.
    let locked = submit(&t, &page.body, OWNER, PASSWORD, "", "allow").await;
    assert_eq!(locked.status, 429);
    let err = t
        .login(&Identity::generate().unwrap(), OWNER, PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::AccountLocked);
    // Unknown accounts get the same answer as wrong passwords.
    let unknown = submit(
        &t,
        &locked.body,
        "nobody@acme.example",
        PASSWORD,
        "",
        "allow",
    )
    .await;
    assert_eq!(unknown.status, 401);
    assert!(unknown.body.contains("invalid email or password"));
    t.stop().await;
}

async fn totp_users_must_add_their_code(t: TestAuth) {
    let (_, user_id) = t.owner(OWNER).await;
    let secret = [9u8; 20];
    t.enable_totp(&user_id, &secret).await;
    let client_id = client(&t, "Agent", &[LOOPBACK]).await;
    let (_, challenge) = pkce();
    let page = get(&t, &authorize_target(&client_id, LOOPBACK, &challenge, &[])).await;
    let asked = submit(&t, &page.body, OWNER, PASSWORD, "", "allow").await;
    assert_eq!(asked.status, 401);
    assert!(asked.body.contains("authenticator"));
    let wrong = submit(&t, &asked.body, OWNER, PASSWORD, "000000", "allow").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("location").is_none());
    let code = common::totp_now(&secret);
    let done = submit(&t, &wrong.body, OWNER, PASSWORD, &code, "allow").await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(done.location_params().contains_key("code"));
    t.stop().await;
}

async fn deny_and_role_caps_are_sent_back_to_the_client(t: TestAuth) {
    let (_, user_id) = t.owner(OWNER).await;
    let client_id = client(&t, "Agent", &[LOOPBACK]).await;
    let (code_verifier, challenge) = pkce();
    let page = get(&t, &authorize_target(&client_id, LOOPBACK, &challenge, &[])).await;
    let denied = submit(&t, &page.body, "", "", "", "deny").await;
    assert_eq!(denied.status, 303);
    assert_eq!(denied.location_params()["error"], "access_denied");

    // A viewer grants read scopes only, and the token's role is viewer.
    tucdesk_svc::on_pool!(t.db(), |pool| {
        sqlx::query("UPDATE users SET role = 'viewer' WHERE id = $1")
            .bind(&user_id)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected()
    });
    let code = code_for(&t, &client_id, LOOPBACK, &challenge, OWNER).await;
    let tokens = exchange(&t, &client_id, LOOPBACK, &code, &code_verifier)
        .await
        .json();
    assert_eq!(tokens["scope"], "agents:read sessions:read");
    let claims = verifier(&t)
        .await
        .verify_access(
            tokens["access_token"].as_str().unwrap(),
            tucdesk_token::unix_now(),
            RequireCnf::No,
        )
        .unwrap();
    assert_eq!(claims.role, Role::Viewer);

    // Asking a viewer for shell access only: nothing grantable.
    let page = get(
        &t,
        &authorize_target(
            &client_id,
            LOOPBACK,
            &challenge,
            &[("scope", "sessions:shell")],
        ),
    )
    .await;
    let refused = submit(&t, &page.body, OWNER, PASSWORD, "", "allow").await;
    assert_eq!(refused.status, 303);
    assert_eq!(refused.location_params()["error"], "access_denied");
    t.stop().await;
}

async fn grants_are_managed_per_team_and_revocation_ends_the_tokens(t: TestAuth) {
    t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let owner = t.tokens(&device, OWNER).await;
    let (client_id, tokens) = agent_tokens(&t, OWNER).await;

    // A member of another team, with a grant of their own.
    let mut tx = t.db().begin().await.unwrap();
    let (_, foreign_user) =
        tucdesk_auth::store::create_team_with_owner(&mut tx, "Other Co", "boss@other.example")
            .await
            .unwrap();
    let (invite, _) = tucdesk_auth::store::create_invite(&mut tx, &foreign_user, 60_000)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    t.auth
        .accept_invite(&invite, PASSWORD.to_owned().into())
        .await
        .unwrap();
    let (foreign_client, _) = agent_tokens(&t, "boss@other.example").await;
    assert_ne!(foreign_client, client_id);

    let listed = t
        .client
        .clone()
        .list_o_auth_grants(authed(ListOAuthGrantsRequest::default(), &owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.grants.len(),
        1,
        "only the caller's own team and grants"
    );
    let grant = listed.grants[0].clone();
    assert_eq!(grant.client_id, client_id);
    assert_eq!(grant.client_name, "Test Agent");

    // The other team's user and grant do not exist for this owner.
    let err = t
        .client
        .clone()
        .list_o_auth_grants(authed(
            ListOAuthGrantsRequest {
                user_id: foreign_user.clone(),
                ..Default::default()
            },
            &owner,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let foreign_grant: String = tucdesk_svc::on_pool!(t.db(), |pool| {
        sqlx::query_scalar("SELECT id FROM oauth_grants WHERE user_id = $1")
            .bind(&foreign_user)
            .fetch_one(pool)
            .await
            .unwrap()
    });
    let err = t
        .client
        .clone()
        .revoke_o_auth_grant(authed(
            RevokeOAuthGrantRequest {
                grant_id: foreign_grant,
            },
            &owner,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // An AI agent's token cannot manage grants.
    let agent = TokenPair {
        access_token: tokens["access_token"].as_str().unwrap().to_owned(),
        ..TokenPair::default()
    };
    let err = t
        .client
        .clone()
        .list_o_auth_grants(authed(ListOAuthGrantsRequest::default(), &agent))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Revoking the grant kills its refresh tokens.
    let revoked = t
        .client
        .clone()
        .revoke_o_auth_grant(authed(
            RevokeOAuthGrantRequest {
                grant_id: grant.grant_id,
            },
            &owner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoked_at.is_some());
    let dead = refresh(&t, &client_id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(dead.json()["error"], "invalid_grant");

    // Revoking the client for the team (sensitive: device proof) blocks new consents.
    let mut request = authed(
        RevokeOAuthClientRequest {
            client_id: client_id.clone(),
            proof: None,
        },
        &owner,
    );
    request.get_mut().proof = Some(proof(
        &device,
        tucdesk_auth::oauth::grpc::REVOKE_CLIENT_METHOD,
        &client_id,
        b"",
        b"",
    ));
    t.client
        .clone()
        .revoke_o_auth_client(request)
        .await
        .unwrap();
    let (_, challenge) = pkce();
    let page = get(&t, &authorize_target(&client_id, LOOPBACK, &challenge, &[])).await;
    let blocked = submit(&t, &page.body, OWNER, PASSWORD, "", "allow").await;
    assert_eq!(blocked.location_params()["error"], "access_denied");
    // The revocation is this team's: the other team can still use the same client.
    let (_, challenge) = pkce();
    let page = get(&t, &authorize_target(&client_id, LOOPBACK, &challenge, &[])).await;
    let fine = submit(&t, &page.body, "boss@other.example", PASSWORD, "", "allow").await;
    assert!(fine.location_params().contains_key("code"));
    t.stop().await;
}

async fn admins_register_team_clients_that_only_their_team_can_use(t: TestAuth) {
    t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let owner = t.tokens(&device, OWNER).await;
    let redirect_uris = vec![LOOPBACK.to_owned()];

    // Sensitive: the proof covers the name and the redirect URIs.
    let register = |name: &str, proof_name: &str| {
        let mut binding = 1u32.to_be_bytes().to_vec();
        binding.extend_from_slice(&u32::try_from(LOOPBACK.len()).unwrap().to_be_bytes());
        binding.extend_from_slice(LOOPBACK.as_bytes());
        let binding = <sha2::Sha256 as sha2::Digest>::digest(&binding);
        let mut request = authed(
            RegisterOAuthClientRequest {
                metadata: Some(OAuthClient {
                    client_name: name.to_owned(),
                    redirect_uris: redirect_uris.clone(),
                    ..OAuthClient::default()
                }),
                proof: None,
            },
            &owner,
        );
        request.get_mut().proof = Some(proof(
            &device,
            tucdesk_auth::oauth::grpc::REGISTER_METHOD,
            proof_name,
            &binding,
            b"",
        ));
        request
    };
    let err = t
        .client
        .clone()
        .register_o_auth_client(register("Team agent", "Other name"))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::ProofInvalid);
    let registered = t
        .client
        .clone()
        .register_o_auth_client(register("Team agent", "Team agent"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(registered.token_endpoint_auth_method, "none");
    assert!(!registered.created_by.is_empty());

    let listed = t
        .client
        .clone()
        .list_o_auth_clients(authed(ListOAuthClientsRequest::default(), &owner))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = listed
        .clients
        .iter()
        .map(|c| c.client_id.as_str())
        .collect();
    assert_eq!(ids, vec![registered.client_id.as_str()]);

    // The team's own users may authorize it; another team's may not.
    let (code_verifier, challenge) = pkce();
    let code = code_for(&t, &registered.client_id, LOOPBACK, &challenge, OWNER).await;
    let ok = exchange(&t, &registered.client_id, LOOPBACK, &code, &code_verifier).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let mut tx = t.db().begin().await.unwrap();
    let (_, foreign_user) =
        tucdesk_auth::store::create_team_with_owner(&mut tx, "Other Co", "boss@other.example")
            .await
            .unwrap();
    let (invite, _) = tucdesk_auth::store::create_invite(&mut tx, &foreign_user, 60_000)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    t.auth
        .accept_invite(&invite, PASSWORD.to_owned().into())
        .await
        .unwrap();
    let page = get(
        &t,
        &authorize_target(&registered.client_id, LOOPBACK, &challenge, &[]),
    )
    .await;
    let refused = submit(&t, &page.body, "boss@other.example", PASSWORD, "", "allow").await;
    assert_eq!(refused.location_params()["error"], "access_denied");

    // Revoking a team's own client revokes it everywhere, tokens included.
    let mut request = authed(
        RevokeOAuthClientRequest {
            client_id: registered.client_id.clone(),
            proof: None,
        },
        &owner,
    );
    request.get_mut().proof = Some(proof(
        &device,
        tucdesk_auth::oauth::grpc::REVOKE_CLIENT_METHOD,
        &registered.client_id,
        b"",
        b"",
    ));
    let revoked = t
        .client
        .clone()
        .revoke_o_auth_client(request)
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoked_at.is_some());
    let dead = refresh(
        &t,
        &registered.client_id,
        ok.json()["refresh_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(dead.json()["error"], "invalid_grant");
    let gone = get(
        &t,
        &authorize_target(&registered.client_id, LOOPBACK, &challenge, &[]),
    )
    .await;
    assert_eq!(gone.status, 400);
    let active = t
        .client
        .clone()
        .list_o_auth_clients(authed(ListOAuthClientsRequest::default(), &owner))
        .await
        .unwrap()
        .into_inner();
    assert!(active.clients.is_empty());
    t.stop().await;
}

async fn an_agent_refresh_token_cannot_sign_its_user_out_everywhere(t: TestAuth) {
    t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let person = t.tokens(&device, OWNER).await;
    let (_, agent) = agent_tokens(&t, OWNER).await;
    let agent_refresh = agent["refresh_token"].as_str().unwrap().to_owned();
    let err = t
        .client
        .clone()
        .logout(tucdesk_proto::v1::LogoutRequest {
            refresh_token: agent_refresh.clone(),
            all_devices: true,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // The person's device session survives; the agent may still end its own session.
    t.refresh(&device, &person.refresh_token).await.unwrap();
    t.client
        .clone()
        .logout(tucdesk_proto::v1::LogoutRequest {
            refresh_token: agent_refresh,
            all_devices: false,
        })
        .await
        .unwrap();
    t.stop().await;
}

/// SPEC §3: `team_id` comes from verified state only. A `team_id` slipped into the token
/// request does not move the token to another team.
async fn a_team_id_in_the_request_body_is_ignored(t: TestAuth) {
    let (team_id, _) = t.owner(OWNER).await;
    let client_id = client(&t, "Agent", &[LOOPBACK]).await;
    let (verifier, challenge) = pkce();
    let code = code_for(&t, &client_id, LOOPBACK, &challenge, OWNER).await;
    let response = post_form(
        &t,
        "/oauth/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", LOOPBACK),
            ("client_id", &client_id),
            ("code_verifier", &verifier),
            ("team_id", "0193a8c4-0000-7000-8000-00000000beef"),
        ],
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let access = response.json()["access_token"].as_str().unwrap().to_owned();
    let claims = t.auth.authenticate(&access).unwrap();
    assert_eq!(claims.team_id, team_id);
    t.stop().await;
}

on_both_engines!(
    a_team_id_in_the_request_body_is_ignored,
    an_agent_refresh_token_cannot_sign_its_user_out_everywhere,
    full_flow_gives_an_agent_token_bound_to_its_client,
    pkce_is_mandatory_s256_only_and_checked,
    redirect_uris_must_match_and_a_bad_one_is_never_redirected_to,
    a_reused_code_is_refused_and_revokes_its_tokens,
    refresh_rotates_and_a_replayed_refresh_token_revokes_the_family,
    registration_refuses_unsafe_or_unbounded_metadata,
    registration_is_rate_limited_per_source,
    the_consent_form_needs_a_fresh_token_bound_to_its_request,
    metadata_document_describes_the_server,
    a_script_in_the_client_name_is_shown_as_text,
    sign_in_failures_share_the_login_lockout,
    totp_users_must_add_their_code,
    deny_and_role_caps_are_sent_back_to_the_client,
    grants_are_managed_per_team_and_revocation_ends_the_tokens,
    admins_register_team_clients_that_only_their_team_can_use,
);
