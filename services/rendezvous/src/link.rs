//! The agent link: `AgentLink.Connect` streams held by this replica.
//!
//! One task per stream ([`conn`]): it reads the first message (Register, within
//! [`REGISTER_TIMEOUT`]), checks the proof and enrollment, takes the agent's presence lease,
//! subscribes to the agent's routing subject, tells other replicas to drop an older stream of
//! the same agent, and then runs one `select!` loop over the agent's messages, deliveries from
//! the bus, the heartbeat deadline, supersede and drain signals.

mod conn;
mod presence;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};
use tucdesk_proto::v1::{AgentMessage, RejectReason, ServerMessage};

pub use presence::{Presence, PresenceRecord};

use crate::service::Rendezvous;

/// How long a new stream may take to send Register.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued towards one agent; a full queue means the agent does not read and its
/// stream is closed (bounded memory per agent, no unbounded buffering).
pub const OUTBOUND_QUEUE: usize = 32;
/// A stream silent for this many heartbeat intervals is closed; the presence lease lasts as
/// long.
pub const MISSED_HEARTBEATS: u32 = 3;

/// Why the server closes a stream, as told to the local registry's other holders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    Superseded,
    Revoked,
}

/// A stream held by this replica.
#[derive(Debug, Clone)]
struct Held {
    conn_id: String,
    team_id: String,
    /// Fires when the stream must end (a newer stream of the same agent, revocation).
    close: CancellationToken,
    cause: Arc<Mutex<Option<CloseCause>>>,
}

/// The agents whose streams this replica holds, bounded by configuration.
#[derive(Debug)]
pub struct LocalAgents {
    held: Mutex<HashMap<String, Held>>,
    max: usize,
}

/// What a connection holds in the local registry; dropping it does not deregister (the
/// connection task does, when it ends).
#[derive(Debug, Clone)]
pub struct Registration {
    pub conn_id: String,
    pub close: CancellationToken,
    cause: Arc<Mutex<Option<CloseCause>>>,
}

impl Registration {
    pub fn cause(&self) -> Option<CloseCause> {
        *self.cause.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LocalAgents {
    pub fn new(max: usize) -> Self {
        Self {
            held: Mutex::new(HashMap::new()),
            max,
        }
    }

    /// Registers a stream for `agent_id`, closing an older one held here. `None` when the
    /// replica is full.
    pub fn insert(&self, agent_id: &str, team_id: &str) -> Option<Registration> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if !held.contains_key(agent_id) && held.len() >= self.max {
            return None;
        }
        let registration = Registration {
            conn_id: uuid::Uuid::new_v4().simple().to_string(),
            close: CancellationToken::new(),
            cause: Arc::new(Mutex::new(None)),
        };
        let previous = held.insert(
            agent_id.to_owned(),
            Held {
                conn_id: registration.conn_id.clone(),
                team_id: team_id.to_owned(),
                close: registration.close.clone(),
                cause: registration.cause.clone(),
            },
        );
        if let Some(previous) = previous {
            Self::close(&previous, CloseCause::Superseded);
        }
        Some(registration)
    }

    fn close(held: &Held, cause: CloseCause) {
        *held.cause.lock().unwrap_or_else(PoisonError::into_inner) = Some(cause);
        held.close.cancel();
    }

    /// Removes the stream if it is still the registered one.
    pub fn remove(&self, agent_id: &str, conn_id: &str) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.get(agent_id).is_some_and(|h| h.conn_id == conn_id) {
            held.remove(agent_id);
        }
    }

    /// Closes the agent's stream if this replica holds it.
    pub fn close_agent(&self, agent_id: &str, cause: CloseCause) -> bool {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.get(agent_id) {
            Some(h) => {
                Self::close(h, cause);
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Agents held here for a team (admin views, tests).
    pub fn count_for_team(&self, team_id: &str) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|h| h.team_id == team_id)
            .count()
    }
}

/// What the connection task queues for its agent. Messages are boxed so that each queue slot
/// is a pointer: tokio allocates a block of slots per channel up front, and inline
/// `ServerMessage`s (~700 bytes) made that block 22 KiB per connected agent.
pub type Queued = Result<Box<ServerMessage>, Status>;

/// The response stream of a Connect call.
pub type ServerStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<ServerMessage, Status>> + Send>>;

impl Rendezvous {
    /// Starts the task serving one Connect stream and returns its response stream.
    pub fn connect(
        &self,
        inbound: Streaming<AgentMessage>,
        source: Option<IpAddr>,
    ) -> ServerStream {
        let (outbound, receiver) = mpsc::channel::<Queued>(OUTBOUND_QUEUE);
        let service = self.clone();
        tokio::spawn(async move {
            conn::serve(service, inbound, outbound, source).await;
        });
        Box::pin(futures::StreamExt::map(
            ReceiverStream::new(receiver),
            |queued| queued.map(|message| *message),
        ))
    }

    /// The presence view of this deployment (shared by every replica through the cache).
    pub fn presence(&self) -> Presence {
        Presence::new(self.inner.leases.clone())
    }

    /// Closes an agent's stream wherever it is held: locally at once, elsewhere through the
    /// agent's routing subject (the holder writes `Rejected` and closes).
    pub async fn disconnect_agent(&self, agent_id: &str, reason: RejectReason, message: &str) {
        let cause = if reason == RejectReason::AgentRevoked {
            CloseCause::Revoked
        } else {
            CloseCause::Superseded
        };
        if !self.inner.agents.close_agent(agent_id, cause) {
            let rejected = conn::rejected(reason, message, 0, 0);
            self.notify_agent(agent_id, rejected).await;
        }
    }

    /// Agent streams this replica holds.
    pub fn local_agent_count(&self) -> usize {
        self.inner.agents.len()
    }
}
