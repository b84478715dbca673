//! RFC 5424 messages with RFC 5425/6587 octet-counting framing:
//! `<len> <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ID PARAM="value"…] MSG`.
//!
//! Pure functions: the pusher builds one frame per entry or checkpoint with a [`Framer`].

use std::fmt::Write as _;

use tucdesk_audit_format::ocsf;
use tucdesk_crypto::audit::Entry;
use tucdesk_crypto::merkle::SignedCheckpoint;

use super::{SeverityMode, SyslogFormat, syslog_severity};

/// Largest syslog message sent (the part after `<len> `). RFC 5425 receivers must accept
/// 2048 octets and should accept 8192; collectors configured for JSON bodies take 64 KiB
/// (rsyslog `$MaxMessageSize 64k`, syslog-ng `log-msg-size(65536)`). A longer body is cut at
/// a character boundary and ends with [`TRUNCATED_MARKER`].
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;
/// Appended to a body that was cut to fit [`MAX_MESSAGE_LEN`]; the structured data then also
/// carries `truncated="<original body length>"`.
pub const TRUNCATED_MARKER: &str = "…[truncated]";
/// The SD-ID of our structured data: `tucdesk` at private enterprise number 32473 (the
/// number RFC 5612 reserves for documentation; a deployment with a number of its own would
/// change it here).
pub const SD_ID: &str = "tucdesk@32473";
/// APP-NAME of every message.
pub const APP_NAME: &str = "tucdesk-audit";
/// The NILVALUE of RFC 5424 (a field with no value).
pub const NIL: &str = "-";
/// Longest HOSTNAME (RFC 5424: 255 printable US-ASCII characters).
pub const MAX_HOSTNAME_LEN: usize = 255;
/// Longest MSGID (RFC 5424: 32 printable US-ASCII characters).
pub const MAX_MSGID_LEN: usize = 32;
/// The UTF-8 byte order mark RFC 5424 puts before a UTF-8 MSG.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The header fields of one message.
#[derive(Debug, Clone)]
pub struct Header<'a> {
    /// `facility * 8 + severity`.
    pub pri: u8,
    /// Unix milliseconds (UTC); out of RFC 3339's range becomes the NILVALUE.
    pub timestamp_ms: u64,
    /// Already sanitized ([`sanitize_token`]).
    pub hostname: &'a str,
    pub procid: &'a str,
    /// Sanitized here (printable ASCII, at most 32 characters).
    pub msgid: &'a str,
}

/// `s` as an RFC 5424 header token: printable US-ASCII only (33..=126), at most `max`
/// characters; the NILVALUE when nothing is left.
pub fn sanitize_token(s: &str, max: usize) -> String {
    let out: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if out.is_empty() { NIL.to_owned() } else { out }
}

/// An SD-PARAM value with `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
pub fn escape_param(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// RFC 3339 UTC time with milliseconds (`2025-01-31T12:00:00.123Z`), or `None` past 9999.
pub fn rfc3339_ms(unix_ms: u64) -> Option<String> {
    let secs = unix_ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    if year > 9999 {
        return None;
    }
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    ))
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (H. Hinnant's algorithm, for
/// non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The structured data element `[tucdesk@32473 name="value" …]`.
fn structured_data(params: &[(&str, String)], truncated_from: Option<usize>) -> String {
    let mut sd = format!("[{SD_ID}");
    for (name, value) in params {
        let _ = write!(sd, " {name}=\"{}\"", escape_param(value));
    }
    if let Some(len) = truncated_from {
        let _ = write!(sd, " truncated=\"{len}\"");
    }
    sd.push(']');
    sd
}

/// One octet-counted frame, `<len> <message>`, for `header`, the SD `params` (names must be
/// valid SD-NAMEs: printable ASCII without `=`, space, `]`, `"`) and `body` (UTF-8, preceded
/// by a BOM when `bom`). The message never exceeds [`MAX_MESSAGE_LEN`]: a longer body is cut.
pub fn frame(header: &Header<'_>, params: &[(&str, String)], body: &str, bom: bool) -> Vec<u8> {
    let timestamp = rfc3339_ms(header.timestamp_ms);
    let msgid = sanitize_token(header.msgid, MAX_MSGID_LEN);
    let head = format!(
        "<{}>1 {} {} {APP_NAME} {} {msgid} ",
        header.pri,
        timestamp.as_deref().unwrap_or(NIL),
        header.hostname,
        header.procid,
    );
    let bom = if bom { BOM } else { &[] };
    let mut sd = structured_data(params, None);
    let fixed = |sd: &str| head.len() + sd.len() + 1 + bom.len();
    let mut body = body;
    let mut marker = "";
    if fixed(&sd) + body.len() > MAX_MESSAGE_LEN {
        sd = structured_data(params, Some(body.len()));
        let room = MAX_MESSAGE_LEN
            .saturating_sub(fixed(&sd))
            .saturating_sub(TRUNCATED_MARKER.len());
        let mut cut = room.min(body.len());
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body = &body[..cut];
        marker = TRUNCATED_MARKER;
    }
    let len = fixed(&sd) + body.len() + marker.len();
    let mut out = Vec::with_capacity(len + 8);
    out.extend_from_slice(format!("{len} ").as_bytes());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(sd.as_bytes());
    out.push(b' ');
    out.extend_from_slice(bom);
    out.extend_from_slice(body.as_bytes());
    out.extend_from_slice(marker.as_bytes());
    out
}

/// How entries and checkpoints become frames: one pusher's settings.
#[derive(Debug, Clone)]
pub struct Framer {
    pub format: SyslogFormat,
    /// Facility code (0..=23).
    pub facility: u8,
    pub severity: SeverityMode,
    /// Already sanitized ([`sanitize_token`]).
    pub hostname: String,
    pub procid: String,
    pub bom: bool,
}

impl Framer {
    fn header<'a>(&'a self, severity: u8, timestamp_ms: u64, msgid: &'a str) -> Header<'a> {
        Header {
            pri: self.facility.saturating_mul(8).saturating_add(severity),
            timestamp_ms,
            hostname: &self.hostname,
            procid: &self.procid,
            msgid,
        }
    }

    /// The frame of a stored entry: MSGID = its action, SD `team`, `seq`, `event_id`, `hash`.
    pub fn entry(&self, entry: &Entry) -> Result<Vec<u8>, serde_json::Error> {
        let event = &entry.event;
        let severity = match self.severity {
            SeverityMode::Ocsf => syslog_severity(ocsf::severity_of(event)),
            SeverityMode::Fixed(code) => code,
        };
        let body = match self.format {
            SyslogFormat::Ndjson => entry.to_json_line()?,
            SyslogFormat::Ocsf => serde_json::to_string(&ocsf::entry_to_ocsf(entry))?,
        };
        let params = [
            ("team", event.team_id.clone()),
            ("seq", entry.seq.to_string()),
            ("event_id", event.event_id.clone()),
            ("hash", hex::encode(entry.hash)),
        ];
        let header = self.header(severity, event.occurred_at, &event.action);
        Ok(frame(&header, &params, &body, self.bom))
    }

    /// The frame of a signed checkpoint: MSGID `audit.checkpoint`, SD `team`, `tree_size`,
    /// `root_hash`, `key_id`.
    pub fn checkpoint(&self, signed: &SignedCheckpoint) -> Result<Vec<u8>, serde_json::Error> {
        let c = &signed.checkpoint;
        let severity = match self.severity {
            SeverityMode::Ocsf => syslog_severity(ocsf::Severity::Informational),
            SeverityMode::Fixed(code) => code,
        };
        let body = match self.format {
            SyslogFormat::Ndjson => serde_json::to_string(signed)?,
            SyslogFormat::Ocsf => serde_json::to_string(&ocsf::checkpoint_to_ocsf(signed))?,
        };
        let params = [
            ("team", c.team_id.clone()),
            ("tree_size", c.tree_size.to_string()),
            ("root_hash", hex::encode(c.root_hash)),
            ("key_id", c.key_id.clone()),
        ];
        let header = self.header(severity, c.timestamp_ms, ocsf::CHECKPOINT_EVENT_CODE);
        Ok(frame(&header, &params, &body, self.bom))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn header(msgid: &str) -> Header<'_> {
        Header {
            pri: 16 * 8 + 5,
            timestamp_ms: 1_700_000_000_123,
            hostname: "host-1",
            procid: "42",
            msgid,
        }
    }

    /// Splits a frame into its length prefix and message, checking the count.
    fn message(frame: &[u8]) -> &[u8] {
        let space = frame.iter().position(|b| *b == b' ').unwrap();
        let len: usize = std::str::from_utf8(&frame[..space])
            .unwrap()
            .parse()
            .unwrap();
        let msg = &frame[space + 1..];
        assert_eq!(msg.len(), len, "the octet count is the message's length");
        msg
    }

    #[test]
    fn a_frame_is_octet_counted_rfc5424_with_escaped_structured_data() {
        let params = [("team", "t\"1]\\x".to_owned()), ("seq", "7".to_owned())];
        let framed = frame(&header("auth.login"), &params, "{\"a\":1}", true);
        let msg = message(&framed);
        let expected = "<133>1 2023-11-14T22:13:20.123Z host-1 tucdesk-audit 42 auth.login \
                        [tucdesk@32473 team=\"t\\\"1\\]\\\\x\" seq=\"7\"] \u{feff}{\"a\":1}";
        assert_eq!(std::str::from_utf8(msg).unwrap(), expected);
        let plain = frame_plain();
        assert!(
            std::str::from_utf8(message(&plain))
                .unwrap()
                .ends_with("] {}")
        );
    }

    fn frame_plain() -> Vec<u8> {
        frame(&header("x"), &[], "{}", false)
    }

    #[test]
    fn header_tokens_are_printable_ascii_and_bounded() {
        assert_eq!(sanitize_token("", 10), "-");
        assert_eq!(sanitize_token("a b\tc\u{e9}", 10), "abc");
        let long = "a".repeat(100);
        let framed = frame(&header(&long), &[], "", false);
        let msg = String::from_utf8(message(&framed).to_vec()).unwrap();
        assert!(msg.contains(&format!(" {} [", "a".repeat(MAX_MSGID_LEN))));
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_ms(0).unwrap(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_ms(951_782_400_000).unwrap(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339_ms(253_402_300_799_999).unwrap(),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(rfc3339_ms(253_402_300_800_000), None);
        let framed = frame(
            &Header {
                timestamp_ms: u64::MAX,
                ..header("m")
            },
            &[],
            "",
            false,
        );
        assert!(message(&framed).starts_with(b"<133>1 - host-1 "));
    }

    #[test]
    fn long_bodies_are_cut_at_a_character_boundary_with_a_marker() {
        let body = "é".repeat(MAX_MESSAGE_LEN);
        let cut = frame(&header("m"), &[("seq", "1".into())], &body, true);
        let msg = message(&cut);
        assert!(msg.len() <= MAX_MESSAGE_LEN);
        let text = std::str::from_utf8(msg).unwrap();
        assert!(text.ends_with(TRUNCATED_MARKER));
        assert!(text.contains(&format!(" truncated=\"{}\"]", body.len())));
        // Exactly at the limit nothing is cut.
        let head_len = message(&frame(&header("m"), &[], "", false)).len();
        let fits = "x".repeat(MAX_MESSAGE_LEN - head_len);
        let whole = frame(&header("m"), &[], &fits, false);
        assert_eq!(message(&whole).len(), MAX_MESSAGE_LEN);
        assert!(
            !std::str::from_utf8(message(&whole))
                .unwrap()
                .contains("truncated")
        );
    }
}
