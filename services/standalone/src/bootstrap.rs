//! First start: when auth's database has no team, create the first team and its owner and
//! hand out the one-time setup token (on stdout through the summary, and in
//! `<data-dir>/setup-token`, mode 0600, for scripts).

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tucdesk_auth::Auth;
use tucdesk_crypto::SecretString;

/// The file the setup token is written to, inside the data directory.
pub const SETUP_TOKEN_FILE: &str = "setup-token";

/// What the first start created.
#[derive(Debug, Clone)]
pub struct FirstStart {
    pub team: String,
    pub team_id: String,
    pub email: String,
    pub user_id: String,
    /// Single use; sets the owner's password (`tucdesk login --setup-token`).
    pub setup_token: SecretString,
    pub expires_at_ms: i64,
    /// Where the token was written.
    pub token_file: PathBuf,
}

/// Bootstraps `team` with owner `email` if auth has no team yet; `None` on later starts.
pub async fn bootstrap_if_empty(
    auth: &Auth,
    team: &str,
    email: &str,
    data_dir: &Path,
) -> anyhow::Result<Option<FirstStart>> {
    if tucdesk_auth::store::count_teams(auth.db()).await? > 0 {
        return Ok(None);
    }
    let done = auth
        .bootstrap(team, email)
        .await
        .context("creating the first team")?;
    let token_file = data_dir.join(SETUP_TOKEN_FILE);
    write_private(&token_file, done.setup_token.expose())
        .with_context(|| format!("writing the setup token to {}", token_file.display()))?;
    tracing::info!(team_id = %done.team_id, owner = %email, "first start: created the first team and its owner");
    Ok(Some(FirstStart {
        team: team.to_owned(),
        team_id: done.team_id,
        email: email.to_owned(),
        user_id: done.user_id,
        setup_token: done.setup_token,
        expires_at_ms: done.expires_at_ms,
        token_file,
    }))
}

/// Writes `text` and a newline to `path`, readable by the owner only (an existing file is
/// replaced and its mode tightened).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}
