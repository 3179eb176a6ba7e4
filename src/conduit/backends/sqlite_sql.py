"""The SQLite engine's pure part: schema, migrations and statements.

Nothing here opens a file or runs a statement: :mod:`conduit.backends.sqlite`
holds the connections and executes what these builders return, so that the
text of every statement can be read (and tested) apart from the I/O. Rows to
and from events: :mod:`conduit.backends.sqlite_rows`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from conduit.backends.common import (
    to_micros,
)
from conduit.backends.sqlite_keys import SCHEMA_V7
from conduit.backends.sqlite_subscriptions import SCHEMA_V2, SCHEMA_V8
from conduit.dcb import Query
from conduit.events import StreamKey
from conduit.subscriptions.partitions import Partition

__all__ = [
    "ADVANCE_STREAM",
    "CAUSATION",
    "COLUMNS",
    "CORRELATION",
    "INSERT",
    "INSERT_TAG",
    "MERGED_NAMES",
    "MIGRATIONS",
    "PARTITION_FUNCTION",
    "SCHEMA_VERSION",
    "SYNCHRONOUS_MODES",
    "UPSERT_STREAM",
    "count_after",
    "partition_clause",
    "query_positions",
    "read_all",
    "read_query",
    "read_stream",
    "streams",
]

Statement = tuple[str, list[Any]]
"""A statement's text and its parameters."""

SCHEMA_VERSION = 8
SYNCHRONOUS_MODES = ("full", "normal", "extra")

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY,
    id             TEXT    NOT NULL UNIQUE,
    stream_id      TEXT    NOT NULL,
    stream_is_uuid INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    name           TEXT    NOT NULL,
    data           TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    recorded_at    INTEGER NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE TABLE IF NOT EXISTS streams (
    stream_id   TEXT    PRIMARY KEY,
    is_uuid     INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL
) WITHOUT ROWID;
"""

SCHEMA_V3 = """
CREATE TABLE IF NOT EXISTS snapshots (
    stream_id        TEXT    NOT NULL,
    class_name       TEXT    NOT NULL,
    version          INTEGER NOT NULL,
    snapshot_version INTEGER NOT NULL,
    data             TEXT    NOT NULL,
    taken_at         INTEGER NOT NULL,
    PRIMARY KEY (stream_id, class_name)
) WITHOUT ROWID;
"""

CORRELATION = "CAST(json_extract(metadata, '$.correlation_id') AS TEXT)"
CAUSATION = "CAST(json_extract(metadata, '$.causation_id') AS TEXT)"
"""The metadata's correlation and causation ids as text, as the indexes hold them."""

# Version 4: positions are never reused, even once the last events are removed
# (AUTOINCREMENT: a plain INTEGER PRIMARY KEY hands out max(rowid) + 1 again),
# and indexes for the reads that filter the log (rare names, correlation and
# causation links, the first event since a time). SQLite cannot add
# AUTOINCREMENT to a table, so the events are copied into a new one: on a large
# file this migration takes a while, once.
SCHEMA_V4 = f"""
CREATE TABLE events_v4 (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT    NOT NULL UNIQUE,
    stream_id      TEXT    NOT NULL,
    stream_is_uuid INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    name           TEXT    NOT NULL,
    data           TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    recorded_at    INTEGER NOT NULL,
    UNIQUE (stream_id, version)
);
INSERT INTO events_v4 (position, id, stream_id, stream_is_uuid, version, name, data, metadata,
    recorded_at)
    SELECT position, id, stream_id, stream_is_uuid, version, name, data, metadata, recorded_at
    FROM events ORDER BY position;
DROP TABLE events;
ALTER TABLE events_v4 RENAME TO events;
CREATE INDEX events_name_position ON events (name, position);
CREATE INDEX events_correlation ON events ({CORRELATION}, position)
    WHERE {CORRELATION} IS NOT NULL;
CREATE INDEX events_causation ON events ({CAUSATION}, position)
    WHERE {CAUSATION} IS NOT NULL;
CREATE INDEX events_recorded_at ON events (recorded_at, position);
"""

# Version 5: tags (docs/dcb.md). Each event's tags as the JSON text of a
# sorted array, and one row per (tag, event) in event_tags, whose key serves
# the queries and append conditions by tag in position order.
SCHEMA_V5 = """
ALTER TABLE events ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
CREATE TABLE IF NOT EXISTS event_tags (
    tag      TEXT    NOT NULL,
    position INTEGER NOT NULL,
    name     TEXT    NOT NULL,
    PRIMARY KEY (tag, position)
) WITHOUT ROWID;
"""

TOMBSTONE = "conduit: stream deleted"
"""The message of the trigger that refuses an append to a hard-deleted stream."""

# Version 6: streams over the years (docs/lifecycle.md). What a store keeps
# about a stream beside its events, as columns of its row; two triggers leave
# the append path as it is: one refuses to move a hard-deleted stream's version
# (an append to a tombstone aborts), the other brings a soft-deleted stream
# back at its next append; a third removes a removed event's tags. A list of
# statements, not a script: the triggers' bodies hold semicolons.
SCHEMA_V6 = (
    "ALTER TABLE streams ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0",  # 1 soft, 2 hard
    "ALTER TABLE streams ADD COLUMN truncated_before INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE streams ADD COLUMN max_age INTEGER",  # microseconds
    "ALTER TABLE streams ADD COLUMN max_count INTEGER",
    "CREATE TRIGGER streams_tombstone BEFORE UPDATE OF version ON streams"
    " WHEN OLD.deleted = 2 AND NEW.version <> OLD.version"
    f" BEGIN SELECT RAISE(ABORT, '{TOMBSTONE}'); END",
    "CREATE TRIGGER streams_undelete AFTER UPDATE OF version ON streams"
    " WHEN OLD.deleted = 1 AND NEW.version > OLD.version"
    " BEGIN UPDATE streams SET deleted = 0 WHERE stream_id = NEW.stream_id; END",
    "CREATE TRIGGER events_removed AFTER DELETE ON events WHEN OLD.tags <> '[]'"
    " BEGIN DELETE FROM event_tags WHERE position = OLD.position"
    " AND tag IN (SELECT value FROM json_each(OLD.tags)); END",
)

MIGRATIONS: dict[int, str | tuple[str, ...]] = {
    1: SCHEMA_V1,
    2: SCHEMA_V2,
    3: SCHEMA_V3,
    4: SCHEMA_V4,
    5: SCHEMA_V5,
    6: SCHEMA_V6,
    7: SCHEMA_V7,  # subjects' keys (sqlite_keys.py)
    8: SCHEMA_V8,  # subscription states (sqlite_subscriptions.py)
}

COLUMNS = (
    "id, stream_id, stream_is_uuid, name, data, metadata, version, position, recorded_at, tags"
)
INSERT = (
    "INSERT INTO events (position, id, stream_id, stream_is_uuid, version, name, data, metadata,"
    " recorded_at, tags) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_TAG = "INSERT INTO event_tags (tag, position, name) VALUES (?, ?, ?)"
UPSERT_STREAM = (
    "INSERT INTO streams (stream_id, is_uuid, version, recorded_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version,"
    " recorded_at = excluded.recorded_at"
)
# One statement instead of a SELECT and an upsert: the stream's row moves on by
# the batch's size first and says where it was (inside BEGIN IMMEDIATE, so
# nobody sees it before the version check, which rolls it back if it fails).
ADVANCE_STREAM = (
    "INSERT INTO streams (stream_id, is_uuid, version, recorded_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (stream_id) DO UPDATE SET version = version + excluded.version,"
    " recorded_at = max(recorded_at, excluded.recorded_at)"
    " RETURNING version, is_uuid, recorded_at"
)
MERGED_NAMES = 64
"""Up to this many names, a filtered log read merges one index range per name."""


STREAM_VERSION = "SELECT version FROM streams WHERE stream_id = ?"
STREAM_ROW = "SELECT version, is_uuid, recorded_at FROM streams WHERE stream_id = ?"
STREAM_TOTALS = (
    "SELECT count(*), coalesce(sum(version), 0) FROM streams WHERE deleted = 0 AND version > 0"
)
HEAD_POSITION = "SELECT max(position) FROM events"
FIRST_POSITION_SINCE = "SELECT min(position) FROM events WHERE recorded_at >= ?"
READ_EVENT = f"SELECT {COLUMNS} FROM events WHERE id = ?"
REWRITE_EVENT = "UPDATE events SET name = ?, data = ?, metadata = ? WHERE id = ?"
REWRITE_TAG_NAMES = (
    "UPDATE event_tags SET name = ? WHERE position = (SELECT position FROM events WHERE id = ?)"
)
SAVE_SNAPSHOT = (
    "INSERT INTO snapshots (stream_id, class_name, version, snapshot_version, data,"
    " taken_at) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (stream_id, class_name) DO UPDATE SET version = excluded.version,"
    " snapshot_version = excluded.snapshot_version, data = excluded.data,"
    " taken_at = excluded.taken_at WHERE excluded.version >= snapshots.version"
)
LOAD_SNAPSHOT = (
    "SELECT version, snapshot_version, data, taken_at FROM snapshots"
    " WHERE stream_id = ? AND class_name = ?"
)


def migration_statements(version: int) -> list[str]:
    """The statements that take a file from ``version - 1`` to ``version``."""
    migration = MIGRATIONS[version]
    statements = migration.split(";") if isinstance(migration, str) else migration
    return [statement for statement in statements if statement.strip()]


def events_by_id(count: int) -> str:
    """A read of the events whose ids are the ``count`` parameters."""
    return f"SELECT {COLUMNS} FROM events WHERE id IN ({', '.join('?' * count)})"


def read_stream(
    stream: StreamKey,
    *,
    start: int | None,
    backwards: bool,
    since: datetime | None,
    limit: int,
) -> Statement:
    """A page of one stream, in version order (or backwards from ``start``)."""
    where = ["stream_id = ?"]
    params: list[Any] = [stream.text]
    if start is not None:
        where.append("version <= ?" if backwards else "version >= ?")
        params.append(start)
    if since is not None:
        where.append("recorded_at >= ?")
        params.append(to_micros(since))
    order = "DESC" if backwards else "ASC"
    params.extend((stream.text, now_micros(), stream.text, limit))
    sql = (
        f"SELECT {COLUMNS} FROM events WHERE {' AND '.join(where)}{VISIBLE}"
        f" ORDER BY version {order} LIMIT ?"
    )
    return sql, params


VISIBLE = (
    " AND version >= (SELECT max(truncated_before, CASE WHEN max_count IS NULL THEN 0"
    " ELSE version - max_count + 1 END) FROM streams WHERE stream_id = ?)"
    " AND recorded_at >= (SELECT CASE WHEN max_age IS NULL THEN -9223372036854775807"
    " ELSE ? - max_age END FROM streams WHERE stream_id = ?)"
)
"""What a stream read hides, as its row says: truncated, soft-deleted or beyond its
limits. Parameters: the stream id, now (microseconds), the stream id."""


def now_micros() -> int:
    """The time now, in microseconds since the epoch."""
    return time.time_ns() // 1000


PARTITION_FUNCTION = "conduit_partition"
"""The SQL function (registered on each connection) that gives a stream id's partition:
:func:`~conduit.subscriptions.partitions.partition_of`."""


def partition_clause(partition: Partition) -> str:
    """The condition that keeps one partition's streams."""
    # Both numbers are validated integers: written into the SQL, no parameters to order.
    return f"{PARTITION_FUNCTION}(stream_id, {int(partition.count)}) = {int(partition.index)}"


def read_all(
    *,
    after: int,
    names: Sequence[str] | None,
    limit: int,
    correlation_id: str | None,
    causation_id: str | None,
    before: int | None = None,
    backwards: bool = False,
    partition: Partition | None = None,
) -> Statement:
    """A page of the global log after ``after`` (and below ``before``), filtered;
    ``backwards``: the page nearest ``before`` (or the end), newest first."""
    where = ["position > ?"]
    params: list[Any] = [after]
    if before is not None:
        where.append("position < ?")
        params.append(before)
    if partition is not None:
        where.append(partition_clause(partition))
    if correlation_id is not None:
        where.append(f"{CORRELATION} = ?")
        params.append(correlation_id)
    if causation_id is not None:
        where.append(f"{CAUSATION} = ?")
        params.append(causation_id)
    order = " DESC" if backwards else ""
    clause = " AND ".join(where)
    if names is not None and len(names) > MERGED_NAMES:
        clause += f" AND name IN ({', '.join('?' * len(names))})"
        params.extend(names)
        names = None
    if names is None:
        sql = f"SELECT {COLUMNS} FROM events WHERE {clause} ORDER BY position{order} LIMIT ?"
        return sql, [*params, limit]
    # One index range per name, each in position order and cut at the limit,
    # then merged: `name IN (...)` would sort every match after `after`
    # (millions, for common names) to return one page.
    branch = (
        f"SELECT * FROM (SELECT {COLUMNS} FROM events WHERE name = ? AND {clause}"
        f" ORDER BY position{order} LIMIT ?)"
    )
    sql = " UNION ALL ".join([branch] * len(names)) + f" ORDER BY position{order} LIMIT ?"
    values: list[Any] = []
    for name in names:
        values.extend((name, *params, limit))
    values.append(limit)
    return sql, values


def streams(*, after: str | None, prefix: str | None, limit: int) -> Statement:
    """A page of the streams, in id order."""
    where: list[str] = []
    params: list[Any] = []
    if after is not None:
        where.append("stream_id > ?")
        params.append(after)
    if prefix is not None:
        # Range on the primary key rather than LIKE, which is case-insensitive.
        where.append("stream_id >= ?")
        params.append(prefix)
        where.append("substr(stream_id, 1, ?) = ?")
        params.extend((len(prefix), prefix))
    where.append("deleted = 0 AND version > 0")  # deleted ones are tombstones()
    clause = f"WHERE {' AND '.join(where)}"
    params.append(limit)
    sql = f"SELECT stream_id, is_uuid, version FROM streams {clause} ORDER BY stream_id LIMIT ?"
    return sql, params


def count_after(
    position: int,
    *,
    names: Sequence[str] | None,
    limit: int | None,
    partition: Partition | None = None,
) -> Statement:
    """A count of the events after ``position`` (of ``names``, of ``partition``),
    stopping at ``limit``."""
    where = "position > ?"
    params: list[Any] = [position]
    if partition is not None:
        where += f" AND {partition_clause(partition)}"
    if names is not None:
        where += f" AND name IN ({', '.join('?' * len(names))})"
        params.extend(names)
    if limit is None:
        return f"SELECT count(*) FROM events WHERE {where}", params
    return f"SELECT count(*) FROM (SELECT 1 FROM events WHERE {where} LIMIT ?)", [*params, limit]


def query_positions(query: Query, *, after: int, limit: int, backwards: bool) -> Statement:
    """The positions of the first ``limit`` events ``query`` matches after ``after`` (or
    the last, ``backwards``): one index range per item, merged."""
    order = "DESC" if backwards else "ASC"
    if query.matches_all:
        sql = f"SELECT position FROM events WHERE position > ? ORDER BY position {order} LIMIT ?"
        return sql, [after, limit]
    branches: list[str] = []
    params: list[Any] = []
    for item in query.items:
        if item.tags:
            first, *others = sorted(item.tags)
            where = ["t.tag = ?", "t.position > ?"]
            values: list[Any] = [first, after]
            if item.names:
                where.append(f"t.name IN ({', '.join('?' * len(item.names))})")
                values.extend(sorted(item.names))
            for tag in others:
                where.append(
                    "EXISTS (SELECT 1 FROM event_tags AS x WHERE x.tag = ?"
                    " AND x.position = t.position)"
                )
                values.append(tag)
            branches.append(
                f"SELECT * FROM (SELECT t.position FROM event_tags AS t"
                f" WHERE {' AND '.join(where)} ORDER BY t.position {order} LIMIT ?)"
            )
            params.extend((*values, limit))
        else:
            for name in sorted(item.names):
                branches.append(
                    "SELECT * FROM (SELECT position FROM events WHERE name = ? AND position > ?"
                    f" ORDER BY position {order} LIMIT ?)"
                )
                params.extend((name, after, limit))
    sql = f"SELECT position FROM ({' UNION '.join(branches)}) ORDER BY position {order} LIMIT ?"
    return sql, [*params, limit]


def read_query(query: Query, *, after: int, limit: int, backwards: bool) -> Statement:
    """A page of the events ``query`` matches (see :func:`query_positions`)."""
    inner, params = query_positions(query, after=after, limit=limit, backwards=backwards)
    order = "DESC" if backwards else "ASC"
    sql = f"SELECT {COLUMNS} FROM events WHERE position IN ({inner}) ORDER BY position {order}"
    return sql, params


# -- streams over the years (docs/lifecycle.md) ---------------------------------

STREAM_STATE = "SELECT version, deleted FROM streams WHERE stream_id = ?"
MAKE_STREAM_ROW = (
    "INSERT INTO streams (stream_id, is_uuid, version, recorded_at) VALUES (?, ?, 0, 0)"
)
MARK_DELETED = "UPDATE streams SET deleted = ?, truncated_before = version + 1 WHERE stream_id = ?"
DROP_SNAPSHOTS = "DELETE FROM snapshots WHERE stream_id = ?"
REMOVE_STREAM = "DELETE FROM events WHERE stream_id = ?"
TRUNCATE = "UPDATE streams SET truncated_before = max(truncated_before, ?) WHERE stream_id = ?"
REMOVE_TRUNCATED = (
    "DELETE FROM events WHERE stream_id = ? AND version <"
    " (SELECT truncated_before FROM streams WHERE stream_id = ?)"
)
SET_LIMITS = "UPDATE streams SET max_age = ?, max_count = ? WHERE stream_id = ?"
METADATA = (
    "SELECT stream_id, is_uuid, version, deleted, truncated_before, max_age, max_count FROM streams"
)
STREAM_METADATA = f"{METADATA} WHERE stream_id = ?"
TOMBSTONES = f"{METADATA} WHERE deleted <> 0 AND stream_id > ? ORDER BY stream_id LIMIT ?"

# One batch of the scavenger: its window (the next `limit` positions), then what
# is expired in it. Parameters: after, limit / after, upto, now, retention,
# now - retention (microseconds).
SCAVENGE_WINDOW = (
    "SELECT max(position), count(*) FROM"
    " (SELECT position FROM events WHERE position > ? ORDER BY position LIMIT ?)"
)
SCAVENGE_EXPIRED = (
    "DELETE FROM events WHERE position IN (SELECT e.position FROM events AS e"
    " JOIN streams AS s ON s.stream_id = e.stream_id"
    " WHERE e.position > ? AND e.position <= ? AND ("
    " e.version < s.truncated_before"
    " OR (s.max_count IS NOT NULL AND e.version <= s.version - s.max_count)"
    " OR (s.max_age IS NOT NULL AND e.recorded_at < ? - s.max_age)"
    " OR (? IS NOT NULL AND substr(e.stream_id, 1, 8) <> 'conduit.' AND e.recorded_at < ?)))"
)
