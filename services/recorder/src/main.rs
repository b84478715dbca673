//! `tucdesk-recorder`: stores agents' encrypted session recordings. `serve` runs the service;
//! `public-key` prints the service key rendezvous must trust; `migrate` applies the schema.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tucdesk_recorder::{MIGRATIONS, RecorderConfig, build, serve};
use tucdesk_svc::config::{OpsArgs, TelemetryArgs};
use tucdesk_svc::sql::{Database, PoolSettings};

/// TucDesk recorder: receives agents' age-encrypted session recordings (verified against the
/// agent's enrolled key and the session at rendezvous, resumable), stores them under
/// tenants/{team}/recordings/… in S3 or a local directory, and serves them to operators.
///
/// Every flag can also be set through the environment variable shown in its help.
#[derive(Debug, Parser)]
#[command(name = "tucdesk-recorder", version, about, long_about = None)]
#[command(mut_arg("service_name", |arg| arg.default_value("recorder")))]
struct Cli {
    #[command(flatten)]
    recorder: RecorderConfig,
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
    /// Print the recorder's service public key (for rendezvous's
    /// TUCDESK_RENDEZVOUS_SERVICE_KEYS as `recorder=<key>`); creates the key file if missing.
    PublicKey,
    /// Apply the database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tucdesk-recorder: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::PublicKey) => {
            let identity = tucdesk_recorder::directory::load_or_create_service_key(
                &cli.recorder.service_key_file,
            )?;
            println!("recorder={}", identity.agent_id());
            return Ok(());
        }
        Some(Command::Migrate) => {
            let _telemetry = tucdesk_svc::telemetry::init(&cli.telemetry)?;
            let db =
                Database::connect(&cli.recorder.database_url, &PoolSettings::default()).await?;
            db.migrate(MIGRATIONS).await?;
            db.close().await;
            println!("recorder schema is up to date");
            return Ok(());
        }
        Some(Command::Serve) | None => {}
    }
    let _telemetry = tucdesk_svc::telemetry::init(&cli.telemetry)?;
    let config = cli.recorder.clone();
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(tucdesk_svc::shutdown::listen_for_signals(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("binding gRPC on {}", config.grpc_addr))?;
    let (recorder, access) = build(config.clone()).await?;
    let ops_listener = tucdesk_svc::http::bind(cli.ops.ops_addr).await?;
    let readiness = tucdesk_svc::http::Readiness::new().with_shutdown(shutdown.clone());
    {
        let recorder = recorder.clone();
        readiness.add_fn("backends", move || {
            let recorder = recorder.clone();
            async move { recorder.check_backends().await }
        });
    }
    let ops_router =
        tucdesk_svc::http::ops_router(recorder.metrics().registry().clone(), readiness);
    tracing::info!(grpc = %config.grpc_addr, store = %config.store, "tucdesk-recorder serving");
    let ops_server = tucdesk_svc::http::serve(ops_listener, ops_router, shutdown.clone());
    let (served, ops_served) =
        tokio::join!(serve(recorder, access, listener, shutdown), ops_server);
    served?;
    ops_served?;
    Ok(())
}
