//! Playback: writes a cast's output with its original timing, scaled by a speed factor and
//! with long pauses shortened, through an injectable sleeper (tests never sleep).

use std::io::Write;
use std::time::Duration;

use crate::RecordingError;
use crate::cast::CastEvent;

/// Slowest and fastest playback speed.
pub const MIN_SPEED: f64 = 0.01;
pub const MAX_SPEED: f64 = 1000.0;

/// How to play.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayOptions {
    /// 1.0 = real time, 2.0 = twice as fast.
    pub speed: f64,
    /// A pause longer than this (in recording time) is shortened to it.
    pub max_idle: Option<Duration>,
}

impl Default for PlayOptions {
    fn default() -> Self {
        Self {
            speed: 1.0,
            max_idle: None,
        }
    }
}

/// Waits between events; [`ThreadSleeper`] really sleeps, tests record the waits.
pub trait Sleeper {
    fn sleep(&mut self, duration: Duration);
}

/// `std::thread::sleep`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadSleeper;

impl Sleeper for ThreadSleeper {
    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

impl<F: FnMut(Duration)> Sleeper for F {
    fn sleep(&mut self, duration: Duration) {
        self(duration);
    }
}

/// What a playback did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayStats {
    pub events: u64,
    pub bytes: u64,
    /// Total time waited.
    pub waited: Duration,
}

/// Plays `events` into `out`: each output event's data after the (scaled, capped) pause since
/// the previous event. Resize events only advance time.
pub fn play<I, W, S>(
    events: I,
    options: PlayOptions,
    out: &mut W,
    sleeper: &mut S,
) -> Result<PlayStats, RecordingError>
where
    I: IntoIterator<Item = CastEvent>,
    W: Write,
    S: Sleeper,
{
    if !(options.speed.is_finite() && (MIN_SPEED..=MAX_SPEED).contains(&options.speed)) {
        return Err(RecordingError::Invalid(
            "speed must be between 0.01 and 1000".into(),
        ));
    }
    let mut stats = PlayStats::default();
    let mut last = Duration::ZERO;
    for event in events {
        let time = event.time();
        let mut gap = time.saturating_sub(last);
        last = time.max(last);
        if let Some(max_idle) = options.max_idle {
            gap = gap.min(max_idle);
        }
        let wait = gap.div_f64(options.speed);
        if !wait.is_zero() {
            sleeper.sleep(wait);
            stats.waited += wait;
        }
        stats.events += 1;
        if let CastEvent::Output { data, .. } = event {
            out.write_all(data.as_bytes())?;
            out.flush()?;
            stats.bytes += data.len() as u64;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(time_ms: u64, data: &str) -> CastEvent {
        CastEvent::Output {
            time: Duration::from_millis(time_ms),
            data: data.into(),
        }
    }

    #[test]
    fn plays_with_scaled_and_capped_pauses() {
        let events = vec![
            out(0, "a"),
            out(1000, "b"),
            CastEvent::Resize {
                time: Duration::from_millis(1500),
                cols: 100,
                rows: 40,
            },
            out(11_500, "c"),
        ];
        let mut waits = Vec::new();
        let mut written = Vec::new();
        let stats = play(
            events,
            PlayOptions {
                speed: 2.0,
                max_idle: Some(Duration::from_secs(2)),
            },
            &mut written,
            &mut |d| waits.push(d),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(written, b"abc");
        assert_eq!(
            waits,
            vec![
                Duration::from_millis(500),
                Duration::from_millis(250),
                Duration::from_millis(1000)
            ]
        );
        assert_eq!(stats.events, 4);
        assert_eq!(stats.bytes, 3);
        assert_eq!(stats.waited, Duration::from_millis(1750));
    }

    #[test]
    fn absurd_speeds_are_refused() {
        for speed in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e6] {
            let options = PlayOptions {
                speed,
                max_idle: None,
            };
            assert!(play(Vec::new(), options, &mut Vec::new(), &mut |_| {}).is_err());
        }
    }
}
