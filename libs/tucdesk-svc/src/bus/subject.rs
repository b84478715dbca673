//! NATS subject rules, applied identically by both bus implementations so a subject the
//! in-process bus accepts is one NATS accepts too.

/// Longest subject accepted; ours are `audit.{team_id}.{action}` and similar.
pub const MAX_SUBJECT_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("subject is empty or longer than {MAX_SUBJECT_LEN} bytes")]
    Length,
    #[error("subject {0:?} has an empty token or a space or control character")]
    Malformed(String),
    #[error("subject {0:?} may not contain wildcards here")]
    Wildcard(String),
    #[error("in {0:?} the `>` wildcard may only be the last token")]
    MisplacedTail(String),
}

fn check_tokens(subject: &str) -> Result<(), SubjectError> {
    if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN {
        return Err(SubjectError::Length);
    }
    let bad_char = |c: char| c.is_whitespace() || c.is_control();
    if subject
        .split('.')
        .any(|token| token.is_empty() || token.contains(bad_char))
    {
        return Err(SubjectError::Malformed(subject.to_owned()));
    }
    Ok(())
}

/// A concrete subject for publishing: tokens separated by dots, no wildcards.
pub fn validate_subject(subject: &str) -> Result<(), SubjectError> {
    check_tokens(subject)?;
    if subject.split('.').any(|token| token == "*" || token == ">") {
        return Err(SubjectError::Wildcard(subject.to_owned()));
    }
    Ok(())
}

/// A subscription pattern: `*` stands for one token, a final `>` for one or more.
pub fn validate_pattern(pattern: &str) -> Result<(), SubjectError> {
    check_tokens(pattern)?;
    let tokens: Vec<&str> = pattern.split('.').collect();
    if tokens[..tokens.len() - 1].contains(&">") {
        return Err(SubjectError::MisplacedTail(pattern.to_owned()));
    }
    Ok(())
}

/// Whether `subject` matches `pattern` by NATS rules.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for pattern_token in pattern.split('.') {
        match (pattern_token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (literal, Some(token)) if literal == token => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// Whether some subject matches both patterns (JetStream refuses streams whose subjects
/// overlap, and so does the in-process bus).
pub fn patterns_overlap(a: &str, b: &str) -> bool {
    fn overlap(a: &[&str], b: &[&str]) -> bool {
        match (a.split_first(), b.split_first()) {
            (None, None) => true,
            // `>` stands for one or more tokens, so it needs at least one on the other side.
            (Some((&">", _)), Some(_)) | (Some(_), Some((&">", _))) => true,
            (Some((x, a_rest)), Some((y, b_rest))) if *x == "*" || *y == "*" || x == y => {
                overlap(a_rest, b_rest)
            }
            _ => false,
        }
    }
    let a: Vec<&str> = a.split('.').collect();
    let b: Vec<&str> = b.split('.').collect();
    overlap(&a, &b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wildcards_follow_nats_rules() {
        assert!(subject_matches("audit.*.login", "audit.t1.login"));
        assert!(!subject_matches("audit.*.login", "audit.t1.x.login"));
        assert!(subject_matches("audit.>", "audit.t1.login"));
        assert!(subject_matches("audit.>", "audit.t1"));
        assert!(!subject_matches("audit.>", "audit"));
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(!subject_matches("a.b.c", "a.b"));
    }

    #[test]
    fn malformed_subjects_are_refused() {
        assert_eq!(validate_subject(""), Err(SubjectError::Length));
        assert!(validate_subject("a..b").is_err());
        assert!(validate_subject("a.b ").is_err());
        assert!(validate_subject("a.*").is_err());
        assert!(validate_pattern("a.>.b").is_err());
        assert!(validate_pattern("a.*.>").is_ok());
        assert!(validate_subject(&"a".repeat(MAX_SUBJECT_LEN + 1)).is_err());
    }

    #[test]
    fn overlapping_patterns_are_recognised() {
        assert!(patterns_overlap("a.>", "a.b"));
        assert!(patterns_overlap("a.*", "a.b"));
        assert!(patterns_overlap("a.*.c", "a.b.*"));
        assert!(patterns_overlap(">", "x.y.z"));
        assert!(!patterns_overlap("a.>", "a"));
        assert!(!patterns_overlap("a.b", "a.c"));
        assert!(!patterns_overlap("a.*", "a.b.c"));
        assert!(!patterns_overlap("t1.>", "t2.>"));
    }

    proptest! {
        #[test]
        fn a_subject_matches_itself_and_the_full_wildcard(tokens in proptest::collection::vec("[a-z0-9_-]{1,8}", 1..6)) {
            let subject = tokens.join(".");
            prop_assert!(validate_subject(&subject).is_ok());
            prop_assert!(subject_matches(&subject, &subject));
            prop_assert!(subject_matches(">", &subject));
            let stars = vec!["*"; tokens.len()].join(".");
            prop_assert!(subject_matches(&stars, &subject));
        }
    }
}
