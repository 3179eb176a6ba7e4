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
import time
import urllib.parse
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from conduit.backends import sqlite_sql as sql
from conduit.backends.base import AppendRequest, EventRewrite, GroupOutcome, StreamAppend
from conduit.backends.common import StreamIds, from_micros, resolve_retry, to_micros
from conduit.backends.sqlite_keys import SQLiteSubjectKeys
from conduit.backends.sqlite_lifecycle import SQLiteLifecycle, tombstoned
from conduit.backends.sqlite_sql import (
    CAUSATION,
    CORRELATION,
    MIGRATIONS,
    SCHEMA_VERSION,
    SYNCHRONOUS_MODES,
)
from conduit.backends.sqlite_subscriptions import SQLiteSubscriptions
from conduit.dcb import AppendCondition, Query
from conduit.errors import (
    AppendConditionFailed,
    BackendError,
    ConduitError,
    ConfigurationError,
    DuplicateEvent,
    SchemaError,
    StreamDeleted,
    WrongExpectedVersion,
)
from conduit.events import Event, NewEvent, Snapshot, StreamInfo, StreamKey
from conduit.subscriptions.partitions import Partition, partition_of

__all__ = ["CAUSATION", "CORRELATION", "SCHEMA_VERSION", "SYNCHRONOUS_MODES", "SQLiteBackend"]

_MIGRATIONS = MIGRATIONS  # the migrations' old name, which tests build old files with

RETURNING = sqlite3.sqlite_version_info >= (3, 35)
"""SQLite 3.35 and newer know ``RETURNING``: an append saves a statement."""


class _Refused(Exception):
    """An append of one stream refused inside a transaction: ``actual`` is the stream's
    version when the expected one differed, ``None`` when an event id is recorded."""

    def __init__(self, part: StreamAppend, actual: int | None) -> None:
        super().__init__(part.stream.text)
        self.part = part
        self.actual = actual


class _Deleted(Exception):
    """An append to a hard-deleted stream, refused inside a transaction."""

    def __init__(self, part: StreamAppend) -> None:
        super().__init__(part.stream.text)
        self.part = part


class _Connection(sqlite3.Connection):
    """A connection that can be referenced weakly: the engine keeps a weak set of the
    per-thread connections, so that one dies (and closes) with its thread."""


class SQLiteBackend(SQLiteLifecycle, SQLiteSubscriptions, SQLiteSubjectKeys):
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

    def append(
        self, stream: StreamKey, events: Sequence[NewEvent], expected_version: int | None
    ) -> list[Event]:
        conn = self._connection()
        try:
            _begin_immediate(conn, self._busy_timeout)
            try:
                recorded = self._write_part(
                    conn, StreamAppend(stream, tuple(events), expected_version)
                )
            except _Refused as refused:
                conn.execute("ROLLBACK")
                return self._resolve(conn, (refused.part,), refused)[0]
            except _Deleted:
                conn.execute("ROLLBACK")
                raise StreamDeleted(stream.stream_id()) from None
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise BackendError(f"SQLite failed: {exc}") from exc
        return recorded

    def append_group(self, requests: Sequence[AppendRequest]) -> list[GroupOutcome]:
        """Several appends in one transaction, each all or nothing (group commit).

        Each request runs inside a savepoint: one that is refused (a wrong
        expected version, a duplicate id) is rolled back alone and gets its
        error (or, for a retry, the recorded events) as its outcome; the others
        commit together, with one fsync.
        """
        if len(requests) == 1 and len(requests[0]) == 1:
            part = requests[0][0]
            try:
                return [[self.append(part.stream, part.events, part.expected)]]
            except ConduitError as exc:
                return [exc]
        conn = self._connection()
        outcomes: list[GroupOutcome] = []
        try:
            _begin_immediate(conn, self._busy_timeout)
            try:
                for request in requests:
                    conn.execute("SAVEPOINT conduit_append")
                    try:
                        recorded = [self._write_part(conn, part) for part in request]
                    except _Refused as refused:
                        conn.execute("ROLLBACK TO conduit_append")
                        conn.execute("RELEASE conduit_append")
                        try:
                            outcomes.append(self._resolve(conn, request, refused))
                        except ConduitError as exc:
                            outcomes.append(exc)
                        continue
                    except _Deleted as deleted:
                        conn.execute("ROLLBACK TO conduit_append")
                        conn.execute("RELEASE conduit_append")
                        outcomes.append(StreamDeleted(deleted.part.stream.stream_id()))
                        continue
                    conn.execute("RELEASE conduit_append")
                    outcomes.append(recorded)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise BackendError(f"SQLite failed: {exc}") from exc
        return outcomes

    def append_request(
        self, request: AppendRequest, condition: AppendCondition | None = None
    ) -> list[list[Event]]:
        """One append of one or several streams, all or nothing, under ``condition``:
        the check and the insert share one ``BEGIN IMMEDIATE`` transaction, so no
        writer comes between them."""
        if condition is None:
            outcome = self.append_group([request])[0]
            if isinstance(outcome, ConduitError):
                raise outcome
            return outcome
        conn = self._connection()
        try:
            _begin_immediate(conn, self._busy_timeout)
            try:
                retried = self._retried_request(conn, request)
                if retried is not None:
                    conn.execute("ROLLBACK")
                    return retried
                check, params = sql.query_positions(
                    condition.fail_if_events_match,
                    after=condition.after or 0,
                    limit=1,
                    backwards=False,
                )
                found = conn.execute(check, params).fetchone()
                if found is not None:
                    raise AppendConditionFailed(int(found[0]), condition.after)
                recorded = [self._write_part(conn, part) for part in request]
            except _Refused as refused:
                conn.execute("ROLLBACK")
                return self._resolve(conn, request, refused)
            except _Deleted as deleted:
                conn.execute("ROLLBACK")
                raise StreamDeleted(deleted.part.stream.stream_id()) from None
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise BackendError(f"SQLite failed: {exc}") from exc
        return recorded

    def _retried_request(
        self, conn: sqlite3.Connection, request: AppendRequest
    ) -> list[list[Event]] | None:
        """A request whose ids are recorded: its events (a retry), or DuplicateEvent."""
        found = [self._retried(conn, part.stream, part.events) for part in request]
        if all(part is None for part in found):
            return None
        if any(part is None for part in found):
            first = next(part for part in found if part is not None)[0]
            raise DuplicateEvent(first.id, first.stream_id, reason="while other streams are new")
        return [part for part in found if part is not None]

    def read_query(
        self, query: Query, *, after: int, limit: int, backwards: bool = False
    ) -> list[Event]:
        statement = sql.read_query(query, after=after, limit=limit, backwards=backwards)
        return sql.events(self._query(*statement))

    def _write_part(self, conn: sqlite3.Connection, part: StreamAppend) -> list[Event]:
        """Append one stream's events inside the open transaction.

        Raises:
            _Refused: the stream is at another version, or an id is recorded;
                the caller rolls back what this wrote, then resolves it.
        """
        stream, events = part.stream, part.events
        count = len(events)
        if RETURNING:
            try:
                version, is_uuid, now = conn.execute(
                    sql.ADVANCE_STREAM,
                    (stream.text, stream.is_uuid, count, time.time_ns() // 1000),
                ).fetchone()
            except sqlite3.IntegrityError as exc:
                if tombstoned(exc):
                    raise _Deleted(part) from None
                raise
            version -= count
        else:
            version, is_uuid, now = self._stream_row(conn, stream)
        if part.expected is not None and part.expected != version:
            raise _Refused(part, version)
        times = [now if new.recorded_at is None else to_micros(new.recorded_at) for new in events]
        rows = sql.event_rows(stream, is_uuid, version, events, times)
        try:
            if count == 1:
                last_position: int = conn.execute(sql.INSERT, rows[0]).lastrowid  # type: ignore[assignment]
            else:
                conn.executemany(sql.INSERT, rows)
                last_position = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        except sqlite3.IntegrityError:
            raise _Refused(part, None) from None
        if not RETURNING:
            try:
                conn.execute(sql.UPSERT_STREAM, (stream.text, is_uuid, version + count, times[-1]))
            except sqlite3.IntegrityError as exc:
                if tombstoned(exc):
                    raise _Deleted(part) from None
                raise
        first_position = last_position - count
        if any(new.tags for new in events):
            conn.executemany(sql.INSERT_TAG, sql.tag_rows(first_position, events))
        return sql.recorded(stream, is_uuid, version, first_position, events, times)

    def _resolve(
        self, conn: sqlite3.Connection, request: AppendRequest, refused: _Refused
    ) -> list[list[Event]]:
        """A refused append, rolled back: a retry of a request already recorded, or an
        error naming every stream at another version."""
        part = refused.part
        retried = self._retried_request(conn, request)
        if retried is not None:
            return retried
        if refused.actual is not None:
            assert part.expected is not None
            for other in request:
                state = conn.execute(sql.STREAM_STATE, (other.stream.text,)).fetchone()
                if state is not None and state[1] == 2:
                    raise StreamDeleted(other.stream.stream_id())
            conflicts: list[tuple[object, int, int]] = []
            for other in request:
                actual = refused.actual if other is part else self._version(conn, other.stream)
                if other.expected is not None and other.expected != actual:
                    conflicts.append((other.stream.stream_id(), other.expected, actual))
            raise WrongExpectedVersion.of(conflicts)
        raise BackendError(
            f"an append to stream {part.stream.text!r} broke a unique constraint, "
            "yet none of its event ids is recorded"
        )

    def _version(self, conn: sqlite3.Connection, stream: StreamKey) -> int:
        row = conn.execute(sql.STREAM_VERSION, (stream.text,)).fetchone()
        return int(row[0]) if row else 0

    def _stream_row(self, conn: sqlite3.Connection, stream: StreamKey) -> tuple[int, bool, int]:
        """The stream's version, id type and last time (SQLite before 3.35)."""
        row = conn.execute(sql.STREAM_ROW, (stream.text,)).fetchone()
        version, is_uuid, last = row if row else (0, stream.is_uuid, 0)
        return version, is_uuid, max(time.time_ns() // 1000, last)

    def _retried(
        self, conn: sqlite3.Connection, stream: StreamKey, events: Sequence[NewEvent]
    ) -> list[Event] | None:
        ids = [str(new.id) for new in events]
        rows: list[Any] = []
        # In chunks: a batch may hold more ids than a statement may have
        # parameters (32,766 by default since SQLite 3.32, 999 before).
        size = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        for start in range(0, len(ids), size):
            chunk = ids[start : start + size]
            rows += conn.execute(sql.events_by_id(len(chunk)), chunk).fetchall()
        return resolve_retry(stream, events, sql.events(rows))

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
        return sql.events(self._query(*statement))

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
        return sql.events(self._query(*statement))

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
        found = sql.events(self._query(sql.READ_EVENT, (str(event_id),)))
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
