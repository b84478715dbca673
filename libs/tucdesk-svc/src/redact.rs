//! Redaction of backend URLs before they reach a log line or an error message.
//!
//! Every error that names a backend (`postgres://…`, `redis://…`, `nats://…`, `s3://…`) goes
//! through [`redact_url`] or [`RedactedUrl`], so a connection failure never prints a password.

use std::fmt;

/// What replaces a secret.
pub const MASK: &str = "***";

/// Query parameter names (lower-cased, matched as substrings) whose values are secrets:
/// `password`, `sslpassword`, `token`, `auth_token`, `secret`, `client_secret`, `api_key`, …
/// Substring matching errs on the side of hiding too much.
const SECRET_PARAM_MARKERS: &[&str] = &[
    "password",
    "passwd",
    "token",
    "secret",
    "apikey",
    "api_key",
    "credential",
];

/// Schemes where a user name without a password is itself a secret: NATS puts an auth token in
/// the user position (`nats://s3cr3t@host:4222`).
const USER_IS_SECRET_SCHEMES: &[&str] = &["nats", "tls"];

/// Returns `url` with its password, any secret query parameter values and (for NATS) a bare
/// token replaced by `***`, e.g. `postgres://user:pw@host/db` → `postgres://user:***@host/db`.
///
/// A string that does not parse as a URL is replaced entirely (keeping only a plausible
/// scheme), because we cannot tell where a secret would be in it.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return redact_unparseable(url);
    };
    // `user:pw@host` parses as scheme `user` with an opaque path: no authority to edit, so we
    // cannot tell credentials apart from the rest. Hide it all.
    if parsed.cannot_be_a_base() && url.contains('@') {
        return redact_unparseable(url);
    }

    let mut changed = false;
    if parsed.password().is_some() {
        if parsed.set_password(Some(MASK)).is_err() {
            return redact_unparseable(url);
        }
        changed = true;
    } else if !parsed.username().is_empty() && USER_IS_SECRET_SCHEMES.contains(&parsed.scheme()) {
        if parsed.set_username(MASK).is_err() {
            return redact_unparseable(url);
        }
        changed = true;
    }

    if let Some(query) = parsed.query() {
        let redacted = redact_query(query);
        if redacted != query {
            parsed.set_query(Some(&redacted));
            changed = true;
        }
    }
    // Without secrets, return the input byte for byte rather than the parser's normalised
    // form (`http://host` would gain a `/`), so log lines match the configuration.
    if changed {
        parsed.into()
    } else {
        url.to_owned()
    }
}

/// `Display` adapter that redacts on formatting, for `thiserror` messages:
/// `#[error("cannot connect to {}", RedactedUrl(url))]`.
#[derive(Debug, Clone, Copy)]
pub struct RedactedUrl<'a>(pub &'a str);

impl fmt::Display for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(self.0))
    }
}

/// Rewrites only the values of secret parameters, leaving every other byte of the query as it
/// was (re-encoding the whole query would make logs harder to match against config).
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let (raw_key, has_value) = match pair.split_once('=') {
                Some((k, _)) => (k, true),
                None => (pair, false),
            };
            if has_value && is_secret_param(raw_key) {
                format!("{raw_key}={MASK}")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn is_secret_param(raw_key: &str) -> bool {
    // Decode so `pass%77ord` or `Pass+word` cannot sneak past the match.
    let decoded: String = url::form_urlencoded::parse(raw_key.as_bytes())
        .map(|(k, v)| format!("{k}{v}"))
        .collect();
    let key = decoded.to_ascii_lowercase();
    SECRET_PARAM_MARKERS.iter().any(|m| key.contains(m))
}

fn redact_unparseable(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            format!("{scheme}://<redacted>")
        }
        _ => "<redacted>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_the_password_of_a_connection_url() {
        assert_eq!(
            redact_url("postgres://user:pw@host/db"),
            "postgres://user:***@host/db"
        );
        assert_eq!(
            redact_url("postgres://tucdesk:s%40cr%3At@db.internal:5432/tucdesk?sslmode=require"),
            "postgres://tucdesk:***@db.internal:5432/tucdesk?sslmode=require"
        );
        assert_eq!(
            redact_url("redis://:hunter2@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(
            redact_url("nats://svc:pw@nats-1:4222"),
            "nats://svc:***@nats-1:4222"
        );
    }

    #[test]
    fn leaves_urls_without_secrets_alone() {
        for url in [
            "postgres://user@host/db",
            "sqlite://data/tucdesk.db?mode=rwc",
            "sqlite::memory:",
            "s3://recordings-bucket/prefix",
            "nats://nats-1:4222",
            "http://otel-collector:4317",
        ] {
            assert_eq!(redact_url(url), url, "{url}");
        }
    }

    #[test]
    fn hides_secret_query_parameters() {
        assert_eq!(
            redact_url("postgres://host/db?user=app&password=pw&sslmode=verify-full"),
            "postgres://host/db?user=app&password=***&sslmode=verify-full"
        );
        assert_eq!(
            redact_url("s3://bucket?access_key_id=AKIA&secret_access_key=abc&region=eu"),
            "s3://bucket?access_key_id=AKIA&secret_access_key=***&region=eu"
        );
        assert_eq!(
            redact_url("wss://relay/ws?session=1&token=eyJhbGc&SSLPassword=x"),
            "wss://relay/ws?session=1&token=***&SSLPassword=***"
        );
        assert_eq!(
            redact_url("postgres://h/d?pass%77ord=pw&Client%5FSecret=c"),
            "postgres://h/d?pass%77ord=***&Client%5FSecret=***"
        );
    }

    #[test]
    fn hides_password_and_query_together() {
        let out = redact_url("postgres://u:pw@h/d?password=pw2");
        assert_eq!(out, "postgres://u:***@h/d?password=***");
        assert!(!out.contains("pw2") && !out.contains(":pw@"));
    }

    #[test]
    fn hides_a_nats_token_in_the_user_position() {
        assert_eq!(
            redact_url("nats://s3cr3t@nats:4222"),
            "nats://***@nats:4222"
        );
        assert_eq!(redact_url("tls://s3cr3t@nats:4222"), "tls://***@nats:4222");
    }

    #[test]
    fn unparseable_urls_are_fully_hidden() {
        assert_eq!(
            redact_url("postgres://us er:p w@[bad/db"),
            "postgres://<redacted>"
        );
        assert_eq!(redact_url("user:pw@host"), "<redacted>");
        assert_eq!(redact_url("mailto:pw@host"), "<redacted>");
        assert_eq!(redact_url(""), "<redacted>");
    }

    #[test]
    fn display_adapter_redacts() {
        let message = format!("cannot connect to {}", RedactedUrl("redis://:pw@cache"));
        assert_eq!(message, "cannot connect to redis://:***@cache");
    }
}
