//! The in-process bus: the same interface and delivery guarantees as NATS + JetStream, for
//! the embedded defaults (standalone mode) and tests.
//!
//! Durable streams live in memory, so "durable" means "survives a consumer reconnecting
//! within this process". To keep memory bounded the streams honour their limits
//! (`max_messages`, `max_age`) and also drop messages every durable consumer has acked.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::{
    Bus, BusError, ConsumerSpec, Delivery, DurableConsumer, Headers, Message, PublishAck,
    StreamSpec, Subscription, check_dedup_id, check_payload, subject_matches, validate_pattern,
    validate_subject,
};

mod stream;

use stream::{ConsumerState, StreamState};

/// In-process implementation of [`Bus`]. Cloning shares the same bus.
#[derive(Debug, Clone, Default)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    subscribers: Mutex<Vec<Subscriber>>,
    streams: Mutex<HashMap<String, StreamState>>,
    /// Woken on every stream append and every ack, so waiting fetches re-check.
    stream_activity: Notify,
    next_subscriber_id: AtomicU64,
}

#[derive(Debug)]
struct Subscriber {
    id: u64,
    pattern: String,
    sender: mpsc::Sender<Message>,
}

/// Locks a mutex, recovering from poisoning: every critical section here leaves the state
/// consistent before anything that could panic, so a poisoned lock holds valid data.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Hands `message` to every matching subscriber; returns how many matched. A full
    /// subscriber queue drops the message for that subscriber only (at-most-once).
    fn deliver(&self, message: &Message) -> usize {
        let mut subscribers = lock(&self.inner.subscribers);
        subscribers.retain(|subscriber| !subscriber.sender.is_closed());
        let mut matched = 0;
        for subscriber in subscribers.iter() {
            if subject_matches(&subscriber.pattern, &message.subject) {
                matched += 1;
                if subscriber.sender.try_send(message.clone()).is_err() {
                    tracing::warn!(
                        subject = %message.subject,
                        "in-process subscriber is too slow; message dropped"
                    );
                }
            }
        }
        matched
    }

    fn add_subscriber(&self, pattern: &str, capacity: usize) -> (u64, mpsc::Receiver<Message>) {
        let (sender, receiver) = mpsc::channel(capacity);
        let id = self
            .inner
            .next_subscriber_id
            .fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.subscribers).push(Subscriber {
            id,
            pattern: pattern.to_owned(),
            sender,
        });
        (id, receiver)
    }

    fn remove_subscriber(&self, id: u64) {
        lock(&self.inner.subscribers).retain(|subscriber| subscriber.id != id);
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
    ) -> Result<(), BusError> {
        validate_subject(subject)?;
        check_payload(&payload)?;
        self.deliver(&Message {
            subject: subject.to_owned(),
            headers,
            payload,
            reply: None,
        });
        Ok(())
    }

    async fn subscribe(&self, pattern: &str) -> Result<Subscription, BusError> {
        validate_pattern(pattern)?;
        let (_, receiver) = self.add_subscriber(pattern, super::SUBSCRIPTION_CAPACITY);
        let messages = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|message| (message, receiver))
        });
        Ok(Subscription::new(messages.boxed()))
    }

    async fn request(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        validate_subject(subject)?;
        check_payload(&payload)?;
        let inbox = format!("_INBOX.{}", uuid::Uuid::new_v4().simple());
        let (inbox_id, mut replies) = self.add_subscriber(&inbox, 1);
        let matched = self.deliver(&Message {
            subject: subject.to_owned(),
            headers,
            payload,
            reply: Some(inbox),
        });
        let outcome = if matched == 0 {
            Err(BusError::NoResponders {
                subject: subject.to_owned(),
            })
        } else {
            match tokio::time::timeout(timeout, replies.recv()).await {
                Ok(Some(reply)) => Ok(reply),
                Ok(None) => Err(BusError::Closed),
                Err(_) => Err(BusError::TimedOut {
                    subject: subject.to_owned(),
                    timeout,
                }),
            }
        };
        self.remove_subscriber(inbox_id);
        outcome
    }

    async fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), BusError> {
        for pattern in &spec.subjects {
            validate_pattern(pattern)?;
        }
        let mut streams = lock(&self.inner.streams);
        let clash = streams.values().find(|other| {
            other.spec.name != spec.name
                && other.spec.subjects.iter().any(|theirs| {
                    spec.subjects
                        .iter()
                        .any(|ours| super::patterns_overlap(ours, theirs))
                })
        });
        if let Some(other) = clash {
            return Err(BusError::StreamOverlap {
                stream: spec.name.clone(),
                existing: other.spec.name.clone(),
            });
        }
        match streams.get_mut(&spec.name) {
            Some(existing) => existing.spec = spec.clone(),
            None => {
                streams.insert(
                    spec.name.clone(),
                    StreamState {
                        spec: spec.clone(),
                        messages: BTreeMap::new(),
                        last_sequence: 0,
                        dedup: HashMap::new(),
                        dedup_order: VecDeque::new(),
                        consumers: HashMap::new(),
                    },
                );
            }
        }
        Ok(())
    }

    async fn stream_publish(
        &self,
        subject: &str,
        dedup_id: &str,
        headers: Headers,
        payload: Bytes,
    ) -> Result<PublishAck, BusError> {
        validate_subject(subject)?;
        check_payload(&payload)?;
        check_dedup_id(dedup_id)?;
        let ack = {
            let mut streams = lock(&self.inner.streams);
            let stream = streams
                .values_mut()
                .find(|stream| {
                    stream
                        .spec
                        .subjects
                        .iter()
                        .any(|pattern| subject_matches(pattern, subject))
                })
                .ok_or_else(|| BusError::NoSuchStream {
                    stream: format!("(none captures {subject})"),
                })?;
            stream.append(subject, dedup_id, headers, payload)
        };
        if !ack.duplicate {
            self.inner.stream_activity.notify_waiters();
        }
        Ok(ack)
    }

    async fn durable_consumer(
        &self,
        spec: &ConsumerSpec,
    ) -> Result<Box<dyn DurableConsumer>, BusError> {
        if let Some(filter) = &spec.filter_subject {
            validate_pattern(filter)?;
        }
        let mut streams = lock(&self.inner.streams);
        let stream = streams
            .get_mut(&spec.stream)
            .ok_or_else(|| BusError::NoSuchStream {
                stream: spec.stream.clone(),
            })?;
        let first = stream
            .messages
            .keys()
            .next()
            .copied()
            .unwrap_or(stream.last_sequence + 1);
        stream
            .consumers
            .entry(spec.durable_name.clone())
            .and_modify(|consumer| consumer.spec = spec.clone())
            .or_insert_with(|| ConsumerState {
                spec: spec.clone(),
                cursor: first,
                pending: BTreeMap::new(),
            });
        Ok(Box::new(MemoryConsumer {
            bus: self.clone(),
            stream: spec.stream.clone(),
            durable: spec.durable_name.clone(),
        }))
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}

/// Acks one delivery of the in-process bus.
#[derive(Debug)]
pub(super) struct Acker {
    bus: MemoryBus,
    stream: String,
    durable: String,
    sequence: u64,
}

impl Acker {
    pub(super) fn ack(self) -> Result<(), BusError> {
        let mut streams = lock(&self.bus.inner.streams);
        let stream = streams
            .get_mut(&self.stream)
            .ok_or_else(|| BusError::NoSuchStream {
                stream: self.stream.clone(),
            })?;
        if let Some(consumer) = stream.consumers.get_mut(&self.durable) {
            consumer.pending.remove(&self.sequence);
        }
        stream.enforce_limits(Instant::now());
        drop(streams);
        self.bus.inner.stream_activity.notify_waiters();
        Ok(())
    }
}

#[derive(Debug)]
struct MemoryConsumer {
    bus: MemoryBus,
    stream: String,
    durable: String,
}

#[async_trait]
impl DurableConsumer for MemoryConsumer {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let deadline = Instant::now() + wait;
        loop {
            // Register interest before looking, so an append between the look and the wait
            // still wakes us.
            let activity = self.bus.inner.stream_activity.notified();
            tokio::pin!(activity);
            activity.as_mut().enable();

            let (batch, next_deadline) = {
                let mut streams = lock(&self.bus.inner.streams);
                let stream =
                    streams
                        .get_mut(&self.stream)
                        .ok_or_else(|| BusError::NoSuchStream {
                            stream: self.stream.clone(),
                        })?;
                stream.collect(&self.stream, &self.durable, max.max(1), &self.bus)?
            };
            if !batch.is_empty() {
                return Ok(batch);
            }
            if Instant::now() >= deadline {
                return Ok(batch);
            }
            let wake_at = next_deadline.map_or(deadline, |at| at.min(deadline));
            tokio::select! {
                () = &mut activity => {}
                () = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }
}
