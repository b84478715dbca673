//! Team policy through the API: the built-in default, versioned saves with compare-and-swap
//! (admin and device proof), validation with positions, explanations; and RendezvousInternal
//! behind service assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Fixture;
use tucdesk_crypto::{Identity, ServiceSigner};
use tucdesk_proto::v1::{
    ExplainPolicyRequest, GetAgentKeyRequest, GetPolicyRequest, PolicyDecision, PutPolicyRequest,
    RejectReason, Role, SessionKind, ValidatePolicyRequest,
};
use tucdesk_testkit::{Backend, Operator, on_both_backends, reason};

const BUSINESS_HOURS_ONLY: &str = "version: 1
mode: deny
rules:
  - name: weekdays
    effect: allow
    during: { days: [mon, tue, wed, thu, fri], hours: \"09:00-18:00\", timezone: Europe/Berlin }
";

fn put(
    who: &Operator,
    yaml: &str,
    expected_version: u64,
    proof: bool,
) -> tonic::Request<PutPolicyRequest> {
    let binding = tucdesk_rendezvous::policy_api::put_binding(expected_version, yaml);
    let proof = proof.then(|| {
        who.proof(
            tucdesk_rendezvous::policy_api::PUT_METHOD,
            "policy",
            &binding,
        )
        .unwrap()
    });
    who.request(PutPolicyRequest {
        yaml: yaml.to_owned(),
        expected_version,
        proof,
    })
    .unwrap()
}

async fn policies_are_versioned_documents_saved_by_admins(backend: Backend) {
    let f = Fixture::new(backend).await;
    let mut client = f.rdv.operator_client();
    let current = client
        .get_policy(f.owner.request(GetPolicyRequest {}).unwrap())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current.version, 0);
    assert!(current.yaml.contains("mode: allow"), "{}", current.yaml);

    let operator = f
        .dep
        .user(
            &f.owner,
            &format!("op-{}@example.com", common::short_id()),
            Role::Operator,
        )
        .await
        .unwrap();
    let status = client
        .put_policy(put(&operator, BUSINESS_HOURS_ONLY, 0, true))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let status = client
        .put_policy(put(&f.owner, BUSINESS_HOURS_ONLY, 0, false))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::ProofInvalid);

    let saved = client
        .put_policy(put(&f.owner, BUSINESS_HOURS_ONLY, 0, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(saved.version, 1);
    // A stale writer loses.
    let status = client
        .put_policy(put(&f.owner, "version: 1\nmode: allow\n", 0, true))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::VersionConflict);
    let saved = client
        .put_policy(put(&f.owner, "version: 1\nmode: allow\n", 1, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(saved.version, 2);
    // An invalid document is refused and nothing is stored.
    let status = client
        .put_policy(put(&f.owner, "version: 1\nmode: maybe\n", 2, true))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let current = client
        .get_policy(operator.request(GetPolicyRequest {}).unwrap())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current.version, 2);
    assert_eq!(current.updated_by, f.owner.user_id);
    let updates = f
        .audit()
        .await
        .into_iter()
        .filter(|e| e.action == "policy.updated")
        .count();
    assert_eq!(updates, 2);
    f.cleanup().await;
}

async fn validation_reports_positions_and_explanations_use_the_policy_in_force(backend: Backend) {
    let f = Fixture::new(backend).await;
    let mut client = f.rdv.operator_client();
    let checked = client
        .validate_policy(
            f.owner
                .request(ValidatePolicyRequest {
                    yaml: "version: 1\nmode: deny\nrules:\n  - name: x\n    effect: allow\n    kinds: [shel]\n".into(),
                })
                .unwrap(),
        )
        .await
        .unwrap()
        .into_inner();
    assert!(!checked.valid);
    assert!(
        checked
            .errors
            .iter()
            .any(|e| e.line > 0 && e.message.contains("shel")),
        "{checked:?}"
    );

    client
        .put_policy(put(&f.owner, BUSINESS_HOURS_ONLY, 0, true))
        .await
        .unwrap();
    let agent = f.enrolled("web-1", &[]).await;
    let explain = |at_secs: i64| ExplainPolicyRequest {
        agent_id: agent.agent_id(),
        kind: SessionKind::Shell as i32,
        exec: None,
        at: Some(prost_types::Timestamp {
            seconds: at_secs,
            nanos: 0,
        }),
        user_id: String::new(),
    };
    // Wednesday 2026-12-02 10:00 in Berlin (09:00 UTC) and Sunday 2026-12-06 10:00.
    let weekday = client
        .explain_policy(f.owner.request(explain(1_796_202_000)).unwrap())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        weekday.decision,
        PolicyDecision::Allow as i32,
        "{weekday:?}"
    );
    assert_eq!(weekday.rule, "weekdays");
    let sunday = client
        .explain_policy(f.owner.request(explain(1_796_547_600)).unwrap())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sunday.decision, PolicyDecision::Deny as i32);
    assert_eq!(sunday.rule, "default");
    assert_eq!(sunday.policy_version, 1);
    f.cleanup().await;
}

async fn internal_calls_need_a_trusted_service_assertion(backend: Backend) {
    let recorder_seed = tucdesk_crypto::rng::random_secret::<32>().unwrap();
    let recorder_public = Identity::from_seed(&recorder_seed).agent_id();
    let f = Fixture::with(backend, |config| {
        config.service_keys = vec![format!("recorder={recorder_public}")];
    })
    .await;
    let agent = f.enrolled("web-1", &[]).await;
    let mut internal = f.rdv.internal_client().await.unwrap();
    let status = internal
        .get_agent_key(GetAgentKeyRequest {
            agent_id: agent.agent_id(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::ServiceAssertionInvalid);

    let assertion = |identity: Identity| {
        let kid = identity.fingerprint();
        let signer = ServiceSigner::new("recorder", &kid, identity).unwrap();
        signer
            .issue("rendezvous", tucdesk_token::unix_now())
            .unwrap()
    };
    let with = |token: String| {
        let mut request = tonic::Request::new(GetAgentKeyRequest {
            agent_id: agent.agent_id(),
        });
        request.metadata_mut().insert(
            tucdesk_proto::metadata::SERVICE_ASSERTION,
            token.parse().unwrap(),
        );
        request
    };
    // A key nobody configured.
    let status = internal
        .get_agent_key(with(assertion(Identity::generate().unwrap())))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::ServiceAssertionInvalid);
    let key = internal
        .get_agent_key(with(assertion(Identity::from_seed(&recorder_seed))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(key.public_key, agent.public_key().to_bytes().to_vec());
    assert_eq!(key.team_id, f.owner.team_id);
    f.cleanup().await;
}

on_both_backends!(
    policies_are_versioned_documents_saved_by_admins,
    validation_reports_positions_and_explanations_use_the_policy_in_force,
    internal_calls_need_a_trusted_service_assertion,
);
