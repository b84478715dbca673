//! The node's heartbeat on the bus (`relay.heartbeat.<node_id>`): what rendezvous chooses
//! relays from. Published every interval, and once more right away when draining starts so
//! rendezvous stops choosing the node at once.

use std::sync::atomic::Ordering;
use std::time::Instant;

use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tucdesk_proto::v1::RelayHeartbeat;
use tucdesk_svc::bus::Headers;

use crate::service::{Relay, now_ms};

/// The subject a node publishes its heartbeat on.
pub fn subject(node_id: &str) -> String {
    format!("relay.heartbeat.{node_id}")
}

impl Relay {
    /// The public WebSocket base URL (clients append `/<session_id>`).
    pub fn ws_url(&self) -> String {
        self.config().ws_url.clone().unwrap_or_else(|| {
            let scheme = if self.config().tls_cert.is_some() {
                "wss"
            } else {
                "ws"
            };
            format!("{scheme}://{}/v1/pipe", self.config().ws_addr)
        })
    }

    /// The STUN URLs advertised.
    pub fn stun_urls(&self) -> Vec<String> {
        if self.config().stun_urls.is_empty() {
            vec![format!("stun:{}", self.config().stun_addr)]
        } else {
            self.config().stun_urls.clone()
        }
    }

    /// The node's state as a heartbeat, with byte rates over `elapsed_secs`.
    pub fn heartbeat(&self, bytes_in_per_sec: u64, bytes_out_per_sec: u64) -> RelayHeartbeat {
        let stats = self.stats();
        RelayHeartbeat {
            node_id: self.config().node_id.clone(),
            region: self.config().region.clone(),
            stun_urls: self.stun_urls(),
            turn_urls: self.config().turn_urls.clone(),
            ws_url: self.ws_url(),
            active_sessions: stats.active_sessions.load(Ordering::Relaxed),
            waiting_peers: stats.waiting.load(Ordering::Relaxed),
            capacity_sessions: self.config().max_sessions,
            bytes_in_per_sec,
            bytes_out_per_sec,
            coturn: Some(self.coturn_health()),
            draining: self.is_draining(),
            protocol_version: tucdesk_proto::PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            sent_at_ms: now_ms(),
            started_at_ms: self.inner.started_at_ms,
            heartbeat_interval_ms: u32::try_from(self.config().heartbeat_interval.as_millis())
                .unwrap_or(u32::MAX),
        }
    }

    async fn publish_heartbeat(&self, heartbeat: &RelayHeartbeat) {
        if let Err(err) = self
            .inner
            .bus
            .publish(
                &subject(&self.config().node_id),
                Headers::new(),
                heartbeat.encode_to_vec().into(),
            )
            .await
        {
            tracing::warn!(error = %err, "publishing the relay heartbeat failed");
        }
    }

    /// Publishes heartbeats until `shutdown`.
    pub async fn run_heartbeat(&self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config().heartbeat_interval);
        let (mut last_in, mut last_out) = (0u64, 0u64);
        let mut last_at = Instant::now();
        let mut announced_drain = false;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.inner.draining.cancelled(), if !announced_drain => {
                    announced_drain = true;
                }
                _ = tick.tick() => {}
            }
            let stats = self.stats();
            let (bytes_in, bytes_out) = (
                stats.bytes_in.load(Ordering::Relaxed),
                stats.bytes_out.load(Ordering::Relaxed),
            );
            let secs = last_at.elapsed().as_secs_f64().max(0.001);
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let rate = |now: u64, before: u64| (now.saturating_sub(before) as f64 / secs) as u64;
            let heartbeat = self.heartbeat(rate(bytes_in, last_in), rate(bytes_out, last_out));
            (last_in, last_out, last_at) = (bytes_in, bytes_out, Instant::now());
            self.metrics()
                .active_sessions
                .set(i64::from(heartbeat.active_sessions));
            self.publish_heartbeat(&heartbeat).await;
        }
    }
}
