//! Support principals after redemption, on both engines: `WhoAmI` names them, and
//! `MintSessionToken` mints their session tokens only while their code is live, for the
//! device key that redeemed it, the kinds and the agent it allows, never past their access.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestAuth, proof, reason};
use prost::Message as _;
use tonic::{Code, Request};
use tucdesk_auth::support_codes::{CREATE_METHOD, REDEEM_METHOD, REVOKE_METHOD};
use tucdesk_crypto::{Identity, SupportCode};
use tucdesk_proto::v1::create_support_code_request::Scope;
use tucdesk_proto::v1::{
    AuditEvent, CreateSupportCodeRequest, MintSessionTokenRequest, MintSessionTokenResponse,
    RedeemSupportCodeRequest, RejectReason, RevokeSupportCodeRequest, Role, SessionKind,
    WhoAmIRequest,
};
use tucdesk_token::{ExpectedSession, KeySet, TokenVerifier};

const OWNER: &str = "owner@acme.example";
const TECHNICIAN: &str = "Tech Nician";

/// The team owner's access token and device key.
struct Admin {
    team_id: String,
    device: Identity,
    token: String,
}

/// A redeemed code: the technician's device key, access token, principal id and code id.
struct Technician {
    device: Identity,
    token: String,
    principal: String,
    code_id: String,
}

fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        tucdesk_proto::metadata::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    request
}

async fn admin(t: &TestAuth) -> Admin {
    let (team_id, _) = t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let token = t.tokens(&device, OWNER).await.access_token;
    Admin {
        team_id,
        device,
        token,
    }
}

/// `admin` creates a code (`agent:<id>` or `tag:<tag>`, `kinds`, 10 min, `max_uses`) and a
/// technician on a fresh device redeems it as [`TECHNICIAN`].
async fn technician(
    t: &TestAuth,
    admin: &Admin,
    scope: &str,
    kinds: &[SessionKind],
    max_uses: u32,
) -> Technician {
    let wire_scope = match scope.split_once(':').unwrap() {
        ("agent", id) => Scope::AgentId(id.to_owned()),
        (_, tag) => Scope::Tag(tag.to_owned()),
    };
    let kinds: Vec<i32> = kinds.iter().map(|k| *k as i32).collect();
    let binding = tucdesk_auth::support_codes::create_binding(600, max_uses, &kinds);
    let created = t
        .client
        .clone()
        .create_support_code(authed(
            &admin.token,
            CreateSupportCodeRequest {
                scope: Some(wire_scope),
                allowed_kinds: kinds,
                ttl_seconds: 600,
                max_uses,
                note: String::new(),
                proof: Some(proof(&admin.device, CREATE_METHOD, scope, &binding, b"")),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let device = Identity::generate().unwrap();
    let redeemed = t
        .client
        .clone()
        .redeem_support_code(redeem_request(t, &device, &created.code, TECHNICIAN).await)
        .await
        .unwrap()
        .into_inner();
    let claims = t.auth.authenticate(&redeemed.access_token).unwrap();
    Technician {
        device,
        token: redeemed.access_token,
        principal: claims.sub,
        code_id: created.info.unwrap().code_id,
    }
}

async fn redeem_request(
    t: &TestAuth,
    device: &Identity,
    code: &str,
    display_name: &str,
) -> RedeemSupportCodeRequest {
    let challenge = t.challenge().await;
    let binding = tucdesk_auth::support_codes::redeem_binding(&SupportCode::parse(code).unwrap());
    RedeemSupportCodeRequest {
        protocol_version: tucdesk_proto::PROTOCOL_VERSION,
        code: code.to_owned(),
        device_proof: Some(proof(device, REDEEM_METHOD, "", &binding, &challenge)),
        display_name: display_name.to_owned(),
        client: None,
    }
}

/// What rendezvous sends for `tech` on `agent_id`.
fn mint_request(
    team_id: &str,
    tech: &Technician,
    agent_id: &str,
    kind: SessionKind,
) -> MintSessionTokenRequest {
    MintSessionTokenRequest {
        session_id: uuid::Uuid::new_v4().to_string(),
        team_id: team_id.to_owned(),
        agent_id: agent_id.to_owned(),
        user_id: tech.principal.clone(),
        device_key_thumbprint: tech.device.public_key().jwk_thumbprint(),
        e_op_pub: vec![7; 32],
        kind: kind as i32,
        relay_node_id: "relay-1".into(),
        ttl_seconds: 0,
        rendezvous_audience: "rdv.acme".into(),
    }
}

async fn mint(
    t: &TestAuth,
    request: MintSessionTokenRequest,
) -> Result<MintSessionTokenResponse, tonic::Status> {
    let assertion = t
        .rendezvous
        .issue("auth", tucdesk_token::unix_now())
        .unwrap();
    let mut request = Request::new(request);
    request.metadata_mut().insert(
        tucdesk_proto::metadata::SERVICE_ASSERTION,
        assertion.parse().unwrap(),
    );
    t.internal
        .clone()
        .mint_session_token(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn revoke(t: &TestAuth, admin: &Admin, code_id: &str) {
    t.client
        .clone()
        .revoke_support_code(authed(
            &admin.token,
            RevokeSupportCodeRequest {
                code_id: code_id.to_owned(),
                proof: Some(proof(&admin.device, REVOKE_METHOD, code_id, b"", b"")),
            },
        ))
        .await
        .unwrap();
}

/// Audit events with `action`, as (actor, context).
async fn events(t: &TestAuth, action: &str) -> Vec<(String, serde_json::Value)> {
    let payloads: Vec<Vec<u8>> = tucdesk_svc::on_pool!(t.db(), |pool| {
        sqlx::query_scalar("SELECT payload FROM outbox ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    payloads
        .iter()
        .map(|payload| AuditEvent::decode(payload.as_slice()).unwrap())
        .filter(|event| event.action == action)
        .map(|event| {
            let actor = event.actor.map(|a| a.id).unwrap_or_default();
            (actor, serde_json::from_str(&event.context_json).unwrap())
        })
        .collect()
}

async fn whoami_names_a_support_principal_until_its_code_is_revoked(t: TestAuth) {
    let admin = admin(&t).await;
    let agent = Identity::generate().unwrap().agent_id();
    let tech = technician(
        &t,
        &admin,
        &format!("agent:{agent}"),
        &[SessionKind::Shell],
        1,
    )
    .await;
    let me = t
        .client
        .clone()
        .who_am_i(authed(&tech.token, WhoAmIRequest {}))
        .await
        .unwrap()
        .into_inner();
    let principal = me.principal.unwrap();
    assert_eq!(principal.kind, "support");
    assert_eq!(principal.scope, format!("agent:{agent}"));
    assert_eq!(principal.client_id, tech.code_id);
    assert_eq!(
        principal.device_key_thumbprint,
        tech.device.public_key().jwk_thumbprint()
    );
    let user = me.user.unwrap();
    assert_eq!(user.user_id, tech.principal);
    assert_eq!(user.team_id, admin.team_id);
    assert_eq!(user.display_name, TECHNICIAN);
    assert_eq!(user.email, "");
    assert_eq!(user.role, Role::Viewer as i32);
    assert!(me.expires_at.is_some());

    // People are answered as before.
    let me = t
        .client
        .clone()
        .who_am_i(authed(&admin.token, WhoAmIRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.principal.unwrap().kind, "user");

    revoke(&t, &admin, &tech.code_id).await;
    let err = t
        .client
        .clone()
        .who_am_i(authed(&tech.token, WhoAmIRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("revoked"), "{}", err.message());
    t.stop().await;
}

async fn session_tokens_are_minted_for_a_support_principal_within_its_code_only(t: TestAuth) {
    let admin = admin(&t).await;
    let agent = Identity::generate().unwrap().agent_id();
    let tech = technician(
        &t,
        &admin,
        &format!("agent:{agent}"),
        &[SessionKind::Shell],
        1,
    )
    .await;

    // In scope: a session token whose subject is the support principal, bound like a user's,
    // and the technician's name for the host's consent prompt.
    let request = mint_request(&admin.team_id, &tech, &agent, SessionKind::Shell);
    let minted = mint(&t, request.clone()).await.unwrap();
    assert_eq!(minted.operator_display_name, TECHNICIAN);
    let keys = KeySet::from_jwks(&t.auth.jwks().unwrap()).unwrap();
    let issuer = t.auth.config().issuer.clone();
    let claims = TokenVerifier::new(keys, &issuer, &agent)
        .verify_session(
            &minted.session_token,
            tucdesk_token::unix_now(),
            &ExpectedSession {
                session_id: &request.session_id,
                agent_id: Some(&agent),
                team_id: Some(&admin.team_id),
                kind: Some(tucdesk_token::SessionKind::Shell),
                device_key_thumbprint: Some(&request.device_key_thumbprint),
                e_op_pub: Some(&request.e_op_pub),
            },
        )
        .unwrap();
    assert_eq!(claims.sub, tech.principal);
    let access = t.auth.authenticate(&tech.token).unwrap();
    assert!(claims.exp <= access.exp, "the session outlives the access");

    // Another device key, a kind the code does not allow, another agent: refused.
    let mut other_key = request.clone();
    other_key.device_key_thumbprint = Identity::generate().unwrap().public_key().jwk_thumbprint();
    let exec = mint_request(&admin.team_id, &tech, &agent, SessionKind::Exec);
    let elsewhere = mint_request(
        &admin.team_id,
        &tech,
        &Identity::generate().unwrap().agent_id(),
        SessionKind::Shell,
    );
    for refused in [other_key, exec, elsewhere] {
        let err = mint(&t, refused).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert_eq!(reason(&err), RejectReason::PermissionDenied);
    }
    // Another team, or a principal that was never redeemed: not found.
    let mut foreign = request.clone();
    foreign.team_id = "another-team".into();
    let mut unknown = request.clone();
    unknown.user_id = format!("support:{}:9", tech.code_id);
    for refused in [foreign, unknown] {
        let err = mint(&t, refused).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }

    // Revoking the code ends its principals' sessions to come, though their access tokens
    // still verify until they expire.
    revoke(&t, &admin, &tech.code_id).await;
    let err = mint(&t, request.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(t.auth.authenticate(&tech.token).is_ok());

    let minted = events(&t, "auth.session_token_minted").await;
    assert_eq!(minted.len(), 1);
    assert_eq!(minted[0].0, "rendezvous");
    assert_eq!(minted[0].1["principal"], "support");
    assert_eq!(minted[0].1["operator"], tech.principal.as_str());
    assert_eq!(minted[0].1["support_code"], tech.code_id.as_str());
    assert_eq!(minted[0].1["operator_display_name"], TECHNICIAN);
    let reasons: Vec<String> = events(&t, "auth.session_token_refused")
        .await
        .into_iter()
        .map(|(_, context)| {
            assert_eq!(context["principal"], "support");
            context["reason"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "device_key_mismatch",
            "kind_not_allowed",
            "out_of_scope",
            "unknown_operator",
            "unknown_operator",
            "code_revoked"
        ]
    );
    t.stop().await;
}

async fn a_support_session_token_never_outlives_the_principals_access(t: TestAuth) {
    let admin = admin(&t).await;
    let tech = technician(
        &t,
        &admin,
        "tag:lab",
        &[SessionKind::Shell, SessionKind::Exec],
        2,
    )
    .await;
    let agent = Identity::generate().unwrap().agent_id();
    // A tag-scoped code: auth cannot tell an agent's tags, rendezvous checks them; any agent
    // of the team is accepted here, for either kind the code allows.
    mint(
        &t,
        mint_request(&admin.team_id, &tech, &agent, SessionKind::Exec),
    )
    .await
    .unwrap();

    // The access ends in 20 s: the session token (normally 300 s) ends with it.
    let ends_ms = tucdesk_svc::sql::now_ms() + 20_000;
    assert_eq!(set_end(&t, &tech.principal, ends_ms).await, 1);
    let request = mint_request(&admin.team_id, &tech, &agent, SessionKind::Shell);
    let minted = mint(&t, request).await.unwrap();
    let expires = minted.expires_at.unwrap().seconds;
    assert!(expires <= ends_ms / 1000, "{expires} > {}", ends_ms / 1000);

    // Once it has ended, nothing more is minted.
    set_end(&t, &tech.principal, tucdesk_svc::sql::now_ms() - 1).await;
    let err = mint(
        &t,
        mint_request(&admin.team_id, &tech, &agent, SessionKind::Shell),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let last = events(&t, "auth.session_token_refused").await;
    assert_eq!(last.last().unwrap().1["reason"], "principal_expired");
    t.stop().await;
}

/// Moves the end of a support principal's access (as if its token expired then).
async fn set_end(t: &TestAuth, principal: &str, ms: i64) -> u64 {
    tucdesk_svc::on_pool!(t.db(), |pool| {
        sqlx::query("UPDATE support_principals SET expires_at_ms = $1 WHERE id = $2")
            .bind(ms)
            .bind(principal)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected()
    })
}

async fn technician_names_that_could_read_as_another_are_refused(t: TestAuth) {
    let admin = admin(&t).await;
    let kinds = [SessionKind::Shell as i32];
    let binding = tucdesk_auth::support_codes::create_binding(600, 1, &kinds);
    let created = t
        .client
        .clone()
        .create_support_code(authed(
            &admin.token,
            CreateSupportCodeRequest {
                scope: Some(Scope::Tag("lab".into())),
                allowed_kinds: kinds.to_vec(),
                ttl_seconds: 600,
                max_uses: 1,
                note: String::new(),
                proof: Some(proof(
                    &admin.device,
                    CREATE_METHOD,
                    "tag:lab",
                    &binding,
                    b"",
                )),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let device = Identity::generate().unwrap();
    let spoof = redeem_request(&t, &device, &created.code, "Alice \u{202E}nimda").await;
    let err = t
        .client
        .clone()
        .redeem_support_code(spoof)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::InvalidArgument);
    // Refused before the code was looked at: it still redeems.
    let fine = redeem_request(&t, &device, &created.code, TECHNICIAN).await;
    t.client.clone().redeem_support_code(fine).await.unwrap();
    t.stop().await;
}

on_both_engines!(
    whoami_names_a_support_principal_until_its_code_is_revoked,
    session_tokens_are_minted_for_a_support_principal_within_its_code_only,
    a_support_session_token_never_outlives_the_principals_access,
    technician_names_that_could_read_as_another_are_refused,
);
