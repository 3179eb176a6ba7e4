"""The SQLite engine: one durable file, shared by threads and processes.

WAL journal, one writer at a time (``BEGIN IMMEDIATE``) and a busy timeout,
so several processes may append to one file. Positions are the events' rowids,
which follow commit order because writers are serialized. Each thread gets its
own connection (sqlite3 connections are not shareable).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import urllib.parse
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from conduit.backends import sqlite_rows
from conduit.backends import sqlite_sql as sql
from conduit.backends.base import EventRewrite
from conduit.backends.common import StreamIds, from_micros, to_micros
from conduit.backends.sqlite_appends import SQLiteAppends, begin_immediate
from conduit.backends.sqlite_keys import SQLiteSubjectKeys
from conduit.backends.sqlite_lifecycle import SQLiteLifecycle
from conduit.backends.sqlite_sql import (
    CAUSATION,
    CORRELATION,
    MIGRATIONS,
    SCHEMA_VERSION,
    SYNCHRONOUS_MODES,
)
from conduit.backends.sqlite_subscriptions import SQLiteSubscriptions
from conduit.dcb import Query
from conduit.errors import (
    BackendError,
    ConfigurationError,
    SchemaError,
)
from conduit.events import Event, Snapshot, StreamInfo, StreamKey
from conduit.subscriptions.partitions import Partition, partition_of

__all__ = ["CAUSATION", "CORRELATION", "SCHEMA_VERSION", "SYNCHRONOUS_MODES", "SQLiteBackend"]

_MIGRATIONS = MIGRATIONS  # the migrations' old name, which tests build old files with


class _Connection(sqlite3.Connection):
    """A connection that can be referenced weakly: the engine keeps a weak set of the
    per-thread connections, so that one dies (and closes) with its thread."""


class SQLiteBackend(SQLiteAppends, SQLiteLifecycle, SQLiteSubscriptions, SQLiteSubjectKeys):
    """Events in one SQLite file.

    Opening reads the file's schema version and writes nothing when the schema
    is current, so a file another process is writing, or one opened
    ``read_only``, opens at once. A missing file is created with its schema
    (unless ``create=False``); an older schema is migrated (unless
    ``read_only``, which raises :class:`~conduit.errors.SchemaError` instead).

    Args:
        path: the database file.
        synchronous: ``full`` (the default: a committed event survives a power
            loss), or ``normal`` (faster; in WAL mode the last transactions may be
            lost on power loss, though never on a process crash).
        busy_timeout: seconds to wait for another process's write to finish.
        create: create the file when it does not exist; ``False`` raises
            :class:`~conduit.errors.ConfigurationError` instead (a mistyped path
            then fails rather than making an empty store).
        read_only: open the file for reading only (``mode=ro``): every write
            raises :class:`~conduit.errors.BackendError`.
    """

    scheme = "sqlite"
    partitioned_reads = True
    """``read_all`` and ``count_after`` take ``partition=`` (filtered in SQL)."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "full",
        busy_timeout: float = 30.0,
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        if synchronous not in SYNCHRONOUS_MODES:
            raise ConfigurationError(
                f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, not {synchronous!r}"
            )
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float):
            raise ConfigurationError("busy_timeout is a number of seconds")
        self.path = path
        self.read_only = bool(read_only)
        self._synchronous = synchronous
        self._busy_timeout = float(busy_timeout)
        self._local = threading.local()
        # Weak: a thread's connection lives in its thread-local storage and is
        # closed when the thread ends; close() closes whatever is still open.
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False
        exists = os.path.exists(path)
        if not exists and (read_only or not create):
            raise ConfigurationError(
                f"no SQLite store at {path!r}: create it with `conduit init sqlite:///{path}` "
                "or EventStore(url).setup()"
            )
        found = self._schema_version() if exists else 0
        if found == SCHEMA_VERSION:
            return
        if found > SCHEMA_VERSION or read_only:
            self._check_version(found)
        self.setup()

    # -- connections -------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise BackendError("this store is closed")
        try:
            if self.read_only:
                target = f"file:{urllib.parse.quote(os.path.abspath(self.path))}?mode=ro"
            else:
                target = self.path
            made = sqlite3.connect(
                target,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                factory=_Connection,
                uri=self.read_only,
            )
            assert isinstance(made, _Connection)
            if not self.read_only:
                made.execute("PRAGMA journal_mode=WAL")
            made.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
            made.create_function(sql.PARTITION_FUNCTION, 2, partition_of, deterministic=True)
        except sqlite3.Error as exc:
            raise BackendError(f"cannot open SQLite file {self.path!r}: {exc}") from exc
        with self._lock:
            if self._closed:
                made.close()
                raise BackendError("this store is closed")
            self._connections.add(made)
        self._local.conn = made
        return made

    def open_connections(self) -> int:
        """How many of this engine's connections are open (one per thread that used it)."""
        with self._lock:
            return len(self._connections)

    def _schema_version(self) -> int:
        rows = self._query("PRAGMA user_version")
        return int(rows[0][0])

    def _check_version(self, found: int) -> None:
        if found > SCHEMA_VERSION:
            raise SchemaError(
                f"{self.path} has schema version {found}, newer than this release of "
                f"Conduit knows ({SCHEMA_VERSION}); upgrade Conduit"
            )
        if found < SCHEMA_VERSION:
            raise SchemaError(
                f"{self.path} has schema version {found}, older than this release's "
                f"{SCHEMA_VERSION}; it is opened read-only: migrate it with "
                f"`conduit init sqlite:///{self.path}` first"
            )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction, committed when the block ends and rolled
        back when it raises; SQLite's own errors raise as BackendError."""
        conn = self._connection()
        try:
            begin_immediate(conn, self._busy_timeout)
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
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
        if self.read_only:
            self._check_version(self._schema_version())
            return
        with self._write() as conn:
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            if found > SCHEMA_VERSION:
                self._check_version(found)
            for version in range(found + 1, SCHEMA_VERSION + 1):
                for statement in sql.migration_statements(version):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={version}")

    def read_query(
        self, query: Query, *, after: int, limit: int, backwards: bool = False
    ) -> list[Event]:
        statement = sql.read_query(query, after=after, limit=limit, backwards=backwards)
        return sqlite_rows.events(self._query(*statement))

    def read_stream(
        self,
        stream: StreamKey,
        *,
        start: int | None,
        backwards: bool,
        since: datetime | None,
        limit: int,
    ) -> list[Event]:
        statement = sql.read_stream(
            stream, start=start, backwards=backwards, since=since, limit=limit
        )
        return sqlite_rows.events(self._query(*statement))

    def read_all(
        self,
        *,
        after: int,
        names: Sequence[str] | None,
        limit: int,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        wait: bool = True,
        before: int | None = None,
        backwards: bool = False,
        partition: Partition | None = None,
    ) -> list[Event]:
        statement = sql.read_all(
            after=after,
            names=names,
            limit=limit,
            correlation_id=correlation_id,
            causation_id=causation_id,
            before=before,
            backwards=backwards,
            partition=partition,
        )
        return sqlite_rows.events(self._query(*statement))

    def stream_version(self, stream: StreamKey) -> int:
        rows = self._query(sql.STREAM_VERSION, (stream.text,))
        return int(rows[0][0]) if rows else 0

    def streams(self, *, after: str | None, prefix: str | None, limit: int) -> list[StreamInfo]:
        rows = self._query(*sql.streams(after=after, prefix=prefix, limit=limit))
        ids = StreamIds()
        return [StreamInfo(ids(text, bool(is_uuid)), version) for text, is_uuid, version in rows]

    def stream_totals(self) -> tuple[int, int]:
        rows = self._query(sql.STREAM_TOTALS)
        return int(rows[0][0]), int(rows[0][1])

    def head_position(self, *, wait: bool = True) -> int:
        rows = self._query(sql.HEAD_POSITION)
        return int(rows[0][0] or 0)

    def count_after(
        self,
        position: int,
        *,
        names: Sequence[str] | None,
        limit: int | None = None,
        wait: bool = True,
        partition: Partition | None = None,
    ) -> int:
        rows = self._query(
            *sql.count_after(position, names=names, limit=limit, partition=partition)
        )
        return int(rows[0][0])

    def first_position_since(self, since: datetime) -> int | None:
        rows = self._query(sql.FIRST_POSITION_SINCE, (to_micros(since),))
        return None if rows[0][0] is None else int(rows[0][0])

    def read_event(self, event_id: uuid.UUID) -> Event | None:
        found = sqlite_rows.events(self._query(sql.READ_EVENT, (str(event_id),)))
        return found[0] if found else None

    def save_snapshot(self, stream: StreamKey, snapshot: Snapshot) -> None:
        with self._write() as conn:
            conn.execute(
                sql.SAVE_SNAPSHOT,
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
        rows = self._query(sql.LOAD_SNAPSHOT, (stream.text, class_name))
        if not rows:
            return None
        version, snapshot_version, data, taken_at = rows[0]
        return Snapshot(class_name, version, snapshot_version, data, from_micros(taken_at))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections = list(self._connections)
            self._connections = weakref.WeakSet()
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def rewrite_events(self, changes: Sequence[EventRewrite]) -> int:
        rows = [(c.name, c.data, c.metadata, str(c.id)) for c in changes]
        with self._write() as conn:
            cursor = conn.executemany(sql.REWRITE_EVENT, rows)
            count = max(cursor.rowcount, 0)
            conn.executemany(sql.REWRITE_TAG_NAMES, [(c.name, str(c.id)) for c in changes])
            return count
