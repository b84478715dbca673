//! Agent presence: which replica holds an agent's stream, kept as a lease in the shared cache
//! (`agent_id → (connection id, record)`) with a TTL of three heartbeat intervals. A clean
//! disconnect releases the lease at once; a replica that dies simply stops renewing, and its
//! agents read as offline once the TTL passes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tucdesk_svc::lease::{LeaseError, Leases};

/// What a presence lease says about an online agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceRecord {
    /// Replica holding the stream.
    #[serde(rename = "r")]
    pub replica: String,
    #[serde(rename = "c")]
    pub connected_at_ms: i64,
    #[serde(rename = "s")]
    pub last_seen_ms: i64,
    #[serde(rename = "n")]
    pub active_sessions: u32,
}

/// Presence of every agent of the deployment.
#[derive(Debug, Clone)]
pub struct Presence {
    leases: Arc<dyn Leases>,
}

impl Presence {
    pub fn new(leases: Arc<dyn Leases>) -> Self {
        Self { leases }
    }

    fn encode(record: &PresenceRecord) -> Vec<u8> {
        serde_json::to_vec(record).unwrap_or_default()
    }

    /// Marks the agent online on this connection, replacing whoever held it.
    pub async fn acquire(
        &self,
        agent_id: &str,
        conn_id: &str,
        record: &PresenceRecord,
        ttl: Duration,
    ) -> Result<(), LeaseError> {
        self.leases
            .acquire(agent_id, conn_id, &Self::encode(record), ttl)
            .await
    }

    /// Renews on a heartbeat; `false` when another connection holds the agent now.
    pub async fn renew(
        &self,
        agent_id: &str,
        conn_id: &str,
        record: &PresenceRecord,
        ttl: Duration,
    ) -> Result<bool, LeaseError> {
        self.leases
            .renew(agent_id, conn_id, &Self::encode(record), ttl)
            .await
    }

    /// Marks the agent offline if this connection still holds it.
    pub async fn release(&self, agent_id: &str, conn_id: &str) -> Result<bool, LeaseError> {
        self.leases.release(agent_id, conn_id).await
    }

    /// The online agents among `agent_ids` and what their leases say.
    pub async fn online(
        &self,
        agent_ids: &[String],
    ) -> Result<HashMap<String, PresenceRecord>, LeaseError> {
        let mut online = HashMap::new();
        for chunk in agent_ids.chunks(tucdesk_svc::lease::MAX_BATCH) {
            let leases = self.leases.get_many(chunk).await?;
            for (agent_id, lease) in chunk.iter().zip(leases) {
                let record = lease.and_then(|l| serde_json::from_slice(&l.value).ok());
                if let Some(record) = record {
                    online.insert(agent_id.clone(), record);
                }
            }
        }
        Ok(online)
    }
}
