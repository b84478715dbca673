-- Support principals (docs/auth.md, "Support codes"): one row per redemption, written in the
-- transaction that consumes the code's use. MintSessionToken checks a support principal
-- against it (team, device key, code still live) before minting; WhoAmI and the host's
-- consent prompt show its display name.
CREATE TABLE support_principals (
    -- The access token's `sub`: support:<code id>:<use number>.
    id            TEXT PRIMARY KEY,
    code_id       TEXT NOT NULL REFERENCES support_codes (id),
    team_id       TEXT NOT NULL,
    -- The technician's name as typed at redemption (1..=128 bytes, no control characters).
    display_name  TEXT NOT NULL,
    -- RFC 7638 thumbprint of the redeeming device key (the token's cnf.jkt).
    device_jkt    TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    -- The access token's exp: the principal acts no longer.
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX support_principals_code ON support_principals (code_id);
