//! Each matcher on its own: a `mode: deny` document with one allow rule `probe` lets a request
//! in exactly when the matcher matches it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{WEDNESDAY_NOON_UTC_MS, matches, req};
use tucdesk_policy::{Principal, Role, SessionKind};

#[test]
fn the_reference_instant_is_wednesday_noon() {
    assert_eq!(
        req().at("2025-06-04T12:00:00Z").at_unix_ms,
        WEDNESDAY_NOON_UTC_MS
    );
}

#[test]
fn a_rule_without_matchers_matches_everything() {
    assert!(matches("", &req()));
    assert!(matches("", &req().exec("rm -rf /").tags(&["env=prod"])));
}

#[test]
fn users_match_ids_exactly() {
    let alice = req();
    assert!(matches(
        "users: ['0190a1b2-0000-7000-8000-00000000a11c']",
        &alice
    ));
    assert!(
        !matches("users: ['0190A1B2-0000-7000-8000-00000000A11C']", &alice),
        "ids are case-sensitive"
    );
    assert!(
        !matches("users: ['0190a1b2-0000-7000-8000-00000000a11']", &alice),
        "no prefix match"
    );
    assert!(
        matches(
            "users: [someone-else, '0190a1b2-0000-7000-8000-00000000a11c']",
            &alice
        ),
        "any entry"
    );
}

#[test]
fn users_match_emails_ascii_case_insensitively() {
    let alice = req();
    assert!(matches("users: [alice@example.com]", &alice));
    assert!(matches("users: [Alice@Example.COM]", &alice));
    assert!(!matches("users: [bob@example.com]", &alice));
    let without_email = common::Req {
        email: None,
        ..req()
    };
    assert!(!matches("users: [alice@example.com]", &without_email));
    // An email entry never matches the id and an id entry never matches the email.
    let id_is_email_like = common::Req {
        user_id: "alice@example.com".to_owned(),
        email: None,
        ..req()
    };
    assert!(!matches("users: [alice@example.com]", &id_is_email_like));
    let email_without_at = common::Req {
        email: Some("alice".to_owned()),
        ..req()
    };
    assert!(!matches("users: [alice]", &email_without_at));
}

#[test]
fn roles_match_any_listed_role() {
    for role in Role::ALL {
        let request = common::Req {
            role: *role,
            ..req()
        };
        assert_eq!(
            matches("roles: [operator, ai_agent]", &request),
            matches!(role, Role::Operator | Role::AiAgent)
        );
    }
}

#[test]
fn principals_match_any_listed_principal() {
    for principal in Principal::ALL {
        let request = common::Req {
            principal: *principal,
            ..req()
        };
        assert_eq!(
            matches("principals: [support]", &request),
            *principal == Principal::Support
        );
        assert!(matches("principals: [user, support, ai_agent]", &request));
    }
}

#[test]
fn agents_match_ids_exactly_and_names_by_glob() {
    let web1 = req();
    assert!(matches("agents: [3q2agentid0001]", &web1));
    assert!(!matches("agents: [3Q2AGENTID0001]", &web1));
    assert!(matches("agents: [web-1]", &web1));
    assert!(matches("agents: ['web-*']", &web1));
    assert!(matches("agents: ['*-1']", &web1));
    assert!(matches("agents: ['*']", &web1));
    assert!(
        !matches("agents: ['db-*', 'web-?']", &web1),
        "`?` is literal"
    );
    assert!(!matches("agents: ['Web-*']", &web1));
    // Globs apply to names only: a pattern covering the id does not match through it.
    assert!(!matches("agents: ['3q2*']", &web1));
}

#[test]
fn tags_require_every_listed_tag() {
    let prod_db = req().tags(&["env=prod", "team=db", "os=linux"]);
    assert!(matches("tags: [env=prod]", &prod_db));
    assert!(matches("tags: [env=prod, team=db]", &prod_db));
    assert!(
        !matches("tags: [env=prod, team=web]", &prod_db),
        "all of, not any of"
    );
    assert!(!matches("tags: [env=prod]", &req()), "untagged agent");
    assert!(!matches("tags: [env=Prod]", &prod_db), "exact");
}

#[test]
fn kinds_match_the_session_kind() {
    assert!(matches("kinds: [shell]", &req()));
    assert!(!matches("kinds: [exec]", &req()));
    assert!(matches("kinds: [exec]", &req().exec("ls")));
    assert!(matches("kinds: [shell, exec]", &req().exec("ls")));
}

#[test]
fn commands_search_the_joined_argv() {
    let rm = req().exec("rm -rf /tmp/x");
    assert!(matches(r"commands: ['^rm\b']", &rm));
    assert!(
        matches("commands: ['-rf /tmp']", &rm),
        "unanchored, argv joined with single spaces"
    );
    assert!(!matches("commands: ['^rm -r$']", &rm));
    assert!(matches("commands: [shutdown, '^rm ']", &rm), "any pattern");
    assert!(!matches(
        r"commands: ['^rm\b']",
        &req().exec("/bin/rm -rf /")
    ));
    assert!(matches("commands: ['(?i)^RM ']", &rm));
}

#[test]
fn commands_never_match_shell_sessions() {
    assert!(!matches("commands: ['.*']", &req()));
    let shell_with_argv = common::Req {
        argv: Some(vec!["ls".to_owned()]),
        ..req()
    };
    assert_eq!(shell_with_argv.kind, SessionKind::Shell);
    assert!(!matches("commands: ['^ls']", &shell_with_argv));
}

#[test]
fn commands_on_exec_without_argv_see_an_empty_line() {
    let no_argv = common::Req {
        kind: SessionKind::Exec,
        argv: None,
        ..req()
    };
    assert!(matches("commands: ['^$']", &no_argv));
    assert!(!matches("commands: ['^ls']", &no_argv));
}

const BERLIN_OFFICE: &str =
    "days: [mon, tue, wed, thu, fri]\nhours: \"09:00-18:00\"\ntimezone: Europe/Berlin";

fn during(window: &str) -> String {
    format!("during:\n{}", indent(window))
}

fn outside(window: &str) -> String {
    format!("outside:\n{}", indent(window))
}

fn indent(lines: &str) -> String {
    lines.lines().map(|line| format!("  {line}\n")).collect()
}

#[test]
fn during_matches_inside_the_window() {
    // Berlin is UTC+2 in June.
    assert!(matches(
        &during(BERLIN_OFFICE),
        &req().at("2025-06-04T07:00:00Z")
    ));
    assert!(matches(
        &during(BERLIN_OFFICE),
        &req().at("2025-06-04T15:59:59Z")
    ));
    assert!(!matches(
        &during(BERLIN_OFFICE),
        &req().at("2025-06-04T16:00:00Z")
    ));
    assert!(!matches(
        &during(BERLIN_OFFICE),
        &req().at("2025-06-04T06:59:59Z")
    ));
    assert!(
        !matches(&during(BERLIN_OFFICE), &req().at("2025-06-07T10:00:00Z")),
        "Saturday"
    );
}

#[test]
fn outside_matches_everywhere_else() {
    assert!(!matches(
        &outside(BERLIN_OFFICE),
        &req().at("2025-06-04T07:00:00Z")
    ));
    assert!(matches(
        &outside(BERLIN_OFFICE),
        &req().at("2025-06-04T16:00:00Z")
    ));
    assert!(
        matches(&outside(BERLIN_OFFICE), &req().at("2025-06-07T10:00:00Z")),
        "Saturday"
    );
}

#[test]
fn days_and_hours_default_to_all() {
    assert!(matches(
        &during("days: [wed]\ntimezone: UTC"),
        &req().at("2025-06-04T23:59:59Z")
    ));
    assert!(!matches(
        &during("days: [wed]\ntimezone: UTC"),
        &req().at("2025-06-05T00:00:00Z")
    ));
    assert!(matches(
        &during("hours: \"11:00-13:00\"\ntimezone: UTC"),
        &req()
    ));
    assert!(
        matches(
            &during("hours: \"11:00-13:00\"\ntimezone: UTC"),
            &req().at("2025-06-08T12:00:00Z")
        ),
        "any day"
    );
}

#[test]
fn wrapping_hours_belong_to_the_starting_day() {
    let friday_night = "days: [fri]\nhours: \"22:00-06:00\"\ntimezone: UTC";
    assert!(matches(
        &during(friday_night),
        &req().at("2025-06-06T23:00:00Z")
    ));
    assert!(
        matches(&during(friday_night), &req().at("2025-06-07T05:00:00Z")),
        "Saturday early = Friday's window"
    );
    assert!(!matches(
        &during(friday_night),
        &req().at("2025-06-07T23:00:00Z")
    ));
    assert!(
        !matches(&during(friday_night), &req().at("2025-06-06T05:00:00Z")),
        "Friday early = Thursday's window"
    );
    assert!(matches(
        &outside(friday_night),
        &req().at("2025-06-06T05:00:00Z")
    ));
}

#[test]
fn windows_follow_dst_on_the_wall_clock() {
    // Europe/Berlin springs forward on Sunday 2025-03-30 at 01:00 UTC (02:00 -> 03:00).
    let sunday_early = "days: [sun]\nhours: \"01:00-04:00\"\ntimezone: Europe/Berlin";
    assert!(matches(
        &during(sunday_early),
        &req().at("2025-03-30T00:00:00Z")
    )); // 01:00 CET
    assert!(matches(
        &during(sunday_early),
        &req().at("2025-03-30T01:59:59Z")
    )); // 03:59:59 CEST
    assert!(!matches(
        &during(sunday_early),
        &req().at("2025-03-30T02:00:00Z")
    )); // 04:00 CEST
    // Same UTC time-of-day a week earlier is an hour earlier on Berlin clocks.
    assert!(matches(
        &during(sunday_early),
        &req().at("2025-03-23T02:59:59Z")
    )); // 03:59:59 CET
    assert!(!matches(
        &during(sunday_early),
        &req().at("2025-03-23T03:00:00Z")
    )); // 04:00 CET
}

#[test]
fn utc_windows_use_utc() {
    let noon = "hours: \"12:00-12:01\"\ntimezone: UTC";
    assert!(matches(&during(noon), &req()));
    assert!(!matches(&during(noon), &req().at("2025-06-04T12:01:00Z")));
}

#[test]
fn all_present_matchers_must_match() {
    let lines = "roles: [operator]\nagents: ['web-*']\ntags: [env=prod]\nkinds: [exec]\ncommands: ['^systemctl ']";
    let request = req().tags(&["env=prod"]).exec("systemctl restart nginx");
    assert!(matches(lines, &request));
    assert!(!matches(
        lines,
        &common::Req {
            role: Role::Viewer,
            ..request.clone()
        }
    ));
    assert!(!matches(
        lines,
        &common::Req {
            agent_name: "db-1".to_owned(),
            ..request.clone()
        }
    ));
    assert!(!matches(lines, &request.clone().tags(&["env=dev"])));
    assert!(!matches(lines, &request.clone().exec("ls")));
}
