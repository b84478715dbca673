-- Rendezvous service schema (SPEC §2, §4, §5). Times are unix milliseconds. Protobuf
-- messages that are only stored and returned (host info, exec specs, operator identity,
-- policy results) are kept as their encoded bytes. Presence is not here: it lives in the
-- cache (Redis or in-process) with a TTL.

-- Enrolled agents. A row is never deleted: a revoked key stays here so it can never
-- register or enroll again (reinstall = new identity).
CREATE TABLE agents (
    agent_id            TEXT PRIMARY KEY,
    team_id             TEXT NOT NULL,
    public_key          BYTEA NOT NULL,
    name                TEXT NOT NULL,
    -- From HostInfo, for search; display only, never trusted.
    hostname            TEXT NOT NULL DEFAULT '',
    status              TEXT NOT NULL,
    enrollment_token_id TEXT NOT NULL,
    enrolled_at_ms      BIGINT NOT NULL,
    revoked_at_ms       BIGINT,
    revoked_by          TEXT,
    revoke_reason       TEXT,
    host                BYTEA,
    protocol_version    INTEGER NOT NULL DEFAULT 0,
    last_seen_at_ms     BIGINT
);
CREATE INDEX agents_team_name ON agents (team_id, name, agent_id);

CREATE TABLE agent_tags (
    agent_id TEXT NOT NULL REFERENCES agents (agent_id),
    tag      TEXT NOT NULL,
    PRIMARY KEY (agent_id, tag)
);
CREATE INDEX agent_tags_tag ON agent_tags (tag, agent_id);

-- Single-use enrollment tokens; only a keyed hash of the code is stored.
CREATE TABLE enrollment_tokens (
    id               TEXT PRIMARY KEY,
    team_id          TEXT NOT NULL,
    code_hash        BYTEA NOT NULL UNIQUE,
    description      TEXT NOT NULL,
    tags             TEXT NOT NULL,
    allow_host_tags  BOOLEAN NOT NULL,
    created_by       TEXT NOT NULL,
    created_at_ms    BIGINT NOT NULL,
    expires_at_ms    BIGINT NOT NULL,
    used_at_ms       BIGINT,
    used_by_agent_id TEXT,
    revoked_at_ms    BIGINT
);
CREATE INDEX enrollment_tokens_team ON enrollment_tokens (team_id, created_at_ms);

-- Every CreateSession, accepted or refused, under the id the viewer chose (never reused).
CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,
    team_id           TEXT NOT NULL,
    agent_id          TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    operator          BYTEA NOT NULL,
    kind              INTEGER NOT NULL,
    exec              BYTEA,
    e_op_pub          BYTEA NOT NULL,
    requested_path    INTEGER NOT NULL,
    state             INTEGER NOT NULL,
    path              INTEGER NOT NULL DEFAULT 0,
    relay_node_id     TEXT NOT NULL DEFAULT '',
    created_at_ms     BIGINT NOT NULL,
    started_at_ms     BIGINT,
    ended_at_ms       BIGINT,
    bytes_to_agent    BIGINT NOT NULL DEFAULT 0,
    bytes_to_operator BIGINT NOT NULL DEFAULT 0,
    policy_result     BYTEA,
    end_reason        INTEGER NOT NULL DEFAULT 0,
    close_reason      INTEGER NOT NULL DEFAULT 0,
    recorded          BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX sessions_team_created ON sessions (team_id, created_at_ms);
CREATE INDEX sessions_agent ON sessions (agent_id, state);

-- Approval requests of the policy's approval gate. Single use: APPROVED becomes CONSUMED
-- when a CreateSession uses it.
CREATE TABLE approvals (
    id                TEXT PRIMARY KEY,
    team_id           TEXT NOT NULL,
    requester_id      TEXT NOT NULL,
    requester         BYTEA NOT NULL,
    agent_id          TEXT NOT NULL,
    kind              INTEGER NOT NULL,
    exec              BYTEA,
    reason            TEXT NOT NULL,
    policy_result     BYTEA NOT NULL,
    approver_roles    TEXT NOT NULL,
    state             INTEGER NOT NULL,
    created_at_ms     BIGINT NOT NULL,
    expires_at_ms     BIGINT NOT NULL,
    decided_by        TEXT,
    decided_at_ms     BIGINT,
    decision_comment  TEXT,
    consumed_by       TEXT
);
CREATE INDEX approvals_team_state ON approvals (team_id, state, created_at_ms);
CREATE INDEX approvals_pending_expiry ON approvals (state, expires_at_ms);

-- Team policy documents: every saved version is kept; the highest is in force.
CREATE TABLE policies (
    team_id       TEXT NOT NULL,
    version       BIGINT NOT NULL,
    yaml          TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    updated_by    TEXT NOT NULL,
    PRIMARY KEY (team_id, version)
);
