//! Verified downloads: `recordings list`, `recordings export` and `tucdesk play`, with the
//! agent's key checked against known_agents.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tucdesk_crypto::PublicKey;
use tucdesk_proto::v1::{
    GetRecordingRequest, ListAgentsRequest, ListRecordingsRequest, PageRequest,
};
use tucdesk_transport::ws::printable;

use super::{
    DOWNLOAD_TIMEOUT, MAX_AGENTS, MAX_LISTED, PAGE_SIZE, PlayArgs, format_size, format_time_ms,
    playback, verify,
};
use crate::api::{Api, ApiError};
use crate::config::{ConfigDir, KNOWN_AGENTS_FILE};
use crate::pins::KnownAgents;

/// Agent id → name for the team's agents (revoked ones too).
async fn agent_names(api: &mut Api) -> anyhow::Result<HashMap<String, String>> {
    let mut names = HashMap::new();
    let mut page_token = String::new();
    loop {
        let request = api
            .request(ListAgentsRequest {
                page: Some(PageRequest {
                    page_size: PAGE_SIZE,
                    page_token: page_token.clone(),
                }),
                include_revoked: true,
                ..Default::default()
            })
            .await?;
        let page = api
            .rendezvous()
            .list_agents(request)
            .await
            .map_err(|s| ApiError::from_status(&s))?
            .into_inner();
        for agent in page.agents {
            names.insert(agent.agent_id, agent.name);
        }
        page_token = page.page.map(|p| p.next_page_token).unwrap_or_default();
        if page_token.is_empty() || names.len() >= MAX_AGENTS {
            return Ok(names);
        }
    }
}

/// The agent id for `--agent NAME|ID`.
pub fn resolve_agent(names: &HashMap<String, String>, wanted: &str) -> anyhow::Result<String> {
    if PublicKey::from_agent_id(wanted).is_ok() {
        return Ok(wanted.to_owned());
    }
    let matches: Vec<&String> = names
        .iter()
        .filter(|(_, name)| name.as_str() == wanted)
        .map(|(id, _)| id)
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => anyhow::bail!("no agent is named {wanted:?} (see `tucdesk agents`)"),
        _ => anyhow::bail!(
            "{} agents are named {wanted:?}; give the agent id instead",
            matches.len()
        ),
    }
}

/// Checks the recording's agent against known_agents: a pin of the agent's name to another
/// key is an error; no pin is a note on stderr.
async fn check_agent_pin(config: &ConfigDir, api: &mut Api, agent_id: &str) -> anyhow::Result<()> {
    let names = agent_names(api).await?;
    let fingerprint = verify::fingerprint(agent_id);
    let Some(name) = names.get(agent_id) else {
        eprintln!(
            "tucdesk: note: rendezvous does not know agent {fingerprint}; the signature verifies \
             with the key the recording names"
        );
        return Ok(());
    };
    let pins = KnownAgents::new(config.path(KNOWN_AGENTS_FILE));
    let pin_name = name.split_whitespace().collect::<Vec<_>>().join("_");
    let check = pins.check(&api.credentials.team_id, &pin_name, agent_id)?;
    if verify::check_pin(&check, name, agent_id)? {
        eprintln!(
            "tucdesk: signed by agent {} ({fingerprint}), as pinned in known_agents",
            printable(name)
        );
    } else {
        eprintln!(
            "tucdesk: signed by agent {} ({fingerprint}); not pinned in known_agents yet, so \
             compare the fingerprint with `tucdesk-agent fingerprint` on the host",
            printable(name)
        );
    }
    Ok(())
}

pub(super) async fn list(
    config: &ConfigDir,
    agent: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let mut api = Api::open(config)?;
    let mut recorder = api.recorder()?;
    let names = agent_names(&mut api).await?;
    let agent_id = match &agent {
        Some(wanted) => resolve_agent(&names, wanted)?,
        None => String::new(),
    };
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = api
            .request(ListRecordingsRequest {
                page: Some(PageRequest {
                    page_size: PAGE_SIZE,
                    page_token: page_token.clone(),
                }),
                agent_id: agent_id.clone(),
                ..Default::default()
            })
            .await?;
        let page = recorder
            .list(request)
            .await
            .map_err(|s| ApiError::from_status(&s))?
            .into_inner();
        all.extend(page.recordings);
        page_token = page.page.map(|p| p.next_page_token).unwrap_or_default();
        if page_token.is_empty() || all.len() >= MAX_LISTED {
            break;
        }
    }
    let name_of = |id: &str| {
        names
            .get(id)
            .cloned()
            .unwrap_or_else(|| verify::fingerprint(id))
    };
    if json {
        let rows: Vec<serde_json::Value> = all
            .iter()
            .map(|r| {
                let m = r.manifest.clone().unwrap_or_default();
                serde_json::json!({
                    "session_id": r.session_id,
                    "agent_id": r.agent_id,
                    "agent_name": names.get(&r.agent_id),
                    "operator_user_id": m.operator_user_id,
                    "operator": m.operator_display,
                    "started_at_ms": m.started_at_ms,
                    "ended_at_ms": m.ended_at_ms,
                    "ciphertext_size": m.ciphertext_size,
                    "plaintext_size": m.plaintext_size,
                    "object_key": r.object_key,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if all.is_empty() {
        println!("no recordings");
        return Ok(());
    }
    println!(
        "{:<36}  {:<20}  {:<24}  {:<20}  {:>9}  {:>10}",
        "SESSION", "AGENT", "OPERATOR", "STARTED (UTC)", "DURATION", "SIZE"
    );
    for r in &all {
        let m = r.manifest.clone().unwrap_or_default();
        let secs = m.ended_at_ms.saturating_sub(m.started_at_ms) / 1000;
        println!(
            "{:<36}  {:<20}  {:<24}  {:<20}  {:>9}  {:>10}",
            printable(&r.session_id),
            printable(&name_of(&r.agent_id)),
            printable(if m.operator_display.is_empty() {
                &m.operator_user_id
            } else {
                &m.operator_display
            }),
            format_time_ms(m.started_at_ms),
            format!("{}:{:02}:{:02}", secs / 3600, (secs / 60) % 60, secs % 60),
            format_size(m.ciphertext_size)
        );
    }
    if all.len() >= MAX_LISTED {
        eprintln!("tucdesk: showing the first {MAX_LISTED}; filter with --agent");
    }
    Ok(())
}

/// Downloads `session_id` through `RecorderService.Get` into `out`, verifying as it goes.
async fn download<W: std::io::Write>(
    api: &mut Api,
    session_id: &str,
    out: W,
) -> anyhow::Result<verify::Received<W>> {
    tucdesk_proto::validate::uuid("session", session_id)
        .map_err(|_| anyhow::anyhow!("{session_id:?} is not a session id (a UUID)"))?;
    let mut recorder = api.recorder()?;
    let mut request = api
        .request(GetRecordingRequest {
            session_id: session_id.to_owned(),
        })
        .await?;
    request.set_timeout(DOWNLOAD_TIMEOUT);
    let mut stream = recorder
        .get(request)
        .await
        .map_err(|s| ApiError::from_status(&s))?
        .into_inner();
    let mut receiver = verify::Receiver::new(session_id, out);
    while let Some(message) = stream
        .message()
        .await
        .map_err(|s| ApiError::from_status(&s))?
    {
        receiver.accept(message)?;
    }
    Ok(receiver.finish()?)
}

pub(super) fn load_identities(path: &Path) -> anyhow::Result<Vec<age::x25519::Identity>> {
    Ok(tucdesk_recording::keys::load_identity_file(path)?)
}

pub(super) async fn export(
    config: &ConfigDir,
    session_id: &str,
    output: &Path,
    identity: Option<&Path>,
    encrypted: bool,
    force: bool,
) -> anyhow::Result<()> {
    verify::check_destination(output, force)?;
    let mut api = Api::open(config)?;
    if encrypted {
        verify::check_destination(&verify::manifest_path(output), force)?;
        let tmp = verify::temp_beside(output)?;
        let received = download(&mut api, session_id, tmp).await?;
        check_agent_pin(config, &mut api, &received.manifest.agent_id).await?;
        let manifest = verify::export_encrypted(received, output, force)?;
        eprintln!(
            "tucdesk: verified; wrote {} and its signed manifest {}",
            output.display(),
            manifest.display()
        );
        return Ok(());
    }
    let identity = identity.context("--identity FILE is needed to decrypt")?;
    let identities = load_identities(identity)?;
    let dir = match output.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let ciphertext = tempfile::tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let received = download(&mut api, session_id, ciphertext).await?;
    check_agent_pin(config, &mut api, &received.manifest.agent_id).await?;
    verify::export_plain(received, &identities, identity, output, force)?;
    eprintln!(
        "tucdesk: verified and decrypted; wrote {}",
        output.display()
    );
    Ok(())
}

/// `tucdesk play`.
pub async fn play(config: &ConfigDir, args: PlayArgs) -> anyhow::Result<()> {
    let options = playback::options(args.speed, args.max_idle).map_err(anyhow::Error::msg)?;
    let local = Path::new(&args.target);
    if !local.is_file() && (args.target.ends_with(".cast") || args.target.ends_with(".age")) {
        anyhow::bail!("{}: no such file", local.display());
    }
    let mut out = std::io::stdout();
    let mut sleeper = tucdesk_recording::ThreadSleeper;
    if local.is_file() && !args.target.ends_with(".age") {
        eprintln!("tucdesk: playing a plain local file: there is no signature to verify");
        let file =
            std::fs::File::open(local).with_context(|| format!("opening {}", local.display()))?;
        tokio::task::block_in_place(|| playback::play_cast(file, options, &mut out, &mut sleeper))?;
        return Ok(());
    }
    let identity = args
        .identity
        .as_deref()
        .context("--identity FILE is needed to decrypt a recording")?;
    let identities = load_identities(identity)?;
    let file = if local.is_file() {
        if verify::manifest_path(local).exists() {
            let (manifest, file) = verify::verify_local(local)?;
            match Api::open(config) {
                Ok(mut api) => {
                    match check_agent_pin(config, &mut api, &manifest.agent_id).await {
                        // A pin naming another key is fatal; an unreachable server is not,
                        // for a file verified offline.
                        Err(err) if err.downcast_ref::<verify::VerifyError>().is_none() => {
                            eprintln!(
                                "tucdesk: verified the signature of agent {}; not checked \
                                 against known_agents ({err:#})",
                                verify::fingerprint(&manifest.agent_id)
                            );
                        }
                        other => other?,
                    }
                }
                Err(_) => eprintln!(
                    "tucdesk: verified the signature of agent {}; not logged in, so not checked \
                     against known_agents",
                    verify::fingerprint(&manifest.agent_id)
                ),
            }
            verify::check_identities(&identities, &manifest, identity)?;
            file
        } else if args.unverified {
            eprintln!("tucdesk: no manifest beside the file: playing it UNVERIFIED");
            std::fs::File::open(local).with_context(|| format!("opening {}", local.display()))?
        } else {
            anyhow::bail!(
                "{} has no manifest beside it ({}), so it cannot be verified; pass --unverified \
                 to play it anyway",
                local.display(),
                verify::manifest_path(local).display()
            );
        }
    } else {
        let mut api = Api::open(config)?;
        let tmp = tempfile::tempfile().context("creating a temporary file")?;
        let received = download(&mut api, &args.target, tmp).await?;
        check_agent_pin(config, &mut api, &received.manifest.agent_id).await?;
        verify::check_identities(&identities, &received.manifest, identity)?;
        let mut file = received.out;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
        file
    };
    // Playback sleeps between events: keep it off the async workers.
    let stats = tokio::task::block_in_place(|| {
        playback::play_encrypted(
            std::io::BufReader::new(file),
            &identities,
            options,
            &mut out,
            &mut sleeper,
        )
    })?;
    eprintln!("\ntucdesk: played {} events", stats.events);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn agents_are_found_by_id_or_unique_name() {
        let id = tucdesk_crypto::Identity::generate().unwrap().agent_id();
        let twin = tucdesk_crypto::Identity::generate().unwrap().agent_id();
        let mut names = HashMap::new();
        names.insert(id.clone(), "web-1".to_owned());
        assert_eq!(resolve_agent(&names, "web-1").unwrap(), id);
        assert_eq!(
            resolve_agent(&names, &twin).unwrap(),
            twin,
            "an id needs no lookup"
        );
        assert!(
            resolve_agent(&names, "db-1")
                .unwrap_err()
                .to_string()
                .contains("no agent")
        );
        names.insert(twin, "web-1".to_owned());
        assert!(
            resolve_agent(&names, "web-1")
                .unwrap_err()
                .to_string()
                .contains("give the agent id")
        );
    }
}
