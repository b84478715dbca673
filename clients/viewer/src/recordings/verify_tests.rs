#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The download verification path against recordings crafted with `tucdesk-recording`:
//! whatever is wrong, the error says what and no output file is left behind.

use super::*;
use crate::recordings::playback;
use tucdesk_proto::v1::get_recording_response::Kind;
use tucdesk_proto::v1::{GetRecordingResponse, SessionKind};
use tucdesk_recording::crypt::{encrypt_bytes, sha256};

const CAST: &str = "{\"version\": 2, \"width\": 80, \"height\": 24}\n\
                    [0.5, \"o\", \"hello\"]\n[1.0, \"o\", \" world\"]\n";
const SESSION: &str = "0b4f1a2c-3d4e-4f60-8a7b-9c0d1e2f3a4b";

struct Fixture {
    agent: tucdesk_crypto::Identity,
    auditor: age::x25519::Identity,
    ciphertext: Vec<u8>,
    signed: SignedRecordingManifest,
}

fn manifest_for(
    agent: &tucdesk_crypto::Identity,
    auditor: &age::x25519::Identity,
    ciphertext: &[u8],
) -> RecordingManifest {
    RecordingManifest {
        format_version: 1,
        session_id: SESSION.into(),
        agent_id: agent.agent_id(),
        team_id: "team-1".into(),
        operator_user_id: "user-1".into(),
        operator_display: "Ann".into(),
        kind: SessionKind::Shell as i32,
        started_at_ms: 1_700_000_000_000,
        ended_at_ms: 1_700_000_001_000,
        plaintext_size: CAST.len() as u64,
        plaintext_sha256: sha256(CAST.as_bytes()).to_vec(),
        ciphertext_size: ciphertext.len() as u64,
        ciphertext_sha256: sha256(ciphertext).to_vec(),
        age_recipients: vec![auditor.to_public().to_string()],
        cast_format: "asciinema-v2".into(),
        agent_version: "test".into(),
    }
}

fn fixture() -> Fixture {
    let agent = tucdesk_crypto::Identity::generate().unwrap();
    let auditor = age::x25519::Identity::generate();
    let ciphertext = encrypt_bytes(&[auditor.to_public()], CAST.as_bytes()).unwrap();
    let manifest = manifest_for(&agent, &auditor, &ciphertext);
    let signed = tucdesk_recording::manifest::sign_manifest(&agent, &manifest).unwrap();
    Fixture {
        agent,
        auditor,
        ciphertext,
        signed,
    }
}

fn info(agent_id: &str, signed: &SignedRecordingManifest) -> GetRecordingResponse {
    GetRecordingResponse {
        kind: Some(Kind::Info(RecordingInfo {
            session_id: SESSION.into(),
            agent_id: agent_id.to_owned(),
            signed_manifest: Some(signed.clone()),
            ..Default::default()
        })),
    }
}

fn stream(f: &Fixture, ciphertext: &[u8]) -> Vec<GetRecordingResponse> {
    let mut messages = vec![info(&f.agent.agent_id(), &f.signed)];
    messages.extend(ciphertext.chunks(100).map(|c| GetRecordingResponse {
        kind: Some(Kind::Chunk(c.to_vec())),
    }));
    messages
}

fn receive<W: Write>(
    session: &str,
    messages: Vec<GetRecordingResponse>,
    out: W,
) -> Result<Received<W>, VerifyError> {
    let mut receiver = Receiver::new(session, out);
    for message in messages {
        receiver.accept(message)?;
    }
    receiver.finish()
}

/// The whole `export` path after the network: download into an anonymous temporary file in
/// the output's directory, verify, decrypt into place.
fn export_flow(
    dir: &Path,
    messages: Vec<GetRecordingResponse>,
    identity: &age::x25519::Identity,
    force: bool,
) -> Result<(), VerifyError> {
    let ciphertext = tempfile::tempfile_in(dir).unwrap();
    let received = receive(SESSION, messages, ciphertext)?;
    export_plain(
        received,
        std::slice::from_ref(identity),
        Path::new("auditors.key"),
        &dir.join("rec.cast"),
        force,
    )
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_verified_download_is_decrypted_into_place_and_nothing_else_is_left() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    export_flow(dir.path(), stream(&f, &f.ciphertext), &f.auditor, false).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("rec.cast")).unwrap(),
        CAST
    );
    assert_eq!(files_in(dir.path()), ["rec.cast"]);
}

#[test]
fn a_tampered_or_foreign_manifest_is_refused_before_any_byte() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let agent_id = f.agent.agent_id();

    let mut tampered = f.signed.clone();
    let last = tampered.manifest.len() - 1;
    tampered.manifest[last] ^= 1;
    let err = export_flow(
        dir.path(),
        vec![info(&agent_id, &tampered)],
        &f.auditor,
        false,
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::Manifest { .. }), "{err}");

    let mut bad_signature = f.signed.clone();
    bad_signature.signature[0] ^= 1;
    let err = export_flow(
        dir.path(),
        vec![info(&agent_id, &bad_signature)],
        &f.auditor,
        false,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("signature does not verify"),
        "{err}"
    );

    // The recorder names another agent than the one that signed.
    let other = tucdesk_crypto::Identity::generate().unwrap().agent_id();
    let err =
        export_flow(dir.path(), vec![info(&other, &f.signed)], &f.auditor, false).unwrap_err();
    assert!(err.to_string().contains("another agent"), "{err}");

    // A manifest re-signed by an impostor for the real agent id.
    let impostor = tucdesk_crypto::Identity::generate().unwrap();
    let mut forged = tucdesk_recording::manifest::decode_manifest(&f.signed).unwrap();
    forged.agent_id = impostor.agent_id();
    let forged = tucdesk_recording::manifest::sign_manifest(&impostor, &forged).unwrap();
    let err = export_flow(
        dir.path(),
        vec![info(&agent_id, &forged)],
        &f.auditor,
        false,
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::Manifest { .. }), "{err}");

    let mut no_manifest = info(&agent_id, &f.signed);
    if let Some(Kind::Info(i)) = &mut no_manifest.kind {
        i.signed_manifest = None;
    }
    let err = export_flow(dir.path(), vec![no_manifest], &f.auditor, false).unwrap_err();
    assert!(matches!(err, VerifyError::NoManifest), "{err}");
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn tampered_truncated_or_extended_ciphertext_is_refused_and_no_output_is_written() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();

    let mut flipped = f.ciphertext.clone();
    flipped[f.ciphertext.len() / 2] ^= 0x40;
    let err = export_flow(dir.path(), stream(&f, &flipped), &f.auditor, false).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Mismatch {
                what: "ciphertext",
                hash_state: "differs",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("nothing was written"));

    let truncated = &f.ciphertext[..f.ciphertext.len() - 1];
    let err = export_flow(dir.path(), stream(&f, truncated), &f.auditor, false).unwrap_err();
    assert!(matches!(err, VerifyError::Mismatch { .. }), "{err}");

    let mut extended = f.ciphertext.clone();
    extended.push(0);
    let err = export_flow(dir.path(), stream(&f, &extended), &f.auditor, false).unwrap_err();
    assert!(matches!(err, VerifyError::TooLong { .. }), "{err}");
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn a_wrong_identity_is_a_clear_error_and_leaves_no_file() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let stranger = age::x25519::Identity::generate();
    let err = export_flow(dir.path(), stream(&f, &f.ciphertext), &stranger, false).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("holds no identity"), "{text}");
    assert!(text.contains(&f.auditor.to_public().to_string()), "{text}");
    assert!(!text.contains("AGE-SECRET-KEY"), "{text}");
    assert!(files_in(dir.path()).is_empty());

    // The agent signed a manifest naming the auditor, but the file is for someone else: the
    // decryption fails and its partial output is removed.
    let ciphertext = encrypt_bytes(&[stranger.to_public()], CAST.as_bytes()).unwrap();
    let manifest = manifest_for(&f.agent, &f.auditor, &ciphertext);
    let signed = tucdesk_recording::manifest::sign_manifest(&f.agent, &manifest).unwrap();
    let g = Fixture {
        signed,
        ciphertext: ciphertext.clone(),
        ..fixture()
    };
    let mut messages = vec![info(&f.agent.agent_id(), &g.signed)];
    messages.extend(ciphertext.chunks(100).map(|c| GetRecordingResponse {
        kind: Some(Kind::Chunk(c.to_vec())),
    }));
    let err = export_flow(dir.path(), messages, &f.auditor, false).unwrap_err();
    assert!(err.to_string().contains("decryption failed"), "{err}");
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn only_the_session_asked_for_with_info_first_and_once_is_accepted() {
    let f = fixture();
    let other = "1b4f1a2c-3d4e-4f60-8a7b-9c0d1e2f3a4b";
    let err = receive(other, stream(&f, &f.ciphertext), Vec::new()).unwrap_err();
    assert!(matches!(err, VerifyError::WrongSession { .. }), "{err}");

    let mut chunk_first = stream(&f, &f.ciphertext);
    chunk_first.swap(0, 1);
    let err = receive(SESSION, chunk_first, Vec::new()).unwrap_err();
    assert!(matches!(err, VerifyError::NoInfo), "{err}");

    let mut twice = stream(&f, &f.ciphertext);
    twice.push(info(&f.agent.agent_id(), &f.signed));
    let err = receive(SESSION, twice, Vec::new()).unwrap_err();
    assert!(matches!(err, VerifyError::InfoTwice), "{err}");

    let err = receive(SESSION, Vec::new(), Vec::new()).unwrap_err();
    assert!(matches!(err, VerifyError::NoInfo), "{err}");
}

#[test]
fn an_existing_output_is_kept_unless_forced() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("rec.cast");
    std::fs::write(&output, "old").unwrap();
    let err = export_flow(dir.path(), stream(&f, &f.ciphertext), &f.auditor, false).unwrap_err();
    assert!(matches!(err, VerifyError::Exists(_)), "{err}");
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "old");
    assert_eq!(files_in(dir.path()), ["rec.cast"]);
    export_flow(dir.path(), stream(&f, &f.ciphertext), &f.auditor, true).unwrap();
    assert_eq!(std::fs::read_to_string(&output).unwrap(), CAST);
    assert_eq!(files_in(dir.path()), ["rec.cast"]);
}

#[test]
fn a_pin_to_another_key_is_refused_naming_both_fingerprints() {
    let f = fixture();
    let agent_id = f.agent.agent_id();
    let pinned = tucdesk_crypto::Identity::generate().unwrap().agent_id();
    let err = check_pin(
        &PinCheck::Changed {
            pinned: pinned.clone(),
        },
        "web-1",
        &agent_id,
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&fingerprint(&pinned)), "{text}");
    assert!(text.contains(&fingerprint(&agent_id)), "{text}");
    assert!(check_pin(&PinCheck::Match, "web-1", &agent_id).unwrap());
    assert!(!check_pin(&PinCheck::Unknown, "web-1", &agent_id).unwrap());
}

#[test]
fn an_encrypted_export_keeps_the_age_file_and_manifest_which_verify_and_play_locally() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("rec.cast.age");
    let tmp = temp_beside(&output).unwrap();
    let received = receive(SESSION, stream(&f, &f.ciphertext), tmp).unwrap();
    let manifest_file = export_encrypted(received, &output, false).unwrap();
    assert_eq!(manifest_file, dir.path().join("rec.manifest.pb"));
    assert_eq!(files_in(dir.path()), ["rec.cast.age", "rec.manifest.pb"]);
    assert_eq!(std::fs::read(&output).unwrap(), f.ciphertext);

    let (manifest, file) = verify_local(&output).unwrap();
    assert_eq!(manifest.session_id, SESSION);
    check_identities(std::slice::from_ref(&f.auditor), &manifest, Path::new("k")).unwrap();
    let mut screen = Vec::new();
    let mut waits = Vec::new();
    let options = playback::options(2.0, None).unwrap();
    let stats = playback::play_encrypted(
        std::io::BufReader::new(file),
        std::slice::from_ref(&f.auditor),
        options,
        &mut screen,
        &mut |d| waits.push(d),
    )
    .unwrap();
    assert_eq!(String::from_utf8(screen).unwrap(), "hello world");
    assert_eq!(stats.events, 2);
    assert_eq!(waits.len(), 2);

    // Exporting again does not replace either file.
    let tmp = temp_beside(&output).unwrap();
    let received = receive(SESSION, stream(&f, &f.ciphertext), tmp).unwrap();
    assert!(matches!(
        export_encrypted(received, &output, false),
        Err(VerifyError::Exists(_))
    ));
    assert_eq!(files_in(dir.path()), ["rec.cast.age", "rec.manifest.pb"]);

    // A tampered local copy is refused.
    let mut bytes = f.ciphertext.clone();
    bytes[10] ^= 1;
    std::fs::write(&output, bytes).unwrap();
    assert!(matches!(
        verify_local(&output),
        Err(VerifyError::Mismatch { .. })
    ));
}

#[test]
fn a_damaged_cast_stops_playback_with_its_line() {
    let mut screen = Vec::new();
    let cast = "{\"version\": 2, \"width\": 80, \"height\": 24}\n[0.1, \"o\", \"a\"]\n[0.0, \"o\", \"b\"]\n";
    let err = playback::play_cast(
        cast.as_bytes(),
        playback::options(1.0, Some(1.0)).unwrap(),
        &mut screen,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains('3'), "{err}");
    assert_eq!(screen, b"a");
}

#[test]
fn manifest_paths_and_playback_options() {
    assert_eq!(
        manifest_path(Path::new("/a/b.cast.age")),
        Path::new("/a/b.manifest.pb")
    );
    assert_eq!(
        manifest_path(Path::new("x.age")),
        Path::new("x.manifest.pb")
    );
    assert!(playback::options(0.0, None).is_err());
    assert!(playback::options(f64::NAN, None).is_err());
    assert!(playback::options(1.0, Some(-1.0)).is_err());
    assert_eq!(
        playback::options(1.5, Some(2.0)).unwrap().max_idle,
        Some(std::time::Duration::from_secs(2))
    );
}
