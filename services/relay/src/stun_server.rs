//! The STUN listener: a stateless UDP loop answering Binding requests, with a per-source rate
//! limit so the node cannot be used to flood a third party whose address was spoofed.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::service::Relay;
use tucdesk_stun as stun;

/// Sources tracked at most by the rate limiter; beyond, the least recently seen are forgotten.
const TRACKED_SOURCES: u64 = 100_000;
/// A source's budget is forgotten after this long without a datagram.
const SOURCE_IDLE: Duration = Duration::from_secs(30);

/// A source's remaining answers and when it was last refilled.
#[derive(Debug, Clone, Copy)]
struct Budget {
    tokens: f64,
    at: Instant,
}

/// Per-source answer budgets (IPv6 sources count per /64).
#[derive(Debug, Clone)]
pub struct SourceLimiter {
    budgets: moka::future::Cache<String, Budget>,
    per_second: f64,
}

impl SourceLimiter {
    pub fn new(per_second: u32) -> Self {
        Self {
            budgets: moka::future::Cache::builder()
                .max_capacity(TRACKED_SOURCES)
                .time_to_idle(SOURCE_IDLE)
                .build(),
            per_second: f64::from(per_second.max(1)),
        }
    }

    /// Whether `source` may get one more answer now.
    pub async fn allow(&self, source: IpAddr) -> bool {
        let per_second = self.per_second;
        let mut allowed = false;
        self.budgets
            .entry(tucdesk_svc::ratelimit::source_key(source))
            .and_compute_with(|entry| {
                let now = Instant::now();
                let mut budget = entry.map_or(
                    Budget {
                        tokens: per_second,
                        at: now,
                    },
                    |e| e.into_value(),
                );
                let refill = now.saturating_duration_since(budget.at).as_secs_f64() * per_second;
                budget.tokens = (budget.tokens + refill).min(per_second);
                budget.at = now;
                if budget.tokens >= 1.0 {
                    budget.tokens -= 1.0;
                    allowed = true;
                }
                std::future::ready(moka::ops::compute::Op::Put(budget))
            })
            .await;
        allowed
    }
}

/// Answers Binding requests on `socket` until `shutdown`.
pub async fn run(relay: Relay, socket: UdpSocket, shutdown: CancellationToken) {
    let limiter = SourceLimiter::new(relay.config().stun_per_source_per_sec);
    let mut buffer = vec![0u8; stun::MAX_REQUEST_LEN + 1];
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            received = socket.recv_from(&mut buffer) => received,
        };
        let (len, peer) = match received {
            Ok(received) => received,
            Err(err) => {
                // ICMP errors from earlier answers surface here on some systems; keep serving.
                tracing::debug!(error = %err, "STUN receive failed");
                continue;
            }
        };
        let outcome = answer(&relay, &limiter, &socket, &buffer[..len], peer).await;
        relay.metrics().stun.with_label_values(&[outcome]).inc();
    }
}

async fn answer(
    relay: &Relay,
    limiter: &SourceLimiter,
    socket: &UdpSocket,
    datagram: &[u8],
    peer: SocketAddr,
) -> &'static str {
    let request = match stun::parse_binding_request(datagram) {
        Ok(request) => request,
        Err(dropped) => return dropped.label(),
    };
    if !limiter.allow(peer.ip()).await {
        return "rate_limited";
    }
    let response = stun::binding_success(&request, peer);
    match socket.send_to(&response, peer).await {
        Ok(_) => "answered",
        Err(err) => {
            tracing::debug!(error = %err, "STUN send failed");
            let _ = relay;
            "send_failed"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_source_gets_its_rate_and_no_more() {
        let limiter = SourceLimiter::new(5);
        let a: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let b: IpAddr = "192.0.2.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let mut allowed = 0;
        for _ in 0..20 {
            if limiter.allow(a).await {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 5);
        assert!(limiter.allow(b).await, "another source has its own budget");
    }
}
