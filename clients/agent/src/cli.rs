//! The `tucdesk-agent` command line: enroll this host, run its link to rendezvous, or serve one attended
//! support session.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::consent::{Consent, TerminalPrompt};
use crate::enroll::{EnrollArgs, enroll};
use crate::session::SessionLimits;
use crate::{Agent, AgentOptions, LocalLimits, StateDir};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tucdesk_transport::DialOptions;

/// TucDesk agent: gives authorized operators end-to-end encrypted terminal sessions on this
/// host, after checking every request itself.
///
/// Typical use: `tucdesk-agent enroll --server https://rdv.example.com --token XXXX-XXXX-XXXX`
/// once, then `tucdesk-agent run` as a service.
#[derive(Debug, Parser)]
#[command(name = "tucdesk-agent", version, about, long_about)]
struct Cli {
    /// Where the identity key and enrollment record live.
    #[arg(long, env = "TUCDESK_AGENT_STATE_DIR", global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create this host's identity and enroll it with a single-use enrollment token
    /// (`tucdesk enroll-token create`). Prints the fingerprint operators will see.
    Enroll {
        #[command(flatten)]
        server: ServerArgs,
        /// The enrollment token ("XXXX-XXXX-XXXX").
        #[arg(long, env = "TUCDESK_ENROLLMENT_TOKEN", hide_env_values = true)]
        token: String,
        /// Display name (default: the hostname).
        #[arg(long)]
        name: Option<String>,
        /// Tags to request, comma separated (the token decides which are kept).
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Stay connected to rendezvous and serve sessions (run this as a service).
    Run {
        #[command(flatten)]
        run: RunArgs,
    },
    /// One attended support session with a throwaway identity: enrolls with CODE (an
    /// enrollment token the support team gives you), asks you before anyone gets in, serves
    /// one session, then exits and forgets the identity.
    Support {
        #[command(flatten)]
        server: ServerArgs,
        /// The code the support team gave you.
        #[arg(long)]
        code: String,
        /// Name shown to the technician (default: the hostname).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Print this host's fingerprint (SHA256:…), as operators see it.
    Fingerprint,
    /// Show the enrollment and whether rendezvous answers.
    Status,
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// Rendezvous URL (https://…, or http://127.0.0.1:PORT for a local standalone stack).
    #[arg(long, env = "TUCDESK_SERVER")]
    server: String,
    /// Extra CA certificate (PEM) for a server with a private CA.
    #[arg(long, env = "TUCDESK_CA_FILE")]
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct LimitArgs {
    /// Refuse interactive shells on this host.
    #[arg(long)]
    no_shell: bool,
    /// Refuse single commands (exec) on this host.
    #[arg(long)]
    no_exec: bool,
    /// Ask the person at this host before every session (needs a terminal).
    #[arg(long)]
    attended: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Sessions served at once.
    #[arg(long, default_value_t = 16)]
    max_sessions: usize,
    /// A shell without input for this many seconds is closed.
    #[arg(long, default_value_t = 3600)]
    idle_timeout_secs: u64,
    /// When a shell's path drops (a relay restarts, a network changes), how many seconds the
    /// shell keeps running while the viewer resumes it over another path; 0 ends it at once.
    #[arg(long, env = "TUCDESK_RESUME_GRACE_SECS", default_value_t = 60)]
    resume_grace_secs: u64,
    /// Allow plain ws:// to a relay that is not on loopback (tests, labs).
    #[arg(long, hide = true)]
    allow_plain_relay: bool,
    /// Local UDP addresses for direct and TURN paths (comma separated, port 0 = any). The
    /// default binds every non-loopback interface; give 127.0.0.1:0 for a stack on loopback.
    #[arg(long, env = "TUCDESK_ICE_BIND", value_delimiter = ',')]
    ice_bind: Vec<std::net::SocketAddr>,
    /// Seconds a direct or TURN path may take to connect before only the WebSocket relay is
    /// used.
    #[arg(long, env = "TUCDESK_P2P_TIMEOUT_SECS", default_value_t = 10)]
    p2p_timeout_secs: u64,
}

/// The command line program: parses the arguments and runs the command on a new runtime.
pub fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tucdesk-agent: starting the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(main_async())
}

async fn main_async() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Run { .. } | Command::Support { .. }) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tucdesk-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn options(
    run: &RunArgs,
    consent: Consent,
    quota: Option<usize>,
    recordings: crate::recording::Recordings,
) -> AgentOptions {
    AgentOptions {
        max_sessions: run.max_sessions.clamp(1, 1024),
        limits: SessionLimits {
            idle_timeout: Duration::from_secs(run.idle_timeout_secs.max(1)),
            resume_grace: Duration::from_secs(run.resume_grace_secs.min(24 * 60 * 60)),
            ..SessionLimits::default()
        },
        consent,
        dial: DialOptions {
            tls: None,
            allow_plain_remote: run.allow_plain_relay,
        },
        p2p: p2p_options(&run.ice_bind, run.p2p_timeout_secs),
        session_quota: quota,
        recordings: Some(recordings),
    }
}

/// The direct/TURN settings from the command line (defaults for what is not given).
pub fn p2p_options(bind: &[std::net::SocketAddr], timeout_secs: u64) -> tucdesk_p2p::P2pOptions {
    let mut options = tucdesk_p2p::P2pOptions {
        connect_deadline: Duration::from_secs(timeout_secs.clamp(1, 120)),
        ..tucdesk_p2p::P2pOptions::default()
    };
    if !bind.is_empty() {
        options.udp_addrs = bind.to_vec();
    }
    options
}

fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        trigger.cancel();
    });
    token
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let state = StateDir::new(cli.state_dir.clone().unwrap_or_else(StateDir::default_path));
    match cli.command {
        Command::Enroll {
            server,
            token,
            name,
            tags,
            limits,
        } => {
            let enrollment = enroll(
                &state,
                EnrollArgs {
                    server: server.server,
                    token,
                    name,
                    tags,
                    limits: LocalLimits {
                        allow_shell: !limits.no_shell,
                        allow_exec: !limits.no_exec,
                        attended: limits.attended,
                    },
                    ca_file: server.ca_file,
                },
            )
            .await?;
            println!(
                "enrolled:    {} in team {}",
                enrollment.name, enrollment.team_id
            );
            println!("agent id:    {}", enrollment.agent_id);
            println!("fingerprint: {}", enrollment.fingerprint);
            println!("state dir:   {}", state.root().display());
            println!("Next: `tucdesk-agent run` (as a service) to accept sessions.");
            Ok(())
        }
        Command::Run { run } => {
            let (enrollment, identity) = state.load()?;
            let consent = if enrollment.limits.attended {
                TerminalPrompt::open().map_or(Consent::Unavailable, Consent::Terminal)
            } else {
                Consent::Unavailable
            };
            let recordings = crate::recording::Recordings::new(
                state.recordings_dir(),
                enrollment.ca_file.clone(),
            );
            let agent = Agent::new(
                identity,
                enrollment,
                options(&run, consent, None, recordings),
            );
            agent.run(shutdown_on_signals()).await?;
            Ok(())
        }
        Command::Support {
            server,
            code,
            name,
            run,
        } => {
            let prompt = TerminalPrompt::open().ok_or_else(|| {
                anyhow::anyhow!("support mode asks you before anyone gets in: run it in a terminal")
            })?;
            // A throwaway identity: it lives in a private temporary directory removed at exit.
            let dir = std::env::temp_dir().join(format!("tucdesk-support-{}", std::process::id()));
            let throwaway = StateDir::new(dir.clone());
            let result = async {
                let enrollment = enroll(
                    &throwaway,
                    EnrollArgs {
                        server: server.server,
                        token: code,
                        name,
                        tags: Vec::new(),
                        limits: LocalLimits {
                            allow_shell: true,
                            allow_exec: true,
                            attended: true,
                        },
                        ca_file: server.ca_file,
                    },
                )
                .await?;
                println!(
                    "Waiting for the support technician. This machine is {} ({}).",
                    enrollment.name, enrollment.fingerprint
                );
                println!("You will be asked before anyone gets in. Ctrl-C ends support mode.");
                let (enrollment, identity) = throwaway.load()?;
                // Recordings of a support session live (and are uploaded) while support mode
                // runs; the throwaway directory goes with it.
                let recordings = crate::recording::Recordings::new(
                    throwaway.recordings_dir(),
                    enrollment.ca_file.clone(),
                );
                let agent = Agent::new(
                    identity,
                    enrollment,
                    options(&run, Consent::Terminal(prompt), Some(1), recordings),
                );
                agent.run(shutdown_on_signals()).await?;
                anyhow::Ok(())
            }
            .await;
            let _ = std::fs::remove_dir_all(&dir);
            result
        }
        Command::Fingerprint => {
            let (enrollment, _) = state.load()?;
            println!("{}", enrollment.fingerprint);
            Ok(())
        }
        Command::Status => {
            let (enrollment, _) = state.load()?;
            println!("name:        {}", enrollment.name);
            println!("agent id:    {}", enrollment.agent_id);
            println!("fingerprint: {}", enrollment.fingerprint);
            println!("team:        {}", enrollment.team_id);
            println!("tags:        {}", enrollment.tags.join(","));
            println!("server:      {}", enrollment.server);
            println!(
                "limits:      shell {}, exec {}, attended {}",
                yes_no(enrollment.limits.allow_shell),
                yes_no(enrollment.limits.allow_exec),
                yes_no(enrollment.limits.attended)
            );
            let mut client =
                crate::link::agent_client(&enrollment.server, enrollment.ca_file.as_deref())?;
            match crate::link::server_info(&mut client).await {
                Ok(info) if info.audience == enrollment.audience => {
                    println!("rendezvous:  reachable (deployment {})", info.audience);
                    Ok(())
                }
                Ok(info) => anyhow::bail!(
                    "rendezvous is deployment {:?}, not the one this host enrolled with",
                    info.audience
                ),
                Err(err) => anyhow::bail!("rendezvous: {err}"),
            }
        }
    }
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}
