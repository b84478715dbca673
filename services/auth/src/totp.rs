//! Time-based one-time passwords (RFC 6238, SPEC §3): HMAC-SHA1, 6 digits, 30 s steps,
//! as every authenticator app implements by default.
//!
//! Rules: a code is accepted for the current step and one step either side (clock drift),
//! each step works at most once (the caller stores the returned step and passes it back as
//! `last_used_step`), and the secret is stored only sealed under the key-encryption key
//! (`secrets::Kek::seal` with `Purpose::TotpSeal`, the user id as associated data).

use std::fmt::{self, Write as _};

use hmac::{Hmac, KeyInit as _, Mac as _};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha1::Sha1;
use subtle::{Choice, ConstantTimeEq as _};
use zeroize::Zeroizing;

/// Secret length in bytes: 160 bits, the HMAC-SHA1 output size RFC 4226 §4 recommends.
pub const TOTP_SECRET_LEN: usize = 20;

/// Digits in a code. Six is what authenticator apps show by default.
pub const TOTP_DIGITS: u32 = 6;

/// Length of one time step in seconds (RFC 6238 default `X`).
pub const TOTP_STEP_SECS: u64 = 30;

/// Steps accepted either side of the current one, for clock drift and typing time
/// (RFC 6238 §5.2 recommends at most one).
pub const TOTP_WINDOW_STEPS: u64 = 1;

/// Issuer shown by authenticator apps, in the label and the `issuer` parameter.
pub const TOTP_ISSUER: &str = "TucDesk";

/// Longest code input looked at (spaces included). Anything longer is malformed without
/// further work.
pub const MAX_CODE_INPUT_LEN: usize = 32;

/// Longest e-mail address accepted in a provisioning URI (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;

/// HMAC-SHA1 block size. A key shorter than the block is zero-padded to it (RFC 2104 §2), so
/// the 20-byte secret padded to 64 bytes is the same HMAC key, through the infallible
/// fixed-size constructor.
const HMAC_SHA1_BLOCK_LEN: usize = 64;

/// RFC 4648 base32 alphabet.
const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Characters left as they are in the URI label: RFC 3986 unreserved characters and `@`
/// (a valid path character that apps show verbatim). `:` is encoded so the account name
/// cannot fake the issuer prefix, `+` so no app reads it as a space.
const LABEL_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

/// TOTP failures.
#[derive(Debug, thiserror::Error)]
pub enum TotpError {
    /// The code is not exactly six ASCII digits (spaces aside).
    #[error("code must be exactly {TOTP_DIGITS} digits")]
    MalformedCode,
    /// The account name for the provisioning URI is empty or too long.
    #[error("e-mail address must be 1 to {MAX_EMAIL_LEN} bytes")]
    InvalidEmail,
    /// The OS RNG failed.
    #[error(transparent)]
    Rng(#[from] tucdesk_crypto::RngError),
}

/// A TOTP shared secret. Wiped on drop; `Debug` never shows it.
pub struct TotpSecret(Zeroizing<[u8; TOTP_SECRET_LEN]>);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

impl TotpSecret {
    /// Draws a fresh secret from the OS CSPRNG.
    pub fn generate() -> Result<Self, TotpError> {
        Ok(Self(tucdesk_crypto::rng::random_secret()?))
    }

    /// Wraps known secret bytes (tests, migration).
    pub fn from_bytes(bytes: &[u8; TOTP_SECRET_LEN]) -> Self {
        Self(Zeroizing::new(*bytes))
    }

    /// Wraps secret bytes already in a wiped-on-drop buffer (e.g. from
    /// `tucdesk_crypto::rng::random_secret`) without another copy.
    pub fn from_zeroizing(bytes: Zeroizing<[u8; TOTP_SECRET_LEN]>) -> Self {
        Self(bytes)
    }

    /// The raw secret, for sealing with another scheme. Never log it.
    pub fn expose(&self) -> &[u8; TOTP_SECRET_LEN] {
        &self.0
    }

    /// The secret in unpadded RFC 4648 base32, for manual entry in an authenticator app.
    pub fn to_base32(&self) -> Zeroizing<String> {
        base32_encode(self.0.as_slice())
    }

    /// The `otpauth://` URI shown as a QR code at enrolment. Contains the secret.
    pub fn provisioning_uri(&self, email: &str) -> Result<Zeroizing<String>, TotpError> {
        if email.is_empty() || email.len() > MAX_EMAIL_LEN {
            return Err(TotpError::InvalidEmail);
        }
        let secret = self.to_base32();
        // Reserve the worst case up front (every label byte encoded as `%XX`) so the buffer
        // holding the secret is never reallocated and left unwiped.
        let mut uri = Zeroizing::new(String::with_capacity(128 + 3 * email.len()));
        // Writing into a String cannot fail.
        let _ = write!(
            uri,
            "otpauth://totp/{TOTP_ISSUER}:{label}?secret={secret}&issuer={TOTP_ISSUER}\
             &algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_STEP_SECS}",
            label = utf8_percent_encode(email, LABEL_KEEP),
            secret = secret.as_str(),
        );
        Ok(uri)
    }
}

/// Checks `code` at time `now_unix`. Returns the step it matched, or `None` when it matches
/// no step in the window or only steps `<= last_used_step` (already used: a code works
/// once). On `Some(step)` the caller stores `step` as the user's new `last_used_step`.
///
/// Spaces are stripped; anything but six ASCII digits is [`TotpError::MalformedCode`]. The
/// code is compared against every step of the window in constant time.
pub fn verify(
    secret: &TotpSecret,
    code: &str,
    now_unix: u64,
    last_used_step: Option<u64>,
) -> Result<Option<u64>, TotpError> {
    let code = parse_code(code)?;
    let current = now_unix / TOTP_STEP_SECS;
    let first = current.saturating_sub(TOTP_WINDOW_STEPS);
    let last = current.saturating_add(TOTP_WINDOW_STEPS);
    let mut matched = None;
    for step in first..=last {
        let fresh = Choice::from(u8::from(last_used_step.is_none_or(|used| step > used)));
        let expected = code_digits(hotp(&secret.0, step, TOTP_DIGITS));
        if bool::from(expected.ct_eq(&code) & fresh) {
            // Later steps win: storing the highest matched step refuses all earlier ones.
            matched = Some(step);
        }
    }
    Ok(matched)
}

/// Strips whitespace and requires exactly six ASCII digits.
fn parse_code(input: &str) -> Result<[u8; TOTP_DIGITS as usize], TotpError> {
    if input.len() > MAX_CODE_INPUT_LEN {
        return Err(TotpError::MalformedCode);
    }
    let mut code = [0u8; TOTP_DIGITS as usize];
    let mut len = 0;
    for c in input.chars().filter(|c| !c.is_whitespace()) {
        let slot = code.get_mut(len).ok_or(TotpError::MalformedCode)?;
        if !c.is_ascii_digit() {
            return Err(TotpError::MalformedCode);
        }
        // An ASCII digit is one byte.
        *slot = c as u8;
        len += 1;
    }
    if len != code.len() {
        return Err(TotpError::MalformedCode);
    }
    Ok(code)
}

/// A six-digit code as zero-padded ASCII digits.
fn code_digits(mut value: u32) -> [u8; TOTP_DIGITS as usize] {
    let mut out = [b'0'; TOTP_DIGITS as usize];
    for digit in out.iter_mut().rev() {
        // `value % 10` is below 10, so the cast cannot truncate.
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out
}

/// HOTP (RFC 4226 §5.3): HMAC-SHA1 over the big-endian counter, dynamic truncation, and the
/// low `digits` decimal digits.
fn hotp(secret: &[u8; TOTP_SECRET_LEN], counter: u64, digits: u32) -> u32 {
    let mut key = Zeroizing::new([0u8; HMAC_SHA1_BLOCK_LEN]);
    key[..TOTP_SECRET_LEN].copy_from_slice(secret);
    let mut mac = Hmac::<Sha1>::new((&*key).into());
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    // The low nibble of the last byte picks a 4-byte window; at most 15 + 4 <= 20 bytes.
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let window = [
        digest[offset],
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ];
    let binary = u32::from_be_bytes(window) & 0x7fff_ffff;
    binary % 10u32.pow(digits)
}

/// Unpadded RFC 4648 base32.
fn base32_encode(data: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity((data.len() * 8).div_ceil(5)));
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for &byte in data {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(
                BASE32_ALPHABET[((buffer >> bits) & 0x1f) as usize],
            ));
        }
        // Keep only the bits not yet written, so the buffer never overflows.
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(
            BASE32_ALPHABET[((buffer << (5 - bits)) & 0x1f) as usize],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// RFC 6238 Appendix B: the SHA-1 seed is the ASCII string "12345678901234567890".
    const RFC_SEED: &[u8; 20] = b"12345678901234567890";

    /// RFC 6238 Appendix B SHA-1 rows: (Unix time, 8-digit TOTP).
    const RFC_VECTORS: [(u64, u32); 6] = [
        (59, 94287082),
        (1111111109, 7081804),
        (1111111111, 14050471),
        (1234567890, 89005924),
        (2000000000, 69279037),
        (20000000000, 65353130),
    ];

    fn secret() -> TotpSecret {
        TotpSecret::from_bytes(RFC_SEED)
    }

    fn code_at(step: u64) -> String {
        String::from_utf8(code_digits(hotp(RFC_SEED, step, TOTP_DIGITS)).to_vec()).unwrap()
    }

    #[test]
    fn rfc6238_appendix_b_sha1_vectors() {
        for (time, expected8) in RFC_VECTORS {
            let step = time / TOTP_STEP_SECS;
            assert_eq!(hotp(RFC_SEED, step, 8), expected8, "t={time}");
            // Six digits are the low six of the eight.
            let expected6 = expected8 % 1_000_000;
            assert_eq!(hotp(RFC_SEED, step, 6), expected6, "t={time}");
            let code = format!("{expected6:06}");
            assert_eq!(verify(&secret(), &code, time, None).unwrap(), Some(step));
        }
    }

    #[test]
    fn leading_zeros_are_kept() {
        // 1111111109 → 07081804 → six digits "081804".
        assert_eq!(&code_digits(hotp(RFC_SEED, 1111111109 / 30, 6)), b"081804");
        assert_eq!(
            verify(&secret(), "081804", 1111111109, None).unwrap(),
            Some(1111111109 / 30)
        );
    }

    #[test]
    fn one_step_either_side_is_accepted_and_no_further() {
        let now = 1_700_000_000;
        let current = now / TOTP_STEP_SECS;
        for step in [current - 1, current, current + 1] {
            assert_eq!(
                verify(&secret(), &code_at(step), now, None).unwrap(),
                Some(step)
            );
        }
        for step in [current - 2, current + 2] {
            assert_eq!(verify(&secret(), &code_at(step), now, None).unwrap(), None);
        }
    }

    #[test]
    fn a_code_works_only_once() {
        let now = 1_700_000_000;
        let current = now / TOTP_STEP_SECS;
        let code = code_at(current);
        let used = verify(&secret(), &code, now, None).unwrap();
        assert_eq!(used, Some(current));
        // Same code again, even a few seconds later in the same step: refused.
        assert_eq!(verify(&secret(), &code, now + 5, used).unwrap(), None);
        // The previous step's code is refused once a later step was used.
        assert_eq!(
            verify(&secret(), &code_at(current - 1), now, used).unwrap(),
            None
        );
        // The next step's code still works.
        assert_eq!(
            verify(&secret(), &code_at(current + 1), now + 30, used).unwrap(),
            Some(current + 1)
        );
    }

    #[test]
    fn wrong_code_is_refused() {
        let now = 1_700_000_000;
        let right = code_at(now / TOTP_STEP_SECS);
        let wrong = if right == "000000" {
            "000001"
        } else {
            "000000"
        };
        assert_eq!(verify(&secret(), wrong, now, None).unwrap(), None);
    }

    #[test]
    fn window_at_time_zero_does_not_underflow() {
        assert_eq!(verify(&secret(), &code_at(0), 0, None).unwrap(), Some(0));
        assert_eq!(verify(&secret(), &code_at(1), 0, None).unwrap(), Some(1));
        let far = u64::MAX;
        assert_eq!(
            verify(&secret(), &code_at(far / 30), far, None).unwrap(),
            Some(far / 30)
        );
    }

    #[test]
    fn spaces_are_stripped() {
        let now = 59;
        assert_eq!(verify(&secret(), "287 082", now, None).unwrap(), Some(1));
        assert_eq!(verify(&secret(), " 287082\n", now, None).unwrap(), Some(1));
    }

    #[test]
    fn malformed_codes_are_errors() {
        let long = "1".repeat(MAX_CODE_INPUT_LEN + 1);
        let spaced = format!("287082{}", " ".repeat(MAX_CODE_INPUT_LEN));
        for bad in [
            "",
            "      ",
            "28708",
            "2870820",
            "28708a",
            "-28708",
            "+287082",
            "287082\0",
            "２８７０８２", // full-width digits are not ASCII digits
            "٢٨٧٠٨٢",       // nor are Arabic-Indic digits
            &long,
            &spaced,
        ] {
            assert!(
                matches!(
                    verify(&secret(), bad, 59, None),
                    Err(TotpError::MalformedCode)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn base32_matches_rfc4648_vectors_without_padding() {
        for (input, expected) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32_encode(input.as_bytes()).as_str(), expected);
        }
        assert_eq!(
            secret().to_base32().as_str(),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
    }

    #[test]
    fn provisioning_uri_has_the_expected_format() {
        assert_eq!(
            secret()
                .provisioning_uri("alice@example.com")
                .unwrap()
                .as_str(),
            "otpauth://totp/TucDesk:alice@example.com\
             ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=TucDesk\
             &algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn provisioning_uri_label_is_percent_encoded() {
        let uri = secret()
            .provisioning_uri("a+b:c d/é?x#y&z%@example.org")
            .unwrap();
        assert!(
            uri.starts_with(
                "otpauth://totp/TucDesk:a%2Bb%3Ac%20d%2F%C3%A9%3Fx%23y%26z%25@example.org?secret="
            ),
            "{}",
            uri.as_str()
        );
        assert!(matches!(
            secret().provisioning_uri(""),
            Err(TotpError::InvalidEmail)
        ));
        assert!(matches!(
            secret().provisioning_uri(&"a".repeat(MAX_EMAIL_LEN + 1)),
            Err(TotpError::InvalidEmail)
        ));
    }

    #[test]
    fn generated_secrets_are_random_and_redacted() {
        let a = TotpSecret::generate().unwrap();
        let b = TotpSecret::generate().unwrap();
        assert_ne!(*a.0, *b.0);
        assert_eq!(a.to_base32().len(), 32);
        assert_eq!(format!("{a:?}"), "TotpSecret(<redacted>)");
    }
}
