-- Conduit schema version 5: indexes for the reads that filter the global log.
--
-- read_all(names=[...]) of a rare name walked the position index and threw
-- away nearly every row; the browser's correlation and causation links had no
-- index at all (they searched a window of the log), and replaying a read
-- model since a time scanned every event. On a large store, building these
-- indexes takes a while: `conduit init` (or EventStore.setup()) runs this
-- migration in one transaction, which blocks appends meanwhile.

CREATE INDEX IF NOT EXISTS events_name_position ON __SCHEMA__.events (name, position);

-- The metadata's correlation_id and causation_id, as text (json ->> gives a
-- number's text too). Partial: most events carry neither.
CREATE INDEX IF NOT EXISTS events_correlation ON __SCHEMA__.events
    ((metadata ->> 'correlation_id'), position)
    WHERE (metadata ->> 'correlation_id') IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_causation ON __SCHEMA__.events
    ((metadata ->> 'causation_id'), position)
    WHERE (metadata ->> 'causation_id') IS NOT NULL;

CREATE INDEX IF NOT EXISTS events_recorded_at ON __SCHEMA__.events (recorded_at) INCLUDE (position);
