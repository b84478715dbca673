//! Support codes end to end, on both engines, through the real gRPC service: creation,
//! listing and revocation by admins, storage as keyed hashes only, team isolation, one-time
//! atomic redemption into a scoped support-principal token, lockout of guessing sources and
//! teams, normalised input, and the audit trail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use common::{PASSWORD, TestAuth, proof, reason};
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};
use tucdesk_auth::support_codes::{
    CREATE_METHOD, REDEEM_METHOD, REDEEM_SOURCE_LIMIT, REDEEM_TEAM_LIMIT, REVOKE_METHOD,
};
use tucdesk_crypto::{CodeHashKey, CodeKind, Identity, SupportCode};
use tucdesk_proto::v1::auth_service_client::AuthServiceClient;
use tucdesk_proto::v1::create_support_code_request::Scope;
use tucdesk_proto::v1::{
    AuditEvent, BeginDeviceBindingRequest, CreateSupportCodeRequest, CreateSupportCodeResponse,
    ListSupportCodesRequest, PageRequest, RedeemSupportCodeRequest, RedeemSupportCodeResponse,
    RejectReason, RevokeSupportCodeRequest, SessionKind, SupportCode as CodeInfo, SupportCodeState,
    support_code,
};
use tucdesk_svc::sql::now_ms;
use tucdesk_token::RequireCnf;

const OWNER: &str = "owner@acme.example";
const SHELL: i32 = SessionKind::Shell as i32;
const EXEC: i32 = SessionKind::Exec as i32;

/// A logged-in user of some team and the device key their token is bound to.
struct Member {
    team_id: String,
    user_id: String,
    device: Identity,
    token: String,
}

/// The bootstrapped owner of the first team.
async fn owner(t: &TestAuth) -> Member {
    let (team_id, user_id) = t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let token = t.tokens(&device, OWNER).await.access_token;
    Member {
        team_id,
        user_id,
        device,
        token,
    }
}

/// Another user, in a new team when `team_id` is `None`. Teams are only made by bootstrap,
/// so the rows are written directly; the password is set through the real invite path.
async fn member(t: &TestAuth, team_id: Option<&str>, email: &str, role: &str) -> Member {
    let now = now_ms();
    let user_id = uuid::Uuid::now_v7().to_string();
    let team_id = match team_id {
        Some(team) => team.to_owned(),
        None => {
            let team = uuid::Uuid::now_v7().to_string();
            tucdesk_svc::on_pool!(t.db(), |pool| {
                sqlx::query("INSERT INTO teams (id, name, created_at_ms) VALUES ($1, $2, $3)")
                    .bind(&team)
                    .bind(format!("team {email}"))
                    .bind(now)
                    .execute(pool)
                    .await
                    .unwrap()
                    .rows_affected()
            });
            team
        }
    };
    tucdesk_svc::on_pool!(t.db(), |pool| {
        sqlx::query(
            "INSERT INTO users (id, team_id, email, role, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&user_id)
        .bind(&team_id)
        .bind(email)
        .bind(role)
        .bind(now)
        .execute(pool)
        .await
        .unwrap()
        .rows_affected()
    });
    let mut tx = t.db().begin().await.unwrap();
    let (invite, _) = tucdesk_auth::store::create_invite(&mut tx, &user_id, 60_000)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    t.auth
        .accept_invite(invite.as_str(), PASSWORD.to_owned().into())
        .await
        .unwrap();
    let device = Identity::generate().unwrap();
    let token = t.tokens(&device, email).await.access_token;
    Member {
        team_id,
        user_id,
        device,
        token,
    }
}

fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn tag(tag: &str) -> Scope {
    Scope::Tag(tag.to_owned())
}

/// A signed `CreateSupportCode` request; the proof is built here from the protocol table,
/// independently of the service's code.
fn create_request(
    by: &Member,
    scope: Scope,
    ttl_seconds: u32,
    max_uses: u32,
    kinds: &[i32],
    note: &str,
) -> CreateSupportCodeRequest {
    let target = match &scope {
        Scope::AgentId(agent) => format!("agent:{agent}"),
        Scope::Tag(tag) => format!("tag:{tag}"),
    };
    let mut binding = ttl_seconds.to_be_bytes().to_vec();
    binding.extend_from_slice(&max_uses.to_be_bytes());
    for kind in kinds {
        binding.extend_from_slice(&u32::try_from(*kind).unwrap().to_be_bytes());
    }
    CreateSupportCodeRequest {
        scope: Some(scope),
        allowed_kinds: kinds.to_vec(),
        ttl_seconds,
        max_uses,
        note: note.to_owned(),
        proof: Some(proof(&by.device, CREATE_METHOD, &target, &binding, b"")),
    }
}

async fn create(
    t: &TestAuth,
    by: &Member,
    request: CreateSupportCodeRequest,
) -> Result<CreateSupportCodeResponse, tonic::Status> {
    t.client
        .clone()
        .create_support_code(authed(&by.token, request))
        .await
        .map(tonic::Response::into_inner)
}

/// A single-use, shell-only code scoped to a tag: (code, info).
async fn simple_code(t: &TestAuth, by: &Member) -> (String, CodeInfo) {
    let created = create(t, by, create_request(by, tag("lab"), 600, 1, &[], ""))
        .await
        .unwrap();
    (created.code, created.info.unwrap())
}

async fn list(
    t: &TestAuth,
    by: &Member,
    state: SupportCodeState,
    page: Option<PageRequest>,
) -> Result<tucdesk_proto::v1::ListSupportCodesResponse, tonic::Status> {
    t.client
        .clone()
        .list_support_codes(authed(
            &by.token,
            ListSupportCodesRequest {
                page,
                state: state as i32,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn revoke(t: &TestAuth, by: &Member, code_id: &str) -> Result<CodeInfo, tonic::Status> {
    t.client
        .clone()
        .revoke_support_code(authed(
            &by.token,
            RevokeSupportCodeRequest {
                code_id: code_id.to_owned(),
                proof: Some(proof(&by.device, REVOKE_METHOD, code_id, b"", b"")),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// A redemption request as the technician's client builds it: a fresh challenge, and a
/// proof whose binding is SHA-256 of the code as the crypto crate normalises it.
async fn redeem_request(
    client: &AuthServiceClient<Channel>,
    device: &Identity,
    input: &str,
) -> RedeemSupportCodeRequest {
    let challenge = client
        .clone()
        .begin_device_binding(BeginDeviceBindingRequest {})
        .await
        .unwrap()
        .into_inner()
        .challenge;
    let normalized = SupportCode::parse(input)
        .map(|code| code.normalized().to_string())
        .unwrap_or_else(|_| input.to_owned());
    let binding = Sha256::digest(normalized.as_bytes());
    RedeemSupportCodeRequest {
        protocol_version: tucdesk_proto::PROTOCOL_VERSION,
        code: input.to_owned(),
        device_proof: Some(proof(device, REDEEM_METHOD, "", &binding, &challenge)),
        display_name: "Tech Nician".to_owned(),
        client: None,
    }
}

async fn redeem(
    client: &AuthServiceClient<Channel>,
    device: &Identity,
    input: &str,
) -> Result<RedeemSupportCodeResponse, tonic::Status> {
    let request = redeem_request(client, device, input).await;
    client
        .clone()
        .redeem_support_code(request)
        .await
        .map(tonic::Response::into_inner)
}

/// A client whose connections come from `127.0.0.<octet>`: another source address as the
/// server sees it (the whole of 127/8 is loopback).
async fn client_from(t: &TestAuth, octet: u8) -> AuthServiceClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{}", t.grpc_addr))
        .unwrap()
        .local_address(Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, octet))))
        .connect()
        .await
        .unwrap();
    AuthServiceClient::new(channel)
}

/// The audit events written so far, decoded from the outbox.
async fn audit_events(t: &TestAuth) -> Vec<AuditEvent> {
    let payloads: Vec<Vec<u8>> = tucdesk_svc::on_pool!(t.db(), |pool| {
        sqlx::query_scalar("SELECT payload FROM outbox ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    payloads
        .iter()
        .map(|payload| AuditEvent::decode(payload.as_slice()).unwrap())
        .collect()
}

/// `reason` of every `auth.support_code_failed` event.
async fn failure_reasons(t: &TestAuth) -> Vec<String> {
    audit_events(t)
        .await
        .into_iter()
        .filter(|event| event.action == "auth.support_code_failed")
        .map(|event| {
            let context: serde_json::Value = serde_json::from_str(&event.context_json).unwrap();
            context["reason"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

async fn code_state(t: &TestAuth, by: &Member, code_id: &str) -> (SupportCodeState, u32) {
    let all = list(t, by, SupportCodeState::Unspecified, None)
        .await
        .unwrap();
    let info = all.codes.iter().find(|c| c.code_id == code_id).unwrap();
    (info.state(), info.uses)
}

async fn create_list_and_revoke(t: TestAuth) {
    let admin = owner(&t).await;
    let agent = Identity::generate().unwrap().agent_id();
    let before = now_ms();
    let created = create(
        &t,
        &admin,
        create_request(
            &admin,
            Scope::AgentId(agent.clone()),
            600,
            2,
            &[SHELL, EXEC],
            "ticket 42",
        ),
    )
    .await
    .unwrap();
    // Shown for humans as XXXX-XXXX-XXXX, 12 symbols of Crockford base32 (60 bits).
    assert_eq!(created.code.len(), 14, "{}", created.code);
    assert_eq!(created.code.matches('-').count(), 2);
    assert!(SupportCode::parse(&created.code).is_ok());
    let info = created.info.unwrap();
    assert_eq!(info.scope, Some(support_code::Scope::AgentId(agent)));
    assert_eq!(info.allowed_kinds, vec![SHELL, EXEC]);
    assert_eq!((info.max_uses, info.uses), (2, 0));
    assert_eq!(info.state(), SupportCodeState::Active);
    assert_eq!(info.created_by, admin.user_id);
    assert_eq!(info.note, "ticket 42");
    let expires_ms = info.expires_at.unwrap().seconds * 1000;
    assert!(expires_ms >= before + 599_000 && expires_ms <= now_ms() + 600_000);

    // Defaults: 15 minutes, single use, shell only.
    let defaults = create(
        &t,
        &admin,
        create_request(&admin, tag("site:paris"), 0, 0, &[], ""),
    )
    .await
    .unwrap()
    .info
    .unwrap();
    assert_eq!(
        (defaults.max_uses, defaults.allowed_kinds.clone()),
        (1, vec![SHELL])
    );
    let ttl = defaults.expires_at.unwrap().seconds - defaults.created_at.unwrap().seconds;
    assert!((899..=901).contains(&ttl), "{ttl}");

    let all = list(&t, &admin, SupportCodeState::Unspecified, None)
        .await
        .unwrap();
    let ids: Vec<_> = all.codes.iter().map(|c| c.code_id.clone()).collect();
    assert_eq!(
        ids,
        vec![defaults.code_id.clone(), info.code_id.clone()],
        "newest first"
    );
    assert!(all.page.unwrap().next_page_token.is_empty());

    let revoked = revoke(&t, &admin, &info.code_id).await.unwrap();
    assert_eq!(revoked.state(), SupportCodeState::Revoked);
    // Revoking again changes nothing and is not audited twice.
    let again = revoke(&t, &admin, &info.code_id).await.unwrap();
    assert_eq!(again.state(), SupportCodeState::Revoked);
    let only = |state| {
        let t = &t;
        let admin = &admin;
        async move {
            list(t, admin, state, None)
                .await
                .unwrap()
                .codes
                .into_iter()
                .map(|c| c.code_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        only(SupportCodeState::Revoked).await,
        vec![info.code_id.clone()]
    );
    assert_eq!(
        only(SupportCodeState::Active).await,
        vec![defaults.code_id.clone()]
    );
    assert!(only(SupportCodeState::Used).await.is_empty());
    assert!(only(SupportCodeState::Expired).await.is_empty());

    // Paging: every code exactly once, newest first, whatever the page size.
    for _ in 0..3 {
        simple_code(&t, &admin).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(
            &t,
            &admin,
            SupportCodeState::Unspecified,
            Some(PageRequest {
                page_size: 2,
                page_token: token.clone(),
            }),
        )
        .await
        .unwrap();
        assert!(page.codes.len() <= 2);
        seen.extend(page.codes.into_iter().map(|c| c.code_id));
        token = page.page.unwrap().next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), 5);
    let mut sorted = seen.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted);
    let bad_token = list(
        &t,
        &admin,
        SupportCodeState::Unspecified,
        Some(PageRequest {
            page_size: 2,
            page_token: "'; DROP TABLE support_codes; --".into(),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(bad_token.code(), Code::InvalidArgument);

    let actions = t.audit_actions().await;
    let count = |action: &str| actions.iter().filter(|a| *a == action).count();
    assert_eq!(count("auth.support_code_created"), 5);
    assert_eq!(count("auth.support_code_revoked"), 1);
    t.stop().await;
}

/// Every column of a `support_codes` row that could hold text, and the hash.
type StoredRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    Vec<u8>,
);

async fn codes_are_stored_only_as_keyed_hashes(t: TestAuth) {
    let admin = owner(&t).await;
    let created = create(
        &t,
        &admin,
        create_request(&admin, tag("lab"), 600, 1, &[], "for the lab laptop"),
    )
    .await
    .unwrap();
    let code = SupportCode::parse(&created.code).unwrap();
    let normalized = code.normalized().to_string();

    let rows: Vec<StoredRow> = tucdesk_svc::on_pool!(t.db(), |pool| {
        sqlx::query_as(
            "SELECT id, team_id, agent_id, tag, session_kinds, created_by, note, code_hash \
                 FROM support_codes",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    });
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    let text = format!("{row:?}").to_uppercase();
    assert!(!text.contains(&normalized), "plaintext code in {text}");
    assert!(!text.contains(&created.code), "plaintext code in {text}");
    // The stored hash is the HMAC under the KEK's support-code subkey, not a plain hash that
    // 60 bits would not protect offline.
    let key = CodeHashKey::from_slice(
        t.kek
            .subkey(tucdesk_auth::secrets::Purpose::SupportCodeHash)
            .as_slice(),
    )
    .unwrap();
    let expected = code.hash(&key, CodeKind::Support).unwrap().to_bytes();
    assert_eq!(row.7, expected.to_vec());
    assert_ne!(row.7, Sha256::digest(normalized.as_bytes()).to_vec());
    for payload in audit_events(&t).await {
        let bytes = payload.encode_to_vec();
        let text = String::from_utf8_lossy(&bytes).to_uppercase();
        assert!(!text.contains(&normalized) && !text.contains(&created.code));
    }
    t.stop().await;
}

async fn only_admins_of_the_creating_team_see_and_manage_codes(t: TestAuth) {
    let admin = owner(&t).await;
    let (_, info) = simple_code(&t, &admin).await;
    let foreign = member(&t, None, "admin@other.example", "admin").await;
    assert_ne!(foreign.team_id, admin.team_id);

    let theirs = list(&t, &foreign, SupportCodeState::Unspecified, None)
        .await
        .unwrap();
    assert!(theirs.codes.is_empty());
    let err = revoke(&t, &foreign, &info.code_id).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        code_state(&t, &admin, &info.code_id).await,
        (SupportCodeState::Active, 0)
    );

    // An operator of the same team neither creates nor lists codes.
    let operator = member(&t, Some(&admin.team_id), "op@acme.example", "operator").await;
    let err = create(
        &t,
        &operator,
        create_request(&operator, tag("lab"), 60, 1, &[], ""),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = list(&t, &operator, SupportCodeState::Unspecified, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Create is sensitive: no proof, or a proof over other values, is refused.
    let mut request = create_request(&admin, tag("lab"), 600, 1, &[], "");
    request.proof = None;
    let err = create(&t, &admin, request).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::ProofInvalid);
    let mut request = create_request(&admin, tag("lab"), 600, 1, &[], "");
    request.max_uses = 10;
    let err = create(&t, &admin, request).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::ProofInvalid);
    let mut request = create_request(&admin, tag("lab"), 600, 1, &[], "");
    request.scope = Some(tag("prod"));
    let err = create(&t, &admin, request).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::ProofInvalid);

    // Bounds.
    for bad in [
        create_request(
            &admin,
            Scope::AgentId("not-an-agent".into()),
            600,
            1,
            &[],
            "",
        ),
        create_request(&admin, tag("Has Spaces"), 600, 1, &[], ""),
        create_request(&admin, tag("lab"), 86_401, 1, &[], ""),
        create_request(&admin, tag("lab"), 600, 11, &[], ""),
        create_request(&admin, tag("lab"), 600, 1, &[7], ""),
        create_request(&admin, tag("lab"), 600, 1, &[], &"n".repeat(257)),
    ] {
        let err = create(&t, &admin, bad).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    t.stop().await;
}

async fn a_code_redeems_once_for_a_scoped_support_token(t: TestAuth) {
    let admin = owner(&t).await;
    let created = create(
        &t,
        &admin,
        create_request(&admin, tag("site:paris"), 600, 1, &[EXEC], ""),
    )
    .await
    .unwrap();
    let info = created.info.unwrap();
    let technician = Identity::generate().unwrap();

    // A proof over another code, or without a challenge, does not redeem (nor consume) it.
    let mut request = redeem_request(&t.client, &technician, "0000-0000-0000").await;
    request.code = created.code.clone();
    let err = t
        .client
        .clone()
        .redeem_support_code(request)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::ProofInvalid);
    let binding = Sha256::digest(
        SupportCode::parse(&created.code)
            .unwrap()
            .normalized()
            .as_bytes(),
    );
    let mut request = redeem_request(&t.client, &technician, &created.code).await;
    request.device_proof = Some(proof(&technician, REDEEM_METHOD, "", &binding, b""));
    let err = t
        .client
        .clone()
        .redeem_support_code(request)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let redeemed = redeem(&t.client, &technician, &created.code).await.unwrap();
    assert_eq!(redeemed.team_id, admin.team_id);
    let after = redeemed.info.unwrap();
    assert_eq!((after.uses, after.state()), (1, SupportCodeState::Used));

    // A support principal: bound to the technician's key, scoped, viewer, no email, and
    // never outliving the code.
    let thumbprint = technician.public_key().jwk_thumbprint();
    let claims = t
        .auth
        .verifier()
        .verify_access(
            &redeemed.access_token,
            tucdesk_token::unix_now(),
            RequireCnf::Thumbprint(&thumbprint),
        )
        .unwrap();
    assert_eq!(claims.team_id, admin.team_id);
    assert_eq!(claims.role, tucdesk_token::Role::Viewer);
    assert_eq!(claims.scp.as_deref(), Some("tag:site:paris"));
    assert_eq!(claims.kinds, Some(vec![tucdesk_token::SessionKind::Exec]));
    assert_eq!(claims.email, None);
    assert!(
        claims
            .sub
            .starts_with(&format!("support:{}:", info.code_id))
    );
    let code_expiry = u64::try_from(info.expires_at.unwrap().seconds).unwrap();
    assert!(claims.exp <= code_expiry + 1 && claims.exp > claims.iat);
    assert_eq!(
        redeemed.expires_at.unwrap().seconds,
        i64::try_from(claims.exp).unwrap()
    );

    // Single use: the second redemption fails, with the same answer as a wrong code.
    let err = redeem(&t.client, &Identity::generate().unwrap(), &created.code)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(reason(&err), RejectReason::SupportCodeInvalid);

    // The support token is not a user: it manages nothing here.
    let support = Member {
        team_id: admin.team_id.clone(),
        user_id: claims.sub.clone(),
        device: Identity::generate().unwrap(),
        token: redeemed.access_token.clone(),
    };
    let err = list(&t, &support, SupportCodeState::Unspecified, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // A long-lived code still yields at most an hour.
    let long = create(
        &t,
        &admin,
        create_request(&admin, tag("lab"), 7_200, 1, &[], ""),
    )
    .await
    .unwrap();
    let redeemed = redeem(&t.client, &technician, &long.code).await.unwrap();
    let claims = t.auth.authenticate(&redeemed.access_token).unwrap();
    assert_eq!(claims.exp - claims.iat, 3_600);

    let actions = t.audit_actions().await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "auth.support_code_redeemed")
            .count(),
        2
    );
    assert_eq!(failure_reasons(&t).await, vec!["used_up".to_owned()]);
    t.stop().await;
}

/// Rounds of two simultaneous redemptions of a fresh single-use code, from two sources.
const RACE_ROUNDS: u8 = 12;

async fn concurrent_redemptions_have_exactly_one_winner(t: TestAuth) {
    let admin = owner(&t).await;
    for round in 0..RACE_ROUNDS {
        let (code, info) = simple_code(&t, &admin).await;
        let clients = [
            client_from(&t, 10 + 2 * round).await,
            client_from(&t, 11 + 2 * round).await,
        ];
        let mut requests = Vec::new();
        for client in &clients {
            let device = Identity::generate().unwrap();
            requests.push(redeem_request(client, &device, &code).await);
        }
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = clients
            .into_iter()
            .zip(requests)
            .map(|(mut client, request)| {
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    client.redeem_support_code(request).await
                })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => wins += 1,
                Err(err) => assert_eq!(reason(&err), RejectReason::SupportCodeInvalid),
            }
        }
        assert_eq!(wins, 1, "round {round}");
        assert_eq!(
            code_state(&t, &admin, &info.code_id).await,
            (SupportCodeState::Used, 1)
        );
    }
    t.stop().await;
}

async fn expired_and_revoked_codes_fail(t: TestAuth) {
    let admin = owner(&t).await;
    let technician = Identity::generate().unwrap();
    let short = create(
        &t,
        &admin,
        create_request(&admin, tag("lab"), 1, 1, &[], ""),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let err = redeem(&t.client, &technician, &short.code)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::SupportCodeInvalid);
    let info = short.info.unwrap();
    assert_eq!(
        code_state(&t, &admin, &info.code_id).await,
        (SupportCodeState::Expired, 0)
    );

    let (code, info) = simple_code(&t, &admin).await;
    revoke(&t, &admin, &info.code_id).await.unwrap();
    let err = redeem(&t.client, &technician, &code).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::SupportCodeInvalid);
    assert_eq!(
        code_state(&t, &admin, &info.code_id).await,
        (SupportCodeState::Revoked, 0)
    );
    assert_eq!(
        failure_reasons(&t).await,
        vec!["expired".to_owned(), "revoked".to_owned()]
    );
    t.stop().await;
}

async fn repeated_wrong_codes_lock_the_source_out(t: TestAuth) {
    let admin = owner(&t).await;
    let (code, info) = simple_code(&t, &admin).await;
    let technician = Identity::generate().unwrap();
    for _ in 0..REDEEM_SOURCE_LIMIT.max_failures {
        let guess = SupportCode::generate().unwrap().display().to_string();
        let err = redeem(&t.client, &technician, &guess).await.unwrap_err();
        assert_eq!(reason(&err), RejectReason::SupportCodeInvalid);
    }
    // Locked: even the right code is refused, and not consumed.
    let locked = redeem(&t.client, &technician, &code).await.unwrap_err();
    assert_eq!(locked.code(), Code::ResourceExhausted);
    let detail = tucdesk_auth::error::error_detail(&locked).unwrap();
    let lockout = u64::try_from(REDEEM_SOURCE_LIMIT.lockout.as_millis()).unwrap();
    assert!(detail.retry_after_ms > 0 && detail.retry_after_ms <= lockout);
    assert_eq!(
        code_state(&t, &admin, &info.code_id).await,
        (SupportCodeState::Active, 0)
    );
    // The lock is the source's: the code still works from elsewhere.
    let elsewhere = client_from(&t, 50).await;
    redeem(&elsewhere, &technician, &code).await.unwrap();

    let reasons = failure_reasons(&t).await;
    let wrong = usize::try_from(REDEEM_SOURCE_LIMIT.max_failures).unwrap();
    assert_eq!(
        reasons.iter().filter(|r| *r == "invalid_code").count(),
        wrong
    );
    assert_eq!(reasons.last().map(String::as_str), Some("locked"));
    t.stop().await;
}

async fn normalised_input_is_accepted(t: TestAuth) {
    let admin = owner(&t).await;
    let (code, _) = simple_code(&t, &admin).await;
    // What a person might type: lower case, spaces instead of dashes, O for 0 and l for 1.
    let typed = code
        .to_lowercase()
        .replace('-', "  ")
        .replace('0', "o")
        .replace('1', "l");
    let technician = Identity::generate().unwrap();
    redeem(&t.client, &technician, &format!(" {typed} "))
        .await
        .unwrap();

    // Malformed input is refused before any work, without an audit event per attempt.
    for bad in ["", "hello", "K7M2-Q9XH-4R1U", &"0".repeat(65)] {
        let err = redeem(&t.client, &technician, bad).await.unwrap_err();
        assert_eq!(reason(&err), RejectReason::SupportCodeInvalid, "{bad:?}");
    }
    assert!(failure_reasons(&t).await.is_empty());
    t.stop().await;
}

async fn a_team_is_locked_after_many_redemptions_but_not_others(t: TestAuth) {
    let admin = owner(&t).await;
    let foreign = member(&t, None, "admin@other.example", "admin").await;
    let limit = REDEEM_TEAM_LIMIT.max_failures;
    let per_source = REDEEM_SOURCE_LIMIT.max_failures;
    let technician = Identity::generate().unwrap();
    let mut code = String::new();
    let mut left = 0;
    let mut client = t.client.clone();
    for n in 0..limit {
        if left == 0 {
            code = create(
                &t,
                &admin,
                create_request(&admin, tag("lab"), 600, 10, &[], ""),
            )
            .await
            .unwrap()
            .code;
            left = 10;
        }
        if n % per_source == 0 {
            client = client_from(&t, 100 + u8::try_from(n / per_source).unwrap()).await;
        }
        redeem(&client, &technician, &code).await.unwrap();
        left -= 1;
    }
    let (fresh, _) = simple_code(&t, &admin).await;
    let elsewhere = client_from(&t, 200).await;
    let locked = redeem(&elsewhere, &technician, &fresh).await.unwrap_err();
    assert_eq!(locked.code(), Code::ResourceExhausted);
    // Another team's codes are not affected.
    let (theirs, _) = simple_code(&t, &foreign).await;
    redeem(&elsewhere, &technician, &theirs).await.unwrap();
    assert_eq!(failure_reasons(&t).await, vec!["team_locked".to_owned()]);
    t.stop().await;
}

on_both_engines!(
    create_list_and_revoke,
    codes_are_stored_only_as_keyed_hashes,
    only_admins_of_the_creating_team_see_and_manage_codes,
    a_code_redeems_once_for_a_scoped_support_token,
    concurrent_redemptions_have_exactly_one_winner,
    expired_and_revoked_codes_fail,
    repeated_wrong_codes_lock_the_source_out,
    normalised_input_is_accepted,
    a_team_is_locked_after_many_redemptions_but_not_others,
);
