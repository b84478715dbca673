//! TucDesk recorder (SPEC §7, docs/recordings.md): receives agents' encrypted session
//! recordings, verifies them against what rendezvous knows (agent key and team, session) and
//! their signed manifest, and stores them in a tenant-prefixed object store (S3 or a local
//! directory); operators list and download them (the recorder never sees plaintext).
//!
//! Library first: [`serve`] runs the gRPC API with the outbox of the service's audit events,
//! so tests and `tucdesk-standalone` run the service in-process exactly as `main.rs` does.
//!
//! | module | concern |
//! |---|---|
//! | [`upload`], [`complete`] | verified, resumable uploads; joining, checking and storing |
//! | [`read`] | List and Get for operators |
//! | [`directory`] | rendezvous lookups (agent keys, sessions) behind a trait |
//! | [`caller`], [`grpc`] | access tokens; the tonic adapter |
//! | [`objects`], [`db`] | the object store and its keys; the recorder's tables |
#![forbid(unsafe_code)]

pub mod caller;
pub mod complete;
pub mod config;
pub mod db;
pub mod directory;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod objects;
pub mod read;
pub mod service;
pub mod upload;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use caller::AccessVerifier;
pub use config::RecorderConfig;
pub use directory::{AgentDirectory, RendezvousDirectory};
pub use error::{RecorderError, StartError};
pub use service::{Backends, MIGRATIONS, Recorder};

/// Serves RecorderService on `listener` until `shutdown`, with the outbox of the service's
/// audit events and the refresh of auth's keys alongside.
pub async fn serve(
    recorder: Recorder,
    access: AccessVerifier,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let service = grpc::RecorderGrpc::new(recorder.clone(), access.clone(), shutdown.clone());
    let server = tonic::transport::Server::builder()
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(tucdesk_svc::net::nodelay_incoming(listener), {
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        });
    let outbox = recorder.outbox().clone().run(shutdown.clone());
    let keys = access.run_refresh(shutdown.clone());
    let (served, (), ()) = tokio::join!(server, outbox, keys);
    served?;
    Ok(())
}

/// Builds the service from its configuration: the service key, rendezvous, the backends and
/// auth's keys for verifying callers.
pub async fn build(config: RecorderConfig) -> Result<(Recorder, AccessVerifier), StartError> {
    config.check()?;
    let identity = directory::load_or_create_service_key(&config.service_key_file)?;
    let signer = directory::service_signer(identity)?;
    let rendezvous = RendezvousDirectory::new(&config.rendezvous_internal_url, signer)?;
    let backends = Backends::connect(&config, Arc::new(rendezvous)).await?;
    let channel = tucdesk_svc::auth_keys::auth_channel(&config.auth_url)?;
    let keys = tucdesk_svc::auth_keys::AuthKeys::connect(
        channel,
        &config.token_issuer,
        config.auth_startup_timeout,
    )
    .await?;
    let access = AccessVerifier::from_auth(keys, &config.token_audience);
    let recorder = Recorder::new(config, backends).await?;
    Ok((recorder, access))
}
