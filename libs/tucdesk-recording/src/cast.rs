//! asciicast v2 (the asciinema file format): a JSON header line, then one JSON array per
//! event, `[time, code, data]`, each on its own line.
//!
//! We write two event codes: `"o"` (terminal output) and `"r"` (resize, `"COLSxROWS"`). Times
//! are seconds since the start with microsecond precision. PTY output arrives as bytes cut
//! anywhere, so the writer carries an incomplete UTF-8 sequence over to the next chunk and
//! turns invalid bytes into U+FFFD (exactly as `String::from_utf8_lossy` does on the whole
//! stream). The parser accepts exactly this format, bounded in line length and event count,
//! and names the line of the first error.

use std::io::{self, BufRead, Write};
use std::time::Duration;

/// Longest line the parser accepts (an output event of 32 KiB escaped as `\u00XX` is below
/// 200 KiB; a line of ours never comes near this).
pub const MAX_LINE_LEN: usize = 1024 * 1024;
/// Most events the parser accepts by default.
pub const DEFAULT_MAX_EVENTS: usize = 10_000_000;
/// Largest terminal dimension (docs/protocol.md §13: cols/rows 1..=1000).
pub const MAX_DIMENSION: u16 = 1000;
/// Longest `TERM` / `SHELL` value in the header.
pub const MAX_ENV_VALUE_LEN: usize = 256;
/// Latest event time accepted (a year), so times convert to microseconds without overflow.
pub const MAX_EVENT_TIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// The header line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CastHeader {
    pub width: u16,
    pub height: u16,
    /// Unix seconds of the start.
    pub timestamp: u64,
    pub term: Option<String>,
    pub shell: Option<String>,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CastEvent {
    /// Terminal output at `time` since the start.
    Output { time: Duration, data: String },
    /// The terminal was resized.
    Resize {
        time: Duration,
        cols: u16,
        rows: u16,
    },
}

impl CastEvent {
    pub fn time(&self) -> Duration {
        match self {
            Self::Output { time, .. } | Self::Resize { time, .. } => *time,
        }
    }
}

/// Why a cast could not be written or parsed.
#[derive(Debug, thiserror::Error)]
pub enum CastError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("line {line}: longer than {max} bytes")]
    LineTooLong { line: u64, max: usize },
    #[error("line {line}: {message}")]
    Invalid { line: u64, message: String },
    #[error("the file has no header line")]
    Empty,
    #[error("more than {0} events")]
    TooManyEvents(usize),
    #[error("invalid header: {0}")]
    Header(&'static str),
}

fn invalid(line: u64, message: impl Into<String>) -> CastError {
    CastError::Invalid {
        line,
        message: message.into(),
    }
}

fn check_dimensions(cols: u16, rows: u16) -> bool {
    (1..=MAX_DIMENSION).contains(&cols) && (1..=MAX_DIMENSION).contains(&rows)
}

impl CastHeader {
    /// The header as one JSON line (without the newline).
    pub fn to_json(&self) -> Result<String, CastError> {
        if !check_dimensions(self.width, self.height) {
            return Err(CastError::Header("width and height must be 1..=1000"));
        }
        let mut env = serde_json::Map::new();
        for (name, value) in [("TERM", &self.term), ("SHELL", &self.shell)] {
            if let Some(value) = value {
                if value.len() > MAX_ENV_VALUE_LEN {
                    return Err(CastError::Header(
                        "TERM and SHELL must be at most 256 bytes",
                    ));
                }
                env.insert(name.into(), value.clone().into());
            }
        }
        let header = serde_json::json!({
            "version": 2,
            "width": self.width,
            "height": self.height,
            "timestamp": self.timestamp,
            "env": env,
        });
        Ok(header.to_string())
    }
}

/// `secs.micros` with six digits, so every time roundtrips exactly.
fn format_time(time: Duration) -> String {
    format!("{}.{:06}", time.as_secs(), time.subsec_micros())
}

/// Writes an asciicast v2 stream. Times passed in must not go backwards (a smaller time is
/// written as the last one).
#[derive(Debug)]
pub struct CastWriter<W: Write> {
    out: W,
    /// Bytes of an incomplete UTF-8 sequence at the end of the last chunk (at most 3).
    carry: Vec<u8>,
    last: Duration,
    /// Plaintext bytes written so far, header included.
    written: u64,
}

impl<W: Write> CastWriter<W> {
    /// Starts a cast: writes the header line.
    pub fn new(mut out: W, header: &CastHeader) -> Result<Self, CastError> {
        let mut line = header.to_json()?;
        line.push('\n');
        out.write_all(line.as_bytes())?;
        Ok(Self {
            out,
            carry: Vec::with_capacity(4),
            last: Duration::ZERO,
            written: line.len() as u64,
        })
    }

    /// Continues a cast whose header (and maybe events) were already written elsewhere.
    pub fn resume(out: W, last: Duration, written: u64) -> Self {
        Self {
            out,
            carry: Vec::with_capacity(4),
            last,
            written,
        }
    }

    fn clamp(&mut self, time: Duration) -> Duration {
        let time = time.min(MAX_EVENT_TIME);
        if time > self.last {
            self.last = time;
        }
        self.last
    }

    fn line(&mut self, time: Duration, code: &str, data: &str) -> Result<(), CastError> {
        let data = serde_json::to_string(data)
            .map_err(|err| CastError::Io(io::Error::other(err.to_string())))?;
        let line = format!("[{}, \"{code}\", {data}]\n", format_time(time));
        self.out.write_all(line.as_bytes())?;
        self.written += line.len() as u64;
        Ok(())
    }

    /// Terminal output at `time` since the start: any bytes, cut anywhere.
    pub fn output(&mut self, time: Duration, bytes: &[u8]) -> Result<(), CastError> {
        let time = self.clamp(time);
        let text = decode_utf8_carry(&mut self.carry, bytes);
        if text.is_empty() {
            return Ok(());
        }
        self.line(time, "o", &text)
    }

    /// A resize at `time`.
    pub fn resize(&mut self, time: Duration, cols: u16, rows: u16) -> Result<(), CastError> {
        if !check_dimensions(cols, rows) {
            return Err(CastError::Header("cols and rows must be 1..=1000"));
        }
        let time = self.clamp(time);
        self.line(time, "r", &format!("{cols}x{rows}"))
    }

    /// Writes what is left of an incomplete UTF-8 sequence (as U+FFFD) at the last time.
    pub fn flush_carry(&mut self) -> Result<(), CastError> {
        if self.carry.is_empty() {
            return Ok(());
        }
        self.carry.clear();
        let time = self.last;
        self.line(time, "o", "\u{FFFD}")
    }

    /// Plaintext bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The time of the last event written.
    pub fn last_time(&self) -> Duration {
        self.last
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Ends the cast (flushing an incomplete UTF-8 sequence) and returns the writer.
    pub fn finish(mut self) -> Result<W, CastError> {
        self.flush_carry()?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Decodes `carry ‖ bytes` as UTF-8, replacing invalid sequences with U+FFFD, and leaves an
/// incomplete sequence at the end in `carry` for the next call.
pub fn decode_utf8_carry(carry: &mut Vec<u8>, bytes: &[u8]) -> String {
    let mut input = std::mem::take(carry);
    input.extend_from_slice(bytes);
    let mut text = String::with_capacity(input.len());
    let mut rest: &[u8] = &input;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                text.push_str(valid);
                break;
            }
            Err(err) => {
                let (valid, after) = rest.split_at(err.valid_up_to());
                // `valid_up_to` marks a UTF-8 boundary, so this never fails.
                text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                match err.error_len() {
                    Some(bad) => {
                        text.push('\u{FFFD}');
                        rest = after.get(bad..).unwrap_or_default();
                    }
                    None => {
                        // An incomplete sequence at the end: wait for the next chunk.
                        carry.extend_from_slice(after);
                        break;
                    }
                }
            }
        }
    }
    text
}

/// Parser limits.
#[derive(Debug, Clone, Copy)]
pub struct CastLimits {
    pub max_line_len: usize,
    pub max_events: usize,
}

impl Default for CastLimits {
    fn default() -> Self {
        Self {
            max_line_len: MAX_LINE_LEN,
            max_events: DEFAULT_MAX_EVENTS,
        }
    }
}

/// Reads one `\n`-terminated line of at most `max` bytes (without the newline); `None` at
/// the end. A last line without a newline is accepted.
fn read_line<R: BufRead>(
    reader: &mut R,
    max: usize,
    line_no: u64,
    buf: &mut Vec<u8>,
) -> Result<bool, CastError> {
    buf.clear();
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(!buf.is_empty());
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(pos) => (pos, true),
            None => (available.len(), false),
        };
        if buf.len() + take > max {
            return Err(CastError::LineTooLong { line: line_no, max });
        }
        buf.extend_from_slice(available.get(..take).unwrap_or_default());
        reader.consume(if done { take + 1 } else { take });
        if done {
            return Ok(true);
        }
    }
}

/// Streaming parser: [`CastReader::new`] reads the header, [`CastReader::next_event`] each
/// event in turn.
#[derive(Debug)]
pub struct CastReader<R: BufRead> {
    reader: R,
    header: CastHeader,
    limits: CastLimits,
    line_no: u64,
    events: usize,
    last: Duration,
    buf: Vec<u8>,
}

fn parse_header(line: &[u8]) -> Result<CastHeader, CastError> {
    let bad = |message: &str| invalid(1, format!("header: {message}"));
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|err| bad(&err.to_string()))?;
    let object = value.as_object().ok_or_else(|| bad("not a JSON object"))?;
    if object.get("version").and_then(serde_json::Value::as_u64) != Some(2) {
        return Err(bad("version must be 2"));
    }
    let dimension = |name: &str| {
        object
            .get(name)
            .and_then(serde_json::Value::as_u64)
            .and_then(|v| u16::try_from(v).ok())
            .filter(|v| (1..=MAX_DIMENSION).contains(v))
            .ok_or_else(|| bad(&format!("{name} must be an integer 1..=1000")))
    };
    let width = dimension("width")?;
    let height = dimension("height")?;
    let timestamp = match object.get("timestamp") {
        None => 0,
        Some(value) => value
            .as_u64()
            .ok_or_else(|| bad("timestamp must be a non-negative integer"))?,
    };
    let (mut term, mut shell) = (None, None);
    if let Some(env) = object.get("env") {
        let env = env
            .as_object()
            .ok_or_else(|| bad("env must be an object"))?;
        for (name, slot) in [("TERM", &mut term), ("SHELL", &mut shell)] {
            if let Some(value) = env.get(name) {
                let value = value
                    .as_str()
                    .filter(|v| v.len() <= MAX_ENV_VALUE_LEN)
                    .ok_or_else(|| bad(&format!("env.{name} must be a short string")))?;
                *slot = Some(value.to_owned());
            }
        }
    }
    Ok(CastHeader {
        width,
        height,
        timestamp,
        term,
        shell,
    })
}

fn parse_time(value: &serde_json::Value, line: u64) -> Result<Duration, CastError> {
    let secs = value
        .as_f64()
        .filter(|t| t.is_finite() && *t >= 0.0 && *t <= MAX_EVENT_TIME.as_secs_f64())
        .ok_or_else(|| invalid(line, "the time must be a number of seconds, 0..=1 year"))?;
    let micros = (secs * 1_000_000.0).round();
    // In range by the filter above (a year is ~3.2e13 µs).
    Ok(Duration::from_micros(micros as u64))
}

fn parse_size(data: &str, line: u64) -> Result<(u16, u16), CastError> {
    let bad = || invalid(line, "a resize must be \"COLSxROWS\", each 1..=1000");
    let (cols, rows) = data.split_once('x').ok_or_else(bad)?;
    let number = |s: &str| {
        if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u16>().ok()
    };
    let (cols, rows) = (number(cols).ok_or_else(bad)?, number(rows).ok_or_else(bad)?);
    if !check_dimensions(cols, rows) {
        return Err(bad());
    }
    Ok((cols, rows))
}

fn parse_event(line_bytes: &[u8], line: u64) -> Result<CastEvent, CastError> {
    let value: serde_json::Value =
        serde_json::from_slice(line_bytes).map_err(|err| invalid(line, err.to_string()))?;
    let [time, code, data] = value
        .as_array()
        .map(Vec::as_slice)
        .and_then(|items| <&[serde_json::Value; 3]>::try_from(items).ok())
        .ok_or_else(|| invalid(line, "an event must be a [time, code, data] array"))?;
    let time = parse_time(time, line)?;
    let data = data
        .as_str()
        .ok_or_else(|| invalid(line, "the event data must be a string"))?;
    match code.as_str() {
        Some("o") => Ok(CastEvent::Output {
            time,
            data: data.to_owned(),
        }),
        Some("r") => {
            let (cols, rows) = parse_size(data, line)?;
            Ok(CastEvent::Resize { time, cols, rows })
        }
        _ => Err(invalid(line, "the event code must be \"o\" or \"r\"")),
    }
}

impl<R: BufRead> CastReader<R> {
    /// Reads and checks the header line.
    pub fn new(mut reader: R, limits: CastLimits) -> Result<Self, CastError> {
        let mut buf = Vec::new();
        if !read_line(&mut reader, limits.max_line_len, 1, &mut buf)? {
            return Err(CastError::Empty);
        }
        let header = parse_header(&buf)?;
        Ok(Self {
            reader,
            header,
            limits,
            line_no: 1,
            events: 0,
            last: Duration::ZERO,
            buf,
        })
    }

    pub fn header(&self) -> &CastHeader {
        &self.header
    }

    /// The next event, `None` at the end. Times must not go backwards.
    pub fn next_event(&mut self) -> Result<Option<CastEvent>, CastError> {
        self.line_no += 1;
        let line = self.line_no;
        if !read_line(
            &mut self.reader,
            self.limits.max_line_len,
            line,
            &mut self.buf,
        )? {
            return Ok(None);
        }
        if self.events >= self.limits.max_events {
            return Err(CastError::TooManyEvents(self.limits.max_events));
        }
        let event = parse_event(&self.buf, line)?;
        if event.time() < self.last {
            return Err(invalid(line, "the time went backwards"));
        }
        self.last = event.time();
        self.events += 1;
        Ok(Some(event))
    }
}

/// A whole parsed cast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cast {
    pub header: CastHeader,
    pub events: Vec<CastEvent>,
}

/// Parses a whole cast.
pub fn parse_cast<R: BufRead>(reader: R, limits: CastLimits) -> Result<Cast, CastError> {
    let mut reader = CastReader::new(reader, limits)?;
    let mut events = Vec::new();
    while let Some(event) = reader.next_event()? {
        events.push(event);
    }
    Ok(Cast {
        header: reader.header.clone(),
        events,
    })
}

#[cfg(test)]
mod tests;
