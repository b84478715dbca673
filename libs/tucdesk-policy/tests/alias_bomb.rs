//! YAML alias bombs ("billion laughs") are refused after a bounded amount of expansion.
//!
//! Each test is built so that, were the aliases expanded in full, parsing would get *past* the
//! point where it now stops and fail differently (or succeed), so the assertions on the message
//! catch a missing bound without measuring time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tucdesk_policy::{MAX_DOCUMENT_BYTES, Policy};

/// Start of the message of the crate's expansion budget.
const BUDGET_MESSAGE: &str = "expands (through YAML aliases) beyond the size limit";

/// The single error message of a refused document.
fn refusal(yaml: &str) -> String {
    assert!(
        yaml.len() <= MAX_DOCUMENT_BYTES,
        "the bomb itself must pass the size check"
    );
    let errors = Policy::parse(yaml)
        .expect_err("an alias bomb must be refused")
        .errors;
    assert_eq!(
        errors.len(),
        1,
        "refused while parsing, before validation: {errors:?}"
    );
    errors.into_iter().next().unwrap().message
}

#[test]
fn a_wide_alias_fan_out_stops_at_the_expansion_budget() {
    // One 200 KB string repeated 200 times through aliases: 40 MB expanded, from a 201 KB
    // document. Only 200 alias jumps, far below yaml_serde's own repetition limit, so without
    // the budget this would deserialize completely and fail later, in validation, with 200
    // "entry longer than 512 bytes" errors.
    let big = "x".repeat(200_000);
    let aliases = vec!["*big"; 200].join(", ");
    let yaml = format!(
        "version: 1\nmode: allow\nrules:\n  - name: bomb\n    effect: deny\n    reason: &big \"{big}\"\n    users: [{aliases}]\n"
    );
    let message = refusal(&yaml);
    assert!(message.contains(BUDGET_MESSAGE), "{message}");
}

#[test]
fn nested_aliases_across_rules_and_lists_are_refused() {
    // A 512-byte string, 256 times in a list, that list in seven matchers of one rule, and that
    // rule 256 times: 256 x 7 x 256 x 512 bytes = 235 MB expanded from a few KiB. Fully
    // expanded it would pass every structural bound (256 rules, 256 entries per list) and
    // deserialize, then fail validation many times over. yaml_serde's own cap (100 alias jumps
    // per event, ~60 000 here) would stop it only after tens of MB; the budget stops it after
    // about a thousand 512-byte copies.
    let leaf = "l".repeat(512);
    let list = vec!["*leaf"; 256].join(", ");
    let mut yaml = format!(
        "version: 1\nmode: allow\nrules:\n  - &rule\n    name: bomb\n    effect: deny\n    reason: &leaf {leaf}\n    users: &list [{list}]\n"
    );
    for key in ["agents", "tags", "principals", "roles", "kinds", "commands"] {
        yaml.push_str(&format!("    {key}: *list\n"));
    }
    for _ in 1..256 {
        yaml.push_str("  - *rule\n");
    }
    let message = refusal(&yaml);
    assert!(message.contains(BUDGET_MESSAGE), "{message}");
}

#[test]
fn the_classic_billion_laughs_is_refused() {
    // Nine levels of nine-fold aliases: 9^9 = 387 million leaves. Nested lists have no place in
    // a policy, so wherever the bomb sits it is refused on its shape, at its first alias.
    let mut levels = vec![
        "  a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]"
            .to_owned(),
    ];
    for (index, name) in ["b", "c", "d", "e", "f", "g", "h", "i"].iter().enumerate() {
        let previous = ["a", "b", "c", "d", "e", "f", "g", "h"][index];
        let items = vec![format!("*{previous}"); 9].join(", ");
        levels.push(format!("  {name}: &{name} [{items}]"));
    }
    let bomb = levels.join("\n");
    // As an unknown top-level field, and as the value of a known string field.
    let top = format!("version: 1\nmode: allow\nlol:\n{bomb}\n");
    assert!(refusal(&top).contains("unknown field `lol`"));
    let in_rule = format!(
        "version: 1\nmode: allow\nrules:\n  - name: bomb\n    effect: deny\n    reason: {{\n{bomb}\n    }}\n"
    );
    assert!(refusal(&in_rule).contains("expected a string"));
}
