//! The agent's encrypted spool: terminal output never reaches the disk in plaintext, and a
//! crash loses at most the last segment (about [`SEGMENT_MAX_AGE`]).
//!
//! A spool is a directory per session under the agent's spool root:
//!
//! ```text
//! {root}/{session_id}/meta.age          SpoolMeta (JSON), encrypted to the spool key
//! {root}/{session_id}/seg-00000000.age  asciicast lines, each segment a complete age file
//! {root}/{session_id}/seg-00000001.age  encrypted to the spool key …
//! ```
//!
//! The spool key is an age X25519 identity in the agent's state directory (mode 0600,
//! [`crate::keys::load_or_create_identity`]); it protects the spool only while the session
//! runs. The cast lives in memory in the open segment until it is sealed: encrypted, written
//! to a temporary file, synced, renamed into place. A segment is sealed when it reaches
//! [`SEGMENT_MAX_BYTES`] or is [`SEGMENT_MAX_AGE`] old (checked on every write and by
//! [`Spool::tick`], which the agent calls about once a second). Segment 0 (the header) is
//! sealed at once, so every spool on disk starts a valid cast.
//!
//! [`Spool::finish`] (and [`recover`] after a crash) decrypt the segments in order and stream
//! them into ONE age file encrypted to the team's recipients, hashing plaintext and
//! ciphertext on the way, then delete the spool. Plaintext exists only in memory, one
//! segment at a time (zeroized after use).

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read as _, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::{Zeroize as _, Zeroizing};

use crate::RecordingError;
use crate::cast::{CastHeader, CastWriter};
use crate::crypt::{HashingWriter, decrypt_bytes, encrypt_bytes, encryptor};
use crate::keys::parse_recipients;

/// A segment is sealed once it holds this much plaintext…
pub const SEGMENT_MAX_BYTES: usize = 64 * 1024;
/// …or once its first byte is this old.
pub const SEGMENT_MAX_AGE: Duration = Duration::from_secs(2);
/// Most segments in one spool.
pub const MAX_SEGMENTS: u32 = 10_000_000;
/// Largest segment plaintext read back (one segment plus one event line of escaped output).
pub const MAX_SEGMENT_PLAINTEXT: u64 = 4 * 1024 * 1024;
/// Largest segment file read back.
pub const MAX_SEGMENT_FILE_LEN: u64 = MAX_SEGMENT_PLAINTEXT + 64 * 1024;
/// Most plaintext one recording holds, so the ciphertext (age adds 16 bytes per 64 KiB and a
/// header) stays within `MAX_RECORDING_LEN`.
pub const MAX_PLAINTEXT_LEN: u64 = tucdesk_proto::limits::MAX_RECORDING_LEN - 1024 * 1024;
/// Largest `meta.age` read back.
const MAX_META_LEN: u64 = 64 * 1024;

const META_FILE: &str = "meta.age";
const SEGMENT_PREFIX: &str = "seg-";
const SEGMENT_SUFFIX: &str = ".age";

/// What the agent needs to finish a spooled recording after a restart: the session facts that
/// go into the manifest and the recipients the final file is encrypted to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpoolMeta {
    pub session_id: String,
    pub agent_id: String,
    pub team_id: String,
    pub operator_user_id: String,
    pub operator_display: String,
    /// `SessionKind` as its wire value.
    pub kind: i32,
    pub started_at_ms: u64,
    /// The team's age recipients (`age1…`, 1..=16).
    pub recipients: Vec<String>,
}

/// The finished, encrypted recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedRecording {
    pub path: PathBuf,
    pub plaintext_size: u64,
    pub plaintext_sha256: [u8; 32],
    pub ciphertext_size: u64,
    pub ciphertext_sha256: [u8; 32],
}

/// A recovered spool: what it was, the file made of it, and how many segments were unusable.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub meta: SpoolMeta,
    pub recording: FinishedRecording,
    pub segments_used: u32,
    pub segments_lost: u32,
}

/// The in-memory plaintext of the open segment.
#[derive(Debug)]
struct SegmentBuf(Zeroizing<Vec<u8>>);

impl Write for SegmentBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RecordingError + '_ {
    move |source| RecordingError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn segment_name(index: u32) -> String {
    format!("{SEGMENT_PREFIX}{index:08}{SEGMENT_SUFFIX}")
}

fn create_private_dir(path: &Path) -> Result<(), RecordingError> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(path).map_err(io_err(path))
}

/// Writes `bytes` to `dir/name` atomically: a temporary file, synced, renamed into place.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), RecordingError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    // Make the rename durable; a directory that cannot be opened for sync is not fatal.
    if let Ok(dir) = File::open(dir) {
        dir.sync_all().ok();
    }
    Ok(())
}

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, RecordingError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(path))?;
    if bytes.len() as u64 > max {
        return Err(RecordingError::TooLarge);
    }
    Ok(bytes)
}

/// A recording being spooled.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    meta: SpoolMeta,
    spool_recipient: age::x25519::Recipient,
    writer: CastWriter<SegmentBuf>,
    next_segment: u32,
    /// Session time of the open segment's first byte (`None` while it is empty).
    opened_at: Option<Duration>,
}

impl Spool {
    /// Starts the spool of `meta.session_id` under `root`: creates its directory (0700; an
    /// existing one is an error), writes the encrypted meta and seals segment 0 (the header).
    pub fn create(
        root: &Path,
        meta: SpoolMeta,
        spool_recipient: &age::x25519::Recipient,
        header: &CastHeader,
    ) -> Result<Self, RecordingError> {
        tucdesk_proto::validate::uuid("session_id", &meta.session_id)
            .map_err(|err| RecordingError::Invalid(err.to_string()))?;
        parse_recipients(&meta.recipients)?;
        fs::create_dir_all(root).map_err(io_err(root))?;
        let dir = root.join(&meta.session_id);
        create_private_dir(&dir)?;
        let json = Zeroizing::new(
            serde_json::to_vec(&meta).map_err(|err| RecordingError::Invalid(err.to_string()))?,
        );
        let sealed = encrypt_bytes(std::slice::from_ref(spool_recipient), &json)?;
        write_atomic(&dir, META_FILE, &sealed)?;
        let buf = SegmentBuf(Zeroizing::new(Vec::with_capacity(2 * SEGMENT_MAX_BYTES)));
        let writer = CastWriter::new(buf, header)?;
        let mut spool = Self {
            dir,
            meta,
            spool_recipient: spool_recipient.clone(),
            writer,
            next_segment: 0,
            opened_at: Some(Duration::ZERO),
        };
        spool.seal()?;
        Ok(spool)
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> &SpoolMeta {
        &self.meta
    }

    /// Plaintext bytes recorded so far.
    pub fn plaintext_len(&self) -> u64 {
        self.writer.written()
    }

    /// Terminal output at `elapsed` since the session start.
    pub fn output(&mut self, elapsed: Duration, bytes: &[u8]) -> Result<(), RecordingError> {
        self.before_write(elapsed, bytes.len())?;
        self.writer.output(elapsed, bytes)?;
        self.after_write(elapsed)
    }

    /// A terminal resize at `elapsed`.
    pub fn resize(
        &mut self,
        elapsed: Duration,
        cols: u16,
        rows: u16,
    ) -> Result<(), RecordingError> {
        self.before_write(elapsed, 16)?;
        self.writer.resize(elapsed, cols, rows)?;
        self.after_write(elapsed)
    }

    /// Seals the open segment when it is [`SEGMENT_MAX_AGE`] old; call about once a second.
    pub fn tick(&mut self, elapsed: Duration) -> Result<(), RecordingError> {
        if self
            .opened_at
            .is_some_and(|opened| elapsed.saturating_sub(opened) >= SEGMENT_MAX_AGE)
        {
            self.seal()?;
        }
        Ok(())
    }

    fn before_write(&mut self, elapsed: Duration, len: usize) -> Result<(), RecordingError> {
        // Escaping can grow output six-fold; stop well before the recording limit.
        if self.writer.written() + 6 * len as u64 + 64 > MAX_PLAINTEXT_LEN {
            return Err(RecordingError::TooLarge);
        }
        if self.opened_at.is_none() {
            self.opened_at = Some(elapsed);
        }
        Ok(())
    }

    fn after_write(&mut self, elapsed: Duration) -> Result<(), RecordingError> {
        if self.writer.get_mut().0.len() >= SEGMENT_MAX_BYTES {
            return self.seal();
        }
        self.tick(elapsed)
    }

    /// Encrypts the open segment to the spool key and writes it; nothing when it is empty.
    fn seal(&mut self) -> Result<(), RecordingError> {
        self.opened_at = None;
        let buf = &mut self.writer.get_mut().0;
        if buf.is_empty() {
            return Ok(());
        }
        if self.next_segment >= MAX_SEGMENTS {
            return Err(RecordingError::TooLarge);
        }
        let sealed = encrypt_bytes(std::slice::from_ref(&self.spool_recipient), buf);
        buf.zeroize();
        write_atomic(&self.dir, &segment_name(self.next_segment), &sealed?)?;
        self.next_segment += 1;
        Ok(())
    }

    /// Ends the recording: seals the last segment, streams every segment into one age file at
    /// `out` (created, never overwritten) encrypted to the meta's recipients, and deletes the
    /// spool. Any damaged segment is an error here (use [`recover`] for a crashed spool).
    pub fn finish(
        mut self,
        spool_identity: &age::x25519::Identity,
        out: &Path,
    ) -> Result<FinishedRecording, RecordingError> {
        self.writer.flush_carry()?;
        self.seal()?;
        let (recording, _, _) = assemble(&self.dir, spool_identity, &self.meta, out, true)?;
        remove_spool(&self.dir)?;
        Ok(recording)
    }
}

/// The spool directories under `root` (sessions the agent did not finish, e.g. after a crash).
pub fn list_spools(root: &Path) -> Result<Vec<PathBuf>, RecordingError> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(io_err(root)(err)),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(root))?;
        let path = entry.path();
        if path.is_dir() && path.join(META_FILE).is_file() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Reads and decrypts a spool's meta.
pub fn read_meta(
    dir: &Path,
    spool_identity: &age::x25519::Identity,
) -> Result<SpoolMeta, RecordingError> {
    let sealed = read_bounded(&dir.join(META_FILE), MAX_META_LEN)?;
    let json = decrypt_bytes(&sealed, std::slice::from_ref(spool_identity), MAX_META_LEN)?;
    let meta: SpoolMeta =
        serde_json::from_slice(&json).map_err(|err| RecordingError::Invalid(err.to_string()))?;
    tucdesk_proto::validate::uuid("session_id", &meta.session_id)
        .map_err(|err| RecordingError::Invalid(err.to_string()))?;
    Ok(meta)
}

/// Finishes a spool left by a crash with the segments that are intact (in order, up to the
/// first missing or damaged one) and deletes it.
pub fn recover(
    dir: &Path,
    spool_identity: &age::x25519::Identity,
    out: &Path,
) -> Result<Recovered, RecordingError> {
    let meta = read_meta(dir, spool_identity)?;
    let (recording, used, lost) = assemble(dir, spool_identity, &meta, out, false)?;
    remove_spool(dir)?;
    Ok(Recovered {
        meta,
        recording,
        segments_used: used,
        segments_lost: lost,
    })
}

/// Deletes a spool directory (segments, meta, leftovers of an interrupted seal).
pub fn remove_spool(dir: &Path) -> Result<(), RecordingError> {
    fs::remove_dir_all(dir).map_err(io_err(dir))
}

/// Segment numbers present in `dir`, sorted.
fn segment_numbers(dir: &Path) -> Result<Vec<u32>, RecordingError> {
    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(number) = name
            .strip_prefix(SEGMENT_PREFIX)
            .and_then(|rest| rest.strip_suffix(SEGMENT_SUFFIX))
            .filter(|digits| digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u32>().ok())
        else {
            continue;
        };
        numbers.push(number);
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Streams the spool's segments into one age file at `out`. `strict`: every segment must be
/// present and intact; otherwise stop at the first gap or damaged segment.
fn assemble(
    dir: &Path,
    spool_identity: &age::x25519::Identity,
    meta: &SpoolMeta,
    out: &Path,
    strict: bool,
) -> Result<(FinishedRecording, u32, u32), RecordingError> {
    let recipients = parse_recipients(&meta.recipients)?;
    let numbers = segment_numbers(dir)?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(out).map_err(io_err(out))?;
    let result = (|| {
        let sink = HashingWriter::new(BufWriter::new(file));
        let mut stream = encryptor(&recipients)?.wrap_output(sink)?;
        let mut plain = HashingWriter::new(std::io::sink());
        let mut used = 0u32;
        for (expected, number) in (0u32..).zip(numbers.iter().copied()) {
            let segment = if number == expected {
                read_bounded(&dir.join(segment_name(number)), MAX_SEGMENT_FILE_LEN).and_then(
                    |sealed| {
                        decrypt_bytes(
                            &sealed,
                            std::slice::from_ref(spool_identity),
                            MAX_SEGMENT_PLAINTEXT,
                        )
                    },
                )
            } else {
                Err(RecordingError::Invalid(format!(
                    "segment {expected} is missing"
                )))
            };
            let segment = match segment {
                Ok(segment) => segment,
                Err(err) if strict => return Err(err),
                Err(err) => {
                    tracing::warn!(spool = %dir.display(), segment = expected, error = %err,
                        "spool segment unusable; the recording ends before it");
                    break;
                }
            };
            if plain.len() + segment.len() as u64 > MAX_PLAINTEXT_LEN {
                return Err(RecordingError::TooLarge);
            }
            plain.write_all(&segment)?;
            stream.write_all(&segment)?;
            used += 1;
        }
        if used == 0 {
            return Err(RecordingError::Invalid(
                "the spool has no usable segment".into(),
            ));
        }
        let sink = stream.finish()?;
        let (mut buffered, ciphertext_sha256, ciphertext_size) = sink.finish();
        buffered.flush()?;
        let file = buffered.into_inner().map_err(|err| RecordingError::Io {
            path: out.display().to_string(),
            source: err.into_error(),
        })?;
        file.sync_all().map_err(io_err(out))?;
        let (_, plaintext_sha256, plaintext_size) = plain.finish();
        let total = u32::try_from(numbers.len()).unwrap_or(u32::MAX);
        Ok((
            FinishedRecording {
                path: out.to_path_buf(),
                plaintext_size,
                plaintext_sha256,
                ciphertext_size,
                ciphertext_sha256,
            },
            used,
            total.saturating_sub(used),
        ))
    })();
    if result.is_err() {
        fs::remove_file(out).ok();
    }
    result
}

#[cfg(test)]
mod tests;
