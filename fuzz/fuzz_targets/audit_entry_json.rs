//! Audit exports as `tucdesk audit verify` and the SIEM path read them.
//!
//! First byte even: the rest is one NDJSON line for `Entry::from_json_line`;
//! odd: a `SignedCheckpoint` JSON document.
//! - Parsing never panics and accepts only JSON objects (the documented
//!   format); whatever parses serialises and parses back to the
//!   same value, and its hash does not change on the way (a verifier that
//!   re-reads an export must compute the bytes that were signed).
//! - Canonical bytes stay within `MAX_CANONICAL_ENTRY_BYTES`.
//! - Only the signed objects in vectors.json verify under the vectors' key,
//!   and an entry that verifies has exactly the vector's fields: the
//!   canonical encoding is injective, so no other event shares its bytes.
#![no_main]

use std::sync::OnceLock;

use ed25519_dalek::VerifyingKey;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tucdesk_crypto::audit::{
    Entry, MAX_CANONICAL_ENTRY_BYTES, MAX_CONTEXT_BYTES, MAX_CONTEXT_DEPTH, canonical_json,
    verify_entry,
};
use tucdesk_crypto::merkle::{SignedCheckpoint, empty_root};
use tucdesk_fuzz::{vector, vector_array};

struct Fixture {
    entry_key: VerifyingKey,
    entries: Vec<Entry>,
    checkpoint_key: VerifyingKey,
    checkpoint: SignedCheckpoint,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let entries = vector("/audit_chain/entries")
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| {
                let line = e["export_line"].as_str().expect("export_line");
                Entry::from_json_line(line).expect("vector entry parses")
            })
            .collect();
        let key =
            |p: &str| VerifyingKey::from_bytes(&vector_array(p)).expect("vector verifying key");
        Fixture {
            entry_key: key("/audit_chain/verifying_key_hex"),
            entries,
            checkpoint_key: key("/merkle/checkpoint/verifying_key_hex"),
            checkpoint: serde_json::from_value(vector("/merkle/checkpoint/signed").clone())
                .expect("vector checkpoint parses"),
        }
    })
}

fn context_bytes(e: &Entry) -> Vec<u8> {
    canonical_json::to_vec(&e.event.context, MAX_CONTEXT_BYTES, MAX_CONTEXT_DEPTH)
        .expect("context of a hashable entry is canonical")
}

/// The export format is JSON objects all the way down (docs/audit-format.md):
/// the line, `event`, `actor` and a present `policy_result`.
fn objects_only(line: &str) -> bool {
    let Ok(Value::Object(top)) = serde_json::from_str::<Value>(line) else {
        return false;
    };
    let Some(Value::Object(event)) = top.get("event") else {
        return false;
    };
    matches!(event.get("actor"), Some(Value::Object(_)))
        && matches!(
            event.get("policy_result"),
            None | Some(Value::Null | Value::Object(_))
        )
}

fn entry_line(line: &str) {
    let Ok(entry) = Entry::from_json_line(line) else {
        return;
    };
    assert!(
        objects_only(line),
        "an export line that is not a JSON object parsed"
    );
    let again_line = entry.to_json_line().expect("a parsed entry serialises");
    let again = Entry::from_json_line(&again_line).expect("a serialised entry parses");
    assert_eq!(again, entry, "export line does not roundtrip");
    let hash = entry.compute_hash();
    assert_eq!(
        again.compute_hash(),
        hash,
        "hash changed across a JSON roundtrip"
    );
    if hash.is_ok() {
        let bytes = entry
            .canonical_bytes()
            .expect("hashable entry has canonical bytes");
        assert!(
            bytes.len() <= MAX_CANONICAL_ENTRY_BYTES,
            "{} bytes",
            bytes.len()
        );
    }

    let fx = fixture();
    if verify_entry(&entry, &fx.entry_key).is_ok() {
        let signed = fx
            .entries
            .iter()
            .find(|v| v.hash == entry.hash)
            .expect("an entry the fuzzer made up verified");
        assert_eq!(entry.seq, signed.seq);
        assert_eq!(entry.prev_hash, signed.prev_hash);
        assert_eq!(entry.sig, signed.sig);
        let (mut a, mut b) = (entry.event.clone(), signed.event.clone());
        a.context.clear();
        b.context.clear();
        assert_eq!(a, b, "another event verified under a vector's signature");
        assert_eq!(context_bytes(&entry), context_bytes(signed));
        verify_entry(&again, &fx.entry_key).expect("re-read export still verifies");
    }
}

fn checkpoint_json(text: &str) {
    let Ok(signed) = SignedCheckpoint::from_json(text) else {
        return;
    };
    assert!(
        matches!(
            serde_json::from_str::<Value>(text),
            Ok(Value::Object(ref o)) if matches!(o.get("checkpoint"), Some(Value::Object(_)))
        ),
        "a checkpoint that is not a JSON object parsed"
    );
    let again: SignedCheckpoint =
        serde_json::from_str(&serde_json::to_string(&signed).expect("serialises"))
            .expect("parses back");
    assert_eq!(again, signed, "checkpoint JSON does not roundtrip");
    if signed.checkpoint.canonical_bytes().is_ok() && signed.checkpoint.tree_size == 0 {
        assert_eq!(signed.checkpoint.root_hash, empty_root());
    }
    let fx = fixture();
    if signed.verify(&fx.checkpoint_key).is_ok() {
        assert_eq!(
            signed, fx.checkpoint,
            "a checkpoint the fuzzer made up verified"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    if mode % 2 == 0 {
        entry_line(text);
    } else {
        checkpoint_json(text);
    }
});
