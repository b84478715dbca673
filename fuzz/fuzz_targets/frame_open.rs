//! Arbitrary bytes into a `FrameOpener`: never panics, never accepts a frame
//! it did not authenticate, and a sealed frame always opens.
//!
//! Input is split into frames by a 2-byte big-endian length prefix so the
//! fuzzer also explores the counter state across several frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tucdesk_crypto::frame::{Direction, MAX_FRAME_PLAINTEXT_LEN};
use tucdesk_crypto::hazmat;

const KEY: [u8; 32] = [0x24; 32];
const SID: &str = "fuzz-session";

fuzz_target!(|data: &[u8]| {
    let mut rx = hazmat::frame_opener(&KEY, SID, Direction::AgentToOperator);
    let mut rest = data;
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (frame, tail) = rest[2..].split_at(n);
        // Without the key the fuzzer cannot forge a tag: every open fails.
        assert!(rx.open(frame).is_err());
        assert_eq!(rx.last_counter(), None);
        rest = tail;
    }

    // Roundtrip: whatever the input, sealing then opening returns it.
    if data.len() <= MAX_FRAME_PLAINTEXT_LEN {
        let mut tx = hazmat::frame_sealer(&KEY, SID, Direction::AgentToOperator, 0);
        let mut rx = hazmat::frame_opener(&KEY, SID, Direction::AgentToOperator);
        let frame = tx.seal(data).expect("seal within limits");
        assert_eq!(rx.open(&frame).expect("own frame opens"), data);
        assert!(rx.open(&frame).is_err(), "replay accepted");
    }
});
