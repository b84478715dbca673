//! Export verification speed: an NDJSON export of one team's chain built with the crypto
//! crate (`ChainBuilder` entries, a signed checkpoint every
//! [`EXPORT_CHECKPOINT_SPACING`] entries and one at the end, the lines the service's export
//! and `tucdesk audit export` write), then `verify_export` over it, timed. Building the chain
//! also times hashing and signing alone, without any database.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use ed25519_dalek::SigningKey;
use tucdesk_audit::export::EXPORT_CHECKPOINT_SPACING;
use tucdesk_crypto::audit::export::verify_export;
use tucdesk_crypto::audit::{Actor, ActorKind, AuditEvent, ChainBuilder};
use tucdesk_crypto::merkle::{Checkpoint, MerkleAccumulator};

/// Fewest and most entries in the verified export.
pub const MIN_EXPORT_ENTRIES: usize = 1000;
pub const MAX_EXPORT_ENTRIES: usize = 1_000_000;

/// Refuses an export size out of bounds (before any cell runs).
pub fn check(entries: usize) -> anyhow::Result<()> {
    if !(MIN_EXPORT_ENTRIES..=MAX_EXPORT_ENTRIES).contains(&entries) {
        bail!("--export-entries must be between {MIN_EXPORT_ENTRIES} and {MAX_EXPORT_ENTRIES}");
    }
    Ok(())
}

pub fn run(entries: usize) -> anyhow::Result<()> {
    check(entries)?;
    let key = SigningKey::from_bytes(&tucdesk_crypto::rng::random_array::<32>()?);
    let built = build(entries, &key)?;
    println!(
        "  hash + sign alone (ChainBuilder::append, no database): {:.0} entries/s",
        entries as f64 / built.signing.as_secs_f64()
    );
    let started = Instant::now();
    let summary = verify_export(|| Ok(built.ndjson.as_slice()), &key.verifying_key())
        .map_err(|err| anyhow::anyhow!("the bench's own export does not verify: {err}"))?;
    let took = started.elapsed();
    if summary.entries != entries as u64 || summary.checkpoints != built.checkpoints {
        bail!("verify_export saw {summary:?}");
    }
    println!(
        "export verification (verify_export, in memory): {} entries + {} checkpoints, {:.1} MB \
         in {:.2} s = {:.0} entries/s",
        summary.entries,
        summary.checkpoints,
        built.ndjson.len() as f64 / 1e6,
        took.as_secs_f64(),
        entries as f64 / took.as_secs_f64()
    );
    Ok(())
}

struct Built {
    ndjson: Vec<u8>,
    checkpoints: usize,
    /// Time spent in `ChainBuilder::append` (canonical bytes, SHA-256, Ed25519).
    signing: Duration,
}

fn build(entries: usize, key: &SigningKey) -> anyhow::Result<Built> {
    let team = format!("bench-team-{}", uuid::Uuid::now_v7().simple());
    let mut chain = ChainBuilder::new(team.clone())?;
    let mut accumulator = MerkleAccumulator::new();
    let mut ndjson = Vec::new();
    let (mut checkpoints, mut signing) = (0, Duration::ZERO);
    let base_ms = u64::try_from(tucdesk_svc::sql::now_ms())?;
    for i in 1..=entries as u64 {
        let event = event(&team, i, base_ms + i);
        let started = Instant::now();
        let entry = chain.append(event, key)?;
        signing += started.elapsed();
        accumulator.push_entry_hash(&entry.hash)?;
        ndjson.extend_from_slice(entry.to_json_line()?.as_bytes());
        ndjson.push(b'\n');
        if i % EXPORT_CHECKPOINT_SPACING == 0 || i == entries as u64 {
            let signed = Checkpoint {
                team_id: team.clone(),
                tree_size: i,
                root_hash: accumulator.root(),
                timestamp_ms: base_ms + i,
                key_id: "bench".into(),
            }
            .sign(key)
            .context("signing a checkpoint")?;
            ndjson.extend_from_slice(serde_json::to_string(&signed)?.as_bytes());
            ndjson.push(b'\n');
            checkpoints += 1;
        }
    }
    Ok(Built {
        ndjson,
        checkpoints,
        signing,
    })
}

/// The crypto form of the events the append cells publish.
fn event(team: &str, i: u64, occurred_at: u64) -> AuditEvent {
    let context = serde_json::json!({
        "outcome": "success",
        "source": "agent",
        "exit_code": 0,
        "argv": ["ls", "-l", format!("/var/log/{i}")],
    });
    AuditEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        team_id: team.to_owned(),
        actor: Actor {
            kind: ActorKind::User,
            id: format!("0193a8c4-0000-7000-8000-{:012x}", i % 50),
            display: Some("operator@acme.example".into()),
        },
        action: "exec.command".into(),
        target: format!("agent:{:08X}", i % 1000),
        occurred_at,
        session_id: Some(format!("0193a8c4-0000-7000-9000-{:012x}", i / 20)),
        policy_result: None,
        context: match context {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        },
    }
}
