//! Warnings: valid documents with rules that cannot do what they appear to.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{messages, warnings};
use tucdesk_policy::Issue;

/// The single warning of a valid document, checked to contain `needle` and sit on `line`.
fn single_warning(yaml: &str, needle: &str, line: u32) -> Issue {
    let warnings = warnings(yaml);
    assert_eq!(warnings.len(), 1, "{:#?}", messages(&warnings));
    let warning = warnings.into_iter().next().unwrap();
    assert!(
        warning.message.contains(needle),
        "{needle:?} not in {:?}",
        warning.message
    );
    assert_eq!(warning.line, line, "{warning:?}");
    warning
}

#[test]
fn a_clean_document_has_no_warnings() {
    let yaml = "\
version: 1
mode: deny
rules:
  - name: ops
    effect: allow
    roles: [operator]
  - name: prod
    effect: require_approval
    tags: [env=prod]
  - name: no-rm
    effect: deny
    commands: ['^rm ']
";
    assert!(warnings(yaml).is_empty(), "{:?}", warnings(yaml));
}

#[test]
fn allow_rules_in_allow_mode_have_no_effect() {
    let warning = single_warning(
        "version: 1\nmode: allow\nrules:\n  - name: ops\n    effect: allow\n    roles: [operator]\n",
        "has no effect in `mode: allow`",
        5,
    );
    assert!(warning.message.starts_with("rule `ops`: "));
    assert_eq!(warning.column, 5);
}

#[test]
fn rules_after_a_catch_all_of_the_same_effect_are_shadowed() {
    let yaml = "\
version: 1
mode: deny
rules:
  - name: everyone
    effect: allow
  - name: operators
    effect: allow
    roles: [operator]
";
    single_warning(
        yaml,
        "earlier rule `everyone` has the same effect and no matchers",
        6,
    );
    // A catch-all after the specific rule shadows nothing.
    let reversed = "\
version: 1
mode: deny
rules:
  - name: operators
    effect: allow
    roles: [operator]
  - name: everyone
    effect: allow
";
    assert!(warnings(reversed).is_empty());
    // A catch-all of another effect shadows nothing either.
    let approvals = "\
version: 1
mode: deny
rules:
  - name: everyone
    effect: allow
  - name: prod
    effect: require_approval
    tags: [env=prod]
";
    assert!(warnings(approvals).is_empty());
}

#[test]
fn a_catch_all_deny_is_pointed_out() {
    let yaml = "\
version: 1
mode: allow
rules:
  - name: lockdown
    effect: deny
    reason: Incident in progress
";
    single_warning(yaml, "denies every request", 4);
}

#[test]
fn commands_with_kinds_excluding_exec_never_match() {
    let yaml = "\
version: 1
mode: allow
rules:
  - name: odd
    effect: deny
    kinds: [shell]
    commands: ['^rm ']
";
    single_warning(yaml, "never matches", 7);
    let with_exec = yaml.replace("kinds: [shell]", "kinds: [shell, exec]");
    assert!(warnings(&with_exec).is_empty());
}

#[test]
fn windows_covering_all_time_are_pointed_out() {
    let outside = "\
version: 1
mode: allow
rules:
  - name: never
    effect: deny
    roles: [viewer]
    outside:
      days: [mon, tue, wed, thu, fri, sat, sun]
      timezone: UTC
";
    single_warning(
        outside,
        "`outside` window covers all days and hours, so the rule never matches",
        7,
    );
    let during = "\
version: 1
mode: allow
rules:
  - name: always
    effect: deny
    roles: [viewer]
    during: {timezone: Europe/Berlin}
";
    single_warning(during, "restricts nothing", 7);
}

#[test]
fn approval_rules_without_any_allow_rule_in_deny_mode_never_apply() {
    let yaml = "\
version: 1
mode: deny
rules:
  - name: ask
    effect: require_approval
    roles: [operator]
";
    single_warning(yaml, "there is none", 5);
}

#[test]
fn warnings_accumulate() {
    let yaml = "\
version: 1
mode: allow
rules:
  - name: a
    effect: allow
  - name: b
    effect: allow
";
    let warnings = warnings(yaml);
    let lines: Vec<u32> = warnings.iter().map(|warning| warning.line).collect();
    // a and b are both no-ops in allow mode; b is also shadowed by a.
    assert_eq!(lines, [5, 7, 6], "{:#?}", messages(&warnings));
}
