//! Team recording settings through the API (admins with a device proof, compare-and-swap,
//! recipients checked, audited) and what session offers carry from them: the mode, the
//! recipients and the recorder's address; a team that requires recording without a
//! recipient gets no session at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Fixture, WAIT, accepted, shell};
use tucdesk_proto::v1::{
    GetRecordingSettingsRequest, PutRecordingSettingsRequest, RecordingMode, RecordingRecipient,
    RejectReason, Role,
};
use tucdesk_rendezvous::recording_api;
use tucdesk_testkit::{Backend, Operator, on_both_backends, reason};

/// Public age recipients (no identity is needed by these tests).
const ALICE: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
const RECORDER: &str = "https://recorder.example.test:7440";

fn put(
    who: &Operator,
    mode: RecordingMode,
    recipients: &[&str],
    expected_version: u64,
    proof: bool,
) -> tonic::Request<PutRecordingSettingsRequest> {
    let list: Vec<String> = recipients.iter().map(|r| (*r).to_owned()).collect();
    let labels: Vec<String> = recipients
        .iter()
        .map(|_| "security team".to_owned())
        .collect();
    let binding = recording_api::put_binding(expected_version, mode as i32, &list, &labels);
    let proof = proof.then(|| {
        who.proof(
            recording_api::PUT_METHOD,
            recording_api::PUT_TARGET,
            &binding,
        )
        .unwrap()
    });
    who.request(PutRecordingSettingsRequest {
        mode: mode as i32,
        recipients: list
            .into_iter()
            .zip(labels)
            .map(|(recipient, label)| RecordingRecipient { recipient, label })
            .collect(),
        expected_version,
        proof,
    })
    .unwrap()
}

async fn admins_manage_the_settings_with_a_proof_and_every_change_is_audited(backend: Backend) {
    let f = Fixture::new(backend).await;
    let mut client = f.rdv.operator_client();
    let current = client
        .get_recording_settings(f.owner.request(GetRecordingSettingsRequest {}).unwrap())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (current.mode, current.version),
        (RecordingMode::Off as i32, 0)
    );
    assert!(current.recipients.is_empty());

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
        .put_recording_settings(put(&operator, RecordingMode::On, &[ALICE], 0, true))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let status = client
        .put_recording_settings(put(&f.owner, RecordingMode::On, &[ALICE], 0, false))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::ProofInvalid);
    // Checked before anything else: a typo, a pasted secret key, required with nobody to
    // encrypt to.
    let typo = ALICE.replace("ql3z", "ql3y");
    for (mode, recipients) in [
        (RecordingMode::On, vec![typo.as_str()]),
        (
            RecordingMode::On,
            vec!["AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"],
        ),
        (RecordingMode::Required, vec![]),
    ] {
        let status = client
            .put_recording_settings(put(&f.owner, mode, &recipients, 0, true))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }

    let saved = client
        .put_recording_settings(put(&f.owner, RecordingMode::Required, &[ALICE], 0, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(saved.version, 1);
    assert_eq!(saved.recipients[0].recipient, ALICE);
    assert_eq!(saved.recipients[0].label, "security team");
    let status = client
        .put_recording_settings(put(&f.owner, RecordingMode::Off, &[], 0, true))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::VersionConflict);

    // Operators see whether they are recorded.
    let seen = client
        .get_recording_settings(operator.request(GetRecordingSettingsRequest {}).unwrap())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.mode, RecordingMode::Required as i32);
    assert_eq!(seen.updated_by, f.owner.user_id);

    let updates: Vec<_> = f
        .audit()
        .await
        .into_iter()
        .filter(|e| e.action == "recording.settings.updated")
        .collect();
    assert_eq!(updates.len(), 1);
    let context: serde_json::Value = serde_json::from_str(&updates[0].context_json).unwrap();
    assert_eq!(context["mode"], "required");
    assert_eq!(context["previous_mode"], "off");
    assert_eq!(context["recipients_added"], serde_json::json!([ALICE]));
    f.cleanup().await;
}

async fn offers_carry_the_teams_recording_settings(backend: Backend) {
    let f = Fixture::with(backend, |config| {
        config.recorder_url = Some(RECORDER.into())
    })
    .await;
    let (agent, mut conn) = f.connected("rec-1", &[]).await;

    // Nothing configured: the agent is told not to record.
    let ask = shell(&f.owner, &agent);
    let call = common::spawn_session(&f, &f.owner, ask.request.clone());
    let offer = conn.next_offer(WAIT).await.expect("no offer");
    let recording = offer.recording.clone().unwrap();
    assert_eq!(recording.mode, RecordingMode::Off as i32);
    conn.accept(&agent.identity, &offer).await.unwrap();
    let first = accepted(call.await.unwrap().unwrap().into_inner());
    assert_eq!(first.recording, RecordingMode::Off as i32);

    f.rdv
        .operator_client()
        .put_recording_settings(put(&f.owner, RecordingMode::On, &[ALICE], 0, true))
        .await
        .unwrap();
    let ask = shell(&f.owner, &agent);
    let call = common::spawn_session(&f, &f.owner, ask.request.clone());
    let offer = conn.next_offer(WAIT).await.expect("no offer");
    let recording = offer.recording.clone().unwrap();
    assert_eq!(recording.mode, RecordingMode::On as i32);
    assert_eq!(recording.age_recipients, vec![ALICE.to_owned()]);
    assert_eq!(recording.recorder_url, RECORDER);
    conn.accept(&agent.identity, &offer).await.unwrap();
    let second = accepted(call.await.unwrap().unwrap().into_inner());
    assert_eq!(second.recording, RecordingMode::On as i32);
    f.cleanup().await;
}

async fn required_recording_without_a_recipient_refuses_sessions_before_any_offer(
    backend: Backend,
) {
    let f = Fixture::new(backend).await;
    let (agent, mut conn) = f.connected("rec-2", &[]).await;
    // The API never saves this; a row written behind it (a restore, a manual edit) must
    // still fail closed.
    tucdesk_svc::on_pool!(&f.dep.db, |pool| {
        sqlx::query(
            "INSERT INTO recording_settings \
             (team_id, version, mode, recipients_json, updated_at_ms, updated_by) \
             VALUES ($1, 1, $2, '[]', 0, 'restore')",
        )
        .bind(&f.owner.team_id)
        .bind(RecordingMode::Required as i32)
        .execute(pool)
        .await
        .unwrap()
        .rows_affected()
    });
    let ask = shell(&f.owner, &agent);
    let status = f
        .rdv
        .operator_client()
        .create_session(f.owner.request(ask.request.clone()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(reason(&status), RejectReason::RecordingUnavailable);
    assert!(
        status.message().contains("recording recipient"),
        "{}",
        status.message()
    );
    assert!(
        conn.next_offer(std::time::Duration::from_millis(500))
            .await
            .is_none()
    );
    f.cleanup().await;
}

on_both_backends!(
    admins_manage_the_settings_with_a_proof_and_every_change_is_audited,
    offers_carry_the_teams_recording_settings,
    required_recording_without_a_recipient_refuses_sessions_before_any_offer,
);
