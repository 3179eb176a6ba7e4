-- Conduit schema version 4: lighter append functions.
--
-- append_event: one event, every parameter a scalar. Drivers send scalars far
-- more cheaply than arrays (psycopg spent more on four one-element arrays than
-- the server spent on the insert), and one event needs no unnest.
-- append_batch: a batch, returning one row from which the client works out
-- every event's position and version, instead of a row per event.
--
-- Both insert plainly, without ON CONFLICT: an event id already recorded fails
-- the insert with unique_violation (23505), and the client looks the batch up
-- as append_events' CD410 made it do. The stream's advisory lock still comes
-- before anything gives the transaction an id. append_event moves the stream's
-- row first (UPDATE ... RETURNING: one statement where append_events has a
-- SELECT and an upsert); a wrong expected version then raises CD409, which
-- rolls the UPDATE back with the rest.

CREATE OR REPLACE FUNCTION __SCHEMA__.append_event(
    p_stream   text,
    p_is_uuid  boolean,
    p_expected bigint,
    p_id       uuid,
    p_name     text,
    p_data     text,
    p_metadata text,
    p_notify   boolean,
    OUT out_position bigint,
    OUT out_version bigint,
    OUT out_recorded_at timestamptz,
    OUT out_is_uuid boolean
) LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(__LOCK_CLASS__, hashtext(p_stream));
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
        (position, id, stream_id, stream_is_uuid, version, name, data, metadata, recorded_at)
        VALUES (out_position, p_id, p_stream, out_is_uuid, out_version, p_name,
                p_data::json, p_metadata::json, out_recorded_at);
    IF p_notify THEN
        PERFORM pg_notify(__CHANNEL__, out_position::text);
    END IF;
END
$$;

-- Returns the first event's position and version, the time given to events
-- without one of their own, and the stream's id type: event i (from 1) is at
-- out_first_position + i - 1, version out_first_version + i - 1.
CREATE OR REPLACE FUNCTION __SCHEMA__.append_batch(
    p_stream   text,
    p_is_uuid  boolean,
    p_expected bigint,
    p_ids      uuid[],
    p_names    text[],
    p_data     text[],
    p_metadata text[],
    p_notify   boolean,
    p_recorded_at timestamptz[],   -- null, or per event: imports keep the source's times
    OUT out_first_position bigint,
    OUT out_first_version bigint,
    OUT out_recorded_at timestamptz,
    OUT out_is_uuid boolean
) LANGUAGE plpgsql AS $$
DECLARE
    v_size  integer := cardinality(p_ids);
    v_last  timestamptz;
    v_base  bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(__LOCK_CLASS__, hashtext(p_stream));
    SELECT s.version, s.is_uuid, s.recorded_at INTO out_first_version, out_is_uuid, v_last
        FROM __SCHEMA__.streams AS s WHERE s.stream_id = p_stream;
    IF NOT FOUND THEN
        out_first_version := 0;
        out_is_uuid := p_is_uuid;
        v_last := '-infinity';
    END IF;
    IF p_expected IS NOT NULL AND p_expected <> out_first_version THEN
        RAISE EXCEPTION 'wrong expected version'
            USING ERRCODE = 'CD409', DETAIL = out_first_version::text;
    END IF;
    -- clock_timestamp() after the lock: never earlier than the stream's last event.
    out_recorded_at := greatest(clock_timestamp(), v_last);
    v_base := pg_current_xact_id()::text::bigint << 20;
    out_first_position := v_base + 1;
    INSERT INTO __SCHEMA__.events
        (position, id, stream_id, stream_is_uuid, version, name, data, metadata, recorded_at)
        SELECT v_base + u.i, u.id, p_stream, out_is_uuid, out_first_version + u.i, u.name,
               u.data::json, u.metadata::json, coalesce(u.recorded_at, out_recorded_at)
        -- unnest, not p_ids[i]: subscripting a large array in plpgsql is O(n) each time
        FROM unnest(p_ids, p_names, p_data, p_metadata, p_recorded_at)
             WITH ORDINALITY AS u(id, name, data, metadata, recorded_at, i);
    INSERT INTO __SCHEMA__.streams AS s (stream_id, is_uuid, version, recorded_at)
        VALUES (p_stream, out_is_uuid, out_first_version + v_size,
                coalesce(p_recorded_at[v_size], out_recorded_at))
        ON CONFLICT (stream_id) DO UPDATE
        SET version = excluded.version, recorded_at = excluded.recorded_at;
    out_first_version := out_first_version + 1;
    IF p_notify THEN
        PERFORM pg_notify(__CHANNEL__, (v_base + v_size)::text);
    END IF;
END
$$;
