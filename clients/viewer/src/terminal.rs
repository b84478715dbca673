//! The interactive side of `tucdesk connect`: the local terminal in raw mode, keystrokes to
//! the agent, output to the screen, window size changes forwarded, and ssh-style escapes
//! (`~.` disconnects, `~?` lists them) typed at the start of a line.

use std::io::{Read as _, Write as _};
use std::os::fd::AsFd;

use rustix::termios::{OptionalActions, Termios, tcgetattr, tcgetwinsize, tcsetattr};
use tokio::sync::mpsc;
use tucdesk_proto::limits::MAX_INPUT_CHUNK_LEN;
use tucdesk_proto::v1::{CloseReason, Frame, Input, Pong, Resize, TerminalSize, frame};

use crate::resume::{Received, ShellSession};

/// The terminal's size, when stdout is a terminal.
pub fn terminal_size() -> Option<TerminalSize> {
    let size = tcgetwinsize(std::io::stdout().as_fd()).ok()?;
    (size.ws_col > 0 && size.ws_row > 0).then(|| TerminalSize {
        cols: u32::from(size.ws_col).min(1000),
        rows: u32::from(size.ws_row).min(1000),
    })
}

/// Whether stdin is a terminal.
pub fn stdin_is_terminal() -> bool {
    rustix::termios::isatty(std::io::stdin().as_fd())
}

/// Raw mode on stdin for as long as it lives; the previous mode comes back on drop (also on
/// error paths).
pub struct RawMode {
    saved: Termios,
}

impl std::fmt::Debug for RawMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawMode").finish_non_exhaustive()
    }
}

impl RawMode {
    pub fn enable() -> std::io::Result<Self> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(stdin.as_fd(), OptionalActions::Flush, &raw)?;
        Ok(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(
            std::io::stdin().as_fd(),
            OptionalActions::Flush,
            &self.saved,
        );
    }
}

/// What the escape scanner made of typed bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Typed {
    /// Send these bytes.
    Send(Vec<u8>),
    /// `~.`: disconnect.
    Disconnect,
    /// `~?`: show the escapes (bytes before it are sent).
    Help(Vec<u8>),
}

/// The `~` escape state machine, as ssh has it: `~` is special only right after Enter (or at
/// the very start).
#[derive(Debug)]
pub struct EscapeScanner {
    at_line_start: bool,
    tilde: bool,
}

impl Default for EscapeScanner {
    fn default() -> Self {
        Self {
            at_line_start: true,
            tilde: false,
        }
    }
}

impl EscapeScanner {
    pub fn feed(&mut self, input: &[u8]) -> Vec<Typed> {
        let mut out = Vec::new();
        let mut pending = Vec::with_capacity(input.len());
        for &byte in input {
            if self.tilde {
                self.tilde = false;
                match byte {
                    b'.' => {
                        if !pending.is_empty() {
                            out.push(Typed::Send(std::mem::take(&mut pending)));
                        }
                        out.push(Typed::Disconnect);
                        return out;
                    }
                    b'?' => {
                        out.push(Typed::Help(std::mem::take(&mut pending)));
                        self.at_line_start = false;
                        continue;
                    }
                    b'~' => pending.push(b'~'),
                    other => {
                        pending.push(b'~');
                        pending.push(other);
                    }
                }
                self.at_line_start = byte == b'\r' || byte == b'\n';
                continue;
            }
            if self.at_line_start && byte == b'~' {
                self.tilde = true;
                continue;
            }
            pending.push(byte);
            self.at_line_start = byte == b'\r' || byte == b'\n';
        }
        if !pending.is_empty() {
            out.push(Typed::Send(pending));
        }
        out
    }
}

const HELP: &str = "\r\nSupported escape sequences (after Enter):\r\n  ~.  disconnect\r\n  ~?  this help\r\n  ~~  send a literal ~\r\n";

/// How the interactive session ended.
#[derive(Debug)]
pub enum Outcome {
    /// The remote shell exited with this code (128 + signal for a signal).
    Exited(i32),
    /// The user typed `~.`.
    Disconnected,
    /// The agent closed the session with a reason.
    Closed(CloseReason, String),
    /// The connection ended without a Close.
    Lost(String),
}

fn frame(kind: frame::Kind) -> Frame {
    Frame { kind: Some(kind) }
}

/// Runs the interactive session until it ends; a dropped path is resumed on the way.
pub async fn interact(session: &mut ShellSession<'_>) -> Outcome {
    let (keys_tx, mut keys) = mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; MAX_INPUT_CHUNK_LEN];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if keys_tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut winch =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
    let mut scanner = EscapeScanner::default();
    let mut stdout = std::io::stdout();
    let mut exit_code = None;
    let mut stdin_open = true;
    let mut keepalive = tokio::time::interval(crate::resume::KEEPALIVE / 2);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = keepalive.tick() => {
                if let Err(err) = session.keep_alive().await {
                    return Outcome::Lost(err.to_string());
                }
            }
            typed = keys.recv(), if stdin_open => {
                let Some(typed) = typed else {
                    stdin_open = false;
                    continue;
                };
                for action in scanner.feed(&typed) {
                    match action {
                        Typed::Send(data) => {
                            if let Err(err) = session.send(&frame(frame::Kind::Input(Input { data }))).await {
                                return Outcome::Lost(err.to_string());
                            }
                        }
                        Typed::Help(data) => {
                            if !data.is_empty()
                                && let Err(err) = session.send(&frame(frame::Kind::Input(Input { data }))).await
                            {
                                return Outcome::Lost(err.to_string());
                            }
                            let _ = stdout.write_all(HELP.as_bytes());
                            let _ = stdout.flush();
                        }
                        Typed::Disconnect => {
                            session.close(CloseReason::Normal, "disconnected by the user").await;
                            return Outcome::Disconnected;
                        }
                    }
                }
            }
            Some(()) = async { match winch.as_mut() { Some(w) => w.recv().await, None => std::future::pending().await } } => {
                if let Some(size) = terminal_size() {
                    let resize = frame(frame::Kind::Resize(Resize { cols: size.cols, rows: size.rows }));
                    if let Err(err) = session.send(&resize).await {
                        return Outcome::Lost(err.to_string());
                    }
                }
            }
            incoming = session.recv() => match incoming {
                Received::Frame(kind) => match kind {
                    frame::Kind::Output(output) => {
                        if session.fresh(&output) {
                            let _ = stdout.write_all(&output.data);
                            let _ = stdout.flush();
                        }
                        if let Err(err) = session.acknowledge().await {
                            return Outcome::Lost(err.to_string());
                        }
                    }
                    frame::Kind::Exit(exit) => {
                        exit_code = Some(exit.exit_code.unwrap_or_else(|| 128 + exit.signal.unwrap_or(0)));
                    }
                    frame::Kind::Resumed(resumed) if resumed.truncated => {
                        eprint!("\r\ntucdesk: some output from while the connection was down could not be kept\r\n");
                    }
                    frame::Kind::Ping(ping) => {
                        let _ = session.send(&frame(frame::Kind::Pong(Pong { nonce: ping.nonce }))).await;
                    }
                    frame::Kind::Close(close) => {
                        let reason = CloseReason::try_from(close.reason).unwrap_or(CloseReason::Unspecified);
                        return match exit_code {
                            Some(code) if reason == CloseReason::Normal => Outcome::Exited(code),
                            _ => Outcome::Closed(reason, tucdesk_transport::ws::printable(&close.message)),
                        };
                    }
                    _ => {}
                },
                Received::Dropped(why) => {
                    if let Some(code) = exit_code {
                        // The exit status arrived; only the Close was lost.
                        return Outcome::Exited(code);
                    }
                    if let Err(err) = session.resume(&why).await {
                        return Outcome::Lost(err.to_string());
                    }
                }
                Received::Failed(err) => return Outcome::Lost(err.to_string()),
            },
        }
    }
}

/// Reads a line from the terminal without echo (for passwords).
pub fn read_secret(prompt: &str) -> std::io::Result<zeroize::Zeroizing<String>> {
    let stdin = std::io::stdin();
    let mut stderr = std::io::stderr();
    stderr.write_all(prompt.as_bytes())?;
    stderr.flush()?;
    let saved = tcgetattr(stdin.as_fd())?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
    tcsetattr(stdin.as_fd(), OptionalActions::Flush, &quiet)?;
    let mut line = zeroize::Zeroizing::new(String::new());
    let read = std::io::BufRead::read_line(&mut stdin.lock(), &mut line);
    let _ = tcsetattr(stdin.as_fd(), OptionalActions::Flush, &saved);
    stderr.write_all(b"\n")?;
    read?;
    let trimmed = zeroize::Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned());
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde_dot_after_enter_disconnects() {
        let mut scanner = EscapeScanner::default();
        assert_eq!(
            scanner.feed(b"ls\r~."),
            vec![Typed::Send(b"ls\r".to_vec()), Typed::Disconnect]
        );
    }

    #[test]
    fn a_tilde_inside_a_line_is_plain_input() {
        let mut scanner = EscapeScanner::default();
        assert_eq!(scanner.feed(b"cd ~."), vec![Typed::Send(b"cd ~.".to_vec())]);
    }

    #[test]
    fn double_tilde_sends_one_and_help_is_local() {
        let mut scanner = EscapeScanner::default();
        assert_eq!(scanner.feed(b"~~x"), vec![Typed::Send(b"~x".to_vec())]);
        let mut scanner = EscapeScanner::default();
        assert_eq!(scanner.feed(b"~?"), vec![Typed::Help(Vec::new())]);
        // The escape may arrive split across reads.
        let mut scanner = EscapeScanner::default();
        assert_eq!(scanner.feed(b"\n~"), vec![Typed::Send(b"\n".to_vec())]);
        assert_eq!(scanner.feed(b"."), vec![Typed::Disconnect]);
    }
}
