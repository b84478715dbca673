//! Optional push of the live log to a syslog collector (RFC 5424 messages, octet-counted over
//! TCP or TLS: RFC 6587, RFC 5425): every entry of every team in seq order, and the signed
//! checkpoints as they appear, each as its NDJSON line or its OCSF object.
//!
//! The pusher follows the stored log, not the bus: it reads what was appended past each
//! team's cursor (`audit_syslog_cursor`), so it can never send something the log does not
//! hold, and a collector that is down never slows ingest. Delivery is at-least-once: a cursor
//! moves only after its batch was written and the connection was still open a moment later;
//! after a reconnect the pusher resends from the cursors. See docs/audit.md, "Syslog push".
//!
//! | module | concern |
//! |---|---|
//! | [`message`] | RFC 5424 formatting and octet-counting framing |
//! | [`transport`] | TCP or TLS connections, backoff |
//! | [`push`] | the push loop: lease, batches, cursors, metrics |

pub mod message;
pub mod push;
pub mod transport;

use std::fmt;
use std::str::FromStr;

pub use push::SyslogPusher;

/// Most bytes of a `--syslog-url`.
pub const MAX_URL_LEN: usize = 300;

/// Where the collector listens: `tcp://host:port` or `tls://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogUrl {
    /// TLS (RFC 5425) rather than plain TCP (RFC 6587).
    pub tls: bool,
    /// A DNS name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl FromStr for SyslogUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            Err(format!(
                "syslog URL {why} (expected tcp://host:port or tls://host:port)"
            ))
        };
        if s.len() > MAX_URL_LEN {
            return bad("is too long");
        }
        let (tls, rest) = if let Some(rest) = s.strip_prefix("tls://") {
            (true, rest)
        } else if let Some(rest) = s.strip_prefix("tcp://") {
            (false, rest)
        } else {
            return bad("has an unknown scheme");
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let Some((host, port)) = rest.rsplit_once(':') else {
            return bad("has no port");
        };
        let host = match host.strip_prefix('[') {
            Some(bracketed) => match bracketed.strip_suffix(']') {
                Some(v6) if v6.parse::<std::net::Ipv6Addr>().is_ok() => v6,
                _ => return bad("has a malformed IPv6 address"),
            },
            None => host,
        };
        let host_ok = !host.is_empty()
            && (host.parse::<std::net::IpAddr>().is_ok()
                || host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
        if !host_ok {
            return bad("has a malformed host");
        }
        let digits =
            !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        let port = match port.parse::<u16>() {
            Ok(port) if digits && port != 0 => port,
            _ => return bad("has a malformed port"),
        };
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for SyslogUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "tls" } else { "tcp" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The clap value parser of `--syslog-url`.
pub fn parse_url(s: &str) -> Result<SyslogUrl, String> {
    s.parse()
}

/// What a message's body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SyslogFormat {
    /// The entry's NDJSON line (`Entry::to_json_line()`), a checkpoint as
    /// `{"checkpoint":…,"sig":…}`: the signed forms, verifiable one by one.
    #[default]
    Ndjson,
    /// The OCSF object of the entry or checkpoint (as the HTTP export's `format=ocsf`).
    Ocsf,
}

/// Syslog facility names (RFC 5424 §6.2.1), by code.
const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// Syslog severity names (RFC 5424 §6.2.1), by code.
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// The clap value parser of `--syslog-facility`: a name (`local0`) or its code (0..=23).
pub fn parse_facility(s: &str) -> Result<u8, String> {
    lookup(&FACILITIES, s).ok_or_else(|| "facility must be kern…local7 or 0..=23".to_owned())
}

fn lookup(names: &[&str], s: &str) -> Option<u8> {
    if let Some(code) = names.iter().position(|name| *name == s) {
        return u8::try_from(code).ok();
    }
    s.parse::<u8>()
        .ok()
        .filter(|code| usize::from(*code) < names.len())
}

/// The severity of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeverityMode {
    /// From the entry's OCSF severity: Informational → info, Low → notice, Medium → warning,
    /// High → err; checkpoints are info.
    Ocsf,
    /// The same severity code (0..=7) for every message.
    Fixed(u8),
}

/// The clap value parser of `--syslog-severity`: `ocsf` or a severity name or code.
pub fn parse_severity(s: &str) -> Result<SeverityMode, String> {
    if s == "ocsf" {
        return Ok(SeverityMode::Ocsf);
    }
    lookup(&SEVERITIES, s)
        .map(SeverityMode::Fixed)
        .ok_or_else(|| "severity must be ocsf, emerg…debug or 0..=7".to_owned())
}

/// The syslog severity code of an OCSF severity.
pub fn syslog_severity(severity: tucdesk_audit_format::ocsf::Severity) -> u8 {
    use tucdesk_audit_format::ocsf::Severity;
    match severity {
        Severity::Informational => 6,
        Severity::Low => 5,
        Severity::Medium => 4,
        Severity::High => 3,
    }
}

/// This machine's host name for the HOSTNAME field, when the OS tells it (Linux), else the
/// NILVALUE.
pub fn system_hostname() -> String {
    let name = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default();
    message::sanitize_token(name.trim(), message::MAX_HOSTNAME_LEN)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_name_a_scheme_host_and_port() {
        let url: SyslogUrl = "tls://siem.example.com:6514".parse().unwrap();
        assert_eq!(
            (url.tls, url.host.as_str(), url.port),
            (true, "siem.example.com", 6514)
        );
        let url: SyslogUrl = "tcp://[::1]:601/".parse().unwrap();
        assert_eq!((url.tls, url.host.as_str(), url.port), (false, "::1", 601));
        assert_eq!(url.to_string(), "tcp://[::1]:601");
        assert_eq!(
            "tcp://127.0.0.1:514"
                .parse::<SyslogUrl>()
                .unwrap()
                .to_string(),
            "tcp://127.0.0.1:514"
        );
        for bad in [
            "udp://h:514",
            "tcp://h",
            "tcp://:514",
            "tcp://h:0",
            "tcp://h:65536",
            "tcp://h:+1",
            "tcp://u:p@h:514",
            "tcp://h/x:514",
            "tcp://[h]:514",
            "tls://h:514?x=1",
        ] {
            assert!(bad.parse::<SyslogUrl>().is_err(), "{bad}");
        }
        assert!(
            format!("tcp://{}:1", "a".repeat(MAX_URL_LEN))
                .parse::<SyslogUrl>()
                .is_err()
        );
    }

    #[test]
    fn facilities_and_severities_parse_by_name_or_code() {
        assert_eq!(parse_facility("local0").unwrap(), 16);
        assert_eq!(parse_facility("4").unwrap(), 4);
        assert!(parse_facility("24").is_err());
        assert!(parse_facility("local8").is_err());
        assert_eq!(parse_severity("ocsf").unwrap(), SeverityMode::Ocsf);
        assert_eq!(parse_severity("notice").unwrap(), SeverityMode::Fixed(5));
        assert_eq!(parse_severity("7").unwrap(), SeverityMode::Fixed(7));
        assert!(parse_severity("8").is_err());
        assert!(parse_severity("fatal").is_err());
    }

    #[test]
    fn the_system_hostname_is_a_header_token() {
        let name = system_hostname();
        assert!(!name.is_empty() && name.len() <= message::MAX_HOSTNAME_LEN);
        assert!(name.chars().all(|c| c.is_ascii_graphic()));
    }
}
