//! `tucdesk-rendezvous`: agents dial in here, operators ask for sessions here. `serve` runs the
//! service; `service-key` prints the public key auth must trust for session-token minting.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tucdesk_rendezvous::{RendezvousConfig, build, serve};
use tucdesk_svc::config::{OpsArgs, TelemetryArgs};

/// TucDesk rendezvous: agent enrollment and registration, presence, policy and approvals,
/// session negotiation.
///
/// Every flag can also be set through the environment variable shown in its help. Run one or
/// more replicas against the same Postgres, Redis and NATS; any replica serves any call.
#[derive(Debug, Parser)]
#[command(name = "tucdesk-rendezvous", version, about, long_about = None)]
#[command(mut_arg("service_name", |arg| arg.default_value("rendezvous")))]
struct Cli {
    #[command(flatten)]
    rendezvous: RendezvousConfig,
    #[command(flatten)]
    telemetry: TelemetryArgs,
    #[command(flatten)]
    ops: OpsArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Print this service's public key (creating the key file if needed), in the form auth's
    /// TUCDESK_AUTH_SERVICE_KEYS expects: `rendezvous=<key>`.
    ServiceKey,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tucdesk-rendezvous: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::ServiceKey) = cli.command {
        let identity = tucdesk_rendezvous::auth_link::load_or_create_service_key(
            &cli.rendezvous.service_key_file,
        )?;
        println!("rendezvous={}", identity.agent_id());
        return Ok(());
    }
    let _telemetry = tucdesk_svc::telemetry::init(&cli.telemetry)?;
    let config = cli.rendezvous.clone();
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(tucdesk_svc::shutdown::listen_for_signals(shutdown.clone()));
    let public = tokio::net::TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("binding gRPC on {}", config.grpc_addr))?;
    let internal = tokio::net::TcpListener::bind(config.internal_addr)
        .await
        .with_context(|| {
            format!(
                "binding the internal gRPC listener on {}",
                config.internal_addr
            )
        })?;
    let rdv = build(config.clone()).await?;
    let ops_listener = tucdesk_svc::http::bind(cli.ops.ops_addr).await?;
    let readiness = tucdesk_svc::http::Readiness::new().with_shutdown(shutdown.clone());
    {
        let rdv = rdv.clone();
        readiness.add_fn("backends", move || {
            let rdv = rdv.clone();
            async move { rdv.check_backends().await }
        });
    }
    let ops_router = tucdesk_svc::http::ops_router(rdv.metrics().registry().clone(), readiness);
    tracing::info!(
        grpc = %config.grpc_addr,
        internal = %config.internal_addr,
        replica = rdv.replica_id(),
        audience = %config.audience,
        "tucdesk-rendezvous serving"
    );
    let ops_server = tucdesk_svc::http::serve(ops_listener, ops_router, shutdown.clone());
    let (served, ops_served) = tokio::join!(serve(rdv, public, internal, shutdown), ops_server);
    served?;
    ops_served?;
    Ok(())
}
