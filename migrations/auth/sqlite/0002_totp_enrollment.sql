-- Pending TOTP enrolment (BeginTotpEnrollment → ConfirmTotpEnrollment): the new secret is
-- kept apart from the active one until a first valid code confirms it, and expires.
-- Sealed like totp_secret: AES-256-GCM under the KEK's TOTP subkey, user id as AAD.
ALTER TABLE users ADD COLUMN totp_pending_secret BLOB;
ALTER TABLE users ADD COLUMN totp_pending_expires_at_ms INTEGER;

-- Recovery codes are looked up per user (login, DisableTotp) and replaced per user.
CREATE INDEX totp_recovery_codes_user ON totp_recovery_codes (user_id);
