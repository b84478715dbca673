//! The audit context's strict JSON parser and RFC 8785 canonical form
//! (`tucdesk_crypto::audit::canonical_json`), as the audit service applies
//! them to `AuditEvent.context_json` from producers.
//!
//! - `parse_object` never panics, accepts only JSON (a subset of what
//!   serde_json accepts) and reads it exactly as serde_json does.
//! - Whatever it accepts has a canonical form, unless a documented limit
//!   refuses it (integer beyond ±(2^53 − 1), canonical form over 16 KiB).
//! - The canonical form is a fixpoint: it parses back to an equal value
//!   (numbers compared as doubles) whose canonical form is the same bytes,
//!   and `to_string` agrees with `to_vec`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tucdesk_crypto::audit::canonical_json::{self, CanonicalJsonError};
use tucdesk_crypto::audit::{MAX_CONTEXT_BYTES, MAX_CONTEXT_DEPTH};

/// Same JSON value, numbers compared as the doubles they denote.
fn equivalent(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| equivalent(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| equivalent(v, w)))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(map) = canonical_json::parse_object(text) else {
        return;
    };
    let value = Value::Object(map.clone());
    let generic: Value = serde_json::from_str(text).expect("strict parser accepted non-JSON");
    assert_eq!(generic, value, "strict parser read the text differently");

    let canon = match canonical_json::to_vec(&map, MAX_CONTEXT_BYTES, MAX_CONTEXT_DEPTH) {
        Ok(canon) => canon,
        Err(CanonicalJsonError::IntegerOutOfRange | CanonicalJsonError::TooLarge { .. }) => return,
        Err(e) => panic!("parse_object accepted what to_vec refuses: {e:?}"),
    };
    let canon = String::from_utf8(canon).expect("canonical JSON is UTF-8");
    assert_eq!(canonical_json::to_string(&value).as_ref(), Ok(&canon));

    let reparsed = canonical_json::parse_object(&canon)
        .unwrap_or_else(|e| panic!("canonical form {canon:?} does not parse: {e:?}"));
    assert!(
        equivalent(&value, &Value::Object(reparsed.clone())),
        "canonical form {canon:?} denotes another value"
    );
    let again = canonical_json::to_vec(&reparsed, MAX_CONTEXT_BYTES, MAX_CONTEXT_DEPTH)
        .unwrap_or_else(|e| panic!("canonical form {canon:?} has no canonical form: {e:?}"));
    assert_eq!(
        String::from_utf8(again).as_deref(),
        Ok(canon.as_str()),
        "canonical form is not a fixpoint"
    );
});
