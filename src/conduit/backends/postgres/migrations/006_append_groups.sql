-- Conduit schema version 6: append_groups, several appends in one transaction.
--
-- Group commit (concurrent appends of one process sharing one commit) and
-- appends to several streams at once both call it. Its input is a list of
-- parts (one stream's events, at an expected version), each belonging to a
-- request (p_group); a request is all or nothing, the others unaffected.
--
-- 1. Every stream's advisory lock, in the order of the lock keys, before
--    anything gives the transaction an id: two calls can never deadlock, and
--    positions follow version order in every stream.
-- 2. A request with an event id already recorded is left out ('retry'): the
--    client looks its ids up (a retried append gets its recorded events).
-- 3. The requests are checked in order against the streams' versions, as
--    the earlier requests of this call leave them: a request whose expected
--    version differs is left out ('conflict', with the actual version).
-- 4. One insert of the accepted requests' events, positions in order from
--    (transaction id << 20) + 1, so each request's events are contiguous.
--
-- Returns one row per part: its outcome, its first version, the time given
-- to its events without one, the stream's id type, the stream's actual
-- version on a conflict, and the first position of the whole call.

CREATE OR REPLACE FUNCTION __SCHEMA__.append_groups(
    p_streams     text[],        -- per part
    p_is_uuid     boolean[],     -- per part: the id type of a stream it creates
    p_expected    bigint[],      -- per part: null for any version
    p_group       integer[],     -- per part: its request, from 1; a request's parts adjacent
    p_counts      integer[],     -- per part: how many events
    p_ids         uuid[],        -- per event, parts in order
    p_names       text[],
    p_data        text[],
    p_metadata    text[],
    p_recorded_at timestamptz[], -- null, or per event: imports keep the source's times
    p_event_part  integer[],     -- per event: its part, from 1
    p_event_ord   integer[],     -- per event: its place in its part, from 1
    p_notify      boolean
) RETURNS TABLE (out_outcome text, out_first_version bigint, out_recorded_at timestamptz,
                 out_is_uuid boolean, out_actual bigint, out_first_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_parts    integer := cardinality(p_streams);
    v_streams  text[];            -- the distinct streams
    v_version  bigint[];          -- their versions, as the accepted requests leave them
    v_is_uuid  boolean[];
    v_last     timestamptz[];
    v_known    boolean[];         -- whether the stream has a row
    v_now      timestamptz;
    v_base     bigint;
    v_outcome  text[] := array_fill('ok'::text, ARRAY[v_parts]);
    v_first    bigint[] := array_fill(0::bigint, ARRAY[v_parts]);
    v_time     timestamptz[] := array_fill(NULL::timestamptz, ARRAY[v_parts]);
    v_uuid     boolean[] := array_fill(false, ARRAY[v_parts]);
    v_actual   bigint[] := array_fill(NULL::bigint, ARRAY[v_parts]);
    v_accepted boolean[] := array_fill(true, ARRAY[v_parts]);
    v_key      integer;
    v_group    integer;
    v_start    integer := 1;
    v_end      integer;
    v_at       integer;
    v_expect   bigint;
    v_ok       boolean;
    i          integer;
BEGIN
    FOR v_key IN SELECT DISTINCT hashtext(s) AS k FROM unnest(p_streams) AS s ORDER BY k LOOP
        PERFORM pg_advisory_xact_lock(__LOCK_CLASS__, v_key);
    END LOOP;
    SELECT array_agg(s.stream_id ORDER BY s.stream_id) INTO v_streams
        FROM (SELECT DISTINCT unnest(p_streams) AS stream_id) AS s;
    SELECT array_agg(coalesce(t.version, 0) ORDER BY d.stream_id),
           array_agg(t.is_uuid ORDER BY d.stream_id),
           array_agg(coalesce(t.recorded_at, '-infinity') ORDER BY d.stream_id),
           array_agg(t.stream_id IS NOT NULL ORDER BY d.stream_id)
        INTO v_version, v_is_uuid, v_last, v_known
        FROM unnest(v_streams) AS d(stream_id)
        LEFT JOIN __SCHEMA__.streams AS t ON t.stream_id = d.stream_id;
    -- clock_timestamp() after the locks: never earlier than a stream's last event.
    v_now := clock_timestamp();
    -- Requests with an id already recorded: a retry, or a duplicate.
    FOR v_group IN
        SELECT DISTINCT p_group[p_event_part[e.i]]
        FROM unnest(p_ids) WITH ORDINALITY AS e(id, i)
        JOIN __SCHEMA__.events AS r ON r.id = e.id
    LOOP
        FOR i IN 1 .. v_parts LOOP
            IF p_group[i] = v_group THEN
                v_outcome[i] := 'retry';
                v_accepted[i] := false;
            END IF;
        END LOOP;
    END LOOP;
    -- Each request, in order, against the versions the earlier ones left.
    WHILE v_start <= v_parts LOOP
        v_end := v_start;
        WHILE v_end < v_parts AND p_group[v_end + 1] = p_group[v_start] LOOP
            v_end := v_end + 1;
        END LOOP;
        IF v_accepted[v_start] THEN
            v_ok := true;
            FOR i IN v_start .. v_end LOOP
                v_at := array_position(v_streams, p_streams[i]);
                v_expect := p_expected[i];
                IF v_expect IS NOT NULL AND v_expect <> v_version[v_at] THEN
                    v_ok := false;
                    v_outcome[i] := 'conflict';
                    v_actual[i] := v_version[v_at];
                END IF;
            END LOOP;
            FOR i IN v_start .. v_end LOOP
                IF v_ok THEN
                    v_at := array_position(v_streams, p_streams[i]);
                    IF NOT v_known[v_at] THEN
                        v_known[v_at] := true;
                        v_is_uuid[v_at] := p_is_uuid[i];
                    END IF;
                    v_first[i] := v_version[v_at] + 1;
                    v_version[v_at] := v_version[v_at] + p_counts[i];
                    v_time[i] := greatest(v_now, v_last[v_at]);
                    v_last[v_at] := v_time[i];
                    v_uuid[i] := v_is_uuid[v_at];
                ELSE
                    v_accepted[i] := false;
                    IF v_outcome[i] = 'ok' THEN
                        v_outcome[i] := 'aborted';  -- another stream of its request conflicted
                    END IF;
                END IF;
            END LOOP;
        END IF;
        v_start := v_end + 1;
    END LOOP;
    v_base := pg_current_xact_id()::text::bigint << 20;
    INSERT INTO __SCHEMA__.events
        (position, id, stream_id, stream_is_uuid, version, name, data, metadata, recorded_at)
        SELECT v_base + row_number() OVER (ORDER BY u.i), u.id, p_streams[u.part],
               v_uuid[u.part], v_first[u.part] + u.ord - 1, u.name, u.data::json,
               u.metadata::json, coalesce(u.recorded_at, v_time[u.part])
        FROM unnest(p_ids, p_names, p_data, p_metadata, p_recorded_at, p_event_part, p_event_ord)
             WITH ORDINALITY AS u(id, name, data, metadata, recorded_at, part, ord, i)
        WHERE v_accepted[u.part];
    INSERT INTO __SCHEMA__.streams AS s (stream_id, is_uuid, version, recorded_at)
        SELECT d.stream_id, v_is_uuid[d.i], v_version[d.i], v_last[d.i]
        FROM unnest(v_streams) WITH ORDINALITY AS d(stream_id, i)
        WHERE v_known[d.i]
          AND EXISTS (SELECT 1 FROM generate_subscripts(p_streams, 1) AS k
                      WHERE p_streams[k] = d.stream_id AND v_accepted[k])
        ON CONFLICT (stream_id) DO UPDATE
        SET version = excluded.version, recorded_at = excluded.recorded_at;
    IF p_notify AND true = ANY(v_accepted) THEN
        PERFORM pg_notify(__CHANNEL__, (v_base + 1)::text);
    END IF;
    RETURN QUERY SELECT v_outcome[k], v_first[k], v_time[k], v_uuid[k], v_actual[k], v_base + 1
        FROM generate_subscripts(p_streams, 1) AS k ORDER BY k;
END
$$;
