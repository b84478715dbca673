//! Support and enrollment codes (SPEC §2, §3): short secrets people type.
//!
//! * Alphabet: Crockford base32 `0123456789ABCDEFGHJKMNPQRSTVWXYZ` (no I, L,
//!   O, U), 5 bits per character.
//! * Length: [`CODE_LEN`] = 12 characters = 60 bits, above the SPEC's 50-bit
//!   floor so that online guessing under the redemption rate limit stays
//!   hopeless even for long-lived codes. Shown as `XXXX-XXXX-XXXX`.
//! * Input normalisation: ASCII letters upper-cased; `-`, spaces and tabs
//!   dropped; confusables mapped the Crockford way (`O`→`0`, `I`/`L`→`1`);
//!   anything else (including `U`) rejected. Input longer than
//!   [`MAX_CODE_INPUT_LEN`] is rejected before any work.
//! * Storage: `HMAC-SHA256(server_key, domain ‖ 0x00 ‖ normalized)` where
//!   `domain` is `"tucdesk-support-code-v1"` or `"tucdesk-enroll-code-v1"`.
//!   Keyed, so a leaked table cannot be brute-forced offline (60 bits would
//!   fall to an unkeyed hash); domain-separated, so a support code can never
//!   redeem as an enrollment token. Comparison is constant-time.

use std::fmt;

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::rng::{RngError, random_secret};

/// The 32-symbol Crockford base32 alphabet.
pub const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Symbols in a code (60 bits of entropy).
pub const CODE_LEN: usize = 12;
/// Symbols per dash-separated display group.
pub const CODE_GROUP_LEN: usize = 4;
/// Entropy of a code in bits.
pub const CODE_ENTROPY_BITS: usize = CODE_LEN * 5;
/// Longest user input looked at (generous for spaces and dashes).
pub const MAX_CODE_INPUT_LEN: usize = 64;
/// Length of the server HMAC key.
pub const CODE_HASH_KEY_LEN: usize = 32;
/// Length of a stored code hash.
pub const CODE_HASH_LEN: usize = 32;

const _: () = assert!(CODE_ENTROPY_BITS >= 50);

/// What a code is for; each kind hashes under its own domain tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeKind {
    /// Support code: a technician reaches one agent or tag.
    Support,
    /// Enrollment code: an agent joins a team.
    Enrollment,
}

impl CodeKind {
    /// The HMAC domain tag for this kind.
    pub fn domain(self) -> &'static [u8] {
        match self {
            CodeKind::Support => b"tucdesk-support-code-v1",
            CodeKind::Enrollment => b"tucdesk-enroll-code-v1",
        }
    }
}

/// Why user input is not a code. Deliberately carries no input bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodeError {
    /// Input longer than [`MAX_CODE_INPUT_LEN`].
    #[error("code input is too long")]
    TooLong,
    /// A character outside the alphabet and separators.
    #[error("code contains an invalid character")]
    InvalidCharacter,
    /// Wrong number of symbols after normalisation.
    #[error("code must have {CODE_LEN} characters")]
    WrongLength,
    /// The server key has the wrong length.
    #[error("code hash key must be {CODE_HASH_KEY_LEN} bytes")]
    BadKey,
    /// The OS RNG failed.
    #[error("OS random number generator failed")]
    Rng,
}

impl From<RngError> for CodeError {
    fn from(_: RngError) -> Self {
        CodeError::Rng
    }
}

/// A normalised code: exactly [`CODE_LEN`] alphabet symbols. Wiped on drop,
/// redacted in `Debug`.
pub struct SupportCode(Zeroizing<[u8; CODE_LEN]>);

impl SupportCode {
    /// Generates a uniformly random code. 256 is a multiple of 32, so
    /// `byte & 31` is uniform without rejection sampling.
    pub fn generate() -> Result<Self, CodeError> {
        let raw = random_secret::<CODE_LEN>()?;
        let mut out = Zeroizing::new([0u8; CODE_LEN]);
        for (o, r) in out.iter_mut().zip(raw.iter()) {
            *o = CODE_ALPHABET[usize::from(r & 31)];
        }
        Ok(Self(out))
    }

    /// Normalises user input (see module docs).
    pub fn parse(input: &str) -> Result<Self, CodeError> {
        if input.len() > MAX_CODE_INPUT_LEN {
            return Err(CodeError::TooLong);
        }
        let mut out = Zeroizing::new([0u8; CODE_LEN]);
        let mut n = 0usize;
        for b in input.bytes() {
            let c = match b.to_ascii_uppercase() {
                b'-' | b' ' | b'\t' => continue,
                b'O' => b'0',
                b'I' | b'L' => b'1',
                c if CODE_ALPHABET.contains(&c) => c,
                _ => return Err(CodeError::InvalidCharacter),
            };
            let slot = out.get_mut(n).ok_or(CodeError::WrongLength)?;
            *slot = c;
            n += 1;
        }
        if n != CODE_LEN {
            return Err(CodeError::WrongLength);
        }
        Ok(Self(out))
    }

    /// The normalised symbols (no dashes), e.g. for the hash.
    pub fn normalized(&self) -> Zeroizing<String> {
        Zeroizing::new(self.0.iter().map(|b| char::from(*b)).collect())
    }

    /// The display form `XXXX-XXXX-XXXX`, to show to a person once.
    pub fn display(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(CODE_LEN + CODE_LEN / CODE_GROUP_LEN));
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 && i % CODE_GROUP_LEN == 0 {
                s.push('-');
            }
            s.push(char::from(*b));
        }
        s
    }

    /// Keyed hash for storage and lookup. HMAC accepts any key length, so
    /// the error is unreachable today; it is still an error (never a fixed
    /// fallback value, which would make every code match).
    pub fn hash(&self, key: &CodeHashKey, kind: CodeKind) -> Result<CodeHash, CodeError> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(key.0.as_slice()).map_err(|_| CodeError::BadKey)?;
        mac.update(kind.domain());
        mac.update(&[0]);
        mac.update(self.0.as_slice());
        Ok(CodeHash(mac.finalize().into_bytes().into()))
    }
}

impl fmt::Debug for SupportCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SupportCode(<redacted>)")
    }
}

/// The server's HMAC key for code hashes. Wiped on drop, never printed.
pub struct CodeHashKey(Zeroizing<[u8; CODE_HASH_KEY_LEN]>);

impl CodeHashKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, CodeError> {
        Ok(Self(random_secret::<CODE_HASH_KEY_LEN>()?))
    }

    /// A key from configuration (exactly 32 bytes).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CodeError> {
        if bytes.len() != CODE_HASH_KEY_LEN {
            return Err(CodeError::BadKey);
        }
        let mut k = Zeroizing::new([0u8; CODE_HASH_KEY_LEN]);
        k.copy_from_slice(bytes);
        Ok(Self(k))
    }
}

impl fmt::Debug for CodeHashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeHashKey(<redacted>)")
    }
}

/// A stored code hash. `PartialEq` is constant-time.
#[derive(Clone, Copy, Eq)]
pub struct CodeHash([u8; CODE_HASH_LEN]);

impl CodeHash {
    /// Wraps a hash read from storage.
    pub fn from_bytes(bytes: [u8; CODE_HASH_LEN]) -> Self {
        Self(bytes)
    }
    /// The bytes to store or index.
    pub fn to_bytes(&self) -> [u8; CODE_HASH_LEN] {
        self.0
    }
}

impl PartialEq for CodeHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for CodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CodeHash({})", hex_lower(&self.0))
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Normalises `input`, hashes it and compares with `stored` in constant
/// time. Malformed input is simply "no match".
pub fn verify_code(input: &str, key: &CodeHashKey, kind: CodeKind, stored: &CodeHash) -> bool {
    match SupportCode::parse(input).and_then(|code| code.hash(key, kind)) {
        Ok(hash) => hash == *stored,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;
