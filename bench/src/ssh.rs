//! `ssh`: interactive sessions of TucDesk against OpenSSH, measured the same way in the same
//! run on loopback: how long a new session takes to show its first byte, how long a keystroke
//! takes to come back (the remote PTY's echo), and how fast a large output arrives.
//!
//! TucDesk ([`stack`]): `tucdesk-standalone` (auth, rendezvous, relay), one enrolled
//! `tucdesk-agent`, and `tucdesk connect` as the client, the release binaries next to this
//! one. OpenSSH ([`openssh`]): a throwaway `sshd` with keys made for the run, and `ssh -tt`.
//! Each client is a process with piped stdin and stdout (no local terminal; the remote side
//! has a PTY in both cases), driven by the same code ([`client`]). Everything lives in a
//! temporary directory removed at the end; every process is killed when the run ends, fails
//! or is interrupted.

mod client;
mod openssh;
mod payload;
mod report;
mod stack;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tokio::io::AsyncWriteExt as _;

use crate::probe::{self, Proc};
use client::{Opened, Session};
use openssh::OpenSsh;
use report::Figures;
use stack::TucDesk;

/// Most session setups per client.
pub const MAX_RUNS: usize = 100;
/// Most keystroke samples per client.
pub const MAX_SAMPLES: usize = 5000;
/// Largest output streamed, in MB. The standalone relay allows a session 64 MiB/s sustained
/// with a 128 MiB burst and closes one throttled for 10 s as a flood: up to 100 MB fits in the
/// burst, so the figure is TucDesk's and not the relay's default limit.
pub const MAX_FILE_MB: u64 = 100;
/// Most streams per client. A stream of 100 MB takes the relay's per-session bucket down by
/// what is sent faster than 64 MiB/s; the other client's turn refills it.
pub const MAX_STREAMS: usize = 10;
/// Longest whole run: every step has its own bound, and this one caps their sum (a default run
/// takes about half a minute; the largest options, a few minutes).
const RUN_LIMIT: Duration = Duration::from_secs(15 * 60);
/// Pause after each setup run, so that the servers have finished with the last session.
const SETUP_PAUSE: Duration = Duration::from_millis(200);
/// A prompt has settled once nothing has come for this long.
const PROMPT_QUIET: Duration = Duration::from_millis(500);
/// A line has been redrawn once nothing has come for this long.
const REDRAW_QUIET: Duration = Duration::from_millis(100);
/// Longest wait for output to settle.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);
/// The key typed for the echo round trip, and the pause between two samples.
const ECHO_BYTE: u8 = b'x';
const ECHO_PAUSE: Duration = Duration::from_millis(5);
/// Longest wait for one echo.
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);
/// Ctrl-U (kill the line), typed before every block of [`LINE_RESET_EVERY`] samples (the line
/// stays short) and before every stream.
const KILL_LINE: u8 = 0x15;
const LINE_RESET_EVERY: usize = 20;
/// Longest wait for the whole output (100 MB at 1 MB/s would still fit).
const STREAM_TIMEOUT: Duration = Duration::from_secs(180);
/// The end-of-output marker's fixed part. `-` is not in the base64 alphabet, so the file
/// cannot contain it; the command line spells it with a space before the nonce, so its echo
/// does not contain it either.
const MARKER_PREFIX: &str = "TUCDESK-END-";
const MARKER_RARE_BYTE: u8 = b'-';

/// The session path a TucDesk client is forced onto (`tucdesk connect --path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionPath {
    Direct,
    Turn,
    Ws,
}

impl SessionPath {
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "direct" => Ok(Self::Direct),
            "turn" => Ok(Self::Turn),
            "ws" => Ok(Self::Ws),
            other => Err(format!("{other:?}: expected direct, turn or ws")),
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Turn => "turn",
            Self::Ws => "ws",
        }
    }

    fn client_name(self) -> &'static str {
        match self {
            Self::Direct => "tucdesk (direct)",
            Self::Turn => "tucdesk (TURN)",
            Self::Ws => "tucdesk (WS relay)",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub runs: usize,
    pub samples: usize,
    pub file_mb: u64,
    pub streams: usize,
    /// Both remote shells get `HOME` set to an empty directory, so that neither reads the
    /// user's rc files: session setup without the user's shell start-up in it.
    pub lean_shell: bool,
    /// The paths TucDesk is measured over, each as its own client beside ssh (TURN needs the
    /// stack's coturn: `tucdesk-standalone --turn`).
    pub paths: Vec<SessionPath>,
}

/// The clients, in the order each measurement runs them: TucDesk once per path, then ssh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    TucDesk(SessionPath),
    OpenSsh,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::TucDesk(path) => path.client_name(),
            Tool::OpenSsh => "ssh",
        }
    }
}

/// Both sides, running.
#[derive(Debug)]
struct Sides {
    tucdesk: TucDesk,
    ssh: OpenSsh,
}

impl Sides {
    async fn open(&self, tool: Tool) -> anyhow::Result<(Session, Opened)> {
        match tool {
            Tool::TucDesk(path) => {
                Session::open(
                    tool.name(),
                    self.tucdesk.client(path.arg()),
                    Some(stack::OPENED_MARKER),
                )
                .await
            }
            Tool::OpenSsh => Session::open(tool.name(), self.ssh.client(), None).await,
        }
    }

    /// The server-side processes of `tool` whose CPU is counted during the stream, by part
    /// (the remote shell and `cat` are left out: they do the same work for both).
    fn server_parts(&mut self, tool: Tool) -> anyhow::Result<Vec<(&'static str, Vec<u32>)>> {
        match tool {
            Tool::TucDesk(_) => {
                self.tucdesk.check_alive()?;
                let mut parts = vec![
                    ("tucdesk-standalone", vec![self.tucdesk.standalone_pid]),
                    ("tucdesk-agent", vec![self.tucdesk.agent_pid]),
                ];
                if let Some(turn) = self.tucdesk.turn_pids() {
                    parts.push(("coturn", turn));
                }
                Ok(parts)
            }
            Tool::OpenSsh => Ok(vec![("sshd (connection)", self.ssh.connection_pids()?)]),
        }
    }
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    if options.runs == 0 || options.runs > MAX_RUNS {
        bail!("--runs must be between 1 and {MAX_RUNS}");
    }
    if options.samples == 0 || options.samples > MAX_SAMPLES {
        bail!("--samples must be between 1 and {MAX_SAMPLES}");
    }
    if options.file_mb == 0 || options.file_mb > MAX_FILE_MB {
        bail!("--file-mb must be between 1 and {MAX_FILE_MB}");
    }
    if options.streams == 0 || options.streams > MAX_STREAMS {
        bail!("--streams must be between 1 and {MAX_STREAMS}");
    }
    if options.paths.is_empty() || options.paths.len() > 3 {
        bail!("--paths takes one to three of direct, turn, ws");
    }
    // Everything that can be missing is looked for before anything starts.
    let tools = openssh::Tools::find()?;
    let binaries = stack::Binaries::find()?;
    let dir = tempfile::Builder::new()
        .prefix("tucdesk-bench-ssh-")
        .tempdir()
        .context("creating the temporary directory")?;
    let result = crate::phase::within(
        "ssh",
        RUN_LIMIT,
        measure(options, &tools, &binaries, dir.path()),
    )
    .await
    .map(drop);
    // Every process was killed when `measure` returned (its guards dropped).
    let removed = dir.close().context("removing the temporary directory");
    result?;
    removed
}

async fn measure(
    options: Options,
    tools: &openssh::Tools,
    binaries: &stack::Binaries,
    dir: &Path,
) -> anyhow::Result<()> {
    let clients: Vec<Tool> = options
        .paths
        .iter()
        .map(|path| Tool::TucDesk(*path))
        .chain([Tool::OpenSsh])
        .collect();
    println!(
        "ssh: tucdesk connect --path {} (→ tucdesk-standalone → tucdesk-agent) vs ssh -tt \
         (→ sshd), all on loopback; {} setups, {} keystrokes and {} × {} MB of output per \
         client; shells: {}",
        options
            .paths
            .iter()
            .map(|p| p.arg())
            .collect::<Vec<_>>()
            .join("|"),
        options.runs,
        options.samples,
        options.streams,
        options.file_mb,
        if options.lean_shell {
            "lean (empty HOME)"
        } else {
            "the user's login shell as configured"
        }
    );
    let file_bytes = options.file_mb * 1_000_000;
    let payload = dir.join("payload.b64");
    payload::write(&payload, file_bytes)?;
    let payload = payload
        .to_str()
        .filter(|p| !p.contains(['\'', '\\']) && !p.contains(char::is_whitespace))
        .context("the temporary directory's path is not safe to type in a shell")?
        .to_owned();
    let home = if options.lean_shell {
        let home = dir.join("home");
        std::fs::create_dir(&home).context("creating the empty home directory")?;
        println!(
            "  lean shell: both remote shells run with HOME={} (no rc file of the user)",
            home.display()
        );
        Some(home)
    } else {
        None
    };
    let ssh = OpenSsh::start(tools, &dir.join("openssh"), home.as_deref()).await?;
    println!("  openssh: sshd on 127.0.0.1:{}", ssh.port);
    let turn = options.paths.contains(&SessionPath::Turn);
    let tucdesk = TucDesk::start(binaries, &dir.join("tucdesk"), home.as_deref(), turn).await?;
    println!(
        "  tucdesk: standalone stack pid {}, agent {:?} pid {} online",
        tucdesk.standalone_pid,
        stack::AGENT_NAME,
        tucdesk.agent_pid
    );
    let mut sides = Sides { tucdesk, ssh };
    let mut figures: Vec<Figures> = clients.iter().map(|_| Figures::default()).collect();

    println!(
        "  session setup: {} runs per client, alternating, after one warm-up each",
        options.runs
    );
    for round in 0..=options.runs {
        for (tool, figures) in clients.iter().copied().zip(figures.iter_mut()) {
            let (session, opened) = sides.open(tool).await?;
            session.finish().await?;
            if round > 0 {
                figures.setups.push(opened.first_byte);
                figures.opened.extend(opened.marked);
            }
            tokio::time::sleep(SETUP_PAUSE).await;
        }
    }

    // One session per client for the rest, both open at once, so that the two clients take
    // turns and a change in the machine's background load falls on both alike.
    let mut sessions = Vec::new();
    for tool in clients.iter().copied() {
        let (mut session, _) = sides.open(tool).await?;
        session.settle(PROMPT_QUIET, SETTLE_LIMIT).await?;
        sessions.push(session);
    }
    println!(
        "  keystrokes: {} per client, in alternating blocks of {LINE_RESET_EVERY}",
        options.samples
    );
    let mut taken = 0;
    while taken < options.samples {
        let block = LINE_RESET_EVERY.min(options.samples - taken);
        for (session, figures) in sessions.iter_mut().zip(figures.iter_mut()) {
            echo_block(session, block, &mut figures.echoes).await?;
        }
        taken += block;
    }
    println!(
        "  output: {} × {} MB per client, alternating",
        options.streams, options.file_mb
    );
    for _ in 0..options.streams {
        for ((tool, session), figures) in clients
            .iter()
            .copied()
            .zip(sessions.iter_mut())
            .zip(figures.iter_mut())
        {
            stream(&mut sides, tool, session, &payload, figures).await?;
        }
    }
    for session in sessions {
        session.finish().await?;
    }
    sides.tucdesk.check_alive()?;
    let Some((ssh, ours)) = figures.split_last() else {
        bail!("no client was measured");
    };
    for (tool, tucdesk) in clients.iter().zip(ours) {
        report::print(tool.name(), tucdesk, ssh, file_bytes);
    }
    Ok(())
}

/// Empties the line (Ctrl-U), then times `count` keystrokes.
async fn echo_block(
    session: &mut Session,
    count: usize,
    echoes: &mut Vec<Duration>,
) -> anyhow::Result<()> {
    session.send(&[KILL_LINE]).await?;
    session.settle(REDRAW_QUIET, SETTLE_LIMIT).await?;
    for _ in 0..count {
        echoes.push(session.echo(ECHO_BYTE, ECHO_TIMEOUT).await?);
        tokio::time::sleep(ECHO_PAUSE).await;
    }
    Ok(())
}

/// Empties the line, then `cat`s the payload and reads until the marker, with the CPU the
/// client and the server side used meanwhile.
async fn stream(
    sides: &mut Sides,
    tool: Tool,
    session: &mut Session,
    payload: &str,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    session.send(&[KILL_LINE]).await?;
    session.settle(REDRAW_QUIET, SETTLE_LIMIT).await?;
    let nonce = format!("{:08x}", uuid::Uuid::new_v4().as_u128() as u32);
    let marker = format!("{MARKER_PREFIX}{nonce}");
    let command = format!("cat {payload}; printf '\\n%s%s\\n' {MARKER_PREFIX} {nonce}\n");
    let client = [session.pid];
    let server = sides.server_parts(tool)?;
    let mut before = Vec::new();
    for (_, pids) in &server {
        before.push(cpu(pids)?);
    }
    let client_before = cpu(&client)?;
    let streamed = session
        .stream_until(
            &command,
            marker.as_bytes(),
            MARKER_RARE_BYTE,
            STREAM_TIMEOUT,
        )
        .await?;
    figures.client_cpu += cpu(&client)? - client_before;
    for ((part, pids), before) in server.iter().zip(before) {
        figures.add_server_cpu(part, cpu(pids)? - before);
    }
    figures.streams.push(streamed);
    Ok(())
}

/// Runs a short setup command to its end (at most `limit`), `stdin` written to it; its stdout,
/// or an error with its stderr.
async fn output(
    mut command: tokio::process::Command,
    what: &str,
    stdin: Option<&[u8]>,
    limit: Duration,
) -> anyhow::Result<String> {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().with_context(|| format!("running {what}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input)
            .await
            .with_context(|| format!("writing to {what}"))?;
        // Dropping the pipe closes it: the command sees the end of its input.
    }
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("{what} did not finish within {limit:?}"))?
        .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// CPU seconds used so far by these processes together.
fn cpu(pids: &[u32]) -> anyhow::Result<f64> {
    pids.iter()
        .map(|&pid| probe::cpu_seconds(Proc::Pid(pid)))
        .sum()
}
