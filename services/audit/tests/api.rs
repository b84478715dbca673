//! AuditService over gRPC: the caller's team only, filters and paging, readers only, a
//! verifiable export, and proofs that verify against signed checkpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Api, Fixture, event, req, team};
use tonic::Code;
use tonic::transport::Channel;
use tucdesk_audit::convert::{checkpoint_from_proto, entry_from_proto};
use tucdesk_crypto::audit::verify_chain;
use tucdesk_crypto::merkle::{Hash, leaf_hash, root, verify_consistency, verify_inclusion};
use tucdesk_proto::v1 as pb;
use tucdesk_proto::v1::audit_service_client::AuditServiceClient;
use tucdesk_testkit::{Backend, on_both_backends};
use tucdesk_token::Role;

on_both_backends!(
    query_returns_only_the_callers_team_honouring_filters_and_paging,
    callers_without_a_reader_role_or_device_key_are_refused,
    export_is_a_verifiable_chain_ending_with_a_covering_checkpoint,
    proofs_verify_against_signed_checkpoints,
    pages_of_large_entries_stop_below_the_message_limit,
);

/// occurred_at of the first test event.
const BASE_MS: u64 = 1_767_225_600_000;

async fn query(
    client: &mut AuditServiceClient<Channel>,
    token: &str,
    filter: pb::AuditFilter,
    oldest_first: bool,
) -> Vec<u64> {
    let response = client
        .query(req(
            pb::QueryAuditRequest {
                filter: Some(filter),
                page: None,
                oldest_first,
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner();
    response.entries.iter().map(|e| e.seq).collect()
}

/// Six events of varied shape for `t`, one second apart from [`BASE_MS`].
fn varied(t: &str) -> Vec<pb::AuditEvent> {
    let mut events = vec![
        event(t, "auth.login", "u1"),
        event(t, "auth.logout", "u2"),
        event(t, "session.start", "u1"),
        event(t, "session.end", "u1"),
        event(t, "exec.command", "u2"),
        event(t, "policy.decision", "u3"),
    ];
    for (i, e) in events.iter_mut().enumerate() {
        e.occurred_at_ms = BASE_MS + 1000 * i as u64;
    }
    events[2].session_id = "s-1".into();
    events[3].session_id = "s-1".into();
    events[4].target = "agent:BBBB".into();
    events[5].policy_result = Some(pb::AuditPolicyResult {
        decision: pb::PolicyDecision::Deny as i32,
        rule: "night".into(),
        reason: "outside hours".into(),
        approver: String::new(),
    });
    events
}

async fn query_returns_only_the_callers_team_honouring_filters_and_paging(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (a, b) = (team("qa"), team("qb"));
    for e in varied(&a) {
        f.publish(&e).await;
    }
    for e in varied(&b).into_iter().take(3) {
        f.publish(&e).await;
    }
    let api = Api::start(f).await;
    api.f.wait_for(&a, 6).await;
    api.f.wait_for(&b, 3).await;
    let mut client = api.client().await;
    let admin = api.token(&a, Role::Admin);

    let all = client
        .query(req(pb::QueryAuditRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert!(
        all.entries
            .iter()
            .all(|e| e.event.as_ref().unwrap().team_id == a)
    );
    assert_eq!(
        all.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [6, 5, 4, 3, 2, 1]
    );
    // Entries come back verifiable.
    let chain: Vec<_> = all
        .entries
        .iter()
        .rev()
        .map(|e| entry_from_proto(e).unwrap())
        .collect();
    verify_chain(&chain, &api.f.key().verifying_key()).unwrap();

    // The other team's readers see only their own.
    let other = api.token(&b, Role::Auditor);
    let seqs = query(&mut client, &other, pb::AuditFilter::default(), true).await;
    assert_eq!(seqs, [1, 2, 3]);

    // Paging: full pages carry a token; the token is bound to its filter.
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .query(req(
                pb::QueryAuditRequest {
                    filter: None,
                    page: Some(pb::PageRequest {
                        page_size: 4,
                        page_token: token.clone(),
                    }),
                    oldest_first: false,
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        pages.push(page.entries.iter().map(|e| e.seq).collect::<Vec<_>>());
        token = page.page.unwrap().next_page_token;
        if token.is_empty() {
            break;
        }
        if pages.len() == 1 {
            let wrong = client
                .query(req(
                    pb::QueryAuditRequest {
                        filter: Some(pb::AuditFilter {
                            actor_id: "u1".into(),
                            ..Default::default()
                        }),
                        page: Some(pb::PageRequest {
                            page_size: 4,
                            page_token: token.clone(),
                        }),
                        oldest_first: false,
                    },
                    &admin,
                ))
                .await
                .unwrap_err();
            assert_eq!(wrong.code(), Code::InvalidArgument);
        }
    }
    assert_eq!(pages, [vec![6, 5, 4, 3], vec![2, 1]]);

    // Filters (AND).
    let cases: Vec<(pb::AuditFilter, Vec<u64>)> = vec![
        (
            pb::AuditFilter {
                action: "session.".into(),
                ..Default::default()
            },
            vec![3, 4],
        ),
        (
            pb::AuditFilter {
                action: "auth.login".into(),
                ..Default::default()
            },
            vec![1],
        ),
        (
            pb::AuditFilter {
                actor_id: "u2".into(),
                ..Default::default()
            },
            vec![2, 5],
        ),
        (
            pb::AuditFilter {
                session_id: "s-1".into(),
                ..Default::default()
            },
            vec![3, 4],
        ),
        (
            pb::AuditFilter {
                agent_id: "BBBB".into(),
                ..Default::default()
            },
            vec![5],
        ),
        (
            pb::AuditFilter {
                target: "agent:AAAA".into(),
                actor_id: "u1".into(),
                ..Default::default()
            },
            vec![1, 3, 4],
        ),
        (
            pb::AuditFilter {
                start: Some(ts(BASE_MS + 1000)),
                end: Some(ts(BASE_MS + 3000)),
                ..Default::default()
            },
            vec![2, 3],
        ),
        (
            pb::AuditFilter {
                from_seq: 2,
                to_seq: 4,
                ..Default::default()
            },
            vec![2, 3, 4],
        ),
        (
            pb::AuditFilter {
                actor_id: "nobody".into(),
                ..Default::default()
            },
            vec![],
        ),
    ];
    for (filter, expected) in cases {
        let seqs = query(&mut client, &admin, filter.clone(), true).await;
        assert_eq!(seqs, expected, "{filter:?}");
    }
    let bad = client
        .query(req(
            pb::QueryAuditRequest {
                filter: Some(pb::AuditFilter {
                    action: "auth.%".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    // Every query is itself an audit event of the caller's team.
    let recorded: Vec<String> = tucdesk_svc::on_pool!(&api.f.db, |pool| {
        sqlx::query_scalar("SELECT subject FROM outbox WHERE team_id = $1")
            .bind(&a)
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert!(!recorded.is_empty());
    assert!(
        recorded
            .iter()
            .all(|s| *s == format!("audit.{a}.audit.query"))
    );
    api.stop().await;
}

fn ts(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

async fn callers_without_a_reader_role_or_device_key_are_refused(backend: Backend) {
    let f = Fixture::new(backend).await;
    let t = team("deny");
    f.publish(&event(&t, "auth.login", "u1")).await;
    let api = Api::start(f).await;
    api.f.wait_for(&t, 1).await;
    let mut client = api.client().await;
    for role in [Role::Viewer, Role::Operator, Role::AiAgent] {
        let status = client
            .query(req(pb::QueryAuditRequest::default(), &api.token(&t, role)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{role}");
        assert_eq!(
            tucdesk_testkit::reason(&status),
            pb::RejectReason::PermissionDenied
        );
        let status = client
            .list_signing_keys(req(pb::ListSigningKeysRequest {}, &api.token(&t, role)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{role}");
    }
    let unbound = api.token_with(&t, Role::Owner, false);
    let status = client
        .query(req(pb::QueryAuditRequest::default(), &unbound))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = client
        .query(tonic::Request::new(pb::QueryAuditRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = client
        .query(req(pb::QueryAuditRequest::default(), "not.a.token"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // Owners, admins and auditors read; the keys listed are the service's.
    for role in [Role::Owner, Role::Admin, Role::Auditor] {
        let keys = client
            .list_signing_keys(req(pb::ListSigningKeysRequest {}, &api.token(&t, role)))
            .await
            .unwrap()
            .into_inner()
            .keys;
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].key_id, api.f.key().key_id());
        assert_eq!(
            keys[0].public_key,
            api.f.key().public_key().to_bytes().to_vec()
        );
        assert!(keys[0].retired_at.is_none());
    }
    api.stop().await;
}

async fn collect_export(
    client: &mut AuditServiceClient<Channel>,
    token: &str,
    filter: pb::AuditFilter,
) -> Vec<pb::export_item::Item> {
    let mut stream = client
        .export(req(
            pb::ExportAuditRequest {
                filter: Some(filter),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut items = Vec::new();
    while let Some(item) = stream.message().await.unwrap() {
        items.push(item.item.unwrap());
    }
    items
}

async fn export_is_a_verifiable_chain_ending_with_a_covering_checkpoint(backend: Backend) {
    let f = Fixture::with(backend, |c| c.checkpoint_every = 4).await;
    let t = team("export");
    for i in 0..10 {
        f.publish(&event(&t, "exec.command", &format!("u{i}")))
            .await;
    }
    let api = Api::start(f).await;
    api.f.wait_for(&t, 10).await;
    let mut client = api.client().await;
    let token = api.token(&t, Role::Auditor);
    let key = api.f.key().verifying_key();

    let items = collect_export(&mut client, &token, pb::AuditFilter::default()).await;
    let (entries, checkpoints): (Vec<_>, Vec<_>) = items
        .into_iter()
        .partition(|item| matches!(item, pb::export_item::Item::Entry(_)));
    let chain: Vec<_> = entries
        .iter()
        .map(|item| match item {
            pb::export_item::Item::Entry(e) => entry_from_proto(e).unwrap(),
            pb::export_item::Item::Checkpoint(_) => unreachable!(),
        })
        .collect();
    assert_eq!(chain.len(), 10);
    verify_chain(&chain, &key).unwrap();
    // One checkpoint at the end, covering all 10 (signed for the export: 8 was the last
    // count-triggered one).
    assert_eq!(checkpoints.len(), 1);
    let pb::export_item::Item::Checkpoint(last) = &checkpoints[0] else {
        unreachable!()
    };
    let last = checkpoint_from_proto(last).unwrap();
    last.verify(&key).unwrap();
    assert_eq!(last.checkpoint.tree_size, 10);
    let leaves: Vec<Hash> = chain.iter().map(|e| leaf_hash(&e.hash)).collect();
    assert_eq!(last.checkpoint.root_hash, root(&leaves));
    // NDJSON lines as the crypto crate formats them parse back to the same entries.
    for entry in &chain {
        let line = entry.to_json_line().unwrap();
        assert_eq!(
            &tucdesk_crypto::audit::Entry::from_json_line(&line).unwrap(),
            entry
        );
    }

    // A bounded export ends with the newest checkpoint inside its range.
    let items = collect_export(
        &mut client,
        &token,
        pb::AuditFilter {
            to_seq: 9,
            ..Default::default()
        },
    )
    .await;
    let sizes: Vec<u64> = items
        .iter()
        .filter_map(|item| match item {
            pb::export_item::Item::Checkpoint(c) => Some(c.tree_size),
            pb::export_item::Item::Entry(_) => None,
        })
        .collect();
    assert_eq!(items.len(), 10);
    assert_eq!(sizes, [8]);
    api.stop().await;
}

async fn proofs_verify_against_signed_checkpoints(backend: Backend) {
    let f = Fixture::with(backend, |c| c.checkpoint_every = 4).await;
    let t = team("proof");
    for i in 0..9 {
        f.publish(&event(&t, "auth.login", &format!("u{i}"))).await;
    }
    let api = Api::start(f).await;
    let chain = api.f.wait_for(&t, 9).await;
    let mut client = api.client().await;
    let token = api.token(&t, Role::Owner);
    let key = api.f.key().verifying_key();

    let cp = client
        .get_checkpoint(req(pb::GetCheckpointRequest { tree_size: 8 }, &token))
        .await
        .unwrap()
        .into_inner();
    let cp8 = checkpoint_from_proto(&cp).unwrap();
    cp8.verify(&key).unwrap();
    let listed = client
        .list_checkpoints(req(pb::ListCheckpointsRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    let sizes: Vec<u64> = listed.checkpoints.iter().map(|c| c.tree_size).collect();
    assert_eq!(&sizes[..2], [4, 8]);

    for (leaf, seq) in [
        (pb::get_inclusion_proof_request::Leaf::Seq(3), 3u64),
        (
            pb::get_inclusion_proof_request::Leaf::EntryHash(chain[6].hash.to_vec()),
            7,
        ),
    ] {
        let proof = client
            .get_inclusion_proof(req(
                pb::GetInclusionProofRequest {
                    leaf: Some(leaf),
                    tree_size: 8,
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(proof.leaf_index, seq - 1);
        let entry = entry_from_proto(proof.entry.as_ref().unwrap()).unwrap();
        tucdesk_crypto::audit::verify_entry(&entry, &key).unwrap();
        let path: Vec<Hash> = proof
            .audit_path
            .iter()
            .map(|h| h.as_slice().try_into().unwrap())
            .collect();
        let signed = checkpoint_from_proto(proof.checkpoint.as_ref().unwrap()).unwrap();
        signed.verify(&key).unwrap();
        verify_inclusion(
            &leaf_hash(&entry.hash),
            proof.leaf_index,
            proof.tree_size,
            &path,
            &signed.checkpoint.root_hash,
        )
        .unwrap();
    }

    let consistency = client
        .get_consistency_proof(req(
            pb::GetConsistencyProofRequest {
                first_tree_size: 4,
                second_tree_size: 8,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let first = checkpoint_from_proto(consistency.first.as_ref().unwrap()).unwrap();
    let second = checkpoint_from_proto(consistency.second.as_ref().unwrap()).unwrap();
    first.verify(&key).unwrap();
    second.verify(&key).unwrap();
    let proof: Vec<Hash> = consistency
        .proof
        .iter()
        .map(|h| h.as_slice().try_into().unwrap())
        .collect();
    verify_consistency(
        4,
        8,
        &first.checkpoint.root_hash,
        &second.checkpoint.root_hash,
        &proof,
    )
    .unwrap();

    // Another team's checkpoint does not exist for this caller; bad arguments are refused.
    let stranger = api.token(&team("other"), Role::Owner);
    let status = client
        .get_checkpoint(req(pb::GetCheckpointRequest { tree_size: 8 }, &stranger))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .get_inclusion_proof(req(
            pb::GetInclusionProofRequest {
                leaf: Some(pb::get_inclusion_proof_request::Leaf::EntryHash(vec![1; 5])),
                tree_size: 0,
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = client
        .get_consistency_proof(req(
            pb::GetConsistencyProofRequest {
                first_tree_size: 8,
                second_tree_size: 4,
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // A stored entry changed behind the service's back (triggers bypassed): no proof is
    // served over it, and the failed check is counted.
    api.f.bypass_triggers().await;
    api.f
        .exec(&format!(
            "UPDATE audit_entries SET hash = prev_hash WHERE team_id = '{t}' AND seq = 2"
        ))
        .await
        .unwrap();
    let status = client
        .get_inclusion_proof(req(
            pb::GetInclusionProofRequest {
                leaf: Some(pb::get_inclusion_proof_request::Leaf::Seq(3)),
                tree_size: 8,
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    let failures = api
        .running
        .audit
        .metrics()
        .verification_failures
        .with_label_values(&["checkpoint_root"])
        .get();
    assert_eq!(failures, 1);
    tokio::time::sleep(Duration::from_millis(10)).await;
    api.stop().await;
}

async fn pages_of_large_entries_stop_below_the_message_limit(backend: Backend) {
    let f = Fixture::new(backend).await;
    let t = team("big");
    let blob = "x".repeat(15_000);
    for i in 0..230 {
        let mut e = event(&t, "exec.command", &format!("u{i}"));
        e.context_json = serde_json::json!({ "output_digest": blob }).to_string();
        f.publish(&e).await;
    }
    let api = Api::start(f).await;
    api.f.wait_for(&t, 230).await;
    let mut client = api.client().await;
    let token = api.token(&t, Role::Admin);
    let (mut seen, mut page_token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = client
            .query(req(
                pb::QueryAuditRequest {
                    filter: None,
                    page: Some(pb::PageRequest {
                        page_size: 500,
                        page_token: page_token.clone(),
                    }),
                    oldest_first: true,
                },
                &token,
            ))
            .await
            .expect("each page fits the client's 4 MiB limit")
            .into_inner();
        pages += 1;
        assert!(page.entries.len() < 230 || pages > 1);
        seen.extend(page.entries.iter().map(|e| e.seq));
        page_token = page.page.unwrap().next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    assert!(pages >= 2, "the first page was cut");
    assert_eq!(seen, (1..=230).collect::<Vec<u64>>());
    api.stop().await;
}
