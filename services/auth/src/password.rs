//! Operator passwords (SPEC §3): argon2id in PHC strings, a password policy, equal work for
//! unknown users, and a bound on how many hashes run at once.
//!
//! Argon2 is deliberately slow and memory hungry, so every computation runs on tokio's
//! blocking pool behind a [`Semaphore`]: the async runtime never stalls, and a login flood
//! queues instead of allocating `m` KiB per request until the box runs out of memory.
//!
//! Passwords are NFC-normalised before hashing and verification, so the same password typed
//! on keyboards that emit composed (`é`) or decomposed (`e` + U+0301) characters matches.
//! The normalisation is part of the stored format: changing it would lock users out.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{self, PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use unicode_normalization::UnicodeNormalization as _;
use zeroize::Zeroizing;

/// Argon2id memory cost in KiB (32 MiB).
///
/// OWASP (Password Storage Cheat Sheet, 2023+) lists equivalent argon2id settings from
/// m=46 MiB/t=1 down to m=7 MiB/t=5, with m=19 MiB/t=2/p=1 as the baseline. Memory is what
/// makes GPU/ASIC guessing expensive, so we go above the baseline in memory at the same
/// t=2: 32 MiB costs an attacker ~1.7x the baseline per guess. With
/// [`MAX_CONCURRENT_HASHES`] = 2 the peak is 64 MiB, which a small 2-core server affords;
/// `benches/password.rs` measures the time per hash (see `docs/auth-credentials.md`).
pub const ARGON2_M_COST_KIB: u32 = 32 * 1024;

/// Argon2id passes over memory. Two passes, as in the OWASP baseline: t=1 is only advised
/// with much more memory, and more passes buy less per millisecond than more memory.
pub const ARGON2_T_COST: u32 = 2;

/// Argon2id lanes. One: the `argon2` crate runs lanes sequentially unless built with rayon,
/// so p>1 would add latency without adding attacker cost per millisecond. Parallelism on
/// the server comes from running [`MAX_CONCURRENT_HASHES`] independent hashes instead.
pub const ARGON2_P_COST: u32 = 1;

/// Length of the argon2 output stored in the PHC string (256 bits).
pub const ARGON2_OUTPUT_LEN: usize = 32;

/// Length of the random per-password salt (128 bits, RFC 9106 recommendation).
pub const SALT_LEN: usize = 16;

/// Argon2 computations allowed at the same time: one per core on the 2-core target, so
/// hashing never holds more than `2 × m` of memory however many logins arrive.
pub const MAX_CONCURRENT_HASHES: usize = 2;

/// How long a request waits for a hashing slot before it is refused with
/// [`PasswordError::Busy`]. Bounds queueing latency during a flood; the login rate limits
/// sit in front of this.
pub const HASH_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// Minimum password length in Unicode scalar values after NFC normalisation.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Maximum password length in UTF-8 bytes, checked before any other work (normalisation,
/// hashing) so a huge body cannot cost CPU or memory.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Largest memory cost accepted in a *stored* hash. A stored hash brings its own
/// parameters; capping them keeps one corrupted or planted row from making a single
/// verification allocate gigabytes.
pub const MAX_STORED_M_COST_KIB: u32 = 256 * 1024;

/// Largest pass count accepted in a stored hash (see [`MAX_STORED_M_COST_KIB`]).
pub const MAX_STORED_T_COST: u32 = 16;

/// Largest lane count accepted in a stored hash (see [`MAX_STORED_M_COST_KIB`]).
pub const MAX_STORED_P_COST: u32 = 8;

/// NFC output is at most three times the input length in UTF-8 bytes (Unicode stability
/// policy); reserving that up front means the normalised copy is never reallocated, so no
/// unwiped copy of the password is left behind in freed memory.
const NFC_MAX_EXPANSION: usize = 3;

/// Length of the random secret the dummy hash is computed from.
const DUMMY_PASSWORD_LEN: usize = 32;

/// The production argon2id parameters. Evaluated at compile time, so invalid constants fail
/// the build instead of a request.
const PARAMS: Params = match Params::new(
    ARGON2_M_COST_KIB,
    ARGON2_T_COST,
    ARGON2_P_COST,
    Some(ARGON2_OUTPUT_LEN),
) {
    Ok(params) => params,
    Err(_) => panic!("invalid argon2 parameter constants"),
};

/// Cheap parameters for [`PasswordHasher::insecure_fast_for_tests`] (64 KiB, one pass).
const TEST_PARAMS: Params = match Params::new(64, 1, 1, Some(ARGON2_OUTPUT_LEN)) {
    Ok(params) => params,
    Err(_) => panic!("invalid argon2 test parameter constants"),
};

/// A password as typed by a user. Wiped from memory on drop; `Debug` never shows it.
pub struct Password(Zeroizing<String>);

impl Password {
    /// Wraps a password received from a client.
    pub fn new(password: String) -> Self {
        Self(Zeroizing::new(password))
    }

    /// The password text. Only for hashing; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Password {
    fn from(password: String) -> Self {
        Self::new(password)
    }
}

impl From<Zeroizing<String>> for Password {
    fn from(password: Zeroizing<String>) -> Self {
        Self(password)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl<'de> serde::Deserialize<'de> for Password {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// Why a new password is refused. Safe to show to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    /// Fewer than [`MIN_PASSWORD_CHARS`] characters.
    #[error("password must be at least {MIN_PASSWORD_CHARS} characters long")]
    TooShort,
    /// More than [`MAX_PASSWORD_BYTES`] bytes.
    #[error("password must be at most {MAX_PASSWORD_BYTES} bytes long")]
    TooLong,
    /// Only whitespace characters.
    #[error("password must not consist only of whitespace")]
    OnlyWhitespace,
}

/// Password hashing and verification failures.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The new password breaks the policy (client error).
    #[error(transparent)]
    Policy(#[from] PolicyViolation),
    /// A stored hash is not a PHC string we produce, or its parameters exceed the
    /// `MAX_STORED_*` caps (server-side data problem).
    #[error("stored password hash is malformed or has unacceptable parameters")]
    InvalidHash,
    /// All hashing slots stayed taken for [`HASH_QUEUE_TIMEOUT`].
    #[error("password hashing is saturated")]
    Busy,
    /// The argon2 computation failed.
    #[error("argon2 failed: {0}")]
    Hash(#[source] password_hash::Error),
    /// The blocking hashing task panicked or was cancelled.
    #[error("password hashing task failed")]
    Task(#[source] tokio::task::JoinError),
    /// The OS RNG failed while drawing a salt.
    #[error(transparent)]
    Rng(#[from] tucdesk_crypto::RngError),
}

/// Checks a new password against the policy without hashing it.
pub fn check_policy(password: &Password) -> Result<(), PolicyViolation> {
    normalize_new(password.expose()).map(drop)
}

/// Caps the length, then NFC-normalises into a buffer that is wiped on drop.
fn normalize(raw: &str) -> Result<Zeroizing<String>, PolicyViolation> {
    if raw.len() > MAX_PASSWORD_BYTES {
        return Err(PolicyViolation::TooLong);
    }
    let mut out = Zeroizing::new(String::with_capacity(raw.len() * NFC_MAX_EXPANSION));
    out.extend(raw.nfc());
    Ok(out)
}

/// [`normalize`] plus the rules that only apply when a password is set.
fn normalize_new(raw: &str) -> Result<Zeroizing<String>, PolicyViolation> {
    let normalized = normalize(raw)?;
    if normalized.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PolicyViolation::TooShort);
    }
    if normalized.chars().all(char::is_whitespace) {
        return Err(PolicyViolation::OnlyWhitespace);
    }
    Ok(normalized)
}

/// Parses a stored PHC string and refuses anything but argon2id v19 within the caps.
fn parse_stored(phc: &str) -> Result<PasswordHash, PasswordError> {
    let parsed = PasswordHash::new(phc).map_err(|_| PasswordError::InvalidHash)?;
    if parsed.algorithm != Algorithm::Argon2id.ident()
        || parsed.version != Some(Version::V0x13.into())
        || parsed.salt.is_none()
        || parsed.hash.is_none()
    {
        return Err(PasswordError::InvalidHash);
    }
    let params = Params::try_from(&parsed).map_err(|_| PasswordError::InvalidHash)?;
    if params.m_cost() > MAX_STORED_M_COST_KIB
        || params.t_cost() > MAX_STORED_T_COST
        || params.p_cost() > MAX_STORED_P_COST
    {
        return Err(PasswordError::InvalidHash);
    }
    Ok(parsed)
}

/// Hashes `password` with a fresh salt into a PHC string. Blocking: call on the blocking pool.
fn hash_blocking(params: Params, password: &[u8], salt: &[u8]) -> Result<String, PasswordError> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_with_salt(password, salt)
        .map(|phc| phc.to_string())
        .map_err(PasswordError::Hash)
}

/// Verifies `password` against a parsed hash, using the hash's own parameters. argon2
/// compares the outputs in constant time. Blocking: call on the blocking pool.
fn verify_blocking(parsed: &PasswordHash, password: &[u8]) -> Result<bool, PasswordError> {
    match Argon2::default().verify_password(password, parsed) {
        Ok(()) => Ok(true),
        Err(password_hash::Error::PasswordInvalid) => Ok(false),
        Err(e) => Err(PasswordError::Hash(e)),
    }
}

/// argon2id password hasher. Cheap to clone; clones share the concurrency limit and the
/// dummy hash.
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
    /// Hash of a random password, made on first use with `params`, verified against when
    /// the user does not exist.
    dummy_phc: OnceCell<String>,
    #[cfg(test)]
    probe: tests::Probe,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("m_cost_kib", &self.inner.params.m_cost())
            .field("t_cost", &self.inner.params.t_cost())
            .field("p_cost", &self.inner.params.p_cost())
            .field("free_slots", &self.inner.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Default for PasswordHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl PasswordHasher {
    /// The production hasher: the `ARGON2_*` parameters and [`MAX_CONCURRENT_HASHES`] slots.
    pub fn new() -> Self {
        Self::build(PARAMS, MAX_CONCURRENT_HASHES, HASH_QUEUE_TIMEOUT)
    }

    /// A hasher with trivially cheap parameters (64 KiB, one pass) so test suites built
    /// without optimisation stay fast. Never use it to store real passwords; hashes it makes
    /// report [`needs_rehash`](Self::needs_rehash) on the production hasher.
    pub fn insecure_fast_for_tests() -> Self {
        Self::build(TEST_PARAMS, MAX_CONCURRENT_HASHES, HASH_QUEUE_TIMEOUT)
    }

    fn build(params: Params, slots: usize, queue_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                params,
                permits: Arc::new(Semaphore::new(slots)),
                queue_timeout,
                dummy_phc: OnceCell::new(),
                #[cfg(test)]
                probe: tests::Probe::default(),
            }),
        }
    }

    /// Applies the password policy, then hashes into a PHC string
    /// (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) on the blocking pool.
    pub async fn hash(&self, password: &Password) -> Result<String, PasswordError> {
        let normalized = normalize_new(password.expose())?;
        let salt: [u8; SALT_LEN] = tucdesk_crypto::rng::random_array()?;
        let params = self.inner.params.clone();
        self.run_blocking(move || hash_blocking(params, normalized.as_bytes(), &salt))
            .await
    }

    /// Verifies `candidate` against the stored hash of a user, or — when the user does not
    /// exist (`None`) — against the dummy hash, so both cases cost one argon2 computation
    /// and answer `false` alike. The policy minimum is not applied (old passwords keep
    /// working); a candidate over [`MAX_PASSWORD_BYTES`] is `false` without hashing, for
    /// known and unknown users alike.
    pub async fn verify(
        &self,
        phc: Option<&str>,
        candidate: &Password,
    ) -> Result<bool, PasswordError> {
        let Ok(candidate) = normalize(candidate.expose()) else {
            return Ok(false);
        };
        let (parsed, user_exists) = match phc {
            Some(phc) => (parse_stored(phc)?, true),
            None => (parse_stored(self.dummy_phc().await?)?, false),
        };
        let matched = self
            .run_blocking(move || verify_blocking(&parsed, candidate.as_bytes()))
            .await?;
        Ok(user_exists && matched)
    }

    /// True when `phc` was not made with this hasher's algorithm and parameters (or does not
    /// parse): after a successful login, hash the password again and store the new string.
    pub fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(parsed) = parse_stored(phc) else {
            return true;
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return true;
        };
        let want = &self.inner.params;
        params.m_cost() != want.m_cost()
            || params.t_cost() != want.t_cost()
            || params.p_cost() != want.p_cost()
            || parsed.hash.map(|h| h.len()) != Some(ARGON2_OUTPUT_LEN)
            || parsed.salt.map(|s| s.len()) != Some(SALT_LEN)
    }

    /// Computes the dummy hash now, so the first unknown-user login does not pay for two
    /// hashes (a one-off timing difference). Call once at startup.
    pub async fn warm_up(&self) -> Result<(), PasswordError> {
        self.dummy_phc().await.map(drop)
    }

    /// The dummy hash: a random, immediately forgotten password hashed with the current
    /// parameters, so unknown-user verification does the same work as a real one.
    async fn dummy_phc(&self) -> Result<&str, PasswordError> {
        self.inner
            .dummy_phc
            .get_or_try_init(|| async {
                let secret = tucdesk_crypto::rng::random_secret::<DUMMY_PASSWORD_LEN>()?;
                let salt: [u8; SALT_LEN] = tucdesk_crypto::rng::random_array()?;
                let params = self.inner.params.clone();
                self.run_blocking(move || hash_blocking(params, secret.as_slice(), &salt))
                    .await
            })
            .await
            .map(String::as_str)
    }

    /// Runs one argon2 computation on the blocking pool once a slot is free. The permit
    /// moves into the blocking task, so the slot stays taken until the computation really
    /// ends even if the caller's future is dropped halfway.
    async fn run_blocking<T, F>(&self, work: F) -> Result<T, PasswordError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, PasswordError> + Send + 'static,
    {
        let permit: OwnedSemaphorePermit = tokio::time::timeout(
            self.inner.queue_timeout,
            Arc::clone(&self.inner.permits).acquire_owned(),
        )
        .await
        .map_err(|_| PasswordError::Busy)?
        // The semaphore is never closed; treat it as saturation if it ever is.
        .map_err(|_| PasswordError::Busy)?;
        #[cfg(test)]
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let result = {
                #[cfg(test)]
                let _running = inner.probe.enter();
                work()
            };
            drop(permit);
            result
        })
        .await
        .map_err(PasswordError::Task)?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts argon2 computations and the most that ran at once.
    #[derive(Default)]
    pub(super) struct Probe {
        runs: AtomicUsize,
        running: AtomicUsize,
        max_running: AtomicUsize,
    }

    pub(super) struct Running<'a>(&'a Probe);

    impl Probe {
        pub(super) fn enter(&self) -> Running<'_> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_running.fetch_max(now, Ordering::SeqCst);
            // Keep the slot a little so concurrent calls really overlap.
            std::thread::sleep(Duration::from_millis(5));
            Running(self)
        }
    }

    impl Drop for Running<'_> {
        fn drop(&mut self) {
            self.0.running.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn pw(s: &str) -> Password {
        Password::new(s.to_owned())
    }

    fn runs(h: &PasswordHasher) -> usize {
        h.inner.probe.runs.load(Ordering::SeqCst)
    }

    const GOOD: &str = "correct horse battery";

    #[tokio::test]
    async fn production_hash_is_argon2id_phc_with_the_chosen_parameters() {
        let h = PasswordHasher::new();
        let phc = h.hash(&pw(GOOD)).await.unwrap();
        let expected =
            format!("$argon2id$v=19$m={ARGON2_M_COST_KIB},t={ARGON2_T_COST},p={ARGON2_P_COST}$");
        assert!(phc.starts_with(&expected), "{phc}");
        assert!(!h.needs_rehash(&phc));
        assert!(h.verify(Some(&phc), &pw(GOOD)).await.unwrap());
    }

    #[tokio::test]
    async fn right_password_verifies_and_wrong_one_does_not() {
        let h = PasswordHasher::insecure_fast_for_tests();
        let phc = h.hash(&pw(GOOD)).await.unwrap();
        assert!(h.verify(Some(&phc), &pw(GOOD)).await.unwrap());
        assert!(
            !h.verify(Some(&phc), &pw("correct horse battery!"))
                .await
                .unwrap()
        );
        assert!(!h.verify(Some(&phc), &pw("")).await.unwrap());
    }

    #[tokio::test]
    async fn same_password_gets_a_fresh_salt_each_time() {
        let h = PasswordHasher::insecure_fast_for_tests();
        let a = h.hash(&pw(GOOD)).await.unwrap();
        let b = h.hash(&pw(GOOD)).await.unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn unknown_user_costs_one_hash_and_answers_false() {
        let h = PasswordHasher::insecure_fast_for_tests();
        let phc = h.hash(&pw(GOOD)).await.unwrap();
        h.warm_up().await.unwrap();

        let before = runs(&h);
        assert!(!h.verify(Some(&phc), &pw("wrong password!!")).await.unwrap());
        let known_user = runs(&h) - before;

        let before = runs(&h);
        assert!(!h.verify(None, &pw("wrong password!!")).await.unwrap());
        assert!(!h.verify(None, &pw(GOOD)).await.unwrap());
        let unknown_user = (runs(&h) - before) / 2;

        assert_eq!(known_user, 1);
        assert_eq!(unknown_user, known_user);
    }

    #[tokio::test]
    async fn dummy_hash_is_made_once_with_the_current_parameters() {
        let h = PasswordHasher::insecure_fast_for_tests();
        assert!(!h.verify(None, &pw(GOOD)).await.unwrap());
        // First call: dummy hash + verification.
        assert_eq!(runs(&h), 2);
        assert!(!h.verify(None, &pw(GOOD)).await.unwrap());
        assert_eq!(runs(&h), 3);
        let dummy = h.inner.dummy_phc.get().unwrap();
        assert!(!h.needs_rehash(dummy));
    }

    #[tokio::test]
    async fn overlong_candidate_is_false_without_hashing() {
        let h = PasswordHasher::insecure_fast_for_tests();
        let phc = h.hash(&pw(GOOD)).await.unwrap();
        let before = runs(&h);
        let huge = pw(&"a".repeat(MAX_PASSWORD_BYTES + 1));
        assert!(!h.verify(Some(&phc), &huge).await.unwrap());
        assert!(!h.verify(None, &huge).await.unwrap());
        assert_eq!(runs(&h), before);
    }

    #[test]
    fn policy_counts_characters_and_caps_bytes() {
        assert_eq!(
            check_policy(&pw("elevenchars")),
            Err(PolicyViolation::TooShort)
        );
        assert_eq!(check_policy(&pw("twelve chars")), Ok(()));
        // 12 two-byte characters: long enough although only 12 characters.
        assert_eq!(check_policy(&pw(&"é".repeat(12))), Ok(()));
        assert_eq!(
            check_policy(&pw(&"é".repeat(11))),
            Err(PolicyViolation::TooShort)
        );
        assert_eq!(check_policy(&pw(&"a".repeat(MAX_PASSWORD_BYTES))), Ok(()));
        assert_eq!(
            check_policy(&pw(&"a".repeat(MAX_PASSWORD_BYTES + 1))),
            Err(PolicyViolation::TooLong)
        );
        // The cap is in bytes, before normalisation: 513 two-byte characters are too long.
        assert_eq!(
            check_policy(&pw(&"é".repeat(MAX_PASSWORD_BYTES / 2 + 1))),
            Err(PolicyViolation::TooLong)
        );
    }

    #[test]
    fn all_whitespace_password_is_refused() {
        assert_eq!(
            check_policy(&pw(&" ".repeat(20))),
            Err(PolicyViolation::OnlyWhitespace)
        );
        // Ideographic space and tabs are whitespace too.
        assert_eq!(
            check_policy(&pw(&"\u{3000}\t\n ".repeat(4))),
            Err(PolicyViolation::OnlyWhitespace)
        );
        assert_eq!(check_policy(&pw("            x")), Ok(()));
    }

    #[tokio::test]
    async fn hash_refuses_a_policy_violation_without_hashing() {
        let h = PasswordHasher::insecure_fast_for_tests();
        let err = h.hash(&pw("short")).await.unwrap_err();
        assert!(matches!(
            err,
            PasswordError::Policy(PolicyViolation::TooShort)
        ));
        assert_eq!(runs(&h), 0);
    }

    #[tokio::test]
    async fn composed_and_decomposed_forms_match() {
        let h = PasswordHasher::insecure_fast_for_tests();
        let composed = "caf\u{e9} au lait pour moi";
        let decomposed = "cafe\u{301} au lait pour moi";
        let phc = h.hash(&pw(decomposed)).await.unwrap();
        assert!(h.verify(Some(&phc), &pw(composed)).await.unwrap());
    }

    #[tokio::test]
    async fn needs_rehash_when_parameters_differ() {
        let fast = PasswordHasher::insecure_fast_for_tests();
        let prod = PasswordHasher::new();
        let phc = fast.hash(&pw(GOOD)).await.unwrap();
        assert!(!fast.needs_rehash(&phc));
        assert!(prod.needs_rehash(&phc));
        assert!(prod.needs_rehash("not a phc string"));
        assert!(prod.needs_rehash(&phc.replacen("argon2id", "argon2i", 1)));
    }

    #[tokio::test]
    async fn stored_hash_with_excessive_or_foreign_parameters_is_refused() {
        let h = PasswordHasher::insecure_fast_for_tests();
        let phc = h.hash(&pw(GOOD)).await.unwrap();
        let huge_m = phc.replacen("m=64,", &format!("m={},", MAX_STORED_M_COST_KIB + 1), 1);
        let argon2i = phc.replacen("argon2id", "argon2i", 1);
        for bad in [
            huge_m.as_str(),
            argon2i.as_str(),
            "$argon2id$v=19$garbage",
            "",
        ] {
            let err = h.verify(Some(bad), &pw(GOOD)).await.unwrap_err();
            assert!(matches!(err, PasswordError::InvalidHash), "{bad}: {err}");
        }
        assert_eq!(runs(&h), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_hashes_never_exceed_the_slot_count() {
        let h = PasswordHasher::insecure_fast_for_tests();
        let phc = h.hash(&pw(GOOD)).await.unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let h = h.clone();
                let phc = phc.clone();
                tokio::spawn(async move { h.verify(Some(&phc), &pw(GOOD)).await.unwrap() })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
        let max = h.inner.probe.max_running.load(Ordering::SeqCst);
        assert!((1..=MAX_CONCURRENT_HASHES).contains(&max), "max {max}");
    }

    #[tokio::test]
    async fn saturated_hasher_answers_busy_after_the_queue_timeout() {
        let h = PasswordHasher::build(TEST_PARAMS, 1, Duration::from_millis(20));
        let _held = Arc::clone(&h.inner.permits).acquire_owned().await.unwrap();
        let err = h.hash(&pw(GOOD)).await.unwrap_err();
        assert!(matches!(err, PasswordError::Busy));
        assert_eq!(runs(&h), 0);
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let p = pw("hunter2hunter2");
        assert_eq!(format!("{p:?}"), "Password(<redacted>)");
        let parsed: Password = serde_json::from_str("\"hunter2hunter2\"").unwrap();
        assert_eq!(parsed.expose(), "hunter2hunter2");
        assert!(!format!("{parsed:?}").contains("hunter2"));
    }
}
