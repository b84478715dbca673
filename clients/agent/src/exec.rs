//! Exec sessions: exactly the command policy evaluated and the operator signed, with stdout
//! and stderr kept apart, stdin streamed, a timeout, an output cap, and the exit status.
//!
//! The command gets a small, predictable environment (PATH, HOME, USER, LANG plus what the
//! spec sets), not the agent's own, so nothing of the agent's configuration leaks into it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{ChildStdin, Command};
use tucdesk_proto::limits::MAX_OUTPUT_CHUNK_LEN;
use tucdesk_proto::v1::{
    CloseReason, ExecOutput, ExecResult, ExecSpec, ExecStream, Frame, Pong, frame,
};
use tucdesk_transport::{SessionReceiver, SessionSender};

use crate::session::{Ended, SessionLimits, Stop, protocol_error};

/// How long the operator has to send the ExecRequest after the channel is up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of a command whose spec sets none.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Output kept per command (both streams); the rest is read and discarded.
pub const MAX_EXEC_OUTPUT: u64 = 256 * 1024 * 1024;
const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn result_frame(result: ExecResult) -> Frame {
    Frame {
        kind: Some(frame::Kind::ExecResult(result)),
    }
}

async fn refuse_to_start(sender: &mut SessionSender, error: String) -> Ended {
    let frame = result_frame(ExecResult {
        error: tucdesk_transport::ws::printable(&error),
        ..Default::default()
    });
    if let Err(err) = sender.send(&frame).await {
        return Ended::transport(err);
    }
    sender
        .close(CloseReason::Normal, "the command could not start")
        .await;
    Ended::closed(CloseReason::Normal)
}

fn command(spec: &ExecSpec) -> Command {
    let mut command = Command::new(&spec.argv[0]);
    command.args(&spec.argv[1..]);
    command.env_clear();
    command.env("PATH", SAFE_PATH);
    command.env("LANG", "C.UTF-8");
    for name in ["HOME", "USER", "LOGNAME"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.envs(&spec.env);
    let cwd = if spec.cwd.is_empty() {
        std::env::var_os("HOME").unwrap_or_else(|| "/".into())
    } else {
        spec.cwd.clone().into()
    };
    command.current_dir(cwd);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so a timeout kill reaches what it started too.
        .process_group(0);
    command
}

/// Per-stream output state.
struct StreamState {
    stream: ExecStream,
    seq: u64,
    bytes: u64,
}

/// Runs the authorized command `authorized` for the session.
pub async fn run(
    sender: &mut SessionSender,
    receiver: &mut SessionReceiver,
    authorized: &ExecSpec,
    limits: &SessionLimits,
    stop: &Stop,
) -> Ended {
    // The first frame must be the ExecRequest, identical to what was authorized.
    let request = loop {
        let next = tokio::select! {
            next = tokio::time::timeout(REQUEST_TIMEOUT, receiver.recv()) => next,
            () = stop.cancelled() => {
                sender.close(stop.reason(), "the session was ended").await;
                return Ended::closed(stop.reason());
            }
        };
        match next {
            Err(_) => {
                return protocol_error(sender, CloseReason::ProtocolError, "no command was sent")
                    .await;
            }
            Ok(Ok(Some(Frame {
                kind: Some(frame::Kind::ExecRequest(request)),
            }))) => break request,
            Ok(Ok(Some(Frame {
                kind: Some(frame::Kind::Ping(_) | frame::Kind::Pong(_)),
            }))) => continue,
            Ok(Ok(Some(Frame {
                kind: Some(frame::Kind::Close(_)),
            }))) => return Ended::by_operator(),
            Ok(Ok(Some(_))) => {
                return protocol_error(sender, CloseReason::ProtocolError, "expected ExecRequest")
                    .await;
            }
            Ok(Ok(None)) => return Ended::gone(),
            Ok(Err(err)) => {
                let reason = err.close_reason();
                return protocol_error(sender, reason, &err.to_string()).await;
            }
        }
    };
    let spec = request.spec.unwrap_or_default();
    if !tucdesk_proto::validate::same_exec(&spec, authorized) {
        return protocol_error(
            sender,
            CloseReason::ExecMismatch,
            "the command differs from the one that was authorized",
        )
        .await;
    }
    if spec.pty {
        return refuse_to_start(
            sender,
            "exec with a PTY is not supported by this agent; open a shell session instead".into(),
        )
        .await;
    }
    let started = Instant::now();
    let mut child = match command(&spec).spawn() {
        Ok(child) => child,
        Err(err) => return refuse_to_start(sender, format!("{}: {err}", spec.argv[0])).await,
    };
    let (Some(stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return refuse_to_start(sender, "the command's pipes are missing".into()).await;
    };
    let stdin = StdinFeed::start(stdin);
    if !stdin.push(request.stdin, request.stdin_eof) {
        return protocol_error(sender, CloseReason::RateLimited, STDIN_FULL).await;
    }

    let timeout = if spec.timeout_ms == 0 {
        DEFAULT_EXEC_TIMEOUT
    } else {
        Duration::from_millis(u64::from(spec.timeout_ms))
    };
    let timer = tokio::time::sleep(timeout.min(limits.max_duration));
    tokio::pin!(timer);
    let mut out = StreamState {
        stream: ExecStream::Stdout,
        seq: 0,
        bytes: 0,
    };
    let mut err_state = StreamState {
        stream: ExecStream::Stderr,
        seq: 0,
        bytes: 0,
    };
    let (mut out_open, mut err_open) = (true, true);
    let mut out_buf = vec![0u8; MAX_OUTPUT_CHUNK_LEN];
    let mut err_buf = vec![0u8; MAX_OUTPUT_CHUNK_LEN];
    let mut truncated = false;
    let mut timed_out = false;
    let mut status = None;
    let mut stdin_budget = limits.input_bucket();

    while out_open || err_open || status.is_none() {
        tokio::select! {
            read = stdout.read(&mut out_buf), if out_open => match read {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => {
                    if let Err(ended) = forward(sender, &mut out, &mut err_state.bytes, &out_buf[..n], &mut truncated).await {
                        return ended;
                    }
                }
            },
            read = stderr.read(&mut err_buf), if err_open => match read {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => {
                    if let Err(ended) = forward(sender, &mut err_state, &mut out.bytes, &err_buf[..n], &mut truncated).await {
                        return ended;
                    }
                }
            },
            exit = child.wait(), if status.is_none() => {
                status = Some(exit);
            },
            frame = receiver.recv() => match frame {
                Ok(Some(Frame { kind: Some(frame::Kind::ExecStdin(more)) })) => {
                    if more.data.len() > tucdesk_proto::limits::MAX_EXEC_STDIN_CHUNK_LEN {
                        return protocol_error(sender, CloseReason::FrameTooLarge, "stdin chunk too large").await;
                    }
                    if !stdin_budget.take(more.data.len()) {
                        return protocol_error(sender, CloseReason::RateLimited, "stdin rate limit").await;
                    }
                    if !stdin.push(more.data, more.eof) {
                        return protocol_error(sender, CloseReason::RateLimited, STDIN_FULL).await;
                    }
                }
                Ok(Some(Frame { kind: Some(frame::Kind::Ping(ping)) })) => {
                    let pong = Frame { kind: Some(frame::Kind::Pong(Pong { nonce: ping.nonce })) };
                    if let Err(err) = sender.send(&pong).await {
                        return Ended::transport(err);
                    }
                }
                Ok(Some(Frame { kind: Some(frame::Kind::Pong(_)) | None })) => {}
                Ok(Some(Frame { kind: Some(frame::Kind::Close(_)) })) => return Ended::by_operator(),
                Ok(Some(_)) => {
                    return protocol_error(sender, CloseReason::ProtocolError, "unexpected frame in an exec session").await;
                }
                Ok(None) => return Ended::gone(),
                Err(err) => {
                    let reason = err.close_reason();
                    return protocol_error(sender, reason, &err.to_string()).await;
                }
            },
            () = &mut timer, if !timed_out => {
                timed_out = true;
                let _ = child.start_kill();
            },
            () = stop.cancelled() => {
                let _ = child.start_kill();
                sender.close(stop.reason(), "the session was ended").await;
                return Ended::closed(stop.reason());
            },
        }
    }
    let (exit_code, signal) = match status {
        Some(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt as _;
            (status.code(), status.signal())
        }
        _ => (None, None),
    };
    let result = ExecResult {
        exit_code,
        signal,
        timed_out,
        output_truncated: truncated,
        stdout_bytes: out.bytes,
        stderr_bytes: err_state.bytes,
        error: String::new(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    if let Err(err) = sender.send(&result_frame(result)).await {
        return Ended::transport(err);
    }
    sender
        .close(CloseReason::Normal, "the command finished")
        .await;
    Ended::closed(CloseReason::Normal)
}

/// Sends one chunk of a stream, unless the command's output cap is reached.
async fn forward(
    sender: &mut SessionSender,
    state: &mut StreamState,
    other_bytes: &mut u64,
    data: &[u8],
    truncated: &mut bool,
) -> Result<(), Ended> {
    let total = state.bytes + *other_bytes;
    let room = MAX_EXEC_OUTPUT.saturating_sub(total);
    let keep = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
    if keep < data.len() {
        *truncated = true;
    }
    if keep == 0 {
        return Ok(());
    }
    state.seq += 1;
    state.bytes += keep as u64;
    let frame = Frame {
        kind: Some(frame::Kind::ExecOutput(ExecOutput {
            stream: state.stream as i32,
            seq: state.seq,
            data: data[..keep].to_vec(),
        })),
    };
    sender.send(&frame).await.map_err(Ended::transport)
}

const STDIN_FULL: &str = "the command is not reading its stdin";
/// Stdin chunks queued for the command.
const STDIN_QUEUE: usize = 16;

/// Feeds the command's stdin from its own task, so a command that does not read stdin can
/// never stall the reading of its output.
struct StdinFeed {
    queue: tokio::sync::mpsc::Sender<Option<Vec<u8>>>,
}

impl StdinFeed {
    fn start(mut pipe: ChildStdin) -> Self {
        let (queue, mut chunks) = tokio::sync::mpsc::channel::<Option<Vec<u8>>>(STDIN_QUEUE);
        tokio::spawn(async move {
            while let Some(Some(data)) = chunks.recv().await {
                if pipe.write_all(&data).await.is_err() {
                    // The command closed its stdin; the rest is dropped, as with a pipe.
                    return;
                }
            }
            // EOF (or the session ended): dropping the pipe closes the command's stdin.
        });
        Self { queue }
    }

    /// Queues `data` (and EOF); false when the queue is full.
    fn push(&self, data: Vec<u8>, eof: bool) -> bool {
        use tokio::sync::mpsc::error::TrySendError;
        let ok = |item| !matches!(self.queue.try_send(item), Err(TrySendError::Full(_)));
        (data.is_empty() || ok(Some(data))) && (!eof || ok(None))
    }
}
