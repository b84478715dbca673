//! One durable stream of the in-process bus: its stored messages, the publisher
//! de-duplication ids still inside the window, and each durable consumer's cursor and pending
//! deliveries, trimmed to the stream's limits on every append and ack.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;
use tokio::time::Instant;

use super::{Acker, MemoryBus};
use crate::bus::{
    BusError, ConsumerSpec, Delivery, Headers, PublishAck, StreamSpec, subject_matches,
};

#[derive(Debug)]
pub(super) struct StreamState {
    pub(super) spec: StreamSpec,
    pub(super) messages: BTreeMap<u64, Stored>,
    pub(super) last_sequence: u64,
    pub(super) dedup: HashMap<String, u64>,
    /// De-duplication ids in arrival order, to forget them once the window has passed.
    pub(super) dedup_order: VecDeque<(Instant, String)>,
    pub(super) consumers: HashMap<String, ConsumerState>,
}

#[derive(Debug)]
pub(super) struct Stored {
    subject: String,
    headers: Headers,
    payload: Bytes,
    dedup_id: Option<String>,
    stored_at: Instant,
}

#[derive(Debug)]
pub(super) struct ConsumerState {
    pub(super) spec: ConsumerSpec,
    /// Next sequence to consider for a first delivery.
    pub(super) cursor: u64,
    /// Delivered, not yet acked: sequence → (redelivery deadline, deliveries so far).
    pub(super) pending: BTreeMap<u64, (Instant, u64)>,
}

impl ConsumerState {
    /// Lowest sequence this consumer may still need.
    fn floor(&self) -> u64 {
        self.pending
            .keys()
            .next()
            .copied()
            .unwrap_or(self.cursor)
            .min(self.cursor)
    }
}

impl StreamState {
    pub(super) fn append(
        &mut self,
        subject: &str,
        dedup_id: &str,
        headers: Headers,
        payload: Bytes,
    ) -> PublishAck {
        let now = Instant::now();
        self.forget_old_dedup_ids(now);
        if let Some(&sequence) = self.dedup.get(dedup_id) {
            return PublishAck {
                sequence,
                duplicate: true,
            };
        }
        self.last_sequence += 1;
        let sequence = self.last_sequence;
        self.messages.insert(
            sequence,
            Stored {
                subject: subject.to_owned(),
                headers,
                payload,
                dedup_id: Some(dedup_id.to_owned()),
                stored_at: now,
            },
        );
        self.dedup.insert(dedup_id.to_owned(), sequence);
        self.dedup_order.push_back((now, dedup_id.to_owned()));
        self.enforce_limits(now);
        PublishAck {
            sequence,
            duplicate: false,
        }
    }

    fn forget_old_dedup_ids(&mut self, now: Instant) {
        while let Some((at, _)) = self.dedup_order.front() {
            if now.duration_since(*at) < self.spec.duplicate_window {
                break;
            }
            if let Some((_, id)) = self.dedup_order.pop_front() {
                self.dedup.remove(&id);
            }
        }
    }

    pub(super) fn enforce_limits(&mut self, now: Instant) {
        let max_messages = usize::try_from(self.spec.max_messages).unwrap_or(usize::MAX);
        while self.messages.len() > max_messages {
            self.messages.pop_first();
        }
        while let Some((_, oldest)) = self.messages.first_key_value() {
            if now.duration_since(oldest.stored_at) < self.spec.max_age {
                break;
            }
            self.messages.pop_first();
        }
        if let Some(floor) = self.consumers.values().map(ConsumerState::floor).min() {
            while let Some((&sequence, _)) = self.messages.first_key_value() {
                if sequence >= floor {
                    break;
                }
                self.messages.pop_first();
            }
        }
    }

    /// Collects up to `max` deliveries for `durable`: due redeliveries first, then new
    /// messages. Also returns the earliest pending deadline, to know when to look again.
    pub(super) fn collect(
        &mut self,
        stream_name: &str,
        durable: &str,
        max: usize,
        bus: &MemoryBus,
    ) -> Result<(Vec<Delivery>, Option<Instant>), BusError> {
        let now = Instant::now();
        let Self {
            messages,
            consumers,
            ..
        } = self;
        let consumer = consumers
            .get_mut(durable)
            .ok_or_else(|| BusError::NoSuchStream {
                stream: format!("{stream_name} (consumer {durable} was removed)"),
            })?;
        let ack_wait = consumer.spec.ack_wait;
        let mut batch = Vec::new();
        let make = |sequence: u64, delivered: u64, stored: &Stored| Delivery {
            subject: stored.subject.clone(),
            headers: stored.headers.clone(),
            payload: stored.payload.clone(),
            dedup_id: stored.dedup_id.clone(),
            stream_sequence: sequence,
            delivered,
            pending: 0,
            acker: crate::bus::Acker::Memory(Acker {
                bus: bus.clone(),
                stream: stream_name.to_owned(),
                durable: durable.to_owned(),
                sequence,
            }),
        };

        let due: Vec<u64> = consumer
            .pending
            .iter()
            .filter(|(_, (deadline, _))| *deadline <= now)
            .map(|(&sequence, _)| sequence)
            .take(max)
            .collect();
        for sequence in due {
            match messages.get(&sequence) {
                // Discarded by the stream's limits: nothing left to redeliver.
                None => {
                    consumer.pending.remove(&sequence);
                }
                Some(stored) => {
                    if let Some((deadline, delivered)) = consumer.pending.get_mut(&sequence) {
                        *deadline = now + ack_wait;
                        *delivered += 1;
                        batch.push(make(sequence, *delivered, stored));
                    }
                }
            }
        }

        while batch.len() < max && consumer.pending.len() < consumer.spec.max_ack_pending {
            let Some((&sequence, stored)) = messages.range(consumer.cursor..).next() else {
                break;
            };
            consumer.cursor = sequence + 1;
            let wanted = consumer
                .spec
                .filter_subject
                .as_deref()
                .is_none_or(|filter| subject_matches(filter, &stored.subject));
            if wanted {
                consumer.pending.insert(sequence, (now + ack_wait, 1));
                batch.push(make(sequence, 1, stored));
            }
        }
        let filter = consumer.spec.filter_subject.as_deref();
        let backlog = messages
            .range(consumer.cursor..)
            .filter(|(_, stored)| filter.is_none_or(|f| subject_matches(f, &stored.subject)))
            .count() as u64;
        for delivery in &mut batch {
            delivery.pending = backlog;
        }
        let next_deadline = consumer
            .pending
            .values()
            .map(|(deadline, _)| *deadline)
            .min();
        Ok((batch, next_deadline))
    }
}
