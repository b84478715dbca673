//! What `cargo fuzz` found, kept as ordinary tests so CI catches a regression without fuzzing
//! (inputs mirror `fuzz/regressions/`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tucdesk_crypto::audit::Entry;
use tucdesk_crypto::audit::canonical_json::{self, CanonicalJsonError, parse_object};
use tucdesk_crypto::jws;
use tucdesk_crypto::merkle::SignedCheckpoint;

fn token(header: &str, payload: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode([0u8; 64])
    )
}

#[test]
fn a_jws_header_written_as_an_array_is_refused() {
    let array = token(r#"["EdDSA","tucdesk-svc+jwt","k"]"#, "{}");
    assert!(matches!(
        jws::decode(&array, 4096),
        Err(jws::JwsError::Malformed("header"))
    ));
    let object = token(r#"{"alg":"EdDSA","typ":"tucdesk-svc+jwt","kid":"k"}"#, "{}");
    assert!(jws::decode(&object, 4096).is_ok());
}

#[test]
fn audit_lines_and_checkpoints_written_as_arrays_are_refused() {
    assert!(Entry::from_json_line(r#"[1,"00",{},"aa","bb"]"#).is_err());
    assert!(SignedCheckpoint::from_json(r#"[["t",1,"00",1,"k"],"00"]"#).is_err());
}

#[test]
fn a_whole_float_beyond_2_pow_53_has_no_canonical_form() {
    let value = parse_object(r#"{"":1e17}"#).unwrap();
    assert!(matches!(
        canonical_json::to_vec(&value, 1 << 20, 64),
        Err(CanonicalJsonError::IntegerOutOfRange)
    ));
    // Exponent-form magnitudes (≥ 1e21) and fractions stay representable.
    let big = parse_object(r#"{"a":1e30,"b":0.5}"#).unwrap();
    assert_eq!(
        String::from_utf8(canonical_json::to_vec(&big, 1 << 20, 64).unwrap()).unwrap(),
        r#"{"a":1e+30,"b":0.5}"#
    );
}
