//! The OCSF catalogue covers every audit action the services' code names: a new action added
//! to a producer without a mapping fails here (it would still be exported, as API Activity
//! "Other", but unclassified).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tucdesk_audit_format::ocsf::lookup;

/// Source trees of the services that record audit events.
const PRODUCERS: [&str; 5] = [
    "services/auth/src",
    "services/rendezvous/src",
    "services/relay/src",
    "services/audit/src",
    "libs/tucdesk-svc/src",
];

/// First segments of audit actions (docs/protocol.md §11).
const AREAS: [&str; 9] = [
    "auth",
    "agent",
    "enrollment_token",
    "policy",
    "approval",
    "session",
    "recording",
    "relay",
    "audit",
];

/// Literals that look like actions but are not: a tracing span name, a file name.
const NOT_ACTIONS: [&str; 2] = ["audit.append_batch", "audit.key"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_segment(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// String literals of the form `"<area>.<name>"` in `code`.
fn action_literals(code: &str, out: &mut BTreeSet<String>) {
    for (at, _) in code.match_indices('"') {
        let rest = &code[at + 1..];
        let len = rest
            .bytes()
            .take_while(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'.'
            })
            .count();
        if rest.as_bytes().get(len) != Some(&b'"') {
            continue;
        }
        let literal = &rest[..len];
        let parts: Vec<&str> = literal.split('.').collect();
        if parts.len() == 2 && AREAS.contains(&parts[0]) && parts.iter().all(|p| is_segment(p)) {
            out.insert(literal.to_owned());
        }
    }
}

#[test]
fn every_action_the_services_name_has_an_ocsf_mapping() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in PRODUCERS {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "the producers' sources were found");
    let mut found = BTreeSet::new();
    for file in files {
        let code = std::fs::read_to_string(&file).unwrap();
        // Unit tests use made-up actions; only production code counts.
        let code = code.split("#[cfg(test)]").next().unwrap_or_default();
        action_literals(code, &mut found);
    }
    for known in ["auth.login", "session.start", "agent.registration_rejected"] {
        assert!(found.contains(known), "the scan finds {known}");
    }
    let unmapped: Vec<&String> = found
        .iter()
        .filter(|action| !NOT_ACTIONS.contains(&action.as_str()) && lookup(action).is_none())
        .collect();
    assert!(
        unmapped.is_empty(),
        "actions without an OCSF mapping (add them to ocsf/catalogue.rs and docs/audit.md): {unmapped:?}"
    );
}
