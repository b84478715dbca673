//! `tucdesk-relay`: a relay node. `serve` runs STUN, the WebSocket relay and the admin API
//! (optionally supervising coturn); `coturn-config` writes the coturn configuration that goes
//! with it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tucdesk_relay::coturn::{CoturnOptions, render, write_config};
use tucdesk_relay::{RelayConfig, bind, build, serve};
use tucdesk_svc::config::{OpsArgs, TelemetryArgs};

/// TucDesk relay node: STUN binding, WebSocket relay for sealed session frames, coturn beside
/// it, heartbeats for rendezvous.
///
/// Every flag can also be set through the environment variable shown in its help. Run as many
/// nodes as needed, each with its own --node-id; rendezvous picks among them by heartbeat.
#[derive(Debug, Parser)]
#[command(name = "tucdesk-relay", version, about, long_about = None)]
#[command(mut_arg("service_name", |arg| arg.default_value("relay")))]
struct Cli {
    #[command(flatten)]
    relay: RelayConfig,
    #[command(flatten)]
    telemetry: TelemetryArgs,
    #[command(flatten)]
    ops: OpsArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node (the default).
    Serve {
        /// Also run coturn with a configuration generated from these options, restarting it
        /// if it exits, and health-check it.
        #[arg(long)]
        coturn_launch: bool,
        /// The coturn binary.
        #[arg(long, default_value = "turnserver")]
        coturn_binary: PathBuf,
        /// Where the generated coturn configuration is written (0600).
        #[arg(long, default_value = "tucdesk-relay-coturn.conf")]
        coturn_config: PathBuf,
        #[command(flatten)]
        coturn: CoturnOptions,
    },
    /// Print (or write with --out, mode 0600) the coturn configuration for this node: TURN REST
    /// credentials with the shared secret, no CLI, private and loopback peers denied, quotas.
    CoturnConfig {
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        coturn: CoturnOptions,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tucdesk-relay: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn secret(config: &RelayConfig) -> anyhow::Result<String> {
    config
        .turn_secret
        .clone()
        .filter(|s| !s.is_empty())
        .context("TUCDESK_TURN_SECRET is required for coturn (the same secret rendezvous uses)")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve {
        coturn_launch: false,
        coturn_binary: PathBuf::from("turnserver"),
        coturn_config: PathBuf::from("tucdesk-relay-coturn.conf"),
        coturn: CoturnOptions::default(),
    });
    match command {
        Command::CoturnConfig { out, coturn } => {
            let text = render(&coturn, &secret(&cli.relay)?)?;
            match out {
                Some(path) => {
                    write_config(&path, &text)?;
                    eprintln!(
                        "coturn configuration written to {} (mode 0600)",
                        path.display()
                    );
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        Command::Serve {
            coturn_launch,
            coturn_binary,
            coturn_config,
            coturn,
        } => {
            let _telemetry = tucdesk_svc::telemetry::init(&cli.telemetry)?;
            let shutdown = tokio_util::sync::CancellationToken::new();
            tokio::spawn(tucdesk_svc::shutdown::listen_for_signals(shutdown.clone()));
            let mut config = cli.relay.clone();
            if coturn_launch {
                write_config(&coturn_config, &render(&coturn, &secret(&config)?)?)?;
                if config.coturn_addr.is_none() {
                    let host = if coturn.listening_ip.is_unspecified() {
                        std::net::IpAddr::from([127, 0, 0, 1])
                    } else {
                        coturn.listening_ip
                    };
                    config.coturn_addr =
                        Some(std::net::SocketAddr::new(host, coturn.listening_port));
                }
                tokio::spawn(tucdesk_relay::coturn::supervise(
                    coturn_binary,
                    coturn_config,
                    shutdown.clone(),
                ));
            }
            let tls = match (&config.tls_cert, &config.tls_key) {
                (Some(cert), Some(key)) => Some(tucdesk_relay::http::tls_acceptor(cert, key)?),
                _ => None,
            };
            let listeners = bind(&config).await?;
            let relay = build(config.clone()).await?;
            let ops_listener = tucdesk_svc::http::bind(cli.ops.ops_addr).await?;
            let readiness = tucdesk_svc::http::Readiness::new().with_shutdown(shutdown.clone());
            let ops_router =
                tucdesk_svc::http::ops_router(relay.metrics().registry().clone(), readiness);
            tracing::info!(
                node = %config.node_id,
                ws = %config.ws_addr,
                stun = %config.stun_addr,
                tls = tls.is_some(),
                "tucdesk-relay serving"
            );
            let ops_server = tucdesk_svc::http::serve(ops_listener, ops_router, shutdown.clone());
            let (served, ops_served) =
                tokio::join!(serve(relay, listeners, tls, shutdown), ops_server);
            served?;
            ops_served?;
            Ok(())
        }
    }
}
