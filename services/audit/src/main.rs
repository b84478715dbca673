//! `tucdesk-audit`: the signed audit log. `serve` runs the service; `public-key` prints the
//! key verifiers need; `migrate` applies the schema (as the database owner role).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tucdesk_audit::{AuditConfig, AuditKey, MIGRATIONS, build, serve};
use tucdesk_svc::config::{OpsArgs, TelemetryArgs};
use tucdesk_svc::sql::{Database, PoolSettings};

/// TucDesk audit service: consumes every service's audit events from the AUDIT stream and
/// appends them to per-team, hash-chained, Ed25519-signed logs with signed RFC 6962
/// checkpoints; owners, admins and auditors query and export them (gRPC, and NDJSON or OCSF
/// over HTTP for SIEMs).
///
/// Every flag can also be set through the environment variable shown in its help. Run one or
/// more replicas against the same database, NATS and key file.
#[derive(Debug, Parser)]
#[command(name = "tucdesk-audit", version, about, long_about = None)]
#[command(mut_arg("service_name", |arg| arg.default_value("audit")))]
struct Cli {
    #[command(flatten)]
    audit: AuditConfig,
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
    /// Print the audit public key (unpadded base64url, like an agent id) for verifiers
    /// (`tucdesk audit verify --key …`); its key id goes to stderr. Creates the key file when
    /// it is missing, unless --require-key-file is set.
    PublicKey,
    /// Apply the database migrations and exit (run as the role that owns the schema; serve
    /// with a role that may only SELECT and INSERT, and TUCDESK_AUDIT_MIGRATE=false).
    Migrate,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tucdesk-audit: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::PublicKey) => {
            let existed = cli.audit.key_file.exists();
            let key = AuditKey::load_or_create(&cli.audit.key_file, cli.audit.require_key_file)?;
            if !existed {
                eprintln!(
                    "created a new audit signing key in {} (mode 0600)",
                    cli.audit.key_file.display()
                );
            }
            println!("{}", key.public_key_base64url());
            eprintln!("key id: {}", key.key_id());
            return Ok(());
        }
        Some(Command::Migrate) => {
            let _telemetry = tucdesk_svc::telemetry::init(&cli.telemetry)?;
            let db = Database::connect(&cli.audit.database_url, &PoolSettings::default()).await?;
            db.migrate(MIGRATIONS).await?;
            db.close().await;
            println!("audit schema is up to date");
            return Ok(());
        }
        Some(Command::Serve) | None => {}
    }
    let _telemetry = tucdesk_svc::telemetry::init(&cli.telemetry)?;
    let config = cli.audit.clone();
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(tucdesk_svc::shutdown::listen_for_signals(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("binding gRPC on {}", config.grpc_addr))?;
    let http_listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding the HTTP export on {}", config.http_addr))?;
    let (audit, access) = build(config.clone()).await?;
    let ops_listener = tucdesk_svc::http::bind(cli.ops.ops_addr).await?;
    let readiness = tucdesk_svc::http::Readiness::new().with_shutdown(shutdown.clone());
    {
        let audit = audit.clone();
        readiness.add_fn("backends", move || {
            let audit = audit.clone();
            async move { audit.check_backends().await }
        });
    }
    let ops_router = tucdesk_svc::http::ops_router(audit.metrics().registry().clone(), readiness);
    tracing::info!(
        grpc = %config.grpc_addr,
        http = %config.http_addr,
        key_id = audit.key().key_id(),
        "tucdesk-audit serving"
    );
    let ops_server = tucdesk_svc::http::serve(ops_listener, ops_router, shutdown.clone());
    let (served, ops_served) = tokio::join!(
        serve(audit, access, listener, http_listener, shutdown),
        ops_server
    );
    served?;
    ops_served?;
    Ok(())
}
