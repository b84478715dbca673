//! Request fields every receiver checks with `tucdesk_proto::validate` before using them
//! (session and approval ids, agent ids, names, reasons, tags, terminal sizes, exec specs).
//!
//! Input: selector byte ‖ bytes. Selector 0–4: the bytes as text for one string rule; 5: a
//! protobuf `ExecSpec`; 6: a protobuf `TerminalSize`; 7: a tag list (NUL-separated).
//! Nothing panics, and whatever a rule accepts satisfies an independent statement of the
//! documented bound (`docs/protocol.md` §13), so a value that passes one receiver passes all.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use tucdesk_proto::limits::*;
use tucdesk_proto::v1::{ExecSpec, TerminalSize};
use tucdesk_proto::validate;

fn check_exec(spec: &ExecSpec) {
    let accepted = validate::exec_spec(spec).is_ok();
    let total: usize = spec.argv.iter().map(String::len).sum();
    let env_total: usize = spec.env.iter().map(|(k, v)| k.len() + v.len()).sum();
    let independent = !spec.argv.is_empty()
        && spec.argv.len() <= MAX_EXEC_ARGS
        && !spec.argv[0].is_empty()
        && spec.argv.iter().all(|a| a.len() <= MAX_EXEC_ARG_LEN && !a.contains('\0'))
        && total <= MAX_EXEC_ARGV_TOTAL_LEN
        && spec.env.len() <= MAX_EXEC_ENV
        && spec.env.iter().all(|(k, v)| {
            let mut chars = k.chars();
            chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
                && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
                && k.len() <= MAX_EXEC_ENV_NAME_LEN
                && v.len() <= MAX_EXEC_ENV_VALUE_LEN
                && !v.contains('\0')
        })
        && env_total <= MAX_EXEC_ENV_TOTAL_LEN
        && spec.cwd.len() <= MAX_EXEC_CWD_LEN
        && !spec.cwd.contains('\0')
        && (spec.cwd.is_empty() || spec.cwd.starts_with('/'))
        && spec.timeout_ms <= MAX_EXEC_TIMEOUT_MS;
    assert_eq!(accepted, independent, "{spec:?}");
    assert!(validate::same_exec(spec, spec));
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match selector % 8 {
        0 => {
            if validate::uuid("id", &text).is_ok() {
                let parsed = uuid::Uuid::parse_str(&text).expect("an accepted id is a UUID");
                assert_eq!(parsed.hyphenated().to_string(), text, "only the canonical form");
            }
        }
        1 => {
            if validate::agent_id("agent_id", &text).is_ok() {
                assert_eq!(text.len(), AGENT_ID_LEN);
                assert!(!text.contains(['.', '*', '>', ' ']), "agent ids are subject-safe");
            }
        }
        2 => {
            if validate::name("name", &text).is_ok() {
                assert!(text.len() <= MAX_NAME_LEN && !text.trim().is_empty());
                assert!(!text.chars().any(char::is_control));
            }
        }
        3 => {
            if validate::message("message", &text).is_ok() {
                assert!(text.len() <= MAX_MESSAGE_LEN);
                assert!(!text.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
            }
        }
        4 => {
            if validate::tag("tag", &text).is_ok() {
                assert!(!text.is_empty() && text.len() <= MAX_TAG_LEN);
                assert!(text.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b"_.:=/-".contains(&b)));
            }
        }
        5 => {
            if let Ok(spec) = ExecSpec::decode(rest) {
                check_exec(&spec);
            }
        }
        6 => {
            if let Ok(size) = TerminalSize::decode(rest) {
                let ok = validate::terminal_size("size", &size).is_ok();
                let range = 1..=MAX_TERMINAL_DIMENSION;
                assert_eq!(ok, range.contains(&size.cols) && range.contains(&size.rows));
            }
        }
        _ => {
            let tags: Vec<String> = text.split('\0').map(str::to_owned).collect();
            if let Ok(clean) = validate::tags("tags", &tags, MAX_TAGS) {
                assert!(clean.len() <= MAX_TAGS);
                assert!(clean.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
                assert!(clean.iter().all(|t| validate::tag("tag", t).is_ok()));
            }
        }
    }
});
