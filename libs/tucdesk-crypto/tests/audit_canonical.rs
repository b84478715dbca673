//! Canonical JSON (RFC 8785 rules) for the event context, and the event
//! bounds and canonical byte layout that entry hashes are computed over.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Map, Value, json};
use tucdesk_crypto::audit::canonical_json::{self, CanonicalJsonError, format_f64, parse_object};
use tucdesk_crypto::audit::{
    Actor, ActorKind, AuditEvent, EventError, GENESIS_PREV_HASH, MAX_CANONICAL_ENTRY_BYTES,
    MAX_CONTEXT_BYTES, MAX_CONTEXT_DEPTH, MAX_DISPLAY_LEN, MAX_ID_LEN, MAX_REASON_LEN,
    MAX_TARGET_LEN, PolicyDecision, PolicyResult, canonical_bytes,
};

/// A mutation of an event and the error it must produce.
type Case = (fn(&mut AuditEvent), EventError);

fn canon(text: &str) -> String {
    String::from_utf8(canonical_json::to_vec(&parse_object(text).unwrap(), 1 << 20, 64).unwrap())
        .unwrap()
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

#[test]
fn canonical_json_does_not_depend_on_key_order_or_whitespace() {
    let a = canon(r#"{"b":1,"a":[true,null,"x"],"c":{"y":"z","x":1.5}}"#);
    let b = canon("{ \"c\" : {\"x\":1.50, \"y\":\"z\"},\n \"a\":[true, null, \"x\"], \"b\": 1 }");
    assert_eq!(a, b);
    assert_eq!(a, r#"{"a":[true,null,"x"],"b":1,"c":{"x":1.5,"y":"z"}}"#);
}

#[test]
fn canonical_json_matches_the_rfc8785_example() {
    // RFC 8785 §3.2.4 (input) and §3.2.4's expected output.
    let input = r#"{
        "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
        "literals": [null, true, false]
    }"#;
    assert_eq!(
        canon(input),
        "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\
         \"string\":\"€$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}"
    );
}

#[test]
fn canonical_json_sorts_keys_by_utf16_code_units() {
    // RFC 8785 §3.2.3: U+1F600 (surrogates D83D DE00) sorts before U+FB33,
    // unlike in UTF-8 byte order.
    let input = r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#;
    let out = canon(input);
    let expected_order = [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ];
    let positions: Vec<usize> = expected_order
        .iter()
        .map(|v| out.find(v).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{out}");
}

#[test]
fn numbers_follow_ecmascript_formatting() {
    // RFC 8785 Appendix B.
    let cases: [(u64, &str); 24] = [
        (0x0000000000000000, "0"),
        (0x8000000000000000, "0"),
        (0x0000000000000001, "5e-324"),
        (0x8000000000000001, "-5e-324"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0xffefffffffffffff, "-1.7976931348623157e+308"),
        (0x4340000000000000, "9007199254740992"),
        (0xc340000000000000, "-9007199254740992"),
        (0x4430000000000000, "295147905179352830000"),
        (0x44b52d02c7e14af5, "9.999999999999997e+22"),
        (0x44b52d02c7e14af6, "1e+23"),
        (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
        (0x444b1ae4d6e2ef4e, "999999999999999700000"),
        (0x444b1ae4d6e2ef4f, "999999999999999900000"),
        (0x444b1ae4d6e2ef50, "1e+21"),
        (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
        (0x3eb0c6f7a0b5ed8d, "0.000001"),
        (0x41b3de4355555553, "333333333.3333332"),
        (0x41b3de4355555554, "333333333.33333325"),
        (0x41b3de4355555555, "333333333.3333333"),
        (0x41b3de4355555556, "333333333.3333334"),
        (0x41b3de4355555557, "333333333.33333343"),
        (0xbecbf647612f3696, "-0.0000033333333333333333"),
        (0x43143ff3c1cb0959, "1424953923781206.2"),
    ];
    for (bits, want) in cases {
        assert_eq!(
            format_f64(f64::from_bits(bits)).unwrap(),
            want,
            "{bits:016x}"
        );
    }
}

#[test]
fn non_finite_numbers_are_rejected() {
    for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(format_f64(x), Err(CanonicalJsonError::NonFinite));
    }
    // Text forms never reach hashing either.
    for text in [
        r#"{"a":NaN}"#,
        r#"{"a":Infinity}"#,
        r#"{"a":1e400}"#,
        r#"{"a":-1e400}"#,
    ] {
        assert!(parse_object(text).is_err(), "{text}");
    }
}

#[test]
fn integers_must_be_exact_in_a_double() {
    let max = canonical_json::MAX_SAFE_INTEGER;
    let ok = obj(json!({ "a": max, "b": -(max as i64) }));
    assert!(canonical_json::to_vec(&ok, 1024, 8).is_ok());
    for bad in [
        json!({ "a": max + 1 }),
        json!({ "a": -(max as i64) - 1 }),
        json!({ "a": u64::MAX }),
    ] {
        assert_eq!(
            canonical_json::to_vec(&obj(bad), 1024, 8),
            Err(CanonicalJsonError::IntegerOutOfRange)
        );
    }
}

#[test]
fn context_size_is_capped() {
    let overhead = r#"{"k":""}"#.len();
    let fits = obj(json!({ "k": "x".repeat(MAX_CONTEXT_BYTES - overhead) }));
    assert_eq!(
        canonical_json::to_vec(&fits, MAX_CONTEXT_BYTES, MAX_CONTEXT_DEPTH)
            .unwrap()
            .len(),
        MAX_CONTEXT_BYTES
    );
    let over = obj(json!({ "k": "x".repeat(MAX_CONTEXT_BYTES - overhead + 1) }));
    assert_eq!(
        canonical_json::to_vec(&over, MAX_CONTEXT_BYTES, MAX_CONTEXT_DEPTH),
        Err(CanonicalJsonError::TooLarge {
            max: MAX_CONTEXT_BYTES
        })
    );
    // Escapes count: 3000 control characters become 18000 bytes.
    let escaped = obj(json!({ "k": "\u{1}".repeat(3000) }));
    assert!(canonical_json::to_vec(&escaped, MAX_CONTEXT_BYTES, MAX_CONTEXT_DEPTH).is_err());
    let mut event = sample_event();
    event.context = over;
    assert_eq!(
        event.validate(),
        Err(EventError::Context(CanonicalJsonError::TooLarge {
            max: MAX_CONTEXT_BYTES
        }))
    );
}

fn nested(depth: usize) -> String {
    // `depth` levels of objects: {"a":{"a":…{}…}}
    format!(
        "{}{{}}{}",
        r#"{"a":"#.repeat(depth - 1),
        "}".repeat(depth - 1)
    )
}

#[test]
fn context_depth_is_capped_when_parsing_and_when_hashing() {
    let ok = parse_object(&nested(MAX_CONTEXT_DEPTH)).unwrap();
    assert!(canonical_json::to_vec(&ok, MAX_CONTEXT_BYTES, MAX_CONTEXT_DEPTH).is_ok());
    assert_eq!(
        parse_object(&nested(MAX_CONTEXT_DEPTH + 1)),
        Err(CanonicalJsonError::TooDeep {
            max: MAX_CONTEXT_DEPTH
        })
    );
    // serde_json's own parser allows deeper nesting than our cap.
    let deep = serde_json::from_str::<Map<String, Value>>(&nested(MAX_CONTEXT_DEPTH + 1)).unwrap();
    assert_eq!(
        canonical_json::to_vec(&deep, MAX_CONTEXT_BYTES, MAX_CONTEXT_DEPTH),
        Err(CanonicalJsonError::TooDeep {
            max: MAX_CONTEXT_DEPTH
        })
    );
}

#[test]
fn duplicate_keys_and_non_objects_are_refused() {
    assert!(matches!(
        parse_object(r#"{"a":1,"b":{"c":1,"c":2}}"#),
        Err(CanonicalJsonError::DuplicateKey(_))
    ));
    assert_eq!(parse_object("[1]"), Err(CanonicalJsonError::NotAnObject));
    assert!(matches!(
        parse_object(r#"{"a":1} x"#),
        Err(CanonicalJsonError::Syntax(_))
    ));
}

fn sample_event() -> AuditEvent {
    AuditEvent {
        event_id: "0190c0de-0000-7000-8000-000000000001".into(),
        team_id: "team-1".into(),
        actor: Actor {
            kind: ActorKind::User,
            id: "u1".into(),
            display: None,
        },
        action: "auth.login".into(),
        target: String::new(),
        occurred_at: 1,
        session_id: None,
        policy_result: None,
        context: Map::new(),
    }
}

#[test]
fn canonical_bytes_follow_the_documented_layout() {
    let e = sample_event();
    let mut want = Vec::new();
    want.extend_from_slice(b"tucdesk-audit-entry-v1");
    want.extend_from_slice(&7u64.to_be_bytes());
    want.extend_from_slice(&[0xab; 32]);
    for s in [
        "team-1",
        "0190c0de-0000-7000-8000-000000000001",
        "user",
        "u1",
    ] {
        want.extend_from_slice(&(s.len() as u32).to_be_bytes());
        want.extend_from_slice(s.as_bytes());
    }
    want.push(0); // no display
    for s in ["auth.login", ""] {
        want.extend_from_slice(&(s.len() as u32).to_be_bytes());
        want.extend_from_slice(s.as_bytes());
    }
    want.extend_from_slice(&1u64.to_be_bytes());
    want.push(0); // no session
    want.push(0); // no policy result
    want.extend_from_slice(&2u32.to_be_bytes());
    want.extend_from_slice(b"{}");
    assert_eq!(canonical_bytes(7, &[0xab; 32], &e).unwrap(), want);
    assert!(want.len() <= MAX_CANONICAL_ENTRY_BYTES);
}

#[test]
fn optional_fields_cannot_be_confused_with_empty_ones() {
    let mut a = sample_event();
    a.actor.display = Some(String::new());
    let b = sample_event();
    assert_ne!(
        canonical_bytes(1, &GENESIS_PREV_HASH, &a).unwrap(),
        canonical_bytes(1, &GENESIS_PREV_HASH, &b).unwrap()
    );
}

#[test]
fn malformed_events_are_never_hashed() {
    let cases: Vec<Case> = vec![
        (|e| e.event_id = "not-a-uuid".into(), EventError::BadEventId),
        (
            |e| e.event_id = e.event_id.to_uppercase(),
            EventError::BadEventId,
        ),
        (
            |e| e.team_id.clear(),
            EventError::Empty { field: "team_id" },
        ),
        (
            |e| e.actor.id.clear(),
            EventError::Empty { field: "actor.id" },
        ),
        (|e| e.action = "login".into(), EventError::BadAction),
        (|e| e.action = "Auth.Login".into(), EventError::BadAction),
        (|e| e.action = "auth..login".into(), EventError::BadAction),
        (|e| e.action = "auth.login.".into(), EventError::BadAction),
        (
            |e| e.team_id = "t".repeat(MAX_ID_LEN + 1),
            EventError::TooLong {
                field: "team_id",
                max: MAX_ID_LEN,
            },
        ),
        (
            |e| e.target = "t".repeat(MAX_TARGET_LEN + 1),
            EventError::TooLong {
                field: "target",
                max: MAX_TARGET_LEN,
            },
        ),
        (
            |e| e.actor.display = Some("d".repeat(MAX_DISPLAY_LEN + 1)),
            EventError::TooLong {
                field: "actor.display",
                max: MAX_DISPLAY_LEN,
            },
        ),
        (
            |e| {
                e.policy_result = Some(PolicyResult {
                    decision: PolicyDecision::Deny,
                    rule: "r".into(),
                    reason: "x".repeat(MAX_REASON_LEN + 1),
                    approver: None,
                })
            },
            EventError::TooLong {
                field: "policy_result.reason",
                max: MAX_REASON_LEN,
            },
        ),
    ];
    for (mutate, want) in cases {
        let mut e = sample_event();
        mutate(&mut e);
        assert_eq!(e.validate(), Err(want));
    }
    let mut ok = sample_event();
    ok.action = "session.exec_command.v2".into();
    ok.team_id = "t".repeat(MAX_ID_LEN);
    assert_eq!(ok.validate(), Ok(()));
}

#[test]
fn any_json_value_has_a_canonical_string() {
    let v = json!([1, { "b": 1, "a": [2.5, "\u{7f}"] }, null]);
    assert_eq!(
        canonical_json::to_string(&v).unwrap(),
        "[1,{\"a\":[2.5,\"\u{7f}\"],\"b\":1},null]"
    );
}
