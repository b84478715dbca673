//! The WebSocket relay path (SPEC §5 step 5c): both sides dial out to the relay node rendezvous
//! chose, present their single-use ticket in a `RelayHello`, and once the relay has paired them
//! every binary message is one sealed frame, forwarded unchanged.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tucdesk_proto::limits::MAX_SEALED_FRAME_LEN;
use tucdesk_proto::v1::relay_control::Kind as Control;
use tucdesk_proto::v1::{
    Path, RejectReason, RelayCloseCode, RelayControl, RelayEndpoint, RelayHello, Side,
};

use crate::{MessagePipe, PipeError};

/// Time allowed for TCP connect, TLS and the WebSocket upgrade.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the peer after the relay said "waiting" (the relay itself gives up after
/// its own pairing timeout, 30 s by default, and says so).
pub const MAX_PAIRING_WAIT: Duration = Duration::from_secs(60);
/// Largest control message the relay sends before pairing.
const MAX_CONTROL_LEN: usize = 8 * 1024;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Socket = WebSocketStream<Box<dyn Io>>;

/// Why dialling the relay failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayDialError {
    #[error("relay URL {0:?} is not usable: {1}")]
    BadUrl(String, &'static str),
    #[error("could not reach the relay at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("TLS setup for the relay: {0}")]
    Tls(String),
    #[error("the relay refused the connection ({reason}): {message}")]
    Refused { reason: String, message: String },
    #[error("the relay closed the connection before pairing: {0}")]
    Closed(String),
    #[error("the other side did not join the relay in time")]
    PairingTimeout,
    #[error("the relay broke the protocol: {0}")]
    Protocol(&'static str),
}

/// What the dialler needs besides the endpoint.
#[derive(Debug, Clone, Default)]
pub struct DialOptions {
    /// TLS settings for `wss://` relays (the platform roots when `None`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Allow plain `ws://` to a host that is not loopback. Off by default: the frames are
    /// sealed either way, but the ticket and session metadata would travel in clear.
    pub allow_plain_remote: bool,
}

/// A paired WebSocket relay connection.
pub struct WsPipe {
    sink: Mutex<SplitSink<Socket, Message>>,
    stream: Mutex<SplitStream<Socket>>,
}

impl std::fmt::Debug for WsPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsPipe").finish_non_exhaustive()
    }
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_SEALED_FRAME_LEN))
        .max_frame_size(Some(MAX_SEALED_FRAME_LEN))
        // Bounded: when the relay does not take our bytes, `send` waits instead of queueing.
        .write_buffer_size(0)
        .max_write_buffer_size(4 * MAX_SEALED_FRAME_LEN)
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => *name == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

fn close_reason(code: CloseCode, text: &str) -> String {
    let named = RelayCloseCode::try_from(i32::from(u16::from(code)))
        .ok()
        .filter(|c| *c != RelayCloseCode::Unspecified)
        .map(|c| {
            c.as_str_name()
                .trim_start_matches("RELAY_CLOSE_CODE_")
                .to_ascii_lowercase()
                .replace('_', " ")
        });
    let text = printable(text);
    match (named, text.is_empty()) {
        (Some(name), true) => name,
        (Some(name), false) => format!("{name}: {text}"),
        (None, true) => format!("code {}", u16::from(code)),
        (None, false) => text,
    }
}

/// Dials `endpoint` for `session_id` as `side` with the endpoint's ticket, and waits until the
/// relay pairs this side with the other one.
pub async fn dial_relay(
    endpoint: &RelayEndpoint,
    session_id: &str,
    side: Side,
    options: &DialOptions,
) -> Result<WsPipe, RelayDialError> {
    let url = format!("{}/{session_id}", endpoint.ws_url.trim_end_matches('/'));
    let parsed =
        url::Url::parse(&url).map_err(|_| RelayDialError::BadUrl(url.clone(), "not a URL"))?;
    let host = parsed
        .host()
        .ok_or(RelayDialError::BadUrl(url.clone(), "no host"))?;
    let secure = match parsed.scheme() {
        "wss" => true,
        "ws" if is_loopback(&host) || options.allow_plain_remote => false,
        "ws" => {
            return Err(RelayDialError::BadUrl(
                url.clone(),
                "plain ws:// is only used on loopback; the relay must offer wss://",
            ));
        }
        _ => {
            return Err(RelayDialError::BadUrl(
                url.clone(),
                "scheme must be wss or ws",
            ));
        }
    };
    let port = parsed
        .port_or_known_default()
        .ok_or(RelayDialError::BadUrl(url.clone(), "no port"))?;
    let host_name = match &host {
        url::Host::Ipv6(ip) => ip.to_string(),
        other => other.to_string(),
    };
    let connect_err = |message: String| RelayDialError::Connect {
        url: endpoint.ws_url.clone(),
        message,
    };

    let socket = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let tcp = TcpStream::connect((host_name.as_str(), port))
            .await
            .map_err(|err| connect_err(err.to_string()))?;
        tcp.set_nodelay(true)
            .map_err(|err| connect_err(err.to_string()))?;
        let io: Box<dyn Io> = if secure {
            let config = match &options.tls {
                Some(config) => config.clone(),
                None => crate::tls::client_config(None)
                    .map_err(|err| RelayDialError::Tls(err.to_string()))?,
            };
            let name = rustls_pki_types::ServerName::try_from(host_name.clone())
                .map_err(|_| RelayDialError::BadUrl(url.clone(), "host is not a valid TLS name"))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|err| connect_err(format!("TLS: {err}")))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let (socket, _response) =
            tokio_tungstenite::client_async_with_config(url.as_str(), io, Some(ws_config()))
                .await
                .map_err(|err| connect_err(err.to_string()))?;
        Ok::<_, RelayDialError>(socket)
    })
    .await
    .map_err(|_| connect_err("timed out".into()))??;

    pair(socket, session_id, side, &endpoint.ticket).await
}

async fn pair(
    mut socket: Socket,
    session_id: &str,
    side: Side,
    ticket: &str,
) -> Result<WsPipe, RelayDialError> {
    let hello = RelayHello {
        protocol_version: tucdesk_proto::PROTOCOL_VERSION,
        session_id: session_id.to_owned(),
        side: side as i32,
        ticket: ticket.to_owned(),
    };
    socket
        .send(Message::Binary(hello.encode_to_vec().into()))
        .await
        .map_err(|err| RelayDialError::Closed(err.to_string()))?;
    let deadline = tokio::time::Instant::now() + MAX_PAIRING_WAIT;
    loop {
        let next = tokio::time::timeout_at(deadline, socket.next())
            .await
            .map_err(|_| RelayDialError::PairingTimeout)?;
        let message = match next {
            None => return Err(RelayDialError::Closed("connection ended".into())),
            Some(Err(err)) => return Err(RelayDialError::Closed(err.to_string())),
            Some(Ok(message)) => message,
        };
        let bytes = match message {
            Message::Binary(bytes) => bytes,
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(frame) => {
                let reason = frame
                    .map(|f| close_reason(f.code, &f.reason))
                    .unwrap_or_else(|| "no reason given".into());
                if reason.starts_with("pairing timeout") {
                    return Err(RelayDialError::PairingTimeout);
                }
                return Err(RelayDialError::Closed(reason));
            }
            Message::Text(_) | Message::Frame(_) => {
                return Err(RelayDialError::Protocol("text message before pairing"));
            }
        };
        if bytes.len() > MAX_CONTROL_LEN {
            return Err(RelayDialError::Protocol("oversized control message"));
        }
        let control = RelayControl::decode(bytes.as_ref())
            .map_err(|_| RelayDialError::Protocol("undecodable control message"))?;
        match control.kind {
            Some(Control::Waiting(_)) => continue,
            Some(Control::Paired(_)) => break,
            Some(Control::Rejected(rejected)) => {
                let reason = RejectReason::try_from(rejected.reason)
                    .map(|r| {
                        r.as_str_name()
                            .trim_start_matches("REJECT_REASON_")
                            .to_ascii_lowercase()
                    })
                    .unwrap_or_else(|_| "unknown".into());
                return Err(RelayDialError::Refused {
                    reason,
                    message: printable(&rejected.message),
                });
            }
            None => return Err(RelayDialError::Protocol("empty control message")),
        }
    }
    let (sink, stream) = socket.split();
    Ok(WsPipe {
        sink: Mutex::new(sink),
        stream: Mutex::new(stream),
    })
}

/// A peer-supplied message made safe to print: bounded, without control characters (a relay
/// must not be able to drive the user's terminal).
pub fn printable(text: &str) -> String {
    text.chars()
        .take(tucdesk_proto::limits::MAX_MESSAGE_LEN)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn io_error(err: WsError) -> PipeError {
    match err {
        WsError::ConnectionClosed | WsError::AlreadyClosed => PipeError::Closed { reason: None },
        WsError::Capacity(_) => PipeError::TooLarge {
            len: 0,
            max: MAX_SEALED_FRAME_LEN,
        },
        other => PipeError::Io(other.to_string()),
    }
}

#[async_trait]
impl MessagePipe for WsPipe {
    fn path(&self) -> Path {
        Path::Ws
    }

    async fn send(&self, message: Vec<u8>) -> Result<(), PipeError> {
        if message.len() > MAX_SEALED_FRAME_LEN {
            return Err(PipeError::TooLarge {
                len: message.len(),
                max: MAX_SEALED_FRAME_LEN,
            });
        }
        self.sink
            .lock()
            .await
            .send(Message::Binary(message.into()))
            .await
            .map_err(io_error)
    }

    async fn recv(&self) -> Result<Option<Vec<u8>>, PipeError> {
        let mut stream = self.stream.lock().await;
        loop {
            match stream.next().await {
                None => return Ok(None),
                Some(Err(err)) => return Err(io_error(err)),
                Some(Ok(Message::Binary(bytes))) => return Ok(Some(bytes.to_vec())),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(frame))) => {
                    return match frame {
                        None => Ok(None),
                        Some(frame) if frame.code == CloseCode::Normal => Ok(None),
                        Some(frame) => Err(PipeError::Closed {
                            reason: Some(close_reason(frame.code, &frame.reason)),
                        }),
                    };
                }
                Some(Ok(Message::Text(_) | Message::Frame(_))) => {
                    return Err(PipeError::Io("the relay sent a text message".into()));
                }
            }
        }
    }

    async fn close(&self) {
        let mut sink = self.sink.lock().await;
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.close().await;
    }
}
