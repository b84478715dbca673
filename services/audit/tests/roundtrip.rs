//! Export → verify roundtrip at scale: 100 000 entries of one team go through the service's
//! real append path (published to the stream as producers do, appended by the ingest loop in
//! batches of 1 000), come back through the gRPC Export API, are written as NDJSON exactly as
//! `tucdesk audit export` writes them, and verify offline with `verify_export`. One flipped
//! byte inside one entry's event is then named by its seq.
//!
//! On both backends: embedded (SQLite, in-process bus) and real (Postgres, NATS). Optimised
//! (`cargo test --release -p tucdesk-audit --test roundtrip`) the two take about a minute
//! together on the 2-core development machine. Unoptimised, the ~250 000 Ed25519 signatures
//! and verifications, SHA-256 and SQLite of the dev profile (dependencies at opt-level 0)
//! took 22 minutes for the embedded one alone, so an unoptimised build runs the same test with
//! 5 000 entries; `make test` runs this file optimised as well, with the full 100 000.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::time::Duration;

use common::{Api, Fixture, event, req, team};
use tokio::task::JoinSet;
use tucdesk_audit::convert::{checkpoint_from_proto, entry_from_proto};
use tucdesk_audit::store::heads;
use tucdesk_crypto::audit::ChainFailure;
use tucdesk_crypto::audit::export::{ExportFailure, verify_export};
use tucdesk_proto::v1 as pb;
use tucdesk_testkit::{Backend, on_both_backends};
use tucdesk_token::Role;

on_both_backends!(an_export_of_the_whole_log_verifies_and_one_flipped_byte_names_its_seq);

/// Entries in the log: 100 000 in an optimised build (`make test` runs this file with
/// `--release`); an unoptimised build, which `cargo test --workspace` also runs, takes the
/// same path with 5 000, because its unoptimised Ed25519 and SQLite would need ~20 minutes for
/// the full size.
const ENTRIES: u64 = if cfg!(debug_assertions) {
    5_000
} else {
    100_000
};
/// The entry whose event is tampered with.
const TAMPERED_SEQ: u64 = if cfg!(debug_assertions) {
    4_321
} else {
    54_321
};
/// Publishers running at once (NATS acknowledges every publish: one at a time would spend
/// most of the test waiting for round trips).
const PUBLISHERS: usize = 16;
/// Bound on waiting for the ingest loop: only there so that a stuck loop fails the test
/// instead of hanging it, far above what the append takes on a slow machine (not a timing
/// assertion).
const APPEND_DEADLINE: Duration = Duration::from_secs(900);

async fn an_export_of_the_whole_log_verifies_and_one_flipped_byte_names_its_seq(backend: Backend) {
    let f = Fixture::with(backend, |c| c.batch_size = 1000).await;
    let t = team("roundtrip");
    publish_all(&f, &t).await;
    let api = Api::start(f).await;
    wait_for_head(&api.f, &t).await;

    let ndjson = export_ndjson(&api, &t).await;
    let key = api.f.key().verifying_key();
    let summary = verify_export(|| Ok(ndjson.as_slice()), &key).unwrap();
    assert_eq!(summary.team_id, t);
    assert_eq!(summary.entries, ENTRIES);
    assert!(summary.checkpoints >= 1, "{summary:?}");
    // The export is a snapshot ending with a checkpoint of the whole log.
    assert_eq!(summary.checkpointed, ENTRIES);

    let (tampered, line) = flip_one_byte_in_event(&ndjson, TAMPERED_SEQ);
    let err = verify_export(|| Ok(tampered.as_slice()), &key).unwrap_err();
    assert_eq!(err.seq, Some(TAMPERED_SEQ), "{err}");
    assert_eq!(err.line, line, "{err}");
    assert_eq!(
        err.reason,
        ExportFailure::Chain(ChainFailure::BadHash),
        "{err}"
    );
    api.stop().await;
}

/// Publishes [`ENTRIES`] events of `team` as the outbox publisher does, [`PUBLISHERS`] at a
/// time. The stream's order (not the order of publishing) is the chain's order.
async fn publish_all(f: &Fixture, team: &str) {
    let per_publisher = ENTRIES.div_ceil(PUBLISHERS as u64);
    let mut publishers = JoinSet::new();
    for p in 0..PUBLISHERS as u64 {
        let (bus, team) = (f.bus.clone(), team.to_owned());
        let events: Vec<_> = (p * per_publisher..((p + 1) * per_publisher).min(ENTRIES))
            .map(|i| event(&team, "exec.command", &format!("u{i}")))
            .map(|e| (f.subject(&e), e))
            .collect();
        publishers.spawn(async move {
            for (subject, e) in events {
                bus.stream_publish(
                    &subject,
                    &e.event_id,
                    Default::default(),
                    prost::Message::encode_to_vec(&e).into(),
                )
                .await
                .unwrap();
            }
        });
    }
    while let Some(done) = publishers.join_next().await {
        done.unwrap();
    }
}

/// Waits until the ingest loop has appended every event.
async fn wait_for_head(f: &Fixture, team: &str) {
    let deadline = tokio::time::Instant::now() + APPEND_DEADLINE;
    loop {
        let size = heads::load(&f.db, team)
            .await
            .unwrap()
            .map_or(0, |head| head.tree_size);
        assert!(size <= ENTRIES, "more entries than events: {size}");
        if size == ENTRIES {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ingest loop is stuck at {size} of {ENTRIES} entries"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The team's whole log through the gRPC Export API, one NDJSON line per item, converted and
/// formatted exactly as `tucdesk audit export` does.
async fn export_ndjson(api: &Api, team: &str) -> Vec<u8> {
    let mut client = api.client().await;
    let token = api.token(team, Role::Auditor);
    let request = pb::ExportAuditRequest {
        filter: Some(pb::AuditFilter::default()),
    };
    let mut stream = client
        .export(req(request, &token))
        .await
        .unwrap()
        .into_inner();
    let mut sink = Vec::new();
    while let Some(item) = stream.message().await.unwrap() {
        let line = match item.item.unwrap() {
            pb::export_item::Item::Entry(e) => {
                entry_from_proto(&e).unwrap().to_json_line().unwrap()
            }
            pb::export_item::Item::Checkpoint(c) => {
                serde_json::to_string(&checkpoint_from_proto(&c).unwrap()).unwrap()
            }
        };
        writeln!(sink, "{line}").unwrap();
    }
    sink
}

/// `ndjson` with one byte of entry `seq`'s event changed (a letter of its target, so the line
/// still parses as an entry), and that line's 1-based number.
fn flip_one_byte_in_event(ndjson: &[u8], seq: u64) -> (Vec<u8>, u64) {
    let prefix = format!("{{\"seq\":{seq},");
    let mut start = 0;
    for (index, line) in ndjson.split(|&b| b == b'\n').enumerate() {
        if line.starts_with(prefix.as_bytes()) {
            let at = find(line, b"\"target\":\"agent:AAAA\"").expect("the event's target") + 17;
            assert_eq!(line[at], b'A');
            let mut tampered = ndjson.to_vec();
            tampered[start + at] ^= 0x01;
            return (tampered, index as u64 + 1);
        }
        start += line.len() + 1;
    }
    panic!("entry {seq} is not in the export");
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
