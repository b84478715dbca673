//! Leases: "who holds this key right now?" with a TTL, shared by every replica.
//!
//! Rendezvous keeps agent presence this way: the replica holding an agent's stream holds the
//! lease `agent_id → (connection id, record)` and renews it on every heartbeat; when the
//! replica dies the lease simply expires, so an agent is listed offline within one TTL
//! without anybody cleaning up.
//! - `redis://…` ([`RedisLeases`]): one string per key, `owner ‖ '\n' ‖ value`, changed by Lua
//!   scripts so that "renew only if still mine" and "release only if mine" are atomic.
//! - embedded (`memory://`, [`MemoryLeases`]): a bounded in-process map with per-entry expiry,
//!   changed under moka's per-key compute lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::cache::redis_connection;
use crate::redact::redact_url;

/// Longest key accepted (agent ids and similar, never free text).
pub const MAX_KEY_LEN: usize = 256;
/// Longest owner id accepted (connection ids).
pub const MAX_OWNER_LEN: usize = 128;
/// Largest value accepted; leases carry small records, not documents.
pub const MAX_VALUE_LEN: usize = 4096;
/// Longest TTL accepted: a lease outliving its holder by more than this is a bug.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Most keys read in one [`Leases::get_many`] call (one page of agents).
pub const MAX_BATCH: usize = 1000;
/// Default capacity of the in-process store (keys).
pub const DEFAULT_MEMORY_CAPACITY: u64 = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "unsupported lease store URL scheme in {url} (expected redis://, rediss:// or memory://)"
    )]
    UnsupportedScheme { url: String },
    #[error("cannot connect to lease store {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("lease argument out of bounds: {0}")]
    Bounds(&'static str),
    #[error("lease store backend error: {0}")]
    Backend(#[from] redis::RedisError),
}

/// A lease as read back: who holds it and what they stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub value: Vec<u8>,
}

/// Keys held by owners for a TTL.
#[async_trait]
pub trait Leases: Send + Sync + std::fmt::Debug {
    /// Takes the lease whoever holds it (a newer connection replaces an older one).
    async fn acquire(
        &self,
        key: &str,
        owner: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), LeaseError>;

    /// Renews the lease if `owner` still holds it or nobody does; `false` when another owner
    /// took it meanwhile (the caller has been superseded).
    async fn renew(
        &self,
        key: &str,
        owner: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, LeaseError>;

    /// Drops the lease if `owner` holds it; `false` if someone else does (left alone).
    async fn release(&self, key: &str, owner: &str) -> Result<bool, LeaseError>;

    /// The live leases of `keys`, in order (`None` for absent or expired ones).
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Lease>>, LeaseError>;

    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<(), LeaseError>;
}

/// Connects the store named by `url`; `namespace` keeps one deployment's keys apart on a
/// shared Redis. An unreachable Redis is an error, never a silent fallback.
pub async fn connect(url: &str, namespace: &str) -> Result<Arc<dyn Leases>, LeaseError> {
    match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("memory") => Ok(Arc::new(MemoryLeases::new(DEFAULT_MEMORY_CAPACITY))),
        Some("redis" | "rediss") => Ok(Arc::new(RedisLeases::connect(url, namespace).await?)),
        _ => Err(LeaseError::UnsupportedScheme {
            url: redact_url(url),
        }),
    }
}

fn check_key(key: &str) -> Result<(), LeaseError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(LeaseError::Bounds("key must be 1..=256 bytes"));
    }
    Ok(())
}

fn check_owner(owner: &str) -> Result<(), LeaseError> {
    // The owner is the prefix of the Redis value up to '\n', so it may not contain one.
    if owner.is_empty() || owner.len() > MAX_OWNER_LEN || owner.contains('\n') {
        return Err(LeaseError::Bounds(
            "owner must be 1..=128 bytes without newlines",
        ));
    }
    Ok(())
}

fn check_put(key: &str, owner: &str, value: &[u8], ttl: Duration) -> Result<(), LeaseError> {
    check_key(key)?;
    check_owner(owner)?;
    if value.len() > MAX_VALUE_LEN {
        return Err(LeaseError::Bounds("value must be at most 4096 bytes"));
    }
    if ttl < Duration::from_millis(1) || ttl > MAX_TTL {
        return Err(LeaseError::Bounds("ttl must be between 1 ms and 24 h"));
    }
    Ok(())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// KEYS[1] = key; ARGV = owner, stored bytes (`owner\nvalue`), ttl ms. Replies 1 if renewed.
const RENEW_LUA: &str = r"
local current = redis.call('GET', KEYS[1])
if current == false or string.sub(current, 1, #ARGV[1] + 1) == ARGV[1] .. '\n' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// KEYS[1] = key; ARGV[1] = owner. Replies 1 if it released the lease.
const RELEASE_LUA: &str = r"
local current = redis.call('GET', KEYS[1])
if current ~= false and string.sub(current, 1, #ARGV[1] + 1) == ARGV[1] .. '\n' then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// Redis-backed leases shared by every replica.
#[derive(Clone)]
pub struct RedisLeases {
    connection: redis::aio::ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLeases")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLeases {
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, LeaseError> {
        let connection = redis_connection(url)
            .await
            .map_err(|source| LeaseError::Connect {
                url: redact_url(url),
                source,
            })?;
        Ok(Self {
            connection,
            prefix: format!("tucdesk:{namespace}:lease:"),
        })
    }

    fn stored(owner: &str, value: &[u8]) -> Vec<u8> {
        let mut stored = Vec::with_capacity(owner.len() + 1 + value.len());
        stored.extend_from_slice(owner.as_bytes());
        stored.push(b'\n');
        stored.extend_from_slice(value);
        stored
    }
}

#[async_trait]
impl Leases for RedisLeases {
    async fn acquire(
        &self,
        key: &str,
        owner: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), LeaseError> {
        check_put(key, owner, value, ttl)?;
        let mut connection = self.connection.clone();
        let () = redis::cmd("SET")
            .arg(format!("{}{key}", self.prefix))
            .arg(Self::stored(owner, value))
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut connection)
            .await?;
        Ok(())
    }

    async fn renew(
        &self,
        key: &str,
        owner: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, LeaseError> {
        check_put(key, owner, value, ttl)?;
        let mut connection = self.connection.clone();
        // Plain EVAL: the crate is built without redis' `script` feature, as for the limiter.
        let renewed: i64 = redis::cmd("EVAL")
            .arg(RENEW_LUA)
            .arg(1)
            .arg(format!("{}{key}", self.prefix))
            .arg(owner)
            .arg(Self::stored(owner, value))
            .arg(millis(ttl))
            .query_async(&mut connection)
            .await?;
        Ok(renewed == 1)
    }

    async fn release(&self, key: &str, owner: &str) -> Result<bool, LeaseError> {
        check_key(key)?;
        check_owner(owner)?;
        let mut connection = self.connection.clone();
        let released: i64 = redis::cmd("EVAL")
            .arg(RELEASE_LUA)
            .arg(1)
            .arg(format!("{}{key}", self.prefix))
            .arg(owner)
            .query_async(&mut connection)
            .await?;
        Ok(released == 1)
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Lease>>, LeaseError> {
        if keys.len() > MAX_BATCH {
            return Err(LeaseError::Bounds("at most 1000 keys per read"));
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        for key in keys {
            check_key(key)?;
        }
        let mut connection = self.connection.clone();
        let full: Vec<String> = keys.iter().map(|k| format!("{}{k}", self.prefix)).collect();
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(full)
            .query_async(&mut connection)
            .await?;
        Ok(values
            .into_iter()
            .map(|stored| {
                let stored = stored?;
                let split = stored.iter().position(|b| *b == b'\n')?;
                Some(Lease {
                    owner: String::from_utf8(stored[..split].to_vec()).ok()?,
                    value: stored[split + 1..].to_vec(),
                })
            })
            .collect())
    }

    async fn ping(&self) -> Result<(), LeaseError> {
        let mut connection = self.connection.clone();
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        Ok(())
    }
}

/// One in-process lease and when it ends.
#[derive(Debug, Clone)]
struct Held {
    lease: Lease,
    until: Instant,
}

/// Expires each entry when its lease ends.
struct HeldExpiry;

impl moka::Expiry<String, Held> for HeldExpiry {
    fn expire_after_create(&self, _key: &String, held: &Held, at: Instant) -> Option<Duration> {
        Some(held.until.saturating_duration_since(at))
    }

    fn expire_after_update(
        &self,
        _key: &String,
        held: &Held,
        at: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(held.until.saturating_duration_since(at))
    }
}

/// In-process leases (single replica): bounded capacity, per-entry expiry, atomic per key.
#[derive(Debug, Clone)]
pub struct MemoryLeases {
    entries: moka::future::Cache<String, Held>,
}

impl MemoryLeases {
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(capacity)
                .expire_after(HeldExpiry)
                .build(),
        }
    }

    fn live(held: Held, now: Instant) -> Option<Held> {
        // Decide on our own deadline: moka's housekeeping may run late.
        (held.until > now).then_some(held)
    }
}

#[async_trait]
impl Leases for MemoryLeases {
    async fn acquire(
        &self,
        key: &str,
        owner: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), LeaseError> {
        check_put(key, owner, value, ttl)?;
        let held = Held {
            lease: Lease {
                owner: owner.to_owned(),
                value: value.to_vec(),
            },
            until: Instant::now() + ttl,
        };
        self.entries.insert(key.to_owned(), held).await;
        Ok(())
    }

    async fn renew(
        &self,
        key: &str,
        owner: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, LeaseError> {
        check_put(key, owner, value, ttl)?;
        let mut renewed = false;
        self.entries
            .entry(key.to_owned())
            .and_compute_with(|entry| {
                let now = Instant::now();
                let current = entry.and_then(|entry| Self::live(entry.into_value(), now));
                let ours = current.is_none_or(|held| held.lease.owner == owner);
                renewed = ours;
                std::future::ready(if ours {
                    moka::ops::compute::Op::Put(Held {
                        lease: Lease {
                            owner: owner.to_owned(),
                            value: value.to_vec(),
                        },
                        until: now + ttl,
                    })
                } else {
                    moka::ops::compute::Op::Nop
                })
            })
            .await;
        Ok(renewed)
    }

    async fn release(&self, key: &str, owner: &str) -> Result<bool, LeaseError> {
        check_key(key)?;
        check_owner(owner)?;
        let mut released = false;
        self.entries
            .entry(key.to_owned())
            .and_compute_with(|entry| {
                let now = Instant::now();
                let current = entry.and_then(|entry| Self::live(entry.into_value(), now));
                released = current.is_some_and(|held| held.lease.owner == owner);
                std::future::ready(if released {
                    moka::ops::compute::Op::Remove
                } else {
                    moka::ops::compute::Op::Nop
                })
            })
            .await;
        Ok(released)
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Lease>>, LeaseError> {
        if keys.len() > MAX_BATCH {
            return Err(LeaseError::Bounds("at most 1000 keys per read"));
        }
        let now = Instant::now();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            check_key(key)?;
            let held = self.entries.get(key).await;
            out.push(held.and_then(|held| Self::live(held, now)).map(|h| h.lease));
        }
        Ok(out)
    }

    async fn ping(&self) -> Result<(), LeaseError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn arguments_are_bounded() {
        let leases = MemoryLeases::new(16);
        let ttl = Duration::from_secs(1);
        assert!(leases.acquire("", "o", b"", ttl).await.is_err());
        assert!(leases.acquire("k", "", b"", ttl).await.is_err());
        assert!(leases.acquire("k", "a\nb", b"", ttl).await.is_err());
        let big = vec![0u8; MAX_VALUE_LEN + 1];
        assert!(leases.acquire("k", "o", &big, ttl).await.is_err());
        assert!(leases.acquire("k", "o", b"", Duration::ZERO).await.is_err());
        let many = vec!["k".to_owned(); MAX_BATCH + 1];
        assert!(leases.get_many(&many).await.is_err());
    }

    #[tokio::test]
    async fn unknown_scheme_is_refused_without_leaking_the_password() {
        let text = connect("etcd://u:hunter2@h", "t")
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(text.contains("unsupported"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
