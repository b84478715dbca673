//! Relay heartbeats on the bus, as a relay node publishes them (`relay.heartbeat.<node>`), so
//! rendezvous has a relay to choose before the relay service itself is running in a test.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tucdesk_proto::v1::{CoturnHealth, RelayHeartbeat};
use tucdesk_svc::bus::{Bus, Headers};

/// How often the heartbeat is published.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(200);

/// Publishes heartbeats for one relay node until dropped.
#[derive(Debug)]
pub struct RelayBeacon {
    pub node_id: String,
    stop: CancellationToken,
}

impl Drop for RelayBeacon {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The heartbeat a node `node_id` in `region` sends.
pub fn heartbeat(node_id: &str, region: &str) -> RelayHeartbeat {
    RelayHeartbeat {
        node_id: node_id.to_owned(),
        region: region.to_owned(),
        stun_urls: vec!["stun:127.0.0.1:3478".to_owned()],
        turn_urls: vec!["turn:127.0.0.1:3478?transport=udp".to_owned()],
        ws_url: format!("ws://127.0.0.1:7421/v1/pipe?node={node_id}"),
        active_sessions: 0,
        waiting_peers: 0,
        capacity_sessions: 1000,
        bytes_in_per_sec: 0,
        bytes_out_per_sec: 0,
        coturn: Some(CoturnHealth {
            healthy: true,
            last_check_ms: 0,
            allocations: 0,
            message: String::new(),
        }),
        draining: false,
        protocol_version: tucdesk_proto::PROTOCOL_VERSION,
        version: "test".to_owned(),
        sent_at_ms: 0,
        started_at_ms: 0,
        heartbeat_interval_ms: u32::try_from(HEARTBEAT_EVERY.as_millis()).unwrap_or(u32::MAX),
    }
}

impl RelayBeacon {
    pub fn start(bus: Arc<dyn Bus>, node_id: &str, region: &str) -> Self {
        let stop = CancellationToken::new();
        let beat = heartbeat(node_id, region);
        let subject = format!("relay.heartbeat.{node_id}");
        let token = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    _ = tick.tick() => {
                        let _ = bus.publish(&subject, Headers::new(), beat.encode_to_vec().into()).await;
                    }
                }
            }
        });
        Self {
            node_id: node_id.to_owned(),
            stop,
        }
    }
}
