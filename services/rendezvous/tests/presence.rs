//! Presence across replicas and agent administration: online and offline are right after a
//! clean disconnect, a missed heartbeat and a replica crash; listing filters and pages; tags
//! and renames need an admin (and a device proof for tags).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Fixture, WAIT};
use tucdesk_proto::v1::server_message::Kind as ServerKind;
use tucdesk_proto::v1::{
    GetAgentRequest, ListAgentsRequest, PageRequest, PresenceFilter, RejectReason,
    RenameAgentRequest, Role, TagAgentRequest,
};
use tucdesk_testkit::{Backend, Operator, eventually, on_both_backends, reason};

async fn online(f: &Fixture, viewer: &Operator, agent_id: &str) -> bool {
    f.rdv
        .operator_client()
        .get_agent(
            viewer
                .request(GetAgentRequest {
                    agent_id: agent_id.to_owned(),
                })
                .unwrap(),
        )
        .await
        .unwrap()
        .into_inner()
        .online
}

async fn agents_are_online_while_connected_and_offline_after(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (agent, conn) = f.connected("web-1", &[]).await;
    assert!(online(&f, &f.owner, &agent.agent_id()).await);
    drop(conn);
    assert!(
        eventually(WAIT, || async {
            !online(&f, &f.owner, &agent.agent_id()).await
        })
        .await,
        "a closed stream must read offline"
    );
    // The disconnect is audited after the lease is released.
    assert!(
        eventually(WAIT, || async {
            f.actions().await.contains(&"agent.disconnected".to_owned())
        })
        .await
    );
    f.cleanup().await;
}

async fn a_silent_agent_is_closed_and_goes_offline(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (agent, mut conn) = f.connected("web-1", &[]).await;
    conn.stop_heartbeats();
    // Three missed intervals of 500 ms close the stream.
    assert!(conn.closed(WAIT).await.is_none());
    assert!(
        eventually(WAIT, || async {
            !online(&f, &f.owner, &agent.agent_id()).await
        })
        .await
    );
    f.cleanup().await;
}

async fn presence_expires_after_a_replica_is_killed(backend: Backend) {
    let f = Fixture::new(backend).await;
    let mut doomed = f.dep.replica().await.unwrap();
    let agent = f.enrolled("web-1", &[]).await;
    let mut conn = agent.connect(&mut doomed.agent_client()).await.unwrap();
    // Seen as online from the surviving replica.
    assert!(online(&f, &f.owner, &agent.agent_id()).await);
    doomed.kill();
    // The stream is cut, and nobody released the lease: it must expire on its own.
    assert!(conn.closed(WAIT).await.is_none());
    assert!(
        eventually(WAIT, || async {
            !online(&f, &f.owner, &agent.agent_id()).await
        })
        .await,
        "presence of a crashed replica's agents must expire"
    );
    // The agent reconnects to the survivor and is online again.
    let _conn = agent.connect(&mut f.rdv.agent_client()).await.unwrap();
    assert!(online(&f, &f.owner, &agent.agent_id()).await);
    f.cleanup().await;
}

async fn a_draining_replica_sends_its_agents_elsewhere(backend: Backend) {
    let f = Fixture::new(backend).await;
    let leaving = f.dep.replica().await.unwrap();
    let agent = f.enrolled("web-1", &[]).await;
    let mut conn = agent.connect(&mut leaving.agent_client()).await.unwrap();
    let stopping = tokio::spawn(leaving.stop());
    let message = conn.next(WAIT).await.unwrap().unwrap();
    match message.kind {
        Some(ServerKind::Reconnect(reconnect)) => assert!(reconnect.retry_after_ms < 5_000),
        other => panic!("expected Reconnect, got {other:?}"),
    }
    stopping.await.unwrap();
    assert!(
        eventually(WAIT, || async {
            !online(&f, &f.owner, &agent.agent_id()).await
        })
        .await
    );
    f.cleanup().await;
}

async fn listing_filters_by_tag_name_and_presence_and_pages(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (_web1, _c1) = f.connected("web-1", &["env=prod", "web"]).await;
    let (_web2, _c2) = f.connected("web-2", &["env=dev", "web"]).await;
    let (_db1, _c3) = f.connected("db-1", &["env=prod", "db"]).await;
    let _offline = f.enrolled("web-3", &["web"]).await;
    let mut client = f.rdv.operator_client();
    let names = |request: ListAgentsRequest| {
        let mut client = client.clone();
        let request = f.owner.request(request).unwrap();
        async move {
            let response = client.list_agents(request).await.unwrap().into_inner();
            response
                .agents
                .into_iter()
                .map(|a| a.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        names(ListAgentsRequest {
            tags: vec!["web".into(), "env=prod".into()],
            ..Default::default()
        })
        .await,
        vec!["web-1"]
    );
    assert_eq!(
        names(ListAgentsRequest {
            name_contains: "WEB".into(),
            ..Default::default()
        })
        .await,
        vec!["web-1", "web-2", "web-3"]
    );
    assert_eq!(
        names(ListAgentsRequest {
            presence: PresenceFilter::Offline as i32,
            ..Default::default()
        })
        .await,
        vec!["web-3"]
    );
    assert_eq!(
        names(ListAgentsRequest {
            presence: PresenceFilter::Online as i32,
            ..Default::default()
        })
        .await,
        vec!["db-1", "web-1", "web-2"]
    );
    // LIKE wildcards in the search are literal.
    assert!(
        names(ListAgentsRequest {
            name_contains: "%".into(),
            ..Default::default()
        })
        .await
        .is_empty()
    );

    // Pages of two, until the end.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let response = client
            .list_agents(
                f.owner
                    .request(ListAgentsRequest {
                        page: Some(PageRequest {
                            page_size: 2,
                            page_token: token.clone(),
                        }),
                        ..Default::default()
                    })
                    .unwrap(),
            )
            .await
            .unwrap()
            .into_inner();
        seen.extend(response.agents.into_iter().map(|a| a.name));
        token = response.page.unwrap().next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, vec!["db-1", "web-1", "web-2", "web-3"]);
    // A token is bound to its filter.
    let first = client
        .list_agents(
            f.owner
                .request(ListAgentsRequest {
                    page: Some(PageRequest {
                        page_size: 1,
                        page_token: String::new(),
                    }),
                    ..Default::default()
                })
                .unwrap(),
        )
        .await
        .unwrap()
        .into_inner();
    let status = client
        .list_agents(
            f.owner
                .request(ListAgentsRequest {
                    tags: vec!["web".into()],
                    page: Some(PageRequest {
                        page_size: 1,
                        page_token: first.page.unwrap().next_page_token,
                    }),
                    ..Default::default()
                })
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    f.cleanup().await;
}

async fn only_admins_rename_and_tag_and_tags_need_a_device_proof(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (agent, _conn) = f.connected("web-1", &["web"]).await;
    let operator = f
        .dep
        .user(
            &f.owner,
            &format!("op-{}@example.com", common::short_id()),
            Role::Operator,
        )
        .await
        .unwrap();
    let mut client = f.rdv.operator_client();
    let rename = |who: &Operator| {
        who.request(RenameAgentRequest {
            agent_id: agent.agent_id(),
            name: "frontend-1".into(),
        })
        .unwrap()
    };
    let status = client.rename_agent(rename(&operator)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let renamed = client
        .rename_agent(rename(&f.owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.name, "frontend-1");

    let add = vec!["env=prod".to_owned()];
    let remove = vec!["web".to_owned()];
    let tag = |proof| TagAgentRequest {
        agent_id: agent.agent_id(),
        add: add.clone(),
        remove: remove.clone(),
        proof,
    };
    // No proof, a proof for different tags, then the right one.
    let status = client
        .tag_agent(f.owner.request(tag(None)).unwrap())
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::ProofInvalid);
    let wrong = tucdesk_rendezvous::agents_api::tag_binding(&["env=dev".into()], &remove);
    let proof = f
        .owner
        .proof(
            tucdesk_rendezvous::agents_api::TAG_METHOD,
            &agent.agent_id(),
            &wrong,
        )
        .unwrap();
    let status = client
        .tag_agent(f.owner.request(tag(Some(proof))).unwrap())
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::ProofInvalid);
    let binding = tucdesk_rendezvous::agents_api::tag_binding(&add, &remove);
    let proof = f
        .owner
        .proof(
            tucdesk_rendezvous::agents_api::TAG_METHOD,
            &agent.agent_id(),
            &binding,
        )
        .unwrap();
    let tagged = client
        .tag_agent(f.owner.request(tag(Some(proof.clone()))).unwrap())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tagged.tags, vec!["env=prod"]);
    // The same proof cannot be replayed.
    let status = client
        .tag_agent(f.owner.request(tag(Some(proof))).unwrap())
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::ProofInvalid);
    let changed = f
        .audit()
        .await
        .into_iter()
        .any(|e| e.action == "agent.tags_changed");
    assert!(changed);
    let _ = Duration::ZERO;
    f.cleanup().await;
}

async fn support_principals_see_only_what_their_code_reaches(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (inside, _c1) = f.connected("kiosk-1", &["kiosk"]).await;
    let (outside, _c2) = f.connected("db-1", &["db"]).await;
    let mut client = f.rdv.operator_client();
    for scope in [
        format!("agent:{}", inside.agent_id()),
        "tag:kiosk".to_owned(),
    ] {
        let tech = f
            .dep
            .auth
            .support_principal(&f.owner, &scope, &[tucdesk_proto::v1::SessionKind::Shell])
            .await
            .unwrap();
        let listed = client
            .list_agents(tech.request(ListAgentsRequest::default()).unwrap())
            .await
            .unwrap()
            .into_inner();
        let ids: Vec<String> = listed.agents.into_iter().map(|a| a.agent_id).collect();
        assert_eq!(ids, vec![inside.agent_id()], "{scope}");
        let status = client
            .get_agent(
                tech.request(GetAgentRequest {
                    agent_id: outside.agent_id(),
                })
                .unwrap(),
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound, "{scope}");
        let status = client
            .create_session(
                tech.request(common::shell(&tech, &outside).request)
                    .unwrap(),
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound, "{scope}");
    }
    f.cleanup().await;
}

on_both_backends!(
    agents_are_online_while_connected_and_offline_after,
    a_silent_agent_is_closed_and_goes_offline,
    presence_expires_after_a_replica_is_killed,
    a_draining_replica_sends_its_agents_elsewhere,
    listing_filters_by_tag_name_and_presence_and_pages,
    only_admins_rename_and_tag_and_tags_need_a_device_proof,
    support_principals_see_only_what_their_code_reaches,
);
