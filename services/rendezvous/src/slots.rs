//! Per-key caps on long-lived streams (approval watchers per user, signaling streams per
//! session), so one caller cannot hold an unbounded number of tasks and subscriptions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Counts of live streams per key; a key disappears when its last stream ends, so the map
/// holds at most one entry per live stream.
#[derive(Debug, Clone)]
pub struct StreamSlots {
    held: Arc<Mutex<HashMap<String, usize>>>,
    max_per_key: usize,
}

/// One live stream's place; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    held: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

impl StreamSlots {
    pub fn new(max_per_key: usize) -> Self {
        Self {
            held: Arc::new(Mutex::new(HashMap::new())),
            max_per_key,
        }
    }

    /// A place for one more stream under `key`, or `None` when the key is at its cap.
    pub fn try_take(&self, key: &str) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(key.to_owned()).or_insert(0);
        if *count >= self.max_per_key {
            return None;
        }
        *count += 1;
        Some(Slot {
            held: self.held.clone(),
            key: key.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_key_and_freed_on_drop() {
        let slots = StreamSlots::new(2);
        let a = slots.try_take("alice");
        let b = slots.try_take("alice");
        assert!(a.is_some() && b.is_some());
        assert!(slots.try_take("alice").is_none());
        assert!(slots.try_take("bob").is_some());
        drop(a);
        assert!(slots.try_take("alice").is_some());
        drop(b);
        assert!(
            slots
                .held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get("alice")
                .is_none_or(|n| *n <= 1)
        );
    }
}
