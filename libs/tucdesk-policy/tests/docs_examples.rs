//! docs/policy.md stays true: every complete example parses cleanly, the built-in default is
//! shown verbatim, and the worked example decides as its table says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::req;
use tucdesk_policy::{DEFAULT_RULE, Outcome, Policy, Role};

const POLICY_MD: &str = include_str!("../../../docs/policy.md");

/// Marks a fenced YAML block of the docs as a complete document.
const EXAMPLE_MARKER: &str = "# policy: ";

/// The complete example documents of the docs, by name (the marker line is kept: it is YAML).
fn examples() -> Vec<(String, String)> {
    let mut examples = Vec::new();
    let mut lines = POLICY_MD.lines();
    while let Some(line) = lines.next() {
        if line != "```yaml" {
            continue;
        }
        let block: Vec<&str> = lines.by_ref().take_while(|line| *line != "```").collect();
        if let Some(name) = block
            .first()
            .and_then(|first| first.strip_prefix(EXAMPLE_MARKER))
        {
            examples.push((name.to_owned(), block.join("\n") + "\n"));
        }
    }
    examples
}

fn example(name: &str) -> String {
    examples()
        .into_iter()
        .find(|(found, _)| found == name)
        .unwrap_or_else(|| panic!("docs/policy.md has no example `{name}`"))
        .1
}

#[test]
fn every_example_parses_without_errors_or_warnings() {
    let examples = examples();
    assert!(
        examples.len() >= 8,
        "found only {} examples",
        examples.len()
    );
    for (name, yaml) in examples {
        match Policy::parse(&yaml) {
            Ok(parsed) => assert!(parsed.warnings.is_empty(), "{name}: {:#?}", parsed.warnings),
            Err(errors) => panic!("{name}: {:#?}", errors.errors),
        }
    }
}

#[test]
fn the_documented_builtin_default_is_the_real_one() {
    let shown = example("builtin-default");
    let without_marker = shown.split_once('\n').unwrap().1;
    assert_eq!(without_marker, Policy::builtin_default_yaml());
}

#[test]
fn the_worked_example_decides_as_documented() {
    let policy = common::policy(&example("worked-example"));
    let decide = |request: &common::Req| policy.evaluate(&request.request());
    // 2025-06-04 is a Wednesday; Berlin is UTC+2 in June.
    let wednesday_10 = req().at("2025-06-04T08:00:00Z");
    let wednesday_20 = req().at("2025-06-04T18:00:00Z");
    let saturday_10 = req().at("2025-06-07T08:00:00Z");
    let viewer = |request: common::Req| common::Req {
        role: Role::Viewer,
        ..request
    };

    let untagged = decide(&wednesday_10);
    assert_eq!(
        (untagged.outcome, untagged.rule.as_str()),
        (Outcome::Allow, "operators")
    );

    let prod = decide(&wednesday_10.clone().tags(&["env=prod"]));
    assert_eq!(
        (prod.outcome, prod.rule.as_str()),
        (Outcome::ApprovalRequired, "prod-needs-approval")
    );
    assert_eq!(prod.approver_roles, [Role::Owner, Role::Admin]);
    assert_eq!(prod.approval_timeout, Duration::from_secs(15 * 60));

    let evening = decide(&wednesday_20.tags(&["env=prod"]));
    assert_eq!(
        (
            evening.outcome,
            evening.rule.as_str(),
            evening.reason.as_str()
        ),
        (
            Outcome::Deny,
            "deny-prod-after-hours",
            "Production is closed outside business hours"
        )
    );

    let viewer_untagged = decide(&viewer(wednesday_10));
    assert_eq!(
        (viewer_untagged.outcome, viewer_untagged.rule.as_str()),
        (Outcome::Deny, DEFAULT_RULE)
    );

    let viewer_weekend = decide(&viewer(saturday_10.tags(&["env=prod"])));
    assert_eq!(
        (viewer_weekend.outcome, viewer_weekend.rule.as_str()),
        (Outcome::Deny, "deny-prod-after-hours")
    );
}

#[test]
fn the_ai_agent_example_limits_agents_as_described() {
    let policy = common::policy(&example("ai-agents"));
    let agent = common::Req {
        role: Role::AiAgent,
        principal: tucdesk_policy::Principal::AiAgent,
        ..req()
    };
    let decide = |request: &common::Req| policy.evaluate(&request.request());
    assert_eq!(decide(&agent).rule, "ai-no-shells");
    assert_eq!(decide(&agent.clone().exec("df -h")).outcome, Outcome::Allow);
    assert_eq!(
        decide(&agent.clone().exec("cat /etc/hosts; rm -rf /")).outcome,
        Outcome::Deny
    );
    assert_eq!(decide(&agent.clone().exec("lsblk")).outcome, Outcome::Deny);
    let restart = decide(&agent.clone().exec("systemctl restart nginx"));
    assert_eq!(
        (restart.outcome, restart.rule.as_str()),
        (Outcome::ApprovalRequired, "ai-restart-needs-approval")
    );
    assert_eq!(
        restart.approver_roles,
        [Role::Owner, Role::Admin, Role::Operator]
    );
    assert_eq!(
        decide(&agent.exec("systemctl restart nginx; reboot")).outcome,
        Outcome::Deny
    );
}
