//! Playing a cast to the terminal: events are parsed one at a time from the decrypted stream
//! (never the whole plaintext in memory) and written with their original timing, scaled.

use std::io::{BufRead, Read, Write};
use std::time::Duration;

use tucdesk_recording::{
    CastError, CastEvent, CastLimits, CastReader, PlayOptions, PlayStats, Sleeper,
};

use super::verify::VerifyError;

/// Iterates a cast's events, keeping the first parse error for after playback.
struct Events<R: BufRead> {
    reader: CastReader<R>,
    error: Option<CastError>,
}

impl<R: BufRead> Iterator for Events<R> {
    type Item = CastEvent;

    fn next(&mut self) -> Option<CastEvent> {
        if self.error.is_some() {
            return None;
        }
        match self.reader.next_event() {
            Ok(event) => event,
            Err(err) => {
                self.error = Some(err);
                None
            }
        }
    }
}

/// The playback options from `--speed` and `--max-idle` (seconds).
pub fn options(speed: f64, max_idle: Option<f64>) -> Result<PlayOptions, String> {
    use tucdesk_recording::play::{MAX_SPEED, MIN_SPEED};
    if !(speed.is_finite() && (MIN_SPEED..=MAX_SPEED).contains(&speed)) {
        return Err(format!(
            "--speed must be between {MIN_SPEED} and {MAX_SPEED}"
        ));
    }
    let max_idle = match max_idle {
        None => None,
        Some(secs) if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 => {
            Some(Duration::from_secs_f64(secs))
        }
        Some(_) => return Err("--max-idle must be between 0 and 86400 seconds".into()),
    };
    Ok(PlayOptions { speed, max_idle })
}

/// Plays the plaintext cast `plaintext` into `out`.
pub fn play_cast<R: Read, W: Write, S: Sleeper>(
    plaintext: R,
    options: PlayOptions,
    out: &mut W,
    sleeper: &mut S,
) -> Result<PlayStats, VerifyError> {
    let reader = CastReader::new(std::io::BufReader::new(plaintext), CastLimits::default())
        .map_err(|err| VerifyError::Recording(err.into()))?;
    let mut events = Events {
        reader,
        error: None,
    };
    let stats = tucdesk_recording::play(&mut events, options, out, sleeper)?;
    match events.error {
        Some(err) => Err(VerifyError::Recording(err.into())),
        None => Ok(stats),
    }
}

/// Decrypts the (verified) age file `ciphertext` with `identities` and plays it.
pub fn play_encrypted<R: Read, W: Write, S: Sleeper>(
    ciphertext: R,
    identities: &[age::x25519::Identity],
    options: PlayOptions,
    out: &mut W,
    sleeper: &mut S,
) -> Result<PlayStats, VerifyError> {
    let plaintext = tucdesk_recording::crypt::decrypt_reader(ciphertext, identities)?;
    play_cast(plaintext, options, out, sleeper)
}
