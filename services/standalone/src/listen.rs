//! Binding every listener up front (so port 0 resolves before any service is configured) and
//! creating the private directories of the data directory.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::Context as _;
use tokio::net::{TcpListener, UdpSocket};

use crate::config::StandaloneConfig;

/// Every listener, bound before anything is built.
pub(crate) struct Listeners {
    pub auth_grpc: TcpListener,
    pub auth_http: TcpListener,
    pub rendezvous: TcpListener,
    pub rendezvous_internal: TcpListener,
    pub relay: tucdesk_relay::Listeners,
    pub audit: TcpListener,
    pub audit_http: TcpListener,
    pub recorder: TcpListener,
    pub ops: TcpListener,
}

/// Binds every listener: the public ones on the configured host, the internal ones on
/// loopback.
pub(crate) async fn bind(config: &StandaloneConfig) -> anyhow::Result<Listeners> {
    let ports = config.ports()?;
    let (host, loopback) = (config.host, config.loopback());
    let tcp = |ip, port: u16, what: &'static str| async move {
        let addr = SocketAddr::new(ip, port);
        TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {what} on {addr}"))
    };
    let stun_addr = SocketAddr::new(host, ports.relay_stun);
    Ok(Listeners {
        auth_grpc: tcp(host, ports.auth_grpc, "auth gRPC").await?,
        auth_http: tcp(host, ports.auth_http, "auth HTTP").await?,
        rendezvous: tcp(host, ports.rendezvous, "rendezvous").await?,
        rendezvous_internal: tcp(loopback, ports.rendezvous_internal, "rendezvous internal")
            .await?,
        relay: tucdesk_relay::Listeners {
            ws: tcp(host, ports.relay_ws, "the relay WebSocket listener").await?,
            stun: UdpSocket::bind(stun_addr)
                .await
                .with_context(|| format!("binding relay STUN on {stun_addr} (udp)"))?,
            admin: tcp(loopback, ports.relay_admin, "relay admin").await?,
        },
        audit: tcp(host, ports.audit, "audit gRPC").await?,
        audit_http: tcp(host, ports.audit_http, "the audit HTTP export").await?,
        recorder: tcp(host, ports.recorder, "recorder gRPC").await?,
        ops: tcp(loopback, ports.ops, "the ops server").await?,
    })
}

/// Creates the data directory (mode 0700) or warns when an existing one is open to others.
pub(crate) fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %dir.display(),
            mode = format!("{:o}", mode & 0o777),
            "the data directory is open to group or others; it holds keys and the setup token (chmod 700)"
        );
    }
    Ok(())
}
