//! Checking a downloaded recording before anything is written where the user asked: the
//! manifest's agent signature (against the agent id, which is its key, and the known_agents
//! pin), the ciphertext's size and SHA-256 while it streams in, and after decryption the
//! plaintext's size and SHA-256. Output goes to a temporary file in the destination's
//! directory and is renamed into place only after every check passed; on any error the
//! temporary file is deleted and the destination is untouched.

use std::fs::File;
use std::io::{BufWriter, Seek as _, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;
use tucdesk_crypto::PublicKey;
use tucdesk_proto::v1::{RecordingInfo, RecordingManifest, SignedRecordingManifest};
use tucdesk_recording::crypt::HashingWriter;
use tucdesk_recording::{ManifestError, RecordingError};

use crate::pins::PinCheck;

/// Why a recording was refused. Never carries plaintext or key material.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the recorder sent no recording information before the data")]
    NoInfo,
    #[error("the recorder sent the recording information twice")]
    InfoTwice,
    #[error("the recording has no signed manifest")]
    NoManifest,
    #[error("the recording's agent id is not an agent key: {0}")]
    BadAgentId(String),
    #[error("the manifest is not valid for agent {fingerprint}: {reason}")]
    Manifest {
        fingerprint: String,
        reason: ManifestError,
    },
    #[error("the manifest is for session {found}, not {wanted}")]
    WrongSession { wanted: String, found: String },
    #[error(
        "THE RECORDING'S AGENT KEY DOES NOT MATCH THE PIN of agent {name:?}.\n  pinned:    {pinned}\n  \
         recording: {offered}\nThe recording was not made by the agent you know by that name."
    )]
    PinMismatch {
        name: String,
        pinned: String,
        offered: String,
    },
    #[error(
        "the recording is larger than its manifest says ({limit} bytes): damaged or tampered; \
         nothing was written"
    )]
    TooLong { limit: u64 },
    #[error(
        "the recording's {what} does not match its signed manifest (size {got} of {want} bytes, \
         SHA-256 {hash_state}): damaged or tampered; nothing was written"
    )]
    Mismatch {
        what: &'static str,
        got: u64,
        want: u64,
        hash_state: &'static str,
    },
    #[error("{0} exists; pass --force to replace it")]
    Exists(String),
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error(transparent)]
    Recording(#[from] RecordingError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> VerifyError + '_ {
    move |error| VerifyError::Io {
        path: path.display().to_string(),
        error,
    }
}

/// The fingerprint of an agent id, or the id itself when it is not a key.
pub fn fingerprint(agent_id: &str) -> String {
    PublicKey::from_agent_id(agent_id).map_or_else(|_| agent_id.to_owned(), |k| k.fingerprint())
}

/// Verifies `signed` against the key `agent_id` names (an agent id is its public key), and
/// that it is the manifest of `session_id` when one is given.
pub fn verify_signed(
    signed: &SignedRecordingManifest,
    agent_id: &str,
    session_id: Option<&str>,
) -> Result<RecordingManifest, VerifyError> {
    let key = PublicKey::from_agent_id(agent_id)
        .map_err(|_| VerifyError::BadAgentId(agent_id.chars().take(64).collect()))?;
    let manifest =
        tucdesk_recording::manifest::verify_manifest(signed, &key).map_err(|reason| {
            VerifyError::Manifest {
                fingerprint: key.fingerprint(),
                reason,
            }
        })?;
    if let Some(wanted) = session_id
        && manifest.session_id != wanted
    {
        return Err(VerifyError::WrongSession {
            wanted: wanted.to_owned(),
            found: manifest.session_id,
        });
    }
    Ok(manifest)
}

/// Verifies the `info` message of a download of `session_id`.
pub fn verify_info(
    info: &RecordingInfo,
    session_id: &str,
) -> Result<(SignedRecordingManifest, RecordingManifest), VerifyError> {
    let signed = info
        .signed_manifest
        .clone()
        .ok_or(VerifyError::NoManifest)?;
    let manifest = verify_signed(&signed, &info.agent_id, Some(session_id))?;
    Ok((signed, manifest))
}

/// What known_agents says about the recording's agent, as an error when the pin names
/// another key. `name` is the agent's name as rendezvous knows it (if it does).
pub fn check_pin(check: &PinCheck, name: &str, agent_id: &str) -> Result<bool, VerifyError> {
    match check {
        PinCheck::Match => Ok(true),
        PinCheck::Unknown => Ok(false),
        PinCheck::Changed { pinned } => Err(VerifyError::PinMismatch {
            name: name.to_owned(),
            pinned: fingerprint(pinned),
            offered: fingerprint(agent_id),
        }),
    }
}

/// Receives the ciphertext, refusing more bytes than the manifest announces, and checks
/// size and SHA-256 at the end.
#[derive(Debug)]
pub struct CiphertextSink<W: Write> {
    out: HashingWriter<BufWriter<W>>,
    want_len: u64,
    want_hash: Vec<u8>,
}

impl<W: Write> CiphertextSink<W> {
    pub fn new(out: W, manifest: &RecordingManifest) -> Self {
        Self {
            out: HashingWriter::new(BufWriter::new(out)),
            want_len: manifest.ciphertext_size,
            want_hash: manifest.ciphertext_sha256.clone(),
        }
    }

    /// Appends one chunk.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), VerifyError> {
        if self.out.len().saturating_add(chunk.len() as u64) > self.want_len {
            return Err(VerifyError::TooLong {
                limit: self.want_len,
            });
        }
        self.out
            .write_all(chunk)
            .map_err(io_err(Path::new("(temporary file)")))
    }

    /// The written output, once size and SHA-256 match the manifest.
    pub fn finish(mut self) -> Result<W, VerifyError> {
        let tmp = Path::new("(temporary file)");
        self.out.flush().map_err(io_err(tmp))?;
        let (out, hash, len) = self.out.finish();
        check_digest("ciphertext", len, &hash, self.want_len, &self.want_hash)?;
        out.into_inner()
            .map_err(|err| io_err(tmp)(err.into_error()))
    }
}

fn check_digest(
    what: &'static str,
    got: u64,
    hash: &[u8; 32],
    want: u64,
    want_hash: &[u8],
) -> Result<(), VerifyError> {
    let hash_ok = hash.as_slice() == want_hash;
    if got != want || !hash_ok {
        return Err(VerifyError::Mismatch {
            what,
            got,
            want,
            hash_state: if hash_ok { "matches" } else { "differs" },
        });
    }
    Ok(())
}

/// The directory a file at `path` lives in (`.` for a bare name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Refuses an existing `path` unless `force`.
pub fn check_destination(path: &Path, force: bool) -> Result<(), VerifyError> {
    if !force && path.symlink_metadata().is_ok() {
        return Err(VerifyError::Exists(path.display().to_string()));
    }
    Ok(())
}

/// A new 0600 temporary file beside `destination`, deleted unless persisted.
pub fn temp_beside(destination: &Path) -> Result<NamedTempFile, VerifyError> {
    let dir = parent_dir(destination);
    tempfile::Builder::new()
        .prefix(".tucdesk-")
        .suffix(".partial")
        .tempfile_in(&dir)
        .map_err(io_err(&dir))
}

/// Syncs `tmp` and renames it to `destination` (refusing an existing one unless `force`).
pub fn persist(tmp: NamedTempFile, destination: &Path, force: bool) -> Result<(), VerifyError> {
    tmp.as_file().sync_all().map_err(io_err(destination))?;
    let result = if force {
        tmp.persist(destination)
    } else {
        tmp.persist_noclobber(destination)
    };
    result.map(|_| ()).map_err(|err| {
        if err.error.kind() == std::io::ErrorKind::AlreadyExists {
            VerifyError::Exists(destination.display().to_string())
        } else {
            io_err(destination)(err.error)
        }
    })
}

/// Decrypts the verified `ciphertext` (rewound first) with `identities` into a temporary
/// file beside `destination`, checks the plaintext against the manifest and renames it into
/// place.
pub fn decrypt_to_file(
    mut ciphertext: File,
    identities: &[age::x25519::Identity],
    manifest: &RecordingManifest,
    destination: &Path,
    force: bool,
) -> Result<(), VerifyError> {
    check_destination(destination, force)?;
    ciphertext
        .seek(SeekFrom::Start(0))
        .map_err(io_err(Path::new("(temporary file)")))?;
    let tmp = temp_beside(destination)?;
    let out = BufWriter::new(tmp.as_file());
    let (len, hash) = tucdesk_recording::crypt::decrypt_to_writer(
        std::io::BufReader::new(ciphertext),
        identities,
        out,
        manifest.plaintext_size,
    )
    .map_err(|err| match err {
        RecordingError::TooLarge => VerifyError::TooLong {
            limit: manifest.plaintext_size,
        },
        other => VerifyError::Recording(other),
    })?;
    check_digest(
        "plaintext",
        len,
        &hash,
        manifest.plaintext_size,
        &manifest.plaintext_sha256,
    )?;
    persist(tmp, destination, force)
}

/// Where the manifest of an exported `X.cast.age` goes: `X.manifest.pb`, as in the store.
pub fn manifest_path(recording: &Path) -> PathBuf {
    let name = recording
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".cast.age")
        .or_else(|| name.strip_suffix(".age"))
        .unwrap_or(&name);
    recording.with_file_name(format!("{stem}.manifest.pb"))
}

/// Largest manifest file read beside a local recording (a signed manifest is at most 16 KiB
/// plus its signature and framing).
const MAX_MANIFEST_FILE_LEN: u64 = 20 * 1024;

/// A download whose manifest signature, size and SHA-256 all checked out.
#[derive(Debug)]
pub struct Received<W> {
    pub signed: SignedRecordingManifest,
    pub manifest: RecordingManifest,
    /// The ciphertext, as received.
    pub out: W,
}

/// The state of one `RecorderService.Get` stream: `info` first (verified at once), then
/// the ciphertext chunks into `out`.
#[derive(Debug)]
pub struct Receiver<W: Write> {
    session_id: String,
    out: Option<W>,
    state: Option<(
        SignedRecordingManifest,
        RecordingManifest,
        CiphertextSink<W>,
    )>,
}

impl<W: Write> Receiver<W> {
    pub fn new(session_id: &str, out: W) -> Self {
        Self {
            session_id: session_id.to_owned(),
            out: Some(out),
            state: None,
        }
    }

    /// The manifest, once `info` arrived.
    pub fn manifest(&self) -> Option<&RecordingManifest> {
        self.state.as_ref().map(|(_, manifest, _)| manifest)
    }

    /// Takes one message of the stream.
    pub fn accept(
        &mut self,
        message: tucdesk_proto::v1::GetRecordingResponse,
    ) -> Result<(), VerifyError> {
        use tucdesk_proto::v1::get_recording_response::Kind;
        match message.kind {
            Some(Kind::Info(info)) => {
                let out = self.out.take().ok_or(VerifyError::InfoTwice)?;
                let (signed, manifest) = verify_info(&info, &self.session_id)?;
                let sink = CiphertextSink::new(out, &manifest);
                self.state = Some((signed, manifest, sink));
                Ok(())
            }
            Some(Kind::Chunk(chunk)) => match &mut self.state {
                Some((_, _, sink)) => sink.write(&chunk),
                None => Err(VerifyError::NoInfo),
            },
            None => Ok(()),
        }
    }

    /// The verified download, at the end of the stream.
    pub fn finish(self) -> Result<Received<W>, VerifyError> {
        let (signed, manifest, sink) = self.state.ok_or(VerifyError::NoInfo)?;
        let out = sink.finish()?;
        Ok(Received {
            signed,
            manifest,
            out,
        })
    }
}

/// Refuses identities none of which is a recipient the manifest names (a clear error
/// instead of age's "no matching keys").
pub fn check_identities(
    identities: &[age::x25519::Identity],
    manifest: &RecordingManifest,
    identity_file: &Path,
) -> Result<(), VerifyError> {
    let ours: Vec<String> = identities
        .iter()
        .map(|i| i.to_public().to_string())
        .collect();
    if manifest.age_recipients.iter().any(|r| ours.contains(r)) {
        return Ok(());
    }
    Err(VerifyError::Recording(RecordingError::Invalid(format!(
        "{} holds no identity this recording is encrypted to (its recipients: {}); use the \
         identity file of one of them",
        identity_file.display(),
        manifest.age_recipients.join(", ")
    ))))
}

/// `tucdesk recordings export` without `--encrypted`: decrypts a verified download to a plain
/// asciicast file at `output`.
pub fn export_plain(
    received: Received<File>,
    identities: &[age::x25519::Identity],
    identity_file: &Path,
    output: &Path,
    force: bool,
) -> Result<(), VerifyError> {
    check_identities(identities, &received.manifest, identity_file)?;
    decrypt_to_file(received.out, identities, &received.manifest, output, force)
}

/// `tucdesk recordings export --encrypted`: the verified `.cast.age` at `output` and its
/// signed manifest beside it ([`manifest_path`]).
pub fn export_encrypted(
    received: Received<NamedTempFile>,
    output: &Path,
    force: bool,
) -> Result<PathBuf, VerifyError> {
    use prost::Message as _;
    let manifest_out = manifest_path(output);
    check_destination(output, force)?;
    check_destination(&manifest_out, force)?;
    let mut tmp = temp_beside(&manifest_out)?;
    tmp.write_all(&received.signed.encode_to_vec())
        .map_err(io_err(&manifest_out))?;
    persist(tmp, &manifest_out, force)?;
    persist(received.out, output, force)?;
    Ok(manifest_out)
}

/// A local `.cast.age` with its signed manifest beside it: verifies the signature (against
/// the agent key the manifest names), size and SHA-256, and returns the manifest and the file
/// rewound.
pub fn verify_local(path: &Path) -> Result<(RecordingManifest, File), VerifyError> {
    use prost::Message as _;
    use std::io::Read as _;
    let manifest_file = manifest_path(path);
    let mut bytes = Vec::new();
    File::open(&manifest_file)
        .map_err(io_err(&manifest_file))?
        .take(MAX_MANIFEST_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(&manifest_file))?;
    if bytes.len() as u64 > MAX_MANIFEST_FILE_LEN {
        return Err(VerifyError::NoManifest);
    }
    let signed =
        SignedRecordingManifest::decode(bytes.as_slice()).map_err(|_| VerifyError::Manifest {
            fingerprint: "(unknown)".into(),
            reason: ManifestError::Invalid(format!(
                "{} is not a signed manifest",
                manifest_file.display()
            )),
        })?;
    let claimed = tucdesk_recording::manifest::decode_manifest(&signed).map_err(|reason| {
        VerifyError::Manifest {
            fingerprint: "(unknown)".into(),
            reason,
        }
    })?;
    let manifest = verify_signed(&signed, &claimed.agent_id, None)?;
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut sink = CiphertextSink::new(std::io::sink(), &manifest);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        sink.write(buf.get(..n).unwrap_or_default())?;
    }
    sink.finish()?;
    file.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
    Ok((manifest, file))
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
