//! The auditor role end to end: an auditor made through auth's admin API (`ROLE_AUDITOR`) lists
//! and reads agents like a viewer, but opens no session, decides no approval (even where every
//! role that may approve is an approver), reads no sessions or approvals, and administers
//! nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Fixture, pending, shell};
use tucdesk_proto::v1::{
    DecideApprovalRequest, GetAgentRequest, ListAgentsRequest, ListApprovalsRequest,
    ListSessionsRequest, PutPolicyRequest, RejectReason, Role,
};
use tucdesk_testkit::{Backend, Operator, on_both_backends, reason};

on_both_backends!(an_auditor_reads_agents_but_opens_approves_and_administers_nothing);

/// Production access needs an approval, which anyone who may approve may give.
const ANYONE_APPROVES: &str = "version: 1
mode: allow
approval:
  timeout: 10m
rules:
  - name: prod-needs-approval
    effect: require_approval
    tags: [env=prod]
    reason: Production access needs a second person
    approvers: [owner, admin, operator]
";

fn put_policy_request(who: &Operator, yaml: &str) -> tonic::Request<PutPolicyRequest> {
    let binding = tucdesk_rendezvous::policy_api::put_binding(0, yaml);
    let proof = who
        .proof(
            tucdesk_rendezvous::policy_api::PUT_METHOD,
            "policy",
            &binding,
        )
        .unwrap();
    who.request(PutPolicyRequest {
        yaml: yaml.to_owned(),
        expected_version: 0,
        proof: Some(proof),
    })
    .unwrap()
}

async fn an_auditor_reads_agents_but_opens_approves_and_administers_nothing(backend: Backend) {
    let f = Fixture::new(backend).await;
    let mut client = f.rdv.operator_client();
    let (agent, _conn) = f.connected("db-1", &["env=prod"]).await;
    let auditor = f
        .dep
        .user(
            &f.owner,
            &format!("auditor-{}@example.com", common::short_id()),
            Role::Auditor,
        )
        .await
        .unwrap();
    let operator = f
        .dep
        .user(
            &f.owner,
            &format!("op-{}@example.com", common::short_id()),
            Role::Operator,
        )
        .await
        .unwrap();

    // Administering: refused.
    let status = client
        .put_policy(put_policy_request(&auditor, ANYONE_APPROVES))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    client
        .put_policy(put_policy_request(&f.owner, ANYONE_APPROVES))
        .await
        .unwrap();

    // Reading agents: allowed.
    let listed = client
        .list_agents(auditor.request(ListAgentsRequest::default()).unwrap())
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.agents.iter().any(|a| a.agent_id == agent.agent_id()),
        "{listed:?}"
    );
    client
        .get_agent(
            auditor
                .request(GetAgentRequest {
                    agent_id: agent.agent_id(),
                })
                .unwrap(),
        )
        .await
        .unwrap();

    // Opening a session: refused before policy.
    let status = client
        .create_session(auditor.request(shell(&auditor, &agent).request).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    // Deciding someone else's request: refused.
    let request = pending(
        client
            .create_session(operator.request(shell(&operator, &agent).request).unwrap())
            .await
            .unwrap()
            .into_inner(),
    );
    let proof = auditor
        .proof(
            tucdesk_rendezvous::approvals::APPROVE_METHOD,
            &request.approval_id,
            b"",
        )
        .unwrap();
    let status = client
        .approve(
            auditor
                .request(DecideApprovalRequest {
                    approval_id: request.approval_id.clone(),
                    comment: String::new(),
                    proof: Some(proof),
                })
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::ApproverNotAllowed);

    // Sessions and approval requests are read in the audit log, not here.
    let status = client
        .list_sessions(auditor.request(ListSessionsRequest::default()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let status = client
        .list_approvals(auditor.request(ListApprovalsRequest::default()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    f.cleanup().await;
}
