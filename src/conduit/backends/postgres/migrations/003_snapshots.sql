-- Conduit schema version 3: snapshots of entities, one per stream and entity class.
-- A cache: dropping every row loses nothing but the time to replay.

CREATE TABLE IF NOT EXISTS __SCHEMA__.snapshots (
    stream_id        text        COLLATE "C" NOT NULL,
    class_name       text        COLLATE "C" NOT NULL,
    version          bigint      NOT NULL,
    snapshot_version integer     NOT NULL,
    data             json        NOT NULL,
    taken_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (stream_id, class_name)
);
