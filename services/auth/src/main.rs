//! `tucdesk-auth`: users, teams, tokens. `serve` runs the service; `bootstrap` creates the
//! first team and owner; `rotate-keys` rotates the JWT signing key.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tucdesk_auth::{AuthConfig, build, serve};
use tucdesk_svc::config::{OpsArgs, TelemetryArgs};

/// TucDesk auth service: password + TOTP login, EdDSA access tokens bound to device keys,
/// refresh-token families, session tokens for rendezvous.
///
/// Every flag can also be set through the environment variable shown in its help.
#[derive(Debug, Parser)]
#[command(name = "tucdesk-auth", version, about, long_about = None)]
#[command(mut_arg("service_name", |arg| arg.default_value("auth")))]
struct Cli {
    #[command(flatten)]
    auth: AuthConfig,
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
    /// Create the first team and its owner on an empty database, and print a one-time
    /// setup token the owner uses to set a password (`tucdesk login --setup-token`).
    Bootstrap {
        /// Name of the first team.
        #[arg(long)]
        team: String,
        /// Email of the first owner.
        #[arg(long)]
        email: String,
    },
    /// Make a new JWT signing key current. The old key stays in the JWKS until every token
    /// it signed has expired.
    RotateKeys,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tucdesk-auth: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let _telemetry = tucdesk_svc::telemetry::init(&cli.telemetry)?;
    let command = cli.command.unwrap_or(Command::Serve);
    let auth = build(cli.auth.clone()).await?;
    match command {
        Command::Bootstrap { team, email } => {
            let done = auth.bootstrap(&team, &email).await?;
            // Deliver the audit event before exiting.
            auth.outbox().publish_pending().await?;
            println!("team:        {}", done.team_id);
            println!("owner:       {} ({email})", done.user_id);
            println!("setup token: {}", done.setup_token.as_str());
            println!(
                "The setup token works once and expires in 24 hours; use it to set the owner's password."
            );
            Ok(())
        }
        Command::RotateKeys => {
            let kid = auth.keys().rotate(auth.longest_token_lifetime()).await?;
            auth.outbox().publish_pending().await?;
            println!("new signing key: {kid}");
            Ok(())
        }
        Command::Serve => {
            let shutdown = tokio_util::sync::CancellationToken::new();
            tokio::spawn(tucdesk_svc::shutdown::listen_for_signals(shutdown.clone()));
            let grpc = tokio::net::TcpListener::bind(cli.auth.grpc_addr)
                .await
                .with_context(|| format!("binding gRPC on {}", cli.auth.grpc_addr))?;
            let http = tokio::net::TcpListener::bind(cli.auth.http_addr)
                .await
                .with_context(|| format!("binding HTTP on {}", cli.auth.http_addr))?;
            let ops_listener = tucdesk_svc::http::bind(cli.ops.ops_addr).await?;
            let readiness = tucdesk_svc::http::Readiness::new().with_shutdown(shutdown.clone());
            let db = auth.db().clone();
            readiness.add_fn("database", move || {
                let db = db.clone();
                async move { db.ping().await.map_err(|err| err.to_string()) }
            });
            let ops_router =
                tucdesk_svc::http::ops_router(auth.metrics().registry().clone(), readiness);
            tracing::info!(grpc = %cli.auth.grpc_addr, http = %cli.auth.http_addr, "tucdesk-auth serving");
            let ops_server = tucdesk_svc::http::serve(ops_listener, ops_router, shutdown.clone());
            let (served, ops_served) = tokio::join!(serve(auth, grpc, http, shutdown), ops_server);
            served?;
            ops_served?;
            Ok(())
        }
    }
}
