//! Rate limiting with lockout: "may this key try again?" answered atomically across replicas.
//!
//! Auth limits logins per account and per source and support-code redemptions per source and
//! per team (SPEC §3); rendezvous limits registrations per source. Each use is a
//! [`LimitPolicy`]: at most `max_failures` recorded attempts within `window` (a fixed window
//! opened by the first one), after which the key is locked for `lockout`.
//! - `redis://…` ([`RedisRateLimiter`]): one key per (policy, key), changed by a Lua script
//!   so that every step is atomic across replicas; Redis expires the keys.
//! - embedded, `memory://` ([`MemoryRateLimiter`]): an in-process map with a hard capacity
//!   and per-entry expiry, changed under moka's per-key compute lock.
//!
//! **Fail closed**: an `Err` from a limiter means "unknown", and callers deny the attempt.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::redact::redact_url;

mod memory;
mod redis_backend;

pub use memory::MemoryRateLimiter;
pub use redis_backend::RedisRateLimiter;

/// Longest key accepted, as for the replay cache: keys are account or team ids and
/// [`source_key`]s, never free text from the network.
pub const MAX_KEY_LEN: usize = crate::cache::MAX_KEY_LEN;

/// Longest policy name; names are fixed identifiers such as `login-account`.
pub const MAX_POLICY_NAME_LEN: usize = 64;

/// Longest window or lockout accepted. Keeping someone out for longer than a day is a ban, an
/// administrative decision, not a rate limit.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Default capacity (tracked keys) of the in-process limiter; see [`MemoryRateLimiter::new`].
pub const DEFAULT_MEMORY_CAPACITY: u64 = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    #[error(
        "unsupported rate limiter URL scheme in {url} (expected redis://, rediss:// or memory://)"
    )]
    UnsupportedScheme { url: String },
    #[error("cannot connect to rate limiter {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("rate limit key is empty or longer than {MAX_KEY_LEN} bytes")]
    BadKey,
    #[error("rate limit policy {name:?} is invalid: {reason}")]
    BadPolicy {
        name: &'static str,
        reason: &'static str,
    },
    #[error("rate limiter backend error: {0}")]
    Backend(#[from] redis::RedisError),
}

/// One limit: at most `max_failures` recorded attempts within `window`, then `lockout`.
///
/// Policies are usually consts, e.g. `LimitPolicy { name: "login-account", max_failures: 5,
/// window: 15 min, lockout: 15 min }`. Every call validates its policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitPolicy {
    /// Key namespace, e.g. `login-account`: ASCII letters, digits, `-` and `_` only, so that
    /// different (policy, key) pairs never map to the same backend key.
    pub name: &'static str,
    /// Attempts allowed per window (at least 1); the last of them locks the key.
    pub max_failures: u32,
    /// How long a count lasts, from the first attempt recorded (1 ms to [`MAX_DURATION`]).
    pub window: Duration,
    /// How long the key stays locked (1 ms to [`MAX_DURATION`]).
    pub lockout: Duration,
}

impl LimitPolicy {
    pub fn validate(&self) -> Result<(), RateLimitError> {
        let bad = |reason| {
            Err(RateLimitError::BadPolicy {
                name: self.name,
                reason,
            })
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= MAX_POLICY_NAME_LEN
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return bad("name must be 1-64 ASCII letters, digits, '-' or '_'");
        }
        if self.max_failures == 0 {
            return bad("max_failures must be at least 1");
        }
        let range = Duration::from_millis(1)..=MAX_DURATION;
        if !range.contains(&self.window) || !range.contains(&self.lockout) {
            return bad("window and lockout must be between 1 ms and 24 h");
        }
        Ok(())
    }
}

/// What a limiter says about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead. `remaining` attempts may still be recorded before the key locks; from
    /// [`RateLimiter::record_failure`], 0 means this attempt was the last one and the key is
    /// now locked.
    Allowed { remaining: u32 },
    /// Refused until `retry_after` has passed (more than zero, at most the policy's lockout).
    Locked { retry_after: Duration },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }
}

/// Per-key attempt counting with lockout, atomic per key across everyone sharing the backend.
///
/// Two ways to use it:
/// - **Count first (race-free)**: call [`record_failure`](Self::record_failure) *before* the
///   expensive or secret-revealing check, go ahead only on `Allowed`, and call
///   [`reset`](Self::reset) after a success. However many requests arrive at once, exactly
///   `max_failures` of them are allowed per window. Use this for password and code guessing.
/// - **Check, then count failures**: [`check`](Self::check) first and
///   `record_failure` only after a failure. Simpler, but concurrent requests that all passed
///   `check` are all tried before the lock lands.
///
/// Every method's `Err` means "unknown": callers deny the attempt (fail closed).
#[async_trait]
pub trait RateLimiter: Send + Sync + std::fmt::Debug {
    /// Is `key` allowed now? Records nothing.
    async fn check(&self, key: &str, policy: &LimitPolicy) -> Result<Decision, RateLimitError>;

    /// Records one attempt (a failure, or any attempt when counting first) and says whether
    /// *this* attempt is allowed. The `max_failures`-th attempt within the window is allowed
    /// with `remaining: 0` and locks the key for `lockout`, which also forgets the count, so a
    /// key starts afresh when its lockout ends. On a locked key nothing is recorded and the
    /// lockout is not extended.
    async fn record_failure(
        &self,
        key: &str,
        policy: &LimitPolicy,
    ) -> Result<Decision, RateLimitError>;

    /// Forgets the count (after a successful login). An active lockout is *not* lifted: a
    /// correct password must not unlock an account that is being guessed at.
    async fn reset(&self, key: &str, policy: &LimitPolicy) -> Result<(), RateLimitError>;

    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<(), RateLimitError>;
}

/// Connects the limiter named by `url`; `namespace` keeps one deployment's keys apart from
/// another's on a shared Redis. An unreachable Redis is an error, never a silent fallback.
pub async fn connect(url: &str, namespace: &str) -> Result<Arc<dyn RateLimiter>, RateLimitError> {
    match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("memory") => Ok(Arc::new(MemoryRateLimiter::new(DEFAULT_MEMORY_CAPACITY))),
        Some("redis" | "rediss") => Ok(Arc::new(RedisRateLimiter::connect(url, namespace).await?)),
        _ => Err(RateLimitError::UnsupportedScheme {
            url: redact_url(url),
        }),
    }
}

/// The rate-limit key for a client address. IPv4 counts per address. IPv6 counts per /64:
/// one host (or one customer LAN) routinely holds a whole /64 and could otherwise rotate
/// addresses to escape the limit. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a
/// dual-stack listener reports for IPv4 clients) counts as its IPv4 address, because by /64
/// every IPv4 client would share one key.
pub fn source_key(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                format!("{}/64", Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}

fn check_args(key: &str, policy: &LimitPolicy) -> Result<(), RateLimitError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(RateLimitError::BadKey);
    }
    policy.validate()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn key_of(text: &str) -> String {
        source_key(text.parse().unwrap())
    }

    #[test]
    fn ipv4_sources_count_per_address() {
        assert_eq!(key_of("203.0.113.7"), "203.0.113.7");
        assert_ne!(key_of("203.0.113.7"), key_of("203.0.113.8"));
    }

    #[test]
    fn ipv6_sources_count_per_64_so_rotating_addresses_does_not_escape() {
        assert_eq!(
            key_of("2001:db8:1:2:aaaa:bbbb:cccc:dddd"),
            "2001:db8:1:2::/64"
        );
        assert_eq!(key_of("2001:db8:1:2::1"), key_of("2001:db8:1:2:ffff::9"));
        assert_ne!(key_of("2001:db8:1:2::1"), key_of("2001:db8:1:3::1"));
        assert_eq!(key_of("::1"), "::/64");
    }

    #[test]
    fn ipv4_mapped_sources_count_as_their_ipv4_address() {
        assert_eq!(key_of("::ffff:203.0.113.7"), "203.0.113.7");
        assert_ne!(key_of("::ffff:203.0.113.7"), key_of("::ffff:203.0.113.8"));
    }

    #[test]
    fn source_keys_fit_the_key_bound() {
        let longest = key_of("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        assert!(longest.len() <= MAX_KEY_LEN, "{longest}");
    }

    #[test]
    fn invalid_policies_are_refused() {
        let good = LimitPolicy {
            name: "login-account",
            max_failures: 5,
            window: Duration::from_secs(900),
            lockout: Duration::from_secs(900),
        };
        assert!(good.validate().is_ok());
        for bad in [
            LimitPolicy { name: "", ..good },
            LimitPolicy {
                name: "a:b",
                ..good
            },
            LimitPolicy {
                max_failures: 0,
                ..good
            },
            LimitPolicy {
                window: Duration::ZERO,
                ..good
            },
            LimitPolicy {
                lockout: MAX_DURATION + Duration::from_millis(1),
                ..good
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(RateLimitError::BadPolicy { .. })),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn unknown_scheme_is_refused_without_leaking_the_password() {
        let err = connect("memcached://u:secret@h", "t").await.err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("unsupported"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}
