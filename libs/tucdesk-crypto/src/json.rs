//! Strict JSON-object parsing for everything we read from the network or an export file.
//!
//! serde's derived `Deserialize` for a struct also accepts a JSON *array* of the fields in
//! order, so `["EdDSA","typ","kid"]` would pass as a JWS header. Every document we define is an
//! object; other verifiers reject arrays, and so must we. Parsing still goes through the derived
//! implementation (not through `serde_json::Value`), so duplicate keys stay an error.

use serde::de::DeserializeOwned;

/// Why a document was refused.
#[derive(Debug, thiserror::Error)]
pub enum JsonObjectError {
    #[error("expected a JSON object")]
    NotAnObject,
    #[error("invalid JSON: {0}")]
    Invalid(#[from] serde_json::Error),
}

/// Parses `bytes` as `T`, requiring the document to be a JSON object.
pub fn from_json_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonObjectError> {
    // JSON whitespace is exactly space, tab, LF and CR (RFC 8259 §2).
    let first = bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(JsonObjectError::NotAnObject);
    }
    Ok(serde_json::from_slice(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Header {
        alg: String,
        kid: String,
    }

    #[test]
    fn objects_parse_and_arrays_do_not() {
        let ok: Result<Header, _> = from_json_object(br#" {"alg":"EdDSA","kid":"k"}"#);
        assert!(ok.is_ok());
        let array: Result<Header, _> = from_json_object(br#"["EdDSA","k"]"#);
        assert!(matches!(array, Err(JsonObjectError::NotAnObject)));
        // Plain serde would have accepted the array form.
        assert!(serde_json::from_slice::<Header>(br#"["EdDSA","k"]"#).is_ok());
    }

    #[test]
    fn duplicate_keys_stay_an_error() {
        let dup: Result<Header, _> = from_json_object(br#"{"alg":"EdDSA","alg":"none","kid":"k"}"#);
        assert!(matches!(dup, Err(JsonObjectError::Invalid(_))));
    }
}
