//! The verifier's trusted keys: `kid` → Ed25519 public key.
//!
//! Cloning a [`KeySet`] shares it: a service builds one, hands clones to its
//! verifiers (one per audience) and replaces the content when it fetches a
//! new JWKS; every verifier sees the new keys at once. A replacement is
//! atomic (readers see the old set or the new one, never a mix) and
//! validated first (bounded, unique `kid`s), so a bad JWKS leaves the
//! current keys in place.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use tucdesk_crypto::PublicKey;

use crate::jwk::{JwkError, Jwks, MAX_JWKS_KEYS, check_kid};

type KeyMap = HashMap<String, PublicKey>;

/// Thread-safe, replaceable set of trusted signing keys.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    // The map itself is immutable once published; replacing swaps the Arc,
    // so a lookup holds the lock only for a pointer clone.
    inner: Arc<RwLock<Arc<KeyMap>>>,
}

impl KeySet {
    /// An empty set (every token fails with `UnknownKey`).
    pub fn new() -> Self {
        Self::default()
    }

    /// A set holding `keys`.
    pub fn from_keys<I>(keys: I) -> Result<Self, JwkError>
    where
        I: IntoIterator<Item = (String, PublicKey)>,
    {
        let set = Self::new();
        set.replace(keys)?;
        Ok(set)
    }

    /// A set holding the keys of a JWKS.
    pub fn from_jwks(jwks: &Jwks) -> Result<Self, JwkError> {
        Self::from_keys(jwks.public_keys()?)
    }

    /// Replaces every key at once. On error nothing changes.
    pub fn replace<I>(&self, keys: I) -> Result<(), JwkError>
    where
        I: IntoIterator<Item = (String, PublicKey)>,
    {
        let mut map = KeyMap::new();
        for (kid, key) in keys {
            check_kid(&kid)?;
            if map.len() >= MAX_JWKS_KEYS {
                return Err(JwkError::TooManyKeys);
            }
            if map.insert(kid, key).is_some() {
                return Err(JwkError::DuplicateKid);
            }
        }
        // A poisoned lock only means a writer panicked between two
        // statements that cannot leave the Arc half-written.
        *self.inner.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(map);
        Ok(())
    }

    /// Replaces every key with those of `jwks`. On error nothing changes.
    pub fn replace_from_jwks(&self, jwks: &Jwks) -> Result<(), JwkError> {
        self.replace(jwks.public_keys()?)
    }

    /// The key for `kid`, if trusted.
    pub fn get(&self, kid: &str) -> Option<PublicKey> {
        self.snapshot().get(kid).copied()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    /// `true` when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    fn snapshot(&self) -> Arc<KeyMap> {
        Arc::clone(&self.inner.read().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::jwk::Jwk;
    use tucdesk_crypto::Identity;

    fn key() -> PublicKey {
        Identity::generate().unwrap().public_key()
    }

    #[test]
    fn clones_share_replacements() {
        let (a, b) = (key(), key());
        let set = KeySet::from_keys([("a".to_owned(), a)]).unwrap();
        let clone = set.clone();
        assert_eq!(clone.get("a"), Some(a));
        set.replace([("b".to_owned(), b)]).unwrap();
        assert_eq!(clone.get("a"), None);
        assert_eq!(clone.get("b"), Some(b));
        assert_eq!(clone.len(), 1);
    }

    #[test]
    fn invalid_replacement_keeps_the_current_keys() {
        let a = key();
        let set = KeySet::from_keys([("a".to_owned(), a)]).unwrap();
        assert_eq!(
            set.replace([("x".to_owned(), key()), ("x".to_owned(), key())]),
            Err(JwkError::DuplicateKid)
        );
        let too_many = (0..=MAX_JWKS_KEYS).map(|i| (format!("k{i}"), key()));
        assert_eq!(set.replace(too_many), Err(JwkError::TooManyKeys));
        assert_eq!(set.replace([(String::new(), key())]), Err(JwkError::BadKid));
        assert_eq!(set.get("a"), Some(a));
    }

    #[test]
    fn builds_from_a_jwks() {
        let a = key();
        let jwks = Jwks {
            keys: vec![Jwk::from_public_key("a", &a).unwrap()],
        };
        let set = KeySet::from_jwks(&jwks).unwrap();
        assert_eq!(set.get("a"), Some(a));
        set.replace_from_jwks(&Jwks::default()).unwrap();
        assert!(set.is_empty());
    }
}
