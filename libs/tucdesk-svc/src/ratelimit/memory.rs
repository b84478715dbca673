//! The in-process limiter: a bounded moka map with per-entry expiry, changed under moka's
//! per-key compute lock.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Decision, LimitPolicy, RateLimitError, RateLimiter, check_args};

/// State of one key in the in-process limiter; `until` is when it ends.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Counting { failures: u32, until: Instant },
    Locked { until: Instant },
}

impl Slot {
    fn until(self) -> Instant {
        match self {
            Slot::Counting { until, .. } | Slot::Locked { until } => until,
        }
    }

    /// The slot if it has not ended. Moka expires entries too, but deciding on our own
    /// deadline keeps the semantics exact whenever moka's housekeeping runs.
    fn live(self, now: Instant) -> Option<Self> {
        (self.until() > now).then_some(self)
    }

    fn decision(self, policy: &LimitPolicy, now: Instant) -> Decision {
        match self {
            Slot::Counting { failures, .. } => Decision::Allowed {
                remaining: policy.max_failures.saturating_sub(failures),
            },
            Slot::Locked { until } => Decision::Locked {
                retry_after: until
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
            },
        }
    }
}

/// Expires each entry when its slot ends.
struct SlotExpiry;

impl moka::Expiry<String, Slot> for SlotExpiry {
    fn expire_after_create(&self, _key: &String, slot: &Slot, at: Instant) -> Option<Duration> {
        Some(slot.until().saturating_duration_since(at))
    }

    fn expire_after_update(
        &self,
        _key: &String,
        slot: &Slot,
        at: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(slot.until().saturating_duration_since(at))
    }
}

/// The next slot and the decision for one recorded attempt (`None`: leave the slot as is).
fn record_step(
    current: Option<Slot>,
    policy: &LimitPolicy,
    now: Instant,
) -> (Option<Slot>, Decision) {
    let (failures, window_end) = match current {
        Some(locked @ Slot::Locked { .. }) => return (None, locked.decision(policy, now)),
        Some(Slot::Counting { failures, until }) => (failures.saturating_add(1), until),
        None => (1, now + policy.window),
    };
    if failures >= policy.max_failures {
        let locked = Slot::Locked {
            until: now + policy.lockout,
        };
        let decision = if failures == policy.max_failures {
            Decision::Allowed { remaining: 0 }
        } else {
            locked.decision(policy, now)
        };
        return (Some(locked), decision);
    }
    let counting = Slot::Counting {
        failures,
        until: window_end,
    };
    (Some(counting), counting.decision(policy, now))
}

/// In-process limiter: bounded capacity, per-entry expiry, atomic per key.
///
/// When full, moka evicts the entries it values least (TinyLFU), which forgets their counts
/// early (fails open for those keys); one million keys is far above the distinct accounts,
/// teams and sources a standalone deployment sees within one window.
#[derive(Debug, Clone)]
pub struct MemoryRateLimiter {
    entries: moka::future::Cache<String, Slot>,
}

impl MemoryRateLimiter {
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(capacity)
                .expire_after(SlotExpiry)
                .build(),
        }
    }
}

fn memory_key(key: &str, policy: &LimitPolicy) -> String {
    format!("{}:{key}", policy.name)
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, key: &str, policy: &LimitPolicy) -> Result<Decision, RateLimitError> {
        check_args(key, policy)?;
        let now = Instant::now();
        let slot = self.entries.get(&memory_key(key, policy)).await;
        Ok(match slot.and_then(|slot| slot.live(now)) {
            Some(slot) => slot.decision(policy, now),
            None => Decision::Allowed {
                remaining: policy.max_failures,
            },
        })
    }

    async fn record_failure(
        &self,
        key: &str,
        policy: &LimitPolicy,
    ) -> Result<Decision, RateLimitError> {
        check_args(key, policy)?;
        let mut decision = None;
        // `and_compute_with` runs the closures of one key one after another (a per-key lock),
        // so read-modify-write is atomic; a get-then-insert would let racers share a count.
        self.entries
            .entry(memory_key(key, policy))
            .and_compute_with(|entry| {
                let now = Instant::now();
                let current = entry.and_then(|entry| entry.into_value().live(now));
                let (next, this) = record_step(current, policy, now);
                decision = Some(this);
                std::future::ready(match next {
                    Some(slot) => moka::ops::compute::Op::Put(slot),
                    None => moka::ops::compute::Op::Nop,
                })
            })
            .await;
        // The closure always runs; an absent decision could only be a moka bug: deny.
        Ok(decision.unwrap_or(Decision::Locked {
            retry_after: policy.lockout,
        }))
    }

    async fn reset(&self, key: &str, policy: &LimitPolicy) -> Result<(), RateLimitError> {
        check_args(key, policy)?;
        self.entries
            .entry(memory_key(key, policy))
            .and_compute_with(|entry| {
                let now = Instant::now();
                let current = entry.and_then(|entry| entry.into_value().live(now));
                std::future::ready(match current {
                    Some(Slot::Locked { .. }) => moka::ops::compute::Op::Nop,
                    _ => moka::ops::compute::Op::Remove,
                })
            })
            .await;
        Ok(())
    }

    async fn ping(&self) -> Result<(), RateLimitError> {
        Ok(())
    }
}
