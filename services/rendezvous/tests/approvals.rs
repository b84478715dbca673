//! The approval gate (SPEC §4 step 4): a high-risk request waits for a different, authorized
//! human; self-approval is refused; approvals are single use and bound to the request; no
//! decision in time is a denial; everything is audited with the approver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::pending as pending_of;
use common::{Fixture, WAIT, accepted, exec, pending, shell};
use tucdesk_proto::v1::{
    ApprovalState, DecideApprovalRequest, GetApprovalRequest, ListApprovalsRequest, PolicyDecision,
    PutPolicyRequest, RejectReason, Role, SessionKind, WatchApprovalsRequest,
};
use tucdesk_testkit::{AgentLinkConn, Backend, Operator, SimAgent, on_both_backends, reason};

const PROD_NEEDS_APPROVAL: &str = "version: 1
mode: allow
approval:
  timeout: 10m
rules:
  - name: prod-needs-approval
    effect: require_approval
    tags: [env=prod]
    reason: Production access needs a second person
    approvers: [admin]
";

async fn put_policy(f: &Fixture, yaml: &str) {
    let binding = tucdesk_rendezvous::policy_api::put_binding(0, yaml);
    let proof = f
        .owner
        .proof(
            tucdesk_rendezvous::policy_api::PUT_METHOD,
            "policy",
            &binding,
        )
        .unwrap();
    f.rdv
        .operator_client()
        .put_policy(
            f.owner
                .request(PutPolicyRequest {
                    yaml: yaml.to_owned(),
                    expected_version: 0,
                    proof: Some(proof),
                })
                .unwrap(),
        )
        .await
        .unwrap();
}

/// A team with the approval policy, a prod agent, an operator and an admin.
struct Setup {
    f: Fixture,
    agent: SimAgent,
    conn: AgentLinkConn,
    operator: Operator,
    admin: Operator,
}

async fn setup(backend: Backend) -> Setup {
    let f = Fixture::new(backend).await;
    put_policy(&f, PROD_NEEDS_APPROVAL).await;
    let (agent, conn) = f.connected("db-1", &["env=prod"]).await;
    let operator = f
        .dep
        .user(
            &f.owner,
            &format!("op-{}@example.com", common::short_id()),
            Role::Operator,
        )
        .await
        .unwrap();
    let admin = f
        .dep
        .user(
            &f.owner,
            &format!("admin-{}@example.com", common::short_id()),
            Role::Admin,
        )
        .await
        .unwrap();
    Setup {
        f,
        agent,
        conn,
        operator,
        admin,
    }
}

async fn decide(
    f: &Fixture,
    who: &Operator,
    approval_id: &str,
    approve: bool,
) -> Result<tucdesk_proto::v1::Approval, tonic::Status> {
    let method = if approve {
        tucdesk_rendezvous::approvals::APPROVE_METHOD
    } else {
        tucdesk_rendezvous::approvals::DENY_METHOD
    };
    let proof = who.proof(method, approval_id, b"").unwrap();
    let request = who
        .request(DecideApprovalRequest {
            approval_id: approval_id.to_owned(),
            comment: "checked the change ticket".into(),
            proof: Some(proof),
        })
        .unwrap();
    let mut client = f.rdv.operator_client();
    if approve {
        client
            .approve(request)
            .await
            .map(tonic::Response::into_inner)
    } else {
        client.deny(request).await.map(tonic::Response::into_inner)
    }
}

async fn approval_by_another_authorized_human_opens_the_session_once(backend: Backend) {
    let mut s = setup(backend).await;
    let mut client = s.f.rdv.operator_client();
    let first = shell(&s.operator, &s.agent);
    let pending = pending(
        client
            .create_session(s.operator.request(first.request.clone()).unwrap())
            .await
            .unwrap()
            .into_inner(),
    );
    let result = pending.policy_result.clone().unwrap();
    assert_eq!(result.decision, PolicyDecision::ApprovalRequired as i32);
    assert_eq!(result.rule, "prod-needs-approval");
    // Nothing reached the agent yet.
    assert!(
        s.conn
            .next_offer(std::time::Duration::from_millis(300))
            .await
            .is_none()
    );

    // The requester cannot approve their own request, whatever their role; the owner is not
    // among this rule's approver roles; an operator neither.
    let status = decide(&s.f, &s.operator, &pending.approval_id, true)
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::ApproverNotAllowed);
    let status = decide(&s.f, &s.f.owner, &pending.approval_id, true)
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::ApproverNotAllowed);
    // An approval without a device proof is refused.
    let status =
        s.f.rdv
            .operator_client()
            .approve(
                s.admin
                    .request(DecideApprovalRequest {
                        approval_id: pending.approval_id.clone(),
                        comment: String::new(),
                        proof: None,
                    })
                    .unwrap(),
            )
            .await
            .unwrap_err();
    assert_eq!(reason(&status), RejectReason::ProofInvalid);

    // An admin's own request cannot be approved by that admin either.
    let own = pending_of(
        client
            .create_session(s.admin.request(shell(&s.admin, &s.agent).request).unwrap())
            .await
            .unwrap()
            .into_inner(),
    );
    let status = decide(&s.f, &s.admin, &own.approval_id, true)
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::ApproverNotAllowed);

    let approved = decide(&s.f, &s.admin, &pending.approval_id, true)
        .await
        .unwrap();
    assert_eq!(approved.state, ApprovalState::Approved as i32);
    assert_eq!(approved.decided_by, s.admin.user_id);
    // Deciding twice is refused.
    assert!(
        decide(&s.f, &s.admin, &pending.approval_id, false)
            .await
            .is_err()
    );

    // The requester re-submits with a fresh session id and key.
    let mut again = shell(&s.operator, &s.agent);
    again.request.approval_id = pending.approval_id.clone();
    let call = common::spawn_session(&s.f, &s.operator, again.request.clone());
    let offer = s.conn.next_offer(WAIT).await.unwrap();
    let policy = offer.policy_result.clone().unwrap();
    assert_eq!(policy.decision, PolicyDecision::Allow as i32);
    assert_eq!(policy.approver, s.admin.user_id);
    assert_eq!(policy.approval_id, pending.approval_id);
    s.conn.accept(&s.agent.identity, &offer).await.unwrap();
    accepted(call.await.unwrap().unwrap().into_inner());

    // Single use.
    let mut third = shell(&s.operator, &s.agent);
    third.request.approval_id = pending.approval_id.clone();
    let status = client
        .create_session(s.operator.request(third.request).unwrap())
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::ApprovalExpired);

    let events = s.f.audit().await;
    let approved_event = events
        .iter()
        .find(|e| e.action == "approval.approved")
        .expect("the approval is audited");
    assert_eq!(approved_event.actor.as_ref().unwrap().id, s.admin.user_id);
    assert_eq!(
        approved_event.policy_result.as_ref().unwrap().approver,
        s.admin.user_id
    );
    assert!(events.iter().any(|e| e.action == "approval.requested"));
    assert!(
        events
            .iter()
            .any(|e| e.action == "approval.self_approval_refused")
    );
    s.f.cleanup().await;
}

async fn an_approval_covers_only_the_request_that_was_approved(backend: Backend) {
    let s = setup(backend).await;
    let mut client = s.f.rdv.operator_client();
    let ask = s
        .operator
        .session_request(
            &s.agent.public_key(),
            SessionKind::Exec,
            Some(exec(&["systemctl", "status", "db"])),
        )
        .unwrap();
    let pending = pending(
        client
            .create_session(s.operator.request(ask.request).unwrap())
            .await
            .unwrap()
            .into_inner(),
    );
    decide(&s.f, &s.admin, &pending.approval_id, true)
        .await
        .unwrap();
    // A different command under the same approval.
    let mut swapped = s
        .operator
        .session_request(
            &s.agent.public_key(),
            SessionKind::Exec,
            Some(exec(&["systemctl", "stop", "db"])),
        )
        .unwrap();
    swapped.request.approval_id = pending.approval_id.clone();
    let status = client
        .create_session(s.operator.request(swapped.request).unwrap())
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::ApprovalDenied);
    // An approval that does not exist: not found, and the session is not left negotiating.
    let mut unknown = shell(&s.operator, &s.agent);
    unknown.request.approval_id = uuid::Uuid::new_v4().to_string();
    let status = client
        .create_session(s.operator.request(unknown.request.clone()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let session = client
        .get_session(
            s.operator
                .request(tucdesk_proto::v1::GetSessionRequest {
                    session_id: unknown.request.session_id.clone(),
                })
                .unwrap(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        session.state,
        tucdesk_proto::v1::SessionState::Failed as i32
    );
    // Someone else using the operator's approval.
    let mut borrowed = s
        .admin
        .session_request(
            &s.agent.public_key(),
            SessionKind::Exec,
            Some(exec(&["systemctl", "status", "db"])),
        )
        .unwrap();
    borrowed.request.approval_id = pending.approval_id.clone();
    let status = client
        .create_session(s.admin.request(borrowed.request).unwrap())
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::ApprovalDenied);
    s.f.cleanup().await;
}

async fn a_denied_request_stays_denied(backend: Backend) {
    let s = setup(backend).await;
    let mut client = s.f.rdv.operator_client();
    let pending = pending(
        client
            .create_session(
                s.operator
                    .request(shell(&s.operator, &s.agent).request)
                    .unwrap(),
            )
            .await
            .unwrap()
            .into_inner(),
    );
    let denied = decide(&s.f, &s.admin, &pending.approval_id, false)
        .await
        .unwrap();
    assert_eq!(denied.state, ApprovalState::Denied as i32);
    let mut again = shell(&s.operator, &s.agent);
    again.request.approval_id = pending.approval_id.clone();
    let status = client
        .create_session(s.operator.request(again.request).unwrap())
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::ApprovalDenied);
    assert!(s.f.actions().await.contains(&"approval.denied".to_owned()));
    s.f.cleanup().await;
}

async fn no_decision_in_time_is_a_denial(backend: Backend) {
    let s = setup(backend).await;
    let mut client = s.f.rdv.operator_client();
    let pending = pending(
        client
            .create_session(
                s.operator
                    .request(shell(&s.operator, &s.agent).request)
                    .unwrap(),
            )
            .await
            .unwrap()
            .into_inner(),
    );
    // Let the wait run out: move the deadline into the past instead of sleeping for minutes.
    tucdesk_svc::on_pool!(&s.f.dep.db, |pool| {
        sqlx::query("UPDATE approvals SET expires_at_ms = $1 WHERE id = $2")
            .bind(tucdesk_svc::sql::now_ms() - 1)
            .bind(&pending.approval_id)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected()
    });
    // Even before the sweeper runs, it reads as expired and cannot be approved.
    let status = decide(&s.f, &s.admin, &pending.approval_id, true)
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::ApprovalExpired);
    let expired = s.f.rdv.rdv.expire_due_approvals().await.unwrap();
    assert!(expired <= 1, "the background sweeper may have been first");
    let approval = client
        .get_approval(
            s.operator
                .request(GetApprovalRequest {
                    approval_id: pending.approval_id.clone(),
                })
                .unwrap(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approval.state, ApprovalState::Expired as i32);
    assert_eq!(approval.decided_by, "system");
    let mut again = shell(&s.operator, &s.agent);
    again.request.approval_id = pending.approval_id.clone();
    let status = client
        .create_session(s.operator.request(again.request).unwrap())
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::ApprovalExpired);
    let event =
        s.f.audit()
            .await
            .into_iter()
            .find(|e| e.action == "approval.expired")
            .expect("expiry is audited");
    let result = event.policy_result.unwrap();
    assert_eq!(result.approver, "system");
    s.f.cleanup().await;
}

async fn approvers_watch_and_list_requests(backend: Backend) {
    let s = setup(backend).await;
    let mut client = s.f.rdv.operator_client();
    let mut watch = client
        .watch_approvals(s.admin.request(WatchApprovalsRequest {}).unwrap())
        .await
        .unwrap()
        .into_inner();
    let pending = pending(
        client
            .create_session(
                s.operator
                    .request(shell(&s.operator, &s.agent).request)
                    .unwrap(),
            )
            .await
            .unwrap()
            .into_inner(),
    );
    let event = tokio::time::timeout(WAIT, watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let seen = event.approval.unwrap();
    assert_eq!(seen.approval_id, pending.approval_id);
    assert_eq!(seen.state, ApprovalState::Pending as i32);
    assert_eq!(seen.requester.unwrap().user_id, s.operator.user_id);
    decide(&s.f, &s.admin, &pending.approval_id, true)
        .await
        .unwrap();
    let event = tokio::time::timeout(WAIT, watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        event.approval.unwrap().state,
        ApprovalState::Approved as i32
    );

    // Watchers per user are capped; a closed watcher frees its place.
    let mut more = Vec::new();
    for _ in 1..tucdesk_rendezvous::MAX_WATCHERS_PER_USER {
        more.push(
            client
                .watch_approvals(s.admin.request(WatchApprovalsRequest {}).unwrap())
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let status = client
        .watch_approvals(s.admin.request(WatchApprovalsRequest {}).unwrap())
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::LimitExceeded);
    drop(watch);
    assert!(
        tucdesk_testkit::eventually(WAIT, || {
            let mut client = client.clone();
            let request = s.admin.request(WatchApprovalsRequest {}).unwrap();
            async move { client.watch_approvals(request).await.is_ok() }
        })
        .await
    );
    // Admins list the team's requests; an operator only their own.
    let listed = client
        .list_approvals(s.admin.request(ListApprovalsRequest::default()).unwrap())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.approvals.len(), 1);
    let other =
        s.f.dep
            .user(
                &s.f.owner,
                &format!("op2-{}@example.com", common::short_id()),
                Role::Operator,
            )
            .await
            .unwrap();
    let theirs = client
        .list_approvals(other.request(ListApprovalsRequest::default()).unwrap())
        .await
        .unwrap()
        .into_inner();
    assert!(theirs.approvals.is_empty());
    s.f.cleanup().await;
}

on_both_backends!(
    approval_by_another_authorized_human_opens_the_session_once,
    an_approval_covers_only_the_request_that_was_approved,
    a_denied_request_stays_denied,
    no_decision_in_time_is_a_denial,
    approvers_watch_and_list_requests,
);
