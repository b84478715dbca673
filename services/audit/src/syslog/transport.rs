//! Connections to the collector: plain TCP, or TLS with the client settings every TucDesk
//! client uses (`tucdesk-tls`: ring, the platform roots plus an optional CA file). Also the
//! reconnect backoff.

use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::SyslogUrl;

/// Longest wait for a TCP connection plus the TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one batch to be written and flushed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// First reconnect delay; doubles per failure up to [`MAX_BACKOFF`], each draw jittered.
pub const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest reconnect delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Bytes a collector may send us per health probe before the rest waits for the next (a
/// syslog receiver sends nothing; this only bounds a misbehaving one).
const MAX_PROBE_READ: usize = 16 * 1024;

/// Why a connection could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("connecting to the syslog collector: {0}")]
    Connect(#[source] std::io::Error),
    #[error("TLS handshake with the syslog collector: {0}")]
    Handshake(#[source] std::io::Error),
    #[error("the syslog collector's host is not a valid TLS server name")]
    ServerName,
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("writing to the syslog collector: {0}")]
    Write(#[source] std::io::Error),
    #[error("the syslog collector closed the connection")]
    Closed,
}

impl TransportError {
    /// The metric label (`tucdesk_audit_syslog_errors_total{stage}`).
    pub fn stage(&self) -> &'static str {
        match self {
            Self::Connect(_) | Self::Timeout("connecting") => "connect",
            Self::Handshake(_) | Self::ServerName | Self::Timeout("the TLS handshake") => "tls",
            Self::Timeout(_) | Self::Write(_) => "write",
            Self::Closed => "closed",
        }
    }
}

pub use tucdesk_tls::{TlsSetupError, client_config};

/// A byte stream to the collector, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open connection to the collector.
pub struct Connection {
    io: Box<dyn Io>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `url` (with the handshake when `tls` is given), within [`CONNECT_TIMEOUT`].
    pub async fn open(url: &SyslogUrl, tls: Option<&TlsConnector>) -> Result<Self, TransportError> {
        let connect = TcpStream::connect((url.host.as_str(), url.port));
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        let tcp = tokio::time::timeout_at(deadline, connect)
            .await
            .map_err(|_| TransportError::Timeout("connecting"))?
            .map_err(TransportError::Connect)?;
        let Some(tls) = tls else {
            return Ok(Self { io: Box::new(tcp) });
        };
        let name =
            ServerName::try_from(url.host.clone()).map_err(|_| TransportError::ServerName)?;
        let stream = tokio::time::timeout_at(deadline, tls.connect(name, tcp))
            .await
            .map_err(|_| TransportError::Timeout("the TLS handshake"))?
            .map_err(TransportError::Handshake)?;
        Ok(Self {
            io: Box::new(stream),
        })
    }

    /// Writes `frames` and flushes them, within [`WRITE_TIMEOUT`].
    pub async fn send(&mut self, frames: &[Vec<u8>]) -> Result<(), TransportError> {
        let write = async {
            for frame in frames {
                self.io.write_all(frame).await?;
            }
            self.io.flush().await
        };
        tokio::time::timeout(WRITE_TIMEOUT, write)
            .await
            .map_err(|_| TransportError::Timeout("writing"))?
            .map_err(TransportError::Write)
    }

    /// Whether the connection is still open, without waiting: a syslog collector never sends
    /// anything, so end of stream or an error (a reset) on the read side means it is gone.
    /// Anything it does send is read and ignored.
    pub async fn probe(&mut self) -> Result<(), TransportError> {
        let mut buf = [0u8; 1024];
        let mut read = 0usize;
        while read < MAX_PROBE_READ {
            let polled = tokio::select! {
                biased;
                result = self.io.read(&mut buf) => Some(result),
                () = std::future::ready(()) => None,
            };
            match polled {
                None => return Ok(()),
                Some(Ok(0) | Err(_)) => return Err(TransportError::Closed),
                Some(Ok(n)) => read += n,
            }
        }
        Ok(())
    }

    /// Closes the connection politely (TLS close_notify), without waiting long.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.io.shutdown()).await;
    }
}

/// Jittered exponential backoff between reconnects: the n-th delay is drawn uniformly from
/// the upper half of `min(MIN_BACKOFF × 2^n, MAX_BACKOFF)`.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The delay before the next attempt (and one more failure counted).
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = MIN_BACKOFF
            .saturating_mul(1u32 << self.failures.min(16))
            .min(MAX_BACKOFF);
        self.failures = self.failures.saturating_add(1);
        let half = ceiling / 2;
        let jitter = tucdesk_crypto::rng::random_array::<4>()
            .map(|bytes| f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX))
            .unwrap_or(0.5);
        half + half.mul_f64(jitter)
    }

    /// A connection worked: the next failure starts from [`MIN_BACKOFF`] again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::default();
        let first = backoff.next_delay();
        assert!(
            first >= MIN_BACKOFF / 2 && first <= MIN_BACKOFF,
            "{first:?}"
        );
        let second = backoff.next_delay();
        assert!(
            second >= MIN_BACKOFF && second <= MIN_BACKOFF * 2,
            "{second:?}"
        );
        for _ in 0..40 {
            let delay = backoff.next_delay();
            assert!(delay <= MAX_BACKOFF, "{delay:?}");
        }
        assert!(backoff.next_delay() >= MAX_BACKOFF / 2);
        backoff.reset();
        assert!(backoff.next_delay() <= MIN_BACKOFF);
    }
}
