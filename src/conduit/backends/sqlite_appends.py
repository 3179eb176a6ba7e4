"""Appends of the SQLite engine: one stream, several (a DCB request), or the
requests of a group commit in one transaction.

Every append runs in a ``BEGIN IMMEDIATE`` transaction (one writer at a time,
so positions follow commit order). A stream at another version than expected,
or an event id already recorded, is found inside the transaction and refused
there (:class:`_Refused`); the append is rolled back and then resolved: the
events of a retry that is already recorded, or the error to raise.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from conduit.backends import sqlite_rows
from conduit.backends import sqlite_sql as sql
from conduit.backends.base import AppendRequest, GroupOutcome, StreamAppend
from conduit.backends.common import resolve_retry, to_micros
from conduit.backends.sqlite_lifecycle import tombstoned
from conduit.dcb import AppendCondition
from conduit.errors import (
    AppendConditionFailed,
    BackendError,
    ConduitError,
    DuplicateEvent,
    StreamDeleted,
    WrongExpectedVersion,
)
from conduit.events import Event, NewEvent, StreamKey

__all__ = ["RETURNING", "SQLiteAppends", "begin_immediate"]

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


class SQLiteAppends:
    """Mixed into the SQLite engine, whose connection helpers it uses."""

    if TYPE_CHECKING:  # provided by SQLiteBackend

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _connection(self) -> sqlite3.Connection: ...

    def append(
        self, stream: StreamKey, events: Sequence[NewEvent], expected_version: int | None
    ) -> list[Event]:
        part = StreamAppend(stream, tuple(events), expected_version)
        try:
            with self._write() as conn:
                return self._write_part(conn, part)
        except _Refused as refused:
            return self._resolved((part,), refused)[0]
        except _Deleted:
            raise StreamDeleted(stream.stream_id()) from None

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
        outcomes: list[GroupOutcome] = []
        with self._write() as conn:
            for request in requests:
                conn.execute("SAVEPOINT conduit_append")
                try:
                    recorded = [self._write_part(conn, part) for part in request]
                except (_Refused, _Deleted) as refused:
                    conn.execute("ROLLBACK TO conduit_append")
                    conn.execute("RELEASE conduit_append")
                    outcomes.append(self._outcome(conn, request, refused))
                    continue
                conn.execute("RELEASE conduit_append")
                outcomes.append(recorded)
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
        try:
            with self._write() as conn:
                retried = self._retried_request(conn, request)
                if retried is not None:
                    return retried  # it wrote nothing: the commit writes nothing either
                check, params = sql.query_positions(
                    condition.fail_if_events_match,
                    after=condition.after or 0,
                    limit=1,
                    backwards=False,
                )
                found = conn.execute(check, params).fetchone()
                if found is not None:
                    raise AppendConditionFailed(int(found[0]), condition.after)
                return [self._write_part(conn, part) for part in request]
        except _Refused as refused:
            return self._resolved(request, refused)
        except _Deleted as deleted:
            raise StreamDeleted(deleted.part.stream.stream_id()) from None

    def _outcome(
        self, conn: sqlite3.Connection, request: AppendRequest, refused: _Refused | _Deleted
    ) -> GroupOutcome:
        """A request of a group refused inside its savepoint, rolled back: its outcome."""
        if isinstance(refused, _Deleted):
            return StreamDeleted(refused.part.stream.stream_id())
        try:
            return self._resolve(conn, request, refused)
        except ConduitError as exc:
            return exc

    def _resolved(self, request: AppendRequest, refused: _Refused) -> list[list[Event]]:
        """:meth:`_resolve` after the transaction was rolled back."""
        try:
            return self._resolve(self._connection(), request, refused)
        except sqlite3.Error as exc:
            raise BackendError(f"SQLite failed: {exc}") from exc

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
        rows = sqlite_rows.event_rows(stream, is_uuid, version, events, times)
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
            conn.executemany(sql.INSERT_TAG, sqlite_rows.tag_rows(first_position, events))
        return sqlite_rows.recorded(stream, is_uuid, version, first_position, events, times)

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
        return resolve_retry(stream, events, sqlite_rows.events(rows))


def begin_immediate(conn: sqlite3.Connection, busy_timeout: float) -> None:
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
