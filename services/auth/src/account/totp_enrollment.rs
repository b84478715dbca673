//! TOTP enrolment (begin, confirm with recovery codes, disable) and the second-factor check
//! that login and `DisableTotp` share.

use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tonic::Request;
use tucdesk_proto::v1::{
    BeginTotpEnrollmentRequest, ConfirmTotpEnrollmentRequest, DisableTotpRequest,
};
use tucdesk_svc::ratelimit::{Decision, LimitPolicy};
use tucdesk_svc::sql::{Tx, now_ms};
use zeroize::Zeroizing;

use super::{limiter_error, require_person};
use crate::error::AuthError;
use crate::login::now_secs;
use crate::secrets::Purpose;
use crate::service::Auth;
use crate::store::{self, UserRow};
use crate::totp::{self, MAX_CODE_INPUT_LEN, TOTP_DIGITS, TOTP_SECRET_LEN, TotpSecret};

pub const BEGIN_TOTP_METHOD: &str = "/tucdesk.v1.AuthService/BeginTotpEnrollment";
pub const DISABLE_TOTP_METHOD: &str = "/tucdesk.v1.AuthService/DisableTotp";

/// How long a started TOTP enrolment waits for its confirming code.
pub const TOTP_ENROLLMENT_TTL: Duration = Duration::from_secs(10 * 60);

/// Recovery codes handed out when TOTP is enabled.
pub const RECOVERY_CODE_COUNT: usize = 10;

/// Symbols per recovery code: 16 Crockford base32 symbols = 80 bits, so the unkeyed SHA-256
/// kept in the database cannot be reversed by brute force.
pub const RECOVERY_CODE_LEN: usize = 16;

/// Symbols per dash-separated group in the display form `XXXX-XXXX-XXXX-XXXX`.
const RECOVERY_CODE_GROUP_LEN: usize = 4;

/// Domain tag of recovery-code hashes (a hash made for anything else never matches).
const RECOVERY_CODE_DOMAIN: &[u8] = b"tucdesk-totp-recovery-code-v1";

/// Wrong TOTP or recovery codes allowed per user in `ConfirmTotpEnrollment` and
/// `DisableTotp` before they lock (login has its own account limit).
pub const TOTP_CODE_LIMIT: LimitPolicy = LimitPolicy {
    name: "totp-code",
    max_failures: 5,
    window: Duration::from_secs(15 * 60),
    lockout: Duration::from_secs(15 * 60),
};

/// What `ConfirmTotpEnrollment` answers without a live pending enrolment.
const NO_PENDING_ENROLLMENT: AuthError =
    AuthError::NotFound("a pending TOTP enrolment (expired or never started)");

/// A started TOTP enrolment, shown to the user once.
#[derive(Debug)]
pub struct TotpEnrollment {
    pub secret_base32: tucdesk_crypto::SecretString,
    pub otpauth_uri: tucdesk_crypto::SecretString,
    pub expires_at_ms: i64,
}

/// Outcome of a second-factor check (login, `DisableTotp`); the use is recorded in the
/// caller's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecondFactor {
    /// A TOTP code of a step newer than the last one used.
    Totp,
    /// An unused recovery code, now consumed; `remaining` are left.
    RecoveryCode { remaining: i64 },
    /// Refused, with the reason to audit.
    Refused(&'static str),
}

/// A recovery code's storage form: SHA-256 over the domain, the user id and the normalised
/// symbols. `None` when the input is not shaped like a recovery code.
fn recovery_code_hash(user_id: &str, input: &str) -> Option<Vec<u8>> {
    if input.len() > MAX_CODE_INPUT_LEN {
        return None;
    }
    let mut symbols = Zeroizing::new(Vec::with_capacity(RECOVERY_CODE_LEN));
    for byte in input.bytes() {
        // Crockford normalisation, as for support codes.
        let symbol = match byte.to_ascii_uppercase() {
            b'-' | b' ' | b'\t' => continue,
            b'O' => b'0',
            b'I' | b'L' => b'1',
            c if tucdesk_crypto::codes::CODE_ALPHABET.contains(&c) => c,
            _ => return None,
        };
        symbols.push(symbol);
    }
    if symbols.len() != RECOVERY_CODE_LEN {
        return None;
    }
    let mut hash = Sha256::new();
    hash.update(RECOVERY_CODE_DOMAIN);
    hash.update([0]);
    hash.update(user_id.as_bytes());
    hash.update([0]);
    hash.update(symbols.as_slice());
    Some(hash.finalize().to_vec())
}

/// A fresh recovery code in display form.
fn new_recovery_code() -> Result<Zeroizing<String>, AuthError> {
    let raw = tucdesk_crypto::rng::random_secret::<RECOVERY_CODE_LEN>()
        .map_err(|err| AuthError::internal("recovery code generation", err))?;
    let alphabet = tucdesk_crypto::codes::CODE_ALPHABET;
    let mut code = Zeroizing::new(String::with_capacity(2 * RECOVERY_CODE_LEN));
    for (i, byte) in raw.iter().enumerate() {
        if i > 0 && i % RECOVERY_CODE_GROUP_LEN == 0 {
            code.push('-');
        }
        // 256 is a multiple of 32, so the low five bits are uniform.
        code.push(char::from(alphabet[usize::from(byte & 31)]));
    }
    Ok(code)
}

/// Six digits (spaces aside) are a TOTP code; anything else is tried as a recovery code.
fn looks_like_totp(code: &str) -> bool {
    let digits = code.chars().filter(|c| !c.is_whitespace());
    digits.clone().count() == TOTP_DIGITS as usize && digits.clone().all(|c| c.is_ascii_digit())
}

fn bounded_code(code: &str) -> Result<&str, AuthError> {
    if code.trim().is_empty() || code.len() > MAX_CODE_INPUT_LEN {
        return Err(AuthError::InvalidArgument(format!(
            "code must be 1..={MAX_CODE_INPUT_LEN} bytes"
        )));
    }
    Ok(code)
}

impl Auth {
    /// Counts one code attempt for `user_id` before it is checked (concurrent guesses cannot
    /// overshoot the limit).
    async fn count_code_attempt(&self, user_id: &str) -> Result<(), AuthError> {
        let decision = self
            .inner
            .limiter
            .record_failure(user_id, &TOTP_CODE_LIMIT)
            .await
            .map_err(limiter_error)?;
        match decision {
            Decision::Locked { retry_after } => Err(AuthError::Locked { retry_after }),
            Decision::Allowed { .. } => Ok(()),
        }
    }

    fn open_totp_secret(&self, user_id: &str, sealed: &[u8]) -> Result<TotpSecret, AuthError> {
        let secret = self
            .inner
            .kek
            .open(Purpose::TotpSeal, user_id.as_bytes(), sealed)?;
        if secret.len() != TOTP_SECRET_LEN {
            return Err(AuthError::internal(
                "totp",
                "sealed secret has the wrong length",
            ));
        }
        // Copied straight into zeroizing storage: no plain copy is left on the stack.
        let mut bytes = zeroize::Zeroizing::new([0u8; TOTP_SECRET_LEN]);
        bytes.copy_from_slice(&secret);
        Ok(TotpSecret::from_zeroizing(bytes))
    }

    /// Checks a TOTP code (each step works once) or a recovery code (consumed) for a user
    /// with TOTP enabled, recording the use in `tx`.
    pub(crate) async fn use_second_factor(
        &self,
        tx: &mut Tx,
        user: &UserRow,
        code: &str,
    ) -> Result<SecondFactor, AuthError> {
        if code.len() > MAX_CODE_INPUT_LEN {
            return Ok(SecondFactor::Refused("totp_invalid"));
        }
        if looks_like_totp(code) {
            let sealed = user
                .totp_secret
                .as_deref()
                .ok_or_else(|| AuthError::internal("totp", "enabled without a secret"))?;
            let secret = self.open_totp_secret(&user.id, sealed)?;
            let last = user.totp_last_step.and_then(|s| u64::try_from(s).ok());
            let step = match totp::verify(&secret, code, now_secs(), last) {
                Ok(Some(step)) => i64::try_from(step).map_err(|_| AuthError::TotpInvalid)?,
                Ok(None) | Err(_) => return Ok(SecondFactor::Refused("totp_invalid")),
            };
            return Ok(if store::set_totp_last_step(tx, &user.id, step).await? {
                SecondFactor::Totp
            } else {
                SecondFactor::Refused("totp_reused")
            });
        }
        let Some(hash) = recovery_code_hash(&user.id, code) else {
            return Ok(SecondFactor::Refused("recovery_code_invalid"));
        };
        // One conditional UPDATE: of concurrent uses of one code exactly one succeeds.
        let now = now_ms();
        let (consumed, remaining) = tucdesk_svc::on_tx!(tx, |conn| {
            let consumed = sqlx::query(
                "UPDATE totp_recovery_codes SET used_at_ms = $1 \
                 WHERE code_hash = $2 AND user_id = $3 AND used_at_ms IS NULL",
            )
            .bind(now)
            .bind(&hash)
            .bind(&user.id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            let remaining: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM totp_recovery_codes \
                 WHERE user_id = $1 AND used_at_ms IS NULL",
            )
            .bind(&user.id)
            .fetch_one(conn)
            .await?;
            (consumed, remaining)
        });
        Ok(if consumed == 1 {
            SecondFactor::RecoveryCode { remaining }
        } else {
            SecondFactor::Refused("recovery_code_invalid")
        })
    }
    /// Starts TOTP enrolment: a new secret, stored sealed as *pending* (TOTP stays off until
    /// a code confirms that the authenticator app has it), valid [`TOTP_ENROLLMENT_TTL`].
    /// A new call replaces a pending enrolment.
    pub async fn begin_totp_enrollment(
        &self,
        request: &Request<BeginTotpEnrollmentRequest>,
    ) -> Result<TotpEnrollment, AuthError> {
        let caller = self
            .proven_self(
                request,
                request.get_ref().proof.as_ref(),
                BEGIN_TOTP_METHOD,
                b"",
            )
            .await?;
        let user = &caller.user;
        if user.totp_enabled {
            return Err(AuthError::AlreadyExists(
                "TOTP is already enabled; disable it first",
            ));
        }
        let raw = tucdesk_crypto::rng::random_secret::<TOTP_SECRET_LEN>()
            .map_err(|err| AuthError::internal("totp secret generation", err))?;
        let secret = TotpSecret::from_zeroizing(raw);
        let sealed = self
            .inner
            .kek
            .seal(Purpose::TotpSeal, user.id.as_bytes(), secret.expose())?;
        let otpauth_uri = secret
            .provisioning_uri(&user.email)
            .map_err(|err| AuthError::internal("totp provisioning uri", err))?;
        let now = now_ms();
        let ttl = i64::try_from(TOTP_ENROLLMENT_TTL.as_millis()).unwrap_or(i64::MAX);
        let expires_at_ms = now.saturating_add(ttl);

        let mut tx = self.db().begin().await?;
        let stored = tucdesk_svc::on_tx!(&mut tx, |conn| {
            sqlx::query(
                "UPDATE users SET totp_pending_secret = $1, totp_pending_expires_at_ms = $2, \
                 updated_at_ms = $3 WHERE id = $4 AND totp_enabled = $5",
            )
            .bind(&sealed)
            .bind(expires_at_ms)
            .bind(now)
            .bind(&user.id)
            .bind(false)
            .execute(conn)
            .await?
            .rows_affected()
        });
        if stored != 1 {
            // A concurrent confirmation enabled TOTP in the meantime.
            return Err(AuthError::AlreadyExists(
                "TOTP is already enabled; disable it first",
            ));
        }
        let record = Auth::user_event(&user.team_id, "auth.totp_enrollment_started", &user.id)
            .target(format!("user:{}", user.id))
            .context("outcome", "success")
            .context("expires_at_ms", expires_at_ms);
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        Ok(TotpEnrollment {
            secret_base32: secret.to_base32().into(),
            otpauth_uri: otpauth_uri.into(),
            expires_at_ms,
        })
    }

    /// Enables TOTP with the first valid code of the pending secret; returns
    /// [`RECOVERY_CODE_COUNT`] recovery codes, which are stored only hashed.
    pub async fn confirm_totp_enrollment(
        &self,
        request: &Request<ConfirmTotpEnrollmentRequest>,
    ) -> Result<Vec<Zeroizing<String>>, AuthError> {
        let code = bounded_code(&request.get_ref().code)?;
        let caller = self.caller(request).await?;
        require_person(&caller)?;
        let user = &caller.user;
        self.count_code_attempt(&user.id).await?;

        let now = now_ms();
        let pending: Option<Vec<u8>> = tucdesk_svc::on_pool!(self.db(), |pool| {
            sqlx::query_scalar(
                "SELECT totp_pending_secret FROM users WHERE id = $1 AND totp_enabled = $2 \
                 AND totp_pending_secret IS NOT NULL AND totp_pending_expires_at_ms > $3",
            )
            .bind(&user.id)
            .bind(false)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        let sealed = pending.ok_or(NO_PENDING_ENROLLMENT)?;
        let secret = self.open_totp_secret(&user.id, &sealed)?;
        let step = match totp::verify(&secret, code, now_secs(), None) {
            Ok(Some(step)) => i64::try_from(step).map_err(|_| AuthError::TotpInvalid)?,
            Ok(None) | Err(_) => return Err(AuthError::TotpInvalid),
        };

        let mut tx = self.db().begin().await?;
        // Conditional on the very secret the code was checked against: a concurrent
        // BeginTotpEnrollment that replaced it, or a second confirmation, loses here.
        let enabled = tucdesk_svc::on_tx!(&mut tx, |conn| {
            sqlx::query(
                "UPDATE users SET totp_secret = totp_pending_secret, totp_enabled = $1, \
                 totp_last_step = $2, totp_pending_secret = NULL, \
                 totp_pending_expires_at_ms = NULL, updated_at_ms = $3 \
                 WHERE id = $4 AND totp_enabled = $5 AND totp_pending_secret = $6 \
                 AND totp_pending_expires_at_ms > $3",
            )
            .bind(true)
            .bind(step)
            .bind(now)
            .bind(&user.id)
            .bind(false)
            .bind(&sealed)
            .execute(conn)
            .await?
            .rows_affected()
        });
        if enabled != 1 {
            return Err(NO_PENDING_ENROLLMENT);
        }
        let mut codes = Vec::with_capacity(RECOVERY_CODE_COUNT);
        let mut hashes = Vec::with_capacity(RECOVERY_CODE_COUNT);
        for _ in 0..RECOVERY_CODE_COUNT {
            let code = new_recovery_code()?;
            let hash = recovery_code_hash(&user.id, &code)
                .ok_or_else(|| AuthError::internal("recovery code", "does not parse"))?;
            hashes.push(hash);
            codes.push(code);
        }
        replace_recovery_codes(&mut tx, &user.id, &hashes).await?;
        let record = Auth::user_event(&user.team_id, "auth.totp_enabled", &user.id)
            .actor_display(&user.email)
            .target(format!("user:{}", user.id))
            .context("outcome", "success")
            .context("recovery_codes", RECOVERY_CODE_COUNT);
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        self.inner
            .limiter
            .reset(&user.id, &TOTP_CODE_LIMIT)
            .await
            .map_err(limiter_error)?;
        Ok(codes)
    }

    /// Turns TOTP off; needs a device proof and a current TOTP code or an unused recovery
    /// code (someone who lost the authenticator app signs in and disables with one).
    pub async fn disable_totp(
        &self,
        request: &Request<DisableTotpRequest>,
    ) -> Result<(), AuthError> {
        let body = request.get_ref();
        let code = bounded_code(&body.code)?;
        let caller = self
            .proven_self(request, body.proof.as_ref(), DISABLE_TOTP_METHOD, b"")
            .await?;
        let user = &caller.user;
        if !user.totp_enabled {
            return Err(AuthError::NotFound(
                "TOTP on this account (it is not enabled)",
            ));
        }
        self.count_code_attempt(&user.id).await?;
        let mut tx = self.db().begin().await?;
        let used = match self.use_second_factor(&mut tx, user, code).await? {
            SecondFactor::Totp => "totp",
            SecondFactor::RecoveryCode { .. } => "recovery_code",
            SecondFactor::Refused(reason) => {
                drop(tx);
                let record = Auth::user_event(&user.team_id, "auth.totp_disable_failed", &user.id)
                    .target(format!("user:{}", user.id))
                    .context("outcome", "failure")
                    .context("reason", reason);
                let mut tx = self.db().begin().await?;
                self.audit(&mut tx, record).await?;
                self.commit(tx).await?;
                return Err(AuthError::TotpInvalid);
            }
        };
        tucdesk_svc::on_tx!(&mut tx, |conn| {
            sqlx::query(
                "UPDATE users SET totp_enabled = $1, totp_secret = NULL, totp_last_step = NULL, \
                 totp_pending_secret = NULL, totp_pending_expires_at_ms = NULL, \
                 updated_at_ms = $2 WHERE id = $3",
            )
            .bind(false)
            .bind(now_ms())
            .bind(&user.id)
            .execute(conn)
            .await?
            .rows_affected()
        });
        replace_recovery_codes(&mut tx, &user.id, &[]).await?;
        let record = Auth::user_event(&user.team_id, "auth.totp_disabled", &user.id)
            .actor_display(&user.email)
            .target(format!("user:{}", user.id))
            .context("outcome", "success")
            .context("second_factor", used);
        self.audit(&mut tx, record).await?;
        self.commit(tx).await?;
        self.inner
            .limiter
            .reset(&user.id, &TOTP_CODE_LIMIT)
            .await
            .map_err(limiter_error)
    }
}

/// Replaces every recovery code of a user with `hashes` (none: just deletes them).
async fn replace_recovery_codes(
    tx: &mut Tx,
    user_id: &str,
    hashes: &[Vec<u8>],
) -> Result<(), AuthError> {
    tucdesk_svc::on_tx!(tx, |conn| {
        sqlx::query("DELETE FROM totp_recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
        for hash in hashes {
            sqlx::query("INSERT INTO totp_recovery_codes (code_hash, user_id) VALUES ($1, $2)")
                .bind(hash)
                .bind(user_id)
                .execute(&mut *conn)
                .await?;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn recovery_codes_have_80_bits_and_normalise_like_crockford() {
        let code = new_recovery_code().unwrap();
        assert_eq!(code.len(), RECOVERY_CODE_LEN + 3, "{}", code.as_str());
        let hash = recovery_code_hash("u1", &code).unwrap();
        let sloppy = code.to_lowercase().replace('-', " ").replace('0', "o");
        assert_eq!(recovery_code_hash("u1", &sloppy), Some(hash.clone()));
        // Bound to the user: the same code hashes differently for someone else.
        assert_ne!(recovery_code_hash("u2", &code), Some(hash));
        assert_ne!(new_recovery_code().unwrap(), code);
    }

    #[test]
    fn only_well_formed_recovery_codes_hash() {
        for bad in [
            "",
            "123456",
            "ABCD-EFGH-JKMN-PQR",
            "ABCD-EFGH-JKMN-PQRSU",
            "ÄBCD-EFGH-JKMN-PQRS",
        ] {
            assert_eq!(recovery_code_hash("u", bad), None, "{bad}");
        }
        assert_eq!(
            recovery_code_hash("u", &"A".repeat(MAX_CODE_INPUT_LEN + 1)),
            None
        );
    }

    #[test]
    fn six_digits_are_a_totp_code() {
        assert!(looks_like_totp("123456"));
        assert!(looks_like_totp("123 456"));
        assert!(!looks_like_totp("12345"));
        assert!(!looks_like_totp("1234-5678-9012-3456"));
        assert!(!looks_like_totp("ABCDEF"));
    }
}
