//! The real `tucdesk-agent` and `tucdesk` programs against the services (auth, rendezvous, a
//! relay node), on the real Postgres, Redis and NATS and on the embedded backends: exec and
//! shell sessions end to end, policy denial and approval, attended consent at the host, key
//! pinning, ciphertext-only relay, and an agent that survives a rendezvous restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Stack, Viewer, WAIT, stderr, stdout, unique};
use tucdesk_proto::v1::{Frame, Input, Resize, SessionKind, frame};
use tucdesk_testkit::{Backend, on_both_backends};
use tucdesk_viewer::config::{ConfigDir, KNOWN_AGENTS_FILE};
use tucdesk_viewer::open::{SessionSpec, open};
use tucdesk_viewer::pins::KnownAgents;

async fn exec_keeps_streams_apart_and_returns_the_exit_code(backend: Backend) {
    let stack = Stack::start(backend).await;
    let viewer = stack.viewer(&stack.owner_email).await;
    let agent = stack.agent(&viewer, "exec-host", &[]).await;
    let out = viewer
        .run(&[
            "exec",
            "exec-host",
            "--accept-new",
            "--",
            "sh",
            "-c",
            "echo to-stdout; echo to-stderr >&2; exit 7",
        ])
        .await;
    assert_eq!(out.status.code(), Some(7), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "to-stdout\n");
    assert!(stderr(&out).contains("to-stderr\n"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("to-stderr"));

    // stdin reaches the command and a missing program is reported as such.
    let out = viewer
        .run_with_stdin(
            &["exec", "exec-host", "--", "tr", "a-z", "A-Z"],
            b"piped in\n",
        )
        .await;
    assert_eq!(stdout(&out), "PIPED IN\n", "stderr: {}", stderr(&out));
    let out = viewer
        .run(&["exec", "exec-host", "--", "/nonexistent/program"])
        .await;
    assert_eq!(out.status.code(), Some(127));
    assert!(stderr(&out).contains("could not start"), "{}", stderr(&out));
    drop(agent);
    stack.stop().await;
}

async fn a_shell_round_trips_with_resize_and_exit_status(backend: Backend) {
    let stack = Stack::start(backend).await;
    let viewer = stack.viewer(&stack.owner_email).await;
    let agent = stack.agent(&viewer, "shell-host", &[]).await;
    let config = ConfigDir::new(viewer.config_dir());
    let mut api = tucdesk_viewer::api::Api::open(&config).unwrap();
    let pins = KnownAgents::new(config.path(KNOWN_AGENTS_FILE));
    let spec = SessionSpec {
        agent: "shell-host".into(),
        kind: SessionKind::Shell,
        exec: None,
        reason: "e2e".into(),
        accept_new: true,
        initial_size: Some(tucdesk_proto::v1::TerminalSize { cols: 90, rows: 20 }),
        dial: Default::default(),
        // Automatic: both ends on loopback, so the peer-to-peer DataChannel connects.
        path: tucdesk_proto::v1::Path::Unspecified,
        p2p: tucdesk_p2p::P2pOptions {
            udp_addrs: vec![common::LOOPBACK_ICE.parse().unwrap()],
            ..Default::default()
        },
    };
    let mut opened = open(&mut api, &pins, &spec, |_| false, |_| {})
        .await
        .unwrap();
    assert_eq!(opened.path, tucdesk_proto::v1::Path::Direct);
    let channel = &mut opened.channel;
    let input = |text: &str| Frame {
        kind: Some(frame::Kind::Input(Input {
            data: text.as_bytes().to_vec(),
        })),
    };
    let mut screen = Vec::new();
    // Reads output until `needle` shows up; returns the exit status if the shell ends.
    async fn read_until(
        receiver: &mut tucdesk_transport::SessionReceiver,
        screen: &mut Vec<u8>,
        needle: &str,
    ) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if String::from_utf8_lossy(screen).contains(needle) {
                return None;
            }
            let frame = tokio::time::timeout_at(deadline, receiver.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{needle:?} never appeared in:\n{}",
                        String::from_utf8_lossy(screen)
                    )
                })
                .unwrap();
            match frame.and_then(|f| f.kind) {
                Some(frame::Kind::Output(output)) => screen.extend_from_slice(&output.data),
                Some(frame::Kind::Exit(exit)) => return exit.exit_code,
                Some(_) => {}
                None => panic!("the session ended early"),
            }
        }
    }
    channel
        .sender
        .send(&input("stty size; echo size-$((40+2))\n"))
        .await
        .unwrap();
    read_until(&mut channel.receiver, &mut screen, "20 90").await;
    read_until(&mut channel.receiver, &mut screen, "size-42").await;
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
    read_until(&mut channel.receiver, &mut screen, "43 132").await;
    channel.sender.send(&input("exit 5\n")).await.unwrap();
    let status = loop {
        if let Some(code) = read_until(&mut channel.receiver, &mut screen, "\u{0}never").await {
            break code;
        }
    };
    assert_eq!(status, 5);
    // Peer to peer: nothing went through the relay at all.
    assert!(stack.seen_by_relay.lock().unwrap().is_empty());
    drop(agent);
    stack.stop().await;
}

async fn forced_paths_are_used_or_fail_clearly(backend: Backend) {
    let stack = Stack::start(backend).await;
    let viewer = stack.viewer(&stack.owner_email).await;
    let agent = stack.agent(&viewer, "path-host", &[]).await;
    // Each path carries the same end-to-end session; the one used is what the user is told.
    for (path, shown) in [
        ("direct", "direct (peer to peer)"),
        ("ws", "WebSocket relay"),
        ("auto", "direct (peer to peer)"),
    ] {
        let out = viewer
            .run(&[
                "exec",
                "path-host",
                "--accept-new",
                "--path",
                path,
                "--verbose",
                "--",
                "echo",
                path,
            ])
            .await;
        assert_eq!(
            stdout(&out),
            format!("{path}\n"),
            "{path}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains(shown), "{path}: {}", stderr(&out));
    }
    // This stack has no TURN server: a forced TURN path is refused up front and says why,
    // instead of falling back.
    let out = viewer
        .run(&[
            "exec",
            "path-host",
            "--accept-new",
            "--path",
            "turn",
            "--p2p-timeout-secs",
            "2",
            "--",
            "true",
        ])
        .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("offers no TURN server"),
        "{}",
        stderr(&out)
    );
    // Every session's path is audited.
    let paths: Vec<String> = tucdesk_svc::on_pool!(&stack.dep.db, |pool| {
        sqlx::query_scalar::<_, Vec<u8>>("SELECT payload FROM outbox ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    })
    .iter()
    .filter_map(|p| <tucdesk_proto::v1::AuditEvent as prost::Message>::decode(p.as_slice()).ok())
    .filter(|e| e.action == "session.start")
    .filter_map(|e| {
        serde_json::from_str::<serde_json::Value>(&e.context_json).ok()?["path"]
            .as_str()
            .map(str::to_owned)
    })
    .collect();
    assert!(paths.iter().any(|p| p == "direct"), "{paths:?}");
    assert!(paths.iter().any(|p| p == "ws"), "{paths:?}");
    drop(agent);
    stack.stop().await;
}

/// The relay under a shell dies mid-output: the viewer resumes the session over another path
/// with fresh keys, and every line the shell printed shows exactly once, in order.
async fn a_shell_resumes_over_another_path_when_its_relay_dies(backend: Backend) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const LINES: usize = 600;
    let stack = Stack::start(backend).await;
    let viewer = stack.viewer(&stack.owner_email).await;
    let agent = stack.agent(&viewer, "resume-host", &[]).await;
    let mut child = viewer.spawn(&["connect", "resume-host", "--accept-new", "--path", "ws"]);
    let mut stdin = child.stdin.take().unwrap();
    let screen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let mut stdout_pipe = child.stdout.take().unwrap();
    let sink = screen.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = stdout_pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let shown = |needle: &str| String::from_utf8_lossy(&screen.lock().unwrap()).contains(needle);
    let eventually_shown = |needle: String| {
        let screen = screen.clone();
        tucdesk_testkit::eventually(WAIT, move || {
            let screen = screen.clone();
            let needle = needle.clone();
            async move { String::from_utf8_lossy(&screen.lock().unwrap()).contains(&needle) }
        })
    };
    stdin
        .write_all(
            format!(
                "for i in $(seq 1 {LINES}); do echo line-$i; sleep 0.01; done; echo done-$((6*7)); exit 7\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    assert!(
        eventually_shown("line-40\r\n".to_owned()).await,
        "the shell never printed over the relay"
    );
    // Another relay node comes up, then the session's relay goes away mid-output (after its
    // 2 s drain the node closes the session's connections).
    let second = tucdesk_testkit::relay_node::TestRelay::start(
        &stack.dep.auth,
        stack.dep.bus().await.unwrap(),
        {
            let mut config = tucdesk_testkit::relay_node::test_config(&unique("relay"));
            config.region = stack.dep.config.region.clone().unwrap();
            config
        },
    )
    .await
    .unwrap();
    stack.relay.shut_down();
    assert!(
        !shown(&format!("line-{LINES}\r\n")),
        "the shell finished before the relay went away; the test proves nothing"
    );
    let status = tokio::time::timeout(std::time::Duration::from_secs(90), child.wait())
        .await
        .expect("the session did not end")
        .unwrap();
    reader.await.unwrap();
    let mut stderr_text = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr_text)
        .await
        .unwrap();
    let screen = String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();
    assert_eq!(status.code(), Some(7), "{stderr_text}\n{screen}");
    assert!(
        stderr_text.contains("resuming the session") && stderr_text.contains("resumed via"),
        "{stderr_text}"
    );
    // Nothing lost, nothing twice: exactly lines 1..=LINES in order.
    // (The terminal echoes the typed command too, where `line-$i` is no number.)
    let lines: Vec<&str> = screen
        .split(['\r', '\n', ' ', ';'])
        .filter(|word| {
            word.strip_prefix("line-")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    let expected: Vec<String> = (1..=LINES).map(|i| format!("line-{i}")).collect();
    assert_eq!(lines, expected, "{stderr_text}");
    assert!(screen.contains("done-42"));
    assert!(
        agent.log().contains("session resumed on a new path"),
        "{}",
        agent.log()
    );
    // The path change is audited.
    assert!(
        tucdesk_testkit::eventually(WAIT, || async {
            let rows = tucdesk_svc::on_pool!(&stack.dep.db, |pool| {
                sqlx::query_scalar::<_, Vec<u8>>("SELECT payload FROM outbox ORDER BY id")
                    .fetch_all(pool)
                    .await
                    .unwrap()
            });
            rows.iter()
                .filter_map(|p| {
                    <tucdesk_proto::v1::AuditEvent as prost::Message>::decode(p.as_slice()).ok()
                })
                .any(|e| e.action == "session.path_changed")
        })
        .await,
        "no session.path_changed in the audit outbox"
    );
    drop(second);
    drop(agent);
    stack.stop().await;
}

async fn the_relay_forwards_exec_output_only_as_ciphertext(backend: Backend) {
    let stack = Stack::start(backend).await;
    let viewer = stack.viewer(&stack.owner_email).await;
    let agent = stack.agent(&viewer, "secret-host", &[]).await;
    let out = viewer
        .run(&[
            "exec",
            "secret-host",
            "--accept-new",
            "--path",
            "ws",
            "--",
            "sh",
            "-c",
            "echo top-$((1111*3))-secret",
        ])
        .await;
    assert_eq!(stdout(&out), "top-3333-secret\n", "{}", stderr(&out));
    assert!(!stack.seen_by_relay.lock().unwrap().is_empty());
    assert!(!stack.relay_saw(b"top-3333-secret"));
    assert!(!stack.relay_saw(b"echo top-"));
    drop(agent);
    stack.stop().await;
}

async fn put_policy(viewer: &Viewer, yaml: &str) {
    let file = viewer.dir.path().join("policy.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = viewer
        .run(&["policy", "apply", &file.display().to_string()])
        .await;
    assert!(out.status.success(), "policy apply: {}", stderr(&out));
}

async fn a_policy_denial_stops_the_session_before_the_agent_sees_an_offer(backend: Backend) {
    let stack = Stack::start(backend).await;
    let viewer = stack.viewer(&stack.owner_email).await;
    let agent = stack.agent(&viewer, "frozen-host", &[]).await;
    put_policy(
        &viewer,
        "version: 1\nmode: allow\nrules:\n  - name: change-freeze\n    effect: deny\n    reason: \"Change freeze until Monday\"\n",
    )
    .await;
    let out = viewer
        .run(&["exec", "frozen-host", "--accept-new", "--", "true"])
        .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("policy denied"), "{err}");
    assert!(err.contains("change-freeze"), "{err}");
    assert!(err.contains("Change freeze until Monday"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !agent.log().contains("offer received"),
        "the agent saw an offer:\n{}",
        agent.log()
    );
    stack.stop().await;
}

async fn an_approval_by_another_admin_lets_the_session_through(backend: Backend) {
    let stack = Stack::start(backend).await;
    let viewer = stack.viewer(&stack.owner_email).await;
    let approver_email = format!("{}@example.com", unique("approver"));
    stack
        .dep
        .user(
            &stack.owner,
            &approver_email,
            tucdesk_proto::v1::Role::Admin,
        )
        .await
        .unwrap();
    let approver = stack.viewer(&approver_email).await;
    let agent = stack.agent(&viewer, "guarded-host", &[]).await;
    put_policy(
        &viewer,
        "version: 1\nmode: allow\nrules:\n  - name: four-eyes\n    effect: require_approval\n    reason: \"Every session needs a second person\"\n",
    )
    .await;
    let waiting = viewer.spawn(&[
        "exec",
        "guarded-host",
        "--accept-new",
        "--reason",
        "incident 42",
        "--",
        "echo",
        "approved-run",
    ]);
    // The request shows up for the approver; the requester cannot approve it.
    let deadline = tokio::time::Instant::now() + WAIT;
    let approval_id = loop {
        let out = approver.run(&["approvals"]).await;
        if let Some(id) = stdout(&out)
            .lines()
            .find(|l| l.contains("incident 42"))
            .and_then(|l| l.split_whitespace().next())
        {
            break id.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the approval request never appeared"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let own = viewer.run(&["approve", &approval_id]).await;
    assert!(
        !own.status.success(),
        "a requester approved their own request"
    );
    let approved = approver.run(&["approve", &approval_id]).await;
    assert!(approved.status.success(), "{}", stderr(&approved));
    let out = tokio::time::timeout(WAIT, waiting.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stdout(&out), "approved-run\n", "{}", stderr(&out));
    assert!(
        stderr(&out).contains("approval required"),
        "{}",
        stderr(&out)
    );
    assert!(out.status.success());
    drop(agent);
    stack.stop().await;
}

async fn a_swapped_agent_key_is_caught_by_the_pin(backend: Backend) {
    let stack = Stack::start(backend).await;
    let viewer = stack.viewer(&stack.owner_email).await;
    let first = stack.agent(&viewer, "web-1", &[]).await;
    // An unknown key is not trusted without --accept-new (and no terminal to ask on).
    let refused = viewer.run(&["exec", "web-1", "--", "true"]).await;
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--accept-new"),
        "{}",
        stderr(&refused)
    );
    let out = viewer
        .run(&["exec", "web-1", "--accept-new", "--", "true"])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let first_fingerprint = first.fingerprint();
    drop(first);

    // The agent is revoked and a different key enrolls under the same name.
    let agent_id = {
        let out = viewer.run(&["agents", "--json"]).await;
        common::serde_json_like::parse(&stdout(&out))
            .unwrap()
            .into_iter()
            .find(|a| a.name == "web-1")
            .unwrap()
            .agent_id
    };
    let proof = stack
        .owner
        .proof(
            tucdesk_rendezvous::agents_api::REVOKE_METHOD,
            &agent_id,
            b"",
        )
        .unwrap();
    stack
        .rdv
        .operator_client()
        .revoke_agent(
            stack
                .owner
                .request(tucdesk_proto::v1::RevokeAgentRequest {
                    agent_id,
                    reason: "reinstalled".into(),
                    proof: Some(proof),
                })
                .unwrap(),
        )
        .await
        .unwrap();
    let second = stack.agent(&viewer, "web-1", &[]).await;
    let out = viewer
        .run(&["exec", "web-1", "--accept-new", "--", "true"])
        .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("HAS CHANGED"), "{err}");
    assert!(err.contains(&first_fingerprint), "{err}");
    assert!(err.contains(&second.fingerprint()), "{err}");
    assert!(!second.log().contains("offer received"));
    drop(second);
    stack.stop().await;
}

async fn the_agent_reconnects_after_a_rendezvous_restart(backend: Backend) {
    let mut stack = Stack::start(backend).await;
    let viewer = stack.viewer(&stack.owner_email).await;
    let agent = stack.agent(&viewer, "steady-host", &[]).await;
    stack.restart_rendezvous().await;
    assert!(
        tucdesk_testkit::eventually(WAIT, || async {
            let out = viewer
                .run(&["exec", "steady-host", "--accept-new", "--", "echo", "back"])
                .await;
            stdout(&out) == "back\n"
        })
        .await,
        "no session after the restart; agent log:\n{}",
        agent.log()
    );
    assert!(
        agent.log().matches("connected to rendezvous").count() >= 2,
        "{}",
        agent.log()
    );
    drop(agent);
    stack.stop().await;
}

/// An agent running under a pseudo-terminal, as a person at the host would run it.
struct AttendedAgent {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    screen: std::sync::Arc<std::sync::Mutex<String>>,
    keyboard: Box<dyn std::io::Write + Send>,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Drop for AttendedAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

impl AttendedAgent {
    fn start(agent: &common::Agent) -> Self {
        Self::start_with(&[
            "--state-dir",
            &agent.state_dir().display().to_string(),
            "run",
        ])
    }

    fn start_with(args: &[&str]) -> Self {
        use std::io::Read as _;
        let pair = portable_pty::native_pty_system()
            .openpty(portable_pty::PtySize::default())
            .unwrap();
        let mut command = portable_pty::CommandBuilder::new(common::AGENT_BIN);
        command.args(args);
        command.env("NO_COLOR", "1");
        let child = pair.slave.spawn_command(command).unwrap();
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().unwrap();
        let keyboard = pair.master.take_writer().unwrap();
        let screen: std::sync::Arc<std::sync::Mutex<String>> = Default::default();
        let shown = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    return;
                }
                shown
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            child,
            screen,
            keyboard,
            _master: pair.master,
        }
    }

    /// Waits until the host's terminal shows the `nth` consent prompt, then types `answer`.
    async fn answer(&mut self, nth: usize, answer: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let screen = self.screen.lock().unwrap().clone();
            if screen.matches("Allow?").count() >= nth {
                self.keyboard
                    .write_all(format!("{answer}\r").as_bytes())
                    .unwrap();
                self.keyboard.flush().unwrap();
                return screen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no consent prompt on the host:\n{screen}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

async fn an_attended_host_decides_who_gets_in(backend: Backend) {
    let stack = Stack::start(backend).await;
    let viewer = stack.viewer(&stack.owner_email).await;
    let mut agent = common::Agent::new("attended-host");
    agent.enroll(&stack, &viewer, &["--attended"]).await;
    let mut host = AttendedAgent::start(&agent);
    assert!(viewer.sees_online("attended-host").await);

    let accepted = viewer.spawn(&[
        "exec",
        "attended-host",
        "--accept-new",
        "--reason",
        "printer is stuck",
        "--",
        "echo",
        "let-in",
    ]);
    let prompt = host.answer(1, "yes").await;
    assert!(prompt.contains(&stack.owner_email), "{prompt}");
    assert!(prompt.contains("printer is stuck"), "{prompt}");
    assert!(prompt.contains("echo let-in"), "{prompt}");
    let out = tokio::time::timeout(WAIT, accepted.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stdout(&out), "let-in\n", "{}", stderr(&out));

    let refused = viewer.spawn(&["exec", "attended-host", "--", "echo", "keep-out"]);
    host.answer(2, "no").await;
    let out = tokio::time::timeout(WAIT, refused.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(!out.status.success());
    assert!(!stdout(&out).contains("keep-out"));
    assert!(stderr(&out).contains("consent denied"), "{}", stderr(&out));
    drop(host);
    stack.stop().await;
}

async fn the_viewer_refreshes_its_login_and_logout_ends_it(backend: Backend) {
    let stack = Stack::start(backend).await;
    let viewer = stack.viewer(&stack.owner_email).await;
    let config = ConfigDir::new(viewer.config_dir());
    let before = config.credentials().unwrap();
    // Pretend the access token is about to expire: the next command refreshes it first.
    let mut stale = before.clone();
    stale.access_expires_at = 0;
    config.save_credentials(&stale).unwrap();
    let out = viewer.run(&["whoami"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&stack.owner_email));
    let after = config.credentials().unwrap();
    assert_ne!(
        after.refresh_token, before.refresh_token,
        "the refresh token rotates"
    );
    assert_ne!(after.access_token, before.access_token);
    assert!(after.access_expires_at > 0);

    // The rotated-out refresh token is now a stolen one: using it revokes the family.
    let mut thief = after.clone();
    thief.refresh_token = before.refresh_token.clone();
    thief.access_expires_at = 0;
    config.save_credentials(&thief).unwrap();
    let out = viewer.run(&["whoami"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("tucdesk login"), "{}", stderr(&out));
    let mut owner_again = after;
    owner_again.access_expires_at = 0;
    config.save_credentials(&owner_again).unwrap();
    let out = viewer.run(&["whoami"]).await;
    assert!(
        !out.status.success(),
        "the whole family is revoked after reuse"
    );

    // Log in again, then log out: the tokens are gone locally.
    let viewer = stack.viewer(&stack.owner_email).await;
    let out = viewer.run(&["logout"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = viewer.run(&["agents"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not logged in"), "{}", stderr(&out));
    stack.stop().await;
}

async fn a_support_technician_gets_in_only_with_the_hosts_consent(backend: Backend) {
    let stack = Stack::start(backend).await;
    let admin = stack.viewer(&stack.owner_email).await;
    // The admin gives the person at the host a code to enroll a throwaway agent, and the
    // technician a support code for agents tagged "support".
    let out = admin
        .run(&["enroll-token", "create", "--tags", "support"])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let host_code = stdout(&out).trim().to_owned();
    let out = admin
        .run(&[
            "support-code",
            "create",
            "--tag",
            "support",
            "--kinds",
            "shell,exec",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let support_code = stdout(&out).trim().to_owned();

    let mut host = AttendedAgent::start_with(&[
        "support",
        "--server",
        &stack.rendezvous_url(),
        "--code",
        &host_code,
        "--name",
        "grandmas-pc",
    ]);
    assert!(
        admin.sees_online("grandmas-pc").await,
        "the support agent never came online:\n{}",
        host.screen.lock().unwrap()
    );
    let technician = Viewer {
        dir: tempfile::tempdir().unwrap(),
        email: String::new(),
    };
    let out = technician
        .run(&[
            "login",
            "--auth",
            &stack.dep.auth.url(),
            "--rendezvous",
            &stack.rendezvous_url(),
            "--support-code",
            &support_code,
            "--display-name",
            "Tess Technician",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let whoami = technician.run(&["whoami"]).await;
    assert!(whoami.status.success(), "{}", stderr(&whoami));

    // Refused at the host first: nothing runs.
    let refused = technician.spawn(&[
        "exec",
        "grandmas-pc",
        "--accept-new",
        "--",
        "echo",
        "no-way",
    ]);
    let prompt = host.answer(1, "no").await;
    assert!(prompt.contains("Tess Technician"), "{prompt}");
    assert!(prompt.contains("support technician"), "{prompt}");
    let out = tokio::time::timeout(WAIT, refused.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("consent denied"), "{}", stderr(&out));

    // Accepted: the one support session runs, then the agent leaves on its own.
    let accepted = technician.spawn(&["exec", "grandmas-pc", "--", "echo", "fixed-it"]);
    host.answer(2, "yes").await;
    let out = tokio::time::timeout(WAIT, accepted.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stdout(&out), "fixed-it\n", "{}", stderr(&out));
    let deadline = tokio::time::Instant::now() + WAIT;
    while host.child.try_wait().unwrap().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "support mode did not end after its session"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The code reaches only what it names: another agent of the team is not even visible.
    let other = stack.agent(&admin, "payroll-server", &[]).await;
    let out = technician.run(&["agents", "--json"]).await;
    assert!(stdout(&out).contains("grandmas-pc"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("payroll-server"), "{}", stdout(&out));
    let out = technician
        .run(&["exec", "payroll-server", "--accept-new", "--", "id"])
        .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no agent named"), "{}", stderr(&out));
    assert!(!other.log().contains("offer received"));
    drop(other);
    stack.stop().await;
}

on_both_backends!(
    a_support_technician_gets_in_only_with_the_hosts_consent,
    the_viewer_refreshes_its_login_and_logout_ends_it,
    an_attended_host_decides_who_gets_in,
    exec_keeps_streams_apart_and_returns_the_exit_code,
    a_shell_round_trips_with_resize_and_exit_status,
    the_relay_forwards_exec_output_only_as_ciphertext,
    a_shell_resumes_over_another_path_when_its_relay_dies,
    forced_paths_are_used_or_fail_clearly,
    a_policy_denial_stops_the_session_before_the_agent_sees_an_offer,
    an_approval_by_another_admin_lets_the_session_through,
    a_swapped_agent_key_is_caught_by_the_pin,
    the_agent_reconnects_after_a_rendezvous_restart,
);
