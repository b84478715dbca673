//! `tucdesk recordings …` and `tucdesk play` (SPEC §7, docs/recordings.md): the team's
//! recording keys and settings, and verified download and playback of recordings.
//!
//! Nothing is trusted because the recorder sent it: the manifest's signature is checked
//! against the agent's key (the agent id; the known_agents pin when there is one), the
//! ciphertext's size and SHA-256 against the manifest while it streams in, and the output is
//! renamed into place only after every check ([`verify`]).

mod download;
pub mod playback;
pub mod settings;
pub mod verify;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use tucdesk_crypto::proof_scopes;
use tucdesk_proto::v1::{
    GetRecordingSettingsRequest, PutRecordingSettingsRequest, RecordingMode, RecordingRecipient,
    RecordingSettings, RejectReason,
};
use tucdesk_transport::rpc;
use tucdesk_transport::ws::printable;

pub use download::play;

use crate::api::{Api, ApiError};
use crate::config::ConfigDir;

/// How long a download may take (the unary deadline is far too short for 2 GiB).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(2 * 3600);
/// Page size of List calls.
const PAGE_SIZE: u32 = 500;
/// Most recordings `recordings list` prints.
const MAX_LISTED: usize = 10_000;
/// Most agents read to resolve names.
const MAX_AGENTS: usize = 100_000;

#[derive(Debug, Subcommand)]
pub enum RecordingsCommand {
    /// Make the team auditors' recording key: an age X25519 identity file (the standard
    /// format `age -d -i` reads), created 0600 and never overwriting a file. Keep it with the
    /// auditors, offline if you can; it is never uploaded. Prints the recipient (`age1…`) to
    /// register with `tucdesk recordings recipients add`.
    Keygen {
        /// Where to write the identity (must not exist).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// The age recipients agents encrypt recordings to. `list` needs operator; `add` and
    /// `remove` need admin and sign with this device's key. Every later recording can be read
    /// by the holder of any recipient's identity; removing one does not re-encrypt old ones.
    #[command(subcommand)]
    Recipients(RecipientsCommand),
    /// Whether agents record: `off`; `on` (record, never block a session); `required`
    /// (refuse sessions the agent cannot record; needs a recipient). Admin.
    Mode {
        #[arg(value_parser = parse_mode_arg)]
        mode: RecordingMode,
    },
    /// The recordings you may see, newest first: admins, owners and auditors see the team's;
    /// everyone else the recordings of their own sessions.
    List {
        /// Only this agent (name or id).
        #[arg(long)]
        agent: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Download a recording, verify it (agent signature and pin, size, SHA-256) and write it
    /// decrypted as an asciicast v2 file (plays with `asciinema play` or `tucdesk play`).
    /// Nothing is written unless every check passes. Audited on the recorder.
    Export {
        /// The session id (see `tucdesk recordings list`).
        session: String,
        /// Output file (`.cast`; with --encrypted, `.cast.age`).
        #[arg(short, long)]
        output: PathBuf,
        /// An identity file holding the key of one of the recording's recipients.
        #[arg(long, required_unless_present = "encrypted")]
        identity: Option<PathBuf>,
        /// Keep the recording encrypted as stored (`.cast.age`), with its signed manifest
        /// beside it (`.manifest.pb`), for archives and `tucdesk play FILE.cast.age`.
        #[arg(long)]
        encrypted: bool,
        /// Replace existing output files.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RecipientsCommand {
    /// Show the mode and the recipients.
    List,
    /// Add a recipient (`age1…`, from `tucdesk recordings keygen` or `age-keygen`).
    Add {
        recipient: String,
        /// Who holds the identity, e.g. "security team".
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Remove a recipient (recordings made before stay readable with its identity).
    Remove { recipient: String },
}

/// `tucdesk play`.
#[derive(Debug, Args)]
pub struct PlayArgs {
    /// A session id (downloaded and verified), or a local `.cast.age` (verified with the
    /// `.manifest.pb` beside it) or plain `.cast` file.
    pub target: String,
    /// An identity file holding the key of one of the recording's recipients (not needed for
    /// a plain `.cast`).
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// Playback speed (0.01..=1000; 2 = twice as fast).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Shorten pauses longer than this many seconds to it.
    #[arg(long)]
    pub max_idle: Option<f64>,
    /// Play a local `.cast.age` that has no manifest beside it (nothing is verified).
    #[arg(long)]
    pub unverified: bool,
}

fn parse_mode_arg(text: &str) -> Result<RecordingMode, String> {
    settings::parse_mode(text).map_err(|err| err.to_string())
}

/// Runs a `tucdesk recordings` command.
pub async fn run(config: &ConfigDir, command: RecordingsCommand) -> anyhow::Result<()> {
    match command {
        RecordingsCommand::Keygen { output } => keygen(&output),
        RecordingsCommand::Recipients(RecipientsCommand::List) => {
            let mut api = Api::open(config)?;
            let current = get_settings(&mut api).await?;
            show_settings(&current);
            Ok(())
        }
        RecordingsCommand::Recipients(RecipientsCommand::Add { recipient, label }) => {
            let mut api = Api::open(config)?;
            let current = get_settings(&mut api).await?;
            let recipients = settings::add_recipient(&current.recipients, &recipient, &label)?;
            let saved = put_settings(
                &mut api,
                &current,
                settings::effective_mode(&current),
                recipients,
            )
            .await?;
            show_settings(&saved);
            if settings::effective_mode(&saved) == RecordingMode::Off {
                eprintln!("Recording is off; turn it on with `tucdesk recordings mode on`.");
            }
            Ok(())
        }
        RecordingsCommand::Recipients(RecipientsCommand::Remove { recipient }) => {
            let mut api = Api::open(config)?;
            let current = get_settings(&mut api).await?;
            let mode = settings::effective_mode(&current);
            let recipients = settings::remove_recipient(&current.recipients, mode, &recipient)?;
            let saved = put_settings(&mut api, &current, mode, recipients).await?;
            show_settings(&saved);
            Ok(())
        }
        RecordingsCommand::Mode { mode } => {
            let mut api = Api::open(config)?;
            let current = get_settings(&mut api).await?;
            settings::check_mode(&current.recipients, mode)?;
            if mode != RecordingMode::Off && current.recipients.is_empty() {
                eprintln!(
                    "note: no recipients yet, so agents cannot record; add one with \
                     `tucdesk recordings recipients add age1… --label …`"
                );
            }
            let recipients = current.recipients.clone();
            let saved = put_settings(&mut api, &current, mode, recipients).await?;
            show_settings(&saved);
            Ok(())
        }
        RecordingsCommand::List { agent, json } => download::list(config, agent, json).await,
        RecordingsCommand::Export {
            session,
            output,
            identity,
            encrypted,
            force,
        } => {
            download::export(
                config,
                &session,
                &output,
                identity.as_deref(),
                encrypted,
                force,
            )
            .await
        }
    }
}

fn keygen(output: &Path) -> anyhow::Result<()> {
    let recipient = tucdesk_recording::keys::generate_identity_file(output)?;
    println!("{recipient}");
    eprintln!(
        "Wrote the identity to {} (0600). Keep it with the auditors; it is never uploaded, and \
         without it recordings cannot be read.\nNext, as an admin:\n  tucdesk recordings \
         recipients add {recipient} --label \"security team\"",
        output.display()
    );
    Ok(())
}

async fn get_settings(api: &mut Api) -> anyhow::Result<RecordingSettings> {
    let request = api.request(GetRecordingSettingsRequest {}).await?;
    Ok(api
        .rendezvous()
        .get_recording_settings(request)
        .await
        .map_err(|s| ApiError::from_status(&s))?
        .into_inner())
}

/// Stores `mode` and `recipients` if the settings are still at `current.version`.
async fn put_settings(
    api: &mut Api,
    current: &RecordingSettings,
    mode: RecordingMode,
    recipients: Vec<RecordingRecipient>,
) -> anyhow::Result<RecordingSettings> {
    let expected_version = current.version;
    let binding = settings::binding(expected_version, mode, &recipients);
    let proof = api.proof(
        proof_scopes::PUT_RECORDING_SETTINGS,
        proof_scopes::PUT_RECORDING_SETTINGS_TARGET,
        "",
        &binding,
    )?;
    let request = api
        .request(PutRecordingSettingsRequest {
            mode: mode as i32,
            recipients,
            expected_version,
            proof: Some(proof),
        })
        .await?;
    match api.rendezvous().put_recording_settings(request).await {
        Ok(saved) => Ok(saved.into_inner()),
        Err(status) if rpc::reason(&status) == RejectReason::VersionConflict => {
            anyhow::bail!(
                "someone changed the recording settings since this command read them (version \
                 {expected_version}); nothing was changed. Check `tucdesk recordings recipients \
                 list` and run the command again"
            )
        }
        Err(status) => Err(ApiError::from_status(&status).into()),
    }
}

fn show_settings(current: &RecordingSettings) {
    println!("mode:    {}", settings::mode_name(current.mode));
    println!("version: {}", current.version);
    if !current.updated_by.is_empty() {
        let at = current
            .updated_at
            .as_ref()
            .map(|t| format_time_ms(u64::try_from(t.seconds).unwrap_or(0).saturating_mul(1000)))
            .unwrap_or_default();
        println!("updated: {at} by {}", printable(&current.updated_by));
    }
    if current.recipients.is_empty() {
        println!("recipients: none");
    }
    for recipient in &current.recipients {
        if recipient.label.is_empty() {
            println!("recipient: {}", printable(&recipient.recipient));
        } else {
            println!(
                "recipient: {}  ({})",
                printable(&recipient.recipient),
                printable(&recipient.label)
            );
        }
    }
}

/// `2025-01-02 03:04:05Z` of unix milliseconds.
pub fn format_time_ms(ms: u64) -> String {
    let (y, mo, d, h, mi, s) = tucdesk_recording::keys::utc_datetime(ms / 1000);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}Z")
}

/// `12.3 KiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS.get(unit).copied().unwrap_or("TiB"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn sizes_and_times_read_well() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(format_time_ms(1_735_776_000_000), "2025-01-02 00:00:00Z");
    }

    #[test]
    fn keygen_writes_a_private_identity_once() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auditors.key");
        keygen(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
        let identities = download::load_identities(&path).unwrap();
        assert_eq!(identities.len(), 1);
        let before = std::fs::read(&path).unwrap();
        assert!(keygen(&path).unwrap_err().to_string().contains("refusing"));
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}
