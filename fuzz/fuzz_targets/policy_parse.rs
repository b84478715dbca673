//! Team policy documents as PutPolicy / ValidatePolicy receive them (YAML, up to 256 KiB, from
//! an admin's request).
//!
//! Input: the document text (non-UTF-8 input is turned into text lossily, as a gRPC string
//! field would never carry it). Parsing never panics and stays within its bounds: at most
//! 101 issues (100 + a "more" line), each message at most 512 bytes; an accepted document
//! decides every request in a fixed set deterministically (twice, and after parsing the same
//! text again), names either `default` or one of its own rules, keeps its reason within
//! bounds, and lists approver roles exactly when it requires an approval.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tucdesk_policy::{
    DEFAULT_RULE, MAX_ISSUE_MESSAGE_BYTES, Outcome, Policy, Principal, Request, Role, SessionKind,
};

/// Issues a parse reports at most: the cap plus one line counting the rest.
const MAX_ISSUES: usize = 101;

fn requests<'a>(tags: &'a [String], argv: &'a [String]) -> Vec<Request<'a>> {
    let mut out = Vec::new();
    for role in [Role::Owner, Role::Operator, Role::AiAgent, Role::Viewer] {
        for (kind, exec) in [(SessionKind::Shell, None), (SessionKind::Exec, Some(argv))] {
            for at in [0_i64, 1_750_000_000_000, 1_767_225_600_000] {
                out.push(Request {
                    user_id: "0190a1b2-0000-7000-8000-000000000001",
                    email: Some("alice@example.com"),
                    role,
                    principal: if role == Role::AiAgent {
                        Principal::AiAgent
                    } else {
                        Principal::User
                    },
                    agent_id: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                    agent_name: "web-1",
                    agent_tags: tags,
                    kind,
                    exec_argv: exec,
                    at_unix_ms: at,
                });
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Policy::parse(&text) {
        Err(errors) => {
            assert!(!errors.errors.is_empty(), "a refusal names at least one problem");
            assert!(errors.errors.len() <= MAX_ISSUES);
            for issue in &errors.errors {
                assert!(issue.message.len() <= MAX_ISSUE_MESSAGE_BYTES);
            }
        }
        Ok(parsed) => {
            assert!(parsed.warnings.len() <= MAX_ISSUES);
            let again = Policy::parse(&text).expect("the same text parses again");
            let names: Vec<&str> = parsed.policy.rule_names().collect();
            let tags = vec!["env=prod".to_owned(), "web".to_owned()];
            let argv = vec!["rm".to_owned(), "-rf".to_owned(), "/tmp/x".to_owned()];
            for request in requests(&tags, &argv) {
                let decision = parsed.policy.evaluate(&request);
                assert_eq!(decision, parsed.policy.evaluate(&request));
                assert_eq!(decision, again.policy.evaluate(&request));
                assert!(decision.rule == DEFAULT_RULE || names.contains(&decision.rule.as_str()));
                assert!(decision.reason.len() <= MAX_ISSUE_MESSAGE_BYTES);
                if decision.outcome == Outcome::ApprovalRequired {
                    assert!(!decision.approver_roles.is_empty());
                } else {
                    assert!(decision.approver_roles.is_empty());
                }
            }
        }
    }
});
