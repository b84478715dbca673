//! TucDesk audit service (SPEC §6): the append-only, per-team, hash-chained and signed audit
//! log, with RFC 6962 signed checkpoints, fed by the `AUDIT` JetStream stream every service's
//! outbox publishes to, and read through AuditService (gRPC) by owners, admins and auditors.
//!
//! Library first: [`serve`] runs the consumer, the checkpoint timer, the gRPC API and the HTTP
//! export on given listeners, so tests and `tucdesk-standalone` run the service in-process
//! exactly as `main.rs` does. See `docs/audit.md`; byte formats are `docs/audit-format.md`.
//!
//! | module | concern |
//! |---|---|
//! | [`ingest`], [`append`] | the durable consumer; one transaction per batch, ack after commit |
//! | [`checkpoint`] | count-, time- and export-triggered signed checkpoints |
//! | [`convert`] | wire events and entries ↔ `tucdesk_crypto` forms |
//! | [`caller`], [`grpc`], [`http`] | access-token verification, the AuditService adapter, the HTTP export (NDJSON, OCSF) |
//! | [`query`], [`export`], [`proofs`] | the read API |
//! | [`key`] | the Ed25519 signing key file |
//! | [`store`] | the service's tables |
//! | [`syslog`] | the optional push of entries and checkpoints to a syslog collector (RFC 5424 over TCP or TLS) |
#![forbid(unsafe_code)]

pub mod append;
pub mod caller;
pub mod checkpoint;
pub mod config;
pub use tucdesk_audit_format::convert;
pub mod error;
pub mod export;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod key;
pub mod metrics;
pub mod paging;
pub mod proofs;
pub mod query;
pub mod service;
pub mod store;
pub mod syslog;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use caller::AccessVerifier;
pub use config::AuditConfig;
pub use error::{AuditError, StartError};
pub use ingest::Ingest;
pub use key::AuditKey;
pub use service::{Audit, Backends, MIGRATIONS};

/// Largest gRPC request accepted; audit requests are small filters.
pub const MAX_GRPC_MESSAGE: usize = 64 * 1024;

/// Runs the whole service until `shutdown`: the consumer and checkpoint timer ([`Ingest`]),
/// the gRPC API with its background work ([`serve_api`]) on `grpc`, the HTTP export
/// ([`serve_http`]) on `http`, and the syslog push when `--syslog-url` is set
/// ([`syslog::SyslogPusher`]). On shutdown the batch in progress commits and is acknowledged,
/// then the listeners close.
pub async fn serve(
    audit: Audit,
    access: AccessVerifier,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let ingest = audit.open_ingest().await?;
    let pusher = audit.syslog_pusher()?;
    // A listener that fails stops the rest instead of leaving a half-served replica.
    let stop_on_error = |served: Result<(), StartError>| {
        if served.is_err() {
            shutdown.cancel();
        }
        served
    };
    let api = serve_api(audit.clone(), access.clone(), grpc, shutdown.clone());
    let export = serve_http(audit, access, http, shutdown.clone());
    let push = async {
        if let Some(pusher) = pusher {
            pusher.run(shutdown.clone()).await;
        }
    };
    let (served, served_http, (), ()) = tokio::join!(
        async { stop_on_error(api.await) },
        async { stop_on_error(export.await) },
        ingest.run(shutdown.clone()),
        push
    );
    served?;
    served_http
}

/// Serves the HTTP export (`GET /v1/audit/export`, [`http`]) on `listener` until `shutdown`.
/// Its reads are recorded through the outbox that [`serve_api`] delivers.
pub async fn serve_http(
    audit: Audit,
    access: AccessVerifier,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    http::serve(audit, access, listener, shutdown).await
}

/// Serves AuditService on `listener` until `shutdown`, with the outbox of the service's own
/// audit events and the refresh of auth's keys alongside.
pub async fn serve_api(
    audit: Audit,
    access: AccessVerifier,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let service = grpc::AuditGrpc::new(audit.clone(), access.clone(), shutdown.clone());
    let server = tonic::transport::Server::builder()
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(tucdesk_svc::net::nodelay_incoming(listener), {
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        });
    let outbox = audit.outbox().clone().run(shutdown.clone());
    let keys = access.run_refresh(shutdown.clone());
    let (served, (), ()) = tokio::join!(server, outbox, keys);
    served?;
    Ok(())
}

/// Builds the service from its configuration: the signing key, the backends, and auth's keys
/// for verifying callers.
pub async fn build(config: AuditConfig) -> Result<(Audit, AccessVerifier), StartError> {
    config.check()?;
    let key = AuditKey::load_or_create(&config.key_file, config.require_key_file)?;
    let backends = Backends::connect(&config).await?;
    let channel = tucdesk_svc::auth_keys::auth_channel(&config.auth_url)?;
    let keys = tucdesk_svc::auth_keys::AuthKeys::connect(
        channel,
        &config.token_issuer,
        config.auth_startup_timeout,
    )
    .await?;
    let access = AccessVerifier::from_auth(keys, &config.token_audience);
    let audit = Audit::new(config, backends, key).await?;
    Ok((audit, access))
}
