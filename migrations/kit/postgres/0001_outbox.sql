-- Transactional outbox (SPEC §6): producers insert here in the same transaction as the
-- state change; the kit's publisher moves rows to the bus after commit.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    event_id        TEXT    NOT NULL UNIQUE,
    team_id         TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    headers         TEXT    NOT NULL DEFAULT '{}',
    payload         BYTEA   NOT NULL,
    created_at_ms   BIGINT  NOT NULL,
    published_at_ms BIGINT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);

CREATE INDEX outbox_pending ON outbox (id) WHERE published_at_ms IS NULL;
CREATE INDEX outbox_published ON outbox (published_at_ms) WHERE published_at_ms IS NOT NULL;
