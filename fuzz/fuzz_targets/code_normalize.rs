//! Arbitrary text as a support code: normalisation never panics, output is
//! always 12 alphabet symbols, and the display form parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tucdesk_crypto::codes::{CODE_ALPHABET, CODE_LEN, SupportCode};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(code) = SupportCode::parse(input) {
        let normalized = code.normalized();
        assert_eq!(normalized.len(), CODE_LEN);
        assert!(normalized.bytes().all(|c| CODE_ALPHABET.contains(&c)));
        let again = SupportCode::parse(&code.display()).expect("display form parses");
        assert_eq!(again.normalized(), normalized);
    }
});
