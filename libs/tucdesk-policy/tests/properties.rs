//! Property tests: deny always wins (against an independent reference model), evaluation is
//! deterministic across re-parses, and parsing never panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use proptest::prelude::*;
use proptest::sample::subsequence;
use tucdesk_policy::{DEFAULT_RULE, Outcome, Policy, Principal, Role, SessionKind};

/// Keeps the suite fast while still exploring each property broadly.
const CASES: u32 = 256;

const ROLES: [&str; 5] = ["owner", "admin", "operator", "viewer", "ai_agent"];
const KINDS: [&str; 2] = ["shell", "exec"];
const TAGS: [&str; 3] = ["env=prod", "team=db", "os=linux"];
const AGENT_ENTRIES: [&str; 4] = ["web-*", "db-1", "agent-x", "*-1"];
const USER_ENTRIES: [&str; 3] = ["u1", "u2@example.com", "U3@EXAMPLE.COM"];

/// A generated rule, kept as data so the test can both write YAML and evaluate it by hand.
#[derive(Debug, Clone)]
struct ModelRule {
    effect: &'static str,
    roles: Option<Vec<&'static str>>,
    kinds: Option<Vec<&'static str>>,
    tags: Option<Vec<&'static str>>,
    agents: Option<Vec<&'static str>>,
    users: Option<Vec<&'static str>>,
}

#[derive(Debug, Clone)]
struct ModelRequest {
    role: &'static str,
    kind: &'static str,
    tags: Vec<&'static str>,
    agent_id: &'static str,
    agent_name: &'static str,
    user_id: &'static str,
    email: Option<&'static str>,
}

fn some_of<const N: usize>(
    values: [&'static str; N],
) -> impl Strategy<Value = Option<Vec<&'static str>>> {
    proptest::option::weighted(0.4, subsequence(values.to_vec(), 1..=N))
}

fn model_rule() -> impl Strategy<Value = ModelRule> {
    (
        prop::sample::select(vec!["allow", "deny", "require_approval"]),
        some_of(ROLES),
        some_of(KINDS),
        some_of(TAGS),
        some_of(AGENT_ENTRIES),
        some_of(USER_ENTRIES),
    )
        .prop_map(|(effect, roles, kinds, tags, agents, users)| ModelRule {
            effect,
            roles,
            kinds,
            tags,
            agents,
            users,
        })
}

fn model_request() -> impl Strategy<Value = ModelRequest> {
    (
        prop::sample::select(ROLES.to_vec()),
        prop::sample::select(KINDS.to_vec()),
        subsequence(TAGS.to_vec(), 0..=TAGS.len()),
        prop::sample::select(vec!["agent-x", "agent-y"]),
        prop::sample::select(vec!["web-1", "db-1", "db-2", "cache"]),
        prop::sample::select(vec!["u1", "u2", "u3"]),
        prop::sample::select(vec![
            None,
            Some("u2@example.com"),
            Some("u3@example.com"),
            Some("U1@example.com"),
        ]),
    )
        .prop_map(
            |(role, kind, tags, agent_id, agent_name, user_id, email)| ModelRequest {
                role,
                kind,
                tags,
                agent_id,
                agent_name,
                user_id,
                email,
            },
        )
}

/// The document of `rules`, followed by any `extra_rules` (already YAML).
fn yaml_of(mode: &str, rules: &[ModelRule], extra_rules: &str) -> String {
    let mut items = String::new();
    for (index, rule) in rules.iter().enumerate() {
        items.push_str(&format!(
            "  - name: rule-{index}\n    effect: {}\n",
            rule.effect
        ));
        for (key, list) in [
            ("roles", &rule.roles),
            ("kinds", &rule.kinds),
            ("tags", &rule.tags),
            ("agents", &rule.agents),
            ("users", &rule.users),
        ] {
            if let Some(list) = list {
                let quoted: Vec<String> = list.iter().map(|entry| format!("'{entry}'")).collect();
                items.push_str(&format!("    {key}: [{}]\n", quoted.join(", ")));
            }
        }
    }
    items.push_str(extra_rules);
    if items.is_empty() {
        format!("version: 1\nmode: {mode}\nrules: []\n")
    } else {
        format!("version: 1\nmode: {mode}\nrules:\n{items}")
    }
}

/// The reference matcher, written independently of the crate: plain comparisons, with the
/// glob spelled out for the two patterns in the domain.
// Lowercasing both sides on purpose, rather than the crate's `eq_ignore_ascii_case`.
#[allow(clippy::manual_ignore_case_cmp)]
fn model_matches(rule: &ModelRule, request: &ModelRequest) -> bool {
    let any = |list: &Option<Vec<&str>>, test: &dyn Fn(&str) -> bool| {
        list.as_ref()
            .is_none_or(|list| list.iter().any(|entry| test(entry)))
    };
    let agent_matches = |entry: &str| match entry {
        "web-*" => request.agent_id == entry || request.agent_name.starts_with("web-"),
        "*-1" => request.agent_id == entry || request.agent_name.ends_with("-1"),
        exact => request.agent_id == exact || request.agent_name == exact,
    };
    let user_matches = |entry: &str| {
        if entry.contains('@') {
            request
                .email
                .is_some_and(|email| email.to_ascii_lowercase() == entry.to_ascii_lowercase())
        } else {
            request.user_id == entry
        }
    };
    any(&rule.roles, &|role| role == request.role)
        && any(&rule.kinds, &|kind| kind == request.kind)
        && rule
            .tags
            .as_ref()
            .is_none_or(|tags| tags.iter().all(|tag| request.tags.contains(tag)))
        && any(&rule.agents, &agent_matches)
        && any(&rule.users, &user_matches)
}

/// The reference decision: (outcome, deciding rule).
fn model_decision(mode: &str, rules: &[ModelRule], request: &ModelRequest) -> (Outcome, String) {
    let first = |effect: &str| {
        rules
            .iter()
            .position(|rule| rule.effect == effect && model_matches(rule, request))
    };
    if let Some(index) = first("deny") {
        return (Outcome::Deny, format!("rule-{index}"));
    }
    let allowed_by = match (first("allow"), mode) {
        (Some(index), _) => format!("rule-{index}"),
        (None, "allow") => DEFAULT_RULE.to_owned(),
        (None, _) => return (Outcome::Deny, DEFAULT_RULE.to_owned()),
    };
    match first("require_approval") {
        Some(index) => (Outcome::ApprovalRequired, format!("rule-{index}")),
        None => (Outcome::Allow, allowed_by),
    }
}

fn to_request(model: &ModelRequest, at_unix_ms: i64) -> common::Req {
    common::Req {
        user_id: model.user_id.to_owned(),
        email: model.email.map(str::to_owned),
        role: model.role.parse::<Role>().unwrap(),
        principal: Principal::User,
        agent_id: model.agent_id.to_owned(),
        agent_name: model.agent_name.to_owned(),
        tags: model.tags.iter().map(|tag| (*tag).to_owned()).collect(),
        kind: model.kind.parse::<SessionKind>().unwrap(),
        argv: (model.kind == "exec").then(|| vec!["ls".to_owned(), "-l".to_owned()]),
        at_unix_ms,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn deny_always_wins_and_matches_the_reference_model(
        mode in prop::sample::select(vec!["allow", "deny"]),
        rules in prop::collection::vec(model_rule(), 0..8),
        requests in prop::collection::vec(model_request(), 1..6),
    ) {
        let policy = common::policy(&yaml_of(mode, &rules, ""));
        for model in &requests {
            let decision = policy.evaluate(&to_request(model, common::WEDNESDAY_NOON_UTC_MS).request());
            if rules.iter().any(|rule| rule.effect == "deny" && model_matches(rule, model)) {
                prop_assert_eq!(decision.outcome, Outcome::Deny);
            }
            let (outcome, rule) = model_decision(mode, &rules, model);
            prop_assert_eq!((decision.outcome, decision.rule.as_str()), (outcome, rule.as_str()), "{:?}", model);
            prop_assert_eq!(decision.approver_roles.is_empty(), outcome != Outcome::ApprovalRequired);
        }
    }

    #[test]
    fn evaluation_is_deterministic_across_calls_and_reparses(
        mode in prop::sample::select(vec!["allow", "deny"]),
        rules in prop::collection::vec(model_rule(), 0..8),
        window in prop::option::of((prop::sample::select(vec!["during", "outside"]), 0u8..24, 0u8..24, prop::sample::select(vec!["UTC", "Europe/Berlin", "America/St_Johns", "Australia/Lord_Howe"]))),
        model in model_request(),
        at_unix_ms in prop_oneof![any::<i64>(), -2_000_000_000_000i64..5_000_000_000_000],
    ) {
        let windowed = window.map(|(sense, start, end, zone)| format!(
            "  - name: windowed\n    effect: deny\n    commands: ['^ls ']\n    {sense}: {{days: [mon, fri, sun], hours: \"{start:02}:00-{end:02}:30\", timezone: {zone}}}\n"
        ));
        let yaml = yaml_of(mode, &rules, windowed.as_deref().unwrap_or_default());
        let request = to_request(&model, at_unix_ms);
        let first = common::policy(&yaml);
        let once = first.evaluate(&request.request());
        prop_assert_eq!(&once, &first.evaluate(&request.request()));
        let reparsed = common::policy(&yaml);
        prop_assert_eq!(&once, &reparsed.evaluate(&request.request()));
        let cloned = first.clone();
        prop_assert_eq!(&once, &cloned.evaluate(&request.request()));
    }

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in any::<String>()) {
        let _ = Policy::parse(&text);
    }

    #[test]
    fn parse_never_panics_on_yaml_like_text(text in "[a-z_:\\-\\[\\]{}&*!|>'\"#0-9, \n.~@]{0,300}") {
        let _ = Policy::parse(&text);
    }

    #[test]
    fn parse_never_panics_on_policy_shaped_documents(document in policy_shaped()) {
        let _ = Policy::parse(&document);
    }
}

/// Documents with the real keys and mostly plausible values (with random and nested ones mixed
/// in), so the fuzzing gets past YAML syntax and shape into validation and compilation.
fn policy_shaped() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        3 => prop::sample::select(vec![
            "1", "allow", "deny", "require_approval", "owner", "viewer", "ai_agent", "user", "support", "shell",
            "exec", "mon", "sun", "funday", "'09:00-18:00'", "'22:00-06:00'", "'00:00-00:00'", "UTC",
            "Europe/Berlin", "Nowhere/City", "15m", "1h30m", "0s", "'^rm\\b'", "'('", "'\\w{50}'", "'*'",
            "'web-*'", "~", "''", "default", "env=prod",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z0-9.-][a-z0-9*.=-]{0,11}",
        1 => "[a-zA-Z0-9 @*:.=-]{0,16}".prop_map(|text| format!("'{text}'")),
    ];
    let list = prop::collection::vec(scalar.clone(), 0..5)
        .prop_map(|items| format!("[{}]", items.join(", ")));
    let window = (list.clone(), scalar.clone(), scalar.clone(), any::<u8>()).prop_map(
        |(days, hours, zone, present)| {
            let mut fields = Vec::new();
            if present & 1 != 0 {
                fields.push(format!("days: {days}"));
            }
            if present & 2 != 0 {
                fields.push(format!("hours: {hours}"));
            }
            if present % 8 != 0 {
                fields.push(format!("timezone: {zone}"));
            }
            format!("{{{}}}", fields.join(", "))
        },
    );
    let nested = scalar.clone().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            prop::collection::vec(inner, 0..4).prop_map(|values| {
                let entries: Vec<String> = values
                    .iter()
                    .enumerate()
                    .map(|(i, value)| format!("k{i}: {value}"))
                    .collect();
                format!("{{{}}}", entries.join(", "))
            }),
        ]
    });
    let key = prop::sample::select(vec![
        "reason",
        "users",
        "roles",
        "principals",
        "agents",
        "tags",
        "kinds",
        "commands",
        "during",
        "outside",
        "approvers",
    ]);
    // Mostly the value type the key expects, sometimes any other shape.
    let entry = (key, scalar.clone(), list, window, nested, 0u8..10).prop_map(
        |(key, scalar, list, window, nested, dice)| {
            let value = match (dice, key) {
                (8, _) => nested,
                (9, _) | (_, "reason") => scalar,
                (_, "during" | "outside") => window,
                _ => list,
            };
            (key, value)
        },
    );
    let rule = (
        prop::sample::select(vec!["a", "b", "c", "default", "Bad", "''"]),
        prop::sample::select(vec!["allow", "deny", "require_approval", "block"]),
        prop::collection::vec(entry, 0..4),
    )
        .prop_map(|(name, effect, entries)| {
            let mut fields = vec![format!("name: {name}"), format!("effect: {effect}")];
            fields.extend(
                entries
                    .into_iter()
                    .map(|(key, value)| format!("{key}: {value}")),
            );
            format!("{{{}}}", fields.join(", "))
        });
    (
        prop::sample::select(vec!["allow", "deny", "maybe"]),
        prop::option::of((scalar.clone(), prop::collection::vec(scalar, 0..3))),
        prop::collection::vec(rule, 0..8),
    )
        .prop_map(|(mode, approval, rules)| {
            let mut yaml = format!("version: 1\nmode: {mode}\n");
            if let Some((timeout, approvers)) = approval {
                yaml.push_str(&format!(
                    "approval: {{timeout: {timeout}, approvers: [{}]}}\n",
                    approvers.join(", ")
                ));
            }
            yaml.push_str(if rules.is_empty() {
                "rules: []\n"
            } else {
                "rules:\n"
            });
            for rule in rules {
                yaml.push_str(&format!("  - {rule}\n"));
            }
            yaml
        })
}
