//! The viewer's configuration directory (`$TUCDESK_CONFIG_DIR`, else
//! `$XDG_CONFIG_HOME/tucdesk`, else `~/.config/tucdesk`), every file 0600 in a 0700 directory:
//! - `device.key`: the operator device key (Ed25519), made by the first `tucdesk login`;
//! - `credentials.json`: server URLs and the current tokens;
//! - `known_agents`: pinned agent keys (see [`crate::pins`]).

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tucdesk_crypto::Identity;

pub const DEVICE_KEY_FILE: &str = "device.key";
pub const CREDENTIALS_FILE: &str = "credentials.json";
pub const KNOWN_AGENTS_FILE: &str = "known_agents";
/// Largest credentials file read.
const MAX_CREDENTIALS_LEN: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("not logged in; run `tucdesk login`")]
    NotLoggedIn,
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{0} is damaged: {1}; run `tucdesk login` again")]
    Corrupt(String, String),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ConfigError + '_ {
    move |err| ConfigError::Io {
        path: path.display().to_string(),
        message: err.to_string(),
    }
}

/// Where the services are and the tokens this device holds.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// Auth gRPC URL.
    pub auth: String,
    /// Rendezvous gRPC URL.
    pub rendezvous: String,
    /// Audit gRPC URL.
    #[serde(default = "default_audit_url")]
    pub audit: String,
    /// Recorder gRPC URL (for `tucdesk recordings` and `tucdesk play`); unset until a login
    /// with `--recorder`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorder: Option<String>,
    /// Extra CA file for servers with a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    pub email: String,
    pub user_id: String,
    pub team_id: String,
    pub role: String,
    pub access_token: String,
    /// Unix seconds.
    pub access_expires_at: i64,
    pub refresh_token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are never printed.
        f.debug_struct("Credentials")
            .field("auth", &self.auth)
            .field("rendezvous", &self.rendezvous)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// The standalone stack's audit service, for credentials stored before the URL was.
pub fn default_audit_url() -> String {
    "http://127.0.0.1:7430".to_owned()
}

/// The configuration directory.
#[derive(Debug, Clone)]
pub struct ConfigDir {
    root: PathBuf,
}

impl ConfigDir {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn default_path() -> PathBuf {
        if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir).join("tucdesk");
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".config/tucdesk")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.root.join(file)
    }

    /// Creates the directory (0700).
    pub fn create(&self) -> Result<(), ConfigError> {
        std::fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(&self.root))
    }

    /// The device key, created on first use.
    pub fn device_key(&self) -> Result<Identity, ConfigError> {
        let path = self.path(DEVICE_KEY_FILE);
        if path.exists() {
            return Identity::load_from_file(&path).map_err(|err| ConfigError::Io {
                path: path.display().to_string(),
                message: err.to_string(),
            });
        }
        self.create()?;
        let identity = Identity::generate().map_err(|err| ConfigError::Io {
            path: path.display().to_string(),
            message: err.to_string(),
        })?;
        identity
            .save_to_file(&path)
            .map_err(|err| ConfigError::Io {
                path: path.display().to_string(),
                message: err.to_string(),
            })?;
        Ok(identity)
    }

    /// The stored credentials.
    pub fn credentials(&self) -> Result<Credentials, ConfigError> {
        let path = self.path(CREDENTIALS_FILE);
        if !path.exists() {
            return Err(ConfigError::NotLoggedIn);
        }
        if std::fs::metadata(&path).map_err(io_err(&path))?.len() > MAX_CREDENTIALS_LEN {
            return Err(ConfigError::Corrupt(
                path.display().to_string(),
                "too large".into(),
            ));
        }
        let body = zeroize::Zeroizing::new(std::fs::read(&path).map_err(io_err(&path))?);
        serde_json::from_slice(&body)
            .map_err(|err| ConfigError::Corrupt(path.display().to_string(), err.to_string()))
    }

    /// Replaces the credentials atomically (0600 temp file, rename).
    pub fn save_credentials(&self, credentials: &Credentials) -> Result<(), ConfigError> {
        self.create()?;
        let body = zeroize::Zeroizing::new(
            serde_json::to_vec_pretty(credentials)
                .map_err(|err| ConfigError::Corrupt(CREDENTIALS_FILE.into(), err.to_string()))?,
        );
        write_private(&self.path(CREDENTIALS_FILE), &body)
    }

    /// Forgets the credentials (the device key and pins stay).
    pub fn remove_credentials(&self) -> Result<(), ConfigError> {
        let path = self.path(CREDENTIALS_FILE);
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(err)),
            _ => Ok(()),
        }
    }
}

/// Writes `body` to `path` through a 0600 temporary file and a rename.
pub(crate) fn write_private(path: &Path, body: &[u8]) -> Result<(), ConfigError> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.write_all(body).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn credentials_roundtrip_privately_and_never_print_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let config = ConfigDir::new(dir.path().join("tucdesk"));
        assert!(matches!(
            config.credentials(),
            Err(ConfigError::NotLoggedIn)
        ));
        let credentials = Credentials {
            auth: "http://127.0.0.1:7401".into(),
            rendezvous: "http://127.0.0.1:7410".into(),
            audit: default_audit_url(),
            recorder: Some("http://127.0.0.1:7440".into()),
            ca_file: None,
            email: "a@example.com".into(),
            user_id: "u".into(),
            team_id: "t".into(),
            role: "owner".into(),
            access_token: "secret-access".into(),
            access_expires_at: 1,
            refresh_token: "secret-refresh".into(),
        };
        config.save_credentials(&credentials).unwrap();
        assert_eq!(config.credentials().unwrap(), credentials);
        let mode = std::fs::metadata(config.path(CREDENTIALS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
        assert!(!format!("{credentials:?}").contains("secret"));
        config.remove_credentials().unwrap();
        assert!(matches!(
            config.credentials(),
            Err(ConfigError::NotLoggedIn)
        ));
    }

    #[test]
    fn the_device_key_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = ConfigDir::new(dir.path().to_path_buf());
        let first = config.device_key().unwrap();
        let again = config.device_key().unwrap();
        assert_eq!(first.agent_id(), again.agent_id());
    }
}
