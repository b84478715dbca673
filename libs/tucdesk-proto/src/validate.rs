//! Checks of request fields against the bounds in [`crate::limits`], shared by every receiver
//! (rendezvous, agent, viewer) so that a value accepted in one place is accepted everywhere.
//!
//! Each check returns a [`FieldError`] naming the field and the rule, never echoing the value
//! (it may be large, binary, or something a person typed by mistake, like a password).

use std::collections::BTreeSet;

use crate::limits::*;
use crate::v1::{ExecSpec, TerminalSize};

/// A field that breaks its documented bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct FieldError {
    pub field: &'static str,
    pub rule: &'static str,
}

fn bad(field: &'static str, rule: &'static str) -> FieldError {
    FieldError { field, rule }
}

/// A server-assigned id: canonical lowercase hyphenated UUID text (36 characters).
pub fn uuid(field: &'static str, value: &str) -> Result<(), FieldError> {
    let bytes = value.as_bytes();
    let well_formed = bytes.len() == UUID_LEN
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(b),
        });
    if well_formed {
        Ok(())
    } else {
        Err(bad(field, "must be a lowercase canonical UUID"))
    }
}

/// An `agent_id`: 43 characters of unpadded base64url (the key itself is checked by whoever
/// decodes it).
pub fn agent_id(field: &'static str, value: &str) -> Result<(), FieldError> {
    let ok = value.len() == AGENT_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(bad(
            field,
            "must be an agent id (43 characters of base64url)",
        ))
    }
}

/// A display name: 1..=128 bytes, no control characters, not only whitespace.
pub fn name(field: &'static str, value: &str) -> Result<(), FieldError> {
    if value.trim().is_empty() || value.len() > MAX_NAME_LEN {
        return Err(bad(field, "must be 1..=128 bytes and not blank"));
    }
    if value.chars().any(char::is_control) {
        return Err(bad(field, "must not contain control characters"));
    }
    Ok(())
}

/// Free text for people (reasons, comments, messages): at most 512 bytes; line breaks and tabs
/// are allowed, other control characters (terminal escapes) are not.
pub fn message(field: &'static str, value: &str) -> Result<(), FieldError> {
    if value.len() > MAX_MESSAGE_LEN {
        return Err(bad(field, "must be at most 512 bytes"));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(bad(field, "must not contain control characters"));
    }
    Ok(())
}

/// One tag: 1..=64 bytes of `[a-z0-9_.:=/-]`.
pub fn tag(field: &'static str, value: &str) -> Result<(), FieldError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_TAG_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:=/-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(bad(
            field,
            "each tag must be 1..=64 bytes of [a-z0-9_.:=/-]",
        ))
    }
}

/// A list of tags: each valid, at most `max` of them. Returns them sorted and de-duplicated.
pub fn tags(field: &'static str, values: &[String], max: usize) -> Result<Vec<String>, FieldError> {
    if values.len() > max {
        return Err(bad(field, "too many tags"));
    }
    let mut set = BTreeSet::new();
    for value in values {
        tag(field, value)?;
        set.insert(value.clone());
    }
    Ok(set.into_iter().collect())
}

/// A terminal size: each dimension 1..=1000.
pub fn terminal_size(field: &'static str, size: &TerminalSize) -> Result<(), FieldError> {
    let range = 1..=MAX_TERMINAL_DIMENSION;
    if range.contains(&size.cols) && range.contains(&size.rows) {
        Ok(())
    } else {
        Err(bad(field, "cols and rows must be 1..=1000"))
    }
}

/// An [`ExecSpec`] within every bound `common.proto` documents.
pub fn exec_spec(spec: &ExecSpec) -> Result<(), FieldError> {
    if spec.argv.is_empty() || spec.argv.len() > MAX_EXEC_ARGS {
        return Err(bad("exec.argv", "must have 1..=256 entries"));
    }
    if spec.argv[0].is_empty() {
        return Err(bad("exec.argv", "argv[0] must not be empty"));
    }
    let mut total = 0usize;
    for arg in &spec.argv {
        if arg.len() > MAX_EXEC_ARG_LEN {
            return Err(bad("exec.argv", "each entry must be at most 4096 bytes"));
        }
        if arg.contains('\0') {
            return Err(bad("exec.argv", "must not contain NUL bytes"));
        }
        total += arg.len();
    }
    if total > MAX_EXEC_ARGV_TOTAL_LEN {
        return Err(bad("exec.argv", "must be at most 16 KiB in total"));
    }
    if spec.env.len() > MAX_EXEC_ENV {
        return Err(bad("exec.env", "must have at most 64 entries"));
    }
    let mut env_total = 0usize;
    for (key, value) in &spec.env {
        let name_ok = !key.is_empty()
            && key.len() <= MAX_EXEC_ENV_NAME_LEN
            && key.bytes().enumerate().all(|(i, b)| {
                b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit())
            });
        if !name_ok {
            return Err(bad(
                "exec.env",
                "names must match [A-Za-z_][A-Za-z0-9_]* and be at most 128 bytes",
            ));
        }
        if value.len() > MAX_EXEC_ENV_VALUE_LEN || value.contains('\0') {
            return Err(bad(
                "exec.env",
                "values must be at most 4096 bytes without NUL",
            ));
        }
        env_total += key.len() + value.len();
    }
    if env_total > MAX_EXEC_ENV_TOTAL_LEN {
        return Err(bad("exec.env", "must be at most 8 KiB in total"));
    }
    if spec.cwd.len() > MAX_EXEC_CWD_LEN || spec.cwd.contains('\0') {
        return Err(bad("exec.cwd", "must be at most 4096 bytes without NUL"));
    }
    if !spec.cwd.is_empty() && !spec.cwd.starts_with('/') {
        return Err(bad("exec.cwd", "must be absolute or empty"));
    }
    if spec.timeout_ms > MAX_EXEC_TIMEOUT_MS {
        return Err(bad("exec.timeout_ms", "must be at most 24 h"));
    }
    Ok(())
}

/// Whether two exec specs ask for the same thing. Field by field, because the encoded bytes of
/// a protobuf map depend on iteration order and so are no basis for comparison.
pub fn same_exec(a: &ExecSpec, b: &ExecSpec) -> bool {
    a.argv == b.argv
        && a.env.len() == b.env.len()
        && a.env.iter().all(|(k, v)| b.env.get(k) == Some(v))
        && a.cwd == b.cwd
        && a.timeout_ms == b.timeout_ms
        && a.pty == b.pty
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(argv: &[&str]) -> ExecSpec {
        ExecSpec {
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn uuids_must_be_canonical_lowercase() {
        assert!(uuid("id", "0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b").is_ok());
        assert!(uuid("id", "0190A1B2-C3D4-4E5F-8A9B-0C1D2E3F4A5B").is_err());
        assert!(uuid("id", "0190a1b2c3d44e5f8a9b0c1d2e3f4a5b").is_err());
        assert!(uuid("id", "0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b.>").is_err());
        assert!(uuid("id", "").is_err());
    }

    #[test]
    fn agent_ids_are_43_base64url_characters() {
        assert!(agent_id("a", &"A".repeat(43)).is_ok());
        assert!(agent_id("a", &"A".repeat(42)).is_err());
        assert!(agent_id("a", &format!("{}*", "A".repeat(42))).is_err());
        assert!(agent_id("a", &format!("{}.", "A".repeat(42))).is_err());
    }

    #[test]
    fn names_refuse_blank_long_and_control_characters() {
        assert!(name("n", "web-1").is_ok());
        assert!(name("n", "  ").is_err());
        assert!(name("n", &"x".repeat(129)).is_err());
        assert!(name("n", "evil\u{1b}[2J").is_err());
    }

    #[test]
    fn messages_allow_newlines_but_not_escapes() {
        assert!(message("m", "line one\nline two").is_ok());
        assert!(message("m", "\u{1b}]0;pwned\u{7}").is_err());
        assert!(message("m", &"x".repeat(513)).is_err());
    }

    #[test]
    fn tags_are_bounded_sorted_and_deduplicated() {
        let input = vec!["env=prod".to_owned(), "db".to_owned(), "db".to_owned()];
        assert_eq!(tags("t", &input, 32).unwrap(), vec!["db", "env=prod"]);
        assert!(tags("t", &["Env".to_owned()], 32).is_err());
        assert!(tags("t", &["a b".to_owned()], 32).is_err());
        assert!(tags("t", &vec!["a".to_owned(); 33], 32).is_err());
    }

    #[test]
    fn exec_specs_are_bounded() {
        assert!(exec_spec(&spec(&["uptime"])).is_ok());
        assert!(exec_spec(&spec(&[])).is_err());
        assert!(exec_spec(&spec(&[""])).is_err());
        assert!(exec_spec(&spec(&["echo", "a\0b"])).is_err());
        let long = "x".repeat(4097);
        assert!(exec_spec(&spec(&["echo", &long])).is_err());
        let mut with_env = spec(&["env"]);
        with_env.env.insert("1BAD".into(), "x".into());
        assert!(exec_spec(&with_env).is_err());
        let mut relative = spec(&["ls"]);
        relative.cwd = "tmp".into();
        assert!(exec_spec(&relative).is_err());
        let mut slow = spec(&["sleep", "1"]);
        slow.timeout_ms = MAX_EXEC_TIMEOUT_MS + 1;
        assert!(exec_spec(&slow).is_err());
    }

    #[test]
    fn same_exec_ignores_map_order_but_not_content() {
        let mut a = spec(&["env"]);
        let mut b = spec(&["env"]);
        for (k, v) in [("A", "1"), ("B", "2"), ("C", "3")] {
            a.env.insert(k.into(), v.into());
        }
        for (k, v) in [("C", "3"), ("A", "1"), ("B", "2")] {
            b.env.insert(k.into(), v.into());
        }
        assert!(same_exec(&a, &b));
        b.env.insert("B".into(), "changed".into());
        assert!(!same_exec(&a, &b));
        let c = spec(&["env", "-i"]);
        assert!(!same_exec(&a, &c));
    }

    #[test]
    fn terminal_sizes_are_bounded() {
        assert!(terminal_size("s", &TerminalSize { cols: 80, rows: 24 }).is_ok());
        assert!(terminal_size("s", &TerminalSize { cols: 0, rows: 24 }).is_err());
        assert!(
            terminal_size(
                "s",
                &TerminalSize {
                    cols: 80,
                    rows: 1001
                }
            )
            .is_err()
        );
    }
}
