//! Listener plumbing shared by the gRPC services.

use tokio::net::{TcpListener, TcpStream};
use tokio_stream::Stream;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;

/// The connections `listener` accepts, each with `TCP_NODELAY` set. tonic applies its own
/// `tcp_nodelay` only to listeners it binds itself; on ours, Nagle's algorithm and the peer's
/// delayed ACK held the tail of every gRPC response for ~40 ms (measured by the OpenSSH
/// comparison bench: two such waits were most of a session's setup time).
pub fn nodelay_incoming(listener: TcpListener) -> impl Stream<Item = std::io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|accepted| {
        if let Ok(stream) = &accepted {
            // Best effort: a socket that refuses the option still works, only slower.
            let _ = stream.set_nodelay(true);
        }
        accepted
    })
}
