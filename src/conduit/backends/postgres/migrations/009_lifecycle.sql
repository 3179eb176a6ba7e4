-- Conduit schema version 9: streams over the years (deletion, truncation, limits).
-- Safe to run again on a schema that has it.
--
-- What a store keeps about a stream beside its events are columns of its row:
-- deleted (0 no, 1 soft, 2 hard), truncated_before (reads return no version
-- below it), max_age and max_count (reads return no event older, none beyond
-- the last max_count). Reads of a stream filter on them; the scavenger and
-- the hard delete remove rows (docs/lifecycle.md).
--
-- The append functions are left as they are: a trigger on the streams row,
-- which every append moves, refuses to move a hard-deleted stream (SQLSTATE
-- CD404, the stream id as its detail: StreamDeleted), and brings a
-- soft-deleted stream back at its next append. Its WHEN clause is checked
-- without calling plpgsql, so appends to live streams pay nothing for it.

ALTER TABLE __SCHEMA__.streams
    ADD COLUMN IF NOT EXISTS deleted          smallint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS truncated_before bigint   NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS max_age          interval,
    ADD COLUMN IF NOT EXISTS max_count        bigint;

CREATE OR REPLACE FUNCTION __SCHEMA__.streams_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.deleted = 2 THEN
        RAISE EXCEPTION 'stream % is deleted', OLD.stream_id
            USING ERRCODE = 'CD404', DETAIL = OLD.stream_id;
    END IF;
    NEW.deleted := 0;  -- a push after a soft delete brings the stream back
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS streams_guard ON __SCHEMA__.streams;
CREATE TRIGGER streams_guard BEFORE UPDATE OF version ON __SCHEMA__.streams
    FOR EACH ROW WHEN (OLD.deleted <> 0 AND NEW.version <> OLD.version)
    EXECUTE FUNCTION __SCHEMA__.streams_guard();

CREATE INDEX IF NOT EXISTS streams_deleted ON __SCHEMA__.streams (stream_id) WHERE deleted <> 0;

-- Every removal of events (hard delete, truncation, scavenge) removes their
-- tags too: once per statement, from the rows it deleted.
CREATE OR REPLACE FUNCTION __SCHEMA__.events_removed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM __SCHEMA__.event_tags AS t
        USING (SELECT g.position, unnest(g.tags) AS tag FROM gone AS g
               WHERE cardinality(g.tags) > 0) AS r
        WHERE t.tag = r.tag AND t.position = r.position;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS events_removed ON __SCHEMA__.events;
CREATE TRIGGER events_removed AFTER DELETE ON __SCHEMA__.events
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION __SCHEMA__.events_removed();
