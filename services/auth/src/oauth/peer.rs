//! The peer address of an HTTP request, which the OAuth endpoints rate-limit by.
//!
//! The address comes from the TCP connection only (axum's `ConnectInfo`), never from a
//! header such as `X-Forwarded-For` that the client writes itself. [`serve`] runs the router
//! so that every request carries it.

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The connection's peer address, if the server was started with [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

/// Serves `router` on `listener` with peer addresses until `shutdown`, then lets open
/// requests finish for up to the same grace period as the ops server.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned())
    .into_future();
    let grace_expired = async {
        shutdown.cancelled().await;
        tokio::time::sleep(tucdesk_svc::http::OPS_SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = server => result,
        () = grace_expired => {
            tracing::warn!("HTTP connections still open at shutdown; closing");
            Ok(())
        }
    }
}
