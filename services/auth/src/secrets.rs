//! The key-encryption key (KEK) and the keys derived from it.
//!
//! One 32-byte KEK, from the environment in production, seals everything secret the auth
//! service keeps at rest (JWT signing keys, TOTP secrets) and keys the hashes that must
//! resist offline guessing (support codes, whose 60 bits are brute-forceable without a key).
//! Each use gets its own subkey, `HKDF-SHA256(ikm = KEK, info = "tucdesk-auth-v1 " ‖ purpose)`,
//! so no key ever serves two purposes.
//!
//! Without a configured KEK (development only) a random one is generated into a file with
//! mode 0600 and reused on the next start; a file readable by others is refused.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use aes_gcm::aead::Aead as _;
use aes_gcm::aead::Payload;
use aes_gcm::{Aes256Gcm, KeyInit as _};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// KEK and subkey length.
pub const KEY_LEN: usize = 32;

/// AES-GCM nonce length; nonces are random (one KEK seals few objects, far below the
/// 2^32 random-nonce bound).
const NONCE_LEN: usize = 12;

/// Name of the development KEK file inside the key directory.
const DEV_KEK_FILE: &str = "kek";

/// Permission bits a secret file must not have (group and other).
const FORBIDDEN_MODE_BITS: u32 = 0o077;

/// What a subkey is for; each variant yields an independent key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Seals JWT signing keys in `signing_keys.private_key_sealed`.
    SigningKeySeal,
    /// Seals TOTP secrets in `users.totp_secret`.
    TotpSeal,
    /// HMAC key of support-code hashes.
    SupportCodeHash,
    /// MAC key of stateless device-binding challenges.
    ChallengeMac,
    /// MAC key of the OAuth consent form's anti-forgery tokens.
    OAuthFormMac,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Self::SigningKeySeal => "signing-key-seal",
            Self::TotpSeal => "totp-seal",
            Self::SupportCodeHash => "support-code-hash",
            Self::ChallengeMac => "challenge-mac",
            Self::OAuthFormMac => "oauth-form-mac",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("the KEK must be 32 bytes in standard base64")]
    BadKek,
    #[error("KEK file {path} is readable by group or others (mode {mode:o}); run chmod 600")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("KEK file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("random number generator failed: {0}")]
    Rng(#[from] tucdesk_crypto::RngError),
    #[error("sealed secret is malformed or was sealed under another key or context")]
    Unseal,
}

/// The key-encryption key. Never printed, zeroized on drop.
pub struct Kek(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

impl Kek {
    /// Parses a base64 KEK (from the environment).
    pub fn from_base64(text: &str) -> Result<Self, SecretsError> {
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| SecretsError::BadKek)?,
        );
        let bytes: [u8; KEY_LEN] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| SecretsError::BadKek)?;
        Ok(Self(Zeroizing::new(bytes)))
    }

    /// A fresh random KEK.
    pub fn generate() -> Result<Self, SecretsError> {
        Ok(Self(tucdesk_crypto::rng::random_secret::<KEY_LEN>()?))
    }

    /// Loads the development KEK from `dir`, creating it (mode 0600) on first use.
    pub fn load_or_create_dev(dir: &Path) -> Result<Self, SecretsError> {
        let path = dir.join(DEV_KEK_FILE);
        let io = |source| SecretsError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::metadata(&path) {
            Ok(meta) => {
                let mode = meta.permissions().mode();
                if mode & FORBIDDEN_MODE_BITS != 0 {
                    return Err(SecretsError::Permissions {
                        path,
                        mode: mode & 0o777,
                    });
                }
                let text = Zeroizing::new(std::fs::read_to_string(&path).map_err(io)?);
                Self::from_base64(&text)
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io)?;
                let kek = Self::generate()?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io)?;
                let encoded = Zeroizing::new(STANDARD.encode(kek.0.as_slice()));
                file.write_all(encoded.as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(kek)
            }
            Err(err) => Err(io(err)),
        }
    }

    /// The subkey for one purpose.
    pub fn subkey(&self, purpose: Purpose) -> Zeroizing<[u8; KEY_LEN]> {
        let mut okm = Zeroizing::new([0u8; KEY_LEN]);
        let info = format!("tucdesk-auth-v1 {}", purpose.label());
        // A 32-byte output is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        let _ = hkdf::Hkdf::<sha2::Sha256>::new(None, self.0.as_slice())
            .expand(info.as_bytes(), okm.as_mut_slice());
        okm
    }

    /// Seals `plaintext` for `purpose`, bound to `context` (e.g. the owning row's id) so a
    /// sealed value copied to another row does not open there. Output: nonce ‖ ciphertext.
    pub fn seal(
        &self,
        purpose: Purpose,
        context: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SecretsError> {
        let key = self.subkey(purpose);
        let cipher = Aes256Gcm::new((&*key).into());
        let nonce: [u8; NONCE_LEN] = tucdesk_crypto::rng::random_array()?;
        let sealed = cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .map_err(|_| SecretsError::Unseal)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`Kek::seal`] produced with the same purpose and context.
    pub fn open(
        &self,
        purpose: Purpose,
        context: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        if sealed.len() < NONCE_LEN {
            return Err(SecretsError::Unseal);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretsError::Unseal)?;
        let key = self.subkey(purpose);
        let cipher = Aes256Gcm::new((&*key).into());
        cipher
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: body,
                    aad: context,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SecretsError::Unseal)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_purpose_and_context() {
        let kek = Kek::generate().unwrap();
        let sealed = kek.seal(Purpose::TotpSeal, b"user-1", b"secret").unwrap();
        assert_eq!(
            kek.open(Purpose::TotpSeal, b"user-1", &sealed)
                .unwrap()
                .as_slice(),
            b"secret"
        );
        assert!(kek.open(Purpose::TotpSeal, b"user-2", &sealed).is_err());
        assert!(
            kek.open(Purpose::SigningKeySeal, b"user-1", &sealed)
                .is_err()
        );
        assert!(
            Kek::generate()
                .unwrap()
                .open(Purpose::TotpSeal, b"user-1", &sealed)
                .is_err()
        );
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(kek.open(Purpose::TotpSeal, b"user-1", &tampered).is_err());
        assert!(
            kek.open(Purpose::TotpSeal, b"user-1", &sealed[..5])
                .is_err()
        );
    }

    #[test]
    fn purposes_get_independent_subkeys() {
        let kek = Kek::generate().unwrap();
        assert_ne!(
            *kek.subkey(Purpose::TotpSeal),
            *kek.subkey(Purpose::SupportCodeHash)
        );
    }

    #[test]
    fn kek_parsing_requires_exactly_32_bytes() {
        assert!(Kek::from_base64(&STANDARD.encode([7u8; 32])).is_ok());
        assert!(Kek::from_base64(&STANDARD.encode([7u8; 31])).is_err());
        assert!(Kek::from_base64("not base64!").is_err());
        let kek = Kek::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        assert_eq!(format!("{kek:?}"), "Kek(<redacted>)");
    }

    #[test]
    fn dev_kek_is_created_0600_reused_and_refused_when_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let first = Kek::load_or_create_dev(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(DEV_KEK_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Kek::load_or_create_dev(dir.path()).unwrap();
        assert_eq!(*first.0, *again.0);
        std::fs::set_permissions(
            dir.path().join(DEV_KEK_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(matches!(
            Kek::load_or_create_dev(dir.path()),
            Err(SecretsError::Permissions { .. })
        ));
    }
}
