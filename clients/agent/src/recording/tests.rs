#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use prost::Message as _;
use tucdesk_proto::v1::TerminalSize;

fn config(mode: RecordingMode, recipients: Vec<String>) -> RecordingConfig {
    RecordingConfig {
        mode: mode as i32,
        age_recipients: recipients,
        recorder_url: "http://127.0.0.1:7440".into(),
    }
}

fn recipient() -> String {
    age::x25519::Identity::generate().to_public().to_string()
}

fn verified(session_id: &str) -> SessionFacts {
    SessionFacts {
        session_id: session_id.to_owned(),
        kind: SessionKind::Shell,
        operator_user_id: "user-1".into(),
        operator_display: "op@example.com".into(),
        initial_size: Some(TerminalSize {
            cols: 100,
            rows: 30,
        }),
    }
}

fn session_id() -> String {
    "0b6f0d3e-3c2a-4d7e-9a54-1f3c2b1a0e99".to_owned()
}

#[test]
fn only_shells_with_recording_on_or_required_are_recorded() {
    let on = config(RecordingMode::On, vec![recipient()]);
    let required = config(RecordingMode::Required, vec![recipient()]);
    let off = config(RecordingMode::Off, vec![recipient()]);
    assert_eq!(wanted(Some(&on), SessionKind::Shell), Want::On);
    assert_eq!(wanted(Some(&required), SessionKind::Shell), Want::Required);
    assert_eq!(wanted(Some(&off), SessionKind::Shell), Want::Off);
    assert_eq!(wanted(None, SessionKind::Shell), Want::Off);
    assert_eq!(wanted(Some(&required), SessionKind::Exec), Want::Off);
    let unknown = RecordingConfig {
        mode: 99,
        ..on.clone()
    };
    assert_eq!(wanted(Some(&unknown), SessionKind::Shell), Want::Off);
}

#[test]
fn a_recording_that_cannot_be_made_refuses_required_and_skips_on() {
    // Off never even looks.
    let decided = decide(Want::Off, || -> Result<(), String> {
        panic!("readiness is not checked when recording is off")
    });
    assert!(matches!(decided, Ok(None)));
    // Ready: recorded either way.
    assert!(matches!(decide(Want::On, || Ok(7)), Ok(Some(7))));
    assert!(matches!(decide(Want::Required, || Ok(7)), Ok(Some(7))));
    // Not ready: ON goes on unrecorded, REQUIRED refuses with RECORDING_UNAVAILABLE.
    assert!(matches!(
        decide(Want::On, || Err::<(), _>("disk full".into())),
        Ok(None)
    ));
    let refusal = decide(Want::Required, || Err::<(), _>("disk full".into())).unwrap_err();
    assert_eq!(refusal.reason, RejectReason::RecordingUnavailable);
    assert!(refusal.message.contains("disk full"), "{}", refusal.message);
}

#[test]
fn a_recording_lost_mid_session_ends_only_required_sessions() {
    assert!(on_lost(false).is_ok());
    assert!(on_lost(true).unwrap_err().contains("requires recording"));
}

fn start(dir: &std::path::Path, cfg: &RecordingConfig) -> Result<ActiveRecording, String> {
    let recordings = Recordings::new(dir.to_path_buf(), None);
    let identity = Arc::new(Identity::generate().unwrap());
    start_spool(
        &recordings,
        &identity,
        "team-1",
        cfg,
        &verified(&session_id()),
    )
}

#[test]
fn recipients_outside_one_to_sixteen_or_malformed_are_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        vec![],
        vec!["age1nope".to_owned()],
        (0..17).map(|_| recipient()).collect(),
    ] {
        let err = start(dir.path(), &config(RecordingMode::Required, bad)).unwrap_err();
        assert!(err.contains("recipients"), "{err}");
    }
    let mut cfg = config(RecordingMode::Required, vec![recipient()]);
    cfg.recorder_url.clear();
    assert!(start(dir.path(), &cfg).unwrap_err().contains("recorder"));
    // Nothing was left behind by the refusals.
    assert!(!dir.path().join(SPOOL_DIR).join(session_id()).exists());
}

#[test]
fn a_spool_that_cannot_be_created_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(SPOOL_DIR),
        b"a file where the spool should be",
    )
    .unwrap();
    let err = start(
        dir.path(),
        &config(RecordingMode::Required, vec![recipient()]),
    )
    .unwrap_err();
    assert!(err.contains("spool"), "{err}");
    let recordings = Recordings::new(dir.path().to_path_buf(), None);
    assert_eq!(
        upload::outbox_usage(&recordings.outbox_dir()).unwrap().0,
        0,
        "no ticket for a recording that never started"
    );
}

#[tokio::test]
async fn a_recorded_session_ends_in_the_outbox_with_a_signed_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let recordings = Recordings::new(dir.path().to_path_buf(), None);
    let identity = Arc::new(Identity::generate().unwrap());
    let team = age::x25519::Identity::generate();
    let cfg = config(RecordingMode::On, vec![team.to_public().to_string()]);
    let active = start_spool(
        &recordings,
        &identity,
        "team-1",
        &cfg,
        &verified(&session_id()),
    )
    .unwrap();
    let (running, mut recorder) = active.start();
    recorder.output(b"hello \xe2\x82").await.unwrap();
    recorder.output(b"\xac marker\r\n").await.unwrap();
    recorder.resize(120, 40).await.unwrap();
    drop(recorder);
    assert!(running.finish().await);

    let outbox = recordings.outbox_dir();
    let cast = std::fs::read(upload::cast_path(&outbox, &session_id())).unwrap();
    let parsed = tucdesk_recording::read_cast(
        cast.as_slice(),
        std::slice::from_ref(&team),
        Default::default(),
    )
    .unwrap();
    assert_eq!((parsed.header.width, parsed.header.height), (100, 30));
    let text: String = parsed
        .events
        .iter()
        .filter_map(|e| match e {
            tucdesk_recording::CastEvent::Output { data, .. } => Some(data.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "hello € marker\r\n");
    assert!(parsed.events.iter().any(|e| matches!(
        e,
        tucdesk_recording::CastEvent::Resize {
            cols: 120,
            rows: 40,
            ..
        }
    )));
    // The spool is gone; the outbox holds recording, manifest and ticket.
    assert!(
        tucdesk_recording::spool::list_spools(&recordings.spool_dir())
            .unwrap()
            .is_empty()
    );
    let signed = tucdesk_proto::v1::SignedRecordingManifest::decode(
        std::fs::read(outbox.join(format!("{}.manifest.pb", session_id())))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let manifest =
        tucdesk_recording::manifest::verify_manifest(&signed, &identity.public_key()).unwrap();
    assert_eq!(manifest.ciphertext_size, cast.len() as u64);
    assert_eq!(manifest.team_id, "team-1");
    assert_eq!(upload::outbox_usage(&outbox).unwrap().0, 1);
}

#[tokio::test]
async fn a_spool_left_by_a_crash_is_recovered_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let recordings = Recordings::new(dir.path().to_path_buf(), None);
    let identity = Arc::new(Identity::generate().unwrap());
    let team = age::x25519::Identity::generate();
    let cfg = config(RecordingMode::On, vec![team.to_public().to_string()]);
    let active = start_spool(
        &recordings,
        &identity,
        "team-1",
        &cfg,
        &verified(&session_id()),
    )
    .unwrap();
    // The agent dies with the spool open (only sealed segments count).
    drop(active);
    upload::recover(&recordings, &identity);
    let outbox = recordings.outbox_dir();
    assert!(upload::cast_path(&outbox, &session_id()).is_file());
    assert!(
        outbox
            .join(format!("{}.manifest.pb", session_id()))
            .is_file()
    );
    assert!(
        tucdesk_recording::spool::list_spools(&recordings.spool_dir())
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_session_that_never_ran_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let recordings = Recordings::new(dir.path().to_path_buf(), None);
    let identity = Arc::new(Identity::generate().unwrap());
    let cfg = config(RecordingMode::On, vec![recipient()]);
    let active = start_spool(
        &recordings,
        &identity,
        "team-1",
        &cfg,
        &verified(&session_id()),
    )
    .unwrap();
    active.discard().await;
    assert!(
        tucdesk_recording::spool::list_spools(&recordings.spool_dir())
            .unwrap()
            .is_empty()
    );
    assert_eq!(upload::outbox_usage(&recordings.outbox_dir()).unwrap().0, 0);
}
