-- OAuth 2.1 for AI agents (docs/auth.md, "OAuth 2.1 for AI agents").

-- Clients an admin registered over gRPC belong to that admin's team: only its users may
-- authorize them, and revoking one revokes it everywhere. Dynamically registered clients
-- (RFC 7591) have neither column set.
ALTER TABLE oauth_clients ADD COLUMN team_id TEXT;
ALTER TABLE oauth_clients ADD COLUMN created_by TEXT;
-- Finds unused dynamic registrations old enough to delete.
CREATE INDEX oauth_clients_created ON oauth_clients (created_at_ms);

-- A dynamically registered client is shared by every team, so a team admin revokes it for
-- the team only: its users can no longer authorize it and its tokens there are revoked.
CREATE TABLE oauth_client_revocations (
    client_id     TEXT NOT NULL REFERENCES oauth_clients (client_id),
    team_id       TEXT NOT NULL,
    revoked_by    TEXT NOT NULL,
    revoked_at_ms INTEGER NOT NULL,
    PRIMARY KEY (client_id, team_id)
);

-- One live grant per user and client; a new consent updates its scope.
CREATE UNIQUE INDEX oauth_grants_live ON oauth_grants (user_id, client_id)
    WHERE revoked_at_ms IS NULL;
CREATE INDEX oauth_grants_team ON oauth_grants (team_id);

-- Spent codes are kept a while for reuse detection, then deleted by expiry.
CREATE INDEX oauth_codes_expires ON oauth_codes (expires_at_ms);
CREATE INDEX oauth_codes_client ON oauth_codes (client_id);

-- Revoking a client or a grant revokes the matching families.
CREATE INDEX refresh_families_client ON refresh_families (client_id, user_id);
