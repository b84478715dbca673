//! `tucdesk-standalone`: every TucDesk service in one process on the embedded defaults.
//! Parses flags, starts the stack, prints its URLs (and on first start how to log in), and
//! shuts down gracefully on Ctrl-C or SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use tucdesk_standalone::{Standalone, StandaloneConfig};
use tucdesk_svc::config::TelemetryArgs;

/// TucDesk in one process: auth, rendezvous and a relay node on SQLite files, an in-process
/// bus and cache, and development keys in the data directory. For evaluation, demos and
/// tests; not for production (see docs/standalone.md).
///
/// Every flag can also be set through the environment variable shown in its help.
#[derive(Debug, Parser)]
#[command(name = "tucdesk-standalone", version, about, long_about = None)]
#[command(mut_arg("service_name", |arg| arg.default_value("standalone")))]
struct Cli {
    #[command(flatten)]
    standalone: StandaloneConfig,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tucdesk-standalone: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let _telemetry = tucdesk_svc::telemetry::init(&cli.telemetry)?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(tucdesk_svc::shutdown::listen_for_signals(shutdown.clone()));
    let stack = Standalone::start_with_shutdown(cli.standalone, shutdown).await?;
    println!("{}", stack.summary());
    tracing::info!("tucdesk-standalone serving; Ctrl-C to stop");
    stack.wait().await?;
    tracing::info!("tucdesk-standalone stopped");
    Ok(())
}
