//! age X25519 keys: identity files in the standard format `age-keygen` writes (and `age -d -i`
//! reads), and recipient strings.
//!
//! ```text
//! # created: 2025-01-02T03:04:05Z
//! # public key: age1…
//! AGE-SECRET-KEY-1…
//! ```

use std::fs::OpenOptions;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::str::FromStr as _;
use std::time::{SystemTime, UNIX_EPOCH};

use age::secrecy::ExposeSecret as _;
use zeroize::Zeroizing;

/// Longest recipient string (`age1` + bech32 of 32 bytes is 62 characters).
pub const MAX_RECIPIENT_LEN: usize = 128;
/// Most recipients a recording is encrypted to (`tucdesk_proto::limits::MAX_AGE_RECIPIENTS`).
pub const MAX_RECIPIENTS: usize = tucdesk_proto::limits::MAX_AGE_RECIPIENTS;
/// Largest identity file read.
pub const MAX_IDENTITY_FILE_LEN: u64 = 64 * 1024;
/// Most identities one file may hold.
pub const MAX_IDENTITIES: usize = 64;

/// Why a key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} already exists; refusing to overwrite a key")]
    Exists(String),
    #[error("{path}: line {line}: not an age X25519 identity (AGE-SECRET-KEY-1…)")]
    BadIdentity { path: String, line: usize },
    #[error("{0}: no identity in the file")]
    NoIdentity(String),
    #[error("{0}: the file is too large for an identity file")]
    TooLarge(String),
    #[error("{0}: too many identities")]
    TooManyIdentities(String),
    #[error("invalid recipient #{index}: {reason}")]
    BadRecipient { index: usize, reason: &'static str },
    #[error("between 1 and 16 recipients are needed, got {0}")]
    RecipientCount(usize),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Civil UTC date and time of unix seconds: `(year, month, day, hour, minute, second)`.
pub fn utc_datetime(unix_secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = i64::try_from(unix_secs / 86_400).unwrap_or(i64::MAX / 2);
    let secs = unix_secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let small = |v: i64| u32::try_from(v).unwrap_or_default();
    let secs = small(i64::try_from(secs).unwrap_or_default());
    (
        year,
        small(month),
        small(day),
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
    )
}

/// Writes `contents` to a new file at `path` with mode 0600; never replaces an existing file.
pub(crate) fn write_new_private(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|err| {
        if err.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists(path.display().to_string())
        } else {
            io_err(path)(err)
        }
    })?;
    file.write_all(contents).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// Generates an X25519 identity and writes it to `path` (mode 0600, never overwriting) in
/// the standard identity-file format. Returns the recipient (`age1…`).
pub fn generate_identity_file(path: &Path) -> Result<String, KeyError> {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let (y, mo, d, h, mi, s) = utc_datetime(now);
    let secret = identity.to_string();
    let contents = Zeroizing::new(format!(
        "# created: {y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z\n# public key: {recipient}\n{}\n",
        secret.expose_secret()
    ));
    write_new_private(path, contents.as_bytes())?;
    Ok(recipient)
}

/// The X25519 identities of an identity file (comments and blank lines skipped). Every other
/// line must be an `AGE-SECRET-KEY-1…` identity.
pub fn load_identity_file(path: &Path) -> Result<Vec<age::x25519::Identity>, KeyError> {
    let shown = || path.display().to_string();
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_IDENTITY_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(io_err(path))?;
    if text.len() as u64 > MAX_IDENTITY_FILE_LEN {
        return Err(KeyError::TooLarge(shown()));
    }
    parse_identities(&text).map_err(|err| match err {
        ParseIdentityError::Bad(line) => KeyError::BadIdentity {
            path: shown(),
            line,
        },
        ParseIdentityError::None => KeyError::NoIdentity(shown()),
        ParseIdentityError::TooMany => KeyError::TooManyIdentities(shown()),
    })
}

enum ParseIdentityError {
    Bad(usize),
    None,
    TooMany,
}

fn parse_identities(text: &str) -> Result<Vec<age::x25519::Identity>, ParseIdentityError> {
    let mut identities = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if identities.len() >= MAX_IDENTITIES {
            return Err(ParseIdentityError::TooMany);
        }
        let identity = age::x25519::Identity::from_str(line)
            .map_err(|_| ParseIdentityError::Bad(index + 1))?;
        identities.push(identity);
    }
    if identities.is_empty() {
        return Err(ParseIdentityError::None);
    }
    Ok(identities)
}

/// Loads the identity at `path`, creating it (0600) when missing; for keys the program owns,
/// such as the agent's spool key. Returns the identity and its recipient.
pub fn load_or_create_identity(
    path: &Path,
) -> Result<(age::x25519::Identity, age::x25519::Recipient), KeyError> {
    if !path.exists() {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        match generate_identity_file(path) {
            Ok(_) | Err(KeyError::Exists(_)) => {}
            Err(err) => return Err(err),
        }
    }
    let mut identities = load_identity_file(path)?;
    if identities.len() != 1 {
        return Err(KeyError::TooManyIdentities(path.display().to_string()));
    }
    let identity = identities.remove(0);
    let recipient = identity.to_public();
    Ok((identity, recipient))
}

/// Checks one recipient string: `age1…`, at most 128 bytes, a valid X25519 key.
pub fn parse_recipient(text: &str) -> Result<age::x25519::Recipient, &'static str> {
    if text.len() > MAX_RECIPIENT_LEN {
        return Err("longer than 128 bytes");
    }
    if !text.starts_with("age1") {
        return Err("not an age X25519 recipient (age1…)");
    }
    age::x25519::Recipient::from_str(text).map_err(|_| "not a valid age X25519 recipient")
}

/// Checks a recipient list (1..=16 valid `age1…` strings, no duplicates) and parses it.
pub fn parse_recipients(list: &[String]) -> Result<Vec<age::x25519::Recipient>, KeyError> {
    if list.is_empty() || list.len() > MAX_RECIPIENTS {
        return Err(KeyError::RecipientCount(list.len()));
    }
    let mut parsed = Vec::with_capacity(list.len());
    for (index, text) in list.iter().enumerate() {
        if list.get(..index).is_some_and(|seen| seen.contains(text)) {
            return Err(KeyError::BadRecipient {
                index,
                reason: "listed twice",
            });
        }
        parsed.push(
            parse_recipient(text).map_err(|reason| KeyError::BadRecipient { index, reason })?,
        );
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_file_has_the_standard_layout_mode_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("key.txt");
        let recipient = generate_identity_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("# created: ") && lines[0].ends_with('Z'));
        assert_eq!(lines[1], format!("# public key: {recipient}"));
        assert!(lines[2].starts_with("AGE-SECRET-KEY-1"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            generate_identity_file(&path),
            Err(KeyError::Exists(_))
        ));
        let loaded = load_identity_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].to_public().to_string(), recipient);
        let (_, again) = load_or_create_identity(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            again.to_string(),
            recipient,
            "an existing key is loaded, not replaced"
        );
    }

    #[test]
    fn identity_files_with_garbage_are_refused_with_the_line() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("bad.txt");
        std::fs::write(&path, "# comment\n\nAGE-SECRET-KEY-1NOTAKEY\n").unwrap_or_default();
        assert!(matches!(
            load_identity_file(&path),
            Err(KeyError::BadIdentity { line: 3, .. })
        ));
        std::fs::write(&path, "# only comments\n").unwrap_or_default();
        assert!(matches!(
            load_identity_file(&path),
            Err(KeyError::NoIdentity(_))
        ));
    }

    #[test]
    fn recipients_are_validated() {
        let good = age::x25519::Identity::generate().to_public().to_string();
        assert!(parse_recipients(std::slice::from_ref(&good)).is_ok());
        assert!(matches!(
            parse_recipients(&[]),
            Err(KeyError::RecipientCount(0))
        ));
        assert!(matches!(
            parse_recipients(&vec![good.clone(); 17]),
            Err(KeyError::RecipientCount(17))
        ));
        assert!(parse_recipients(&[good.clone(), good.clone()]).is_err());
        for bad in [
            "age1".to_owned(),
            "ssh-ed25519 AAAA".to_owned(),
            format!("{good}x"),
            "a".repeat(129),
            good.to_uppercase().replace("AGE1", "age1"),
        ] {
            assert!(
                parse_recipients(std::slice::from_ref(&bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn utc_dates_are_right() {
        assert_eq!(utc_datetime(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(utc_datetime(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(utc_datetime(1_735_787_045), (2025, 1, 2, 3, 4, 5));
    }
}
