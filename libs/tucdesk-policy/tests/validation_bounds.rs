//! Validation errors for the bounds of the language: sizes, counts, lengths, durations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{policy, single_error, with_rule};
use tucdesk_policy::limits::{
    MAX_COMMAND_PATTERNS_PER_RULE, MAX_ENTRY_BYTES, MAX_LIST_ENTRIES, MAX_PATTERN_BYTES,
    MAX_REASON_BYTES, MAX_REPORTED_ISSUES,
};
use tucdesk_policy::{MAX_DOCUMENT_BYTES, MAX_ISSUE_MESSAGE_BYTES, MAX_RULES};

#[test]
fn oversized_documents_are_refused_before_parsing() {
    let padding = format!(
        "version: 1\nmode: allow\n#{}\n",
        "x".repeat(MAX_DOCUMENT_BYTES)
    );
    let error = single_error(&padding, "limit is 262144", 0);
    assert_eq!(error.column, 0);
    let just_fits = format!(
        "version: 1\nmode: allow\n#{}",
        "x".repeat(MAX_DOCUMENT_BYTES - 24)
    );
    assert_eq!(just_fits.len(), MAX_DOCUMENT_BYTES);
    policy(&just_fits);
}

#[test]
fn empty_and_overlong_entries_are_errors() {
    single_error(&with_rule("effect: deny\ntags: ['']"), "empty entry", 6);
    let long = "t".repeat(MAX_ENTRY_BYTES + 1);
    single_error(
        &with_rule(&format!("effect: deny\ntags: [{long}]")),
        "longer than 512 bytes",
        6,
    );
    policy(&with_rule(&format!(
        "effect: deny\ntags: [{}]",
        "t".repeat(MAX_ENTRY_BYTES)
    )));
}

#[test]
fn lists_and_rule_counts_are_bounded() {
    let entries = |n: usize| {
        (0..n)
            .map(|i| format!("u{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    policy(&with_rule(&format!(
        "effect: deny\nusers: [{}]",
        entries(MAX_LIST_ENTRIES)
    )));
    single_error(
        &with_rule(&format!(
            "effect: deny\nusers: [{}]",
            entries(MAX_LIST_ENTRIES + 1)
        )),
        "more than 256 entries",
        6,
    );

    let rules = |n: usize| {
        (0..n)
            .map(|i| format!("  - {{name: r{i}, effect: deny, roles: [viewer]}}\n"))
            .collect::<String>()
    };
    policy(&format!(
        "version: 1\nmode: allow\nrules:\n{}",
        rules(MAX_RULES)
    ));
    // yaml_serde places this at the start of the list.
    single_error(
        &format!("version: 1\nmode: allow\nrules:\n{}", rules(MAX_RULES + 1)),
        "more than 256 entries",
        4,
    );
}

#[test]
fn command_patterns_are_checked() {
    single_error(
        &with_rule("effect: deny\ncommands: ['rm (']"),
        "invalid command pattern",
        6,
    );
    single_error(
        &with_rule("effect: deny\ncommands:\n  - ok\n  - '\\w{50}'"),
        "compiles to more than 256 KiB",
        8,
    );
    single_error(
        &with_rule(&format!(
            "effect: deny\ncommands: ['{}']",
            "a".repeat(MAX_PATTERN_BYTES + 1)
        )),
        "longer than 1024 bytes",
        6,
    );
    let many = (0..=MAX_COMMAND_PATTERNS_PER_RULE)
        .map(|i| format!("'^cmd{i}$'"))
        .collect::<Vec<_>>()
        .join(", ");
    single_error(
        &with_rule(&format!("effect: deny\ncommands: [{many}]")),
        "more than 64 patterns",
        6,
    );
}

#[test]
fn approval_timeouts_are_checked() {
    let with_timeout =
        |timeout: &str| format!("version: 1\nmode: allow\napproval:\n  timeout: {timeout}\n");
    for bad in [
        "15",
        "15 m",
        "1d",
        "1.5h",
        "30m1h",
        "0s",
        "59s",
        "24h1s",
        "25h",
        "99999999999h",
    ] {
        single_error(&with_timeout(bad), "approval.timeout", 4);
    }
    for (good, seconds) in [
        ("1m", 60),
        ("90s", 90),
        ("1h30m", 5400),
        ("24h", 86_400),
        ("\"15m\"", 900),
    ] {
        assert_eq!(
            policy(&with_timeout(good)).approval_timeout().as_secs(),
            seconds,
            "{good}"
        );
    }
}

#[test]
fn reasons_are_checked() {
    single_error(
        &with_rule(&format!(
            "effect: deny\nreason: {}",
            "r".repeat(MAX_REASON_BYTES + 1)
        )),
        "longer than 512 bytes",
        6,
    );
    policy(&with_rule(&format!(
        "effect: deny\nreason: {}",
        "r".repeat(MAX_REASON_BYTES)
    )));
    single_error(
        &with_rule("effect: deny\nreason: \"\\e[2J gotcha\""),
        "control characters",
        6,
    );
    single_error(
        &with_rule("effect: deny\nreason: |\n  two\n  lines"),
        "control characters",
        6,
    );
    single_error(
        &with_rule("effect: deny\nreason: \"pay \\u202Eredlof\""),
        "bidi overrides",
        6,
    );
    single_error(
        &with_rule("effect: deny\nreason: ''"),
        "`reason` is empty",
        6,
    );
    // Trailing line breaks of block scalars are layout and trimmed.
    let folded = with_rule("effect: deny\nreason: >\n  one\n  line");
    let decision = policy(&folded).evaluate(&common::req().request());
    assert_eq!(decision.reason, "one line");
}

#[test]
fn messages_echoing_the_document_are_bounded_and_printable() {
    let long_key = "k".repeat(1_000); // (YAML caps simple keys at 1024 characters)
    let error = single_error(
        &format!("version: 1\nmode: allow\n{long_key}: 1\n"),
        "unknown field",
        3,
    );
    assert!(
        error.message.chars().count() <= 1025,
        "{}",
        error.message.len()
    );
    let error = single_error(
        "version: 1\nmode: allow\n\"\\e[31mred\": 1\n",
        "unknown field",
        3,
    );
    assert!(!error.message.contains('\u{1b}'), "{:?}", error.message);
    let error = single_error(
        &with_rule("effect: deny\nroles: [\"\\e[2J\"]"),
        "unknown role",
        6,
    );
    assert!(!error.message.contains('\u{1b}'), "{:?}", error.message);
    // A regex error draws the (up to 1 KiB) pattern; multi-byte characters are not split.
    let pattern = format!("{}(", "ü".repeat(500));
    let error = single_error(
        &with_rule(&format!("effect: deny\ncommands: ['{pattern}']")),
        "invalid command pattern",
        6,
    );
    assert!(error.message.len() <= MAX_ISSUE_MESSAGE_BYTES);
}

#[test]
fn reported_errors_are_capped_with_a_count_of_the_rest() {
    let roles = (0..150)
        .map(|i| format!("boss{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let errors = common::errors(&with_rule(&format!("effect: deny\nroles: [{roles}]")));
    assert_eq!(errors.len(), MAX_REPORTED_ISSUES + 1);
    assert!(
        errors[..MAX_REPORTED_ISSUES]
            .iter()
            .all(|error| error.line == 6)
    );
    let last = errors.last().unwrap();
    assert_eq!(
        (last.line, last.message.as_str()),
        (0, "50 more problem(s) not listed")
    );
}
