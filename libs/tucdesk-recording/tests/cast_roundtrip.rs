//! Property tests: whatever the PTY produces and however it is chunked, the writer's file
//! parses back to the same events, and the output text equals the lossy UTF-8 decoding of
//! the whole byte stream.

use std::time::Duration;

use proptest::prelude::*;
use tucdesk_recording::cast::{CastEvent, CastHeader, CastLimits, CastWriter, parse_cast};

#[derive(Debug, Clone)]
enum Op {
    Output(u64, Vec<u8>),
    Resize(u64, u16, u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..5_000_000, proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(dt, bytes)| Op::Output(dt, bytes)),
        1 => (0u64..5_000_000, 1u16..=1000, 1u16..=1000).prop_map(|(dt, c, r)| Op::Resize(dt, c, r)),
        2 => (0u64..1000, "[ -~é€😀\r\n\t\u{1b}]{0,20}")
            .prop_map(|(dt, s)| Op::Output(dt, s.into_bytes())),
    ]
}

fn header() -> CastHeader {
    CastHeader {
        width: 120,
        height: 40,
        timestamp: 1_700_000_000,
        term: Some("xterm-256color".into()),
        shell: Some("/bin/zsh".into()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn writer_output_parses_back_exactly(ops in proptest::collection::vec(op(), 0..40)) {
        let mut writer = CastWriter::new(Vec::new(), &header()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut time = 0u64;
        let mut all_bytes = Vec::new();
        let mut resizes = Vec::new();
        for op in &ops {
            match op {
                Op::Output(dt, bytes) => {
                    time += dt;
                    all_bytes.extend_from_slice(bytes);
                    writer.output(Duration::from_micros(time), bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
                Op::Resize(dt, c, r) => {
                    time += dt;
                    resizes.push((Duration::from_micros(time), *c, *r));
                    writer.resize(Duration::from_micros(time), *c, *r).map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
            }
        }
        let bytes = writer.finish().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let cast = parse_cast(bytes.as_slice(), CastLimits::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&cast.header, &header());
        let text: String = cast.events.iter().filter_map(|e| match e {
            CastEvent::Output { data, .. } => Some(data.as_str()),
            CastEvent::Resize { .. } => None,
        }).collect();
        prop_assert_eq!(text, String::from_utf8_lossy(&all_bytes).into_owned());
        let parsed_resizes: Vec<_> = cast.events.iter().filter_map(|e| match e {
            CastEvent::Resize { time, cols, rows } => Some((*time, *cols, *rows)),
            CastEvent::Output { .. } => None,
        }).collect();
        prop_assert_eq!(parsed_resizes, resizes);
        // Times are exact to the microsecond and never go backwards.
        let times: Vec<Duration> = cast.events.iter().map(CastEvent::time).collect();
        prop_assert!(times.windows(2).all(|w| w[0] <= w[1]));
        prop_assert!(times.last().is_none_or(|t| *t <= Duration::from_micros(time)));
    }

    #[test]
    fn chunking_does_not_change_the_text(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        cuts in proptest::collection::vec(0usize..512, 0..32),
    ) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
        cuts.sort_unstable();
        let mut writer = CastWriter::new(Vec::new(), &header()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut start = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            writer.output(Duration::ZERO, &bytes[start..cut]).map_err(|e| TestCaseError::fail(e.to_string()))?;
            start = cut;
        }
        let file = writer.finish().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let cast = parse_cast(file.as_slice(), CastLimits::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let text: String = cast.events.iter().filter_map(|e| match e {
            CastEvent::Output { data, .. } => Some(data.as_str()),
            CastEvent::Resize { .. } => None,
        }).collect();
        prop_assert_eq!(text, String::from_utf8_lossy(&bytes).into_owned());
    }

    #[test]
    fn the_parser_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_cast(bytes.as_slice(), CastLimits { max_line_len: 256, max_events: 16 });
    }
}
