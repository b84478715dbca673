//! TURN (RFC 8656) messages for a minimal client: Allocate and Refresh with the long-term
//! credential mechanism (RFC 8489 §9.2), and the attributes of the server's answers.

use std::net::SocketAddr;

use hmac::{KeyInit as _, Mac as _};
use md5::Digest as _;

use crate::binding::{self, HEADER_LEN, MAGIC_COOKIE};

pub const ALLOCATE_REQUEST: u16 = 0x0003;
pub const ALLOCATE_SUCCESS: u16 = 0x0103;
pub const ALLOCATE_ERROR: u16 = 0x0113;
pub const REFRESH_REQUEST: u16 = 0x0004;
pub const ATTR_USERNAME: u16 = 0x0006;
pub const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
pub const ATTR_ERROR_CODE: u16 = 0x0009;
pub const ATTR_LIFETIME: u16 = 0x000D;
pub const ATTR_REALM: u16 = 0x0014;
pub const ATTR_NONCE: u16 = 0x0015;
pub const ATTR_XOR_RELAYED_ADDRESS: u16 = 0x0016;
pub const ATTR_REQUESTED_TRANSPORT: u16 = 0x0019;
/// REQUESTED-TRANSPORT value for UDP.
pub const TRANSPORT_UDP: [u8; 4] = [17, 0, 0, 0];
/// Most attributes read from one answer.
const MAX_ATTRIBUTES: usize = 64;

/// A STUN message under construction.
#[derive(Debug, Clone)]
pub struct Builder {
    bytes: Vec<u8>,
}

impl Builder {
    /// A message of `message_type` with `transaction_id`.
    pub fn new(message_type: u16, transaction_id: [u8; 12]) -> Self {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(&message_type.to_be_bytes());
        bytes.extend_from_slice(&0u16.to_be_bytes());
        bytes.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        bytes.extend_from_slice(&transaction_id);
        Self { bytes }
    }

    /// Appends an attribute (padded to 4 bytes). Values longer than 65535 bytes are cut.
    pub fn attribute(mut self, attribute: u16, value: &[u8]) -> Self {
        let value = &value[..value.len().min(usize::from(u16::MAX))];
        self.bytes.extend_from_slice(&attribute.to_be_bytes());
        self.bytes
            .extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
        self.bytes.extend_from_slice(value);
        let padding = (4 - value.len() % 4) % 4;
        self.bytes.extend(std::iter::repeat_n(0, padding));
        self.set_length(self.bytes.len() - HEADER_LEN);
        self
    }

    fn set_length(&mut self, length: usize) {
        let length = u16::try_from(length).unwrap_or(u16::MAX).to_be_bytes();
        self.bytes[2..4].copy_from_slice(&length);
    }

    /// Appends MESSAGE-INTEGRITY (HMAC-SHA1 with `key`), RFC 8489 §14.5: the length field
    /// counts the attribute while the HMAC covers everything before it.
    pub fn integrity(mut self, key: &[u8; 16]) -> Self {
        self.set_length(self.bytes.len() - HEADER_LEN + 24);
        let tag = match hmac::Hmac::<sha1::Sha1>::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(&self.bytes);
                mac.finalize().into_bytes().to_vec()
            }
            // HMAC accepts keys of any length.
            Err(_) => vec![0; 20],
        };
        self.attribute(ATTR_MESSAGE_INTEGRITY, &tag)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// The long-term credential key: MD5(username ":" realm ":" password).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let digest = md5::Md5::digest(format!("{username}:{realm}:{password}").as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest);
    key
}

/// The message type of an answer (0 when too short).
pub fn message_type(message: &[u8]) -> u16 {
    match message {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

/// The transaction id of a message, if it has a full header.
pub fn transaction_id(message: &[u8]) -> Option<&[u8]> {
    message.get(8..HEADER_LEN)
}

/// The attributes of a message, by type, in order (at most 64; a truncated one ends the list).
pub fn attributes(message: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = HEADER_LEN;
    while at + 4 <= message.len() && out.len() < MAX_ATTRIBUTES {
        let attribute = u16::from_be_bytes([message[at], message[at + 1]]);
        let len = usize::from(u16::from_be_bytes([message[at + 2], message[at + 3]]));
        let Some(value) = message.get(at + 4..at + 4 + len) else {
            break;
        };
        out.push((attribute, value));
        at += 4 + len.div_ceil(4) * 4;
    }
    out
}

/// The first attribute of type `wanted`.
pub fn attribute(message: &[u8], wanted: u16) -> Option<&[u8]> {
    attributes(message)
        .into_iter()
        .find(|(attribute, _)| *attribute == wanted)
        .map(|(_, value)| value)
}

/// ERROR-CODE as (code, reason phrase); (0, "") when absent or malformed.
pub fn error_code(message: &[u8]) -> (u16, String) {
    attribute(message, ATTR_ERROR_CODE)
        .filter(|value| value.len() >= 4)
        .map_or((0, String::new()), |value| {
            let code = u16::from(value[2] & 0x07) * 100 + u16::from(value[3]);
            (code, String::from_utf8_lossy(&value[4..]).into_owned())
        })
}

/// XOR-RELAYED-ADDRESS of an Allocate success (same encoding as XOR-MAPPED-ADDRESS).
pub fn relayed_address(message: &[u8]) -> Option<SocketAddr> {
    let value = attribute(message, ATTR_XOR_RELAYED_ADDRESS)?;
    let header = message.get(..HEADER_LEN)?;
    let mut synthetic = header.to_vec();
    synthetic[0..2].copy_from_slice(&binding::BINDING_SUCCESS.to_be_bytes());
    synthetic.extend_from_slice(&binding::ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
    synthetic.extend_from_slice(&u16::try_from(value.len()).ok()?.to_be_bytes());
    synthetic.extend_from_slice(value);
    binding::parse_xor_mapped_address(&synthetic)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_long_term_key_is_md5_of_user_realm_password() {
        // MD5("user:realm:pass"), computed independently with Python's hashlib.
        assert_eq!(
            long_term_key("user", "realm", "pass"),
            [
                0x84, 0x93, 0xfb, 0xc5, 0x3b, 0xa5, 0x82, 0xfb, 0x4c, 0x04, 0x4c, 0x45, 0x6b, 0xdc,
                0x40, 0xeb
            ]
        );
    }

    #[test]
    fn message_integrity_counts_itself_in_the_length() {
        let message = Builder::new(ALLOCATE_REQUEST, [1; 12])
            .attribute(ATTR_REQUESTED_TRANSPORT, &TRANSPORT_UDP)
            .integrity(&[0; 16]);
        let bytes = message.bytes();
        let length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        assert_eq!(length + HEADER_LEN, bytes.len());
        assert_eq!(bytes.len(), HEADER_LEN + 8 + 24);
    }

    #[test]
    fn error_codes_and_attributes_read_back() {
        let message = Builder::new(ALLOCATE_ERROR, [2; 12])
            .attribute(ATTR_ERROR_CODE, &[0, 0, 4, 1, b'U', b'n'])
            .attribute(ATTR_REALM, b"tucdesk");
        assert_eq!(error_code(message.bytes()), (401, "Un".to_owned()));
        assert_eq!(
            attribute(message.bytes(), ATTR_REALM),
            Some(b"tucdesk".as_slice())
        );
        assert_eq!(message_type(message.bytes()), ALLOCATE_ERROR);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn answer_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = attributes(&bytes);
            let _ = error_code(&bytes);
            let _ = relayed_address(&bytes);
            let _ = message_type(&bytes);
            let _ = transaction_id(&bytes);
        }
    }
}
