-- Auth service schema (SPEC §3). Times are unix milliseconds; secrets are stored only
-- as hashes or sealed under the key-encryption key.

CREATE TABLE teams (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE users (
    id               TEXT PRIMARY KEY,
    team_id          TEXT NOT NULL REFERENCES teams (id),
    -- Lowercased; login is by email alone, so it is unique across teams.
    email            TEXT NOT NULL UNIQUE,
    display_name     TEXT NOT NULL DEFAULT '',
    role             TEXT NOT NULL,
    -- argon2id PHC string; NULL until the invite is accepted.
    password_hash    TEXT,
    disabled         INTEGER NOT NULL DEFAULT 0,
    -- TOTP secret sealed with AES-256-GCM under the KEK (user id as AAD).
    totp_secret      BLOB,
    totp_enabled     INTEGER NOT NULL DEFAULT 0,
    -- Last accepted TOTP time step: a code works once.
    totp_last_step   INTEGER,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL,
    last_login_at_ms INTEGER
);
CREATE INDEX users_team ON users (team_id);

-- One-time secrets: bootstrap setup tokens and invites (SHA-256 of the token).
CREATE TABLE invites (
    token_hash    BLOB PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id),
    expires_at_ms INTEGER NOT NULL,
    used_at_ms    INTEGER
);

CREATE TABLE totp_recovery_codes (
    code_hash  BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    used_at_ms INTEGER
);

-- JWT signing keys. With a KEK the private key is sealed here; in dev mode it lives in a
-- 0600 file and private_key_sealed is NULL.
CREATE TABLE signing_keys (
    kid                TEXT PRIMARY KEY,
    public_key         BLOB NOT NULL,
    private_key_sealed BLOB,
    created_at_ms      INTEGER NOT NULL,
    -- Set when a newer key takes over; the key still verifies until published_until_ms.
    retired_at_ms      INTEGER,
    published_until_ms INTEGER
);

-- Refresh-token families (SPEC §3): each use rotates; reuse of a spent token revokes the
-- family. A family is bound to one device key (cnf.jkt) and has an absolute lifetime.
CREATE TABLE refresh_families (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id),
    team_id        TEXT NOT NULL,
    device_jkt     TEXT NOT NULL,
    client_id      TEXT,
    scope          TEXT,
    generation     INTEGER NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    revoked_at_ms  INTEGER,
    revoked_reason TEXT
);
CREATE INDEX refresh_families_user ON refresh_families (user_id);

CREATE TABLE refresh_tokens (
    token_hash    BLOB PRIMARY KEY,
    family_id     TEXT NOT NULL REFERENCES refresh_families (id),
    generation    INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    used_at_ms    INTEGER
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Support codes: keyed SHA-256 (HMAC) of the normalised code; scope one agent or a tag.
CREATE TABLE support_codes (
    id            TEXT PRIMARY KEY,
    team_id       TEXT NOT NULL REFERENCES teams (id),
    code_hash     BLOB NOT NULL UNIQUE,
    agent_id      TEXT,
    tag           TEXT,
    session_kinds TEXT NOT NULL DEFAULT 'shell',
    created_by    TEXT NOT NULL,
    note          TEXT NOT NULL DEFAULT '',
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    max_uses      INTEGER NOT NULL,
    uses          INTEGER NOT NULL DEFAULT 0,
    revoked_at_ms INTEGER,
    CHECK ((agent_id IS NULL) <> (tag IS NULL))
);
CREATE INDEX support_codes_team ON support_codes (team_id);

-- OAuth 2.1 public clients (RFC 7591) and their authorization codes and grants.
CREATE TABLE oauth_clients (
    client_id     TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);

CREATE TABLE oauth_codes (
    code_hash      BLOB PRIMARY KEY,
    client_id      TEXT NOT NULL REFERENCES oauth_clients (client_id),
    user_id        TEXT NOT NULL REFERENCES users (id),
    team_id        TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    scope          TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    used_at_ms     INTEGER,
    -- The family the code was exchanged for, revoked if the code is replayed.
    family_id      TEXT
);

CREATE TABLE oauth_grants (
    id            TEXT PRIMARY KEY,
    client_id     TEXT NOT NULL REFERENCES oauth_clients (client_id),
    user_id       TEXT NOT NULL REFERENCES users (id),
    team_id       TEXT NOT NULL,
    scope         TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);
CREATE INDEX oauth_grants_user ON oauth_grants (user_id);
