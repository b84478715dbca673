//! Arbitrary bytes as every `tucdesk.v1` message that arrives from the
//! network. The first byte selects the message type
//! (`tucdesk_fuzz::WIRE_MESSAGES`, modulo its length), the rest is the
//! encoded message. Decoding never panics; whatever decodes re-encodes to
//! bytes that decode to the same message, and encoding is deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    tucdesk_fuzz::check_wire_message(usize::from(selector), body);
});
