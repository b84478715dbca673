//! The files are standard: the `age` command-line tool (Debian's `age`, installed by
//! `.ci/run`) decrypts a finished recording with the team's identity file, and what comes out
//! is the asciicast v2 file the session wrote, which `asciinema cat` (the asciinema player's
//! own parser, from PyPI, installed by `.ci/run`) replays to the same output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use tucdesk_recording::cast::{CastEvent, CastLimits, parse_cast};
use tucdesk_recording::keys::{generate_identity_file, load_or_create_identity};
use tucdesk_recording::{CastHeader, Spool, SpoolMeta};

#[test]
fn the_age_tool_decrypts_a_recording_into_a_valid_asciicast() {
    let dir = tempfile::tempdir().unwrap();
    let identity_file = dir.path().join("auditors.txt");
    let recipient = generate_identity_file(&identity_file).unwrap();
    let (spool_key, spool_recipient) =
        load_or_create_identity(&dir.path().join("spool.key")).unwrap();
    let meta = SpoolMeta {
        session_id: "0190a5c1-7e2b-7cc0-8000-0000000000aa".into(),
        agent_id: "A".repeat(43),
        team_id: "team-1".into(),
        operator_user_id: "user-1".into(),
        operator_display: "op@example.com".into(),
        kind: 1,
        started_at_ms: 1_700_000_000_000,
        recipients: vec![recipient],
    };
    let header = CastHeader {
        width: 80,
        height: 24,
        timestamp: 1_700_000_000,
        term: Some("xterm-256color".into()),
        shell: Some("/bin/sh".into()),
    };
    let mut spool =
        Spool::create(&dir.path().join("spool"), meta, &spool_recipient, &header).unwrap();
    spool
        .output(Duration::from_millis(10), b"$ echo hi\r\n")
        .unwrap();
    spool.resize(Duration::from_millis(500), 120, 40).unwrap();
    // A multi-byte character split across two reads of the PTY.
    spool
        .output(Duration::from_millis(900), b"hi \xe2\x82")
        .unwrap();
    spool
        .output(Duration::from_millis(901), b"\xac\r\n")
        .unwrap();
    let out = dir.path().join("session.cast.age");
    spool.finish(&spool_key, &out).unwrap();

    let decrypted = Command::new("age")
        .arg("--decrypt")
        .arg("--identity")
        .arg(&identity_file)
        .arg(&out)
        .output()
        .expect("the `age` tool is needed (apt-get install age; .ci/run installs it)");
    assert!(
        decrypted.status.success(),
        "age -d failed: {}",
        String::from_utf8_lossy(&decrypted.stderr)
    );
    let first_line = decrypted.stdout.split(|b| *b == b'\n').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(first_line).unwrap();
    assert_eq!(header["version"], 2);
    assert_eq!(header["width"], 80);
    let cast = parse_cast(decrypted.stdout.as_slice(), CastLimits::default()).unwrap();
    let output: String = cast
        .events
        .iter()
        .filter_map(|e| match e {
            CastEvent::Output { data, .. } => Some(data.as_str()),
            CastEvent::Resize { .. } => None,
        })
        .collect();
    assert_eq!(output, "$ echo hi\r\nhi €\r\n");
    assert!(cast.events.iter().any(|e| matches!(
        e,
        CastEvent::Resize {
            cols: 120,
            rows: 40,
            ..
        }
    )));
    let cast_file = dir.path().join("session.cast");
    std::fs::write(&cast_file, &decrypted.stdout).unwrap();
    let replayed = Command::new("asciinema")
        .arg("cat")
        .arg(&cast_file)
        .output()
        .expect("asciinema is needed (pip install asciinema; .ci/run installs it)");
    assert!(
        replayed.status.success(),
        "asciinema cat failed: {}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&replayed.stdout),
        "$ echo hi\r\nhi €\r\n"
    );
    // Nothing else decrypts it: the spool key is not a recipient of the final file.
    let spool_identity = dir.path().join("spool.key");
    let refused = Command::new("age")
        .args(["--decrypt", "--identity"])
        .arg(&spool_identity)
        .arg(&out)
        .output()
        .unwrap();
    assert!(!refused.status.success());
}
