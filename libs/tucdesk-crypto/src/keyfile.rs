//! Identity key files (SPEC §2: "file mode 0600 … never leaves the host").
//!
//! Format (ASCII, exactly three lines, each ending in `\n`):
//!
//! ```text
//! tucdesk-ed25519-identity-v1
//! <unpadded base64url of the 32-byte Ed25519 seed>
//! <agent_id of the matching public key>
//! ```
//!
//! The third line lets the loader detect a corrupted or hand-edited file
//! instead of silently running under a different identity.
//!
//! Writing creates the file with mode 0600 and `O_EXCL`: an existing
//! identity is never overwritten (reinstall = new identity, chosen
//! explicitly by deleting the old file). Loading refuses a file with any
//! group or other permission bit set, like OpenSSH refuses `id_ed25519`, and
//! checks the mode on the opened handle so a swap between check and read
//! cannot slip through.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use crate::identity::{Identity, SEED_LEN};

/// First line of every identity file; bump the version on any format change.
pub const KEY_FILE_HEADER: &str = "tucdesk-ed25519-identity-v1";
/// Upper bound on an identity file's size: the real file is ~100 bytes, so
/// anything bigger is not ours and is refused before reading it.
pub const MAX_KEY_FILE_LEN: u64 = 512;
/// Permission bits an identity file is created with (owner read/write).
pub const KEY_FILE_MODE: u32 = 0o600;
/// Permission bits that must be clear for a key file to be loaded.
pub const FORBIDDEN_MODE_BITS: u32 = 0o077;

/// Why a key file could not be written or loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Filesystem error, with the path for the log line.
    #[error("identity file {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Refusing to overwrite an existing identity.
    #[error("identity file {0} already exists; refusing to overwrite an identity")]
    AlreadyExists(PathBuf),
    /// Group/other can access the file: the key may have leaked.
    #[error(
        "identity file {path} has mode {mode:o}: it must not be accessible by group or others (chmod 600)"
    )]
    InsecurePermissions {
        /// The file involved.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Not a regular file (directory, device, FIFO…).
    #[error("identity file {0} is not a regular file")]
    NotAFile(PathBuf),
    /// Larger than [`MAX_KEY_FILE_LEN`].
    #[error("identity file {0} is too large to be an identity file")]
    TooLarge(PathBuf),
    /// The content does not follow the format.
    #[error("identity file {path} is malformed: {reason}")]
    Malformed {
        /// The file involved.
        path: PathBuf,
        /// What is wrong (never includes key material).
        reason: &'static str,
    },
    /// Key file permission checks need Unix file modes.
    #[error("identity files are only supported on Unix platforms")]
    UnsupportedPlatform,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Identity {
    /// Writes this identity to a new file with mode 0600. Fails if the file
    /// exists. The parent directory must exist (callers create it, ideally
    /// with mode 0700).
    pub fn save_to_file(&self, path: &Path) -> Result<(), KeyFileError> {
        let encoded = self
            .encode_key_file()
            .map_err(|reason| KeyFileError::Malformed {
                path: path.to_path_buf(),
                reason,
            })?;
        let mut file = create_private(path)?;
        file.write_all(encoded.as_bytes()).map_err(io_err(path))?;
        // Durable before we report success: losing an identity after the
        // agent enrolled it would strand the host.
        file.sync_all().map_err(io_err(path))?;
        Ok(())
    }

    /// Loads an identity, refusing files readable by group or others.
    pub fn load_from_file(path: &Path) -> Result<Self, KeyFileError> {
        let file = File::open(path).map_err(|source| KeyFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let meta = file.metadata().map_err(io_err(path))?;
        if !meta.is_file() {
            return Err(KeyFileError::NotAFile(path.to_path_buf()));
        }
        check_private_mode(path, &meta)?;
        if meta.len() > MAX_KEY_FILE_LEN {
            return Err(KeyFileError::TooLarge(path.to_path_buf()));
        }
        // Pre-size the buffer so `read_to_end` never reallocates and leaves
        // an unwiped copy of the seed in freed memory.
        let cap = usize::try_from(MAX_KEY_FILE_LEN + 1).unwrap_or(usize::MAX);
        let mut buf = Zeroizing::new(Vec::with_capacity(cap));
        file.take(MAX_KEY_FILE_LEN + 1)
            .read_to_end(&mut buf)
            .map_err(io_err(path))?;
        if buf.len() as u64 > MAX_KEY_FILE_LEN {
            return Err(KeyFileError::TooLarge(path.to_path_buf()));
        }
        Self::decode_key_file(&buf).map_err(|reason| KeyFileError::Malformed {
            path: path.to_path_buf(),
            reason,
        })
    }

    fn encode_key_file(&self) -> Result<Zeroizing<String>, &'static str> {
        let seed = self.seed();
        let mut out = Zeroizing::new(String::with_capacity(128));
        out.push_str(KEY_FILE_HEADER);
        out.push('\n');
        // Encode into a wiped fixed buffer (32 bytes = 43 characters) rather
        // than through base64's internal scratch space.
        let mut b64 = Zeroizing::new([0u8; 43]);
        let n = URL_SAFE_NO_PAD
            .encode_slice(*seed, b64.as_mut_slice())
            .map_err(|_| "seed encoding failed")?;
        let text = std::str::from_utf8(&b64[..n]).map_err(|_| "seed encoding failed")?;
        out.push_str(text);
        out.push('\n');
        out.push_str(&self.agent_id());
        out.push('\n');
        Ok(out)
    }

    fn decode_key_file(content: &[u8]) -> Result<Self, &'static str> {
        let text = std::str::from_utf8(content).map_err(|_| "not UTF-8")?;
        let body = text.strip_suffix('\n').ok_or("missing final newline")?;
        let mut lines = body.split('\n');
        let (Some(header), Some(seed_b64), Some(agent_id), None) =
            (lines.next(), lines.next(), lines.next(), lines.next())
        else {
            return Err("expected exactly three lines");
        };
        if header != KEY_FILE_HEADER {
            return Err("unknown header line");
        }
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        // Decode into a fixed buffer (43 chars = 32 bytes exactly); the
        // decoder rejects padding and non-canonical trailing bits.
        let mut scratch = Zeroizing::new([0u8; SEED_LEN + 3]);
        let n = URL_SAFE_NO_PAD
            .decode_slice(seed_b64, scratch.as_mut_slice())
            .map_err(|_| "seed is not unpadded base64url")?;
        if n != SEED_LEN {
            return Err("seed has the wrong length");
        }
        seed.copy_from_slice(&scratch[..SEED_LEN]);
        let identity = Identity::from_seed(&seed);
        if identity.agent_id() != agent_id {
            return Err("agent_id line does not match the seed");
        }
        Ok(identity)
    }
}

/// Length of the symmetric secrets [`load_or_create_secret`] keeps.
pub const SECRET_KEY_LEN: usize = 32;

/// Loads a 32-byte secret (standard base64, one line) from a private file, or creates the
/// file with a fresh random secret and mode 0600 when it does not exist. For development
/// defaults only (key-encryption keys, code-hash keys): production passes secrets through
/// the environment.
pub fn load_or_create_secret(path: &Path) -> Result<Zeroizing<[u8; SECRET_KEY_LEN]>, KeyFileError> {
    use base64::engine::general_purpose::STANDARD;
    let malformed = |reason| KeyFileError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    match File::open(path) {
        Ok(file) => {
            let meta = file.metadata().map_err(io_err(path))?;
            if !meta.is_file() {
                return Err(KeyFileError::NotAFile(path.to_path_buf()));
            }
            check_private_mode(path, &meta)?;
            if meta.len() > MAX_KEY_FILE_LEN {
                return Err(KeyFileError::TooLarge(path.to_path_buf()));
            }
            let cap = usize::try_from(MAX_KEY_FILE_LEN + 1).unwrap_or(usize::MAX);
            let mut text = Zeroizing::new(Vec::with_capacity(cap));
            file.take(MAX_KEY_FILE_LEN + 1)
                .read_to_end(&mut text)
                .map_err(io_err(path))?;
            let trimmed = text.trim_ascii();
            let decoded = Zeroizing::new(
                STANDARD
                    .decode(trimmed)
                    .map_err(|_| malformed("not base64"))?,
            );
            let mut key = Zeroizing::new([0u8; SECRET_KEY_LEN]);
            if decoded.len() != SECRET_KEY_LEN {
                return Err(malformed("the secret must be 32 bytes"));
            }
            key.copy_from_slice(&decoded);
            Ok(key)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let key = crate::rng::random_secret::<SECRET_KEY_LEN>()
                .map_err(|_| malformed("the OS random number generator failed"))?;
            let mut file = create_private(path)?;
            let encoded = Zeroizing::new(STANDARD.encode(key.as_slice()));
            file.write_all(encoded.as_bytes()).map_err(io_err(path))?;
            file.sync_all().map_err(io_err(path))?;
            Ok(key)
        }
        Err(source) => Err(KeyFileError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(unix)]
fn create_private(path: &Path) -> Result<File, KeyFileError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(KEY_FILE_MODE)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyFileError::AlreadyExists(path.to_path_buf())
            } else {
                KeyFileError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })
}

#[cfg(not(unix))]
fn create_private(_path: &Path) -> Result<File, KeyFileError> {
    Err(KeyFileError::UnsupportedPlatform)
}

#[cfg(unix)]
fn check_private_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & FORBIDDEN_MODE_BITS != 0 {
        return Err(KeyFileError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_mode(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), KeyFileError> {
    // Without Unix modes we cannot prove the file is private: fail closed.
    Err(KeyFileError::UnsupportedPlatform)
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn save_creates_mode_0600_and_load_roundtrips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        let id = Identity::generate().unwrap();
        id.save_to_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = Identity::load_from_file(&path).unwrap();
        assert_eq!(loaded.public_key(), id.public_key());
    }

    #[test]
    fn save_refuses_to_overwrite_an_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        let first = Identity::generate().unwrap();
        first.save_to_file(&path).unwrap();
        let second = Identity::generate().unwrap();
        assert!(matches!(
            second.save_to_file(&path),
            Err(KeyFileError::AlreadyExists(_))
        ));
        let loaded = Identity::load_from_file(&path).unwrap();
        assert_eq!(loaded.public_key(), first.public_key());
    }

    #[test]
    fn load_refuses_group_or_other_readable_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        Identity::generate().unwrap().save_to_file(&path).unwrap();
        for mode in [0o640, 0o604, 0o644, 0o660, 0o610, 0o601, 0o666] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            match Identity::load_from_file(&path) {
                Err(KeyFileError::InsecurePermissions { mode: got, .. }) => assert_eq!(got, mode),
                other => panic!("mode {mode:o} accepted: {other:?}"),
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(Identity::load_from_file(&path).is_ok());
    }

    #[test]
    fn load_rejects_tampered_or_oversized_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        let id = Identity::generate().unwrap();
        id.save_to_file(&path).unwrap();
        let good = std::fs::read_to_string(&path).unwrap();

        let other = Identity::generate().unwrap();
        let swapped = good.replace(&id.agent_id(), &other.agent_id());
        let cases: Vec<(String, &str)> = vec![
            (swapped, "mismatched agent_id"),
            (good.trim_end().to_string(), "no final newline"),
            (
                good.replace(KEY_FILE_HEADER, "tucdesk-ed25519-identity-v0"),
                "header",
            ),
            (format!("{good}extra\n"), "extra line"),
            ("x".repeat(600), "oversized"),
        ];
        for (i, (content, what)) in cases.into_iter().enumerate() {
            let p = dir.path().join(format!("bad{i}"));
            std::fs::write(&p, content).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert!(Identity::load_from_file(&p).is_err(), "{what} accepted");
        }
    }

    #[test]
    fn secrets_are_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("code.key");
        let first = load_or_create_secret(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = load_or_create_secret(&path).unwrap();
        assert_eq!(first.as_slice(), again.as_slice());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create_secret(&path),
            Err(KeyFileError::InsecurePermissions { .. })
        ));
        let short = dir.path().join("short.key");
        std::fs::write(&short, "c2hvcnQ=").unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_or_create_secret(&short),
            Err(KeyFileError::Malformed { .. })
        ));
    }

    #[test]
    fn load_refuses_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(
            Identity::load_from_file(dir.path()),
            Err(KeyFileError::NotAFile(_))
        ));
    }
}
