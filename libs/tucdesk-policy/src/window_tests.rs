#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn window(days: Option<&[&str]>, hours: Option<&str>, zone: &str) -> TimeWindow {
    TimeWindow::parse(days, hours, zone).unwrap()
}

fn at(utc: &str) -> Timestamp {
    utc.parse().unwrap()
}

#[test]
fn days_alone_cover_whole_local_days() {
    let weekend = window(Some(&["sat", "sun"]), None, "UTC");
    // 2025-06-07 is a Saturday.
    assert!(weekend.contains(at("2025-06-07T00:00:00Z")));
    assert!(weekend.contains(at("2025-06-08T23:59:59Z")));
    assert!(!weekend.contains(at("2025-06-06T23:59:59Z")));
    assert!(!weekend.contains(at("2025-06-09T00:00:00Z")));
}

#[test]
fn days_are_judged_in_the_windows_zone() {
    let saturday_in_tokyo = window(Some(&["sat"]), None, "Asia/Tokyo");
    // Friday 15:00 UTC is already Saturday 00:00 in Tokyo (UTC+9).
    assert!(saturday_in_tokyo.contains(at("2025-06-06T15:00:00Z")));
    assert!(!saturday_in_tokyo.contains(at("2025-06-06T14:59:59Z")));
}

#[test]
fn hours_start_inclusive_end_exclusive() {
    let office = window(None, Some("09:00-18:00"), "UTC");
    assert!(!office.contains(at("2025-06-04T08:59:59Z")));
    assert!(office.contains(at("2025-06-04T09:00:00Z")));
    assert!(office.contains(at("2025-06-04T17:59:59.999Z")));
    assert!(!office.contains(at("2025-06-04T18:00:00Z")));
}

#[test]
fn wrapping_hours_count_for_the_day_they_start() {
    let friday_night = window(Some(&["fri"]), Some("22:00-06:00"), "UTC");
    // 2025-06-06 is a Friday.
    assert!(!friday_night.contains(at("2025-06-06T21:59:59Z")));
    assert!(friday_night.contains(at("2025-06-06T22:00:00Z")));
    assert!(
        friday_night.contains(at("2025-06-07T05:59:59Z")),
        "Saturday morning belongs to Friday"
    );
    assert!(!friday_night.contains(at("2025-06-07T06:00:00Z")));
    assert!(
        !friday_night.contains(at("2025-06-07T22:00:00Z")),
        "Saturday night is not listed"
    );
    assert!(
        !friday_night.contains(at("2025-06-06T05:00:00Z")),
        "Friday morning belongs to Thursday"
    );
}

#[test]
fn hours_ending_at_midnight_run_to_the_end_of_the_day() {
    let evening = window(Some(&["mon"]), Some("20:00-00:00"), "UTC");
    // 2025-06-09 is a Monday.
    assert!(evening.contains(at("2025-06-09T23:59:59Z")));
    assert!(!evening.contains(at("2025-06-10T00:00:00Z")));
}

#[test]
fn spring_forward_skips_wall_clock_times() {
    // Europe/Berlin, Sunday 2025-03-30: 02:00 CET jumps to 03:00 CEST at 01:00 UTC.
    let skipped_hour = window(Some(&["sun"]), Some("02:00-03:00"), "Europe/Berlin");
    for instant in [
        "2025-03-30T00:59:59Z",
        "2025-03-30T01:00:00Z",
        "2025-03-30T01:30:00Z",
    ] {
        assert!(!skipped_hour.contains(at(instant)), "{instant}");
    }
    // The wall-clock window 01:00-04:00 lasts two real hours that day.
    let night = window(Some(&["sun"]), Some("01:00-04:00"), "Europe/Berlin");
    assert!(night.contains(at("2025-03-30T00:00:00Z"))); // 01:00 CET
    assert!(night.contains(at("2025-03-30T01:59:59Z"))); // 03:59:59 CEST
    assert!(!night.contains(at("2025-03-30T02:00:00Z"))); // 04:00 CEST
    // Office hours follow the wall clock after the change: 09:00 CEST is 07:00 UTC.
    let office = window(None, Some("09:00-18:00"), "Europe/Berlin");
    assert!(!office.contains(at("2025-03-31T06:59:59Z")));
    assert!(office.contains(at("2025-03-31T07:00:00Z")));
}

#[test]
fn fall_back_repeats_wall_clock_times() {
    // Europe/Berlin, Sunday 2025-10-26: 03:00 CEST falls back to 02:00 CET at 01:00 UTC,
    // so 02:00-03:00 happens twice and the window covers both.
    let repeated_hour = window(Some(&["sun"]), Some("02:00-03:00"), "Europe/Berlin");
    assert!(!repeated_hour.contains(at("2025-10-25T23:59:59Z"))); // 01:59:59 CEST
    assert!(repeated_hour.contains(at("2025-10-26T00:30:00Z"))); // 02:30 CEST
    assert!(repeated_hour.contains(at("2025-10-26T01:30:00Z"))); // 02:30 CET
    assert!(!repeated_hour.contains(at("2025-10-26T02:00:00Z"))); // 03:00 CET
}

#[test]
fn every_problem_is_reported() {
    let problems = TimeWindow::parse(
        Some(&["mon", "funday", "Tue"]),
        Some("9:00-18:00"),
        "Mars/Olympus",
    )
    .unwrap_err();
    let fields: Vec<_> = problems
        .iter()
        .map(|p| (p.field, p.value.as_deref()))
        .collect();
    assert_eq!(
        fields,
        [
            ("days", Some("funday")),
            ("days", Some("Tue")),
            ("hours", Some("9:00-18:00")),
            ("timezone", Some("Mars/Olympus")),
        ]
    );
}

#[test]
fn malformed_hours_are_refused() {
    for bad in [
        "",
        "09:00",
        "09:00-",
        "09:00-18:00-20:00",
        "09:00 - 18:00",
        "24:00-01:00",
        "09:60-10:00",
        "9:00-18:00",
        "09:00-18",
        "aa:bb-cc:dd",
        "09:00-09:00",
        "+9:00-10:00",
    ] {
        assert!(parse_hours(bad).is_err(), "{bad:?} should be refused");
    }
    assert_eq!(
        parse_hours("23:59-00:00").unwrap(),
        Hours {
            start: 86_340,
            end: 0
        }
    );
}

#[test]
fn empty_day_list_is_refused() {
    let problems = TimeWindow::parse(Some(&[]), None, "UTC").unwrap_err();
    assert_eq!(problems[0].field, "days");
}

#[test]
fn utc_and_iana_zones_exist() {
    for zone in [
        "UTC",
        "Etc/UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
    ] {
        assert!(TimeZone::get(zone).is_ok(), "{zone}");
        window(None, None, zone);
    }
}

#[test]
fn full_coverage_is_detected() {
    assert!(window(None, None, "UTC").covers_all_time());
    let all_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    assert!(window(Some(&all_days), None, "UTC").covers_all_time());
    assert!(!window(Some(&all_days[..6]), None, "UTC").covers_all_time());
    assert!(!window(None, Some("00:00-23:59"), "UTC").covers_all_time());
}

#[test]
fn extreme_instants_are_clamped_not_panicking() {
    let window = window(Some(&["mon"]), Some("22:00-06:00"), "Pacific/Kiritimati");
    for millis in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX] {
        let _ = window.contains(instant_from_unix_ms(millis));
    }
    assert_eq!(instant_from_unix_ms(i64::MIN), Timestamp::MIN);
    assert_eq!(instant_from_unix_ms(i64::MAX), Timestamp::MAX);
}
