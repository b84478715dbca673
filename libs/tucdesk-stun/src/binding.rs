//! STUN Binding (RFC 8489) as a relay node serves it: only well-formed Binding requests get an
//! answer, and the answer is the smallest correct one (XOR-MAPPED-ADDRESS, plus FINGERPRINT
//! only when the request carried one), so the node is a poor amplifier.
//!
//! Pure: bytes in, bytes out. The UDP loop around it is `tucdesk-relay`'s `stun_server`.

use std::net::{IpAddr, SocketAddr};

/// The fixed magic cookie of RFC 5389/8489 messages.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// STUN header length.
pub const HEADER_LEN: usize = 20;
/// Largest request considered (one Ethernet MTU of UDP payload); anything larger is dropped.
pub const MAX_REQUEST_LEN: usize = 1280;
/// Binding request and success response message types.
pub const BINDING_REQUEST: u16 = 0x0001;
pub const BINDING_SUCCESS: u16 = 0x0101;
/// Attribute types used here.
pub const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
pub const ATTR_FINGERPRINT: u16 = 0x8028;
/// FINGERPRINT is CRC-32 of the message XOR this value.
pub const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// Most attributes parsed in one request.
const MAX_ATTRIBUTES: usize = 32;

/// Why a datagram gets no answer (for metrics; the sender is never told).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    #[error("too short or too long")]
    Size,
    #[error("not a STUN message")]
    NotStun,
    #[error("not a Binding request")]
    NotBindingRequest,
    #[error("malformed attributes")]
    Malformed,
    #[error("a comprehension-required attribute this server does not know")]
    UnknownRequiredAttribute,
    #[error("FINGERPRINT does not match")]
    BadFingerprint,
}

impl Dropped {
    pub fn label(self) -> &'static str {
        match self {
            Dropped::Size => "size",
            Dropped::NotStun => "not_stun",
            Dropped::NotBindingRequest => "not_binding_request",
            Dropped::Malformed => "malformed",
            Dropped::UnknownRequiredAttribute => "unknown_attribute",
            Dropped::BadFingerprint => "bad_fingerprint",
        }
    }
}

/// A Binding request worth answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingRequest {
    pub transaction_id: [u8; 12],
    pub has_fingerprint: bool,
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn fingerprint(message: &[u8]) -> u32 {
    crc32fast::hash(message) ^ FINGERPRINT_XOR
}

/// Attributes this server understands in a request (RFC 8489 §18.3): optional ones it may
/// ignore, and FINGERPRINT. SOFTWARE is comprehension-optional (≥ 0x8000) anyway.
fn known_required(attribute: u16) -> bool {
    // MESSAGE-INTEGRITY, USERNAME and friends only make sense between ICE peers, not towards a
    // public STUN server; refusing them keeps this server from pretending to check them.
    matches!(attribute, ATTR_XOR_MAPPED_ADDRESS)
}

/// Parses a datagram; `Ok` only for a well-formed Binding request.
pub fn parse_binding_request(datagram: &[u8]) -> Result<BindingRequest, Dropped> {
    if datagram.len() < HEADER_LEN || datagram.len() > MAX_REQUEST_LEN {
        return Err(Dropped::Size);
    }
    let message_type = u16_at(datagram, 0);
    let length = usize::from(u16_at(datagram, 2));
    let cookie = u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
    // The two leading bits of every STUN message are zero, and the length covers exactly the
    // attributes, in 4-byte units.
    if message_type & 0xC000 != 0 || cookie != MAGIC_COOKIE {
        return Err(Dropped::NotStun);
    }
    if length % 4 != 0 || HEADER_LEN + length != datagram.len() {
        return Err(Dropped::NotStun);
    }
    if message_type != BINDING_REQUEST {
        return Err(Dropped::NotBindingRequest);
    }
    let mut transaction_id = [0u8; 12];
    transaction_id.copy_from_slice(&datagram[8..HEADER_LEN]);

    let mut at = HEADER_LEN;
    let mut count = 0;
    let mut has_fingerprint = false;
    while at < datagram.len() {
        count += 1;
        if count > MAX_ATTRIBUTES || at + 4 > datagram.len() || has_fingerprint {
            // FINGERPRINT must be the last attribute.
            return Err(Dropped::Malformed);
        }
        let attribute = u16_at(datagram, at);
        let value_len = usize::from(u16_at(datagram, at + 2));
        let padded = value_len.div_ceil(4) * 4;
        let value_start = at + 4;
        if value_start + padded > datagram.len() {
            return Err(Dropped::Malformed);
        }
        if attribute == ATTR_FINGERPRINT {
            if value_len != 4 {
                return Err(Dropped::Malformed);
            }
            let stated = u32::from_be_bytes([
                datagram[value_start],
                datagram[value_start + 1],
                datagram[value_start + 2],
                datagram[value_start + 3],
            ]);
            if stated != fingerprint(&datagram[..at]) {
                return Err(Dropped::BadFingerprint);
            }
            has_fingerprint = true;
        } else if attribute < 0x8000 && !known_required(attribute) {
            return Err(Dropped::UnknownRequiredAttribute);
        }
        at = value_start + padded;
    }
    Ok(BindingRequest {
        transaction_id,
        has_fingerprint,
    })
}

/// The Binding success response telling `peer` its reflexive address.
pub fn binding_success(request: &BindingRequest, peer: SocketAddr) -> Vec<u8> {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = peer.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let (family, address): (u8, Vec<u8>) = match peer.ip().to_canonical() {
        IpAddr::V4(v4) => (
            0x01,
            v4.octets().iter().zip(cookie).map(|(a, c)| a ^ c).collect(),
        ),
        IpAddr::V6(v6) => {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&cookie);
            key[4..].copy_from_slice(&request.transaction_id);
            (
                0x02,
                v6.octets().iter().zip(key).map(|(a, k)| a ^ k).collect(),
            )
        }
    };
    let attribute_len = 4 + address.len();
    let fingerprint_len = if request.has_fingerprint { 8 } else { 0 };
    let body_len = 4 + attribute_len + fingerprint_len;
    let mut out = Vec::with_capacity(HEADER_LEN + body_len);
    out.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    out.extend_from_slice(&u16::try_from(body_len).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&cookie);
    out.extend_from_slice(&request.transaction_id);
    out.extend_from_slice(&ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
    out.extend_from_slice(&u16::try_from(attribute_len).unwrap_or(0).to_be_bytes());
    out.push(0);
    out.push(family);
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&address);
    if request.has_fingerprint {
        // The length field already counts the FINGERPRINT attribute, as RFC 8489 §14.7 wants.
        let crc = fingerprint(&out);
        out.extend_from_slice(&ATTR_FINGERPRINT.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&crc.to_be_bytes());
    }
    out
}

/// The reflexive address in a Binding success response (for tests and the health check).
pub fn parse_xor_mapped_address(response: &[u8]) -> Option<SocketAddr> {
    if response.len() < HEADER_LEN || u16_at(response, 0) != BINDING_SUCCESS {
        return None;
    }
    let mut at = HEADER_LEN;
    while at + 4 <= response.len() {
        let attribute = u16_at(response, at);
        let len = usize::from(u16_at(response, at + 2));
        let value = response.get(at + 4..at + 4 + len)?;
        if attribute == ATTR_XOR_MAPPED_ADDRESS && value.len() >= 8 {
            let port = u16_at(value, 2) ^ (MAGIC_COOKIE >> 16) as u16;
            let cookie = MAGIC_COOKIE.to_be_bytes();
            let ip = match value[1] {
                0x01 => {
                    let mut v4 = [0u8; 4];
                    for (i, byte) in v4.iter_mut().enumerate() {
                        *byte = value[4 + i] ^ cookie[i];
                    }
                    IpAddr::from(v4)
                }
                0x02 if value.len() >= 20 => {
                    let mut key = [0u8; 16];
                    key[..4].copy_from_slice(&cookie);
                    key[4..].copy_from_slice(&response[8..20]);
                    let mut v6 = [0u8; 16];
                    for (i, byte) in v6.iter_mut().enumerate() {
                        *byte = value[4 + i] ^ key[i];
                    }
                    IpAddr::from(v6)
                }
                _ => return None,
            };
            return Some(SocketAddr::new(ip, port));
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// A Binding request with `transaction_id` (and FINGERPRINT if asked), as a client sends it.
pub fn binding_request(transaction_id: [u8; 12], with_fingerprint: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 8);
    out.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
    out.extend_from_slice(&(if with_fingerprint { 8u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(&transaction_id);
    if with_fingerprint {
        let crc = fingerprint(&out);
        out.extend_from_slice(&ATTR_FINGERPRINT.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&crc.to_be_bytes());
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn answers_a_plain_binding_request_with_the_reflexive_address() {
        let request = binding_request([7; 12], false);
        let parsed = parse_binding_request(&request).unwrap();
        let peer: SocketAddr = "192.0.2.10:40000".parse().unwrap();
        let response = binding_success(&parsed, peer);
        assert_eq!(response.len(), 32, "header + one 12-byte attribute");
        assert_eq!(&response[8..20], &[7; 12]);
        assert_eq!(parse_xor_mapped_address(&response), Some(peer));
    }

    #[test]
    fn the_rfc_5769_ipv6_response_vector_decodes() {
        // RFC 5769 §2.3 (sample IPv6 response), XOR-MAPPED-ADDRESS
        // 2001:db8:1234:5678:11:2233:4455:6677 port 32853, transaction id b7e7a701bc34d686fa87dfae.
        let txid: [u8; 12] = [
            0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
        ];
        let peer: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap();
        let response = binding_success(
            &BindingRequest {
                transaction_id: txid,
                has_fingerprint: false,
            },
            peer,
        );
        let expected_attribute: [u8; 20] = [
            0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25,
            0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
        ];
        assert_eq!(&response[24..44], &expected_attribute);
        assert_eq!(parse_xor_mapped_address(&response), Some(peer));
    }

    #[test]
    fn fingerprints_are_checked_and_echoed() {
        let request = binding_request([1; 12], true);
        let parsed = parse_binding_request(&request).unwrap();
        assert!(parsed.has_fingerprint);
        let response = binding_success(&parsed, "10.0.0.1:5".parse().unwrap());
        let crc_at = response.len() - 4;
        let stated = u32::from_be_bytes(response[crc_at..].try_into().unwrap());
        assert_eq!(
            stated,
            crc32fast::hash(&response[..crc_at - 4]) ^ FINGERPRINT_XOR
        );
        let mut tampered = request.clone();
        tampered[10] ^= 1;
        assert_eq!(
            parse_binding_request(&tampered),
            Err(Dropped::BadFingerprint)
        );
    }

    #[test]
    fn everything_else_is_dropped() {
        let good = binding_request([2; 12], false);
        let mut indication = good.clone();
        indication[1] = 0x11; // Binding indication
        assert_eq!(
            parse_binding_request(&indication),
            Err(Dropped::NotBindingRequest)
        );
        let mut wrong_cookie = good.clone();
        wrong_cookie[4] ^= 0xff;
        assert_eq!(parse_binding_request(&wrong_cookie), Err(Dropped::NotStun));
        assert_eq!(parse_binding_request(&good[..19]), Err(Dropped::Size));
        let mut long_length = good.clone();
        long_length[3] = 4;
        assert_eq!(parse_binding_request(&long_length), Err(Dropped::NotStun));
        // USERNAME (0x0006) is comprehension-required and not ours to check.
        let mut with_username = good.clone();
        with_username[3] = 8;
        with_username.extend_from_slice(&[0x00, 0x06, 0x00, 0x03, b'a', b'b', b'c', 0]);
        assert_eq!(
            parse_binding_request(&with_username),
            Err(Dropped::UnknownRequiredAttribute)
        );
        // SOFTWARE (0x8022) is comprehension-optional: ignored.
        let mut with_software = good.clone();
        with_software[3] = 8;
        with_software.extend_from_slice(&[0x80, 0x22, 0x00, 0x02, b'x', b'y', 0, 0]);
        assert!(parse_binding_request(&with_software).is_ok());
        assert_eq!(
            parse_binding_request(&vec![0u8; MAX_REQUEST_LEN + 1]),
            Err(Dropped::Size)
        );
    }

    #[test]
    fn an_answer_is_never_much_larger_than_the_question() {
        for fp in [false, true] {
            let request = binding_request([3; 12], fp);
            let parsed = parse_binding_request(&request).unwrap();
            let v6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
            let response = binding_success(&parsed, v6);
            // 20-byte header + the one attribute the client asked for, and its fingerprint.
            assert!(
                response.len() <= request.len() + 24,
                "{} vs {}",
                response.len(),
                request.len()
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
            let _ = parse_binding_request(&bytes);
            let _ = parse_xor_mapped_address(&bytes);
        }

        #[test]
        fn answers_roundtrip_any_peer(txid in any::<[u8; 12]>(), v4 in any::<[u8; 4]>(),
                                      v6 in any::<[u8; 16]>(), port in any::<u16>(), fp in any::<bool>()) {
            let request = parse_binding_request(&binding_request(txid, fp)).unwrap();
            for ip in [IpAddr::from(v4), IpAddr::from(v6)] {
                let peer = SocketAddr::new(ip.to_canonical(), port);
                let response = binding_success(&request, peer);
                prop_assert_eq!(parse_xor_mapped_address(&response), Some(peer));
            }
        }
    }
}
