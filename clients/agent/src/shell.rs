//! Interactive shell sessions: the user's login shell in a PTY (portable-pty), its output as
//! numbered `Output` frames, keystrokes and resizes from the operator, and the exit status.
//!
//! The PTY is blocking I/O, so one thread reads it and one writes it; both talk to the session
//! task through bounded channels, so a slow operator slows the shell instead of growing memory.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use tokio::sync::mpsc;
use tucdesk_proto::limits::{MAX_INPUT_CHUNK_LEN, MAX_OUTPUT_CHUNK_LEN};
use tucdesk_proto::v1::{CloseReason, Exit, Frame, Pong, Resize, TerminalSize, frame};

use crate::recording::ShellRecorder;
use crate::resume::{Event, Resumable};
use crate::session::{Ended, SessionLimits, Stop};

/// Output chunks buffered between the PTY reader thread and the session.
const OUTPUT_QUEUE: usize = 8;
/// Input chunks buffered towards the PTY writer thread.
const INPUT_QUEUE: usize = 64;
/// After the shell exits, how long its remaining output may take to arrive.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

fn pty_size(size: Option<&TerminalSize>) -> PtySize {
    let (cols, rows) = size.map_or((80, 24), |s| (s.cols, s.rows));
    PtySize {
        rows: u16::try_from(rows.clamp(1, 1000)).unwrap_or(24),
        cols: u16::try_from(cols.clamp(1, 1000)).unwrap_or(80),
        pixel_width: 0,
        pixel_height: 0,
    }
}

/// The signal number of a portable-pty signal description (strsignal text).
fn signal_number(name: &str) -> i32 {
    match name {
        "Hangup" => 1,
        "Interrupt" => 2,
        "Quit" => 3,
        "Aborted" => 6,
        "Killed" => 9,
        "Segmentation fault" => 11,
        "Broken pipe" => 13,
        "Terminated" => 15,
        other => other
            .strip_prefix("Signal ")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    }
}

fn exit_frame(status: &portable_pty::ExitStatus) -> Frame {
    let exit = match status.signal() {
        Some(signal) => Exit {
            exit_code: None,
            signal: Some(signal_number(signal)),
        },
        None => Exit {
            exit_code: Some(i32::try_from(status.exit_code()).unwrap_or(i32::MAX)),
            signal: None,
        },
    };
    Frame {
        kind: Some(frame::Kind::Exit(exit)),
    }
}

/// Runs a login shell for the session until it exits, the operator leaves, or `stop` fires.
/// The session survives path drops (`conn` waits for a resume); the shell keeps running.
pub async fn run(
    conn: &mut Resumable,
    size: Option<&TerminalSize>,
    limits: &SessionLimits,
    stop: &Stop,
    recorder: &mut ShellRecorder,
) -> Ended {
    let pair = match native_pty_system().openpty(pty_size(size)) {
        Ok(pair) => pair,
        Err(err) => return Ended::failed(format!("opening a PTY: {err}")),
    };
    let mut command = CommandBuilder::new_default_prog();
    command.env("TERM", "xterm-256color");
    command.env("TUCDESK_SESSION", "1");
    if let Some(home) = std::env::var_os("HOME") {
        command.cwd(home);
    }
    let mut child = match pair.slave.spawn_command(command) {
        Ok(child) => child,
        Err(err) => return Ended::failed(format!("starting the shell: {err}")),
    };
    // Only the child holds the terminal side now, so reads end when it (and its children) exit.
    drop(pair.slave);
    let master = pair.master;
    let mut killer = child.clone_killer();
    let (reader, writer) = match (master.try_clone_reader(), master.take_writer()) {
        (Ok(reader), Ok(writer)) => (reader, writer),
        _ => {
            let _ = killer.kill();
            return Ended::failed("attaching to the PTY".into());
        }
    };

    let (output_tx, mut output_rx) = mpsc::channel::<Vec<u8>>(OUTPUT_QUEUE);
    std::thread::spawn(move || {
        let mut reader = reader;
        let mut buf = vec![0u8; MAX_OUTPUT_CHUNK_LEN];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if output_tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let (input_tx, mut input_rx) = mpsc::channel::<Vec<u8>>(INPUT_QUEUE);
    std::thread::spawn(move || {
        let mut writer = writer;
        while let Some(data) = input_rx.blocking_recv() {
            if writer
                .write_all(&data)
                .and_then(|()| writer.flush())
                .is_err()
            {
                return;
            }
        }
    });
    let (exit_tx, mut exit_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = exit_tx.send(child.wait());
    });

    let mut input_budget = limits.input_bucket();
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    let deadline = tokio::time::sleep(limits.max_duration);
    tokio::pin!(deadline);
    let mut output_open = true;
    let mut exit_status = None;
    let drain = tokio::time::sleep(limits.max_duration);
    tokio::pin!(drain);

    let ended = loop {
        tokio::select! {
            chunk = output_rx.recv(), if output_open && conn.accepts_output() => match chunk {
                Some(data) => {
                    // A PTY read returns a few KiB; what else is already queued rides in the
                    // same frame (up to the 32 KiB limit), so bulk output costs fewer frames.
                    let mut data = data;
                    let mut failed = None;
                    while data.len() < MAX_OUTPUT_CHUNK_LEN {
                        let Ok(more) = output_rx.try_recv() else { break };
                        let room = MAX_OUTPUT_CHUNK_LEN - data.len();
                        if more.len() <= room {
                            data.extend_from_slice(&more);
                            continue;
                        }
                        data.extend_from_slice(&more[..room]);
                        if let Err(why) = recorder.output(&data).await {
                            failed = Some(Err(why));
                            break;
                        }
                        if let Err(err) = conn.output(std::mem::take(&mut data)).await {
                            failed = Some(Ok(err));
                            break;
                        }
                        data = more[room..].to_vec();
                    }
                    match failed {
                        Some(Ok(err)) => break fail(conn, &err).await,
                        Some(Err(why)) => break refuse(conn, CloseReason::Policy, &why).await,
                        None => {}
                    }
                    if let Err(why) = recorder.output(&data).await {
                        break refuse(conn, CloseReason::Policy, &why).await;
                    }
                    if let Err(err) = conn.output(data).await {
                        break fail(conn, &err).await;
                    }
                }
                None => {
                    output_open = false;
                    if let Some(status) = exit_status.take() {
                        break finish(conn, &status).await;
                    }
                }
            },
            status = &mut exit_rx, if exit_status.is_none() => {
                let status = match status {
                    Ok(Ok(status)) => status,
                    _ => portable_pty::ExitStatus::with_exit_code(1),
                };
                if !output_open {
                    break finish(conn, &status).await;
                }
                exit_status = Some(status);
                drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
            },
            () = &mut drain, if exit_status.is_some() => {
                // Something (a background job) still holds the terminal: end without it.
                if let Some(status) = exit_status.take() {
                    break finish(conn, &status).await;
                }
            },
            event = conn.next() => match event {
                Event::Frame(kind) => match kind {
                    frame::Kind::Input(input) => {
                        if input.data.len() > MAX_INPUT_CHUNK_LEN {
                            break refuse(conn, CloseReason::FrameTooLarge, "input chunk too large").await;
                        }
                        if !input_budget.take(input.data.len()) {
                            break refuse(conn, CloseReason::RateLimited, "input rate limit").await;
                        }
                        idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                        if input_tx.send(input.data).await.is_err() {
                            // The writer is gone: the shell is exiting; its status follows.
                        }
                    }
                    frame::Kind::Resize(Resize { cols, rows }) => {
                        let size = TerminalSize { cols, rows };
                        if tucdesk_proto::validate::terminal_size("resize", &size).is_err() {
                            break refuse(conn, CloseReason::ProtocolError, "bad terminal size").await;
                        }
                        let size = pty_size(Some(&size));
                        let _ = master.resize(size);
                        if let Err(why) = recorder.resize(size.cols, size.rows).await {
                            break refuse(conn, CloseReason::Policy, &why).await;
                        }
                        idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                    }
                    frame::Kind::Ping(ping) => {
                        let pong = Frame { kind: Some(frame::Kind::Pong(Pong { nonce: ping.nonce })) };
                        if let Err(err) = conn.control(&pong).await {
                            break fail(conn, &err).await;
                        }
                    }
                    frame::Kind::Resume(resume) => {
                        if let Err(err) = conn.resume_from(resume.last_output_seq).await {
                            break fail(conn, &err).await;
                        }
                    }
                    frame::Kind::OutputAck(ack) => conn.ack(ack.seq),
                    frame::Kind::Pong(_) | frame::Kind::Hello(_) => {}
                    frame::Kind::Close(_) => break Ended::by_operator(),
                    _ => break refuse(conn, CloseReason::ProtocolError, "unexpected frame in a shell session").await,
                },
                Event::Gone => break Ended::gone(),
                Event::Failed(err) => {
                    let reason = err.close_reason();
                    break refuse(conn, reason, &err.to_string()).await;
                }
            },
            () = &mut idle => {
                conn.close(CloseReason::IdleTimeout, "no input for too long").await;
                break Ended::closed(CloseReason::IdleTimeout);
            },
            () = &mut deadline => {
                conn.close(CloseReason::MaxDuration, "the session reached its maximum duration").await;
                break Ended::closed(CloseReason::MaxDuration);
            },
            () = recorder.lost() => {
                if let Err(why) = recorder.on_lost() {
                    break refuse(conn, CloseReason::Policy, &why).await;
                }
            },
            () = stop.cancelled() => {
                let reason = stop.reason();
                conn.close(reason, "the session was ended at the host or by an admin").await;
                break Ended::closed(reason);
            },
        }
    };
    // Whatever ended the session, the shell does not outlive it.
    let _ = killer.kill();
    ended
}

/// Tells the operator why the session ends (when a path is up) and ends it.
async fn refuse(conn: &mut Resumable, reason: CloseReason, why: &str) -> Ended {
    tracing::warn!(reason = reason.as_str_name(), why, "closing a session");
    conn.close(reason, why).await;
    Ended {
        reason,
        message: why.to_owned(),
    }
}

async fn fail(conn: &mut Resumable, err: &tucdesk_transport::ChannelError) -> Ended {
    refuse(conn, err.close_reason(), &err.to_string()).await
}

/// Delivers the rest of the output and the exit status (waiting for a resume if the path is
/// down), then closes.
async fn finish(conn: &mut Resumable, status: &portable_pty::ExitStatus) -> Ended {
    if conn
        .finish(
            Some(exit_frame(status)),
            CloseReason::Normal,
            "the shell exited",
        )
        .await
    {
        Ended::closed(CloseReason::Normal)
    } else {
        Ended::gone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_map_to_their_numbers() {
        assert_eq!(signal_number("Terminated"), 15);
        assert_eq!(signal_number("Killed"), 9);
        assert_eq!(signal_number("Signal 34"), 34);
        assert_eq!(signal_number("Something else"), 0);
    }

    #[test]
    fn sizes_are_clamped_to_the_protocol_bounds() {
        let size = pty_size(Some(&TerminalSize {
            cols: 5000,
            rows: 0,
        }));
        assert_eq!((size.cols, size.rows), (1000, 1));
        let default = pty_size(None);
        assert_eq!((default.cols, default.rows), (80, 24));
    }
}
