"""The SQLite engine: one durable file, shared by threads and processes.

WAL journal, one writer at a time (``BEGIN IMMEDIATE``) and a busy timeout,
so several processes may append to one file. Positions are the events' rowids,
which follow commit order because writers are serialized. Each thread gets its
own connection (sqlite3 connections are not shareable).
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from conduit import codec
from conduit.backends.base import EventRewrite
from conduit.backends.common import StreamIds, from_micros, resolve_retry, to_micros
from conduit.backends.sqlite_subscriptions import SCHEMA_V2, SQLiteSubscriptions
from conduit.errors import BackendError, SchemaError, WrongExpectedVersion
from conduit.events import (
    Event,
    NewEvent,
    Snapshot,
    StreamInfo,
    StreamKey,
    make_event,
    uuid_from_text,
)

__all__ = ["SCHEMA_VERSION", "SYNCHRONOUS_MODES", "SQLiteBackend"]

SCHEMA_VERSION = 3
SYNCHRONOUS_MODES = ("full", "normal", "extra")

_SCHEMA = """
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

_SCHEMA_V3 = """
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

_MIGRATIONS = {1: _SCHEMA, 2: SCHEMA_V2, 3: _SCHEMA_V3}

_COLUMNS = "id, stream_id, stream_is_uuid, name, data, metadata, version, position, recorded_at"
_INSERT = (
    "INSERT INTO events (position, id, stream_id, stream_is_uuid, version, name, data, metadata,"
    " recorded_at) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_STREAM = (
    "INSERT INTO streams (stream_id, is_uuid, version, recorded_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version,"
    " recorded_at = excluded.recorded_at"
)
# One statement instead of a SELECT and an upsert: the stream's row moves on by
# the batch's size first and says where it was (inside BEGIN IMMEDIATE, so
# nobody sees it before the version check, which rolls it back if it fails).
_ADVANCE_STREAM = (
    "INSERT INTO streams (stream_id, is_uuid, version, recorded_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (stream_id) DO UPDATE SET version = version + excluded.version,"
    " recorded_at = max(recorded_at, excluded.recorded_at)"
    " RETURNING version, is_uuid, recorded_at"
)
RETURNING = sqlite3.sqlite_version_info >= (3, 35)
"""SQLite 3.35 and newer know ``RETURNING``: an append saves a statement."""


class SQLiteBackend(SQLiteSubscriptions):
    """Events in one SQLite file.

    Args:
        path: the database file; created with its schema on first use.
        synchronous: ``full`` (the default: a committed event survives a power
            loss), or ``normal`` (faster; in WAL mode the last transactions may be
            lost on power loss, though never on a process crash).
        busy_timeout: seconds to wait for another process's write to finish.
    """

    scheme = "sqlite"

    def __init__(self, path: str, *, synchronous: str = "full", busy_timeout: float = 30.0) -> None:
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
        self.path = path
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self.setup()

    # -- connections -------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise BackendError("this store is closed")
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
        except sqlite3.Error as exc:
            raise BackendError(f"cannot open SQLite file {self.path!r}: {exc}") from exc
        with self._lock:
            self._connections.append(conn)
        self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        try:
            _begin_immediate(conn, self._busy_timeout)
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise BackendError(f"SQLite failed: {exc}") from exc

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise BackendError(f"SQLite failed: {exc}") from exc

    # -- the protocol ------------------------------------------------------

    def setup(self) -> None:
        with self._write() as conn:
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            if found > SCHEMA_VERSION:
                raise SchemaError(
                    f"{self.path} has schema version {found}, newer than this release of "
                    f"Conduit knows ({SCHEMA_VERSION}); upgrade Conduit"
                )
            for version in range(found + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={version}")

    def append(
        self, stream: StreamKey, events: Sequence[NewEvent], expected_version: int | None
    ) -> list[Event]:
        conn = self._connection()
        count = len(events)
        try:
            _begin_immediate(conn, self._busy_timeout)
            try:
                if RETURNING:
                    version, is_uuid, now = conn.execute(
                        _ADVANCE_STREAM,
                        (stream.text, stream.is_uuid, count, time.time_ns() // 1000),
                    ).fetchone()
                    version -= count
                else:
                    version, is_uuid, now = self._stream_row(conn, stream)
                if expected_version is not None and expected_version != version:
                    conn.execute("ROLLBACK")
                    return self._conflict(conn, stream, events, expected_version, version)
                times = [
                    now if new.recorded_at is None else to_micros(new.recorded_at) for new in events
                ]
                rows = [
                    (
                        str(new.id),
                        stream.text,
                        is_uuid,
                        version + i,
                        new.name,
                        new.data,
                        new.metadata,
                        times[i - 1],
                    )
                    for i, new in enumerate(events, 1)
                ]
                try:
                    if count == 1:
                        last_position: int = conn.execute(_INSERT, rows[0]).lastrowid  # type: ignore[assignment]
                    else:
                        conn.executemany(_INSERT, rows)
                        last_position = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
                except sqlite3.IntegrityError:
                    conn.execute("ROLLBACK")
                    retried = self._retried(conn, stream, events)
                    if retried is not None:
                        return retried
                    raise
                if not RETURNING:
                    conn.execute(_UPSERT_STREAM, (stream.text, is_uuid, version + count, times[-1]))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise BackendError(f"SQLite failed: {exc}") from exc
        first_position = last_position - count
        stream_id = uuid_from_text(stream.text) if is_uuid else stream.text
        decode = codec.decode
        return [
            make_event(
                new.id,
                stream_id,
                new.name,
                decode(new.data),
                {} if new.metadata == "{}" else decode(new.metadata),
                version + i,
                first_position + i,
                from_micros(times[i - 1]),
            )
            for i, new in enumerate(events, 1)
        ]

    def _stream_row(self, conn: sqlite3.Connection, stream: StreamKey) -> tuple[int, bool, int]:
        """The stream's version, id type and last time (SQLite before 3.35)."""
        row = conn.execute(
            "SELECT version, is_uuid, recorded_at FROM streams WHERE stream_id = ?",
            (stream.text,),
        ).fetchone()
        version, is_uuid, last = row if row else (0, stream.is_uuid, 0)
        return version, is_uuid, max(time.time_ns() // 1000, last)

    def _conflict(
        self,
        conn: sqlite3.Connection,
        stream: StreamKey,
        events: Sequence[NewEvent],
        expected_version: int,
        version: int,
    ) -> list[Event]:
        """A version that is not the expected one: a retry of a recorded batch, or an error."""
        retried = self._retried(conn, stream, events)
        if retried is not None:
            return retried
        raise WrongExpectedVersion(stream.stream_id(), expected_version, version)

    def _retried(
        self, conn: sqlite3.Connection, stream: StreamKey, events: Sequence[NewEvent]
    ) -> list[Event] | None:
        marks = ", ".join("?" * len(events))
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM events WHERE id IN ({marks})",
            [str(new.id) for new in events],
        ).fetchall()
        return resolve_retry(stream, events, _events(rows))

    def read_stream(
        self,
        stream: StreamKey,
        *,
        start: int | None,
        backwards: bool,
        since: datetime | None,
        limit: int,
    ) -> list[Event]:
        where = ["stream_id = ?"]
        params: list[Any] = [stream.text]
        if start is not None:
            where.append("version <= ?" if backwards else "version >= ?")
            params.append(start)
        if since is not None:
            where.append("recorded_at >= ?")
            params.append(to_micros(since))
        order = "DESC" if backwards else "ASC"
        params.append(limit)
        sql = (
            f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)}"
            f" ORDER BY version {order} LIMIT ?"
        )
        return _events(self._query(sql, params))

    def read_all(self, *, after: int, names: Sequence[str] | None, limit: int) -> list[Event]:
        if names is None:
            sql = f"SELECT {_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
            return _events(self._query(sql, (after, limit)))
        marks = ", ".join("?" * len(names))
        sql = (
            f"SELECT {_COLUMNS} FROM events WHERE position > ? AND name IN ({marks})"
            " ORDER BY position LIMIT ?"
        )
        return _events(self._query(sql, (after, *names, limit)))

    def stream_version(self, stream: StreamKey) -> int:
        rows = self._query("SELECT version FROM streams WHERE stream_id = ?", (stream.text,))
        return int(rows[0][0]) if rows else 0

    def streams(self, *, after: str | None, prefix: str | None, limit: int) -> list[StreamInfo]:
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
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        params.append(limit)
        rows = self._query(
            f"SELECT stream_id, is_uuid, version FROM streams {clause} ORDER BY stream_id LIMIT ?",
            params,
        )
        ids = StreamIds()
        return [StreamInfo(ids(text, bool(is_uuid)), version) for text, is_uuid, version in rows]

    def head_position(self) -> int:
        rows = self._query("SELECT max(position) FROM events")
        return int(rows[0][0] or 0)

    def count_after(self, position: int, *, names: Sequence[str] | None) -> int:
        if names is None:
            rows = self._query("SELECT count(*) FROM events WHERE position > ?", (position,))
        else:
            marks = ", ".join("?" * len(names))
            rows = self._query(
                f"SELECT count(*) FROM events WHERE position > ? AND name IN ({marks})",
                (position, *names),
            )
        return int(rows[0][0])

    def first_position_since(self, since: datetime) -> int | None:
        rows = self._query(
            "SELECT min(position) FROM events WHERE recorded_at >= ?", (to_micros(since),)
        )
        return None if rows[0][0] is None else int(rows[0][0])

    def read_event(self, event_id: uuid.UUID) -> Event | None:
        found = _events(
            self._query(f"SELECT {_COLUMNS} FROM events WHERE id = ?", (str(event_id),))
        )
        return found[0] if found else None

    def save_snapshot(self, stream: StreamKey, snapshot: Snapshot) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO snapshots (stream_id, class_name, version, snapshot_version, data,"
                " taken_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (stream_id, class_name) DO UPDATE SET version = excluded.version,"
                " snapshot_version = excluded.snapshot_version, data = excluded.data,"
                " taken_at = excluded.taken_at WHERE excluded.version >= snapshots.version",
                (
                    stream.text,
                    snapshot.class_name,
                    snapshot.version,
                    snapshot.snapshot_version,
                    snapshot.data,
                    to_micros(datetime.now(UTC)),
                ),
            )

    def load_snapshot(self, stream: StreamKey, class_name: str) -> Snapshot | None:
        rows = self._query(
            "SELECT version, snapshot_version, data, taken_at FROM snapshots"
            " WHERE stream_id = ? AND class_name = ?",
            (stream.text, class_name),
        )
        if not rows:
            return None
        version, snapshot_version, data, taken_at = rows[0]
        return Snapshot(class_name, version, snapshot_version, data, from_micros(taken_at))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def rewrite_events(self, changes: Sequence[EventRewrite]) -> int:
        rows = [(c.name, c.data, c.metadata, str(c.id)) for c in changes]
        with self._write() as conn:
            cursor = conn.executemany(
                "UPDATE events SET name = ?, data = ?, metadata = ? WHERE id = ?", rows
            )
            return max(cursor.rowcount, 0)


def _begin_immediate(conn: sqlite3.Connection, busy_timeout: float) -> None:
    # sqlite3's busy handler covers BEGIN IMMEDIATE, but a WAL file being
    # recovered by another process can still answer "locked": retry, bounded.
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _events(rows: list[Any]) -> list[Event]:
    ids = StreamIds()
    decode = codec.decode
    return [
        make_event(
            uuid_from_text(event_id),
            ids(stream_text, is_uuid),
            name,
            decode(data),
            {} if metadata == "{}" else decode(metadata),
            version,
            position,
            from_micros(recorded_at),
        )
        for (
            event_id,
            stream_text,
            is_uuid,
            name,
            data,
            metadata,
            version,
            position,
            recorded_at,
        ) in rows
    ]
