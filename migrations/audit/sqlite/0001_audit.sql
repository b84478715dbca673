-- Audit service schema (SPEC §6, docs/audit.md), the SQLite variant of
-- migrations/audit/postgres/0001_audit.sql. Times are unix milliseconds; hashes are 32-byte
-- SHA-256, signatures 64-byte Ed25519.
--
-- audit_entries, audit_checkpoints and audit_signing_keys are append-only: the service never
-- updates or deletes them, and the triggers below abort UPDATE and DELETE (SQLite has no
-- TRUNCATE; DELETE without WHERE fires the triggers too). A BEFORE INSERT trigger also
-- aborts an insert that would collide with an existing row, because INSERT OR REPLACE
-- deletes the old row without firing DELETE triggers (unless recursive_triggers is on).

CREATE TABLE audit_entries (
    team_id        TEXT    NOT NULL,
    seq            INTEGER NOT NULL CHECK (seq > 0),
    event_id       TEXT    NOT NULL UNIQUE,
    prev_hash      BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    hash           BLOB    NOT NULL CHECK (length(hash) = 32),
    sig            BLOB    NOT NULL CHECK (length(sig) = 64),
    key_id         TEXT    NOT NULL,
    event_json     TEXT    NOT NULL,
    occurred_at_ms BIGINT  NOT NULL,
    action         TEXT    NOT NULL,
    actor_id       TEXT    NOT NULL,
    target         TEXT    NOT NULL,
    session_id     TEXT,
    appended_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (team_id, seq)
);
CREATE INDEX audit_entries_time ON audit_entries (team_id, occurred_at_ms, seq);
CREATE INDEX audit_entries_actor ON audit_entries (team_id, actor_id, seq);
CREATE INDEX audit_entries_action ON audit_entries (team_id, action, seq);
CREATE INDEX audit_entries_target ON audit_entries (team_id, target, seq);
CREATE INDEX audit_entries_session ON audit_entries (team_id, session_id, seq)
    WHERE session_id IS NOT NULL;
CREATE INDEX audit_entries_hash ON audit_entries (team_id, hash);

CREATE TABLE audit_checkpoints (
    team_id      TEXT    NOT NULL,
    tree_size    INTEGER NOT NULL CHECK (tree_size > 0),
    root_hash    BLOB    NOT NULL CHECK (length(root_hash) = 32),
    timestamp_ms BIGINT  NOT NULL,
    key_id       TEXT    NOT NULL,
    sig          BLOB    NOT NULL CHECK (length(sig) = 64),
    PRIMARY KEY (team_id, tree_size)
);
CREATE INDEX audit_checkpoints_time ON audit_checkpoints (team_id, timestamp_ms);

CREATE TABLE audit_signing_keys (
    key_id           TEXT   PRIMARY KEY,
    public_key       BLOB   NOT NULL UNIQUE CHECK (length(public_key) = 32),
    first_used_at_ms BIGINT NOT NULL
);

CREATE TABLE audit_heads (
    team_id          TEXT    PRIMARY KEY,
    tree_size        INTEGER NOT NULL CHECK (tree_size >= 0),
    last_hash        BLOB    NOT NULL CHECK (length(last_hash) = 32),
    peaks            BLOB    NOT NULL,
    checkpoint_size  INTEGER NOT NULL DEFAULT 0,
    checkpoint_at_ms BIGINT  NOT NULL,
    updated_at_ms    BIGINT  NOT NULL
);
CREATE INDEX audit_heads_checkpoint_due ON audit_heads (checkpoint_at_ms);

CREATE TABLE audit_rejected (
    digest         BLOB    PRIMARY KEY CHECK (length(digest) = 32),
    subject        TEXT    NOT NULL,
    event_id       TEXT,
    reason         TEXT    NOT NULL,
    payload        BLOB,
    payload_len    INTEGER NOT NULL,
    received_at_ms BIGINT  NOT NULL
);
CREATE INDEX audit_rejected_time ON audit_rejected (received_at_ms);

CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit_entries is append-only: UPDATE refused');
END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit_entries is append-only: DELETE refused');
END;
CREATE TRIGGER audit_entries_no_replace BEFORE INSERT ON audit_entries
WHEN EXISTS (SELECT 1 FROM audit_entries
             WHERE (team_id = NEW.team_id AND seq = NEW.seq) OR event_id = NEW.event_id)
BEGIN
    SELECT RAISE(ABORT, 'audit_entries is append-only: the row exists');
END;

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only: UPDATE refused');
END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only: DELETE refused');
END;
CREATE TRIGGER audit_checkpoints_no_replace BEFORE INSERT ON audit_checkpoints
WHEN EXISTS (SELECT 1 FROM audit_checkpoints
             WHERE team_id = NEW.team_id AND tree_size = NEW.tree_size)
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only: the row exists');
END;

CREATE TRIGGER audit_signing_keys_no_update BEFORE UPDATE ON audit_signing_keys
BEGIN
    SELECT RAISE(ABORT, 'audit_signing_keys is append-only: UPDATE refused');
END;
CREATE TRIGGER audit_signing_keys_no_delete BEFORE DELETE ON audit_signing_keys
BEGIN
    SELECT RAISE(ABORT, 'audit_signing_keys is append-only: DELETE refused');
END;
CREATE TRIGGER audit_signing_keys_no_replace BEFORE INSERT ON audit_signing_keys
WHEN EXISTS (SELECT 1 FROM audit_signing_keys
             WHERE key_id = NEW.key_id OR public_key = NEW.public_key)
BEGIN
    SELECT RAISE(ABORT, 'audit_signing_keys is append-only: the row exists');
END;
