-- Session recording settings per team, one row per saved version (history kept, like
-- policies): the mode (RecordingMode: 1 off, 2 on, 3 required) and the age X25519
-- recipients agents encrypt recordings to, as a JSON array of {"recipient", "label"}.
CREATE TABLE recording_settings (
    team_id         TEXT NOT NULL,
    version         BIGINT NOT NULL,
    mode            INTEGER NOT NULL,
    recipients_json TEXT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    updated_by      TEXT NOT NULL,
    PRIMARY KEY (team_id, version)
);
