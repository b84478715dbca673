//! User administration through the real gRPC client on both engines: invites, listing, role
//! changes and disabling, with device proofs, team isolation and the owner rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{PASSWORD, TestAuth, proof, reason};
use prost::Message as _;
use tonic::Code;
use tucdesk_auth::admin::{
    CREATE_USER_METHOD, DISABLE_USER_METHOD, ENABLE_USER_METHOD, SET_USER_ROLE_METHOD,
};
use tucdesk_crypto::Identity;
use tucdesk_proto::v1::{
    AuditEvent, CreateUserRequest, CreateUserResponse, GetUserRequest, ListUsersRequest,
    PageRequest, RejectReason, Role, SetUserDisabledRequest, SetUserRoleRequest, TokenPair, User,
    WhoAmIRequest,
};

const OWNER: &str = "owner@acme.example";

/// Someone logged in on their own device.
struct Person {
    user_id: String,
    device: Identity,
    tokens: TokenPair,
}

fn authed<T>(message: T, person: &Person) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", person.tokens.access_token)
            .parse()
            .unwrap(),
    );
    request
}

fn role_binding(role: Role) -> [u8; 4] {
    (role as u32).to_be_bytes()
}

async fn owner(t: &TestAuth) -> Person {
    let (_, user_id) = t.owner(OWNER).await;
    let device = Identity::generate().unwrap();
    let tokens = t.tokens(&device, OWNER).await;
    Person {
        user_id,
        device,
        tokens,
    }
}

fn create_request(actor: &Person, email: &str, role: Role) -> tonic::Request<CreateUserRequest> {
    let target = email.trim().to_lowercase();
    let signed = proof(
        &actor.device,
        CREATE_USER_METHOD,
        &target,
        &role_binding(role),
        b"",
    );
    authed(
        CreateUserRequest {
            email: email.to_owned(),
            display_name: format!("Name of {email}"),
            role: role as i32,
            invite_ttl_seconds: 0,
            proof: Some(signed),
        },
        actor,
    )
}

async fn create(
    t: &TestAuth,
    actor: &Person,
    email: &str,
    role: Role,
) -> Result<CreateUserResponse, tonic::Status> {
    t.client
        .clone()
        .create_user(create_request(actor, email, role))
        .await
        .map(tonic::Response::into_inner)
}

/// A user created by `actor`, who accepted the invite and logged in.
async fn member(t: &TestAuth, actor: &Person, email: &str, role: Role) -> Person {
    let created = create(t, actor, email, role).await.unwrap();
    t.auth
        .accept_invite(&created.invite_token, PASSWORD.to_owned().into())
        .await
        .unwrap();
    let device = Identity::generate().unwrap();
    let tokens = t.tokens(&device, email).await;
    Person {
        user_id: created.user.unwrap().user_id,
        device,
        tokens,
    }
}

fn disabled_request(
    actor: &Person,
    signer: &Identity,
    method: &str,
    target: &str,
    user_id: &str,
) -> tonic::Request<SetUserDisabledRequest> {
    authed(
        SetUserDisabledRequest {
            user_id: user_id.to_owned(),
            reason: "left the company".into(),
            proof: Some(proof(signer, method, target, b"", b"")),
        },
        actor,
    )
}

async fn disable(t: &TestAuth, actor: &Person, user_id: &str) -> Result<User, tonic::Status> {
    let request = disabled_request(actor, &actor.device, DISABLE_USER_METHOD, user_id, user_id);
    t.client
        .clone()
        .disable_user(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn enable(t: &TestAuth, actor: &Person, user_id: &str) -> Result<User, tonic::Status> {
    let request = disabled_request(actor, &actor.device, ENABLE_USER_METHOD, user_id, user_id);
    t.client
        .clone()
        .enable_user(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn set_role(
    t: &TestAuth,
    actor: &Person,
    user_id: &str,
    role: Role,
) -> Result<User, tonic::Status> {
    let signed = proof(
        &actor.device,
        SET_USER_ROLE_METHOD,
        user_id,
        &role_binding(role),
        b"",
    );
    let request = authed(
        SetUserRoleRequest {
            user_id: user_id.to_owned(),
            role: role as i32,
            proof: Some(signed),
        },
        actor,
    );
    t.client
        .clone()
        .set_user_role(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn get(t: &TestAuth, actor: &Person, user_id: &str) -> Result<User, tonic::Status> {
    let request = authed(
        GetUserRequest {
            user_id: user_id.to_owned(),
        },
        actor,
    );
    t.client
        .clone()
        .get_user(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn list(
    t: &TestAuth,
    actor: &Person,
    page_size: u32,
    page_token: &str,
    query: &str,
    include_disabled: bool,
) -> Result<(Vec<User>, String), tonic::Status> {
    let request = authed(
        ListUsersRequest {
            page: Some(PageRequest {
                page_size,
                page_token: page_token.to_owned(),
            }),
            include_disabled,
            query: query.to_owned(),
        },
        actor,
    );
    let response = t.client.clone().list_users(request).await?.into_inner();
    Ok((
        response.users,
        response.page.unwrap_or_default().next_page_token,
    ))
}

/// Every page of a listing, and the user ids in order.
async fn list_all(t: &TestAuth, actor: &Person, page_size: u32, query: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let (users, next) = list(t, actor, page_size, &token, query, true)
            .await
            .unwrap();
        let effective = if page_size == 0 {
            50
        } else {
            page_size.min(500)
        };
        assert!(users.len() <= effective as usize);
        ids.extend(users.into_iter().map(|u| u.user_id));
        if next.is_empty() {
            return ids;
        }
        token = next;
    }
}

/// Audit events written so far, decoded from the outbox.
async fn audit_events(t: &TestAuth) -> Vec<AuditEvent> {
    let payloads: Vec<Vec<u8>> = tucdesk_svc::on_pool!(t.db(), |pool| {
        sqlx::query_scalar("SELECT payload FROM outbox ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    payloads
        .iter()
        .map(|p| AuditEvent::decode(p.as_slice()).unwrap())
        .collect()
}

fn assert_denied(result: Result<User, tonic::Status>, want: RejectReason) {
    let err = result.unwrap_err();
    assert_eq!(reason(&err), want, "{err:?}");
}

async fn admins_invite_and_manage_users_with_audit(t: TestAuth) {
    let boss = owner(&t).await;
    let created = create(&t, &boss, "Op@Acme.example", Role::Operator)
        .await
        .unwrap();
    let user = created.user.clone().unwrap();
    assert_eq!(user.email, "op@acme.example");
    assert_eq!(user.role, Role::Operator as i32);
    assert!(user.invite_pending);
    assert!(!created.invite_token.is_empty());
    // Default invite lifetime: 72 h.
    let expires = created.invite_expires_at.unwrap().seconds;
    let in_72h = i64::try_from(tucdesk_token::unix_now()).unwrap() + 72 * 3600;
    assert!((expires - in_72h).abs() < 60, "{expires} vs {in_72h}");
    // The same email again: ALREADY_EXISTS.
    let err = create(&t, &boss, "op@acme.example", Role::Viewer)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    // The invite works once; then the user logs in.
    t.auth
        .accept_invite(&created.invite_token, PASSWORD.to_owned().into())
        .await
        .unwrap();
    t.tokens(&Identity::generate().unwrap(), "op@acme.example")
        .await;
    let fetched = get(&t, &boss, &user.user_id).await.unwrap();
    assert!(!fetched.invite_pending);

    // An admin creates and promotes below itself.
    let admin = member(&t, &boss, "admin@acme.example", Role::Admin).await;
    let viewer = create(&t, &admin, "viewer@acme.example", Role::Viewer)
        .await
        .unwrap()
        .user
        .unwrap();
    let raised = set_role(&t, &admin, &viewer.user_id, Role::Admin)
        .await
        .unwrap();
    assert_eq!(raised.role, Role::Admin as i32);
    let disabled = disable(&t, &admin, &user.user_id).await.unwrap();
    assert!(disabled.disabled);
    let enabled = enable(&t, &admin, &user.user_id).await.unwrap();
    assert!(!enabled.disabled);

    // Every change is audited with actor = caller and target = the user.
    let events = audit_events(&t).await;
    let find = |action: &str, target: &str| {
        events
            .iter()
            .find(|e| e.action == action && e.target == format!("user:{target}"))
            .unwrap_or_else(|| panic!("no {action} for {target}"))
            .clone()
    };
    let created_event = find("auth.user_created", &user.user_id);
    assert_eq!(created_event.actor.unwrap().id, boss.user_id);
    assert!(!created_event.context_json.contains(&created.invite_token));
    let role_event = find("auth.role_changed", &viewer.user_id);
    assert_eq!(role_event.actor.unwrap().id, admin.user_id);
    assert!(role_event.context_json.contains("\"to\":\"admin\""));
    let disabled_event = find("auth.user_disabled", &user.user_id);
    assert!(disabled_event.context_json.contains("left the company"));
    find("auth.user_enabled", &user.user_id);
    t.stop().await;
}

async fn a_stolen_access_token_cannot_disable_a_user(t: TestAuth) {
    let boss = owner(&t).await;
    let victim = member(&t, &boss, "op@acme.example", Role::Operator).await;
    let thief = Identity::generate().unwrap();

    // The thief signs with its own key: the token is bound to the owner's device key.
    let request = disabled_request(
        &boss,
        &thief,
        DISABLE_USER_METHOD,
        &victim.user_id,
        &victim.user_id,
    );
    let err = t.client.clone().disable_user(request).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::DeviceKeyMismatch);
    // No proof at all.
    let mut request = disabled_request(
        &boss,
        &boss.device,
        DISABLE_USER_METHOD,
        &victim.user_id,
        &victim.user_id,
    );
    request.get_mut().proof = None;
    let err = t.client.clone().disable_user(request).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::ProofInvalid);
    // A thief's proof cannot create users either.
    let mut request = create_request(&boss, "mole@acme.example", Role::Admin);
    request.get_mut().proof = Some(proof(
        &thief,
        CREATE_USER_METHOD,
        "mole@acme.example",
        &role_binding(Role::Admin),
        b"",
    ));
    let err = t.client.clone().create_user(request).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::DeviceKeyMismatch);
    // No token at all.
    let err = t
        .client
        .clone()
        .get_user(GetUserRequest {
            user_id: victim.user_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(!get(&t, &boss, &victim.user_id).await.unwrap().disabled);
    t.stop().await;
}

async fn a_proof_for_another_target_or_parameter_is_refused(t: TestAuth) {
    let boss = owner(&t).await;
    let a = member(&t, &boss, "a@acme.example", Role::Operator).await;
    let b = member(&t, &boss, "b@acme.example", Role::Operator).await;

    // Signed for A, sent for B.
    let request = disabled_request(
        &boss,
        &boss.device,
        DISABLE_USER_METHOD,
        &a.user_id,
        &b.user_id,
    );
    let err = t.client.clone().disable_user(request).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::ProofInvalid);
    // Signed for EnableUser, sent to DisableUser.
    let request = disabled_request(
        &boss,
        &boss.device,
        ENABLE_USER_METHOD,
        &b.user_id,
        &b.user_id,
    );
    let err = t.client.clone().disable_user(request).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::ProofInvalid);
    // Signed for role viewer, sent with role admin.
    let request = authed(
        SetUserRoleRequest {
            user_id: b.user_id.clone(),
            role: Role::Admin as i32,
            proof: Some(proof(
                &boss.device,
                SET_USER_ROLE_METHOD,
                &b.user_id,
                &role_binding(Role::Viewer),
                b"",
            )),
        },
        &boss,
    );
    let err = t.client.clone().set_user_role(request).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::ProofInvalid);
    // Signed for another email.
    let mut request = create_request(&boss, "x@acme.example", Role::Viewer);
    request.get_mut().email = "y@acme.example".into();
    let err = t.client.clone().create_user(request).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::ProofInvalid);
    // A valid request replayed verbatim: the proof's nonce is spent.
    let request = disabled_request(
        &boss,
        &boss.device,
        DISABLE_USER_METHOD,
        &b.user_id,
        &b.user_id,
    );
    let mut replay = tonic::Request::new(request.get_ref().clone());
    *replay.metadata_mut() = request.metadata().clone();
    t.client.clone().disable_user(request).await.unwrap();
    let err = t.client.clone().disable_user(replay).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::ProofInvalid);
    assert!(!get(&t, &boss, &a.user_id).await.unwrap().disabled);
    t.stop().await;
}

async fn admins_cannot_create_raise_or_touch_owners(t: TestAuth) {
    let boss = owner(&t).await;
    let admin = member(&t, &boss, "admin@acme.example", Role::Admin).await;
    let op = member(&t, &boss, "op@acme.example", Role::Operator).await;

    let err = create(&t, &admin, "new-owner@acme.example", Role::Owner)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::PermissionDenied);
    assert_denied(
        set_role(&t, &admin, &op.user_id, Role::Owner).await,
        RejectReason::PermissionDenied,
    );
    for result in [
        set_role(&t, &admin, &boss.user_id, Role::Viewer).await,
        disable(&t, &admin, &boss.user_id).await,
        enable(&t, &admin, &boss.user_id).await,
    ] {
        assert_denied(result, RejectReason::PermissionDenied);
    }
    // Operators and viewers administer nothing, not even reading.
    assert_denied(
        get(&t, &op, &boss.user_id).await,
        RejectReason::PermissionDenied,
    );
    let err = list(&t, &op, 0, "", "", false).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::PermissionDenied);
    let err = create(&t, &op, "v@acme.example", Role::Viewer)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::PermissionDenied);
    // A demotion takes effect at once, before the admin's token expires.
    set_role(&t, &boss, &admin.user_id, Role::Operator)
        .await
        .unwrap();
    assert_denied(
        disable(&t, &admin, &op.user_id).await,
        RejectReason::PermissionDenied,
    );
    // Owners manage owners.
    let second = create(&t, &boss, "second@acme.example", Role::Owner)
        .await
        .unwrap();
    assert_eq!(second.user.unwrap().role, Role::Owner as i32);
    assert_eq!(
        get(&t, &boss, &boss.user_id).await.unwrap().role,
        Role::Owner as i32
    );
    t.stop().await;
}

async fn admins_make_auditors_who_log_in_as_auditors_and_administer_nothing(t: TestAuth) {
    let boss = owner(&t).await;
    let admin = member(&t, &boss, "admin@acme.example", Role::Admin).await;
    // An admin grants the auditor role (only owners manage owners; auditor is not owner).
    let auditor = member(&t, &admin, "auditor@acme.example", Role::Auditor).await;

    // The token auth signs at login carries the role.
    let thumbprint = auditor.device.public_key().jwk_thumbprint();
    let claims = t
        .auth
        .verifier()
        .verify_access(
            &auditor.tokens.access_token,
            tucdesk_token::unix_now(),
            tucdesk_token::RequireCnf::Thumbprint(&thumbprint),
        )
        .unwrap();
    assert_eq!(claims.role, tucdesk_token::Role::Auditor);
    assert_eq!(claims.sub, auditor.user_id);
    let me = t
        .client
        .clone()
        .who_am_i(authed(WhoAmIRequest {}, &auditor))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.user.unwrap().role, Role::Auditor as i32);
    assert_eq!(
        get(&t, &boss, &auditor.user_id).await.unwrap().role,
        Role::Auditor as i32
    );
    let created = audit_events(&t)
        .await
        .into_iter()
        .find(|e| {
            e.action == "auth.user_created" && e.target == format!("user:{}", auditor.user_id)
        })
        .expect("auth.user_created recorded");
    assert!(
        created.context_json.contains("\"role\":\"auditor\""),
        "{}",
        created.context_json
    );

    // Auditors administer nothing.
    let err = create(&t, &auditor, "v@acme.example", Role::Viewer)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::PermissionDenied);
    assert_denied(
        get(&t, &auditor, &boss.user_id).await,
        RejectReason::PermissionDenied,
    );
    let err = list(&t, &auditor, 0, "", "", false).await.unwrap_err();
    assert_eq!(reason(&err), RejectReason::PermissionDenied);

    // A role change to auditor, by an admin, and back.
    let op = member(&t, &boss, "op@acme.example", Role::Operator).await;
    let changed = set_role(&t, &admin, &op.user_id, Role::Auditor)
        .await
        .unwrap();
    assert_eq!(changed.role, Role::Auditor as i32);
    let back = set_role(&t, &boss, &op.user_id, Role::Operator)
        .await
        .unwrap();
    assert_eq!(back.role, Role::Operator as i32);
    t.stop().await;
}

async fn nobody_changes_their_own_role_or_account(t: TestAuth) {
    let boss = owner(&t).await;
    let admin = member(&t, &boss, "admin@acme.example", Role::Admin).await;
    for (actor, role) in [
        (&boss, Role::Admin),
        (&admin, Role::Operator),
        (&admin, Role::Admin),
    ] {
        assert_denied(
            set_role(&t, actor, &actor.user_id, role).await,
            RejectReason::PermissionDenied,
        );
        assert_denied(
            disable(&t, actor, &actor.user_id).await,
            RejectReason::PermissionDenied,
        );
    }
    t.stop().await;
}

async fn the_last_enabled_owner_cannot_be_removed(t: TestAuth) {
    let boss = owner(&t).await;
    // The only owner can neither demote nor disable itself.
    assert_denied(
        set_role(&t, &boss, &boss.user_id, Role::Admin).await,
        RejectReason::PermissionDenied,
    );
    assert_denied(
        disable(&t, &boss, &boss.user_id).await,
        RejectReason::PermissionDenied,
    );

    // Two owners demoting (or disabling) each other at the same moment: exactly one wins, so
    // the team always keeps an enabled owner.
    let mut winner = boss;
    for round in 0..2 {
        let email = format!("owner{round}@acme.example");
        let other = member(&t, &winner, &email, Role::Owner).await;
        let (mine, theirs) = if round == 0 {
            tokio::join!(
                set_role(&t, &winner, &other.user_id, Role::Admin),
                set_role(&t, &other, &winner.user_id, Role::Admin),
            )
        } else {
            tokio::join!(
                disable(&t, &winner, &other.user_id),
                disable(&t, &other, &winner.user_id),
            )
        };
        assert!(
            mine.is_ok() != theirs.is_ok(),
            "round {round}: {mine:?} / {theirs:?}"
        );
        assert_eq!(enabled_owners(&t).await, 1, "round {round}");
        if theirs.is_ok() {
            winner = other;
        }
    }
    t.stop().await;
}

async fn enabled_owners(t: &TestAuth) -> i64 {
    tucdesk_svc::on_pool!(t.db(), |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = $1 AND disabled = $2")
            .bind("owner")
            .bind(false)
            .fetch_one(pool)
            .await
            .unwrap()
    })
}

async fn a_foreign_team_user_is_not_found(t: TestAuth) {
    let boss = owner(&t).await;
    let mut tx = t.db().begin().await.unwrap();
    let (_, foreign) =
        tucdesk_auth::store::create_team_with_owner(&mut tx, "Other Co", "boss@other.example")
            .await
            .unwrap();
    tx.commit().await.unwrap();
    let nobody = uuid::Uuid::now_v7().to_string();

    for id in [&foreign, &nobody] {
        let results = [
            get(&t, &boss, id).await,
            disable(&t, &boss, id).await,
            enable(&t, &boss, id).await,
            set_role(&t, &boss, id, Role::Viewer).await,
        ];
        for result in results {
            let err = result.unwrap_err();
            assert_eq!(err.code(), Code::NotFound, "{err:?}");
            assert_eq!(reason(&err), RejectReason::NotFound);
        }
    }
    let ids = list_all(&t, &boss, 50, "").await;
    assert_eq!(ids, vec![boss.user_id.clone()]);
    let (users, _) = list(&t, &boss, 0, "", "other", true).await.unwrap();
    assert!(users.is_empty());
    t.stop().await;
}

async fn disabling_a_user_kills_their_refresh_tokens_at_once(t: TestAuth) {
    let boss = owner(&t).await;
    let op = member(&t, &boss, "op@acme.example", Role::Operator).await;
    // A second device of the same user.
    let laptop = Identity::generate().unwrap();
    let laptop_tokens = t.tokens(&laptop, "op@acme.example").await;
    let refreshed = t
        .refresh(&op.device, &op.tokens.refresh_token)
        .await
        .unwrap();

    disable(&t, &boss, &op.user_id).await.unwrap();
    for (device, token) in [
        (&op.device, &refreshed.refresh_token),
        (&laptop, &laptop_tokens.refresh_token),
    ] {
        let err = t.refresh(device, token).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    }
    // The still-unexpired access token is refused by the auth service too.
    let err = t
        .client
        .clone()
        .who_am_i(authed(WhoAmIRequest {}, &op))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::AccountDisabled);
    let err = t
        .login(&Identity::generate().unwrap(), "op@acme.example", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), RejectReason::AccountDisabled);
    let revoked: i64 = tucdesk_svc::on_pool!(t.db(), |pool| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM refresh_families WHERE user_id = $1 AND revoked_at_ms IS NULL",
        )
        .bind(&op.user_id)
        .fetch_one(pool)
        .await
        .unwrap()
    });
    assert_eq!(revoked, 0);

    // Enabled again, the user logs in afresh (old tokens stay dead).
    enable(&t, &boss, &op.user_id).await.unwrap();
    t.tokens(&Identity::generate().unwrap(), "op@acme.example")
        .await;
    assert!(
        t.refresh(&laptop, &laptop_tokens.refresh_token)
            .await
            .is_err()
    );
    t.stop().await;
}

async fn paging_returns_every_user_exactly_once(t: TestAuth) {
    let boss = owner(&t).await;
    let mut expected = vec![boss.user_id.clone()];
    for i in 0..12 {
        let email = format!("user{i:02}@acme.example");
        let role = if i % 3 == 0 {
            Role::Viewer
        } else {
            Role::Operator
        };
        expected.push(
            create(&t, &boss, &email, role)
                .await
                .unwrap()
                .user
                .unwrap()
                .user_id,
        );
    }
    let disabled = expected[5].clone();
    disable(&t, &boss, &disabled).await.unwrap();

    for size in [1, 5, 13, 0, 500] {
        let mut ids = list_all(&t, &boss, size, "").await;
        assert_eq!(ids.len(), expected.len(), "page size {size}");
        ids.sort();
        let mut want = expected.clone();
        want.sort();
        assert_eq!(ids, want, "page size {size}");
    }
    // A user added between two pages does not shift the cursor: nobody is seen twice or
    // skipped.
    let (first, token) = list(&t, &boss, 4, "", "", true).await.unwrap();
    let late = create(&t, &boss, "late@acme.example", Role::Viewer)
        .await
        .unwrap()
        .user
        .unwrap()
        .user_id;
    let mut seen: Vec<String> = first.into_iter().map(|u| u.user_id).collect();
    let mut token = token;
    while !token.is_empty() {
        let (users, next) = list(&t, &boss, 4, &token, "", true).await.unwrap();
        seen.extend(users.into_iter().map(|u| u.user_id));
        token = next;
    }
    let mut want = expected.clone();
    want.push(late);
    seen.sort();
    want.sort();
    assert_eq!(seen, want);

    // Disabled users only on request; the query is a case-insensitive substring.
    let (active, _) = list(&t, &boss, 500, "", "", false).await.unwrap();
    assert!(active.iter().all(|u| u.user_id != disabled));
    let (matches, next) = list(&t, &boss, 500, "", "USER0", true).await.unwrap();
    assert_eq!(matches.len(), 10);
    assert!(next.is_empty());
    let (matches, _) = list(&t, &boss, 500, "", "name of user11", true)
        .await
        .unwrap();
    assert_eq!(matches.len(), 1);
    // LIKE wildcards in the query are literal.
    let (matches, _) = list(&t, &boss, 500, "", "user_", true).await.unwrap();
    assert!(matches.is_empty());
    t.stop().await;
}

async fn every_input_is_bounded(t: TestAuth) {
    let boss = owner(&t).await;
    let op = create(&t, &boss, "op@acme.example", Role::Operator)
        .await
        .unwrap()
        .user
        .unwrap();
    let invalid = |err: tonic::Status| {
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert_eq!(reason(&err), RejectReason::InvalidArgument);
    };

    let mut request = create_request(&boss, "ttl@acme.example", Role::Viewer);
    request.get_mut().invite_ttl_seconds = 30 * 24 * 3600 + 1;
    invalid(t.client.clone().create_user(request).await.unwrap_err());
    let mut request = create_request(&boss, "name@acme.example", Role::Viewer);
    request.get_mut().display_name = "x".repeat(129);
    invalid(t.client.clone().create_user(request).await.unwrap_err());
    for role in [Role::Unspecified, Role::AiAgent] {
        invalid(
            create(&t, &boss, "role@acme.example", role)
                .await
                .unwrap_err(),
        );
    }
    invalid(
        create(&t, &boss, "not an email", Role::Viewer)
            .await
            .unwrap_err(),
    );
    // The longest invite is accepted.
    let mut request = create_request(&boss, "month@acme.example", Role::Viewer);
    request.get_mut().invite_ttl_seconds = 30 * 24 * 3600;
    t.client.clone().create_user(request).await.unwrap();

    let mut request = disabled_request(
        &boss,
        &boss.device,
        DISABLE_USER_METHOD,
        &op.user_id,
        &op.user_id,
    );
    request.get_mut().reason = "r".repeat(513);
    invalid(t.client.clone().disable_user(request).await.unwrap_err());
    invalid(get(&t, &boss, "not-a-uuid").await.unwrap_err());
    invalid(get(&t, &boss, &"a".repeat(10_000)).await.unwrap_err());
    invalid(
        list(&t, &boss, 0, "", &"q".repeat(129), false)
            .await
            .unwrap_err(),
    );
    invalid(list(&t, &boss, 0, "garbage!", "", false).await.unwrap_err());
    invalid(
        set_role(&t, &boss, &op.user_id, Role::AiAgent)
            .await
            .unwrap_err(),
    );
    // An oversized page is capped, not refused.
    let (users, _) = list(&t, &boss, 100_000, "", "", true).await.unwrap();
    assert_eq!(users.len(), 3);
    t.stop().await;
}

on_both_engines!(
    admins_invite_and_manage_users_with_audit,
    a_stolen_access_token_cannot_disable_a_user,
    a_proof_for_another_target_or_parameter_is_refused,
    admins_cannot_create_raise_or_touch_owners,
    admins_make_auditors_who_log_in_as_auditors_and_administer_nothing,
    nobody_changes_their_own_role_or_account,
    the_last_enabled_owner_cannot_be_removed,
    a_foreign_team_user_is_not_found,
    disabling_a_user_kills_their_refresh_tokens_at_once,
    paging_returns_every_user_exactly_once,
    every_input_is_bounded,
);
