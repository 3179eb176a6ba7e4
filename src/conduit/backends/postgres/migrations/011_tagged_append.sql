-- Conduit schema version 11: one tagged event, under a condition or not, in one
-- lean call (the common DCB append: docs/dcb.md).
--
-- append_groups and append_conditional take any number of streams, requests
-- and condition items, and pay for that generality in plpgsql statements and
-- array work: about 0.6 ms of server time per one-event append, where
-- append_event spends under 0.1 ms. append_tagged is append_event with tags, and
-- with at most one condition item (one whose tags are given): every parameter a
-- scalar but the event's tags and keys and the item's names and tags.
--
-- The locks and their order are those of migration 007: the stream's lock,
-- then the DCB keys sorted (the event's keys shared, the item's key
-- exclusive), then the bulk lock shared; the check runs in a statement of its
-- own after them, so it sees every event committed by a writer it waited for.
-- A request whose id is recorded skips the check; its insert then fails with
-- unique_violation and the client looks it up, as after append_event.

CREATE OR REPLACE FUNCTION __SCHEMA__.append_tagged(
    p_stream     text,
    p_is_uuid    boolean,
    p_expected   bigint,
    p_id         uuid,
    p_name       text,
    p_data       text,
    p_metadata   text,
    p_notify     boolean,
    p_tags       text[],      -- the event's tags, sorted
    p_keys       text[],      -- its keys (shared)
    p_after      bigint,      -- null: no condition
    p_cond_tag   text,        -- the item's first tag
    p_cond_tags  text[],      -- null, or all its tags when it has several
    p_cond_names text[],      -- null, or its names
    p_cond_keys  text[],      -- its keys (exclusive)
    OUT out_position bigint,
    OUT out_version bigint,
    OUT out_recorded_at timestamptz,
    OUT out_is_uuid boolean
) LANGUAGE plpgsql AS $$
DECLARE
    v_found bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(__LOCK_CLASS__, hashtext(p_stream));
    PERFORM __SCHEMA__.lock_keys(p_cond_keys, p_keys, false);
    IF p_after IS NOT NULL AND NOT EXISTS (SELECT 1 FROM __SCHEMA__.events WHERE id = p_id) THEN
        SELECT t.position INTO v_found FROM __SCHEMA__.event_tags AS t
            WHERE t.tag = p_cond_tag AND t.position > p_after
              AND (p_cond_names IS NULL OR t.name = ANY(p_cond_names))
              AND (p_cond_tags IS NULL OR EXISTS (
                    SELECT 1 FROM __SCHEMA__.events AS e
                    WHERE e.position = t.position AND e.tags @> p_cond_tags))
            ORDER BY t.position LIMIT 1;
        IF v_found IS NOT NULL THEN
            RAISE EXCEPTION 'append condition failed'
                USING ERRCODE = 'CD412', DETAIL = v_found::text;
        END IF;
    END IF;
    UPDATE __SCHEMA__.streams AS s
        SET version = s.version + 1, recorded_at = greatest(clock_timestamp(), s.recorded_at)
        WHERE s.stream_id = p_stream
        RETURNING s.version, s.is_uuid, s.recorded_at INTO out_version, out_is_uuid, out_recorded_at;
    IF NOT FOUND THEN
        out_version := 1;
        out_is_uuid := p_is_uuid;
        out_recorded_at := clock_timestamp();
        INSERT INTO __SCHEMA__.streams (stream_id, is_uuid, version, recorded_at)
            VALUES (p_stream, p_is_uuid, 1, out_recorded_at);
    END IF;
    IF p_expected IS NOT NULL AND p_expected <> out_version - 1 THEN
        RAISE EXCEPTION 'wrong expected version'
            USING ERRCODE = 'CD409', DETAIL = (out_version - 1)::text;
    END IF;
    out_position := (pg_current_xact_id()::text::bigint << 20) + 1;
    INSERT INTO __SCHEMA__.events
        (position, id, stream_id, stream_is_uuid, version, name, data, metadata, recorded_at, tags)
        VALUES (out_position, p_id, p_stream, out_is_uuid, out_version, p_name,
                p_data::json, p_metadata::json, out_recorded_at, p_tags);
    INSERT INTO __SCHEMA__.event_tags (tag, position, name)
        SELECT t, out_position, p_name FROM unnest(p_tags) AS t;
    IF p_notify THEN
        PERFORM pg_notify(__CHANNEL__, out_position::text);
    END IF;
END
$$;
