//! Effects, modes, the default rule, rule combinations, approvals and reasons.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{decide, policy, req};
use tucdesk_policy::{DEFAULT_RULE, Decision, Mode, Outcome, Policy, Role};

fn doc(mode: &str, rules: &str) -> String {
    format!("version: 1\nmode: {mode}\nrules:\n{rules}")
}

#[test]
fn empty_allow_mode_allows_by_default() {
    let decision = decide("version: 1\nmode: allow\nrules: []\n", &req());
    assert_eq!(
        decision,
        Decision {
            outcome: Outcome::Allow,
            rule: DEFAULT_RULE.to_owned(),
            reason: "no rule matched and the policy allows by default".to_owned(),
            approver_roles: vec![],
            approval_timeout: Duration::ZERO,
        }
    );
}

#[test]
fn empty_deny_mode_denies_by_default() {
    let decision = decide("version: 1\nmode: deny\nrules: []\n", &req());
    assert_eq!(decision.outcome, Outcome::Deny);
    assert_eq!(decision.rule, DEFAULT_RULE);
    assert_eq!(
        decision.reason,
        "no rule allows this and the policy denies by default"
    );
}

#[test]
fn each_effect_decides_with_its_rule_and_generated_reason() {
    let allow = decide(&doc("deny", "  - name: ops\n    effect: allow\n"), &req());
    assert_eq!(
        (allow.outcome, allow.rule.as_str(), allow.reason.as_str()),
        (Outcome::Allow, "ops", "allowed by rule \"ops\"")
    );
    let deny = decide(
        &doc("allow", "  - name: freeze\n    effect: deny\n"),
        &req(),
    );
    assert_eq!(
        (deny.outcome, deny.rule.as_str(), deny.reason.as_str()),
        (Outcome::Deny, "freeze", "denied by rule \"freeze\"")
    );
    let approval = decide(
        &doc("allow", "  - name: ask\n    effect: require_approval\n"),
        &req(),
    );
    assert_eq!(
        (
            approval.outcome,
            approval.rule.as_str(),
            approval.reason.as_str()
        ),
        (
            Outcome::ApprovalRequired,
            "ask",
            "approval required by rule \"ask\""
        )
    );
    assert_eq!(approval.approver_roles, [Role::Owner, Role::Admin]);
    assert_eq!(approval.approval_timeout, Duration::from_secs(15 * 60));
}

#[test]
fn a_written_reason_is_used_verbatim() {
    let rules = "  - name: freeze\n    effect: deny\n    reason: \"Change freeze until Monday\"\n";
    assert_eq!(
        decide(&doc("allow", rules), &req()).reason,
        "Change freeze until Monday"
    );
    let folded = "  - name: freeze\n    effect: deny\n    reason: >\n      Change freeze\n      until Monday\n";
    assert_eq!(
        decide(&doc("allow", folded), &req()).reason,
        "Change freeze until Monday"
    );
}

#[test]
fn deny_beats_allow_in_either_order() {
    let allow_first = "  - name: ops\n    effect: allow\n  - name: freeze\n    effect: deny\n";
    let deny_first = "  - name: freeze\n    effect: deny\n  - name: ops\n    effect: allow\n";
    for mode in ["allow", "deny"] {
        for rules in [allow_first, deny_first] {
            let decision = decide(&doc(mode, rules), &req());
            assert_eq!(
                (decision.outcome, decision.rule.as_str()),
                (Outcome::Deny, "freeze"),
                "{mode}\n{rules}"
            );
        }
    }
}

#[test]
fn deny_beats_require_approval_in_either_order() {
    let rules = "  - name: ask\n    effect: require_approval\n  - name: ops\n    effect: allow\n  - name: freeze\n    effect: deny\n";
    assert_eq!(decide(&doc("deny", rules), &req()).rule, "freeze");
}

#[test]
fn the_first_matching_rule_of_each_effect_decides() {
    let rules = "  - name: not-me
    effect: deny
    roles: [viewer]
  - name: first-deny
    effect: deny
    kinds: [shell]
  - name: second-deny
    effect: deny
";
    assert_eq!(decide(&doc("allow", rules), &req()).rule, "first-deny");
    let allows = "  - name: admins
    effect: allow
    roles: [admin]
  - name: operators
    effect: allow
    roles: [operator]
  - name: everyone
    effect: allow
";
    assert_eq!(decide(&doc("deny", allows), &req()).rule, "operators");
    let approvals = "  - name: anyone
    effect: allow
  - name: prod
    effect: require_approval
    tags: [env=prod]
  - name: shells
    effect: require_approval
    kinds: [shell]
  - name: all
    effect: require_approval
";
    assert_eq!(decide(&doc("deny", approvals), &req()).rule, "shells");
    assert_eq!(
        decide(&doc("deny", approvals), &req().tags(&["env=prod"])).rule,
        "prod"
    );
    assert_eq!(
        decide(&doc("deny", approvals), &req().exec("ls")).rule,
        "all"
    );
}

#[test]
fn require_approval_never_grants_access_by_itself() {
    let only_approval = "  - name: ask\n    effect: require_approval\n";
    let decision = decide(&doc("deny", only_approval), &req());
    assert_eq!(
        (decision.outcome, decision.rule.as_str()),
        (Outcome::Deny, DEFAULT_RULE)
    );
    assert!(decision.approver_roles.is_empty());

    let with_allow = "  - name: ask\n    effect: require_approval\n  - name: ops\n    effect: allow\n    roles: [operator]\n";
    assert_eq!(
        decide(&doc("deny", with_allow), &req()).outcome,
        Outcome::ApprovalRequired
    );
    let viewer = common::Req {
        role: Role::Viewer,
        ..req()
    };
    assert_eq!(
        decide(&doc("deny", with_allow), &viewer).outcome,
        Outcome::Deny
    );
}

#[test]
fn require_approval_applies_to_default_allowed_requests() {
    let rules = "  - name: prod\n    effect: require_approval\n    tags: [env=prod]\n";
    assert_eq!(
        decide(&doc("allow", rules), &req().tags(&["env=prod"])).outcome,
        Outcome::ApprovalRequired
    );
    assert_eq!(decide(&doc("allow", rules), &req()).outcome, Outcome::Allow);
}

#[test]
fn approvers_come_from_the_rule_or_the_document() {
    let yaml = "\
version: 1
mode: allow
approval:
  timeout: 1h30m
  approvers: [admin, operator, admin]
rules:
  - name: prod
    effect: require_approval
    tags: [env=prod]
    approvers: [owner]
  - name: everything
    effect: require_approval
";
    let prod = decide(yaml, &req().tags(&["env=prod"]));
    assert_eq!(
        (prod.rule.as_str(), prod.approver_roles.as_slice()),
        ("prod", [Role::Owner].as_slice())
    );
    assert_eq!(prod.approval_timeout, Duration::from_secs(5400));
    let other = decide(yaml, &req());
    assert_eq!(
        other.approver_roles,
        [Role::Admin, Role::Operator],
        "document default, deduplicated"
    );
    assert_eq!(other.approval_timeout, Duration::from_secs(5400));
}

#[test]
fn approval_fields_are_exposed() {
    let parsed =
        policy("version: 1\nmode: deny\napproval:\n  timeout: 90s\n  approvers: [operator]\n");
    assert_eq!(parsed.mode(), Mode::Deny);
    assert_eq!(parsed.approval_timeout(), Duration::from_secs(90));
    assert_eq!(parsed.default_approvers(), [Role::Operator]);
    assert_eq!(
        policy("version: 1\nmode: allow\napproval: {}\n").approval_timeout(),
        Duration::from_secs(900)
    );
}

#[test]
fn rule_names_are_listed_in_order() {
    let parsed = policy(&doc(
        "allow",
        "  - name: b\n    effect: deny\n    roles: [viewer]\n  - name: a\n    effect: deny\n    roles: [admin]\n",
    ));
    assert_eq!(parsed.rule_names().collect::<Vec<_>>(), ["b", "a"]);
}

#[test]
fn builtin_default_allows_everything() {
    let builtin = Policy::builtin_default();
    assert_eq!(builtin.mode(), Mode::Allow);
    assert_eq!(builtin.approval_timeout(), Duration::from_secs(900));
    assert_eq!(builtin.default_approvers(), [Role::Owner, Role::Admin]);
    assert_eq!(builtin.rule_names().count(), 0);
    let decision = builtin.evaluate(&req().exec("rm -rf /").request());
    assert_eq!(
        (decision.outcome, decision.rule.as_str()),
        (Outcome::Allow, DEFAULT_RULE)
    );
}

#[test]
fn builtin_default_yaml_parses_to_the_builtin_default() {
    let text = Policy::builtin_default_yaml();
    assert!(text.contains('#'), "the text is commented");
    let parsed = Policy::parse(text).unwrap();
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let (from_text, builtin) = (parsed.policy, Policy::builtin_default());
    assert_eq!(from_text.mode(), builtin.mode());
    assert_eq!(from_text.approval_timeout(), builtin.approval_timeout());
    assert_eq!(from_text.default_approvers(), builtin.default_approvers());
    assert_eq!(from_text.rule_names().count(), builtin.rule_names().count());
    for request in [
        req(),
        req().exec("ls"),
        common::Req {
            role: Role::AiAgent,
            ..req()
        },
    ] {
        assert_eq!(
            from_text.evaluate(&request.request()),
            builtin.evaluate(&request.request())
        );
    }
}

#[test]
fn yaml_aliases_within_bounds_are_fine() {
    let yaml = "\
version: 1
mode: deny
rules:
  - name: office
    effect: allow
    roles: &people [operator, admin]
    during: &office {days: [mon, tue, wed, thu, fri], hours: \"09:00-18:00\", timezone: UTC}
  - name: after-hours
    effect: require_approval
    roles: *people
    outside: *office
";
    assert_eq!(decide(yaml, &req()).outcome, Outcome::Allow);
    assert_eq!(
        decide(yaml, &req().at("2025-06-04T20:00:00Z")).outcome,
        Outcome::Deny
    );
}
