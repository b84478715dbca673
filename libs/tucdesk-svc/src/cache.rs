//! Replay cache: "have I seen this key within its TTL?" answered atomically.
//!
//! Rendezvous uses it for registration nonces (SPEC §2): `insert_if_absent(nonce, ttl)` is
//! `true` exactly once per key per TTL, across every replica sharing the backend.
//! - `redis://…`: `SET key 1 NX PX ttl`; Redis expires keys itself, so memory is bounded by
//!   the TTL times the insert rate.
//! - embedded (`memory://`): an in-process LRU+TTL map with a hard capacity.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::redact::redact_url;

/// Longest key accepted; keys are nonces or ids, never free text from the network.
pub const MAX_KEY_LEN: usize = 256;

/// Longest TTL accepted; replay windows are seconds to minutes, never days.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Default capacity of the in-process cache. At the registration rate limit this holds
/// far more than one replay window of nonces; see [`MemoryReplayCache::new`].
pub const DEFAULT_MEMORY_CAPACITY: u64 = 1_000_000;

/// Bounds on talking to Redis: a dead Redis must fail a registration quickly rather than
/// hang it (fail closed), and reconnects are attempted in the background.
pub const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("unsupported cache URL scheme in {url} (expected redis://, rediss:// or memory://)")]
    UnsupportedScheme { url: String },
    #[error("cannot connect to cache {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("cache key is empty or longer than {MAX_KEY_LEN} bytes")]
    BadKey,
    #[error("cache TTL must be between 1 ms and {MAX_TTL:?}")]
    BadTtl,
    #[error("cache backend error: {0}")]
    Backend(#[from] redis::RedisError),
}

/// Atomic insert-if-absent with a per-key TTL.
#[async_trait]
pub trait ReplayCache: Send + Sync + std::fmt::Debug {
    /// Records `key` for `ttl`. Returns `true` if the key was absent (first sighting) and
    /// `false` if it is still present from an earlier insert. An error means "unknown":
    /// callers protecting against replay must treat it as a rejection.
    async fn insert_if_absent(&self, key: &str, ttl: Duration) -> Result<bool, CacheError>;

    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<(), CacheError>;
}

/// Connects the cache named by `url`; `namespace` keeps one deployment's keys apart from
/// another's on a shared Redis. An unreachable Redis is an error, never a silent fallback.
pub async fn connect(url: &str, namespace: &str) -> Result<Arc<dyn ReplayCache>, CacheError> {
    match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("memory") => Ok(Arc::new(MemoryReplayCache::new(DEFAULT_MEMORY_CAPACITY))),
        Some("redis" | "rediss") => Ok(Arc::new(RedisReplayCache::connect(url, namespace).await?)),
        _ => Err(CacheError::UnsupportedScheme {
            url: redact_url(url),
        }),
    }
}

fn check_args(key: &str, ttl: Duration) -> Result<(), CacheError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(CacheError::BadKey);
    }
    if ttl < Duration::from_millis(1) || ttl > MAX_TTL {
        return Err(CacheError::BadTtl);
    }
    Ok(())
}

/// A managed Redis connection with the kit's timeouts, checked with a PING so an unreachable
/// Redis is a startup error rather than a failure on first use. Every Redis-backed kit
/// backend connects through here.
pub(crate) async fn redis_connection(
    url: &str,
) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_CONNECT_TIMEOUT))
        .set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT));
    let mut connection = redis::aio::ConnectionManager::new_with_config(client, config).await?;
    let _: String = redis::cmd("PING").query_async(&mut connection).await?;
    Ok(connection)
}

/// Redis-backed replay cache shared by every replica.
#[derive(Clone)]
pub struct RedisReplayCache {
    connection: redis::aio::ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplayCache")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisReplayCache {
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, CacheError> {
        let connection = redis_connection(url)
            .await
            .map_err(|source| CacheError::Connect {
                url: redact_url(url),
                source,
            })?;
        Ok(Self {
            connection,
            prefix: format!("tucdesk:{namespace}:replay:"),
        })
    }
}

#[async_trait]
impl ReplayCache for RedisReplayCache {
    async fn insert_if_absent(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        check_args(key, ttl)?;
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let mut connection = self.connection.clone();
        let reply: Option<String> = redis::cmd("SET")
            .arg(format!("{}{key}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(millis)
            .query_async(&mut connection)
            .await?;
        // SET NX answers OK when it set the key and nil when the key already existed.
        Ok(reply.is_some())
    }

    async fn ping(&self) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        Ok(())
    }
}

/// In-process replay cache: bounded capacity, per-entry TTL.
///
/// When full, the least valuable entries are evicted (moka's TinyLFU/LRU). For replay
/// protection that means a nonce could be forgotten before its TTL, so size the capacity
/// above `insert rate × TTL`; the default (one million) is far above what the per-source
/// registration rate limit lets through in one replay window.
#[derive(Debug, Clone)]
pub struct MemoryReplayCache {
    entries: moka::future::Cache<String, Duration>,
}

/// Expires each entry after the TTL it was inserted with (the cache value).
struct PerEntryTtl;

impl moka::Expiry<String, Duration> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, ttl: &Duration, _at: Instant) -> Option<Duration> {
        Some(*ttl)
    }
}

impl MemoryReplayCache {
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(capacity)
                .expire_after(PerEntryTtl)
                .build(),
        }
    }
}

#[async_trait]
impl ReplayCache for MemoryReplayCache {
    async fn insert_if_absent(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        check_args(key, ttl)?;
        // `or_insert_with` coalesces concurrent initialisations of one key, so exactly one
        // caller sees a fresh entry. (`or_insert` is a plain get-then-insert and races.)
        let entry = self
            .entries
            .entry(key.to_owned())
            .or_insert_with(async move { ttl })
            .await;
        Ok(entry.is_fresh())
    }

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn arguments_are_bounded() {
        let cache = MemoryReplayCache::new(16);
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert!(matches!(
            cache.insert_if_absent(&long, Duration::from_secs(1)).await,
            Err(CacheError::BadKey)
        ));
        assert!(matches!(
            cache.insert_if_absent("", Duration::from_secs(1)).await,
            Err(CacheError::BadKey)
        ));
        assert!(matches!(
            cache.insert_if_absent("k", Duration::ZERO).await,
            Err(CacheError::BadTtl)
        ));
        assert!(matches!(
            cache
                .insert_if_absent("k", MAX_TTL + Duration::from_secs(1))
                .await,
            Err(CacheError::BadTtl)
        ));
    }

    #[tokio::test]
    async fn unknown_scheme_is_refused() {
        let err = connect("memcached://u:secret@h", "t").await.err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("unsupported"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}
