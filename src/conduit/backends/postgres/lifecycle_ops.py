"""The PostgreSQL engine's deletions, truncations, stream limits and scavenging.

A mixin of :class:`~conduit.backends.postgres.engine.PostgresEngine`; its
operations, free of I/O, yield statements its executors run.

Each change is one transaction that takes the stream's advisory lock (the one
appends take) before its first write, so that a push racing a delete either
commits before it (and its events are removed with the stream) or waits and
finds the tombstone. Deletes and truncations then share the removals' lock
(:data:`~.lifecycle_sql.REMOVAL_LOCK_CLASS`), which a scavenging batch takes
alone and without any stream lock. The change's audit event is appended in the
same transaction with the schema's ``append_event``. Removing events only
deletes rows: positions, made of transaction ids, are never given twice, and
the reader horizon of the global log is untouched (docs/lifecycle.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from conduit.backends.common import StreamIds
from conduit.backends.postgres import rows
from conduit.backends.postgres.effects import Atomic, Query
from conduit.backends.postgres.lifecycle_sql import LifecycleStatements
from conduit.core.effects import Op
from conduit.errors import InvalidArgument, StreamDeleted, WrongExpectedVersion
from conduit.events import Event, NewEvent, StreamKey, stream_key
from conduit.lifecycle import AUDIT_STREAM, DELETED, ScavengeBatch, StreamMetadata

if TYPE_CHECKING:
    from conduit.backends.postgres.config import PostgresConfig
    from conduit.backends.postgres.sql import Statements

__all__ = ["LifecycleOps"]

_AUDIT = stream_key(AUDIT_STREAM)


class LifecycleOps:
    """Deleting, truncating, limiting and scavenging streams in one PostgreSQL schema."""

    if TYPE_CHECKING:
        sql: Statements
        config: PostgresConfig

        def _remember_xid(self, xid: int) -> None: ...

    @property
    def lifecycle_sql(self) -> LifecycleStatements:
        return LifecycleStatements(self.sql.schema)

    def _locked_state(self, stream: StreamKey, *, removes: bool) -> Op[int]:
        """Lock the stream and the audit stream (and share the removals' lock), then the
        stream's version, its row made if it had none.

        Raises:
            StreamDeleted: the stream is a tombstone.
        """
        sql = self.lifecycle_sql
        yield Query(sql.lock_streams, ([stream.text, _AUDIT.text],))
        if removes:
            yield Query(sql.share_removals)
        row = yield Query(sql.state, (stream.text,))
        if row is None:
            yield Query(sql.make_row, (stream.text, stream.is_uuid), "none")
            return 0
        if row[1] == 2:
            raise StreamDeleted(stream.stream_id())
        return int(row[0])

    def _append_audit(self, audit: NewEvent) -> Op[Event]:
        params = (
            _AUDIT.text,
            _AUDIT.is_uuid,
            None,
            audit.id,
            audit.name,
            audit.data,
            audit.metadata,
            self.config.notify,
        )
        row = yield Query(self.sql.append_one, params)
        self._remember_xid(row[0] >> 20)
        return rows.recorded(_AUDIT, (audit,), row)[0]

    def delete_stream(
        self,
        stream: StreamKey,
        expected_version: int | None,
        hard: bool,
        audit: Callable[[int], NewEvent],
    ) -> Op[Event]:
        """See :class:`~conduit.backends.base.Backend`."""
        event: Event = yield Atomic(self._delete(stream, expected_version, hard, audit))
        return event

    def _delete(
        self,
        stream: StreamKey,
        expected_version: int | None,
        hard: bool,
        audit: Callable[[int], NewEvent],
    ) -> Op[Event]:
        sql = self.lifecycle_sql
        version = yield from self._locked_state(stream, removes=hard)
        if expected_version is not None and expected_version != version:
            raise WrongExpectedVersion(stream.stream_id(), expected_version, version)
        yield Query(sql.mark_deleted, (2 if hard else 1, stream.text), "none")
        yield Query(sql.drop_snapshots, (stream.text,), "none")
        if hard:
            yield Query(sql.remove_stream, (stream.text,))
        return (yield from self._append_audit(audit(version)))

    def truncate_stream(
        self, stream: StreamKey, before_version: int, audit: Callable[[int], NewEvent]
    ) -> Op[Event]:
        """See :class:`~conduit.backends.base.Backend`."""
        event: Event = yield Atomic(self._truncate(stream, before_version, audit))
        return event

    def _truncate(
        self, stream: StreamKey, before_version: int, audit: Callable[[int], NewEvent]
    ) -> Op[Event]:
        sql = self.lifecycle_sql
        version = yield from self._locked_state(stream, removes=True)
        if before_version > version + 1:
            raise InvalidArgument(
                f"before_version {before_version} is past the stream's next version "
                f"({version + 1})",
                field="before_version",
            )
        row = yield Query(sql.truncate, (before_version, stream.text))
        yield Query(sql.remove_before, (stream.text, int(row[0])))
        return (yield from self._append_audit(audit(version)))

    def set_stream_metadata(
        self,
        stream: StreamKey,
        max_age: timedelta | None,
        max_count: int | None,
        audit: Callable[[int], NewEvent],
    ) -> Op[Event]:
        """See :class:`~conduit.backends.base.Backend`."""
        event: Event = yield Atomic(self._set_limits(stream, max_age, max_count, audit))
        return event

    def _set_limits(
        self,
        stream: StreamKey,
        max_age: timedelta | None,
        max_count: int | None,
        audit: Callable[[int], NewEvent],
    ) -> Op[Event]:
        version = yield from self._locked_state(stream, removes=False)
        yield Query(self.lifecycle_sql.set_limits, (max_age, max_count, stream.text), "none")
        return (yield from self._append_audit(audit(version)))

    def stream_metadata(self, stream: StreamKey) -> Op[StreamMetadata | None]:
        """See :class:`~conduit.backends.base.Backend`."""
        found = yield Query(self.lifecycle_sql.metadata, (stream.text,), "all")
        metadata = _metadata(found)
        return metadata[0] if metadata else None

    def tombstones(self, *, after: str | None, limit: int) -> Op[list[StreamMetadata]]:
        """See :class:`~conduit.backends.base.Backend`."""
        params = ("" if after is None else after, limit)
        found = yield Query(self.lifecycle_sql.tombstones, params, "all")
        return _metadata(found)

    def scavenge_batch(
        self, *, after: int, limit: int, retention: timedelta | None
    ) -> Op[ScavengeBatch]:
        """See :class:`~conduit.backends.base.Backend`."""
        batch: ScavengeBatch = yield Atomic(self._scavenge(after, limit, retention))
        return batch

    def _scavenge(self, after: int, limit: int, retention: timedelta | None) -> Op[ScavengeBatch]:
        sql = self.lifecycle_sql
        yield Query(sql.lock_removals)
        began = time.monotonic()
        row = yield Query(sql.scavenge, (after, limit, after, retention, retention))
        held = time.monotonic() - began
        upto, examined, removed = (int(value) for value in row)
        if not examined:
            return ScavengeBatch(after, 0, 0)
        return ScavengeBatch(upto, examined, removed, held)


def _metadata(found: list[Any]) -> list[StreamMetadata]:
    ids = StreamIds()
    return [
        StreamMetadata(
            ids(text, is_uuid),
            version,
            DELETED[deleted],  # type: ignore[arg-type]
            truncated_before,
            max_age,
            max_count,
        )
        for text, is_uuid, version, deleted, truncated_before, max_age, max_count in found
    ]
