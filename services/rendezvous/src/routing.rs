//! Routing between replicas over the bus (`docs/protocol.md` §10).
//!
//! - `rdv.agent.<agent_id>`: [`AgentDelivery`] to whichever replica holds the agent's stream.
//!   That replica's connection task is the only subscriber; requests are answered with
//!   [`ACK_DELIVERED`] or [`ACK_BUSY`], and "no responders" means the agent is offline.
//! - `rdv.session.<session_id>`: [`SessionDelivery`] of the agent's answers and signals to
//!   the replica serving the session's operator.
//! - `rdv.approvals.<team>`: approval changes, for WatchApprovals on every replica.
//!
//! Only validated ids become subjects: agent ids are base64url and session ids canonical
//! UUIDs, neither of which can contain `.`, `*`, `>` or whitespace; team ids are hashed.

use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use tucdesk_proto::v1::{AgentDelivery, AgentMessage, Approval, ServerMessage, SessionDelivery};
use tucdesk_svc::bus::{BusError, Headers};

use crate::error::RendezvousError;
use crate::service::Rendezvous;

/// How long delivering a message to an agent's replica may take before the agent counts as
/// unreachable.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(3);
/// Reply of a connection task that queued the message for its agent.
pub const ACK_DELIVERED: &[u8] = b"delivered";
/// Reply of a connection task whose agent is not reading (queue full).
pub const ACK_BUSY: &[u8] = b"busy";

pub fn agent_subject(agent_id: &str) -> String {
    format!("rdv.agent.{agent_id}")
}

pub fn session_subject(session_id: &str) -> String {
    format!("rdv.session.{session_id}")
}

/// Team ids come from auth and are not guaranteed subject-safe: use a hash.
pub fn approvals_subject(team_id: &str) -> String {
    let digest = Sha256::digest(team_id.as_bytes());
    format!("rdv.approvals.{}", hex_prefix(&digest))
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// What became of a message sent to an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// No replica holds a stream for the agent.
    Offline,
    /// The agent's stream exists but is not reading.
    Busy,
}

impl Rendezvous {
    /// Sends `message` to the agent's stream on whichever replica holds it, and says whether
    /// it was queued there.
    pub async fn deliver_to_agent(
        &self,
        agent_id: &str,
        message: ServerMessage,
    ) -> Result<Delivery, RendezvousError> {
        let payload = self.agent_delivery(agent_id, message);
        let reply = self
            .inner
            .bus
            .request(
                &agent_subject(agent_id),
                Headers::new(),
                payload,
                DELIVERY_TIMEOUT,
            )
            .await;
        let outcome = match reply {
            Ok(reply) if reply.payload.as_ref() == ACK_DELIVERED => Delivery::Delivered,
            Ok(_) => Delivery::Busy,
            Err(BusError::NoResponders { .. } | BusError::TimedOut { .. }) => Delivery::Offline,
            Err(err) => return Err(RendezvousError::internal("delivering to an agent", err)),
        };
        if outcome != Delivery::Delivered {
            let cause = if outcome == Delivery::Busy {
                "busy"
            } else {
                "offline"
            };
            self.metrics()
                .delivery_failures
                .with_label_values(&[cause])
                .inc();
        }
        Ok(outcome)
    }

    /// Sends `message` to the agent's stream without waiting for an acknowledgement (signals,
    /// cancellations, supersede notices): at most once.
    pub async fn notify_agent(&self, agent_id: &str, message: ServerMessage) {
        let payload = self.agent_delivery(agent_id, message);
        if let Err(err) = self
            .inner
            .bus
            .publish(&agent_subject(agent_id), Headers::new(), payload)
            .await
        {
            tracing::warn!(error = %err, "notifying an agent's replica failed");
        }
    }

    fn agent_delivery(&self, agent_id: &str, message: ServerMessage) -> Bytes {
        AgentDelivery {
            agent_id: agent_id.to_owned(),
            origin_replica: self.replica_id().to_owned(),
            message: Some(message),
        }
        .encode_to_vec()
        .into()
    }

    /// Forwards an agent's message about a session to the replica serving its operator.
    pub async fn publish_to_session(
        &self,
        session_id: &str,
        agent_id: &str,
        message: AgentMessage,
    ) {
        let payload: Bytes = SessionDelivery {
            session_id: session_id.to_owned(),
            agent_id: agent_id.to_owned(),
            message: Some(message),
        }
        .encode_to_vec()
        .into();
        if let Err(err) = self
            .inner
            .bus
            .publish(&session_subject(session_id), Headers::new(), payload)
            .await
        {
            tracing::warn!(error = %err, "forwarding an agent message to its session failed");
        }
    }

    /// Tells every replica's approval watchers about a change.
    pub async fn publish_approval(&self, team_id: &str, approval: &Approval) {
        if let Err(err) = self
            .inner
            .bus
            .publish(
                &approvals_subject(team_id),
                Headers::new(),
                approval.encode_to_vec().into(),
            )
            .await
        {
            tracing::warn!(error = %err, "publishing an approval change failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_subject_safe() {
        let team = approvals_subject("team.with.dots > and *");
        assert!(team.starts_with("rdv.approvals."));
        assert_eq!(team.matches('.').count(), 2);
        assert!(!team.contains('>') && !team.contains('*') && !team.contains(' '));
        assert_eq!(agent_subject("abc-_9"), "rdv.agent.abc-_9");
    }
}
