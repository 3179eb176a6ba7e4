-- Conduit schema version 10: subjects' keys, for personal data (docs/personal-data.md).
-- A subject's AES-256 key, or NULL once it was forgotten: the row stays as a
-- tombstone, so that new personal data of a forgotten subject is refused.
-- Self-contained: nothing else in the schema refers to this table.

CREATE TABLE IF NOT EXISTS __SCHEMA__.subject_keys (
    subject      text        COLLATE "C" PRIMARY KEY,
    key          bytea,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    forgotten_at timestamptz
);
