"""The SQLite engine's deletions, truncations, stream limits and scavenging.

A mixin of :class:`~conduit.backends.sqlite.SQLiteBackend`; its statements are
in :mod:`conduit.backends.sqlite_sql` (schema version 6). A stream's deletion,
truncation and limits are columns of its ``streams`` row; triggers keep the
append path as it is (see ``SCHEMA_V6``). Each change and its audit event
are one ``BEGIN IMMEDIATE`` transaction; the scavenger removes a batch of the
log per transaction, so that writers wait for it no longer than for a batch.
Positions come from ``AUTOINCREMENT``: never given twice, even after the last
events were removed and the file vacuumed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from conduit.backends import sqlite_sql as sql
from conduit.backends.base import StreamAppend
from conduit.backends.common import StreamIds
from conduit.errors import InvalidArgument, StreamDeleted, WrongExpectedVersion
from conduit.events import Event, NewEvent, StreamKey, stream_key
from conduit.lifecycle import AUDIT_STREAM, DELETED, ScavengeBatch, StreamMetadata

__all__ = ["SQLiteLifecycle", "tombstoned"]

_AUDIT = stream_key(AUDIT_STREAM)


def _micros(delta: timedelta | None) -> int | None:
    return None if delta is None else delta // timedelta(microseconds=1)


class SQLiteLifecycle:
    """Deleting, truncating, limiting and scavenging streams in one SQLite file."""

    if TYPE_CHECKING:

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

        def _write_part(self, conn: sqlite3.Connection, part: StreamAppend) -> list[Event]: ...

    def _lifecycle_state(self, conn: sqlite3.Connection, stream: StreamKey) -> int:
        """The stream's version, its row made if it had none (under the write lock).

        Raises:
            StreamDeleted: the stream is a tombstone.
        """
        row = conn.execute(sql.STREAM_STATE, (stream.text,)).fetchone()
        if row is None:
            conn.execute(sql.MAKE_STREAM_ROW, (stream.text, stream.is_uuid))
            return 0
        if row[1] == 2:
            raise StreamDeleted(stream.stream_id())
        return int(row[0])

    def _audit(self, conn: sqlite3.Connection, audit: NewEvent) -> Event:
        return self._write_part(conn, StreamAppend(_AUDIT, (audit,), None))[0]

    def delete_stream(
        self,
        stream: StreamKey,
        expected_version: int | None,
        hard: bool,
        audit: Callable[[int], NewEvent],
    ) -> Event:
        """See :class:`~conduit.backends.base.Backend`."""
        with self._write() as conn:
            version = self._lifecycle_state(conn, stream)
            if expected_version is not None and expected_version != version:
                raise WrongExpectedVersion(stream.stream_id(), expected_version, version)
            conn.execute(sql.MARK_DELETED, (2 if hard else 1, stream.text))
            conn.execute(sql.DROP_SNAPSHOTS, (stream.text,))
            if hard:
                conn.execute(sql.REMOVE_STREAM, (stream.text,))
            return self._audit(conn, audit(version))

    def truncate_stream(
        self, stream: StreamKey, before_version: int, audit: Callable[[int], NewEvent]
    ) -> Event:
        """See :class:`~conduit.backends.base.Backend`."""
        with self._write() as conn:
            version = self._lifecycle_state(conn, stream)
            if before_version > version + 1:
                raise InvalidArgument(
                    f"before_version {before_version} is past the stream's next version "
                    f"({version + 1})",
                    field="before_version",
                )
            conn.execute(sql.TRUNCATE, (before_version, stream.text))
            conn.execute(sql.REMOVE_TRUNCATED, (stream.text, stream.text))
            return self._audit(conn, audit(version))

    def set_stream_metadata(
        self,
        stream: StreamKey,
        max_age: timedelta | None,
        max_count: int | None,
        audit: Callable[[int], NewEvent],
    ) -> Event:
        """See :class:`~conduit.backends.base.Backend`."""
        with self._write() as conn:
            version = self._lifecycle_state(conn, stream)
            conn.execute(sql.SET_LIMITS, (_micros(max_age), max_count, stream.text))
            return self._audit(conn, audit(version))

    def stream_metadata(self, stream: StreamKey) -> StreamMetadata | None:
        """See :class:`~conduit.backends.base.Backend`."""
        found = _metadata(self._query(sql.STREAM_METADATA, (stream.text,)))
        return found[0] if found else None

    def tombstones(self, *, after: str | None, limit: int) -> list[StreamMetadata]:
        """See :class:`~conduit.backends.base.Backend`."""
        return _metadata(self._query(sql.TOMBSTONES, ("" if after is None else after, limit)))

    def scavenge_batch(
        self, *, after: int, limit: int, retention: timedelta | None
    ) -> ScavengeBatch:
        """See :class:`~conduit.backends.base.Backend`."""
        with self._write() as conn:
            began = time.monotonic()  # the writer is ours from here
            upto, examined = conn.execute(sql.SCAVENGE_WINDOW, (after, limit)).fetchone()
            if not examined:
                return ScavengeBatch(after, 0, 0)
            now = sql.now_micros()
            kept = _micros(retention)
            removed = conn.execute(
                sql.SCAVENGE_EXPIRED, (after, upto, now, kept, None if kept is None else now - kept)
            ).rowcount
            held = time.monotonic() - began
        # Copy the batch's pages into the database now, from this connection: a
        # writer's commit would otherwise run the WAL's automatic checkpoint, and
        # pay for the scavenger's pages. PASSIVE: it never waits for anyone.
        self._query("PRAGMA wal_checkpoint(PASSIVE)")
        return ScavengeBatch(int(upto), int(examined), max(removed, 0), held)


def tombstoned(exc: sqlite3.Error) -> bool:
    """Whether SQLite refused a write because the stream is a tombstone."""
    return isinstance(exc, sqlite3.IntegrityError) and sql.TOMBSTONE in str(exc)


def _metadata(rows: list[Any]) -> list[StreamMetadata]:
    ids = StreamIds()
    return [
        StreamMetadata(
            ids(text, bool(is_uuid)),
            version,
            DELETED[deleted],  # type: ignore[arg-type]
            truncated_before,
            None if max_age is None else timedelta(microseconds=max_age),
            max_count,
        )
        for text, is_uuid, version, deleted, truncated_before, max_age, max_count in rows
    ]
