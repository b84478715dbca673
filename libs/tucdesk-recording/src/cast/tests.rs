use super::*;

fn header() -> CastHeader {
    CastHeader {
        width: 80,
        height: 24,
        timestamp: 1_700_000_000,
        term: Some("xterm-256color".into()),
        shell: Some("/bin/bash".into()),
    }
}

fn write(events: impl FnOnce(&mut CastWriter<Vec<u8>>)) -> Vec<u8> {
    let mut writer = CastWriter::new(Vec::new(), &header()).unwrap_or_else(|e| panic!("{e}"));
    events(&mut writer);
    writer.finish().unwrap_or_else(|e| panic!("{e}"))
}

fn parse(bytes: &[u8]) -> Result<Cast, CastError> {
    parse_cast(bytes, CastLimits::default())
}

#[test]
fn writes_the_asciicast_v2_layout() {
    let bytes = write(|w| {
        w.output(Duration::from_millis(1500), b"hi\r\n").ok();
        w.resize(Duration::from_secs(2), 100, 30).ok();
    });
    let text = String::from_utf8(bytes).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let header: serde_json::Value = serde_json::from_str(lines[0]).unwrap_or_default();
    assert_eq!(header["version"], 2);
    assert_eq!(header["width"], 80);
    assert_eq!(header["height"], 24);
    assert_eq!(header["timestamp"], 1_700_000_000u64);
    assert_eq!(header["env"]["TERM"], "xterm-256color");
    assert_eq!(header["env"]["SHELL"], "/bin/bash");
    assert_eq!(lines[1], r#"[1.500000, "o", "hi\r\n"]"#);
    assert_eq!(lines[2], r#"[2.000000, "r", "100x30"]"#);
    assert_eq!(lines.len(), 3);
}

#[test]
fn a_utf8_sequence_split_across_chunks_is_carried_over() {
    let euro = "€".as_bytes();
    let bytes = write(|w| {
        w.output(Duration::ZERO, &euro[..1]).ok();
        w.output(Duration::ZERO, &euro[1..2]).ok();
        w.output(Duration::ZERO, &euro[2..]).ok();
    });
    let cast = parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cast.events,
        vec![CastEvent::Output {
            time: Duration::ZERO,
            data: "€".into()
        }]
    );
}

#[test]
fn invalid_bytes_become_replacement_characters() {
    let bytes = write(|w| {
        w.output(Duration::ZERO, b"a\xffb\xe2\x82").ok();
    });
    let cast = parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
    let data: String = cast
        .events
        .iter()
        .filter_map(|e| match e {
            CastEvent::Output { data, .. } => Some(data.as_str()),
            CastEvent::Resize { .. } => None,
        })
        .collect();
    assert_eq!(data, "a\u{FFFD}b\u{FFFD}");
}

#[test]
fn times_never_go_backwards_in_the_file() {
    let bytes = write(|w| {
        w.output(Duration::from_secs(5), b"a").ok();
        w.output(Duration::from_secs(3), b"b").ok();
    });
    let cast = parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        cast.events
            .iter()
            .all(|e| e.time() == Duration::from_secs(5))
    );
}

#[test]
fn parser_errors_name_the_line() {
    let head = header().to_json().unwrap_or_default();
    let cases: &[(&str, u64, &str)] = &[
        ("[1.0, \"o\", \"x\"]\n[0.5, \"o\", \"y\"]", 3, "backwards"),
        ("[1.0, \"x\", \"x\"]", 2, "code"),
        ("[1.0, \"o\"]", 2, "array"),
        ("[-1.0, \"o\", \"x\"]", 2, "time"),
        ("[1.0, \"r\", \"0x10\"]", 2, "resize"),
        ("[1.0, \"r\", \"80x\"]", 2, "resize"),
        ("[1.0, \"o\", 5]", 2, "string"),
        ("[1.0, \"o\", \"x\"]\n\n", 3, "EOF"),
        ("not json", 2, "expected"),
    ];
    for (body, line, needle) in cases {
        let text = format!("{head}\n{body}\n");
        match parse(text.as_bytes()) {
            Err(CastError::Invalid { line: got, message }) => {
                assert_eq!(got, *line, "{body}: {message}");
                assert!(message.contains(needle), "{body}: {message}");
            }
            other => panic!("{body}: expected an error on line {line}, got {other:?}"),
        }
    }
}

#[test]
fn header_must_be_version_2_with_sane_dimensions() {
    for head in [
        r#"{"version": 1, "width": 80, "height": 24}"#,
        r#"{"version": 2, "width": 0, "height": 24}"#,
        r#"{"version": 2, "width": 80, "height": 1001}"#,
        r#"{"version": 2, "width": 80}"#,
        r#"[2]"#,
    ] {
        assert!(
            matches!(
                parse(head.as_bytes()),
                Err(CastError::Invalid { line: 1, .. })
            ),
            "{head}"
        );
    }
    assert!(matches!(parse(b""), Err(CastError::Empty)));
    let minimal =
        parse(br#"{"version": 2, "width": 80, "height": 24}"#).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(minimal.header.term, None);
}

#[test]
fn parser_bounds_line_length_and_event_count() {
    let head = header().to_json().unwrap_or_default();
    let long = format!("{head}\n[0.0, \"o\", \"{}\"]\n", "x".repeat(200));
    let limits = CastLimits {
        max_line_len: 128,
        max_events: 10,
    };
    assert!(matches!(
        parse_cast(long.as_bytes(), limits),
        Err(CastError::LineTooLong { line: 2, .. })
    ));
    let many = format!("{head}\n{}", "[0.0, \"o\", \"x\"]\n".repeat(11));
    assert!(matches!(
        parse_cast(many.as_bytes(), limits),
        Err(CastError::TooManyEvents(10))
    ));
}

#[test]
fn writer_refuses_bad_dimensions() {
    let mut bad = header();
    bad.width = 0;
    assert!(CastWriter::new(Vec::new(), &bad).is_err());
    let mut writer = CastWriter::new(Vec::new(), &header()).unwrap_or_else(|e| panic!("{e}"));
    assert!(writer.resize(Duration::ZERO, 1001, 10).is_err());
}
