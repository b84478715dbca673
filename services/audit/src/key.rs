//! The audit signing key: Ed25519, from a private key file (SPEC §6: `sig = Ed25519(server_key,
//! hash)`). It signs exactly two things, entry hashes and checkpoints
//! (`docs/audit-format.md`), through `tucdesk_crypto::audit` and `tucdesk_crypto::merkle`.
//!
//! File format: the 32-byte Ed25519 seed in standard base64 on one line, mode 0600, read and
//! created by `tucdesk_crypto::keyfile::load_or_create_secret` (which refuses a file readable
//! by group or others). Not the `tucdesk-ed25519-identity-v1` identity file: an `Identity`
//! cannot hand out the `ed25519_dalek::SigningKey` the chain builder and checkpoints take.
//!
//! Verifiers know the key by its public half in base64url (the encoding of agent ids,
//! `tucdesk-audit public-key`) and its id, the fingerprint `SHA256:<base64>`.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use tucdesk_crypto::PublicKey;

/// Why the key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("audit key file {0} does not exist (and --require-key-file is set)")]
    Missing(PathBuf),
    #[error("audit key directory {path}: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("audit key file: {0}")]
    File(#[from] tucdesk_crypto::KeyFileError),
    #[error("audit key file {0} does not hold a valid Ed25519 key")]
    Invalid(PathBuf),
}

/// The audit signing key with its public half and id. The seed is wiped on drop
/// (`SigningKey` zeroizes); `Debug` shows only the id.
pub struct AuditKey {
    signing: SigningKey,
    public: PublicKey,
    key_id: String,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl AuditKey {
    /// A key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        let signing = SigningKey::from_bytes(seed);
        let public = PublicKey::from_bytes(&signing.verifying_key().to_bytes())
            .map_err(|_| KeyError::Invalid(PathBuf::new()))?;
        let key_id = public.fingerprint();
        Ok(Self {
            signing,
            public,
            key_id,
        })
    }

    /// A fresh random key (tests, tools).
    pub fn generate() -> Result<Self, KeyError> {
        let seed = tucdesk_crypto::rng::random_secret::<32>()
            .map_err(|_| KeyError::Invalid(PathBuf::new()))?;
        Self::from_seed(&seed)
    }

    /// Loads the key at `path`. When the file is missing it is an error if `require` is set;
    /// otherwise a new key is generated into it (mode 0600, parent directory created 0700)
    /// with a warning: fine for development, wrong for a production replica.
    pub fn load_or_create(path: &Path, require: bool) -> Result<Self, KeyError> {
        let exists = path.try_exists().map_err(|source| KeyError::Directory {
            path: path.to_path_buf(),
            source,
        })?;
        if !exists {
            if require {
                return Err(KeyError::Missing(path.to_path_buf()));
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                create_private_dir(dir)?;
            }
            tracing::warn!(
                path = %path.display(),
                "the audit signing key file does not exist: generating a new key. In production \
                 provision the key file once, share it between replicas, set \
                 TUCDESK_AUDIT_REQUIRE_KEY_FILE=true, and give verifiers the output of \
                 `tucdesk-audit public-key`"
            );
        }
        let seed = tucdesk_crypto::keyfile::load_or_create_secret(path)?;
        Self::from_seed(&seed).map_err(|_| KeyError::Invalid(path.to_path_buf()))
    }

    /// The secret key, for the chain builder and checkpoint signing only.
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// The public key in unpadded base64url (like an agent id): what verifiers are given.
    pub fn public_key_base64url(&self) -> String {
        self.public.agent_id()
    }

    /// `SHA256:<base64 of sha256(public key)>`: the `key_id` of entries and checkpoints.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The key for `ed25519_dalek` verification (`verify_chain`, checkpoint `verify`).
    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.signing.verifying_key()
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| KeyError::Directory {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<(), KeyError> {
    std::fs::create_dir_all(dir).map_err(|source| KeyError::Directory {
        path: dir.to_path_buf(),
        source,
    })
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_missing_key_is_created_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit.key");
        let first = AuditKey::load_or_create(&path, false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = AuditKey::load_or_create(&path, true).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        assert!(first.key_id().starts_with("SHA256:"));
        assert_eq!(first.public_key_base64url().len(), 43);
        assert!(!format!("{first:?}").contains(&first.public_key_base64url()));
    }

    #[test]
    fn a_required_key_file_must_exist_and_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        assert!(matches!(
            AuditKey::load_or_create(&path, true),
            Err(KeyError::Missing(_))
        ));
        AuditKey::load_or_create(&path, false).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            AuditKey::load_or_create(&path, true),
            Err(KeyError::File(_))
        ));
    }
}
