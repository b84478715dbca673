//! The `tucdesk` command line: log in, list agents, open end-to-end encrypted sessions, and administer a team.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use tucdesk_proto::v1::Path as SessionPath;

use crate::api::{self, Api, ApiError, LoginTarget};
use crate::config::{ConfigDir, KNOWN_AGENTS_FILE};
use crate::open::{Opened, SessionSpec, open, report};
use crate::pins::KnownAgents;
use crate::terminal::{self, Outcome, RawMode};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tucdesk_crypto::proof_scopes;
use tucdesk_proto::v1::{
    ApprovalState, CloseReason, CreateEnrollmentTokenRequest, CreateSupportCodeRequest,
    DecideApprovalRequest, ExecSpec, GetPolicyRequest, ListAgentsRequest, ListApprovalsRequest,
    PutPolicyRequest, SessionEventKind, SessionKind, SessionReport, WhoAmIRequest,
    create_support_code_request,
};
use tucdesk_transport::DialOptions;

/// tucdesk: end-to-end encrypted terminal access to TucDesk agents.
///
/// Start with `tucdesk login`, then `tucdesk agents`, `tucdesk connect NAME` or
/// `tucdesk exec NAME -- COMMAND`. Sessions are encrypted between this program and the agent;
/// the servers in between only see ciphertext.
#[derive(Debug, Parser)]
#[command(name = "tucdesk", version, about, long_about)]
struct Cli {
    /// Where the device key, tokens and known_agents live.
    #[arg(long, env = "TUCDESK_CONFIG_DIR", global = true)]
    config_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log in with email and password (and TOTP when enabled). Creates this device's key on
    /// first use; tokens are stored 0600 and refreshed automatically.
    Login(LoginArgs),
    /// Revoke this device's tokens and forget them.
    Logout,
    /// Who the stored tokens belong to.
    Whoami,
    /// List the team's agents.
    Agents {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Only agents with this tag (repeatable).
        #[arg(long)]
        tag: Vec<String>,
    },
    /// Open an interactive shell on an agent. Type `~.` after Enter to disconnect, `~?` for
    /// help. Exits with the remote shell's exit status.
    Connect {
        /// Agent name or id.
        agent: String,
        #[command(flatten)]
        session: SessionArgs,
    },
    /// Run one command on an agent; stdout and stderr stay apart and the exit status is the
    /// command's (127: could not start, 124: timed out, 255: session failed).
    Exec {
        /// Agent name or id.
        agent: String,
        /// Do not forward stdin (like ssh -n); implied when stdin is a terminal.
        #[arg(short = 'n', long)]
        no_stdin: bool,
        /// Kill the command after this many seconds (0: the agent's default).
        #[arg(long, default_value_t = 0)]
        timeout: u32,
        /// Working directory on the agent.
        #[arg(long, default_value = "")]
        cwd: String,
        /// Environment for the command, NAME=VALUE (repeatable).
        #[arg(long = "env", value_parser = parse_env)]
        env: Vec<(String, String)>,
        #[command(flatten)]
        session: SessionArgs,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// List approval requests waiting for a decision.
    Approvals {
        /// Show decided ones too.
        #[arg(long)]
        all: bool,
    },
    /// Approve a pending request (you cannot approve your own).
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Deny a pending request.
    Deny {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Support codes for technicians.
    #[command(subcommand)]
    SupportCode(SupportCodeCommand),
    /// Enrollment tokens for new agents.
    #[command(subcommand)]
    EnrollToken(EnrollTokenCommand),
    /// The team's access policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Session recordings: the auditors' key (`keygen`), the team's recipients and mode
    /// (admin), and verified downloads (`list`, `export`).
    ///
    /// Agents encrypt recordings with age to the team's recipients; the recorder and its
    /// storage never see plaintext. First `tucdesk recordings keygen -o auditors.key`, then
    /// `tucdesk recordings recipients add age1… --label …` and `tucdesk recordings mode on`.
    /// Needs the recorder URL: `tucdesk login --recorder URL`.
    #[command(subcommand)]
    Recordings(crate::recordings::RecordingsCommand),
    /// Play a recording in this terminal with its original timing: a session id (downloaded
    /// from the recorder, its agent signature, size and SHA-256 verified before decrypting),
    /// or a local `.cast.age` (with its `.manifest.pb`) or `.cast` file.
    Play(crate::recordings::PlayArgs),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Download the team's audit log (entries and signed checkpoints) as NDJSON, ready for
    /// `tucdesk audit verify`. Owners, admins and auditors only.
    Export {
        /// Write here (atomically) instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Start at this seq (1 = the beginning; a SIEM resuming passes its last seq + 1).
        #[arg(long, default_value_t = 1)]
        from_seq: u64,
    },
    /// Verify an audit export offline: every entry's hash, signature and link, every
    /// checkpoint's signature and Merkle root (catching cut-off or rewritten history). Prints
    /// the first broken line and seq and exits 1 if anything fails. Needs no server.
    Verify {
        /// The NDJSON export (entries and checkpoints).
        file: PathBuf,
        /// The audit service's public key (base64url, as `tucdesk-audit public-key` prints
        /// it), or a file holding it.
        #[arg(long)]
        key: String,
    },
}

#[derive(Debug, Args)]
struct LoginArgs {
    /// Auth service URL.
    #[arg(
        long,
        env = "TUCDESK_AUTH_URL",
        default_value = "http://127.0.0.1:7401"
    )]
    auth: String,
    /// Rendezvous URL.
    #[arg(
        long,
        env = "TUCDESK_RENDEZVOUS_URL",
        default_value = "http://127.0.0.1:7410"
    )]
    rendezvous: String,
    /// Audit service URL (for `tucdesk audit export`).
    #[arg(
        long,
        env = "TUCDESK_AUDIT_URL",
        default_value = "http://127.0.0.1:7430"
    )]
    audit: String,
    /// Recorder URL (for `tucdesk recordings` and `tucdesk play`; the standalone stack's is
    /// http://127.0.0.1:7440). Optional: recording commands say when it is missing.
    #[arg(long, env = "TUCDESK_RECORDER_URL")]
    recorder: Option<String>,
    /// Extra CA certificate (PEM) for servers with a private CA.
    #[arg(long, env = "TUCDESK_CA_FILE")]
    ca_file: Option<PathBuf>,
    #[arg(long, env = "TUCDESK_EMAIL", required_unless_present = "support_code")]
    email: Option<String>,
    /// A technician's one-time support code (instead of an account): access to the agent or
    /// tag the code names, for its lifetime.
    #[arg(long, conflicts_with_all = ["setup_token", "totp", "password_stdin"])]
    support_code: Option<String>,
    /// The name the host's person sees with --support-code.
    #[arg(long, default_value = "Support technician")]
    display_name: String,
    /// Read the password from the first line of stdin (otherwise $TUCDESK_PASSWORD, or a
    /// prompt).
    #[arg(long)]
    password_stdin: bool,
    /// Current TOTP code, when the account has TOTP.
    #[arg(long)]
    totp: Option<String>,
    /// First login of a new account: the setup or invite token; sets the password given.
    #[arg(long)]
    setup_token: Option<String>,
}

#[derive(Debug, Args)]
struct SessionArgs {
    /// Trust an agent key seen for the first time without asking (compare fingerprints!).
    #[arg(long)]
    accept_new: bool,
    /// Why you connect (shown to approvers and the host, audited).
    #[arg(long, default_value = "")]
    reason: String,
    /// Extra CA certificate (PEM) for a wss:// relay with a private CA.
    #[arg(long, env = "TUCDESK_RELAY_CA_FILE")]
    relay_ca_file: Option<PathBuf>,
    /// Tell on stderr which agent and path a command runs on (`connect` always does).
    #[arg(long, short = 'v')]
    verbose: bool,
    /// Which path carries the session: `auto` tries a direct (peer-to-peer) connection and
    /// TURN at once and falls back to the WebSocket relay; `direct`, `turn` or `ws` forces one
    /// (troubleshooting: a forced path that cannot connect is an error, not a fallback).
    #[arg(long, env = "TUCDESK_PATH", default_value = "auto", value_parser = parse_path)]
    path: SessionPath,
    /// Seconds the direct/TURN attempt may take before `auto` moves on to the WebSocket relay.
    #[arg(long, env = "TUCDESK_P2P_TIMEOUT_SECS", default_value_t = 10)]
    p2p_timeout_secs: u64,
    /// Local UDP addresses for direct and TURN paths (comma separated, port 0 = any). The
    /// default binds every non-loopback interface; give 127.0.0.1:0 for a stack on loopback.
    #[arg(long, env = "TUCDESK_ICE_BIND", value_delimiter = ',')]
    ice_bind: Vec<std::net::SocketAddr>,
    /// When a shell's connection drops, how many seconds to keep trying to resume it over any
    /// path (the agent keeps the shell running meanwhile, for its own grace period).
    #[arg(long, env = "TUCDESK_RESUME_GRACE_SECS", default_value_t = 60)]
    resume_grace_secs: u64,
}

fn parse_path(value: &str) -> Result<SessionPath, String> {
    match value {
        "auto" => Ok(SessionPath::Unspecified),
        "direct" => Ok(SessionPath::Direct),
        "turn" => Ok(SessionPath::Turn),
        "ws" => Ok(SessionPath::Ws),
        other => Err(format!("{other:?}: expected auto, direct, turn or ws")),
    }
}

#[derive(Debug, Subcommand)]
enum SupportCodeCommand {
    /// Create a one-time code a technician redeems for access to one agent or a tag.
    Create {
        /// The agent id the code reaches.
        #[arg(long, conflicts_with = "tag", required_unless_present = "tag")]
        agent: Option<String>,
        /// Or every agent with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Session kinds allowed, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "shell")]
        kinds: Vec<String>,
        /// Lifetime in seconds (0: the server's default).
        #[arg(long, default_value_t = 0)]
        ttl: u32,
        /// How many times it can be redeemed.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        #[arg(long, default_value = "")]
        note: String,
    },
}

#[derive(Debug, Subcommand)]
enum EnrollTokenCommand {
    /// Create a single-use token for `tucdesk-agent enroll --token`.
    Create {
        /// Tags the agent gets, comma separated.
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        /// Let the host add tags of its own.
        #[arg(long)]
        allow_host_tags: bool,
        /// Lifetime in seconds (0: one hour).
        #[arg(long, default_value_t = 0)]
        ttl: u32,
        #[arg(long, default_value = "")]
        description: String,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Print the current policy document (YAML).
    Get,
    /// Replace the policy with FILE (YAML); refused if someone changed it since `get`
    /// unless --force.
    Apply {
        file: PathBuf,
        /// Overwrite whatever version is current.
        #[arg(long)]
        force: bool,
    },
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "expected NAME=VALUE".to_owned())
}

/// The command line program: parses the arguments and runs the command on a new runtime.
pub fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tucdesk: starting the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(main_async())
}

async fn main_async() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(255)),
        Err(err) => {
            eprintln!("tucdesk: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn ask_yes(question: &str) -> bool {
    if !terminal::stdin_is_terminal() {
        return false;
    }
    eprint!("{question} [yes/no] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).is_ok() && line.trim().eq_ignore_ascii_case("yes")
}

fn role_is(role: &str) -> String {
    if role.is_empty() {
        "?".into()
    } else {
        role.into()
    }
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let config = ConfigDir::new(
        cli.config_dir
            .clone()
            .unwrap_or_else(ConfigDir::default_path),
    );
    match cli.command {
        Command::Login(args) => login(&config, args).await.map(|()| 0),
        Command::Logout => {
            let api = Api::open(&config)?;
            api.logout().await?;
            println!("logged out");
            Ok(0)
        }
        Command::Whoami => {
            let mut api = Api::open(&config)?;
            let request = api.request(WhoAmIRequest {}).await?;
            let me = api
                .auth()
                .who_am_i(request)
                .await
                .map_err(|s| ApiError::from_status(&s))?
                .into_inner();
            let user = me.user.unwrap_or_default();
            println!("email:  {}", user.email);
            println!("user:   {}", user.user_id);
            println!("team:   {}", user.team_id);
            println!("role:   {}", role_is(&api.credentials.role));
            println!("device: {}", api.device.public_key().jwk_thumbprint());
            println!("server: {}", api.credentials.rendezvous);
            Ok(0)
        }
        Command::Agents { json, tag } => agents(&config, json, tag).await.map(|()| 0),
        Command::Connect { agent, session } => connect(&config, agent, session).await,
        Command::Exec {
            agent,
            no_stdin,
            timeout,
            cwd,
            env,
            session,
            command,
        } => {
            let spec = ExecSpec {
                argv: command,
                env: env.into_iter().collect::<BTreeMap<_, _>>(),
                cwd,
                timeout_ms: timeout.saturating_mul(1000),
                pty: false,
            };
            let forward = !no_stdin && !terminal::stdin_is_terminal();
            exec(&config, agent, session, spec, forward).await
        }
        Command::Approvals { all } => approvals(&config, all).await.map(|()| 0),
        Command::Approve { id, comment } => decide(&config, id, comment, true).await.map(|()| 0),
        Command::Deny { id, comment } => decide(&config, id, comment, false).await.map(|()| 0),
        Command::SupportCode(SupportCodeCommand::Create {
            agent,
            tag,
            kinds,
            ttl,
            uses,
            note,
        }) => support_code(&config, agent, tag, kinds, ttl, uses, note)
            .await
            .map(|()| 0),
        Command::EnrollToken(EnrollTokenCommand::Create {
            tags,
            allow_host_tags,
            ttl,
            description,
        }) => {
            let mut api = Api::open(&config)?;
            let binding = proof_scopes::enrollment_token_binding(&tags, allow_host_tags, ttl);
            let proof = api.proof(proof_scopes::CREATE_ENROLLMENT_TOKEN, "", "", &binding)?;
            let request = api
                .request(CreateEnrollmentTokenRequest {
                    description,
                    tags,
                    allow_host_tags,
                    ttl_seconds: ttl,
                    proof: Some(proof),
                })
                .await?;
            let created = api
                .rendezvous()
                .create_enrollment_token(request)
                .await
                .map_err(|s| ApiError::from_status(&s))?
                .into_inner();
            println!("{}", created.token);
            eprintln!(
                "Single use. On the host: tucdesk-agent enroll --server {} --token {}",
                api.credentials.rendezvous, created.token
            );
            Ok(0)
        }
        Command::Policy(PolicyCommand::Get) => {
            let mut api = Api::open(&config)?;
            let request = api.request(GetPolicyRequest {}).await?;
            let policy = api
                .rendezvous()
                .get_policy(request)
                .await
                .map_err(|s| ApiError::from_status(&s))?
                .into_inner();
            eprintln!("# version {}", policy.version);
            print!("{}", policy.yaml);
            Ok(0)
        }
        Command::Policy(PolicyCommand::Apply { file, force }) => {
            apply_policy(&config, file, force).await.map(|()| 0)
        }
        Command::Audit(AuditCommand::Verify { file, key }) => verify_audit(&file, &key),
        Command::Audit(AuditCommand::Export { output, from_seq }) => {
            export_audit(&config, output, from_seq).await.map(|()| 0)
        }
        Command::Recordings(command) => crate::recordings::run(&config, command).await.map(|()| 0),
        Command::Play(args) => crate::recordings::play(&config, args).await.map(|()| 0),
    }
}

async fn login(config: &ConfigDir, args: LoginArgs) -> anyhow::Result<()> {
    let target = LoginTarget {
        auth: args.auth.clone(),
        rendezvous: args.rendezvous.clone(),
        audit: args.audit.clone(),
        recorder: args.recorder.clone(),
        ca_file: args.ca_file.clone(),
    };
    if let Some(code) = &args.support_code {
        let credentials =
            api::redeem_support_code(config, target, code, &args.display_name).await?;
        println!(
            "support access to team {} until {} (Unix time); no password, no refresh",
            credentials.team_id, credentials.access_expires_at
        );
        return Ok(());
    }
    let email = args.email.clone().unwrap_or_default();
    let password = if args.password_stdin {
        let mut line = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        zeroize::Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned())
    } else if let Ok(password) = std::env::var("TUCDESK_PASSWORD") {
        zeroize::Zeroizing::new(password)
    } else if terminal::stdin_is_terminal() {
        let first = terminal::read_secret("Password: ")?;
        if args.setup_token.is_some() {
            let again = terminal::read_secret("Repeat the new password: ")?;
            anyhow::ensure!(*first == *again, "the passwords differ");
        }
        first
    } else {
        anyhow::bail!("no password: use --password-stdin, $TUCDESK_PASSWORD or a terminal");
    };
    if let Some(token) = &args.setup_token {
        api::accept_invite(&target, token, &password).await?;
        eprintln!("password set");
    }
    let credentials = api::login(config, target, &email, &password, args.totp.as_deref()).await?;
    println!(
        "logged in as {} ({}) in team {}",
        credentials.email, credentials.role, credentials.team_id
    );
    Ok(())
}

async fn agents(config: &ConfigDir, json: bool, tags: Vec<String>) -> anyhow::Result<()> {
    let mut api = Api::open(config)?;
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = api
            .request(ListAgentsRequest {
                page: Some(tucdesk_proto::v1::PageRequest {
                    page_size: 500,
                    page_token: page_token.clone(),
                }),
                tags: tags.clone(),
                ..Default::default()
            })
            .await?;
        let page = api
            .rendezvous()
            .list_agents(request)
            .await
            .map_err(|s| ApiError::from_status(&s))?
            .into_inner();
        all.extend(page.agents);
        page_token = page.page.map(|p| p.next_page_token).unwrap_or_default();
        if page_token.is_empty() || all.len() >= 100_000 {
            break;
        }
    }
    if json {
        let rows: Vec<serde_json::Value> = all
            .iter()
            .map(|a| {
                serde_json::json!({
                    "agent_id": a.agent_id,
                    "name": a.name,
                    "online": a.online,
                    "tags": a.tags,
                    "fingerprint": a.fingerprint,
                    "last_seen": a.last_seen_at.as_ref().map(|t| t.seconds),
                    "active_sessions": a.active_sessions,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let printable = tucdesk_transport::ws::printable;
    let width = all
        .iter()
        .map(|a| a.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<width$}  {:<7}  {:<20}  FINGERPRINT",
        "NAME", "STATE", "TAGS"
    );
    for agent in &all {
        println!(
            "{:<width$}  {:<7}  {:<20}  {}",
            printable(&agent.name),
            if agent.online { "online" } else { "offline" },
            printable(&agent.tags.join(",")),
            agent.fingerprint
        );
    }
    Ok(())
}

/// The direct/TURN settings from the command line (defaults for what is not given).
fn p2p_options(bind: &[std::net::SocketAddr], timeout_secs: u64) -> tucdesk_p2p::P2pOptions {
    let mut options = tucdesk_p2p::P2pOptions {
        connect_deadline: std::time::Duration::from_secs(timeout_secs.clamp(1, 120)),
        ..tucdesk_p2p::P2pOptions::default()
    };
    if !bind.is_empty() {
        options.udp_addrs = bind.to_vec();
    }
    options
}

fn dial(session: &SessionArgs) -> anyhow::Result<DialOptions> {
    let tls = match &session.relay_ca_file {
        Some(path) => Some(tucdesk_transport::tls::client_config(Some(path))?),
        None => None,
    };
    Ok(DialOptions {
        tls,
        allow_plain_remote: false,
    })
}

fn session_spec(
    config: &ConfigDir,
    agent: String,
    session: &SessionArgs,
    kind: SessionKind,
    exec: Option<ExecSpec>,
) -> anyhow::Result<(Api, SessionSpec)> {
    let api = Api::open(config)?;
    let spec = SessionSpec {
        agent,
        kind,
        exec,
        reason: session.reason.clone(),
        accept_new: session.accept_new,
        initial_size: terminal::terminal_size(),
        dial: dial(session)?,
        path: session.path,
        p2p: p2p_options(&session.ice_bind, session.p2p_timeout_secs),
    };
    Ok((api, spec))
}

async fn open_with(
    config: &ConfigDir,
    api: &mut Api,
    spec: &SessionSpec,
) -> anyhow::Result<Opened> {
    let pins = KnownAgents::new(config.path(KNOWN_AGENTS_FILE));
    let opened = open(
        api,
        &pins,
        spec,
        |fingerprint| {
            ask_yes(&format!(
                "The agent {:?} is new to this device. Its fingerprint is {fingerprint}.\n\
                 Compare it with `tucdesk-agent fingerprint` on the host. Trust it?",
                spec.agent
            ))
        },
        |note| eprintln!("tucdesk: {note}"),
    )
    .await?;
    Ok(opened)
}

async fn open_session(
    config: &ConfigDir,
    agent: String,
    session: &SessionArgs,
    kind: SessionKind,
    exec: Option<ExecSpec>,
) -> anyhow::Result<(Api, Opened)> {
    let (mut api, spec) = session_spec(config, agent, session, kind, exec)?;
    let opened = open_with(config, &mut api, &spec).await?;
    Ok((api, opened))
}

async fn finish_report(api: &mut Api, opened: &Opened, reason: CloseReason) {
    report(
        api,
        &opened.session_id,
        SessionReport {
            kind: SessionEventKind::Ended as i32,
            path: opened.path as i32,
            bytes_to_agent: opened.channel.sender.bytes(),
            bytes_to_operator: opened.channel.receiver.bytes(),
            close_reason: reason as i32,
            ..Default::default()
        },
    )
    .await;
}

async fn connect(config: &ConfigDir, agent: String, session: SessionArgs) -> anyhow::Result<i32> {
    let (mut api, spec) = session_spec(config, agent, &session, SessionKind::Shell, None)?;
    let opened = open_with(config, &mut api, &spec).await?;
    eprintln!(
        "tucdesk: connected to {} ({}) via {}; end-to-end encrypted. ~. disconnects, ~? helps.",
        opened.agent.name,
        opened.agent.fingerprint,
        tucdesk_transport::path_name(opened.path)
    );
    let grace = std::time::Duration::from_secs(session.resume_grace_secs.min(24 * 60 * 60));
    let mut shell = crate::resume::ShellSession::new(&mut api, opened, &spec, grace, |note| {
        eprint!("\r\ntucdesk: {note}\r\n");
    })?;
    let outcome = {
        let _raw = if terminal::stdin_is_terminal() {
            Some(RawMode::enable().context("switching the terminal to raw mode")?)
        } else {
            None
        };
        terminal::interact(&mut shell).await
    };
    // What the audit log records for this side: how the session really ended.
    let reason = match &outcome {
        Outcome::Exited(_) | Outcome::Disconnected => CloseReason::Normal,
        Outcome::Closed(reason, _) => *reason,
        Outcome::Lost(_) => CloseReason::Unspecified,
    };
    let ended = SessionReport {
        kind: SessionEventKind::Ended as i32,
        path: shell.path() as i32,
        bytes_to_agent: shell.bytes_to_agent(),
        bytes_to_operator: shell.bytes_to_operator(),
        close_reason: reason as i32,
        ..Default::default()
    };
    let session_id = shell.session_id().to_owned();
    report(shell.api(), &session_id, ended).await;
    match outcome {
        Outcome::Exited(code) => {
            eprintln!("\ntucdesk: the shell exited with status {code}");
            Ok(code)
        }
        Outcome::Disconnected => {
            eprintln!("\ntucdesk: disconnected");
            Ok(0)
        }
        Outcome::Closed(reason, message) => {
            eprintln!(
                "\ntucdesk: the agent closed the session ({}): {message}",
                reason
                    .as_str_name()
                    .trim_start_matches("CLOSE_REASON_")
                    .to_ascii_lowercase()
            );
            Ok(255)
        }
        Outcome::Lost(why) => {
            eprintln!("\ntucdesk: connection lost: {why}");
            Ok(255)
        }
    }
}

async fn exec(
    config: &ConfigDir,
    agent: String,
    session: SessionArgs,
    spec: ExecSpec,
    forward_stdin: bool,
) -> anyhow::Result<i32> {
    let (mut api, mut opened) = open_session(
        config,
        agent,
        &session,
        SessionKind::Exec,
        Some(spec.clone()),
    )
    .await?;
    if session.verbose {
        eprintln!(
            "tucdesk: running on {} ({}) via {}; end-to-end encrypted",
            opened.agent.name,
            opened.agent.fingerprint,
            tucdesk_transport::path_name(opened.path)
        );
    }
    let channel = &mut opened.channel;
    let outcome = crate::exec::run(
        &mut channel.sender,
        &mut channel.receiver,
        spec,
        forward_stdin,
    )
    .await;
    let reason = if outcome.exit_code == crate::exec::EXIT_SESSION_FAILED && outcome.note.is_some()
    {
        CloseReason::Unspecified
    } else {
        CloseReason::Normal
    };
    finish_report(&mut api, &opened, reason).await;
    if let Some(note) = outcome.note {
        eprintln!("tucdesk: {note}");
    }
    Ok(outcome.exit_code)
}

async fn approvals(config: &ConfigDir, all: bool) -> anyhow::Result<()> {
    let mut api = Api::open(config)?;
    let request = api
        .request(ListApprovalsRequest {
            page: None,
            state: if all {
                ApprovalState::Unspecified as i32
            } else {
                ApprovalState::Pending as i32
            },
        })
        .await?;
    let list = api
        .rendezvous()
        .list_approvals(request)
        .await
        .map_err(|s| ApiError::from_status(&s))?
        .into_inner();
    if list.approvals.is_empty() {
        println!("no approval requests");
    }
    let printable = tucdesk_transport::ws::printable;
    for approval in list.approvals {
        let requester = approval.requester.unwrap_or_default();
        let what = match approval.exec {
            Some(spec) => format!("exec: {}", printable(&spec.argv.join(" "))),
            None => "shell".into(),
        };
        println!(
            "{}  {}  {} on {}  by {}  reason: {}",
            approval.approval_id,
            ApprovalState::try_from(approval.state)
                .map(|s| s
                    .as_str_name()
                    .trim_start_matches("APPROVAL_STATE_")
                    .to_ascii_lowercase())
                .unwrap_or_default(),
            what,
            printable(&approval.agent_name),
            printable(&requester.email),
            printable(&approval.reason)
        );
    }
    Ok(())
}

async fn decide(
    config: &ConfigDir,
    id: String,
    comment: String,
    approve: bool,
) -> anyhow::Result<()> {
    let mut api = Api::open(config)?;
    let method = if approve {
        proof_scopes::APPROVE
    } else {
        proof_scopes::DENY
    };
    let proof = api.proof(method, &id, "", b"")?;
    let request = api
        .request(DecideApprovalRequest {
            approval_id: id.clone(),
            comment,
            proof: Some(proof),
        })
        .await?;
    let mut client = api.rendezvous();
    let decided = if approve {
        client.approve(request).await
    } else {
        client.deny(request).await
    }
    .map_err(|s| ApiError::from_status(&s))?
    .into_inner();
    println!(
        "{} {}",
        if approve { "approved" } else { "denied" },
        decided.approval_id
    );
    Ok(())
}

async fn support_code(
    config: &ConfigDir,
    agent: Option<String>,
    tag: Option<String>,
    kinds: Vec<String>,
    ttl: u32,
    uses: u32,
    note: String,
) -> anyhow::Result<()> {
    let mut api = Api::open(config)?;
    let (scope, target) = match (agent, tag) {
        (Some(agent), _) => (
            create_support_code_request::Scope::AgentId(agent.clone()),
            format!("agent:{agent}"),
        ),
        (None, Some(tag)) => (
            create_support_code_request::Scope::Tag(tag.clone()),
            format!("tag:{tag}"),
        ),
        (None, None) => anyhow::bail!("give --agent ID or --tag TAG"),
    };
    let kinds: Vec<i32> = kinds
        .iter()
        .map(|k| match k.as_str() {
            "shell" => Ok(SessionKind::Shell as i32),
            "exec" => Ok(SessionKind::Exec as i32),
            other => Err(anyhow::anyhow!(
                "unknown session kind {other:?} (shell, exec)"
            )),
        })
        .collect::<Result<_, _>>()?;
    let binding = proof_scopes::support_code_binding(ttl, uses, &kinds);
    let proof = api.proof(proof_scopes::CREATE_SUPPORT_CODE, &target, "", &binding)?;
    let request = api
        .request(CreateSupportCodeRequest {
            scope: Some(scope),
            allowed_kinds: kinds,
            ttl_seconds: ttl,
            max_uses: uses,
            note,
            proof: Some(proof),
        })
        .await?;
    let created = api
        .auth()
        .create_support_code(request)
        .await
        .map_err(|s| ApiError::from_status(&s))?
        .into_inner();
    println!("{}", created.code);
    Ok(())
}

async fn apply_policy(config: &ConfigDir, file: PathBuf, force: bool) -> anyhow::Result<()> {
    const MAX_POLICY_LEN: u64 = 256 * 1024;
    let len = std::fs::metadata(&file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    anyhow::ensure!(
        len <= MAX_POLICY_LEN,
        "{} is larger than 256 KiB",
        file.display()
    );
    let yaml =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let mut api = Api::open(config)?;
    let request = api.request(GetPolicyRequest {}).await?;
    let current = api
        .rendezvous()
        .get_policy(request)
        .await
        .map_err(|s| ApiError::from_status(&s))?
        .into_inner();
    let expected_version = if force { 0 } else { current.version };
    let binding = proof_scopes::put_policy_binding(expected_version, &yaml);
    let proof = api.proof(
        proof_scopes::PUT_POLICY,
        proof_scopes::PUT_POLICY_TARGET,
        "",
        &binding,
    )?;
    let request = api
        .request(PutPolicyRequest {
            yaml,
            expected_version,
            proof: Some(proof),
        })
        .await?;
    let put = api
        .rendezvous()
        .put_policy(request)
        .await
        .map_err(|s| ApiError::from_status(&s))?
        .into_inner();
    for warning in put.warnings {
        eprintln!(
            "warning: {}",
            tucdesk_transport::ws::printable(&warning.message)
        );
    }
    println!("policy version {}", put.version);
    Ok(())
}

/// The audit key from its base64url text or a file holding it.
fn audit_key(key: &str) -> anyhow::Result<tucdesk_crypto::PublicKey> {
    let path = std::path::Path::new(key);
    let text = if path.is_file() {
        anyhow::ensure!(
            std::fs::metadata(path)?.len() <= 4096,
            "{} is too large to be a key",
            path.display()
        );
        std::fs::read_to_string(path)?.trim().to_owned()
    } else {
        key.trim().to_owned()
    };
    tucdesk_crypto::PublicKey::from_agent_id(&text)
        .map_err(|_| anyhow::anyhow!("--key is not a base64url Ed25519 public key (43 characters)"))
}

fn verify_audit(file: &std::path::Path, key: &str) -> anyhow::Result<i32> {
    let key = audit_key(key)?;
    let verifying = ed25519_verifying_key(&key)?;
    let open = || std::fs::File::open(file).map(std::io::BufReader::new);
    match tucdesk_crypto::audit::export::verify_export(open, &verifying) {
        Ok(summary) => {
            println!(
                "OK: team {}: {} entries (seq 1..{}), {} checkpoint(s) covering the first {}; head {}",
                summary.team_id,
                summary.entries,
                summary.head.seq,
                summary.checkpoints,
                summary.checkpointed,
                hex_prefix(&summary.head.hash)
            );
            if summary.checkpointed < summary.entries {
                println!(
                    "note: the last {} entries are chained and signed but no checkpoint covers them yet",
                    summary.entries - summary.checkpointed
                );
            }
            Ok(0)
        }
        Err(err) => {
            eprintln!("FAILED: {}: {err}", file.display());
            Ok(1)
        }
    }
}

fn ed25519_verifying_key(
    key: &tucdesk_crypto::PublicKey,
) -> anyhow::Result<tucdesk_crypto::audit::export::VerifyingKey> {
    tucdesk_crypto::audit::export::VerifyingKey::from_bytes(key.as_bytes())
        .map_err(|_| anyhow::anyhow!("the audit key is not a valid Ed25519 key"))
}

fn hex_prefix(hash: &[u8]) -> String {
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

async fn export_audit(
    config: &ConfigDir,
    output: Option<PathBuf>,
    from_seq: u64,
) -> anyhow::Result<()> {
    use tucdesk_audit_format::convert::{checkpoint_from_proto, entry_from_proto};
    use tucdesk_proto::v1::export_item::Item;
    let mut api = Api::open(config)?;
    let request = api
        .request(tucdesk_proto::v1::ExportAuditRequest {
            filter: Some(tucdesk_proto::v1::AuditFilter {
                from_seq,
                ..Default::default()
            }),
        })
        .await?;
    let mut stream = api
        .audit()?
        .export(request)
        .await
        .map_err(|s| ApiError::from_status(&s))?
        .into_inner();
    let (mut sink, tmp): (Box<dyn std::io::Write>, Option<PathBuf>) = match &output {
        Some(path) => {
            let tmp = path.with_extension("partial");
            let file = std::fs::File::create(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            (Box::new(std::io::BufWriter::new(file)), Some(tmp))
        }
        None => (Box::new(std::io::BufWriter::new(std::io::stdout())), None),
    };
    let (mut entries, mut checkpoints) = (0u64, 0u64);
    while let Some(item) = stream
        .message()
        .await
        .map_err(|s| ApiError::from_status(&s))?
    {
        let line = match item.item {
            Some(Item::Entry(entry)) => {
                entries += 1;
                if entries % 10_000 == 0 {
                    eprintln!("tucdesk: {entries} entries…");
                }
                entry_from_proto(&entry)
                    .map_err(|err| anyhow::anyhow!("the server sent an invalid entry: {err}"))?
                    .to_json_line()?
            }
            Some(Item::Checkpoint(checkpoint)) => {
                checkpoints += 1;
                serde_json::to_string(&checkpoint_from_proto(&checkpoint).map_err(|err| {
                    anyhow::anyhow!("the server sent an invalid checkpoint: {err}")
                })?)?
            }
            None => continue,
        };
        writeln!(sink, "{line}")?;
    }
    sink.flush()?;
    drop(sink);
    if let (Some(tmp), Some(path)) = (tmp, &output) {
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!("tucdesk: exported {entries} entries and {checkpoints} checkpoint(s)");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::recordings::{RecipientsCommand, RecordingsCommand};
    use tucdesk_proto::v1::RecordingMode;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tucdesk").chain(args.iter().copied()))
    }

    #[test]
    fn every_command_has_help_and_the_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn recording_commands_parse() {
        let cli = parse(&["recordings", "mode", "required"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Recordings(RecordingsCommand::Mode {
                mode: RecordingMode::Required
            })
        ));
        assert!(parse(&["recordings", "mode", "sometimes"]).is_err());
        let cli = parse(&[
            "recordings",
            "recipients",
            "add",
            "age1xyz",
            "--label",
            "security team",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Recordings(RecordingsCommand::Recipients(RecipientsCommand::Add { label, .. }))
                if label == "security team"
        ));
        assert!(parse(&["recordings", "recipients", "remove"]).is_err());
        assert!(parse(&["recordings", "keygen"]).is_err(), "-o is required");
        assert!(parse(&["recordings", "keygen", "-o", "k.txt"]).is_ok());
        assert!(parse(&["recordings", "list", "--agent", "web-1", "--json"]).is_ok());
    }

    #[test]
    fn export_needs_an_identity_unless_it_keeps_the_file_encrypted() {
        assert!(parse(&["recordings", "export", "S", "-o", "x.cast"]).is_err());
        assert!(
            parse(&[
                "recordings",
                "export",
                "S",
                "-o",
                "x.cast",
                "--identity",
                "k"
            ])
            .is_ok()
        );
        let cli = parse(&[
            "recordings",
            "export",
            "S",
            "-o",
            "x.cast.age",
            "--encrypted",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Recordings(RecordingsCommand::Export {
                encrypted: true,
                force: false,
                identity: None,
                ..
            })
        ));
    }

    #[test]
    fn play_takes_speed_and_max_idle() {
        let cli = parse(&[
            "play",
            "S",
            "--identity",
            "k",
            "--speed",
            "2.5",
            "--max-idle",
            "1",
        ])
        .unwrap();
        match cli.command {
            Command::Play(args) => {
                assert_eq!(args.target, "S");
                assert!((args.speed - 2.5).abs() < f64::EPSILON);
                assert_eq!(args.max_idle, Some(1.0));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["play", "S", "--speed", "fast"]).is_err());
    }

    #[test]
    fn login_stores_an_optional_recorder_url() {
        let cli = parse(&["login", "--email", "a@b.c", "--recorder", "http://r:7440"]).unwrap();
        match cli.command {
            Command::Login(args) => assert_eq!(args.recorder.as_deref(), Some("http://r:7440")),
            other => panic!("{other:?}"),
        }
    }
}
