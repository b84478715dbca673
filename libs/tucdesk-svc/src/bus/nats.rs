//! NATS implementation of [`Bus`]: core NATS for publish/subscribe and request/reply,
//! JetStream for durable streams (de-duplication via the `Nats-Msg-Id` header).

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{
    Acker, Bus, BusError, ConsumerSpec, Delivery, DurableConsumer, Headers, Message, PublishAck,
    StreamSpec, Subscription, check_dedup_id, check_payload, validate_pattern, validate_subject,
};
use crate::redact::redact_url;

/// How long the first connection may take before startup fails with an error naming the URL.
pub const NATS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Upper bound on any single JetStream API call (stream/consumer management, publish acks).
pub const JETSTREAM_API_TIMEOUT: Duration = Duration::from_secs(10);

/// JetStream's de-duplication header; surfaced as [`Delivery::dedup_id`], not as a header.
const NATS_MESSAGE_ID_HEADER: &str = "Nats-Msg-Id";

/// NATS + JetStream bus. Cloning shares the connection.
#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("state", &self.client.connection_state())
            .finish_non_exhaustive()
    }
}

fn backend(err: impl std::fmt::Display) -> BusError {
    BusError::Backend(err.to_string())
}

fn to_nats_headers(headers: &Headers) -> async_nats::HeaderMap {
    let mut map = async_nats::HeaderMap::new();
    for (name, value) in headers {
        map.insert(name.as_str(), value.as_str());
    }
    map
}

fn from_nats_headers(headers: Option<&async_nats::HeaderMap>) -> Headers {
    let mut map = Headers::new();
    if let Some(headers) = headers {
        for (name, values) in headers.iter() {
            if let Some(value) = values.last() {
                map.insert(name.to_string(), value.to_string());
            }
        }
    }
    map
}

impl NatsBus {
    /// Connects to `url`; fails (rather than retrying forever) when the server is not there
    /// at startup. After that the client reconnects by itself.
    pub async fn connect(url: &str, client_name: &str) -> Result<Self, BusError> {
        let options = async_nats::ConnectOptions::new()
            .name(client_name)
            .connection_timeout(NATS_CONNECT_TIMEOUT);
        let client = async_nats::connect_with_options(url, options)
            .await
            .map_err(|err| BusError::Connect {
                url: redact_url(url),
                reason: err.to_string(),
            })?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(JETSTREAM_API_TIMEOUT);
        Ok(Self { client, jetstream })
    }

    /// Deletes a stream and everything in it (operations and test cleanup; no service
    /// deletes streams at run time).
    pub async fn delete_stream(&self, name: &str) -> Result<(), BusError> {
        self.jetstream
            .delete_stream(name)
            .await
            .map(|_| ())
            .map_err(backend)
    }
}

#[async_trait]
impl Bus for NatsBus {
    async fn publish(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
    ) -> Result<(), BusError> {
        validate_subject(subject)?;
        check_payload(&payload)?;
        self.client
            .publish_with_headers(subject.to_owned(), to_nats_headers(&headers), payload)
            .await
            .map_err(backend)
    }

    async fn subscribe(&self, pattern: &str) -> Result<Subscription, BusError> {
        validate_pattern(pattern)?;
        let subscriber = self
            .client
            .subscribe(pattern.to_owned())
            .await
            .map_err(backend)?;
        // The subscription must be registered on the server before we return, so that a
        // publish right after `subscribe` is seen, as with the in-process bus.
        self.client.flush().await.map_err(backend)?;
        let messages = subscriber.map(|message| Message {
            subject: message.subject.to_string(),
            headers: from_nats_headers(message.headers.as_ref()),
            payload: message.payload,
            reply: message.reply.map(|reply| reply.to_string()),
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
        let request = async_nats::Request::new()
            .payload(payload)
            .headers(to_nats_headers(&headers))
            .timeout(Some(timeout));
        match self.client.send_request(subject.to_owned(), request).await {
            Ok(reply) => Ok(Message {
                subject: reply.subject.to_string(),
                headers: from_nats_headers(reply.headers.as_ref()),
                payload: reply.payload,
                reply: None,
            }),
            Err(err) => Err(match err.kind() {
                async_nats::RequestErrorKind::NoResponders => BusError::NoResponders {
                    subject: subject.to_owned(),
                },
                async_nats::RequestErrorKind::TimedOut => BusError::TimedOut {
                    subject: subject.to_owned(),
                    timeout,
                },
                _ => backend(err),
            }),
        }
    }

    async fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), BusError> {
        for pattern in &spec.subjects {
            validate_pattern(pattern)?;
        }
        let config = stream::Config {
            name: spec.name.clone(),
            subjects: spec.subjects.clone(),
            duplicate_window: spec.duplicate_window,
            max_age: spec.max_age,
            max_messages: i64::try_from(spec.max_messages).unwrap_or(i64::MAX),
            storage: stream::StorageType::File,
            ..Default::default()
        };
        self.jetstream
            .create_or_update_stream(config)
            .await
            .map(|_| ())
            .map_err(|err| match err.kind() {
                jetstream::context::CreateStreamErrorKind::JetStream(js)
                    if js.error_code() == jetstream::ErrorCode::STREAM_SUBJECT_OVERLAP =>
                {
                    BusError::StreamOverlap {
                        stream: spec.name.clone(),
                        existing: "(another stream)".to_owned(),
                    }
                }
                _ => backend(err),
            })
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
        // `headers` replaces the whole map, so the id header must be set after it.
        let publish = jetstream::message::PublishMessage::build()
            .headers(to_nats_headers(&headers))
            .message_id(dedup_id)
            .payload(payload);
        // Without a stream capturing the subject nobody answers the publish; both the send
        // and the ack can report that.
        let no_stream = |err: jetstream::context::PublishError| match err.kind() {
            jetstream::context::PublishErrorKind::StreamNotFound => BusError::NoSuchStream {
                stream: format!("(none captures {subject})"),
            },
            _ => backend(err),
        };
        let ack = self
            .jetstream
            .send_publish(subject.to_owned(), publish)
            .await
            .map_err(no_stream)?
            .await
            .map_err(no_stream)?;
        Ok(PublishAck {
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    async fn durable_consumer(
        &self,
        spec: &ConsumerSpec,
    ) -> Result<Box<dyn DurableConsumer>, BusError> {
        if let Some(filter) = &spec.filter_subject {
            validate_pattern(filter)?;
        }
        let config = pull::Config {
            durable_name: Some(spec.durable_name.clone()),
            filter_subject: spec.filter_subject.clone().unwrap_or_default(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: spec.ack_wait,
            max_ack_pending: i64::try_from(spec.max_ack_pending).unwrap_or(i64::MAX),
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        };
        let consumer = self
            .jetstream
            .create_consumer_on_stream(config, spec.stream.as_str())
            .await
            .map_err(|err| match err.kind() {
                jetstream::stream::ConsumerErrorKind::JetStream(js)
                    if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    BusError::NoSuchStream {
                        stream: spec.stream.clone(),
                    }
                }
                _ => backend(err),
            })?;
        Ok(Box::new(NatsConsumer { consumer }))
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.client.flush().await.map_err(backend)
    }
}

struct NatsConsumer {
    consumer: jetstream::consumer::PullConsumer,
}

impl std::fmt::Debug for NatsConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConsumer").finish_non_exhaustive()
    }
}

#[async_trait]
impl DurableConsumer for NatsConsumer {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let mut messages = self
            .consumer
            .fetch()
            .max_messages(max.max(1))
            .expires(wait)
            .messages()
            .await
            .map_err(backend)?;
        let mut batch = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message.map_err(backend)?;
            let info = message.info().map_err(backend)?;
            let (stream_sequence, delivered, pending) = (
                info.stream_sequence,
                u64::try_from(info.delivered).unwrap_or(1),
                info.pending,
            );
            let dedup_id = message
                .headers
                .as_ref()
                .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|value| value.to_string());
            let mut headers = from_nats_headers(message.headers.as_ref());
            headers.remove(NATS_MESSAGE_ID_HEADER);
            batch.push(Delivery {
                subject: message.subject.to_string(),
                headers,
                payload: message.payload.clone(),
                dedup_id,
                stream_sequence,
                delivered,
                pending,
                acker: Acker::Nats(Box::new(message)),
            });
        }
        Ok(batch)
    }
}
