//! `tucdesk exec`: one command on the agent, its stdout and stderr kept apart locally, stdin
//! forwarded (unless `-n` or stdin is a terminal), and its exit status as ours.

use std::io::Read as _;

use tokio::sync::mpsc;
use tucdesk_proto::limits::MAX_EXEC_STDIN_CHUNK_LEN;
use tucdesk_proto::v1::{
    CloseReason, ExecRequest, ExecSpec, ExecStdin, ExecStream, Frame, Pong, frame,
};
use tucdesk_transport::{SessionReceiver, SessionSender};

/// Exit code when the command could not start (like a shell's "not found").
pub const EXIT_NOT_STARTED: i32 = 127;
/// Exit code when the agent killed the command at its timeout (like `timeout(1)`).
pub const EXIT_TIMED_OUT: i32 = 124;
/// Exit code when the session failed before the command finished.
pub const EXIT_SESSION_FAILED: i32 = 255;

/// What happened to the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    pub exit_code: i32,
    /// A note for stderr (why it did not start, timed out, truncated, session lost).
    pub note: Option<String>,
}

fn frame(kind: frame::Kind) -> Frame {
    Frame { kind: Some(kind) }
}

/// Runs `spec` on the open session. `forward_stdin` streams our stdin to the command.
pub async fn run(
    sender: &mut SessionSender,
    receiver: &mut SessionReceiver,
    spec: ExecSpec,
    forward_stdin: bool,
) -> ExecOutcome {
    let request = frame(frame::Kind::ExecRequest(ExecRequest {
        spec: Some(spec),
        stdin: Vec::new(),
        stdin_eof: !forward_stdin,
    }));
    if let Err(err) = sender.send(&request).await {
        return lost(err.to_string());
    }
    let (chunks_tx, mut chunks) = mpsc::channel::<Vec<u8>>(4);
    if forward_stdin {
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = vec![0u8; MAX_EXEC_STDIN_CHUNK_LEN];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if chunks_tx.blocking_send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    } else {
        drop(chunks_tx);
    }
    let mut stdin_open = forward_stdin;
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    let mut result = None;
    loop {
        tokio::select! {
            chunk = chunks.recv(), if stdin_open => {
                let (data, eof) = match chunk {
                    Some(data) => (data, false),
                    None => {
                        stdin_open = false;
                        (Vec::new(), true)
                    }
                };
                if let Err(err) = sender.send(&frame(frame::Kind::ExecStdin(ExecStdin { data, eof }))).await {
                    return lost(err.to_string());
                }
            }
            incoming = receiver.recv() => match incoming {
                Ok(Some(Frame { kind: Some(kind) })) => match kind {
                    frame::Kind::ExecOutput(output) => {
                        let target: &mut dyn std::io::Write = if output.stream == ExecStream::Stderr as i32 {
                            &mut stderr
                        } else {
                            &mut stdout
                        };
                        let _ = target.write_all(&output.data);
                        let _ = target.flush();
                    }
                    frame::Kind::ExecResult(done) => result = Some(done),
                    frame::Kind::Ping(ping) => {
                        let _ = sender.send(&frame(frame::Kind::Pong(Pong { nonce: ping.nonce }))).await;
                    }
                    frame::Kind::Close(close) => {
                        let reason = CloseReason::try_from(close.reason).unwrap_or(CloseReason::Unspecified);
                        return match result {
                            Some(done) => outcome(&done),
                            None => lost(format!(
                                "the agent ended the session ({}): {}",
                                reason.as_str_name().trim_start_matches("CLOSE_REASON_").to_ascii_lowercase(),
                                tucdesk_transport::ws::printable(&close.message)
                            )),
                        };
                    }
                    _ => {}
                },
                Ok(Some(Frame { kind: None })) => {}
                Ok(None) => return result.as_ref().map_or_else(|| lost("the connection ended".into()), outcome),
                Err(err) => return lost(err.to_string()),
            },
        }
    }
}

fn lost(why: String) -> ExecOutcome {
    ExecOutcome {
        exit_code: EXIT_SESSION_FAILED,
        note: Some(why),
    }
}

/// Maps the agent's result to our exit status and a note.
pub fn outcome(result: &tucdesk_proto::v1::ExecResult) -> ExecOutcome {
    if !result.error.is_empty() {
        return ExecOutcome {
            exit_code: EXIT_NOT_STARTED,
            note: Some(format!(
                "the command could not start: {}",
                tucdesk_transport::ws::printable(&result.error)
            )),
        };
    }
    if result.timed_out {
        return ExecOutcome {
            exit_code: EXIT_TIMED_OUT,
            note: Some("the agent stopped the command at its timeout".into()),
        };
    }
    let exit_code = match (result.exit_code, result.signal) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => EXIT_SESSION_FAILED,
    };
    ExecOutcome {
        exit_code,
        note: result
            .output_truncated
            .then(|| "output beyond the agent's cap was discarded".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tucdesk_proto::v1::ExecResult;

    #[test]
    fn results_map_to_shell_like_exit_codes() {
        let code = |r: ExecResult| outcome(&r).exit_code;
        assert_eq!(
            code(ExecResult {
                exit_code: Some(3),
                ..Default::default()
            }),
            3
        );
        assert_eq!(
            code(ExecResult {
                signal: Some(9),
                ..Default::default()
            }),
            137
        );
        assert_eq!(
            code(ExecResult {
                error: "not found".into(),
                ..Default::default()
            }),
            EXIT_NOT_STARTED
        );
        assert_eq!(
            code(ExecResult {
                timed_out: true,
                exit_code: Some(0),
                ..Default::default()
            }),
            EXIT_TIMED_OUT
        );
    }
}
