//! The WebSocket relay's HTTP side: one route, `GET /v1/pipe/{session_id}` upgraded to a
//! WebSocket, served over TLS when a certificate is configured. Connections are bounded before
//! any work is done for them, and the TLS handshake is bounded in time.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tucdesk_proto::limits::MAX_SEALED_FRAME_LEN;

use crate::service::Relay;

/// Initial read buffer of each WebSocket (grows to one frame at most).
pub const READ_BUFFER: usize = 8 * 1024;
/// Most bytes queued towards a slow reader before its sender is made to wait: two frames.
pub const MAX_WRITE_BUFFER: usize = 2 * MAX_SEALED_FRAME_LEN + 1024;
/// How long a TLS handshake may take.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an HTTP request's head may take to arrive (slow-loris bound).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The relay's routes.
pub fn router(relay: Relay) -> Router {
    Router::new()
        .route("/v1/pipe/{session_id}", get(pipe))
        .with_state(relay)
}

async fn pipe(
    State(relay): State<Relay>,
    Path(session_id): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if tucdesk_proto::validate::uuid("session_id", &session_id).is_err() {
        return (StatusCode::NOT_FOUND, "no such pipe").into_response();
    }
    let Ok(socket_permit) = relay.inner.sockets.clone().try_acquire_owned() else {
        relay.metrics().rejected.with_label_values(&["FULL"]).inc();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this relay is full; use another",
        )
            .into_response();
    };
    upgrade
        .max_message_size(MAX_SEALED_FRAME_LEN)
        .max_frame_size(MAX_SEALED_FRAME_LEN)
        .read_buffer_size(READ_BUFFER)
        // Write each frame at once: a relay batches nothing, latency matters more.
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| async move {
            crate::pipe::serve(relay, session_id, socket).await;
            drop(socket_permit);
        })
}

/// Accepts connections on `listener` (TLS if `tls` is set) and serves `router` on each, until
/// `stop`. At most `max_connections` are served at once; further ones wait in the kernel's
/// backlog.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    max_connections: usize,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, _peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let tls = tls.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let served = match tls {
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    run(connection, &stop).await
                }
                None => {
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    run(connection, &stop).await
                }
            };
            if let Err(err) = served {
                tracing::debug!(error = %err, "relay HTTP connection ended with an error");
            }
        });
    }
}

/// Drives a connection; on `stop` only connections that have not upgraded are closed
/// (upgraded ones are WebSockets whose sessions drain on their own deadline).
async fn run<C>(connection: C, stop: &CancellationToken) -> Result<(), hyper::Error>
where
    C: std::future::Future<Output = Result<(), hyper::Error>>,
{
    tokio::select! {
        result = connection => result,
        () = stop.cancelled() => Ok(()),
    }
}

/// A TLS acceptor from PEM files (certificate chain and private key).
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<TlsAcceptor, crate::RelayError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, err: &dyn std::fmt::Display| {
        crate::RelayError::Config(format!("{what}: {err}"))
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|err| bad(&format!("reading {}", cert.display()), &err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| bad(&format!("parsing {}", cert.display()), &err))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|err| bad(&format!("reading {}", key.display()), &err))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| bad("TLS versions", &err))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|err| bad("TLS certificate", &err))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
