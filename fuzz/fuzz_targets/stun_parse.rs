//! STUN datagrams a relay node receives on its public UDP port, and the TURN answers its
//! coturn health check reads (`tucdesk-stun`).
//!
//! First byte even: the rest is a datagram for the STUN server. Parsing never panics; an
//! accepted Binding request gets an answer of at most 52 bytes (no amplification beyond one
//! XOR-MAPPED-ADDRESS and a FINGERPRINT) whose mapped address decodes back to the peer, for an
//! IPv4 and an IPv6 peer. First byte odd: the rest is a TURN answer; every reader never panics
//! and returns only slices of the input.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use tucdesk_stun::{binding_success, parse_binding_request, parse_xor_mapped_address, turn};

/// The largest answer: header, XOR-MAPPED-ADDRESS for IPv6, FINGERPRINT.
const MAX_ANSWER: usize = 20 + 24 + 8;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(request) = parse_binding_request(rest) {
            for peer in ["192.0.2.1:3478", "[2001:db8::7]:65535"] {
                let peer: SocketAddr = peer.parse().expect("fixed address");
                let answer = binding_success(&request, peer);
                assert!(answer.len() <= MAX_ANSWER, "{} bytes", answer.len());
                assert_eq!(parse_xor_mapped_address(&answer), Some(peer));
                assert_eq!(&answer[8..20], &request.transaction_id);
            }
        }
        let _ = parse_xor_mapped_address(rest);
    } else {
        let attributes = turn::attributes(rest);
        assert!(attributes.len() <= 64);
        let total: usize = attributes.iter().map(|(_, value)| value.len()).sum();
        assert!(total <= rest.len());
        let _ = turn::error_code(rest);
        let _ = turn::relayed_address(rest);
        let _ = turn::message_type(rest);
        let _ = turn::transaction_id(rest);
    }
});
