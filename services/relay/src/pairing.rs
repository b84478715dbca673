//! The pairing room: the first side of a session waits here for the second; the second hands
//! its connection to the first, whose task then forwards both ways. A session is matched on
//! its id and the sides' valid tickets only; a third connection for a session is refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use axum::extract::ws::WebSocket;
use tokio::sync::oneshot;
use tucdesk_token::Side;

/// A side that passed its checks, ready to be paired.
#[derive(Debug)]
pub struct Arrival {
    pub socket: WebSocket,
    pub side: Side,
    pub protocol_version: u32,
}

#[derive(Debug)]
enum Slot {
    Waiting {
        side: Side,
        id: u64,
        peer: oneshot::Sender<Arrival>,
    },
    Paired,
}

/// What joining the room did with an arrival.
#[derive(Debug)]
pub enum Joined {
    /// First of its session: keep `own`, wait on `peer` (and call [`Room::leave`] with `id`
    /// when giving up).
    First {
        id: u64,
        peer: oneshot::Receiver<Arrival>,
        own: Box<Arrival>,
    },
    /// Handed to the waiting side, whose task forwards from now on.
    Handed,
    /// The session already has this side, or both: refused, the arrival returned.
    Occupied(Box<Arrival>, &'static str),
}

/// Sessions waiting or forwarding on this node.
#[derive(Debug, Default)]
pub struct Room {
    sessions: Mutex<HashMap<String, Slot>>,
    next_id: AtomicU64,
}

impl Room {
    pub fn new() -> Self {
        Self::default()
    }

    /// Joins `arrival` to `session_id`.
    pub fn join(&self, session_id: &str, arrival: Arrival) -> Joined {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let arrival = match sessions.remove(session_id) {
            Some(Slot::Waiting { side, peer, .. }) if side != arrival.side => {
                match peer.send(arrival) {
                    Ok(()) => {
                        sessions.insert(session_id.to_owned(), Slot::Paired);
                        return Joined::Handed;
                    }
                    // The waiting side gave up a moment ago: this one waits instead.
                    Err(arrival) => arrival,
                }
            }
            Some(slot @ Slot::Waiting { .. }) => {
                sessions.insert(session_id.to_owned(), slot);
                return Joined::Occupied(
                    Box::new(arrival),
                    "this side of the session is already connected",
                );
            }
            Some(Slot::Paired) => {
                sessions.insert(session_id.to_owned(), Slot::Paired);
                return Joined::Occupied(
                    Box::new(arrival),
                    "both sides of this session are already connected",
                );
            }
            None => arrival,
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        sessions.insert(
            session_id.to_owned(),
            Slot::Waiting {
                side: arrival.side,
                id,
                peer: sender,
            },
        );
        Joined::First {
            id,
            peer: receiver,
            own: Box::new(arrival),
        }
    }

    /// A waiting side gives up (timeout, disconnect); only its own entry is removed.
    pub fn leave(&self, session_id: &str, id: u64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(sessions.get(session_id), Some(Slot::Waiting { id: waiting, .. }) if *waiting == id)
        {
            sessions.remove(session_id);
        }
    }

    /// A forwarding session ended.
    pub fn end(&self, session_id: &str) {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(sessions.get(session_id), Some(Slot::Paired)) {
            sessions.remove(session_id);
        }
    }
}
