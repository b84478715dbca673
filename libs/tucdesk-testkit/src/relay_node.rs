//! A relay node in-process on loopback (WebSocket, STUN and admin listeners on port 0), its
//! tickets verified against a [`TestAuth`], and a WebSocket client for either side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tucdesk_proto::v1::{RelayControl, RelayHello, Side};
use tucdesk_relay::{Listeners, Relay, RelayConfig};
use tucdesk_svc::bus::Bus;

use crate::auth::TestAuth;

/// A running relay node.
pub struct TestRelay {
    pub relay: Relay,
    pub ws_addr: SocketAddr,
    pub stun_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl std::fmt::Debug for TestRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRelay")
            .field("ws_addr", &self.ws_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Settings for a test node: loopback listeners, a short heartbeat, the given node id.
pub fn test_config(node_id: &str) -> RelayConfig {
    let mut config = RelayConfig::embedded();
    config.node_id = node_id.to_owned();
    config.heartbeat_interval = Duration::from_millis(200);
    config.drain_deadline = Duration::from_secs(2);
    config.coturn_check_interval = Duration::from_millis(500);
    config
}

impl TestRelay {
    /// Starts a node with `config` on `bus`, trusting `auth`'s keys. Tickets get no clock
    /// leeway, so a test can see one expire within seconds.
    pub async fn start(
        auth: &TestAuth,
        bus: Arc<dyn Bus>,
        config: RelayConfig,
    ) -> anyhow::Result<Self> {
        Self::start_with_tls(auth, bus, config, None).await
    }

    /// The same, serving the WebSocket relay over TLS with `tls`.
    pub async fn start_with_tls(
        auth: &TestAuth,
        bus: Arc<dyn Bus>,
        mut config: RelayConfig,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> anyhow::Result<Self> {
        let ws = TcpListener::bind("127.0.0.1:0").await?;
        let stun = UdpSocket::bind("127.0.0.1:0").await?;
        let admin = TcpListener::bind("127.0.0.1:0").await?;
        let (ws_addr, stun_addr, admin_addr) =
            (ws.local_addr()?, stun.local_addr()?, admin.local_addr()?);
        config.ws_addr = ws_addr;
        config.stun_addr = stun_addr;
        config.admin_addr = admin_addr;
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        config.ws_url = Some(format!("{scheme}://{ws_addr}/v1/pipe"));
        let channel = tucdesk_svc::auth_keys::auth_channel(&auth.url())?;
        let keys = tucdesk_svc::auth_keys::AuthKeys::connect(
            channel,
            &auth.issuer,
            Duration::from_secs(10),
        )
        .await?;
        let verifier = keys.verifier(&config.node_id).with_leeway(Duration::ZERO);
        let relay = Relay::new(config, bus, tucdesk_relay::tickets::Tickets::new(verifier))?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(tucdesk_relay::serve(
            relay.clone(),
            Listeners { ws, stun, admin },
            tls,
            shutdown.clone(),
        ));
        Ok(Self {
            relay,
            ws_addr,
            stun_addr,
            admin_addr,
            shutdown,
            task: Some(task),
        })
    }

    /// The pipe URL of a session.
    pub fn url(&self, session_id: &str) -> String {
        format!("ws://{}/v1/pipe/{session_id}", self.ws_addr)
    }

    /// Starts shutting down (as SIGTERM does): the node drains.
    pub fn shut_down(&self) {
        self.shutdown.cancel();
    }

    /// Waits for `serve` to return (after draining).
    pub async fn stopped(mut self, timeout: Duration) -> anyhow::Result<()> {
        let task = self
            .task
            .take()
            .ok_or_else(|| anyhow::anyhow!("already stopped"))?;
        tokio::time::timeout(timeout, task).await???;
        Ok(())
    }
}

/// One side's WebSocket connection to a relay.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to `url`, sends the hello, and returns the socket and the relay's first control
/// message (waiting, paired, or rejected).
pub async fn join(
    url: &str,
    session_id: &str,
    side: Side,
    ticket: &str,
) -> anyhow::Result<(Socket, RelayControl)> {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    let control = say_hello(&mut socket, session_id, side, ticket).await?;
    Ok((socket, control))
}

/// Sends the hello on a connected `socket` (plain or TLS) and returns the relay's first
/// control message.
pub async fn say_hello<S>(
    socket: &mut WebSocketStream<S>,
    session_id: &str,
    side: Side,
    ticket: &str,
) -> anyhow::Result<RelayControl>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hello = RelayHello {
        protocol_version: tucdesk_proto::PROTOCOL_VERSION,
        session_id: session_id.to_owned(),
        side: side as i32,
        ticket: ticket.to_owned(),
    };
    socket
        .send(Message::Binary(hello.encode_to_vec().into()))
        .await?;
    next_control(socket).await
}

/// The next binary message on `socket` (skipping pings), within 15 s.
pub async fn next_binary<S>(socket: &mut WebSocketStream<S>) -> anyhow::Result<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let message = tokio::time::timeout(Duration::from_secs(15), socket.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("the relay closed the connection"))??;
        match message {
            Message::Binary(bytes) => return Ok(bytes.to_vec()),
            Message::Ping(_) | Message::Pong(_) => {}
            other => anyhow::bail!("expected a binary message, got {other:?}"),
        }
    }
}

/// The next relay control message on `socket`.
pub async fn next_control<S>(socket: &mut WebSocketStream<S>) -> anyhow::Result<RelayControl>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    Ok(RelayControl::decode(next_binary(socket).await?.as_slice())?)
}

/// The close code the relay ended `socket` with (reading and discarding anything before).
pub async fn close_code<S>(socket: &mut WebSocketStream<S>, timeout: Duration) -> Option<u16>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}
