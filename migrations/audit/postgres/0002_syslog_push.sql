-- Syslog push (docs/audit.md, "Syslog push"): how far each team's log has been pushed to the
-- configured syslog collector, and which replica pushes. Neither table is part of the signed
-- log: both are UPDATEd in place, and losing them only means entries are pushed again
-- (delivery is at-least-once). The serving role needs SELECT, INSERT and UPDATE on both.

-- Per team: the last entry seq and the largest checkpoint tree size the collector was sent
-- (and the connection stayed healthy after), so a restart resumes right after them.
CREATE TABLE audit_syslog_cursor (
    team_id         TEXT   PRIMARY KEY,
    last_seq        BIGINT NOT NULL CHECK (last_seq >= 0),
    checkpoint_size BIGINT NOT NULL CHECK (checkpoint_size >= 0),
    updated_at_ms   BIGINT NOT NULL
);

-- One row per push stream (name 'syslog'): the replica holding the lease pushes, the others
-- wait until it expires, so replicas do not send every entry once each.
CREATE TABLE audit_syslog_lease (
    name          TEXT   PRIMARY KEY,
    holder        TEXT   NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
