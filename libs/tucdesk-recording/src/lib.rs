//! TucDesk session recordings (SPEC §7, docs/recordings.md): everything the agent, the
//! recorder and the viewer share about a recording, with no network code.
//!
//! | module | concern |
//! |---|---|
//! | [`cast`] | asciicast v2 writer (UTF-8 carry-over, U+FFFD for invalid bytes) and strict parser |
//! | [`spool`] | the agent's encrypted spool (age segments to a local key) and the final age file |
//! | [`crypt`] | age encryption/decryption with sizes and SHA-256 |
//! | [`keys`] | age X25519 identity files (standard format, 0600, never overwritten), recipients |
//! | [`manifest`] | `RecordingManifest` build/check/sign/verify, `UploadProof` make/verify |
//! | [`play`] | playback with scaled timing through an injectable sleeper |
//!
//! The agent: [`keys::load_or_create_identity`] (spool key), [`spool::Spool::create`], then
//! `output`/`resize`/`tick`, [`spool::Spool::finish`], [`manifest::build_manifest`],
//! [`manifest::sign_manifest`], [`manifest::make_upload_proof`] per call; at start,
//! [`spool::list_spools`] and [`spool::recover`] for sessions a crash interrupted.
//! The viewer: [`manifest::verify_manifest`] against its pin, check the ciphertext SHA-256
//! ([`crypt::HashingWriter`]), then [`read_cast`] or [`crypt::decrypt_to_writer`], and
//! [`play::play`].
#![forbid(unsafe_code)]

pub mod cast;
pub mod crypt;
pub mod keys;
pub mod manifest;
pub mod play;
pub mod spool;

use std::io::{BufReader, Read};

pub use cast::{Cast, CastError, CastEvent, CastHeader, CastLimits, CastReader, CastWriter};
pub use keys::KeyError;
pub use manifest::ManifestError;
pub use play::{PlayOptions, PlayStats, Sleeper, ThreadSleeper, play};
pub use spool::{FinishedRecording, Recovered, Spool, SpoolMeta};

/// What a recording operation ran into. Never carries plaintext or key material.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("I/O error: {0}")]
    Stream(#[from] std::io::Error),
    #[error(transparent)]
    Cast(#[from] CastError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("encryption failed: {0}")]
    Encrypt(String),
    #[error("decryption failed (wrong key, or the file is damaged or truncated): {0}")]
    Decrypt(String),
    #[error("the recording exceeds its size limit")]
    TooLarge,
    #[error("{0}")]
    Invalid(String),
}

/// Decrypts an age-encrypted cast with any of `identities` and parses it.
pub fn read_cast<R: Read>(
    ciphertext: R,
    identities: &[age::x25519::Identity],
    limits: CastLimits,
) -> Result<Cast, RecordingError> {
    let plaintext = crypt::decrypt_reader(ciphertext, identities)?;
    Ok(cast::parse_cast(BufReader::new(plaintext), limits)?)
}
