//! One bus conformance suite, run against the in-process bus and the real NATS server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tucdesk_svc::bus::{
    self, Bus, BusError, ConsumerSpec, Headers, MemoryBus, NatsBus, StreamSpec,
};
use tucdesk_svc::testing::{nats_url, unique_name};

const WAIT: Duration = Duration::from_secs(5);

/// A bus plus a subject prefix no other test uses (NATS streams may not overlap).
struct Fixture {
    bus: Arc<dyn Bus>,
    prefix: String,
    nats: Option<NatsBus>,
    streams: Vec<String>,
}

impl Fixture {
    fn memory() -> Self {
        Self {
            bus: Arc::new(MemoryBus::new()),
            prefix: unique_name("t"),
            nats: None,
            streams: Vec::new(),
        }
    }

    async fn nats() -> Self {
        let nats = NatsBus::connect(&nats_url(), "conformance")
            .await
            .expect("NATS must be running (see DEVELOPERS.md)");
        Self {
            bus: Arc::new(nats.clone()),
            prefix: unique_name("t"),
            nats: Some(nats),
            streams: Vec::new(),
        }
    }

    fn subject(&self, rest: &str) -> String {
        format!("{}.{rest}", self.prefix)
    }

    /// A new stream capturing `{prefix}.>`, under a fresh prefix (streams may not overlap).
    async fn stream(&mut self, ack_wait: Duration) -> (StreamSpec, ConsumerSpec) {
        self.prefix = unique_name("t");
        let name = unique_name("S");
        let mut spec = StreamSpec::new(&name, vec![format!("{}.>", self.prefix)]);
        // Test streams expire on their own should a failing test leave one behind.
        spec.max_age = Duration::from_secs(600);
        self.bus.ensure_stream(&spec).await.unwrap();
        self.streams.push(name.clone());
        let mut consumer = ConsumerSpec::new(&name, "worker");
        consumer.ack_wait = ack_wait;
        (spec, consumer)
    }

    async fn cleanup(self) {
        if let Some(nats) = self.nats {
            for stream in self.streams {
                nats.delete_stream(&stream).await.unwrap();
            }
        }
    }
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn pubsub_respects_wildcards(f: &Fixture) {
    let mut all = f.bus.subscribe(&f.subject("events.>")).await.unwrap();
    let mut logins = f.bus.subscribe(&f.subject("events.*.login")).await.unwrap();
    f.bus
        .publish(
            &f.subject("events.t1.login"),
            headers(&[("traceparent", "00-abc")]),
            Bytes::from_static(b"one"),
        )
        .await
        .unwrap();
    f.bus
        .publish(
            &f.subject("events.t1.logout"),
            Headers::new(),
            Bytes::from_static(b"two"),
        )
        .await
        .unwrap();

    let first = tokio::time::timeout(WAIT, all.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.payload, Bytes::from_static(b"one"));
    assert_eq!(
        first.headers.get("traceparent").map(String::as_str),
        Some("00-abc")
    );
    let second = tokio::time::timeout(WAIT, all.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.payload, Bytes::from_static(b"two"));

    let login = tokio::time::timeout(WAIT, logins.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(login.subject, f.subject("events.t1.login"));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), logins.next())
            .await
            .is_err(),
        "the logout event must not reach the login subscription"
    );
}

async fn request_reply_round_trips(f: &Fixture) {
    let mut service = f.bus.subscribe(&f.subject("rpc.echo")).await.unwrap();
    let responder = f.bus.clone();
    tokio::spawn(async move {
        while let Some(request) = service.next().await {
            let reply = request.reply.clone().unwrap();
            let mut answer = b"echo:".to_vec();
            answer.extend_from_slice(&request.payload);
            responder
                .publish(&reply, request.headers.clone(), Bytes::from(answer))
                .await
                .unwrap();
        }
    });
    let reply = f
        .bus
        .request(
            &f.subject("rpc.echo"),
            headers(&[("k", "v")]),
            Bytes::from_static(b"hi"),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(reply.payload, Bytes::from_static(b"echo:hi"));
    assert_eq!(reply.headers.get("k").map(String::as_str), Some("v"));
}

async fn request_without_responders_fails_at_once(f: &Fixture) {
    let started = std::time::Instant::now();
    let err = f
        .bus
        .request(
            &f.subject("rpc.nobody"),
            Headers::new(),
            Bytes::new(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::NoResponders { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "must not wait for the timeout"
    );
}

async fn request_to_a_silent_responder_times_out(f: &Fixture) {
    let _silent = f.bus.subscribe(&f.subject("rpc.silent")).await.unwrap();
    let err = f
        .bus
        .request(
            &f.subject("rpc.silent"),
            Headers::new(),
            Bytes::new(),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::TimedOut { .. }), "{err:?}");
}

async fn invalid_input_is_refused(f: &Fixture) {
    let too_big = Bytes::from(vec![0u8; bus::MAX_PAYLOAD + 1]);
    assert!(matches!(
        f.bus
            .publish(&f.subject("x"), Headers::new(), too_big)
            .await,
        Err(BusError::PayloadTooLarge { .. })
    ));
    assert!(matches!(
        f.bus.publish("a..b", Headers::new(), Bytes::new()).await,
        Err(BusError::Subject(_))
    ));
    assert!(matches!(
        f.bus
            .publish(&f.subject("*"), Headers::new(), Bytes::new())
            .await,
        Err(BusError::Subject(_))
    ));
    assert!(matches!(
        f.bus
            .stream_publish(&f.subject("x"), "", Headers::new(), Bytes::new())
            .await,
        Err(BusError::BadDedupId)
    ));
}

async fn stream_publish_deduplicates_by_id(f: &mut Fixture) {
    let (_, consumer_spec) = f.stream(Duration::from_secs(30)).await;
    let subject = f.subject("audit.team1.login");
    let first = f
        .bus
        .stream_publish(
            &subject,
            "event-1",
            headers(&[("h", "1")]),
            Bytes::from_static(b"a"),
        )
        .await
        .unwrap();
    let again = f
        .bus
        .stream_publish(
            &subject,
            "event-1",
            Headers::new(),
            Bytes::from_static(b"a"),
        )
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(first.sequence, again.sequence);
    f.bus
        .stream_publish(
            &subject,
            "event-2",
            Headers::new(),
            Bytes::from_static(b"b"),
        )
        .await
        .unwrap();

    let mut consumer = f.bus.durable_consumer(&consumer_spec).await.unwrap();
    let batch = consumer.fetch(10, WAIT).await.unwrap();
    let ids: Vec<_> = batch.iter().map(|d| d.dedup_id.clone().unwrap()).collect();
    assert_eq!(ids, ["event-1", "event-2"]);
    assert_eq!(batch[0].headers.get("h").map(String::as_str), Some("1"));
    assert_eq!(batch[0].delivered, 1);
    assert!(batch[0].stream_sequence < batch[1].stream_sequence);
    for delivery in batch {
        delivery.ack().await.unwrap();
    }
    assert!(
        consumer
            .fetch(10, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn unacked_messages_are_redelivered(f: &mut Fixture) {
    let (_, consumer_spec) = f.stream(Duration::from_secs(1)).await;
    let subject = f.subject("audit.team1.exec");
    f.bus
        .stream_publish(&subject, "e1", Headers::new(), Bytes::from_static(b"x"))
        .await
        .unwrap();
    let mut consumer = f.bus.durable_consumer(&consumer_spec).await.unwrap();
    let first = consumer.fetch(1, WAIT).await.unwrap();
    assert_eq!(first.len(), 1);
    drop(first); // processing "crashed": no ack

    let again = consumer.fetch(1, WAIT).await.unwrap();
    assert_eq!(
        again.len(),
        1,
        "the unacked message comes back after ack_wait"
    );
    assert_eq!(again[0].dedup_id.as_deref(), Some("e1"));
    assert_eq!(again[0].delivered, 2);
    for delivery in again {
        delivery.ack().await.unwrap();
    }
    assert!(
        consumer
            .fetch(1, Duration::from_millis(1500))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn durable_position_survives_reconnect(f: &mut Fixture) {
    let (_, consumer_spec) = f.stream(Duration::from_secs(30)).await;
    for i in 0..3 {
        f.bus
            .stream_publish(
                &f.subject("audit.t.a"),
                &format!("m{i}"),
                Headers::new(),
                Bytes::new(),
            )
            .await
            .unwrap();
    }
    let mut consumer = f.bus.durable_consumer(&consumer_spec).await.unwrap();
    let batch = consumer.fetch(2, WAIT).await.unwrap();
    assert_eq!(batch.len(), 2);
    for delivery in batch {
        delivery.ack().await.unwrap();
    }
    drop(consumer);

    let mut reopened = f.bus.durable_consumer(&consumer_spec).await.unwrap();
    let rest = reopened.fetch(10, WAIT).await.unwrap();
    let ids: Vec<_> = rest.iter().map(|d| d.dedup_id.clone().unwrap()).collect();
    assert_eq!(ids, ["m2"]);
}

async fn filtered_consumer_sees_only_its_subjects(f: &mut Fixture) {
    let (_, mut consumer_spec) = f.stream(Duration::from_secs(30)).await;
    consumer_spec.filter_subject = Some(f.subject("audit.team2.>"));
    f.bus
        .stream_publish(
            &f.subject("audit.team1.a"),
            "x1",
            Headers::new(),
            Bytes::new(),
        )
        .await
        .unwrap();
    f.bus
        .stream_publish(
            &f.subject("audit.team2.a"),
            "x2",
            Headers::new(),
            Bytes::new(),
        )
        .await
        .unwrap();
    let mut consumer = f.bus.durable_consumer(&consumer_spec).await.unwrap();
    let batch = consumer.fetch(10, WAIT).await.unwrap();
    let ids: Vec<_> = batch.iter().map(|d| d.dedup_id.clone().unwrap()).collect();
    assert_eq!(ids, ["x2"]);
}

async fn fetch_waits_for_a_late_message(f: &mut Fixture) {
    let (_, consumer_spec) = f.stream(Duration::from_secs(30)).await;
    let mut consumer = f.bus.durable_consumer(&consumer_spec).await.unwrap();
    let bus = f.bus.clone();
    let subject = f.subject("audit.t.late");
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        bus.stream_publish(&subject, "late", Headers::new(), Bytes::new())
            .await
            .unwrap();
    });
    let batch = consumer.fetch(1, WAIT).await.unwrap();
    assert_eq!(batch.len(), 1);
}

async fn overlapping_streams_are_refused(f: &mut Fixture) {
    let (spec, _) = f.stream(Duration::from_secs(30)).await;
    let mut clash = StreamSpec::new(unique_name("S"), vec![format!("{}.audit.*", f.prefix)]);
    clash.max_age = Duration::from_secs(600);
    let err = f.bus.ensure_stream(&clash).await.unwrap_err();
    assert!(matches!(err, BusError::StreamOverlap { .. }), "{err:?}");
    // Re-declaring the same stream is fine (an update).
    f.bus.ensure_stream(&spec).await.unwrap();
}

async fn publishing_outside_any_stream_is_an_error(f: &Fixture) {
    let err = f
        .bus
        .stream_publish(&unique_name("nostream"), "id", Headers::new(), Bytes::new())
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::NoSuchStream { .. }), "{err:?}");
    let missing = ConsumerSpec::new(unique_name("missing"), "w");
    assert!(matches!(
        f.bus.durable_consumer(&missing).await.unwrap_err(),
        BusError::NoSuchStream { .. }
    ));
}

async fn deliveries_report_the_backlog(f: &mut Fixture) {
    let (_, mut consumer_spec) = f.stream(Duration::from_secs(30)).await;
    consumer_spec.filter_subject = Some(f.subject("audit.wanted.>"));
    for i in 0..5 {
        let subject = f.subject(&format!("audit.wanted.{i}"));
        f.bus
            .stream_publish(&subject, &format!("w{i}"), Headers::new(), Bytes::new())
            .await
            .unwrap();
    }
    // Not for this consumer: never part of its backlog.
    f.bus
        .stream_publish(
            &f.subject("audit.other.x"),
            "o",
            Headers::new(),
            Bytes::new(),
        )
        .await
        .unwrap();
    let mut consumer = f.bus.durable_consumer(&consumer_spec).await.unwrap();
    let first = consumer.fetch(2, WAIT).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first.last().unwrap().pending, 3);
    let rest = consumer.fetch(10, WAIT).await.unwrap();
    assert_eq!(rest.len(), 3);
    assert_eq!(rest.last().unwrap().pending, 0);
}

async fn run_suite(mut f: Fixture) {
    pubsub_respects_wildcards(&f).await;
    request_reply_round_trips(&f).await;
    request_without_responders_fails_at_once(&f).await;
    request_to_a_silent_responder_times_out(&f).await;
    invalid_input_is_refused(&f).await;
    stream_publish_deduplicates_by_id(&mut f).await;
    unacked_messages_are_redelivered(&mut f).await;
    durable_position_survives_reconnect(&mut f).await;
    filtered_consumer_sees_only_its_subjects(&mut f).await;
    fetch_waits_for_a_late_message(&mut f).await;
    deliveries_report_the_backlog(&mut f).await;
    overlapping_streams_are_refused(&mut f).await;
    publishing_outside_any_stream_is_an_error(&f).await;
    f.cleanup().await;
}

#[tokio::test]
async fn memory_bus_conforms() {
    run_suite(Fixture::memory()).await;
}

#[tokio::test]
async fn nats_bus_conforms() {
    run_suite(Fixture::nats().await).await;
}

#[tokio::test]
async fn unreachable_nats_is_a_startup_error_naming_the_url() {
    let err = bus::connect("nats://watcher:s3cret@127.0.0.1:1", "t")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BusError::Connect { .. }), "{err:?}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("s3cret"), "password leaked: {text}");
}

#[tokio::test]
async fn unknown_bus_scheme_is_refused() {
    assert!(matches!(
        bus::connect("kafka://x", "t").await.unwrap_err(),
        BusError::UnsupportedScheme { .. }
    ));
}
