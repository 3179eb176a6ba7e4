-- Conduit schema version 1. __SCHEMA__ is replaced by the quoted schema name.
-- See docs/postgresql.md for how to read these tables directly.

CREATE TABLE __SCHEMA__.events (
    -- (transaction id << 20) | ordinal of the event in its transaction:
    -- grows in log order; position >> 20 is the writer's transaction id.
    position       bigint      PRIMARY KEY,
    id             uuid        NOT NULL UNIQUE,
    stream_id      text        COLLATE "C" NOT NULL,
    stream_is_uuid boolean     NOT NULL,
    version        bigint      NOT NULL,
    name           text        NOT NULL,
    -- json, not jsonb: the exact text as pushed (jsonb would change numbers).
    data           json        NOT NULL,
    metadata       json        NOT NULL,
    recorded_at    timestamptz NOT NULL,
    UNIQUE (stream_id, version)
);

CREATE TABLE __SCHEMA__.streams (
    stream_id   text        COLLATE "C" PRIMARY KEY,
    is_uuid     boolean     NOT NULL,
    version     bigint      NOT NULL,
    recorded_at timestamptz NOT NULL
);

-- One append: a batch of events to one stream, in one transaction.
-- The stream's advisory lock is taken before anything gives the transaction
-- an id, so that two appends to one stream get their transaction ids (and so
-- their positions) in version order.
CREATE FUNCTION __SCHEMA__.append_events(
    p_stream   text,
    p_is_uuid  boolean,
    p_expected bigint,
    p_ids      uuid[],
    p_names    text[],
    p_data     text[],
    p_metadata text[],
    p_notify   boolean,
    p_recorded_at timestamptz[]   -- null, or per event: imports keep the source's times
) RETURNS TABLE (out_position bigint, out_version bigint, out_recorded_at timestamptz,
                 out_is_uuid boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_version  bigint;
    v_is_uuid  boolean;
    v_last     timestamptz;
    v_now      timestamptz;
    v_base     bigint;
    v_count    bigint;
    v_size     integer := cardinality(p_ids);
BEGIN
    PERFORM pg_advisory_xact_lock(__LOCK_CLASS__, hashtext(p_stream));
    SELECT s.version, s.is_uuid, s.recorded_at INTO v_version, v_is_uuid, v_last
        FROM __SCHEMA__.streams s WHERE s.stream_id = p_stream;
    IF NOT FOUND THEN
        v_version := 0;
        v_is_uuid := p_is_uuid;
        v_last := '-infinity';
    END IF;
    IF p_expected IS NOT NULL AND p_expected <> v_version THEN
        RAISE EXCEPTION 'wrong expected version' USING ERRCODE = 'CD409', DETAIL = v_version::text;
    END IF;
    -- clock_timestamp() after the lock: never earlier than the stream's last event.
    v_now := greatest(clock_timestamp(), v_last);
    v_base := pg_current_xact_id()::text::bigint << 20;
    INSERT INTO __SCHEMA__.events
        (position, id, stream_id, stream_is_uuid, version, name, data, metadata, recorded_at)
        SELECT v_base + u.i, u.id, p_stream, v_is_uuid, v_version + u.i, u.name,
               u.data::json, u.metadata::json, coalesce(u.recorded_at, v_now)
        -- unnest, not p_ids[i]: subscripting a large array in plpgsql is O(n) each time
        FROM unnest(p_ids, p_names, p_data, p_metadata, p_recorded_at)
             WITH ORDINALITY AS u(id, name, data, metadata, recorded_at, i)
        ON CONFLICT (id) DO NOTHING;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count < v_size THEN
        RAISE EXCEPTION 'event id already recorded' USING ERRCODE = 'CD410';
    END IF;
    INSERT INTO __SCHEMA__.streams AS s (stream_id, is_uuid, version, recorded_at)
        VALUES (p_stream, v_is_uuid, v_version + v_size,
                coalesce(p_recorded_at[v_size], v_now))
        ON CONFLICT (stream_id) DO UPDATE
        SET version = excluded.version, recorded_at = excluded.recorded_at;
    IF p_notify THEN
        PERFORM pg_notify(__CHANNEL__, (v_base + v_size)::text);
    END IF;
    RETURN QUERY SELECT v_base + u.i, v_version + u.i, coalesce(u.recorded_at, v_now), v_is_uuid
        FROM unnest(p_ids, p_recorded_at) WITH ORDINALITY AS u(id, recorded_at, i);
END
$$;
