//! A minimal TURN client (RFC 8656 Allocate over UDP with the long-term credential mechanism),
//! for the node's coturn health check: allocate a relayed address with freshly minted REST
//! credentials, then release it. Tests use it to prove coturn accepts rendezvous's credentials
//! and refuses expired ones.

use std::net::SocketAddr;
use std::time::Duration;

use hmac::{KeyInit as _, Mac as _};
use md5::Digest as _;

use tokio::net::UdpSocket;

use crate::stun::{self, HEADER_LEN, MAGIC_COOKIE};

const ALLOCATE_REQUEST: u16 = 0x0003;
const ALLOCATE_SUCCESS: u16 = 0x0103;
const ALLOCATE_ERROR: u16 = 0x0113;
const REFRESH_REQUEST: u16 = 0x0004;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_LIFETIME: u16 = 0x000D;
const ATTR_REALM: u16 = 0x0014;
const ATTR_NONCE: u16 = 0x0015;
const ATTR_XOR_RELAYED_ADDRESS: u16 = 0x0016;
const ATTR_REQUESTED_TRANSPORT: u16 = 0x0019;
const TRANSPORT_UDP: u8 = 17;
/// How long to wait for each answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer read.
const MAX_ANSWER_LEN: usize = 1500;

#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("TURN server did not answer: {0}")]
    Io(#[from] std::io::Error),
    #[error("TURN server did not answer within {ANSWER_TIMEOUT:?}")]
    Timeout,
    #[error("TURN server refused the allocation with {code} {reason}")]
    Refused { code: u16, reason: String },
    #[error("TURN server answered something unexpected: {0}")]
    Unexpected(&'static str),
    #[error("the random number generator failed")]
    Rng,
}

/// A STUN message under construction.
struct Builder {
    bytes: Vec<u8>,
}

impl Builder {
    fn new(message_type: u16) -> Result<Self, TurnError> {
        let txid = tucdesk_crypto::rng::random_array::<12>().map_err(|_| TurnError::Rng)?;
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(&message_type.to_be_bytes());
        bytes.extend_from_slice(&0u16.to_be_bytes());
        bytes.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        bytes.extend_from_slice(&txid);
        Ok(Self { bytes })
    }

    fn attribute(mut self, attribute: u16, value: &[u8]) -> Self {
        self.bytes.extend_from_slice(&attribute.to_be_bytes());
        self.bytes
            .extend_from_slice(&u16::try_from(value.len()).unwrap_or(0).to_be_bytes());
        self.bytes.extend_from_slice(value);
        let padding = (4 - value.len() % 4) % 4;
        self.bytes.extend(std::iter::repeat_n(0, padding));
        self.set_length(self.bytes.len() - HEADER_LEN);
        self
    }

    fn set_length(&mut self, length: usize) {
        let length = u16::try_from(length).unwrap_or(0).to_be_bytes();
        self.bytes[2..4].copy_from_slice(&length);
    }

    /// Appends MESSAGE-INTEGRITY (HMAC-SHA1 with the long-term key), RFC 8489 §14.5: the
    /// length field counts the attribute while the HMAC covers everything before it.
    fn integrity(mut self, key: &[u8; 16]) -> Self {
        self.set_length(self.bytes.len() - HEADER_LEN + 24);
        // HMAC takes keys of any length.
        let tag = match hmac::Hmac::<sha1::Sha1>::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(&self.bytes);
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => vec![0; 20],
        };
        self.attribute(ATTR_MESSAGE_INTEGRITY, &tag)
    }
}

/// The long-term credential key: MD5(username ":" realm ":" password).
fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let digest = md5::Md5::digest(format!("{username}:{realm}:{password}").as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest);
    key
}

/// The attributes of an answer, by type.
fn attributes(message: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = HEADER_LEN;
    while at + 4 <= message.len() {
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

fn error_code(message: &[u8]) -> (u16, String) {
    attributes(message)
        .into_iter()
        .find(|(attribute, _)| *attribute == ATTR_ERROR_CODE)
        .filter(|(_, value)| value.len() >= 4)
        .map_or((0, String::new()), |(_, value)| {
            let code = u16::from(value[2] & 0x07) * 100 + u16::from(value[3]);
            (code, String::from_utf8_lossy(&value[4..]).into_owned())
        })
}

async fn exchange(socket: &UdpSocket, request: &[u8]) -> Result<Vec<u8>, TurnError> {
    socket.send(request).await?;
    let mut buffer = vec![0u8; MAX_ANSWER_LEN];
    loop {
        let len = tokio::time::timeout(ANSWER_TIMEOUT, socket.recv(&mut buffer))
            .await
            .map_err(|_| TurnError::Timeout)??;
        // Only the answer to this transaction counts.
        if len >= HEADER_LEN && buffer[8..HEADER_LEN] == request[8..HEADER_LEN] {
            buffer.truncate(len);
            return Ok(buffer);
        }
    }
}

/// Allocates a relayed UDP address on the TURN server at `server` with `username` /
/// `password`, then releases it. Returns the relayed address coturn assigned.
pub async fn allocate(
    server: SocketAddr,
    username: &str,
    password: &str,
) -> Result<SocketAddr, TurnError> {
    let bind: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(server).await?;
    let transport = [TRANSPORT_UDP, 0, 0, 0];

    // First attempt without credentials: the server answers 401 with its realm and a nonce.
    let probe = Builder::new(ALLOCATE_REQUEST)?.attribute(ATTR_REQUESTED_TRANSPORT, &transport);
    let challenge = exchange(&socket, &probe.bytes).await?;
    let (code, reason) = error_code(&challenge);
    if code != 401 {
        return Err(TurnError::Refused { code, reason });
    }
    let attrs = attributes(&challenge);
    let find = |wanted: u16| attrs.iter().find(|(a, _)| *a == wanted).map(|(_, v)| *v);
    let realm = find(ATTR_REALM).ok_or(TurnError::Unexpected("no REALM in the 401"))?;
    let nonce = find(ATTR_NONCE).ok_or(TurnError::Unexpected("no NONCE in the 401"))?;
    let realm_text = String::from_utf8_lossy(realm).into_owned();
    let key = long_term_key(username, &realm_text, password);

    let request = Builder::new(ALLOCATE_REQUEST)?
        .attribute(ATTR_REQUESTED_TRANSPORT, &transport)
        .attribute(ATTR_USERNAME, username.as_bytes())
        .attribute(ATTR_REALM, realm)
        .attribute(ATTR_NONCE, nonce)
        .integrity(&key);
    let answer = exchange(&socket, &request.bytes).await?;
    match u16::from_be_bytes([answer[0], answer[1]]) {
        ALLOCATE_SUCCESS => {}
        ALLOCATE_ERROR => {
            let (code, reason) = error_code(&answer);
            return Err(TurnError::Refused { code, reason });
        }
        _ => return Err(TurnError::Unexpected("not an Allocate answer")),
    }
    let relayed = attributes(&answer)
        .into_iter()
        .find(|(attribute, _)| *attribute == ATTR_XOR_RELAYED_ADDRESS)
        .and_then(|(_, value)| {
            // Same encoding as XOR-MAPPED-ADDRESS: reuse its decoder on a synthetic answer.
            let mut synthetic = answer[..HEADER_LEN].to_vec();
            synthetic[0..2].copy_from_slice(&stun::BINDING_SUCCESS.to_be_bytes());
            synthetic.extend_from_slice(&stun::ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
            synthetic.extend_from_slice(&u16::try_from(value.len()).unwrap_or(0).to_be_bytes());
            synthetic.extend_from_slice(value);
            stun::parse_xor_mapped_address(&synthetic)
        })
        .ok_or(TurnError::Unexpected("no XOR-RELAYED-ADDRESS"))?;

    // Release at once: a health check must not hold a relay port.
    let release = Builder::new(REFRESH_REQUEST)?
        .attribute(ATTR_LIFETIME, &0u32.to_be_bytes())
        .attribute(ATTR_USERNAME, username.as_bytes())
        .attribute(ATTR_REALM, realm)
        .attribute(ATTR_NONCE, nonce)
        .integrity(&key);
    let _ = exchange(&socket, &release.bytes).await;
    Ok(relayed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_long_term_key_is_md5_of_user_realm_password() {
        // MD5("user:realm:pass"), computed independently with Python's hashlib.
        let key = long_term_key("user", "realm", "pass");
        assert_eq!(
            key,
            [
                0x84, 0x93, 0xfb, 0xc5, 0x3b, 0xa5, 0x82, 0xfb, 0x4c, 0x04, 0x4c, 0x45, 0x6b, 0xdc,
                0x40, 0xeb
            ]
        );
    }

    #[test]
    fn message_integrity_counts_itself_in_the_length() {
        let Ok(builder) = Builder::new(ALLOCATE_REQUEST) else {
            return;
        };
        let message = builder
            .attribute(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0])
            .integrity(&[0; 16]);
        let length = usize::from(u16::from_be_bytes([message.bytes[2], message.bytes[3]]));
        assert_eq!(length + HEADER_LEN, message.bytes.len());
        assert_eq!(message.bytes.len(), HEADER_LEN + 8 + 24);
    }
}
