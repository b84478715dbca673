//! Time windows (`during` / `outside`): weekdays and a wall-clock hour range in an IANA zone.
//!
//! Windows are wall-clock: "09:00-18:00" in Europe/Berlin means 09:00 on Berlin clocks whatever
//! the UTC offset that day, so on a DST day the window is an hour shorter or longer in real
//! time, and wall-clock times skipped by a spring-forward gap never occur. A range whose start is
//! later than its end wraps past midnight; its early-morning part belongs to the day it started
//! on, so `days: [fri]` with "22:00-06:00" covers Friday 22:00 to Saturday 06:00.

use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;

use crate::limits::MAX_ENTRY_BYTES;
use crate::names::clip;

/// Day names as written in YAML, Monday first (the bit index in [`TimeWindow::days`]).
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Bit set with all seven days.
const EVERY_DAY: u8 = 0b111_1111;

/// A half-open wall-clock range in seconds since local midnight. `start > end` wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hours {
    start: u32,
    end: u32,
}

/// A parsed `during`/`outside` value.
#[derive(Debug, Clone)]
pub(crate) struct TimeWindow {
    /// Bit `i` set = the window opens on `DAY_NAMES[i]`.
    days: u8,
    /// `None` = the whole day.
    hours: Option<Hours>,
    zone: TimeZone,
}

/// One problem with a window, naming the field (and value) so the caller can point at its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WindowProblem {
    pub field: &'static str,
    pub value: Option<String>,
    pub message: String,
}

impl WindowProblem {
    fn new(field: &'static str, value: Option<&str>, message: String) -> Self {
        WindowProblem {
            field,
            value: value.map(str::to_owned),
            message,
        }
    }
}

impl TimeWindow {
    /// Builds a window from its YAML fields; `days` and `hours` are `None` when absent.
    /// Reports every problem, not just the first.
    pub(crate) fn parse(
        days: Option<&[&str]>,
        hours: Option<&str>,
        timezone: &str,
    ) -> Result<TimeWindow, Vec<WindowProblem>> {
        let mut problems = Vec::new();
        let day_bits = match days {
            None => EVERY_DAY,
            Some([]) => {
                problems.push(WindowProblem::new("days", None, "`days` is empty, so the window would never open; list at least one day or leave `days` out for every day".to_owned()));
                0
            }
            Some(names) => names.iter().fold(0, |bits, name| {
                match DAY_NAMES.iter().position(|day| day == name) {
                    Some(index) => bits | 1 << index,
                    None => {
                        problems.push(WindowProblem::new(
                            "days",
                            Some(name),
                            format!(
                                "unknown day `{}` (expected one of: {})",
                                clip(name),
                                DAY_NAMES.join(", ")
                            ),
                        ));
                        bits
                    }
                }
            }),
        };
        let hours = hours.and_then(|text| match parse_hours(text) {
            Ok(hours) => Some(hours),
            Err(message) => {
                problems.push(WindowProblem::new("hours", Some(text), message));
                None
            }
        });
        let zone = if timezone.len() > MAX_ENTRY_BYTES {
            problems.push(WindowProblem::new(
                "timezone",
                None,
                format!("time zone name is longer than {MAX_ENTRY_BYTES} bytes"),
            ));
            None
        } else {
            // jiff answers `Etc/Unknown` with its "unknown zone" sentinel (UTC in disguise);
            // a window in it would silently be a UTC window.
            match TimeZone::get(timezone)
                .ok()
                .filter(|zone| !zone.is_unknown())
            {
                Some(zone) => Some(zone),
                None => {
                    problems.push(WindowProblem::new("timezone", Some(timezone), format!("unknown time zone `{}` (use an IANA name such as Europe/Berlin, or UTC)", clip(timezone))));
                    None
                }
            }
        };
        match zone {
            Some(zone) if problems.is_empty() => Ok(TimeWindow {
                days: day_bits,
                hours,
                zone,
            }),
            _ => Err(problems),
        }
    }

    /// Whether the instant falls inside the window, judged on the zone's wall clock.
    pub(crate) fn contains(&self, at: Timestamp) -> bool {
        let local = self.zone.to_datetime(at);
        let today = day_index(local.weekday());
        let second_of_day = u32::from(local.hour().unsigned_abs()) * 3600
            + u32::from(local.minute().unsigned_abs()) * 60
            + u32::from(local.second().unsigned_abs());
        match self.hours {
            None => self.opens_on(today),
            Some(Hours { start, end }) if start < end => {
                self.opens_on(today) && (start..end).contains(&second_of_day)
            }
            Some(Hours { start, end }) => {
                let yesterday = (today + 6) % 7;
                (self.opens_on(today) && second_of_day >= start)
                    || (self.opens_on(yesterday) && second_of_day < end)
            }
        }
    }

    /// Whether the window contains every instant (every day, no hours): `during` then always
    /// matches and `outside` never does.
    pub(crate) fn covers_all_time(&self) -> bool {
        self.days == EVERY_DAY && self.hours.is_none()
    }

    fn opens_on(&self, day: u32) -> bool {
        self.days & (1 << day) != 0
    }
}

/// Monday = 0 ... Sunday = 6, the index into [`DAY_NAMES`].
fn day_index(weekday: Weekday) -> u32 {
    u32::from(weekday.to_monday_zero_offset().unsigned_abs())
}

/// Parses "HH:MM-HH:MM" (two digits each, 24-hour clock, end exclusive).
fn parse_hours(text: &str) -> Result<Hours, String> {
    let format_hint = || {
        format!(
            "hours `{}` must look like \"09:00-18:00\" (HH:MM-HH:MM, 24-hour clock)",
            clip(text)
        )
    };
    let (start, end) = text.split_once('-').ok_or_else(format_hint)?;
    let start = parse_clock(start).ok_or_else(format_hint)?;
    let end = parse_clock(end).ok_or_else(format_hint)?;
    if start == end {
        return Err(format!(
            "hours `{text}` start and end at the same time; leave `hours` out for the whole day"
        ));
    }
    Ok(Hours { start, end })
}

/// Parses "HH:MM" into seconds since midnight.
fn parse_clock(text: &str) -> Option<u32> {
    let bytes = text.as_bytes();
    let [h1, h2, b':', m1, m2] = *bytes else {
        return None;
    };
    let digit = |byte: u8| byte.is_ascii_digit().then(|| u32::from(byte - b'0'));
    let hour = digit(h1)? * 10 + digit(h2)?;
    let minute = digit(m1)? * 10 + digit(m2)?;
    (hour < 24 && minute < 60).then_some(hour * 3600 + minute * 60)
}

/// The evaluation instant of a request. Instants beyond jiff's range (years outside
/// -9999..=9999) are clamped, so every `i64` still evaluates deterministically.
pub(crate) fn instant_from_unix_ms(at_unix_ms: i64) -> Timestamp {
    Timestamp::from_millisecond(at_unix_ms).unwrap_or(if at_unix_ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
