//! The Redis limiter: one key per (policy, key) holding the count, or `locked` during a
//! lockout, changed only by Lua scripts so that each step is atomic across replicas.

use std::time::Duration;

use async_trait::async_trait;

use super::{Decision, LimitPolicy, RateLimitError, RateLimiter, check_args};
use crate::redact::redact_url;

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Lua shared by the scripts: the lock's remaining time, giving a lock that somehow lost its
/// expiry one again (ARGV[3] = lockout ms) so that it cannot lock a key for ever.
const LOCK_TTL_LUA: &str = r"
local function lock_ttl()
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    ttl = tonumber(ARGV[3])
  end
  return math.max(ttl, 1)
end
";

/// KEYS[1] = key; ARGV = max_failures, window ms, lockout ms. The key holds the count, or
/// `locked` during a lockout. Replies {1, remaining} or {0, retry_after ms}.
const CHECK_LUA: &str = r"
local value = redis.call('GET', KEYS[1])
if value == false then return {1, tonumber(ARGV[1])} end
if value == 'locked' then return {0, lock_ttl()} end
local failures = tonumber(value)
if failures == nil then return redis.error_reply('rate limit key holds neither a count nor a lock') end
return {1, math.max(tonumber(ARGV[1]) - failures, 0)}
";

/// Same arguments and reply as [`CHECK_LUA`]. A key whose count is at or above the maximum
/// (only after the policy was lowered) locks at once; only the max-th attempt is allowed.
const RECORD_LUA: &str = r"
if redis.call('GET', KEYS[1]) == 'locked' then return {0, lock_ttl()} end
local max = tonumber(ARGV[1])
local failures = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if failures >= max then
  redis.call('SET', KEYS[1], 'locked', 'PX', ARGV[3])
  if failures == max then return {1, 0} end
  return {0, tonumber(ARGV[3])}
end
return {1, max - failures}
";

/// Deletes a count but leaves a lock.
const RESET_LUA: &str = r"
local value = redis.call('GET', KEYS[1])
if value ~= false and value ~= 'locked' then redis.call('DEL', KEYS[1]) end
return 0
";

/// Redis-backed limiter shared by every replica: `tucdesk:{namespace}:rl:{policy}:{key}`.
#[derive(Clone)]
pub struct RedisRateLimiter {
    connection: redis::aio::ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, RateLimitError> {
        let connection = crate::cache::redis_connection(url)
            .await
            .map_err(|source| RateLimitError::Connect {
                url: redact_url(url),
                source,
            })?;
        Ok(Self {
            connection,
            prefix: format!("tucdesk:{namespace}:rl:"),
        })
    }

    /// Runs one script with plain EVAL (the crate is built without redis' `script` feature);
    /// Redis caches the compiled script, so only the few hundred bytes of text are resent.
    async fn eval<T: redis::FromRedisValue>(
        &self,
        body: &str,
        key: &str,
        policy: &LimitPolicy,
    ) -> Result<T, RateLimitError> {
        check_args(key, policy)?;
        let mut connection = self.connection.clone();
        let reply = redis::cmd("EVAL")
            .arg(format!("{LOCK_TTL_LUA}{body}"))
            .arg(1)
            .arg(format!("{}{}:{key}", self.prefix, policy.name))
            .arg(policy.max_failures)
            .arg(millis(policy.window))
            .arg(millis(policy.lockout))
            .query_async(&mut connection)
            .await?;
        Ok(reply)
    }
}

fn decision_from_reply((allowed, value): (i64, i64)) -> Decision {
    let value = u64::try_from(value).unwrap_or(0);
    if allowed == 1 {
        Decision::Allowed {
            remaining: u32::try_from(value).unwrap_or(u32::MAX),
        }
    } else {
        Decision::Locked {
            retry_after: Duration::from_millis(value.max(1)),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, policy: &LimitPolicy) -> Result<Decision, RateLimitError> {
        Ok(decision_from_reply(
            self.eval(CHECK_LUA, key, policy).await?,
        ))
    }

    async fn record_failure(
        &self,
        key: &str,
        policy: &LimitPolicy,
    ) -> Result<Decision, RateLimitError> {
        Ok(decision_from_reply(
            self.eval(RECORD_LUA, key, policy).await?,
        ))
    }

    async fn reset(&self, key: &str, policy: &LimitPolicy) -> Result<(), RateLimitError> {
        let _: i64 = self.eval(RESET_LUA, key, policy).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), RateLimitError> {
        let mut connection = self.connection.clone();
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        Ok(())
    }
}
