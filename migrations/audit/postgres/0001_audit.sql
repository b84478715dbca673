-- Audit service schema (SPEC §6, docs/audit.md). Times are unix milliseconds; hashes are
-- 32-byte SHA-256, signatures 64-byte Ed25519.
--
-- audit_entries, audit_checkpoints and audit_signing_keys are append-only: the service never
-- updates or deletes them, and the triggers below refuse UPDATE, DELETE and TRUNCATE (also
-- INSERT … ON CONFLICT DO UPDATE, which fires the UPDATE trigger) for every role, table
-- owner and superuser included. Only a superuser who disables the triggers can change a row,
-- and the hash chain and the signed checkpoints show where. Production grants the service
-- role only SELECT and INSERT on these tables (docs/audit.md, "Database roles").

-- One row per appended event: the team's chain position, its links, and the event as the
-- JSON of tucdesk_crypto::audit::AuditEvent (rebuilt exactly from event_json). The other
-- columns are copies for query filters only; verification never trusts them.
CREATE TABLE audit_entries (
    team_id        TEXT   NOT NULL,
    seq            BIGINT NOT NULL CHECK (seq > 0),
    event_id       TEXT   NOT NULL UNIQUE,
    prev_hash      BYTEA  NOT NULL CHECK (length(prev_hash) = 32),
    hash           BYTEA  NOT NULL CHECK (length(hash) = 32),
    sig            BYTEA  NOT NULL CHECK (length(sig) = 64),
    -- Fingerprint of the audit key that signed (not hashed; helps pick the key after rotation).
    key_id         TEXT   NOT NULL,
    event_json     TEXT   NOT NULL,
    occurred_at_ms BIGINT NOT NULL,
    action         TEXT   NOT NULL,
    actor_id       TEXT   NOT NULL,
    target         TEXT   NOT NULL,
    session_id     TEXT,
    appended_at_ms BIGINT NOT NULL,
    PRIMARY KEY (team_id, seq)
);
CREATE INDEX audit_entries_time ON audit_entries (team_id, occurred_at_ms, seq);
CREATE INDEX audit_entries_actor ON audit_entries (team_id, actor_id, seq);
CREATE INDEX audit_entries_action ON audit_entries (team_id, action, seq);
CREATE INDEX audit_entries_target ON audit_entries (team_id, target, seq);
CREATE INDEX audit_entries_session ON audit_entries (team_id, session_id, seq)
    WHERE session_id IS NOT NULL;
CREATE INDEX audit_entries_hash ON audit_entries (team_id, hash);

-- Signed tree heads (tucdesk_crypto::merkle::SignedCheckpoint) over each team's entries.
CREATE TABLE audit_checkpoints (
    team_id      TEXT   NOT NULL,
    tree_size    BIGINT NOT NULL CHECK (tree_size > 0),
    root_hash    BYTEA  NOT NULL CHECK (length(root_hash) = 32),
    timestamp_ms BIGINT NOT NULL,
    key_id       TEXT   NOT NULL,
    sig          BYTEA  NOT NULL CHECK (length(sig) = 64),
    PRIMARY KEY (team_id, tree_size)
);
CREATE INDEX audit_checkpoints_time ON audit_checkpoints (team_id, timestamp_ms);

-- Every audit signing key ever used, recorded when a replica first starts with it.
CREATE TABLE audit_signing_keys (
    key_id           TEXT   PRIMARY KEY,
    public_key       BYTEA  NOT NULL UNIQUE CHECK (length(public_key) = 32),
    first_used_at_ms BIGINT NOT NULL
);

-- Per-team head: the next append's position and the Merkle accumulator (peaks of the perfect
-- subtrees, largest first, 32 bytes each), and when the last checkpoint was made. The one
-- audit table the service updates; updates are optimistic (WHERE tree_size = the size read),
-- so two replicas never both extend a chain.
CREATE TABLE audit_heads (
    team_id          TEXT   PRIMARY KEY,
    tree_size        BIGINT NOT NULL CHECK (tree_size >= 0),
    last_hash        BYTEA  NOT NULL CHECK (length(last_hash) = 32),
    peaks            BYTEA  NOT NULL,
    checkpoint_size  BIGINT NOT NULL DEFAULT 0,
    checkpoint_at_ms BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL
);
CREATE INDEX audit_heads_checkpoint_due ON audit_heads (checkpoint_at_ms);

-- Dead letters: stream messages that are not valid audit events. Never hashed or signed;
-- kept for investigation (payload up to 64 KiB) and acknowledged so they cannot block the
-- stream. Keyed by the payload's SHA-256, so a redelivery is stored once.
CREATE TABLE audit_rejected (
    digest         BYTEA  PRIMARY KEY CHECK (length(digest) = 32),
    subject        TEXT   NOT NULL,
    event_id       TEXT,
    reason         TEXT   NOT NULL,
    payload        BYTEA,
    payload_len    BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
CREATE INDEX audit_rejected_time ON audit_rejected (received_at_ms);

CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_entries_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_signing_keys_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
