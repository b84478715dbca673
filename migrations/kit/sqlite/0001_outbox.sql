-- Transactional outbox (SPEC §6): producers insert here in the same transaction as the
-- state change; the kit's publisher moves rows to the bus after commit.
-- AUTOINCREMENT: ids only grow and are never reused, so id order is insertion order.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT    NOT NULL UNIQUE,
    team_id         TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    headers         TEXT    NOT NULL DEFAULT '{}',
    payload         BLOB    NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    published_at_ms INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);

CREATE INDEX outbox_pending ON outbox (id) WHERE published_at_ms IS NULL;
CREATE INDEX outbox_published ON outbox (published_at_ms) WHERE published_at_ms IS NOT NULL;
