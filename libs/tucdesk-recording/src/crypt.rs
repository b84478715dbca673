//! age encryption and decryption (the standard binary format, X25519 recipients), with the
//! SHA-256 and size of what passes through.

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::RecordingError;

/// A writer that hashes and counts what it forwards.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
            len: 0,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The inner writer, the SHA-256 and the length of everything written.
    pub fn finish(self) -> (W, [u8; 32], u64) {
        (self.inner, self.hash.finalize().into(), self.len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let written = buf.get(..n).unwrap_or_default();
        self.hash.update(written);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// An age encryptor to `recipients` (at least one).
pub(crate) fn encryptor(
    recipients: &[age::x25519::Recipient],
) -> Result<age::Encryptor, RecordingError> {
    age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|err| RecordingError::Encrypt(err.to_string()))
}

/// Encrypts `plaintext` to `recipients` into one age file in memory.
pub fn encrypt_bytes(
    recipients: &[age::x25519::Recipient],
    plaintext: &[u8],
) -> Result<Vec<u8>, RecordingError> {
    let mut writer =
        encryptor(recipients)?.wrap_output(Vec::with_capacity(plaintext.len() + 256))?;
    writer.write_all(plaintext)?;
    Ok(writer.finish()?)
}

/// A reader of the plaintext of the age file `ciphertext`, for any of `identities`.
pub fn decrypt_reader<'a, R: Read + 'a>(
    ciphertext: R,
    identities: &'a [age::x25519::Identity],
) -> Result<impl Read + 'a, RecordingError> {
    let decryptor =
        age::Decryptor::new(ciphertext).map_err(|err| RecordingError::Decrypt(err.to_string()))?;
    decryptor
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(|err| RecordingError::Decrypt(err.to_string()))
}

/// Decrypts a whole age file of at most `max_plaintext` bytes of plaintext into memory
/// (zeroized on drop). A file that is truncated or altered fails.
pub fn decrypt_bytes(
    ciphertext: &[u8],
    identities: &[age::x25519::Identity],
    max_plaintext: u64,
) -> Result<Zeroizing<Vec<u8>>, RecordingError> {
    let reader = decrypt_reader(ciphertext, identities)?;
    let mut plaintext = Zeroizing::new(Vec::new());
    reader
        .take(max_plaintext + 1)
        .read_to_end(&mut plaintext)
        .map_err(|err| RecordingError::Decrypt(err.to_string()))?;
    if plaintext.len() as u64 > max_plaintext {
        return Err(RecordingError::TooLarge);
    }
    Ok(plaintext)
}

/// Streams the plaintext of `ciphertext` into `out` (at most `max_plaintext` bytes); returns
/// the plaintext size and SHA-256.
pub fn decrypt_to_writer<R: Read, W: Write>(
    ciphertext: R,
    identities: &[age::x25519::Identity],
    out: W,
    max_plaintext: u64,
) -> Result<(u64, [u8; 32]), RecordingError> {
    let mut reader = decrypt_reader(ciphertext, identities)?.take(max_plaintext + 1);
    let mut out = HashingWriter::new(out);
    let mut buf = Zeroizing::new(vec![0u8; 64 * 1024]);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(RecordingError::Decrypt(err.to_string())),
        };
        if out.len() + n as u64 > max_plaintext {
            return Err(RecordingError::TooLarge);
        }
        out.write_all(buf.get(..n).unwrap_or_default())?;
    }
    out.flush()?;
    let (_, hash, len) = out.finish();
    Ok((len, hash))
}
