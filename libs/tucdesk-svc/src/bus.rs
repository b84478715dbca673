//! Message bus chosen by URL: `nats://…` (core NATS + JetStream) or the in-process bus.
//!
//! Three kinds of traffic, with the same semantics on both implementations:
//! - **publish/subscribe**: at-most-once fan-out on NATS subjects (`*` and `>` wildcards);
//!   a subscriber that falls behind loses messages rather than growing memory.
//! - **request/reply** with a deadline; no subscriber at all is [`BusError::NoResponders`]
//!   at once, not a timeout.
//! - **durable streams**: at-least-once delivery with explicit ack, redelivery of what was not
//!   acked within `ack_wait`, and publisher de-duplication by id within a window.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::redact::redact_url;

mod memory;
mod nats;
mod subject;

pub use memory::MemoryBus;
pub use nats::NatsBus;
pub use subject::{
    SubjectError, patterns_overlap, subject_matches, validate_pattern, validate_subject,
};

/// Message headers (trace context, content type). A sorted map so that the in-process bus and
/// tests see a deterministic order.
pub type Headers = BTreeMap<String, String>;

/// Largest payload accepted for publishing; NATS's default `max_payload` is 1 MiB and our
/// events are far smaller, so anything bigger is a bug upstream.
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// Capacity of each subscription's queue; a subscriber further behind than this drops
/// messages (like a NATS slow consumer) instead of growing memory.
pub const SUBSCRIPTION_CAPACITY: usize = 1024;

/// Longest de-duplication id accepted (event ids are UUIDs).
pub const MAX_DEDUP_ID_LEN: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("unsupported bus URL scheme in {url} (expected nats:// or memory://)")]
    UnsupportedScheme { url: String },
    #[error("cannot connect to bus {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error(transparent)]
    Subject(#[from] SubjectError),
    #[error("payload of {len} bytes exceeds the {MAX_PAYLOAD} byte limit")]
    PayloadTooLarge { len: usize },
    #[error("de-duplication id is empty or longer than {MAX_DEDUP_ID_LEN} bytes")]
    BadDedupId,
    #[error("no responders on subject {subject}")]
    NoResponders { subject: String },
    #[error("request on subject {subject} timed out after {timeout:?}")]
    TimedOut { subject: String, timeout: Duration },
    #[error("stream {stream} does not exist")]
    NoSuchStream { stream: String },
    #[error("stream {stream} would capture subjects stream {existing} already captures")]
    StreamOverlap { stream: String, existing: String },
    #[error("bus is closed")]
    Closed,
    #[error("bus error: {0}")]
    Backend(String),
}

/// A message received from a subscription or as a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub headers: Headers,
    pub payload: Bytes,
    /// Where a responder sends its answer (request/reply), if the sender expects one.
    pub reply: Option<String>,
}

/// A live subscription; dropping it unsubscribes.
pub struct Subscription {
    messages: BoxStream<'static, Message>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(messages: BoxStream<'static, Message>) -> Self {
        Self { messages }
    }

    /// The next message, or `None` once the bus is closed.
    pub async fn next(&mut self) -> Option<Message> {
        futures::StreamExt::next(&mut self.messages).await
    }
}

/// A durable stream capturing `subjects`, with limits so it cannot grow without bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: String,
    pub subjects: Vec<String>,
    /// Window within which a repeated de-duplication id is recognised and dropped.
    pub duplicate_window: Duration,
    /// Messages older than this are discarded.
    pub max_age: Duration,
    /// At most this many messages are kept (oldest discarded first).
    pub max_messages: u64,
}

impl StreamSpec {
    /// A spec with the defaults TucDesk streams use: 2-minute de-duplication window, 7 days
    /// of retention, at most ten million messages.
    pub fn new(name: impl Into<String>, subjects: Vec<String>) -> Self {
        Self {
            name: name.into(),
            subjects,
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(7 * 24 * 60 * 60),
            max_messages: 10_000_000,
        }
    }
}

/// A named, durable consumer of a stream: its position survives reconnects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    pub stream: String,
    pub durable_name: String,
    /// Only messages whose subject matches this pattern are delivered.
    pub filter_subject: Option<String>,
    /// A delivered message not acked within this time is delivered again.
    pub ack_wait: Duration,
    /// At most this many delivered-but-unacked messages at once (backpressure).
    pub max_ack_pending: usize,
}

impl ConsumerSpec {
    pub fn new(stream: impl Into<String>, durable_name: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            durable_name: durable_name.into(),
            filter_subject: None,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1000,
        }
    }
}

/// What the stream said about a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishAck {
    /// Sequence of the stored message (of the original one when `duplicate`).
    pub sequence: u64,
    /// The de-duplication id was already seen within the window; nothing new was stored.
    pub duplicate: bool,
}

/// One message delivered by a durable consumer; ack it once it is safely processed.
#[derive(Debug)]
pub struct Delivery {
    pub subject: String,
    pub headers: Headers,
    pub payload: Bytes,
    /// The publisher's de-duplication id, when it gave one.
    pub dedup_id: Option<String>,
    /// Position in the stream.
    pub stream_sequence: u64,
    /// How many times this message has been delivered (1 on first delivery).
    pub delivered: u64,
    /// Messages still waiting for this consumer after this one when it was delivered (the
    /// consumer's backlog; the in-process bus gives the backlog after the whole batch).
    pub pending: u64,
    acker: Acker,
}

#[derive(Debug)]
enum Acker {
    Memory(memory::Acker),
    Nats(Box<async_nats::jetstream::Message>),
}

impl Delivery {
    /// Acknowledges the message: it will not be delivered again. Waits for the server to
    /// confirm, so a returned `Ok` means the ack was recorded.
    pub async fn ack(self) -> Result<(), BusError> {
        match self.acker {
            Acker::Memory(acker) => acker.ack(),
            Acker::Nats(message) => message
                .double_ack()
                .await
                .map_err(|err| BusError::Backend(err.to_string())),
        }
    }
}

/// A durable consumer's handle.
#[async_trait]
pub trait DurableConsumer: Send + std::fmt::Debug {
    /// Up to `max` messages: redeliveries of expired unacked ones first, then new ones.
    /// Waits up to `wait` for at least one; an empty batch means nothing arrived in time.
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError>;
}

/// The bus interface every service uses; see the module docs for the semantics.
#[async_trait]
pub trait Bus: Send + Sync + std::fmt::Debug {
    /// Fire-and-forget publish to current subscribers.
    async fn publish(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
    ) -> Result<(), BusError>;

    /// Subscribes to a subject pattern (`*` matches one token, `>` the rest).
    async fn subscribe(&self, pattern: &str) -> Result<Subscription, BusError>;

    /// Sends a request and waits up to `timeout` for the first reply.
    async fn request(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, BusError>;

    /// Creates the stream, or updates it to `spec` if it exists.
    async fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), BusError>;

    /// Appends to a stream; a `dedup_id` seen within the window is not stored again.
    async fn stream_publish(
        &self,
        subject: &str,
        dedup_id: &str,
        headers: Headers,
        payload: Bytes,
    ) -> Result<PublishAck, BusError>;

    /// Opens (creating if needed) a durable consumer.
    async fn durable_consumer(
        &self,
        spec: &ConsumerSpec,
    ) -> Result<Box<dyn DurableConsumer>, BusError>;

    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<(), BusError>;
}

/// Connects the bus named by `url`. `memory://` makes a fresh in-process bus, so processes
/// running several services (standalone) build one [`MemoryBus`] and share it instead.
/// An unreachable NATS is an error naming the URL (credentials redacted).
pub async fn connect(url: &str, client_name: &str) -> Result<Arc<dyn Bus>, BusError> {
    match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("memory") => Ok(Arc::new(MemoryBus::new())),
        Some("nats" | "tls") => Ok(Arc::new(NatsBus::connect(url, client_name).await?)),
        _ => Err(BusError::UnsupportedScheme {
            url: redact_url(url),
        }),
    }
}

fn check_payload(payload: &Bytes) -> Result<(), BusError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(BusError::PayloadTooLarge { len: payload.len() });
    }
    Ok(())
}

fn check_dedup_id(dedup_id: &str) -> Result<(), BusError> {
    if dedup_id.is_empty() || dedup_id.len() > MAX_DEDUP_ID_LEN {
        return Err(BusError::BadDedupId);
    }
    Ok(())
}
