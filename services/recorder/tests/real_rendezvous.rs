//! The recorder against the real rendezvous (in-process, embedded backends): its lookups go
//! through RendezvousInternal under the recorder's service assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use tucdesk_crypto::Identity;
use tucdesk_proto::v1::SessionKind;
use tucdesk_recorder::directory::{AgentDirectory, RendezvousDirectory, service_signer};
use tucdesk_testkit::{Backend, Deployment, SimAgent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_checked_against_the_real_rendezvous() {
    let recorder_key = Identity::generate().unwrap();
    let mut dep = Deployment::new(Backend::Embedded).await.unwrap();
    dep.config.service_keys = vec![format!("recorder={}", recorder_key.agent_id())];
    let rdv = dep.replica().await.unwrap();
    let owner = dep.team("owner-rec@example.com").await.unwrap();
    let token = rdv.enrollment_token(&owner, &[]).await.unwrap();
    let agent = SimAgent::new(tucdesk_testkit::rendezvous::AUDIENCE).unwrap();
    agent
        .enroll(&mut rdv.agent_client(), &token, "web-1", &[])
        .await
        .unwrap();
    // The agent is offline, so the session is refused; rendezvous still records it.
    let ask = owner
        .session_request(&agent.public_key(), SessionKind::Shell, None)
        .unwrap();
    let session_id = ask.request.session_id.clone();
    let _refused = rdv
        .operator_client()
        .create_session(owner.request(ask.request).unwrap())
        .await;

    let directory = RendezvousDirectory::new(
        &format!("http://{}", rdv.internal_addr),
        service_signer(recorder_key).unwrap(),
    )
    .unwrap();
    let found = directory.agent(&agent.agent_id()).await.unwrap().unwrap();
    assert_eq!(found.team_id, owner.team_id);
    assert!(!found.revoked);
    assert_eq!(found.public_key, agent.public_key());
    let session = directory
        .session(&session_id, &owner.team_id)
        .await
        .unwrap()
        .expect("rendezvous knows the session");
    assert_eq!(session.agent_id, agent.agent_id());
    assert_eq!(session.operator_user_id, owner.user_id);
    assert!(
        directory
            .session(&session_id, "another-team")
            .await
            .unwrap()
            .is_none()
    );

    // An assertion rendezvous does not trust is refused (not mistaken for "not found").
    let untrusted = RendezvousDirectory::new(
        &format!("http://{}", rdv.internal_addr),
        service_signer(Identity::generate().unwrap()).unwrap(),
    )
    .unwrap();
    assert!(untrusted.agent(&agent.agent_id()).await.is_err());

    let h = Harness::start_with(Db::Sqlite, StoreKind::Dir, Some(Arc::new(directory))).await;
    let mut client = h.client().await;
    let made = make(
        &agent.identity,
        &owner.team_id,
        &session_id,
        &owner.user_id,
        20_000,
    );
    let done = send(
        &mut client,
        start(&agent.identity, &made, 0, now_ms()),
        &made.ciphertext,
    )
    .await
    .unwrap();
    assert!(done.complete);
    assert!(
        done.object_key
            .starts_with(&format!("tenants/{}/recordings/", owner.team_id))
    );
    // The session's operator (as rendezvous recorded it) sees it; another operator does not.
    let mine = h.token(
        &owner.team_id,
        &owner.user_id,
        tucdesk_token::Role::Operator,
    );
    let (_, bytes) = download(&mut client, &mine, &session_id).await.unwrap();
    assert_eq!(bytes, made.ciphertext);
    let other = h.token(
        &owner.team_id,
        "someone-else",
        tucdesk_token::Role::Operator,
    );
    assert!(download(&mut client, &other, &session_id).await.is_err());
    h.stop().await;
    rdv.stop().await;
    dep.cleanup().await;
}
