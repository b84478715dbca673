//! One interactive client (`tucdesk connect` or `ssh -tt`) as a spawned process with piped
//! stdin, stdout and stderr, driven the same way whichever it is: time to its first byte,
//! keystrokes echoed back by the remote PTY, output read until a marker. Killed on drop.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Read buffer for the client's stdout (bulk output arrives in chunks up to this size).
const READ_BUFFER: usize = 256 * 1024;
/// Longest stderr line kept (longer lines are cut).
const MAX_STDERR_LINE: u64 = 4096;
/// Stderr lines kept for error messages.
const STDERR_LINES: usize = 20;
/// How long a client may take to print its first byte.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the stderr reader may lag behind stdout before the marker line counts as missing.
const MARKER_GRACE: Duration = Duration::from_secs(1);
/// Pause between looks at the stderr reader's state while waiting for the marker line.
const MARKER_POLL: Duration = Duration::from_millis(1);
/// How long a client may take to end after `exit`: drain its output, then wait for it.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the stderr reader saw.
#[derive(Debug, Default)]
struct Stderr {
    lines: VecDeque<String>,
    /// When a line containing the marker arrived.
    marked: Option<Instant>,
}

/// A running client; killed on drop if it has not exited.
#[derive(Debug)]
pub struct Session {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    buf: Vec<u8>,
    stderr: Arc<Mutex<Stderr>>,
    pub pid: u32,
}

/// How long opening took.
#[derive(Debug, Clone, Copy)]
pub struct Opened {
    /// From spawning the process to the first byte on its stdout.
    pub first_byte: Duration,
    /// From spawning the process to the stderr line with the marker, when one was asked for.
    pub marked: Option<Duration>,
}

/// A stream of output read until its marker.
#[derive(Debug, Clone, Copy)]
pub struct Streamed {
    pub elapsed: Duration,
    /// Bytes on the client's stdout from the command to the marker (the echoed command and the
    /// PTY's `\r` before every `\n` included).
    pub stdout_bytes: u64,
}

impl Session {
    /// Spawns `command` and waits for its first byte on stdout. `marker`: a text whose stderr
    /// line is timed as well (the viewer says when the session is open).
    pub async fn open(
        name: &'static str,
        mut command: Command,
        marker: Option<&'static str>,
    ) -> anyhow::Result<(Self, Opened)> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child.id().context("the client exited at once")?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            bail!("{name}: pipes missing");
        };
        let state = Arc::new(Mutex::new(Stderr::default()));
        tokio::spawn(read_stderr(stderr, state.clone(), marker));
        let mut session = Self {
            name,
            child,
            stdin,
            stdout,
            buf: vec![0; READ_BUFFER],
            stderr: state,
            pid,
        };
        session
            .read(OPEN_TIMEOUT)
            .await
            .with_context(|| format!("waiting for {name}'s first byte"))?;
        let first_byte = started.elapsed();
        let marked = match marker {
            Some(marker) => Some(session.marked(started).await.with_context(|| {
                format!(
                    "{name} printed output but no {marker:?} line on stderr:\n{}",
                    session.stderr_tail()
                )
            })?),
            None => None,
        };
        Ok((session, Opened { first_byte, marked }))
    }

    /// The marker line's time after `started` (the stderr reader may lag a little).
    async fn marked(&self, started: Instant) -> Option<Duration> {
        let waiting = Instant::now();
        loop {
            if let Some(at) = lock(&self.stderr).marked {
                return Some(at.saturating_duration_since(started));
            }
            if waiting.elapsed() > MARKER_GRACE {
                return None;
            }
            tokio::time::sleep(MARKER_POLL).await;
        }
    }

    /// Reads what is there (waiting at most `limit`) into the buffer; the byte count.
    async fn read(&mut self, limit: Duration) -> anyhow::Result<usize> {
        match tokio::time::timeout(limit, self.stdout.read(&mut self.buf)).await {
            Err(_) => bail!(
                "{} printed nothing for {limit:?}; its stderr:\n{}",
                self.name,
                self.stderr_tail()
            ),
            Ok(Ok(0)) => bail!(
                "{} ended its output; its stderr:\n{}",
                self.name,
                self.stderr_tail()
            ),
            Ok(Ok(n)) => Ok(n),
            Ok(Err(err)) => Err(err).with_context(|| format!("reading {}'s stdout", self.name)),
        }
    }

    /// Reads until nothing has come for `quiet` (a prompt drawn, a line redrawn), at most
    /// `limit` in all.
    pub async fn settle(&mut self, quiet: Duration, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            match tokio::time::timeout(quiet, self.stdout.read(&mut self.buf)).await {
                Err(_) => return Ok(()),
                Ok(Ok(0)) => bail!(
                    "{} ended its output; its stderr:\n{}",
                    self.name,
                    self.stderr_tail()
                ),
                Ok(Ok(_)) => {}
                Ok(Err(err)) => {
                    return Err(err).with_context(|| format!("reading {}'s stdout", self.name));
                }
            }
            if started.elapsed() > limit {
                bail!("{}'s output did not settle within {limit:?}", self.name);
            }
        }
    }

    /// Writes `bytes` to the client's stdin, as typed.
    pub async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let written = match self.stdin.write_all(bytes).await {
            Ok(()) => self.stdin.flush().await,
            Err(err) => Err(err),
        };
        written.with_context(|| format!("writing to {}'s stdin", self.name))
    }

    /// Types `byte` and waits until it comes back on stdout; the round trip.
    pub async fn echo(&mut self, byte: u8, limit: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.send(&[byte]).await?;
        loop {
            let left = limit.saturating_sub(started.elapsed());
            let n = self
                .read(left)
                .await
                .with_context(|| format!("waiting for the echo of {:?}", char::from(byte)))?;
            if self.buf[..n].contains(&byte) {
                return Ok(started.elapsed());
            }
        }
    }

    /// Types `command` and reads until `marker` appears on stdout (at most `limit`).
    /// `rare` is a byte of the marker that the bulk of the output never contains: chunks
    /// without it are skipped by a fast scan.
    pub async fn stream_until(
        &mut self,
        command: &str,
        marker: &[u8],
        rare: u8,
        limit: Duration,
    ) -> anyhow::Result<Streamed> {
        let keep = marker.len().saturating_sub(1);
        let mut carry: Vec<u8> = Vec::with_capacity(2 * keep);
        let mut stdout_bytes = 0u64;
        let started = Instant::now();
        self.send(command.as_bytes()).await?;
        loop {
            let left = limit.saturating_sub(started.elapsed());
            let n = self
                .read(left)
                .await
                .context("waiting for the end-of-output marker")?;
            stdout_bytes += n as u64;
            let chunk = &self.buf[..n];
            // The marker may straddle two reads: look at the previous tail plus this head.
            carry.extend_from_slice(&chunk[..n.min(keep)]);
            if contains(&carry, marker, rare) || contains(chunk, marker, rare) {
                return Ok(Streamed {
                    elapsed: started.elapsed(),
                    stdout_bytes,
                });
            }
            if n >= keep {
                carry.clear();
                carry.extend_from_slice(&chunk[n - keep..]);
            } else {
                // The whole (short) chunk is in `carry` already: keep its last `keep` bytes.
                carry.drain(..carry.len().saturating_sub(keep));
            }
        }
    }

    /// Types `exit`, drains the output and waits for the process (killing it if it does not
    /// end within [`EXIT_TIMEOUT`]).
    pub async fn finish(mut self) -> anyhow::Result<()> {
        // The client may already be gone (broken pipe): waiting tells.
        let _ = self.send(b"exit\n").await;
        let name = self.name;
        let ended = tokio::time::timeout(EXIT_TIMEOUT, async {
            while self.stdout.read(&mut self.buf).await? > 0 {}
            self.child.wait().await
        })
        .await;
        match ended {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(err).with_context(|| format!("waiting for {name} to end")),
            Err(_) => {
                let _ = self.child.kill().await;
                bail!(
                    "{name} did not end within {EXIT_TIMEOUT:?} after `exit`; its stderr:\n{}",
                    self.stderr_tail()
                )
            }
        }
    }

    fn stderr_tail(&self) -> String {
        let state = lock(&self.stderr);
        state.lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// Whether `haystack` contains `needle`; `rare` (a byte of `needle`) is looked for first with
/// `<[u8]>::contains`, which is a fast byte search.
fn contains(haystack: &[u8], needle: &[u8], rare: u8) -> bool {
    haystack.contains(&rare) && haystack.windows(needle.len()).any(|w| w == needle)
}

fn lock(state: &Mutex<Stderr>) -> std::sync::MutexGuard<'_, Stderr> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Keeps the client's last stderr lines, and notes when a line with `marker` arrives.
async fn read_stderr(
    stderr: tokio::process::ChildStderr,
    state: Arc<Mutex<Stderr>>,
    marker: Option<&'static str>,
) {
    let mut reader = BufReader::new(stderr);
    loop {
        let mut line = Vec::new();
        match (&mut reader)
            .take(MAX_STDERR_LINE)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let at = Instant::now();
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                let mut state = lock(&state);
                if marker.is_some_and(|m| text.contains(m)) && state.marked.is_none() {
                    state.marked = Some(at);
                }
                if state.lines.len() == STDERR_LINES {
                    state.lines.pop_front();
                }
                state.lines.push_back(text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_finds_the_marker_only_when_whole() {
        assert!(contains(b"abcTUCDESK-END-42\r\n", b"TUCDESK-END-42", b'-'));
        assert!(!contains(
            b"abcTUCDESK-END- 42\r\n",
            b"TUCDESK-END-42",
            b'-'
        ));
        assert!(!contains(b"abcdef", b"TUCDESK-END-42", b'-'));
    }
}
