//! Support principals (a technician who redeemed a support code) opening sessions: only on
//! the agent or tag their code names and only of its kinds, refused before policy and before
//! anything reaches an agent; the agent's offer names them as support with the code and the
//! technician's name; revoking the code stops further sessions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Fixture, WAIT, accepted, exec, shell};
use tucdesk_proto::v1::{
    GetPolicyRequest, GetSessionRequest, ListAgentsRequest, PrincipalKind, RejectReason,
    RenameAgentRequest, RevokeSupportCodeRequest, Role, SessionKind, SessionState, WhoAmIRequest,
};
use tucdesk_testkit::{Backend, Operator, on_both_backends, reason};
use tucdesk_token::{ExpectedSession, TokenVerifier};

/// The name the harness technician gives when redeeming (`TestAuth::support_principal`).
const TECHNICIAN: &str = "Support Technician";
/// The method an admin's device proof names to revoke a support code (auth's).
const REVOKE_SUPPORT_CODE: &str = "/tucdesk.v1.AuthService/RevokeSupportCode";
/// How long to wait for an offer that must not come.
const NO_OFFER: Duration = Duration::from_millis(500);

/// The code id in a support principal's subject (`support:<code id>:<use>`).
fn code_id(tech: &Operator) -> String {
    let rest = tech.user_id.strip_prefix("support:").unwrap();
    rest.rsplit_once(':').unwrap().0.to_owned()
}

/// Audit events of `action` by `tech`, as their JSON context.
async fn events_by(f: &Fixture, tech: &Operator, action: &str) -> Vec<serde_json::Value> {
    f.audit()
        .await
        .into_iter()
        .filter(|e| e.action == action && e.actor.as_ref().is_some_and(|a| a.id == tech.user_id))
        .map(|e| serde_json::from_str(&e.context_json).unwrap())
        .collect()
}

async fn a_support_principal_opens_a_shell_on_its_agent_and_nowhere_else(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (target, mut on_target) = f.connected("kiosk-1", &["kiosk"]).await;
    let (other, mut on_other) = f.connected("db-1", &["db"]).await;
    let tech = f
        .dep
        .auth
        .support_principal(
            &f.owner,
            &format!("agent:{}", target.agent_id()),
            &[SessionKind::Shell],
        )
        .await
        .unwrap();
    let mut client = f.rdv.operator_client();

    // Auth says who the token is.
    let me = f
        .dep
        .auth
        .client
        .clone()
        .who_am_i(tech.request(WhoAmIRequest {}).unwrap())
        .await
        .unwrap()
        .into_inner();
    let principal = me.principal.unwrap();
    assert_eq!(principal.kind, "support");
    assert_eq!(principal.scope, format!("agent:{}", target.agent_id()));
    assert_eq!(principal.client_id, code_id(&tech));
    assert_eq!(me.user.unwrap().display_name, TECHNICIAN);

    // Its agent: the offer names a support technician, the code and their name; accepted.
    let ask = shell(&tech, &target);
    let call = common::spawn_session(&f, &tech, ask.request.clone());
    let offer = on_target.next_offer(WAIT).await.expect("no offer");
    let operator = offer.operator.clone().unwrap();
    assert_eq!(operator.principal_kind, PrincipalKind::Support as i32);
    assert_eq!(operator.client_id, code_id(&tech));
    assert_eq!(operator.display_name, TECHNICIAN);
    assert_eq!(operator.user_id, tech.user_id);
    assert_eq!(operator.email, "");
    assert_eq!(operator.role, Role::Viewer as i32);
    let thumbprint = tech.device.public_key().jwk_thumbprint();
    assert_eq!(operator.device_key_thumbprint, thumbprint);
    // The session token the agent checks is the support principal's, bound as a user's.
    let keys = f.dep.auth.auth.verifier().keys().clone();
    let e_op_pub = offer.handshake.as_ref().unwrap().e_op_pub.clone();
    let claims = TokenVerifier::new(keys, &f.dep.auth.issuer, &target.agent_id())
        .verify_session(
            &offer.session_token,
            tucdesk_token::unix_now(),
            &ExpectedSession {
                session_id: &offer.session_id,
                agent_id: Some(&target.agent_id()),
                team_id: Some(&f.owner.team_id),
                kind: Some(tucdesk_token::SessionKind::Shell),
                device_key_thumbprint: Some(&thumbprint),
                e_op_pub: Some(&e_op_pub),
            },
        )
        .unwrap();
    assert_eq!(claims.sub, tech.user_id);
    on_target.accept(&target.identity, &offer).await.unwrap();
    let accepted = accepted(call.await.unwrap().unwrap().into_inner());
    assert_eq!(accepted.agent_id, target.agent_id());
    let session = client
        .get_session(
            tech.request(GetSessionRequest {
                session_id: offer.session_id.clone(),
            })
            .unwrap(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(session.state, SessionState::Active as i32);
    assert_eq!(session.operator.unwrap().display_name, TECHNICIAN);

    // Another agent of the same team does not exist for it, and never hears of it.
    let status = client
        .create_session(tech.request(shell(&tech, &other).request).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(reason(&status), RejectReason::NotFound);
    assert!(on_other.next_offer(NO_OFFER).await.is_none());

    // A kind its code does not allow, on its own agent: refused, nothing offered.
    let exec_ask = tech
        .session_request(
            &target.public_key(),
            SessionKind::Exec,
            Some(exec(&["uptime"])),
        )
        .unwrap();
    let status = client
        .create_session(tech.request(exec_ask.request).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(reason(&status), RejectReason::PermissionDenied);
    assert!(status.message().contains("exec"), "{}", status.message());
    assert!(on_target.next_offer(NO_OFFER).await.is_none());

    // Listings hold its agent only, with the request's filters still applied.
    let listed = |request: ListAgentsRequest| {
        let mut client = client.clone();
        let request = tech.request(request).unwrap();
        async move {
            let agents = client
                .list_agents(request)
                .await
                .unwrap()
                .into_inner()
                .agents;
            agents.into_iter().map(|a| a.agent_id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(ListAgentsRequest::default()).await,
        vec![target.agent_id()]
    );
    let no_match = ListAgentsRequest {
        name_contains: "no-such-name".into(),
        ..Default::default()
    };
    assert!(listed(no_match).await.is_empty());
    let wrong_tag = ListAgentsRequest {
        tags: vec!["db".into()],
        ..Default::default()
    };
    assert!(listed(wrong_tag).await.is_empty());

    // Administration and policy stay closed to it.
    let status = client
        .rename_agent(
            tech.request(RenameAgentRequest {
                agent_id: target.agent_id(),
                name: "mine".into(),
            })
            .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let status = client
        .get_policy(tech.request(GetPolicyRequest {}).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);

    // The refusals are audited as the support principal's, with why.
    let refused = events_by(&f, &tech, "session.refused").await;
    let reasons: Vec<&str> = refused
        .iter()
        .map(|c| {
            assert_eq!(c["principal"], "support");
            assert_eq!(c["support_code"], code_id(&tech).as_str());
            c["reason"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        reasons,
        ["REJECT_REASON_NOT_FOUND", "REJECT_REASON_PERMISSION_DENIED"]
    );
    assert_eq!(events_by(&f, &tech, "session.accepted").await.len(), 1);
    f.cleanup().await;
}

async fn a_tag_scoped_support_principal_reaches_tagged_agents_only(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (kiosk_1, mut on_kiosk_1) = f.connected("kiosk-1", &["kiosk"]).await;
    let (kiosk_2, mut on_kiosk_2) = f.connected("kiosk-2", &["kiosk", "site:paris"]).await;
    let (db, mut on_db) = f.connected("db-1", &["db"]).await;
    let tech = f
        .dep
        .auth
        .support_principal(&f.owner, "tag:kiosk", &[SessionKind::Exec])
        .await
        .unwrap();
    let mut client = f.rdv.operator_client();

    let ask = tech
        .session_request(
            &kiosk_2.public_key(),
            SessionKind::Exec,
            Some(exec(&["uptime"])),
        )
        .unwrap();
    let call = common::spawn_session(&f, &tech, ask.request.clone());
    let offer = on_kiosk_2.next_offer(WAIT).await.expect("no offer");
    let operator = offer.operator.clone().unwrap();
    assert_eq!(operator.principal_kind, PrincipalKind::Support as i32);
    assert_eq!(operator.display_name, TECHNICIAN);
    on_kiosk_2.accept(&kiosk_2.identity, &offer).await.unwrap();
    accepted(call.await.unwrap().unwrap().into_inner());

    // An agent without the tag: not found, never offered.
    let ask = tech
        .session_request(&db.public_key(), SessionKind::Exec, Some(exec(&["uptime"])))
        .unwrap();
    let status = client
        .create_session(tech.request(ask.request).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert!(on_db.next_offer(NO_OFFER).await.is_none());
    // A tagged agent, but a kind the code does not allow.
    let status = client
        .create_session(tech.request(shell(&tech, &kiosk_1).request).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(on_kiosk_1.next_offer(NO_OFFER).await.is_none());

    let listed = client
        .list_agents(tech.request(ListAgentsRequest::default()).unwrap())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<String> = listed.agents.into_iter().map(|a| a.agent_id).collect();
    assert_eq!(ids, vec![kiosk_1.agent_id(), kiosk_2.agent_id()]);
    f.cleanup().await;
}

async fn a_revoked_support_code_opens_no_more_sessions(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (agent, mut conn) = f.connected("kiosk-1", &["kiosk"]).await;
    let tech = f
        .dep
        .auth
        .support_principal(
            &f.owner,
            &format!("agent:{}", agent.agent_id()),
            &[SessionKind::Shell],
        )
        .await
        .unwrap();
    let code_id = code_id(&tech);
    let proof = f.owner.proof(REVOKE_SUPPORT_CODE, &code_id, b"").unwrap();
    f.dep
        .auth
        .client
        .clone()
        .revoke_support_code(
            f.owner
                .request(RevokeSupportCodeRequest {
                    code_id,
                    proof: Some(proof),
                })
                .unwrap(),
        )
        .await
        .unwrap();

    // The access token still verifies (no revocation list), but auth mints nothing for it:
    // the session fails before an offer is sent.
    let ask = shell(&tech, &agent);
    let status = f
        .rdv
        .operator_client()
        .create_session(tech.request(ask.request.clone()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(conn.next_offer(NO_OFFER).await.is_none());
    let session = f
        .rdv
        .operator_client()
        .get_session(
            tech.request(GetSessionRequest {
                session_id: ask.request.session_id.clone(),
            })
            .unwrap(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(session.state, SessionState::Failed as i32);
    f.cleanup().await;
}

on_both_backends!(
    a_support_principal_opens_a_shell_on_its_agent_and_nowhere_else,
    a_tag_scoped_support_principal_reaches_tagged_agents_only,
    a_revoked_support_code_opens_no_more_sessions,
);
