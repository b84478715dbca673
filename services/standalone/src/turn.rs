//! Optional coturn beside the in-process relay (`--turn`): a random TURN REST secret made at
//! start, the configuration `tucdesk-relay coturn-config` would write (plus UDP only and the
//! peer ranges the operator allowed), and `turnserver` as a supervised child process that
//! stops with the stack.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tucdesk_relay::coturn::{self, CoturnOptions};
use zeroize::Zeroizing;

use crate::config::StandaloneConfig;

/// coturn's realm (the relay's health check uses the same).
pub const TURN_REALM: &str = "tucdesk";
/// Directory (inside the data directory, 0700) with coturn's configuration, log and files.
pub const TURN_DIR: &str = "turn";
/// How long coturn may take to answer a first allocation before the start fails.
pub const TURN_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between readiness checks while coturn starts.
const READY_POLL: Duration = Duration::from_millis(200);
/// Pause before restarting a coturn that exited, doubling up to [`MAX_RESTART_BACKOFF`].
const FIRST_RESTART_BACKOFF: Duration = Duration::from_secs(1);
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(30);
/// Random bytes in the TURN secret (hex encoded in coturn's configuration).
const SECRET_BYTES: usize = 32;

/// A peer address range coturn may relay to despite its deny list (`--turn-allow-peer`):
/// a CIDR (`10.0.0.0/8`, `fd00::/8`) or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerRange {
    first: IpAddr,
    last: IpAddr,
}

impl PeerRange {
    /// coturn's spelling: `first-last`, or one address.
    pub fn coturn(&self) -> String {
        if self.first == self.last {
            self.first.to_string()
        } else {
            format!("{}-{}", self.first, self.last)
        }
    }

    /// Whether the range reaches loopback (coturn then also needs `allow-loopback-peers`).
    pub fn has_loopback(&self) -> bool {
        match (self.first, self.last) {
            (IpAddr::V4(first), IpAddr::V4(last)) => {
                first.octets()[0] <= 127 && last.octets()[0] >= 127
            }
            (IpAddr::V6(first), IpAddr::V6(last)) => {
                let one = std::net::Ipv6Addr::LOCALHOST;
                first <= one && one <= last
            }
            _ => false,
        }
    }
}

impl FromStr for PeerRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?}: expected an address or a CIDR such as 10.0.0.0/8");
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u32 = match prefix {
            Some(prefix) => prefix.trim().parse().map_err(|_| bad())?,
            None => bits,
        };
        if prefix > bits {
            return Err(bad());
        }
        Ok(match addr {
            IpAddr::V4(addr) => {
                let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
                let first = u32::from(addr) & mask;
                Self {
                    first: IpAddr::V4(first.into()),
                    last: IpAddr::V4((first | !mask).into()),
                }
            }
            IpAddr::V6(addr) => {
                let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                let first = u128::from(addr) & mask;
                Self {
                    first: IpAddr::V6(first.into()),
                    last: IpAddr::V6((first | !mask).into()),
                }
            }
        })
    }
}

/// The TURN REST secret shared by rendezvous, the relay's health check and coturn. Made at
/// every start; never logged.
#[derive(Clone)]
pub struct TurnSecret(Zeroizing<String>);

impl std::fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TurnSecret(<redacted>)")
    }
}

impl TurnSecret {
    /// A fresh random secret.
    pub fn generate() -> anyhow::Result<Self> {
        let bytes = tucdesk_crypto::rng::random_secret::<SECRET_BYTES>()?;
        Ok(Self(Zeroizing::new(hex::encode(bytes.as_slice()))))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Where coturn listens and what it is told.
#[derive(Debug, Clone)]
pub struct TurnSettings {
    /// The address coturn listens on (UDP).
    pub listen: SocketAddr,
    /// The `turn:` URL the relay node advertises.
    pub url: String,
    pub secret: TurnSecret,
    pub binary: PathBuf,
    pub dir: PathBuf,
    pub allowed_peers: Vec<PeerRange>,
}

impl TurnSettings {
    /// The settings of `config`'s coturn on `port` (resolved: never 0), a fresh secret.
    pub fn new(config: &StandaloneConfig, port: u16) -> anyhow::Result<Self> {
        Ok(Self {
            listen: SocketAddr::new(config.host, port),
            url: format!("turn:{}:{port}?transport=udp", config.url_host()),
            secret: TurnSecret::generate()?,
            binary: config.turnserver.clone(),
            dir: config.data_path(TURN_DIR),
            allowed_peers: config.turn_allow_peer.clone(),
        })
    }

    /// Where this process reaches coturn (loopback for a wildcard listener).
    pub fn dial_addr(&self) -> SocketAddr {
        crate::config::dial_addr(self.listen)
    }

    pub fn config_file(&self) -> PathBuf {
        self.dir.join("turnserver.conf")
    }

    /// coturn's output (appended to, across restarts).
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("turnserver.log")
    }

    /// The turnserver.conf text (contains the secret).
    fn render(&self) -> anyhow::Result<String> {
        let ip = self.listen.ip();
        let options = CoturnOptions {
            listening_port: self.listen.port(),
            listening_ip: ip,
            relay_ip: (!ip.is_unspecified()).then_some(ip),
            realm: TURN_REALM.to_owned(),
            allowed_peers: self.allowed_peers.iter().map(PeerRange::coturn).collect(),
            pidfile: Some(self.dir.join("turnserver.pid")),
            userdb: Some(self.dir.join("turndb")),
            ..CoturnOptions::default()
        };
        let mut text = coturn::render(&options, self.secret.expose())?;
        // webrtc-rs allocates over UDP only; no TCP listener to clash with other ports.
        text.push_str("no-tcp\n");
        if self.allowed_peers.iter().any(PeerRange::has_loopback) {
            text.push_str("allow-loopback-peers\n");
        }
        Ok(text)
    }
}

/// A free UDP port on `ip` (for `--turn-port 0`: coturn cannot report the one it picked).
pub fn free_udp_port(ip: IpAddr) -> anyhow::Result<u16> {
    let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))
        .with_context(|| format!("finding a free UDP port on {ip} for coturn"))?;
    Ok(socket.local_addr()?.port())
}

fn command(settings: &TurnSettings) -> anyhow::Result<tokio::process::Command> {
    let log_path = settings.log_file();
    // Private: coturn logs TURN usernames, which name sessions.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut command = tokio::process::Command::new(&settings.binary);
    command
        .arg("-c")
        .arg(settings.config_file())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    Ok(command)
}

/// Writes coturn's configuration, starts it and waits (at most [`TURN_STARTUP_TIMEOUT`])
/// until it grants an allocation with the secret. Returns the running child.
pub async fn start(settings: &TurnSettings) -> anyhow::Result<tokio::process::Child> {
    coturn::write_config(&settings.config_file(), &settings.render()?)?;
    let mut child = command(settings)?.spawn().with_context(|| {
        format!(
            "starting coturn ({}); install it (apt-get install coturn) or pass --turnserver",
            settings.binary.display()
        )
    })?;
    let ready = async {
        loop {
            let health =
                coturn::check(settings.dial_addr(), settings.secret.expose(), "standalone").await;
            if health.healthy {
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                anyhow::bail!(
                    "coturn exited at start ({status}); see {}",
                    settings.log_file().display()
                );
            }
            tokio::time::sleep(READY_POLL).await;
        }
    };
    match tokio::time::timeout(TURN_STARTUP_TIMEOUT, ready).await {
        Ok(Ok(())) => Ok(child),
        Ok(Err(err)) => Err(err),
        Err(_) => {
            let _ = child.kill().await;
            anyhow::bail!(
                "coturn did not grant an allocation on {} within {TURN_STARTUP_TIMEOUT:?}; see {}",
                settings.dial_addr(),
                settings.log_file().display()
            )
        }
    }
}

/// Runs until `shutdown`, restarting coturn (with backoff) when it exits; kills it on
/// shutdown.
pub async fn supervise(
    settings: TurnSettings,
    mut child: tokio::process::Child,
    shutdown: CancellationToken,
) {
    let mut backoff = FIRST_RESTART_BACKOFF;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                let _ = child.kill().await;
                return;
            }
            status = child.wait() => {
                tracing::warn!(?status, log = %settings.log_file().display(), "coturn exited; restarting");
            }
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_RESTART_BACKOFF);
            match command(&settings).and_then(|mut c| Ok(c.spawn()?)) {
                Ok(restarted) => {
                    child = restarted;
                    break;
                }
                Err(err) => tracing::error!(error = format!("{err:#}"), "cannot restart coturn"),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn peer_ranges_parse_cidrs_into_coturn_ranges() {
        let range: PeerRange = "10.0.1.7/24".parse().unwrap();
        assert_eq!(range.coturn(), "10.0.1.0-10.0.1.255");
        assert!(!range.has_loopback());
        assert_eq!(
            "0.0.0.0/0".parse::<PeerRange>().unwrap().coturn(),
            "0.0.0.0-255.255.255.255"
        );
        assert_eq!(
            "203.0.113.9".parse::<PeerRange>().unwrap().coturn(),
            "203.0.113.9"
        );
        let loopback: PeerRange = "127.0.0.1/32".parse().unwrap();
        assert!(loopback.has_loopback());
        assert_eq!(
            "fd00::/8".parse::<PeerRange>().unwrap().coturn(),
            "fd00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        assert!("::1".parse::<PeerRange>().unwrap().has_loopback());
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129", ""] {
            assert!(bad.parse::<PeerRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_config_keeps_the_deny_list_and_adds_only_the_allowed_ranges() {
        let mut config = StandaloneConfig::new("d");
        config.turn_allow_peer = vec!["10.0.0.0/16".parse().unwrap()];
        let settings = TurnSettings::new(&config, 7478).unwrap();
        assert_eq!(settings.url, "turn:127.0.0.1:7478?transport=udp");
        let text = settings.render().unwrap();
        assert!(text.contains("\nlistening-port=7478\n"));
        assert!(text.contains("\nrealm=tucdesk\n"));
        assert!(text.contains(&format!(
            "\nstatic-auth-secret={}\n",
            settings.secret.expose()
        )));
        assert!(text.contains("\nallowed-peer-ip=10.0.0.0-10.0.255.255\n"));
        assert!(text.contains("\ndenied-peer-ip=10.0.0.0-10.255.255.255\n"));
        assert!(!text.contains("allow-loopback-peers"));
        assert_eq!(settings.secret.expose().len(), 2 * SECRET_BYTES);
        assert!(!format!("{settings:?}").contains(settings.secret.expose()));
    }
}
