//! coturn as the node's TURN engine: the configuration it runs with (`tucdesk-relay
//! coturn-config`), an optional launcher that runs and restarts it beside the relay, and the
//! periodic health check (a real allocation with freshly minted REST credentials).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tucdesk_proto::v1::CoturnHealth;

use crate::service::{Relay, now_ms};
use crate::turn_client;

/// How long a health check's credential lives (it is used at once).
const CHECK_CREDENTIAL_TTL: Duration = Duration::from_secs(60);
/// Pause before restarting a coturn that exited, growing up to [`MAX_RESTART_BACKOFF`].
const FIRST_RESTART_BACKOFF: Duration = Duration::from_secs(1);
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(60);
/// Longest health message kept (the heartbeat's bound).
const MAX_HEALTH_MESSAGE: usize = 256;

/// Address ranges coturn must never relay to unless explicitly allowed: a TURN relay that
/// reaches loopback, link-local or private networks is a door into the node's own network.
pub const DENIED_PEER_RANGES: &[&str] = &[
    "0.0.0.0-0.255.255.255",
    "10.0.0.0-10.255.255.255",
    "100.64.0.0-100.127.255.255",
    "127.0.0.0-127.255.255.255",
    "169.254.0.0-169.254.255.255",
    "172.16.0.0-172.31.255.255",
    "192.0.0.0-192.0.0.255",
    "192.168.0.0-192.168.255.255",
    "198.18.0.0-198.19.255.255",
    "224.0.0.0-255.255.255.255",
    "::1",
    "::ffff:0.0.0.0-::ffff:255.255.255.255",
    "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
];

/// What the generated coturn configuration says.
#[derive(Debug, Clone, clap::Args)]
pub struct CoturnOptions {
    /// UDP/TCP port coturn listens on.
    #[arg(long, default_value_t = 3478)]
    pub listening_port: u16,
    /// Address coturn listens on (and relays from, unless --relay-ip is given).
    #[arg(long, default_value = "0.0.0.0")]
    pub listening_ip: IpAddr,
    /// Address relayed traffic leaves from.
    #[arg(long)]
    pub relay_ip: Option<IpAddr>,
    /// Public address to advertise when coturn sits behind NAT (`public` or `public/private`).
    #[arg(long)]
    pub external_ip: Option<String>,
    /// Relay port range.
    #[arg(long, default_value_t = 49152)]
    pub min_port: u16,
    #[arg(long, default_value_t = 65535)]
    pub max_port: u16,
    /// Realm (must match the relay's --coturn-realm).
    #[arg(long, default_value = "tucdesk")]
    pub realm: String,
    /// Allocations per username at most (one session's credentials).
    #[arg(long, default_value_t = 12)]
    pub user_quota: u32,
    /// Allocations in total at most.
    #[arg(long, default_value_t = 12_000)]
    pub total_quota: u32,
    /// Bytes per second per allocation at most (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    pub max_bps: u64,
    /// Peer ranges to allow despite the private/loopback deny list (e.g. for tests on
    /// loopback), `from-to` or a single address; repeatable.
    #[arg(long = "allow-peer")]
    pub allowed_peers: Vec<String>,
    /// Certificate and key (PEM) for TURN over TLS/DTLS (`turns:`); without them coturn
    /// listens on plain UDP/TCP only.
    #[arg(long = "coturn-tls-cert", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long = "coturn-tls-key", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// coturn's pid file and user database (defaults: coturn's own).
    #[arg(long = "coturn-pidfile")]
    pub pidfile: Option<PathBuf>,
    #[arg(long = "coturn-userdb")]
    pub userdb: Option<PathBuf>,
}

impl Default for CoturnOptions {
    fn default() -> Self {
        Self {
            listening_port: 3478,
            listening_ip: IpAddr::from([0, 0, 0, 0]),
            relay_ip: None,
            external_ip: None,
            min_port: 49152,
            max_port: 65535,
            realm: "tucdesk".to_owned(),
            user_quota: 12,
            total_quota: 12_000,
            max_bps: 0,
            allowed_peers: Vec::new(),
            tls_cert: None,
            tls_key: None,
            pidfile: None,
            userdb: None,
        }
    }
}

/// Errors of the coturn helpers.
#[derive(Debug, thiserror::Error)]
pub enum CoturnError {
    #[error("the TURN secret is empty; set TUCDESK_TURN_SECRET")]
    NoSecret,
    #[error("the coturn option {0} contains a line break")]
    LineBreak(&'static str),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn single_line(name: &'static str, value: &str) -> Result<(), CoturnError> {
    if value.contains(['\n', '\r']) {
        Err(CoturnError::LineBreak(name))
    } else {
        Ok(())
    }
}

/// The turnserver.conf text. Contains the secret: write it with mode 0600.
pub fn render(options: &CoturnOptions, secret: &str) -> Result<String, CoturnError> {
    if secret.is_empty() {
        return Err(CoturnError::NoSecret);
    }
    single_line("secret", secret)?;
    single_line("realm", &options.realm)?;
    let mut conf = String::new();
    let mut line = |text: String| {
        conf.push_str(&text);
        conf.push('\n');
    };
    line(
        "# Generated by `tucdesk-relay coturn-config`. Contains the TURN secret: keep it 0600."
            .into(),
    );
    line(format!("listening-port={}", options.listening_port));
    line(format!("listening-ip={}", options.listening_ip));
    if let Some(relay_ip) = options.relay_ip {
        line(format!("relay-ip={relay_ip}"));
    }
    if let Some(external) = &options.external_ip {
        single_line("external-ip", external)?;
        line(format!("external-ip={external}"));
    }
    line(format!("min-port={}", options.min_port));
    line(format!("max-port={}", options.max_port));
    line(format!("realm={}", options.realm));
    // TURN REST credentials: rendezvous mints `expiry:session` / HMAC-SHA1 with this secret.
    line("use-auth-secret".into());
    line(format!("static-auth-secret={secret}"));
    line("fingerprint".into());
    // No telnet CLI, no multicast, no TLS 1.0/1.1, no STUN-only abuse of relays.
    line("no-cli".into());
    line("no-multicast-peers".into());
    line("no-tlsv1".into());
    line("no-tlsv1_1".into());
    line("no-rfc5780".into());
    line("no-stun-backward-compatibility".into());
    line("stale-nonce=600".into());
    line(format!("user-quota={}", options.user_quota));
    line(format!("total-quota={}", options.total_quota));
    if options.max_bps > 0 {
        line(format!("max-bps={}", options.max_bps));
    }
    for allowed in &options.allowed_peers {
        single_line("allow-peer", allowed)?;
        line(format!("allowed-peer-ip={allowed}"));
    }
    for denied in DENIED_PEER_RANGES {
        line(format!("denied-peer-ip={denied}"));
    }
    match (&options.tls_cert, &options.tls_key) {
        (Some(cert), Some(key)) => {
            let (cert, key) = (cert.display().to_string(), key.display().to_string());
            single_line("tls cert", &cert)?;
            single_line("tls key", &key)?;
            line(format!("cert={cert}"));
            line(format!("pkey={key}"));
        }
        _ => {
            line("no-tls".into());
            line("no-dtls".into());
        }
    }
    for (name, path) in [("pidfile", &options.pidfile), ("userdb", &options.userdb)] {
        if let Some(path) = path {
            let path = path.display().to_string();
            single_line(name, &path)?;
            line(format!("{name}={path}"));
        }
    }
    line("log-file=stdout".into());
    line("simple-log".into());
    Ok(conf)
}

/// Writes the configuration to `path` with mode 0600.
pub fn write_config(path: &Path, text: &str) -> Result<(), CoturnError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let write = |source| CoturnError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(write)?;
    file.write_all(text.as_bytes()).map_err(write)?;
    file.sync_all().map_err(write)
}

/// Runs `turnserver -c <config>` until `shutdown`, restarting it (with backoff) if it exits.
pub async fn supervise(binary: PathBuf, config: PathBuf, shutdown: CancellationToken) {
    let mut backoff = FIRST_RESTART_BACKOFF;
    loop {
        let child = tokio::process::Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null())
            .spawn();
        match child {
            Ok(mut child) => {
                tracing::info!(pid = child.id(), "coturn started");
                tokio::select! {
                    () = shutdown.cancelled() => {
                        let _ = child.kill().await;
                        return;
                    }
                    status = child.wait() => {
                        tracing::warn!(?status, "coturn exited; restarting");
                    }
                }
            }
            Err(err) => {
                tracing::error!(error = %err, binary = %binary.display(), "cannot start coturn")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_RESTART_BACKOFF);
    }
}

/// One health check: a real allocation on `server` with credentials minted from `secret`.
pub async fn check(server: SocketAddr, secret: &str, node_id: &str) -> CoturnHealth {
    let expires = now_ms() / 1000 + CHECK_CREDENTIAL_TTL.as_secs();
    let label = format!("health-{node_id}");
    let result = match tucdesk_crypto::turn::turn_credential(secret.as_bytes(), &label, expires) {
        Ok(credential) => turn_client::allocate(server, &credential.username, &credential.password)
            .await
            .map_err(|err| err.to_string()),
        Err(err) => Err(err.to_string()),
    };
    let mut health = CoturnHealth {
        healthy: result.is_ok(),
        last_check_ms: now_ms(),
        allocations: 0,
        message: match result {
            Ok(_) => String::new(),
            Err(message) => message,
        },
    };
    health.message.truncate(MAX_HEALTH_MESSAGE);
    health
}

impl Relay {
    /// Health-checks the node's coturn every interval until `shutdown` (no-op without a
    /// configured coturn address and secret; the heartbeat then reports it unhealthy).
    pub async fn run_coturn_checks(&self, shutdown: CancellationToken) {
        let (Some(server), Some(secret)) =
            (self.config().coturn_addr, self.config().turn_secret.clone())
        else {
            self.set_coturn(CoturnHealth {
                healthy: false,
                last_check_ms: now_ms(),
                allocations: 0,
                message: "no coturn configured on this node".into(),
            });
            return;
        };
        let mut tick = tokio::time::interval(self.config().coturn_check_interval);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let health = check(server, &secret, &self.config().node_id).await;
            if !health.healthy {
                tracing::warn!(message = %health.message, "coturn health check failed");
            }
            self.set_coturn(health);
        }
    }

    fn set_coturn(&self, health: CoturnHealth) {
        self.metrics().coturn_healthy.set(i64::from(health.healthy));
        *self
            .inner
            .coturn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = health;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_config_uses_the_rest_secret_and_denies_private_peers() {
        let conf = render(&CoturnOptions::default(), "s3cret").unwrap();
        assert!(conf.contains("\nuse-auth-secret\n"));
        assert!(conf.contains("\nstatic-auth-secret=s3cret\n"));
        assert!(conf.contains("\nno-cli\n"));
        assert!(conf.contains("denied-peer-ip=127.0.0.0-127.255.255.255"));
        assert!(conf.contains("denied-peer-ip=10.0.0.0-10.255.255.255"));
        assert!(!conf.contains("allowed-peer-ip"));
    }

    #[test]
    fn injection_through_options_is_refused() {
        let options = CoturnOptions {
            realm: "tucdesk\ncli-password=x".into(),
            ..CoturnOptions::default()
        };
        assert!(render(&options, "s").is_err());
        assert!(render(&CoturnOptions::default(), "a\nno-auth").is_err());
        assert!(matches!(
            render(&CoturnOptions::default(), ""),
            Err(CoturnError::NoSecret)
        ));
    }
}
