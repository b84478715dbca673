//! Session recordings end to end (SPEC §7): the real `tucdesk-agent` records a shell the team
//! asked to record, encrypts it to the team's recipient, signs its manifest and uploads it
//! through the recorder (in-process, local-directory store), which serves it back to the owner;
//! uploads wait for a recorder that is down; a team that requires recording gets no session
//! a host cannot record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Stack, WAIT};
use tucdesk_proto::v1::{
    Frame, GetRecordingRequest, Input, ListRecordingsRequest, RecordingMode, Resize, SessionKind,
    frame, get_recording_response,
};
use tucdesk_recording::CastEvent;
use tucdesk_testkit::{Backend, eventually, on_both_backends};
use tucdesk_viewer::config::{ConfigDir, KNOWN_AGENTS_FILE};
use tucdesk_viewer::open::{OpenError, Opened, SessionSpec, open};
use tucdesk_viewer::pins::KnownAgents;

/// Uploads retry with backoff; give them longer than a single session step.
const UPLOAD_WAIT: Duration = Duration::from_secs(90);
/// What the shell prints (computed by the shell, so typing it is not enough to match).
const MARKER: &str = "recorded-42";

/// A team recipient whose identity the test holds.
struct TeamKey {
    dir: tempfile::TempDir,
    recipient: String,
}

impl TeamKey {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let recipient =
            tucdesk_recording::keys::generate_identity_file(&dir.path().join("team.key")).unwrap();
        Self { dir, recipient }
    }

    fn identities(&self) -> Vec<age::x25519::Identity> {
        tucdesk_recording::keys::load_identity_file(&self.dir.path().join("team.key")).unwrap()
    }
}

async fn open_shell(
    stack: &Stack,
    viewer: &common::Viewer,
    agent: &str,
) -> Result<Opened, OpenError> {
    let config = ConfigDir::new(viewer.config_dir());
    let mut api = tucdesk_viewer::api::Api::open(&config).unwrap();
    let pins = KnownAgents::new(config.path(KNOWN_AGENTS_FILE));
    let spec = SessionSpec {
        agent: agent.into(),
        kind: SessionKind::Shell,
        exec: None,
        reason: "e2e recording".into(),
        accept_new: true,
        initial_size: Some(tucdesk_proto::v1::TerminalSize { cols: 90, rows: 20 }),
        dial: Default::default(),
        path: tucdesk_proto::v1::Path::Unspecified,
        p2p: tucdesk_p2p::P2pOptions {
            udp_addrs: vec![common::LOOPBACK_ICE.parse().unwrap()],
            ..Default::default()
        },
    };
    let _ = stack;
    open(&mut api, &pins, &spec, |_| false, |_| {}).await
}

/// Runs a shell that prints the marker, resizes, and exits; returns the session id.
async fn run_recorded_shell(stack: &Stack, viewer: &common::Viewer, agent: &str) -> String {
    let mut opened = open_shell(stack, viewer, agent).await.unwrap();
    let channel = &mut opened.channel;
    let input = |text: &str| Frame {
        kind: Some(frame::Kind::Input(Input {
            data: text.as_bytes().to_vec(),
        })),
    };
    channel
        .sender
        .send(&input("echo recorded-$((40+2))\n"))
        .await
        .unwrap();
    let mut screen = Vec::new();
    let mut resized = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = String::from_utf8_lossy(&screen).into_owned();
        if !resized && text.contains(MARKER) {
            resized = true;
            channel
                .sender
                .send(&Frame {
                    kind: Some(frame::Kind::Resize(Resize {
                        cols: 132,
                        rows: 43,
                    })),
                })
                .await
                .unwrap();
            channel.sender.send(&input("stty size\n")).await.unwrap();
        }
        if resized && text.contains("43 132") {
            channel.sender.send(&input("exit 0\n")).await.unwrap();
        }
        let frame = tokio::time::timeout_at(deadline, channel.receiver.recv())
            .await
            .unwrap_or_else(|_| panic!("the shell never finished:\n{text}"))
            .unwrap();
        match frame.and_then(|f| f.kind) {
            Some(frame::Kind::Output(output)) => screen.extend_from_slice(&output.data),
            Some(frame::Kind::Exit(exit)) => {
                assert_eq!(exit.exit_code, Some(0));
                break;
            }
            Some(_) => {}
            None => panic!("the session ended early"),
        }
    }
    opened.session_id
}

fn bearer<T>(stack: &Stack, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", stack.owner.access_token)
            .parse()
            .unwrap(),
    );
    request
}

async fn listed(stack: &Stack, session_id: &str) -> bool {
    let mut client = stack.recorder_client().await;
    match client
        .list(bearer(stack, ListRecordingsRequest::default()))
        .await
    {
        Ok(list) => list
            .into_inner()
            .recordings
            .iter()
            .any(|r| r.session_id == session_id),
        Err(_) => false,
    }
}

/// Downloads the recording as the owner, checks the manifest against the agent's key and the
/// object key's tenant and date prefix, decrypts it with the team key and checks the content.
async fn check_recording(stack: &Stack, agent: &common::Agent, key: &TeamKey, session_id: &str) {
    let mut client = stack.recorder_client().await;
    let mut stream = client
        .get(bearer(
            stack,
            GetRecordingRequest {
                session_id: session_id.to_owned(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut info = None;
    let mut ciphertext = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        match message.kind {
            Some(get_recording_response::Kind::Info(i)) => info = Some(i),
            Some(get_recording_response::Kind::Chunk(chunk)) => ciphertext.extend(chunk),
            None => {}
        }
    }
    let info = info.expect("the recording's info");
    let (_, agent_identity) = tucdesk_agent::StateDir::new(agent.state_dir())
        .load()
        .unwrap();
    let manifest = tucdesk_recording::manifest::verify_manifest(
        info.signed_manifest.as_ref().unwrap(),
        &agent_identity.public_key(),
    )
    .unwrap();
    assert_eq!(manifest.session_id, session_id);
    assert_eq!(manifest.team_id, stack.owner.team_id);
    assert_eq!(manifest.operator_user_id, stack.owner.user_id);
    assert_eq!(manifest.ciphertext_size, ciphertext.len() as u64);
    assert_eq!(
        manifest.ciphertext_sha256,
        tucdesk_recording::crypt::sha256(&ciphertext).to_vec()
    );
    assert_eq!(manifest.age_recipients, vec![key.recipient.clone()]);
    let (y, m, d, ..) = tucdesk_recording::keys::utc_datetime(manifest.started_at_ms / 1000);
    let prefix = format!(
        "tenants/{}/recordings/{y:04}/{m:02}/{d:02}/",
        stack.owner.team_id
    );
    assert_eq!(info.object_key, format!("{prefix}{session_id}.cast.age"));

    let cast =
        tucdesk_recording::read_cast(ciphertext.as_slice(), &key.identities(), Default::default())
            .unwrap();
    assert_eq!((cast.header.width, cast.header.height), (90, 20));
    let output: String = cast
        .events
        .iter()
        .filter_map(|e| match e {
            CastEvent::Output { data, .. } => Some(data.as_str()),
            CastEvent::Resize { .. } => None,
        })
        .collect();
    assert!(
        output.contains(MARKER),
        "the cast lacks the marker:\n{output}"
    );
    assert!(output.contains("43 132"), "{output}");
    assert!(
        cast.events.iter().any(|e| matches!(
            e,
            CastEvent::Resize {
                cols: 132,
                rows: 43,
                ..
            }
        )),
        "no resize event in the cast"
    );
}

/// Nothing is left in the agent's outbox once the recorder has the recording.
fn outbox_is_empty(agent: &common::Agent) -> bool {
    let outbox = agent.state_dir().join("recordings/outbox");
    std::fs::read_dir(outbox).map_or(true, |entries| entries.count() == 0)
}

async fn a_recorded_shell_is_uploaded_and_decrypts_with_the_team_key(backend: Backend) {
    let mut stack = Stack::start(backend).await;
    stack.start_recorder().await;
    let key = TeamKey::new();
    stack
        .set_recording(RecordingMode::On, std::slice::from_ref(&key.recipient))
        .await;
    let viewer = stack.viewer(&stack.owner_email).await;
    let agent = stack.agent(&viewer, "rec-host", &[]).await;
    let session_id = run_recorded_shell(&stack, &viewer, "rec-host").await;
    assert!(
        eventually(UPLOAD_WAIT, || listed(&stack, &session_id)).await,
        "the recording never reached the recorder; the agent's log:\n{}",
        agent.log()
    );
    check_recording(&stack, &agent, &key, &session_id).await;
    assert!(
        eventually(WAIT, || async { outbox_is_empty(&agent) }).await,
        "the agent kept an uploaded recording"
    );
    // The log says what happened, never what was typed or shown.
    let log = agent.log();
    assert!(log.contains("session recording uploaded"), "{log}");
    assert!(!log.contains(MARKER), "{log}");
    drop(agent);
    stack.stop().await;
}

async fn a_recording_waits_for_a_recorder_that_is_down(backend: Backend) {
    let mut stack = Stack::start(backend).await;
    let key = TeamKey::new();
    stack
        .set_recording(RecordingMode::On, std::slice::from_ref(&key.recipient))
        .await;
    let viewer = stack.viewer(&stack.owner_email).await;
    let agent = stack.agent(&viewer, "rec-later", &[]).await;
    let session_id = run_recorded_shell(&stack, &viewer, "rec-later").await;
    assert!(
        eventually(UPLOAD_WAIT, || async {
            agent.log().contains("not uploaded yet")
        })
        .await,
        "the agent never tried the recorder; its log:\n{}",
        agent.log()
    );
    assert!(!outbox_is_empty(&agent), "the recording must be kept");
    stack.start_recorder().await;
    assert!(
        eventually(UPLOAD_WAIT, || listed(&stack, &session_id)).await,
        "the recording never reached the recorder once it was up; the agent's log:\n{}",
        agent.log()
    );
    check_recording(&stack, &agent, &key, &session_id).await;
    drop(agent);
    stack.stop().await;
}

async fn a_required_recording_the_host_cannot_make_refuses_the_session(backend: Backend) {
    let mut stack = Stack::start(backend).await;
    stack.start_recorder().await;
    let key = TeamKey::new();
    stack
        .set_recording(
            RecordingMode::Required,
            std::slice::from_ref(&key.recipient),
        )
        .await;
    let viewer = stack.viewer(&stack.owner_email).await;
    let agent = stack.agent(&viewer, "rec-broken", &[]).await;
    // A file where the spool directory should be: no spool can be created.
    let recordings = agent.state_dir().join("recordings");
    std::fs::create_dir_all(&recordings).unwrap();
    std::fs::write(recordings.join("spool"), b"not a directory").unwrap();
    let Err(err) = open_shell(&stack, &viewer, "rec-broken").await else {
        panic!("the session must be refused");
    };
    assert!(
        err.to_string().to_lowercase().contains("record"),
        "the refusal should say why: {err}"
    );
    assert!(
        eventually(WAIT, || async {
            agent.log().contains("RECORDING_UNAVAILABLE")
        })
        .await,
        "{}",
        agent.log()
    );
    drop(agent);
    stack.stop().await;
}

on_both_backends!(
    a_recorded_shell_is_uploaded_and_decrypts_with_the_team_key,
    a_recording_waits_for_a_recorder_that_is_down,
    a_required_recording_the_host_cannot_make_refuses_the_session,
);
