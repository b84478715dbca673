//! How the two sides of a session reach each other, so that the same clients can be measured
//! through the relay and through the two baselines:
//!
//! - **relay**: both sides are WebSocket clients of the `tucdesk-relay` process, which
//!   decodes each message from one side and re-frames it to the other ([`super::node`]);
//! - **forwarder**: "a relay that does nothing" — both sides connect to a trivial TCP server
//!   that pairs the two connections of a session by an 8-byte id each side sends first, then
//!   copies bytes both ways (`tokio::io::copy_bidirectional`) without looking at them. It runs
//!   on a 2-worker tokio runtime of its own, as the relay process has, so the threads competing
//!   for the two cores are the same in both cases. One side speaks the WebSocket server role
//!   so that the byte stream is a valid WebSocket connection end to end (the agent side then
//!   unmasks what it reads, which the relay path does for it: a little more client work in
//!   this baseline, not less);
//! - **direct**: one TCP connection between the two sides, the agent side accepting it: a TCP
//!   echo server for the ping-pong, a sink for the stream; one hop instead of two.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::CancellationToken;

/// Worker threads of the forwarder's runtime: the relay process's runtime has one per core.
const FORWARDER_WORKERS: usize = 2;
/// Buffer per direction of a forwarded connection: one read can carry a whole 64 KiB sealed
/// frame (tokio's default, 8 KiB, would make the baseline do more syscalls than it needs).
const FORWARD_BUFFER: usize = 64 * 1024;
/// How long a connection to the forwarder may take to send its session id.
const ID_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a session's two sides meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Relay,
    Forwarder,
    Direct,
}

impl Route {
    pub const ALL: [Route; 3] = [Route::Relay, Route::Forwarder, Route::Direct];

    pub fn name(self) -> &'static str {
        match self {
            Route::Relay => "relay",
            Route::Forwarder => "forwarder",
            Route::Direct => "direct",
        }
    }
}

/// The two sides of one session: `a` is the operator (it streams, or pings), `b` the agent (it
/// counts, or echoes).
#[derive(Debug)]
pub struct Pair<S> {
    pub a: WebSocketStream<S>,
    pub b: WebSocketStream<S>,
}

/// The do-nothing relay, on its own runtime and threads; stops when dropped.
#[derive(Debug)]
pub struct Forwarder {
    addr: SocketAddr,
    next_id: AtomicU64,
    stop: CancellationToken,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        // Its thread returns from `block_on`, and dropping the runtime there ends every copy.
        self.stop.cancel();
    }
}

impl Forwarder {
    pub fn start() -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .context("binding the forwarder on loopback")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(FORWARDER_WORKERS)
            .thread_name("bench-forwarder")
            .enable_all()
            .build()
            .context("building the forwarder's runtime")?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        std::thread::Builder::new()
            .name("bench-forwarder".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => forward(listener, token).await,
                        Err(err) => eprintln!("forwarder: {err}"),
                    }
                });
            })
            .context("starting the forwarder's thread")?;
        Ok(Self {
            addr,
            next_id: AtomicU64::new(0),
            stop,
        })
    }

    /// Opens `n` sessions through the forwarder, one after the other.
    pub async fn open(&self, n: usize) -> anyhow::Result<Vec<Pair<TcpStream>>> {
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed).to_le_bytes();
            let mut sides = Vec::with_capacity(2);
            for _ in 0..2 {
                let mut stream = TcpStream::connect(self.addr)
                    .await
                    .context("connecting to the forwarder")?;
                stream.set_nodelay(true)?;
                stream.write_all(&id).await?;
                sides.push(stream);
            }
            let (Some(b), Some(a)) = (sides.pop(), sides.pop()) else {
                anyhow::bail!("two connections were opened");
            };
            pairs.push(websocket_pair(a, b).await);
        }
        Ok(pairs)
    }
}

async fn forward(listener: TcpListener, stop: CancellationToken) {
    let waiting: Arc<Mutex<HashMap<[u8; 8], TcpStream>>> = Arc::default();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let waiting = waiting.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let _ = pair_and_copy(stream, &waiting).await;
        });
    }
}

/// Reads the session id; the first connection of a session waits in `waiting`, the second
/// copies both ways until either side closes.
async fn pair_and_copy(
    mut stream: TcpStream,
    waiting: &Mutex<HashMap<[u8; 8], TcpStream>>,
) -> anyhow::Result<()> {
    let mut id = [0u8; 8];
    tokio::time::timeout(ID_TIMEOUT, stream.read_exact(&mut id)).await??;
    let peer = {
        let mut waiting = waiting.lock().unwrap_or_else(PoisonError::into_inner);
        match waiting.remove(&id) {
            Some(peer) => peer,
            None => {
                waiting.insert(id, stream);
                return Ok(());
            }
        }
    };
    let mut peer = peer;
    tokio::io::copy_bidirectional_with_sizes(
        &mut peer,
        &mut stream,
        FORWARD_BUFFER,
        FORWARD_BUFFER,
    )
    .await?;
    Ok(())
}

/// The direct route: a listener the agent sides accept on.
#[derive(Debug)]
pub struct Direct {
    listener: TcpListener,
}

impl Direct {
    pub async fn bind() -> anyhow::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind("127.0.0.1:0")
                .await
                .context("binding the direct route's listener")?,
        })
    }

    /// Opens `n` sessions, one after the other: with a single connection pending at a time,
    /// the connection accepted is the one just made.
    pub async fn open(&self, n: usize) -> anyhow::Result<Vec<Pair<TcpStream>>> {
        let addr = self.listener.local_addr()?;
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            let a = TcpStream::connect(addr)
                .await
                .context("connecting on the direct route")?;
            let (b, _) = self.listener.accept().await?;
            a.set_nodelay(true)?;
            b.set_nodelay(true)?;
            pairs.push(websocket_pair(a, b).await);
        }
        Ok(pairs)
    }
}

/// The operator side as a WebSocket client, the agent side as the server, default settings
/// (those `connect_async` gives the relay's clients).
async fn websocket_pair(a: TcpStream, b: TcpStream) -> Pair<TcpStream> {
    Pair {
        a: WebSocketStream::from_raw_socket(a, Role::Client, None).await,
        b: WebSocketStream::from_raw_socket(b, Role::Server, None).await,
    }
}
