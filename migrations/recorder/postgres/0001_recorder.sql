-- Recorder service schema (SPEC §7, docs/recordings.md). Times are unix milliseconds.
--
-- One row per (team, session) recording: the signed manifest as uploaded, where the upload
-- stands, and whether the object is stored. Only complete rows are ever listed or served.
CREATE TABLE recordings (
    team_id           TEXT    NOT NULL,
    session_id        TEXT    NOT NULL,
    agent_id          TEXT    NOT NULL,
    -- From rendezvous's session record (the manifest must agree).
    operator_user_id  TEXT    NOT NULL,
    started_at_ms     BIGINT  NOT NULL,
    -- SignedRecordingManifest: the encoded manifest and the agent's signature over it.
    manifest          BYTEA   NOT NULL,
    signature         BYTEA   NOT NULL CHECK (length(signature) = 64),
    ciphertext_sha256 BYTEA   NOT NULL CHECK (length(ciphertext_sha256) = 32),
    ciphertext_size   BIGINT  NOT NULL CHECK (ciphertext_size > 0),
    object_key        TEXT    NOT NULL UNIQUE,
    bytes_received    BIGINT  NOT NULL DEFAULT 0 CHECK (bytes_received >= 0),
    complete          BOOLEAN NOT NULL DEFAULT FALSE,
    created_at_ms     BIGINT  NOT NULL,
    updated_at_ms     BIGINT  NOT NULL,
    uploaded_at_ms    BIGINT,
    PRIMARY KEY (team_id, session_id)
);
CREATE INDEX recordings_list ON recordings (team_id, complete, started_at_ms, session_id);
CREATE INDEX recordings_operator ON recordings (team_id, operator_user_id, started_at_ms);

-- The staged parts of an upload in progress, in offset order; each is one object under
-- uploads/{team}/{session}/{sha}/. Deleted when the recording is complete.
CREATE TABLE recording_parts (
    team_id     TEXT   NOT NULL,
    session_id  TEXT   NOT NULL,
    part_offset BIGINT NOT NULL CHECK (part_offset >= 0),
    part_len    BIGINT NOT NULL CHECK (part_len > 0),
    object_key  TEXT   NOT NULL,
    PRIMARY KEY (team_id, session_id, part_offset),
    FOREIGN KEY (team_id, session_id) REFERENCES recordings (team_id, session_id) ON DELETE CASCADE
);

-- UploadProof nonces seen, until the proof could no longer be fresh (single use).
CREATE TABLE upload_nonces (
    agent_id      TEXT   NOT NULL,
    nonce         BYTEA  NOT NULL CHECK (length(nonce) = 32),
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (agent_id, nonce)
);
CREATE INDEX upload_nonces_expiry ON upload_nonces (expires_at_ms);
