//! An in-memory [`MessagePipe`] pair, for tests of everything above the pipe (the session
//! channel, resume, the agent's and viewer's session loops) without sockets.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{Mutex, mpsc};
use tucdesk_proto::v1::Path;

use crate::{MessagePipe, PipeError};

/// Messages buffered in each direction.
const CAPACITY: usize = 64;

/// One end of an in-memory pipe; it records what it sent, so a test can replay or tamper
/// with it. Dropping an end ends the other end's `recv` (`None`).
#[derive(Debug)]
pub struct MemoryPipe {
    out: mpsc::Sender<Vec<u8>>,
    inbox: Mutex<mpsc::Receiver<Vec<u8>>>,
    sent: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl MemoryPipe {
    /// Every message this end sent.
    pub fn sent(&self) -> Vec<Vec<u8>> {
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl MessagePipe for MemoryPipe {
    fn path(&self) -> Path {
        Path::Ws
    }

    async fn send(&self, message: Vec<u8>) -> Result<(), PipeError> {
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(message.clone());
        self.out
            .send(message)
            .await
            .map_err(|_| PipeError::Closed { reason: None })
    }

    async fn recv(&self) -> Result<Option<Vec<u8>>, PipeError> {
        Ok(self.inbox.lock().await.recv().await)
    }

    async fn close(&self) {}
}

/// Two connected ends, and a sender that injects messages into the first end's inbox as if
/// the second end had sent them.
pub fn pair() -> (Arc<MemoryPipe>, Arc<MemoryPipe>, mpsc::Sender<Vec<u8>>) {
    let (a_out, b_in) = mpsc::channel(CAPACITY);
    let (b_out, a_in) = mpsc::channel(CAPACITY);
    let inject = b_out.clone();
    let a = Arc::new(MemoryPipe {
        out: a_out,
        inbox: Mutex::new(a_in),
        sent: std::sync::Mutex::default(),
    });
    let b = Arc::new(MemoryPipe {
        out: b_out,
        inbox: Mutex::new(b_in),
        sent: std::sync::Mutex::default(),
    });
    (a, b, inject)
}
