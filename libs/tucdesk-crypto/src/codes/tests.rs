#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;

use super::*;

fn key() -> CodeHashKey {
    CodeHashKey::from_slice(&[0x42; 32]).unwrap()
}

#[test]
fn generated_code_has_at_least_50_bits_and_display_form() {
    let code = SupportCode::generate().unwrap();
    let shown = code.display();
    assert_eq!(shown.len(), 14);
    assert_eq!(shown.matches('-').count(), 2);
    const { assert!(CODE_ENTROPY_BITS >= 50) };
    for c in code.normalized().bytes() {
        assert!(CODE_ALPHABET.contains(&c));
        assert!(!b"ILOU".contains(&c));
    }
    assert_ne!(
        SupportCode::generate().unwrap().normalized(),
        code.normalized()
    );
}

#[test]
fn normalisation_accepts_case_dashes_spaces_and_confusables() {
    let canonical = SupportCode::parse("K7M2-Q9XH-4R10").unwrap();
    for variant in [
        "k7m2-q9xh-4r10",
        "K7M2 Q9XH 4R10",
        "k7m2q9xh4r10",
        " K7M2--Q9XH-4RlO ",
        "K7M2-Q9XH-4RIo",
        "K7M2\tQ9XH\t4R1O",
    ] {
        assert_eq!(
            SupportCode::parse(variant).unwrap().normalized(),
            canonical.normalized(),
            "{variant}"
        );
    }
}

#[test]
fn malformed_codes_are_rejected() {
    assert_eq!(
        SupportCode::parse("K7M2-Q9XH-4RU0").err(),
        Some(CodeError::InvalidCharacter)
    );
    assert_eq!(
        SupportCode::parse("K7M2-Q9XH-4R1").err(),
        Some(CodeError::WrongLength)
    );
    assert_eq!(
        SupportCode::parse("K7M2-Q9XH-4R100").err(),
        Some(CodeError::WrongLength)
    );
    assert_eq!(
        SupportCode::parse(&"-".repeat(65)).err(),
        Some(CodeError::TooLong)
    );
    assert_eq!(
        SupportCode::parse("K7M2-Q9XH-4R1é").err(),
        Some(CodeError::InvalidCharacter)
    );
}

#[test]
fn hash_is_keyed_and_domain_separated() {
    let code = SupportCode::parse("K7M2-Q9XH-4R10").unwrap();
    let h = code.hash(&key(), CodeKind::Support).unwrap();
    assert!(verify_code("k7m2 q9xh 4r1o", &key(), CodeKind::Support, &h));
    assert!(!verify_code(
        "K7M2-Q9XH-4R11",
        &key(),
        CodeKind::Support,
        &h
    ));
    assert!(!verify_code(
        "K7M2-Q9XH-4R10",
        &key(),
        CodeKind::Enrollment,
        &h
    ));
    let other = CodeHashKey::from_slice(&[0x43; 32]).unwrap();
    assert!(!verify_code(
        "K7M2-Q9XH-4R10",
        &other,
        CodeKind::Support,
        &h
    ));
    assert!(!verify_code("garbage", &key(), CodeKind::Support, &h));
}

#[test]
fn debug_redacts_codes_and_keys() {
    let code = SupportCode::parse("K7M2-Q9XH-4R10").unwrap();
    let dbg = format!("{code:?} {:?}", key());
    assert!(!dbg.contains("K7M2"));
    assert!(!dbg.contains("66, 66"));
    assert!(dbg.contains("redacted"));
}

#[test]
fn bad_key_length_is_rejected() {
    assert_eq!(
        CodeHashKey::from_slice(&[1; 16]).err(),
        Some(CodeError::BadKey)
    );
}

proptest! {
    #[test]
    fn display_form_parses_back(_seed in any::<u8>()) {
        let code = SupportCode::generate().unwrap();
        let back = SupportCode::parse(&code.display()).unwrap();
        prop_assert_eq!(back.normalized(), code.normalized());
        prop_assert_eq!(
            SupportCode::parse(&code.display().to_lowercase()).unwrap().normalized(),
            code.normalized()
        );
    }

    #[test]
    fn parse_never_panics_and_output_is_in_alphabet(s in ".{0,80}") {
        if let Ok(code) = SupportCode::parse(&s) {
            prop_assert_eq!(code.normalized().len(), CODE_LEN);
            prop_assert!(code.normalized().bytes().all(|c| CODE_ALPHABET.contains(&c)));
        }
    }
}
