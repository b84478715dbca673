//! Relay nodes as their heartbeats describe them (`relay.heartbeat.<node_id>` on the bus), and
//! the choice of a relay for a new session: healthy (heard from recently, not draining, not
//! full), preferring this replica's region, then the least loaded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tucdesk_proto::v1::RelayHeartbeat;
use tucdesk_svc::bus::Bus;

/// Subject pattern relay heartbeats are published on.
pub const HEARTBEAT_SUBJECTS: &str = "relay.heartbeat.*";
/// Most relay nodes remembered; heartbeats of further nodes are ignored (a flood of forged
/// node ids on the bus must not grow memory).
pub const MAX_RELAY_NODES: usize = 1024;
/// A node is healthy while its last heartbeat is younger than this many of its intervals.
pub const MISSED_HEARTBEATS: u32 = 3;
/// Interval assumed when a heartbeat does not state one, and the bounds applied to stated
/// ones (a node cannot claim to stay healthy for an hour on one heartbeat).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
const MAX_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
/// Longest node id, region and URL accepted from a heartbeat.
const MAX_NODE_ID_LEN: usize = 128;
const MAX_REGION_LEN: usize = 64;
/// Largest heartbeat accepted.
const MAX_HEARTBEAT_LEN: usize = 16 * 1024;

#[derive(Debug, Clone)]
struct Seen {
    heartbeat: RelayHeartbeat,
    at: Instant,
}

impl Seen {
    fn interval(&self) -> Duration {
        match self.heartbeat.heartbeat_interval_ms {
            0 => DEFAULT_HEARTBEAT_INTERVAL,
            ms => Duration::from_millis(u64::from(ms))
                .clamp(MIN_HEARTBEAT_INTERVAL, MAX_HEARTBEAT_INTERVAL),
        }
    }

    fn healthy(&self, now: Instant) -> bool {
        let fresh = now.saturating_duration_since(self.at) < self.interval() * MISSED_HEARTBEATS;
        let hb = &self.heartbeat;
        let room = hb.capacity_sessions == 0 || hb.active_sessions < hb.capacity_sessions;
        fresh && !hb.draining && room && !hb.ws_url.is_empty()
    }

    /// Load as a fraction of capacity (or the raw session count without a capacity), scaled
    /// to an integer for a total order.
    fn load(&self) -> u64 {
        let hb = &self.heartbeat;
        match hb.capacity_sessions {
            0 => u64::from(hb.active_sessions) * 1_000_000,
            cap => u64::from(hb.active_sessions) * 1_000_000 / u64::from(cap),
        }
    }
}

/// The relays this replica has heard from.
#[derive(Debug, Clone)]
pub struct RelayDirectory {
    nodes: Arc<Mutex<HashMap<String, Seen>>>,
    region: Option<String>,
    gauge: prometheus::IntGauge,
}

impl RelayDirectory {
    pub fn new(region: Option<String>, gauge: prometheus::IntGauge) -> Self {
        Self {
            nodes: Arc::new(Mutex::new(HashMap::new())),
            region,
            gauge,
        }
    }

    /// Records a heartbeat (bounded and checked; junk is dropped).
    pub fn observe(&self, heartbeat: RelayHeartbeat) {
        let valid = !heartbeat.node_id.is_empty()
            && heartbeat.node_id.len() <= MAX_NODE_ID_LEN
            && heartbeat.region.len() <= MAX_REGION_LEN
            && heartbeat.ws_url.len() <= tucdesk_proto::limits::MAX_URL_LEN
            && heartbeat.stun_urls.len() <= tucdesk_proto::limits::MAX_ICE_URLS
            && heartbeat.turn_urls.len() <= tucdesk_proto::limits::MAX_ICE_URLS
            && heartbeat
                .stun_urls
                .iter()
                .chain(&heartbeat.turn_urls)
                .all(|u| u.len() <= 256);
        if !valid {
            tracing::warn!("ignoring a malformed relay heartbeat");
            return;
        }
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if !nodes.contains_key(&heartbeat.node_id) && nodes.len() >= MAX_RELAY_NODES {
            // Make room only by forgetting nodes that went silent.
            nodes.retain(|_, seen| seen.healthy(now));
            if nodes.len() >= MAX_RELAY_NODES {
                tracing::warn!("too many relay nodes; ignoring a heartbeat from a new one");
                return;
            }
        }
        nodes.insert(heartbeat.node_id.clone(), Seen { heartbeat, at: now });
        let healthy = nodes.values().filter(|seen| seen.healthy(now)).count();
        self.gauge.set(i64::try_from(healthy).unwrap_or(i64::MAX));
    }

    /// The relay for a new session: healthy, in our region if one is, least loaded, then by
    /// node id (deterministic).
    pub fn pick(&self) -> Option<RelayHeartbeat> {
        let nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        nodes
            .values()
            .filter(|seen| seen.healthy(now))
            .min_by_key(|seen| {
                let other_region = self
                    .region
                    .as_deref()
                    .is_some_and(|region| region != seen.heartbeat.region);
                (other_region, seen.load(), seen.heartbeat.node_id.clone())
            })
            .map(|seen| seen.heartbeat.clone())
    }

    /// A known node by id (for renewing a session's credentials on its relay), if healthy or
    /// merely draining (live sessions may still use a draining node).
    pub fn get(&self, node_id: &str) -> Option<RelayHeartbeat> {
        let nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        nodes.get(node_id).map(|seen| seen.heartbeat.clone())
    }

    /// Follows relay heartbeats on the bus until `shutdown`.
    pub async fn run(&self, bus: Arc<dyn Bus>, shutdown: CancellationToken) {
        loop {
            let mut subscription = match bus.subscribe(HEARTBEAT_SUBJECTS).await {
                Ok(subscription) => subscription,
                Err(err) => {
                    tracing::warn!(error = %err, "subscribing to relay heartbeats failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    message = subscription.next() => {
                        let Some(message) = message else { break };
                        if message.payload.len() > MAX_HEARTBEAT_LEN {
                            continue;
                        }
                        match RelayHeartbeat::decode(message.payload) {
                            Ok(heartbeat) => self.observe(heartbeat),
                            Err(_) => tracing::warn!("ignoring an undecodable relay heartbeat"),
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(node: &str, region: &str, active: u32, capacity: u32) -> RelayHeartbeat {
        RelayHeartbeat {
            node_id: node.into(),
            region: region.into(),
            ws_url: format!("ws://{node}/v1/pipe"),
            active_sessions: active,
            capacity_sessions: capacity,
            heartbeat_interval_ms: 1000,
            ..Default::default()
        }
    }

    fn directory(region: Option<&str>) -> RelayDirectory {
        let gauge = prometheus::IntGauge::new("t", "t").unwrap_or_else(|_| unreachable!());
        RelayDirectory::new(region.map(str::to_owned), gauge)
    }

    #[test]
    fn picks_the_least_loaded_healthy_node_in_our_region() {
        let relays = directory(Some("eu"));
        relays.observe(heartbeat("a", "us", 0, 100));
        relays.observe(heartbeat("b", "eu", 50, 100));
        relays.observe(heartbeat("c", "eu", 10, 100));
        let mut full = heartbeat("d", "eu", 100, 100);
        full.active_sessions = 100;
        relays.observe(full);
        let mut draining = heartbeat("e", "eu", 0, 100);
        draining.draining = true;
        relays.observe(draining);
        assert_eq!(relays.pick().map(|h| h.node_id), Some("c".into()));
    }

    #[test]
    fn falls_back_to_other_regions_and_to_none() {
        let relays = directory(Some("eu"));
        assert!(relays.pick().is_none());
        relays.observe(heartbeat("a", "us", 5, 0));
        assert_eq!(relays.pick().map(|h| h.node_id), Some("a".into()));
    }

    #[test]
    fn malformed_heartbeats_are_ignored() {
        let relays = directory(None);
        relays.observe(heartbeat("", "eu", 0, 1));
        relays.observe(heartbeat(&"x".repeat(200), "eu", 0, 1));
        assert!(relays.pick().is_none());
    }
}
