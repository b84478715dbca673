//! A minimal TURN client (RFC 8656 Allocate over UDP with the long-term credential mechanism),
//! for the node's coturn health check: allocate a relayed address with freshly minted REST
//! credentials, then release it. Tests use it to prove coturn accepts rendezvous's credentials
//! and refuses expired ones.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tucdesk_stun::HEADER_LEN;
use tucdesk_stun::turn::{
    ALLOCATE_ERROR, ALLOCATE_REQUEST, ALLOCATE_SUCCESS, ATTR_LIFETIME, ATTR_NONCE, ATTR_REALM,
    ATTR_REQUESTED_TRANSPORT, ATTR_USERNAME, Builder, REFRESH_REQUEST, TRANSPORT_UDP, attribute,
    error_code, long_term_key, message_type, relayed_address, transaction_id,
};

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

async fn exchange(socket: &UdpSocket, request: &[u8]) -> Result<Vec<u8>, TurnError> {
    socket.send(request).await?;
    let mut buffer = vec![0u8; MAX_ANSWER_LEN];
    loop {
        let len = tokio::time::timeout(ANSWER_TIMEOUT, socket.recv(&mut buffer))
            .await
            .map_err(|_| TurnError::Timeout)??;
        // Only the answer to this transaction counts.
        if len >= HEADER_LEN && transaction_id(&buffer[..len]) == transaction_id(request) {
            buffer.truncate(len);
            return Ok(buffer);
        }
    }
}

fn new_transaction() -> Result<[u8; 12], TurnError> {
    tucdesk_crypto::rng::random_array::<12>().map_err(|_| TurnError::Rng)
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

    // First attempt without credentials: the server answers 401 with its realm and a nonce.
    let probe = Builder::new(ALLOCATE_REQUEST, new_transaction()?)
        .attribute(ATTR_REQUESTED_TRANSPORT, &TRANSPORT_UDP);
    let challenge = exchange(&socket, probe.bytes()).await?;
    let (code, reason) = error_code(&challenge);
    if code != 401 {
        return Err(TurnError::Refused { code, reason });
    }
    let realm =
        attribute(&challenge, ATTR_REALM).ok_or(TurnError::Unexpected("no REALM in the 401"))?;
    let nonce =
        attribute(&challenge, ATTR_NONCE).ok_or(TurnError::Unexpected("no NONCE in the 401"))?;
    let key = long_term_key(username, &String::from_utf8_lossy(realm), password);

    let request = Builder::new(ALLOCATE_REQUEST, new_transaction()?)
        .attribute(ATTR_REQUESTED_TRANSPORT, &TRANSPORT_UDP)
        .attribute(ATTR_USERNAME, username.as_bytes())
        .attribute(ATTR_REALM, realm)
        .attribute(ATTR_NONCE, nonce)
        .integrity(&key);
    let answer = exchange(&socket, request.bytes()).await?;
    match message_type(&answer) {
        ALLOCATE_SUCCESS => {}
        ALLOCATE_ERROR => {
            let (code, reason) = error_code(&answer);
            return Err(TurnError::Refused { code, reason });
        }
        _ => return Err(TurnError::Unexpected("not an Allocate answer")),
    }
    let relayed =
        relayed_address(&answer).ok_or(TurnError::Unexpected("no XOR-RELAYED-ADDRESS"))?;

    // Release at once: a health check must not hold a relay port.
    let release = Builder::new(REFRESH_REQUEST, new_transaction()?)
        .attribute(ATTR_LIFETIME, &0u32.to_be_bytes())
        .attribute(ATTR_USERNAME, username.as_bytes())
        .attribute(ATTR_REALM, realm)
        .attribute(ATTR_NONCE, nonce)
        .integrity(&key);
    let _ = exchange(&socket, release.bytes()).await;
    Ok(relayed)
}
