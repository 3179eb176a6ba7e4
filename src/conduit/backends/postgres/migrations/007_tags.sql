-- Conduit schema version 7: tags, and appends under a condition (docs/dcb.md).
--
-- events.tags holds each event's tags (sorted); event_tags holds one row per
-- (tag, event), whose key serves queries and conditions by tag in position
-- order, and carries the event's name so that a name filter needs no visit to
-- the events table.
--
-- Locks (all transaction-scoped, taken before anything gives the transaction
-- an id, in one global order so that no two appends can deadlock):
--   1. the streams' locks (class __LOCK_CLASS__), sorted by key;
--   2. the DCB keys (class __KEY_CLASS__), sorted by key: a written event of
--      name n takes, for each of its tags t, the keys "n\x1ft" and "\x1ft"
--      shared; a condition item of names N and tags T takes "n\x1fmin(T)" for
--      each n in N (or "\x1fmin(T)" when N is empty) exclusive. A matching
--      event carries min(T) and, when N is given, one of its names: its
--      writer holds one of the condition's keys, so the condition waits for it
--      and then sees it; writers of disjoint keys never wait for each other;
--   3. the bulk lock (class __BULK_CLASS__, key 0): shared by every append that
--      took DCB keys, exclusive instead of them for one that has more than
--      256 keys;
--   4. a condition that matches by name alone or matches everything locks the
--      events table in SHARE ROW EXCLUSIVE mode, which waits for every writer
--      in progress and holds back every insert until it commits.

ALTER TABLE __SCHEMA__.events ADD COLUMN IF NOT EXISTS tags text[] NOT NULL DEFAULT '{}';

CREATE TABLE IF NOT EXISTS __SCHEMA__.event_tags (
    tag      text   COLLATE "C" NOT NULL,
    position bigint NOT NULL,
    name     text   NOT NULL,
    PRIMARY KEY (tag, position) INCLUDE (name)
);

CREATE OR REPLACE FUNCTION __SCHEMA__.lock_keys(p_exclusive text[], p_shared text[], p_bulk boolean)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k record;
    v_any boolean := false;
BEGIN
    IF p_bulk THEN
        PERFORM pg_advisory_xact_lock(__BULK_CLASS__, 0);
        RETURN;
    END IF;
    FOR k IN
        SELECT a.h, bool_or(a.x) AS x
        FROM (SELECT hashtext(e) AS h, true AS x FROM unnest(p_exclusive) AS e
              UNION ALL
              SELECT hashtext(s), false FROM unnest(p_shared) AS s) AS a
        GROUP BY a.h ORDER BY a.h
    LOOP
        v_any := true;
        IF k.x THEN
            PERFORM pg_advisory_xact_lock(__KEY_CLASS__, k.h);
        ELSE
            PERFORM pg_advisory_xact_lock_shared(__KEY_CLASS__, k.h);
        END IF;
    END LOOP;
    IF v_any THEN
        PERFORM pg_advisory_xact_lock_shared(__BULK_CLASS__, 0);
    END IF;
END
$$;

DROP FUNCTION IF EXISTS __SCHEMA__.append_groups(text[], boolean[], bigint[], integer[], integer[], uuid[],
    text[], text[], text[], timestamptz[], integer[], integer[], boolean);

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
    p_notify      boolean,
    p_tags        text[],        -- null, or per tag: the tags of the events, flattened
    p_tag_event   integer[],     -- per tag: its event, from 1
    p_keys        text[],        -- the written events' lock keys (see lock_keys), or null
    p_bulk        boolean        -- too many keys: the bulk lock instead
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
    PERFORM __SCHEMA__.lock_keys(NULL, p_keys, p_bulk);
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
    IF p_tags IS NULL THEN
        INSERT INTO __SCHEMA__.events
            (position, id, stream_id, stream_is_uuid, version, name, data, metadata, recorded_at)
            SELECT v_base + row_number() OVER (ORDER BY u.i), u.id, p_streams[u.part],
                   v_uuid[u.part], v_first[u.part] + u.ord - 1, u.name, u.data::json,
                   u.metadata::json, coalesce(u.recorded_at, v_time[u.part])
            FROM unnest(p_ids, p_names, p_data, p_metadata, p_recorded_at, p_event_part, p_event_ord)
                 WITH ORDINALITY AS u(id, name, data, metadata, recorded_at, part, ord, i)
            WHERE v_accepted[u.part];
    ELSE
        WITH placed AS (
            SELECT v_base + row_number() OVER (ORDER BY u.i) AS position, u.*
            FROM unnest(p_ids, p_names, p_data, p_metadata, p_recorded_at, p_event_part,
                        p_event_ord)
                 WITH ORDINALITY AS u(id, name, data, metadata, recorded_at, part, ord, i)
            WHERE v_accepted[u.part]
        ), tagged AS (
            SELECT t.ev, array_agg(t.tag ORDER BY t.tag) AS tags
            FROM unnest(p_tag_event, p_tags) AS t(ev, tag) GROUP BY t.ev
        ), inserted AS (
            INSERT INTO __SCHEMA__.events (position, id, stream_id, stream_is_uuid, version,
                                           name, data, metadata, recorded_at, tags)
            SELECT p.position, p.id, p_streams[p.part], v_uuid[p.part],
                   v_first[p.part] + p.ord - 1, p.name, p.data::json, p.metadata::json,
                   coalesce(p.recorded_at, v_time[p.part]), coalesce(g.tags, '{}')
            FROM placed AS p LEFT JOIN tagged AS g ON g.ev = p.i
        )
        INSERT INTO __SCHEMA__.event_tags (tag, position, name)
            SELECT t.tag, p.position, p.name
            FROM unnest(p_tag_event, p_tags) AS t(ev, tag) JOIN placed AS p ON p.i = t.ev;
    END IF;
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


-- One append (one or several streams) under a condition: the locks (streams,
-- then the condition's keys exclusive with the events' keys shared, then the
-- bulk lock or the table), then the check, then append_groups (which takes
-- the stream locks again, granted at once as they are held; not the keys). The check
-- runs after the locks, in a statement of its own, so it sees every event
-- committed by an append that held a key it waited for (a plpgsql function's
-- statements each take a new snapshot under READ COMMITTED). A request whose ids
-- are recorded skips the check: append_groups marks it a retry.
-- The condition: p_after; items 1..p_items, their names (p_item_names, with
-- p_name_item their item) and tags (p_item_tags, with p_tag_item); p_all when
-- an item matches everything.
CREATE OR REPLACE FUNCTION __SCHEMA__.append_conditional(
    p_after       bigint,
    p_items       integer,
    p_item_names  text[],
    p_name_item   integer[],
    p_item_tags   text[],
    p_tag_item    integer[],
    p_all         boolean,
    p_table       boolean,       -- lock the table (an item by name alone, or p_all)
    p_exclusive   text[],        -- the condition's keys
    p_streams     text[],
    p_is_uuid     boolean[],
    p_expected    bigint[],
    p_group       integer[],
    p_counts      integer[],
    p_ids         uuid[],
    p_names       text[],
    p_data        text[],
    p_metadata    text[],
    p_recorded_at timestamptz[],
    p_event_part  integer[],
    p_event_ord   integer[],
    p_notify      boolean,
    p_tags        text[],
    p_tag_event   integer[],
    p_keys        text[],
    p_bulk        boolean
) RETURNS TABLE (out_outcome text, out_first_version bigint, out_recorded_at timestamptz,
                 out_is_uuid boolean, out_actual bigint, out_first_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_key    integer;
    v_item   integer;
    v_names  text[];
    v_tags   text[];
    v_found  bigint;
    v_first  bigint;
BEGIN
    FOR v_key IN SELECT DISTINCT hashtext(s) AS k FROM unnest(p_streams) AS s ORDER BY k LOOP
        PERFORM pg_advisory_xact_lock(__LOCK_CLASS__, v_key);
    END LOOP;
    PERFORM __SCHEMA__.lock_keys(p_exclusive, p_keys, p_bulk);
    IF p_table THEN
        LOCK TABLE __SCHEMA__.events IN SHARE ROW EXCLUSIVE MODE;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM __SCHEMA__.events WHERE id = ANY(p_ids)) THEN
        IF p_all THEN
            SELECT min(e.position) INTO v_first FROM __SCHEMA__.events AS e
                WHERE e.position > p_after;
        ELSE
            FOR v_item IN 1 .. p_items LOOP
                v_names := ARRAY(SELECT n.name FROM unnest(p_item_names, p_name_item) AS n(name, i)
                                 WHERE n.i = v_item);
                v_tags := ARRAY(SELECT t.tag FROM unnest(p_item_tags, p_tag_item) AS t(tag, i)
                                WHERE t.i = v_item ORDER BY t.tag);
                v_found := NULL;
                IF cardinality(v_tags) > 0 THEN
                    SELECT t.position INTO v_found FROM __SCHEMA__.event_tags AS t
                        WHERE t.tag = v_tags[1] AND t.position > p_after
                          AND (cardinality(v_names) = 0 OR t.name = ANY(v_names))
                          AND (cardinality(v_tags) = 1 OR EXISTS (
                                SELECT 1 FROM __SCHEMA__.events AS e
                                WHERE e.position = t.position AND e.tags @> v_tags))
                        ORDER BY t.position LIMIT 1;
                ELSE
                    SELECT min(f.position) INTO v_found
                        FROM unnest(v_names) AS n(name) CROSS JOIN LATERAL
                             (SELECT e.position FROM __SCHEMA__.events AS e
                              WHERE e.name = n.name AND e.position > p_after
                              ORDER BY e.position LIMIT 1) AS f;
                END IF;
                IF v_found IS NOT NULL AND (v_first IS NULL OR v_found < v_first) THEN
                    v_first := v_found;
                END IF;
            END LOOP;
        END IF;
        IF v_first IS NOT NULL THEN
            RAISE EXCEPTION 'append condition failed'
                USING ERRCODE = 'CD412', DETAIL = v_first::text;
        END IF;
    END IF;
    -- The keys are held already: append_groups need not go over them again.
    RETURN QUERY SELECT * FROM __SCHEMA__.append_groups(p_streams, p_is_uuid, p_expected,
        p_group, p_counts, p_ids, p_names, p_data, p_metadata, p_recorded_at, p_event_part,
        p_event_ord, p_notify, p_tags, p_tag_event, NULL, false);
END
$$;
