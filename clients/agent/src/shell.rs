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
use tucdesk_proto::v1::{
    CloseReason, Exit, Frame, Output, Pong, Resize, Resumed, TerminalSize, frame,
};
use tucdesk_transport::{SessionReceiver, SessionSender};

use crate::recording::ShellRecorder;
use crate::session::{Ended, SessionLimits, Stop, protocol_error};

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
pub async fn run(
    sender: &mut SessionSender,
    receiver: &mut SessionReceiver,
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

    let mut seq = 0u64;
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
            chunk = output_rx.recv(), if output_open => match chunk {
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
                        if let Err(err) = send_output(sender, &mut seq, std::mem::take(&mut data)).await {
                            failed = Some(Ok(err));
                            break;
                        }
                        data = more[room..].to_vec();
                    }
                    match failed {
                        Some(Ok(err)) => break Ended::transport(err),
                        Some(Err(why)) => break protocol_error(sender, CloseReason::Policy, &why).await,
                        None => {}
                    }
                    if let Err(why) = recorder.output(&data).await {
                        break protocol_error(sender, CloseReason::Policy, &why).await;
                    }
                    if let Err(err) = send_output(sender, &mut seq, data).await {
                        break Ended::transport(err);
                    }
                }
                None => {
                    output_open = false;
                    if let Some(status) = exit_status.take() {
                        break finish(sender, &status).await;
                    }
                }
            },
            status = &mut exit_rx, if exit_status.is_none() => {
                let status = match status {
                    Ok(Ok(status)) => status,
                    _ => portable_pty::ExitStatus::with_exit_code(1),
                };
                if !output_open {
                    break finish(sender, &status).await;
                }
                exit_status = Some(status);
                drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
            },
            () = &mut drain, if exit_status.is_some() => {
                // Something (a background job) still holds the terminal: end without it.
                if let Some(status) = exit_status.take() {
                    break finish(sender, &status).await;
                }
            },
            frame = receiver.recv() => match frame {
                Ok(Some(Frame { kind: Some(kind) })) => match kind {
                    frame::Kind::Input(input) => {
                        if input.data.len() > MAX_INPUT_CHUNK_LEN {
                            break protocol_error(sender, CloseReason::FrameTooLarge, "input chunk too large").await;
                        }
                        if !input_budget.take(input.data.len()) {
                            break protocol_error(sender, CloseReason::RateLimited, "input rate limit").await;
                        }
                        idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                        if input_tx.send(input.data).await.is_err() {
                            // The writer is gone: the shell is exiting; its status follows.
                        }
                    }
                    frame::Kind::Resize(Resize { cols, rows }) => {
                        let size = TerminalSize { cols, rows };
                        if tucdesk_proto::validate::terminal_size("resize", &size).is_err() {
                            break protocol_error(sender, CloseReason::ProtocolError, "bad terminal size").await;
                        }
                        let size = pty_size(Some(&size));
                        let _ = master.resize(size);
                        if let Err(why) = recorder.resize(size.cols, size.rows).await {
                            break protocol_error(sender, CloseReason::Policy, &why).await;
                        }
                        idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                    }
                    frame::Kind::Ping(ping) => {
                        let pong = Frame { kind: Some(frame::Kind::Pong(Pong { nonce: ping.nonce })) };
                        if let Err(err) = sender.send(&pong).await {
                            break Ended::transport(err);
                        }
                    }
                    frame::Kind::Resume(resume) => {
                        // Output is not replayed yet (session resume comes with the ICE paths):
                        // say honestly where output continues.
                        let resumed = Frame { kind: Some(frame::Kind::Resumed(Resumed {
                            first_seq: seq + 1,
                            truncated: seq > resume.last_output_seq,
                        })) };
                        if let Err(err) = sender.send(&resumed).await {
                            break Ended::transport(err);
                        }
                    }
                    frame::Kind::Pong(_) | frame::Kind::OutputAck(_) | frame::Kind::Hello(_) => {}
                    frame::Kind::Close(_) => break Ended::by_operator(),
                    _ => break protocol_error(sender, CloseReason::ProtocolError, "unexpected frame in a shell session").await,
                },
                Ok(Some(Frame { kind: None })) => {}
                Ok(None) => break Ended::gone(),
                Err(err) => {
                    let reason = err.close_reason();
                    break protocol_error(sender, reason, &err.to_string()).await;
                }
            },
            () = &mut idle => {
                sender.close(CloseReason::IdleTimeout, "no input for too long").await;
                break Ended::closed(CloseReason::IdleTimeout);
            },
            () = &mut deadline => {
                sender.close(CloseReason::MaxDuration, "the session reached its maximum duration").await;
                break Ended::closed(CloseReason::MaxDuration);
            },
            () = recorder.lost() => {
                if let Err(why) = recorder.on_lost() {
                    break protocol_error(sender, CloseReason::Policy, &why).await;
                }
            },
            () = stop.cancelled() => {
                let reason = stop.reason();
                sender.close(reason, "the session was ended at the host or by an admin").await;
                break Ended::closed(reason);
            },
        }
    };
    // Whatever ended the session, the shell does not outlive it.
    let _ = killer.kill();
    ended
}

/// Sends one `Output` frame with the next sequence number.
async fn send_output(
    sender: &mut SessionSender,
    seq: &mut u64,
    data: Vec<u8>,
) -> Result<(), tucdesk_transport::ChannelError> {
    *seq += 1;
    let frame = Frame {
        kind: Some(frame::Kind::Output(Output { seq: *seq, data })),
    };
    sender.send(&frame).await
}

async fn finish(sender: &mut SessionSender, status: &portable_pty::ExitStatus) -> Ended {
    if let Err(err) = sender.send(&exit_frame(status)).await {
        return Ended::transport(err);
    }
    sender.close(CloseReason::Normal, "the shell exited").await;
    Ended::closed(CloseReason::Normal)
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
