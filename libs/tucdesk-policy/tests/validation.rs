//! Every validation error, with its position.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{errors, messages, policy, single_error, with_rule};
use tucdesk_policy::Policy;

#[test]
fn yaml_syntax_and_shape_errors_carry_yaml_serde_positions() {
    let error = single_error(
        "version: 1\nmode: allow: deny\n",
        "mapping values are not allowed",
        2,
    );
    assert_eq!(error.column, 12);
    single_error(
        "version: 1\nmode: allow\nrules:\n  - name: [a]\n",
        "rules[0].name: invalid type: sequence",
        4,
    );
    let error = single_error(
        "version: 1\nmode: allow\nrules: {a: 1}\n",
        "expected a list",
        3,
    );
    assert!(
        !error.message.contains(" at line "),
        "position moved out of the message: {error:?}"
    );
    single_error("version: 1\n", "missing field `mode`", 1);
    single_error("mode: allow\n", "missing field `version`", 1);
    single_error("", "missing field `version`", 1);
    single_error("- just\n- a list\n", "a policy document", 1);
    single_error(
        "version: 1\nmode: allow\n---\nversion: 1\nmode: allow\n",
        "more than one document",
        0,
    );
}

#[test]
fn unknown_fields_are_errors_everywhere() {
    single_error(
        "version: 1\nmode: allow\nrule: []\n",
        "unknown field `rule`",
        3,
    );
    single_error(
        "version: 1\nmode: allow\napproval:\n  timeout: 5m\n  approver: [owner]\n",
        "unknown field `approver`",
        5,
    );
    single_error(
        &with_rule("effect: deny\nuser: [bob@example.com]"),
        "unknown field `user`",
        6,
    );
    single_error(
        &with_rule("effect: deny\nduring:\n  timezone: UTC\n  day: [mon]"),
        "unknown field `day`",
        8,
    );
    single_error(
        &with_rule("effect: deny\n<<: {roles: [viewer]}"),
        "unknown field `<<`",
        6,
    );
}

#[test]
fn duplicate_keys_are_errors() {
    // yaml_serde places this at the start of the rule's mapping.
    single_error(
        &with_rule("effect: allow\neffect: deny"),
        "duplicate field `effect`",
        4,
    );
}

#[test]
fn present_keys_need_values() {
    // `roles:` left empty must not read as "no roles matcher", which would match everyone:
    // yaml_serde reads an empty value as an empty list, which is an error, and `~` as null.
    single_error(
        &with_rule("effect: allow\nroles:"),
        "`roles` is an empty list",
        6,
    );
    single_error(
        &with_rule("effect: allow\nroles: ~"),
        "invalid type: unit value",
        6,
    );
    single_error(&with_rule("effect: allow\nreason:"), "`reason` is empty", 6);
    // An empty `rules:` restricts nothing, so it may stay as the empty list it reads as.
    assert_eq!(
        policy("version: 1\nmode: allow\nrules:\n")
            .rule_names()
            .count(),
        0
    );
    single_error(
        &with_rule("effect: deny\nduring:"),
        "missing field `timezone`",
        6,
    );
}

#[test]
fn bad_version_and_mode() {
    single_error("version: 2\nmode: allow\n", "unsupported version `2`", 1);
    single_error("version: 1\nmode: Allow\n", "unknown mode `Allow`", 2);
}

#[test]
fn rule_names_are_checked() {
    single_error(
        &with_rule("effect: deny").replace("name: r", "name: Deny-Prod"),
        "may only contain",
        4,
    );
    single_error(
        &with_rule("effect: deny").replace("name: r", "name: 'a b'"),
        "may only contain",
        4,
    );
    single_error(
        &with_rule("effect: deny").replace("name: r", "name: ''"),
        "1 to 128",
        4,
    );
    let long = "n".repeat(129);
    single_error(
        &with_rule("effect: deny").replace("name: r", &format!("name: {long}")),
        "1 to 128",
        4,
    );
    policy(&with_rule("effect: deny").replace("name: r", &format!("name: {}", "n".repeat(128))));
    policy(&with_rule("effect: deny").replace("name: r", "name: a_b.c-9"));
    single_error(
        &with_rule("effect: deny").replace("name: r", "name: default"),
        "reserved",
        4,
    );
}

#[test]
fn duplicate_rule_names_point_at_the_second() {
    let yaml = "version: 1\nmode: allow\nrules:\n  - name: a\n    effect: deny\n    roles: [viewer]\n  - name: a\n    effect: deny\n";
    let error = single_error(yaml, "duplicate `name` (also used by rule #1)", 7);
    assert_eq!(error.column, 5);
}

#[test]
fn unknown_vocabulary_values_point_at_the_value() {
    let error = single_error(
        &with_rule("effect: deny\nroles: [operator, admins]"),
        "unknown role `admins`",
        6,
    );
    assert_eq!(error.column, 23);
    single_error(
        &with_rule("effect: deny\nprincipals: [human]"),
        "unknown principal `human`",
        6,
    );
    single_error(
        &with_rule("effect: deny\nkinds:\n  - shell\n  - pty"),
        "unknown session kind `pty`",
        8,
    );
    single_error(
        &with_rule("effect: deny\nduring: {days: [monday], timezone: UTC}"),
        "unknown day `monday`",
        6,
    );
    single_error(&with_rule("effect: block"), "unknown effect `block`", 5);
}

#[test]
fn empty_lists_are_errors() {
    for key in [
        "users",
        "roles",
        "principals",
        "agents",
        "tags",
        "kinds",
        "commands",
    ] {
        single_error(
            &with_rule(&format!("effect: deny\n{key}: []")),
            &format!("`{key}` is an empty list"),
            6,
        );
    }
    single_error(
        &with_rule("effect: require_approval\napprovers: []"),
        "`approvers` is an empty list",
        6,
    );
    single_error(
        &with_rule("effect: deny\nduring: {days: [], timezone: UTC}"),
        "`days` is empty",
        6,
    );
    single_error(
        "version: 1\nmode: allow\napproval:\n  approvers: []\n",
        "`approvers` is an empty list",
        4,
    );
}

#[test]
fn windows_are_checked() {
    single_error(
        &with_rule("effect: deny\nduring: {timezone: UTC}\noutside: {timezone: UTC}"),
        "not both",
        7,
    );
    single_error(
        &with_rule("effect: deny\nduring:\n  hours: 09:00-09:00\n  timezone: UTC"),
        "same time",
        7,
    );
    single_error(
        &with_rule("effect: deny\nduring:\n  hours: 9-17\n  timezone: UTC"),
        "HH:MM-HH:MM",
        7,
    );
    single_error(
        &with_rule("effect: deny\noutside:\n  timezone: Europe/Berln"),
        "unknown time zone `Europe/Berln`",
        7,
    );
    single_error(
        &with_rule("effect: deny\nduring: {}"),
        "missing field `timezone`",
        6,
    );
}

#[test]
fn a_bad_timezone_in_the_third_rule_reports_that_rules_line() {
    let yaml = "\
version: 1
mode: deny
rules:
  - name: first
    effect: allow
    roles: [admin]
  - name: second
    effect: allow
    during: {timezone: UTC}
  - name: third
    effect: deny
    reason: Night shift only
    outside:
      hours: \"22:00-06:00\"
      timezone: Mars/Olympus_Mons
";
    let error = single_error(yaml, "unknown time zone", 15);
    assert!(
        error
            .message
            .starts_with("rule `third`: `outside.timezone`"),
        "{error:?}"
    );
    assert_eq!(error.column, 17);
    // Even when the position of the key cannot be found, the rule's own line is reported.
    let flow = "version: 1\nmode: deny\nrules:\n  - {name: a, effect: deny}\n  - {name: b, effect: deny}\n  - {name: c, effect: deny, during: {timezone: Nowhere}}\n";
    single_error(flow, "unknown time zone", 6);
}

#[test]
fn approvers_are_checked() {
    single_error(
        &with_rule("effect: deny\napprovers: [owner]"),
        "only applies to `effect: require_approval`",
        6,
    );
    single_error(
        &with_rule("effect: require_approval\napprovers: [owner, viewer]"),
        "`viewer` cannot approve",
        6,
    );
    single_error(
        &with_rule("effect: require_approval\napprovers: [ai_agent]"),
        "`ai_agent` cannot approve",
        6,
    );
    single_error(
        "version: 1\nmode: allow\napproval:\n  approvers: [viewer]\n",
        "`viewer` cannot approve",
        4,
    );
}

#[test]
fn all_semantic_errors_are_collected() {
    let yaml = "\
version: 3
mode: allow
approval:
  timeout: 2d
rules:
  - name: Bad
    effect: deny
    roles: [boss]
  - name: ok
    effect: allow
    kinds: []
    commands: ['(']
  - name: ok
    effect: deny
    approvers: [owner]
";
    let errors = errors(yaml);
    let lines: Vec<u32> = errors.iter().map(|error| error.line).collect();
    assert_eq!(
        lines,
        [1, 4, 6, 8, 11, 12, 13, 15],
        "{:#?}",
        messages(&errors)
    );
}

#[test]
fn errors_display_with_their_position() {
    let error = single_error("version: 2\nmode: allow\n", "", 1);
    assert_eq!(
        error.to_string(),
        "line 1, column 1: unsupported version `2`; the only version is 1"
    );
    let refused = Policy::parse("version: 2\nmode: deny\n").unwrap_err();
    assert_eq!(
        refused.to_string(),
        "the policy document is invalid (1 problem(s))"
    );
}
