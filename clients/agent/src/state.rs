//! The agent's state directory: its identity key (0600, never leaves the host) and what
//! enrollment recorded (server, audience, team, local limits). Nothing else is needed to run.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tucdesk_crypto::Identity;

/// File names inside the state directory.
pub const IDENTITY_FILE: &str = "identity.key";
pub const STATE_FILE: &str = "agent.json";
/// Largest state file read.
const MAX_STATE_FILE_LEN: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "this host is not enrolled (no {0}); run `tucdesk-agent enroll --server URL --token TOKEN`"
    )]
    NotEnrolled(String),
    #[error(
        "this host is already enrolled as {0}; a new enrollment means a new identity: remove the \
         state directory {1} first"
    )]
    AlreadyEnrolled(String, String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{0} is damaged: {1}")]
    Corrupt(String, String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |err| StateError::Io {
        path: path.display().to_string(),
        message: err.to_string(),
    }
}

/// What the host itself allows, whatever the server's policy says (SPEC §4: the agent never
/// trusts the server to have checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalLimits {
    /// Interactive shells may be opened.
    pub allow_shell: bool,
    /// Single commands may be run.
    pub allow_exec: bool,
    /// Every session needs the consent of a person at the host.
    pub attended: bool,
}

impl Default for LocalLimits {
    fn default() -> Self {
        Self {
            allow_shell: true,
            allow_exec: true,
            attended: false,
        }
    }
}

/// What enrollment recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// Rendezvous gRPC URL.
    pub server: String,
    /// The deployment audience registration proofs are signed for.
    pub audience: String,
    pub agent_id: String,
    pub fingerprint: String,
    pub team_id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub limits: LocalLimits,
    /// Extra CA file for an https:// server with a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    pub enrolled_at_ms: u64,
}

/// The agent's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// `/var/lib/tucdesk-agent` for root, else `$XDG_STATE_HOME/tucdesk-agent` or
    /// `~/.local/state/tucdesk-agent`.
    pub fn default_path() -> PathBuf {
        if std::env::var_os("USER").is_some_and(|u| u == "root")
            || std::env::var_os("HOME").is_some_and(|h| h == "/root")
        {
            return PathBuf::from("/var/lib/tucdesk-agent");
        }
        if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
            return PathBuf::from(state).join("tucdesk-agent");
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".local/state/tucdesk-agent")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Session recordings: the spool key, spools of running sessions, the upload outbox.
    pub fn recordings_dir(&self) -> PathBuf {
        self.root.join(crate::recording::RECORDINGS_DIR)
    }

    fn identity_path(&self) -> PathBuf {
        self.root.join(IDENTITY_FILE)
    }

    fn state_path(&self) -> PathBuf {
        self.root.join(STATE_FILE)
    }

    /// Refuses when an enrollment already exists (reinstall = new identity, by hand).
    pub fn ensure_not_enrolled(&self) -> Result<(), StateError> {
        if self.state_path().exists() || self.identity_path().exists() {
            let who = self
                .load()
                .map(|(e, _)| e.fingerprint)
                .unwrap_or_else(|_| "an unknown identity".into());
            return Err(StateError::AlreadyEnrolled(
                who,
                self.root.display().to_string(),
            ));
        }
        Ok(())
    }

    /// Creates the directory (0700).
    pub fn create(&self) -> Result<(), StateError> {
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
            .map_err(io(&self.root))
    }

    /// Writes the identity (0600, refusing to overwrite).
    pub fn save_identity(&self, identity: &Identity) -> Result<(), StateError> {
        let path = self.identity_path();
        identity.save_to_file(&path).map_err(|err| StateError::Io {
            path: path.display().to_string(),
            message: err.to_string(),
        })
    }

    /// Writes the enrollment record atomically (temp file, 0600, rename).
    pub fn save(&self, enrollment: &Enrollment) -> Result<(), StateError> {
        let path = self.state_path();
        let tmp = self.root.join(format!("{STATE_FILE}.tmp"));
        let body = serde_json::to_vec_pretty(enrollment)
            .map_err(|err| StateError::Corrupt(STATE_FILE.into(), err.to_string()))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        file.write_all(&body).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// The enrollment record and the identity.
    pub fn load(&self) -> Result<(Enrollment, Identity), StateError> {
        let path = self.state_path();
        if !path.exists() {
            return Err(StateError::NotEnrolled(path.display().to_string()));
        }
        let len = std::fs::metadata(&path).map_err(io(&path))?.len();
        if len > MAX_STATE_FILE_LEN {
            return Err(StateError::Corrupt(
                path.display().to_string(),
                "too large".into(),
            ));
        }
        let body = std::fs::read(&path).map_err(io(&path))?;
        let enrollment: Enrollment = serde_json::from_slice(&body)
            .map_err(|err| StateError::Corrupt(path.display().to_string(), err.to_string()))?;
        let identity_path = self.identity_path();
        let identity = Identity::load_from_file(&identity_path).map_err(|err| StateError::Io {
            path: identity_path.display().to_string(),
            message: err.to_string(),
        })?;
        if identity.agent_id() != enrollment.agent_id {
            return Err(StateError::Corrupt(
                path.display().to_string(),
                "the identity key does not match the enrolled agent id".into(),
            ));
        }
        Ok((enrollment, identity))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn enrollment(identity: &Identity) -> Enrollment {
        Enrollment {
            server: "http://127.0.0.1:7410".into(),
            audience: "tucdesk".into(),
            agent_id: identity.agent_id(),
            fingerprint: identity.fingerprint(),
            team_id: "t".into(),
            name: "web-1".into(),
            tags: vec!["web".into()],
            limits: LocalLimits::default(),
            ca_file: None,
            enrolled_at_ms: 1,
        }
    }

    #[test]
    fn state_roundtrips_with_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("agent"));
        state.create().unwrap();
        let identity = Identity::generate().unwrap();
        state.save_identity(&identity).unwrap();
        state.save(&enrollment(&identity)).unwrap();
        let (loaded, key) = state.load().unwrap();
        assert_eq!(loaded, enrollment(&identity));
        assert_eq!(key.agent_id(), identity.agent_id());
        for file in [IDENTITY_FILE, STATE_FILE] {
            let mode = std::fs::metadata(dir.path().join("agent").join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{file} is readable by others");
        }
        assert!(matches!(
            state.ensure_not_enrolled(),
            Err(StateError::AlreadyEnrolled(..))
        ));
    }

    #[test]
    fn a_swapped_identity_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().to_path_buf());
        state.create().unwrap();
        let identity = Identity::generate().unwrap();
        state.save_identity(&Identity::generate().unwrap()).unwrap();
        state.save(&enrollment(&identity)).unwrap();
        assert!(matches!(state.load(), Err(StateError::Corrupt(..))));
    }

    #[test]
    fn a_missing_state_says_how_to_enroll() {
        let dir = tempfile::tempdir().unwrap();
        let err = StateDir::new(dir.path().to_path_buf()).load().unwrap_err();
        assert!(err.to_string().contains("tucdesk-agent enroll"));
    }
}
