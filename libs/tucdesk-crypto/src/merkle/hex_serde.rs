//! Lowercase-hex serde for hashes and signatures in JSON exports.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

const DIGITS: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Decodes exactly `N` bytes of lowercase hex; anything else is an error,
/// so every value has exactly one textual form.
pub(crate) fn decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    let raw = s.as_bytes();
    if raw.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(raw.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn de<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
    // Owned, not `&str`: values from `serde_json::from_value` or escaped
    // text cannot be borrowed.
    let s = String::deserialize(d)?;
    decode::<N>(&s)
        .ok_or_else(|| D::Error::custom(format!("expected {} lowercase hex digits", N * 2)))
}

pub(crate) mod hash {
    use super::*;
    pub(crate) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(v))
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        de::<D, 32>(d)
    }
}

pub(crate) mod sig {
    use super::*;
    pub(crate) fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(v))
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        de::<D, 64>(d)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::merkle::hex_serde;

    #[test]
    fn hex_has_one_textual_form() {
        assert_eq!(hex_serde::decode::<2>("0aff"), Some([0x0a, 0xff]));
        assert_eq!(hex_serde::decode::<2>("0AFF"), None);
        assert_eq!(hex_serde::decode::<2>("0af"), None);
        assert_eq!(hex_serde::encode(&[0x0a, 0xff]), "0aff");
    }
}
