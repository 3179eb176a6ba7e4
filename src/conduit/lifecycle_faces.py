"""The store's calls for deleting, truncating, limiting and scavenging streams.

Mixins of :class:`~conduit.EventStore` and :class:`~conduit.AsyncEventStore`:
each call runs one operation of :mod:`conduit.core.lifecycle`, blocking or
awaited. Behaviour, choices and errors: docs/lifecycle.md.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from conduit.core import lifecycle as ops
from conduit.events import Event, StreamId
from conduit.lifecycle import ScavengeReport, StreamMetadata

if TYPE_CHECKING:
    from conduit.core.lifecycle import Progress
    from conduit.core.store_ops import StoreCore

__all__ = ["AsyncStoreLifecycle", "StoreLifecycle"]


class StoreLifecycle:
    """``EventStore``'s calls that remove events or limit what streams keep."""

    _core: StoreCore
    _runtime: Any

    def delete_stream(
        self,
        stream_id: StreamId,
        *,
        expected_version: int | None = None,
        hard: bool = False,
        by: str | None = None,
    ) -> Event:
        """Delete a stream; returns the ``stream_deleted`` event recorded in ``conduit.audit``.

        Soft (the default): the stream reads as empty and leaves :meth:`streams`;
        its events stay in the global log until :meth:`scavenge` removes them. A
        later push brings it back, continuing at the next version (as KurrentDB
        does), and reads then return only the new events. Hard: its events are
        removed at once and its id becomes a tombstone, for ever.

        Args:
            expected_version: the stream's version the caller saw (``None``: any).
            hard: remove the events now and refuse every later write.
            by: who asks, for the audit event (default: the OS user).

        Raises:
            WrongExpectedVersion: the stream is at another version; nothing done.
            StreamDeleted: the stream was already deleted with ``hard=True``.
            InvalidArgument: a ``conduit.`` stream, or a bad argument.
        """
        return self._runtime.run(  # type: ignore[no-any-return]
            ops.delete_stream(self._core, stream_id, expected_version, hard, by)
        )

    def truncate_stream(
        self, stream_id: StreamId, before_version: int, *, by: str | None = None
    ) -> Event:
        """Remove a stream's events of versions below ``before_version``, at once.

        The stream keeps its version; a push continues after it. Snapshots are
        kept (a snapshot usually stands in for the removed events). Returns the
        ``stream_truncated`` audit event.

        Raises:
            StreamDeleted: the stream was deleted with ``hard=True``.
            InvalidArgument: ``before_version`` below 1 or past the next version,
                or a ``conduit.`` stream.
        """
        return self._runtime.run(  # type: ignore[no-any-return]
            ops.truncate_stream(self._core, stream_id, before_version, by)
        )

    def set_stream_metadata(
        self,
        stream_id: StreamId,
        *,
        max_age: timedelta | None = None,
        max_count: int | None = None,
        by: str | None = None,
    ) -> Event:
        """Set a stream's limits (``None`` lifts one); returns the audit event.

        Reads of the stream never return an event older than ``max_age`` nor
        beyond its ``max_count`` last ones; :meth:`scavenge` removes them.

        Raises:
            StreamDeleted: the stream was deleted with ``hard=True``.
            InvalidArgument: a limit that is not positive, or a ``conduit.`` stream.
        """
        return self._runtime.run(  # type: ignore[no-any-return]
            ops.set_stream_metadata(self._core, stream_id, max_age, max_count, by)
        )

    def stream_metadata(self, stream_id: StreamId) -> StreamMetadata | None:
        """What the store keeps about a stream: version, deletion, truncation, limits."""
        return self._runtime.run(  # type: ignore[no-any-return]
            ops.stream_metadata(self._core.engine, stream_id)
        )

    def tombstones(self, *, after: str | None = None, limit: int = 100) -> list[StreamMetadata]:
        """A page of deleted streams (soft and hard), by id, after ``after``."""
        return self._runtime.run(  # type: ignore[no-any-return]
            self._core.engine.tombstones(after=after, limit=limit)
        )

    def scavenge(
        self,
        *,
        batch_size: int = ops.DEFAULT_SCAVENGE_BATCH,
        max_batches: int | None = None,
        pause: float = 0.0,
        leave_to_writers: float = 0.0,
        progress: Progress | None = None,
        by: str | None = None,
    ) -> ScavengeReport:
        """Remove for good the events reads no longer return: soft-deleted, truncated,
        beyond a stream's limits or the store's ``retention``.

        One pass over the global log, in short transactions of ``batch_size``
        events each (writers keep appending meanwhile), resumable: a pass
        stopped by ``max_batches`` or a crash goes on from its place next
        time. ``pause`` seconds between batches leave writers more room, and
        so does ``leave_to_writers``: the share of the time (0 to 1) the pass
        leaves free between its batches (0.7: after a batch of 30 ms, a pause
        of 70 ms), which SQLite's single writer needs for writers to keep their
        pace. ``progress(batch, head)`` is called after each batch.
        """
        return self._runtime.run(  # type: ignore[no-any-return]
            ops.scavenge(
                self._core,
                batch_size=batch_size,
                max_batches=max_batches,
                pause=pause,
                progress=progress,
                by=by,
                leave_to_writers=leave_to_writers,
            )
        )


class AsyncStoreLifecycle:
    """``AsyncEventStore``'s calls that remove events or limit what streams keep; each
    behaves as its ``EventStore`` namesake (see :class:`StoreLifecycle`)."""

    _core: StoreCore
    _runtime: Any

    async def delete_stream(
        self,
        stream_id: StreamId,
        *,
        expected_version: int | None = None,
        hard: bool = False,
        by: str | None = None,
    ) -> Event:
        """As :meth:`StoreLifecycle.delete_stream`."""
        return await self._runtime.run(  # type: ignore[no-any-return]
            ops.delete_stream(self._core, stream_id, expected_version, hard, by)
        )

    async def truncate_stream(
        self, stream_id: StreamId, before_version: int, *, by: str | None = None
    ) -> Event:
        """As :meth:`StoreLifecycle.truncate_stream`."""
        return await self._runtime.run(  # type: ignore[no-any-return]
            ops.truncate_stream(self._core, stream_id, before_version, by)
        )

    async def set_stream_metadata(
        self,
        stream_id: StreamId,
        *,
        max_age: timedelta | None = None,
        max_count: int | None = None,
        by: str | None = None,
    ) -> Event:
        """As :meth:`StoreLifecycle.set_stream_metadata`."""
        return await self._runtime.run(  # type: ignore[no-any-return]
            ops.set_stream_metadata(self._core, stream_id, max_age, max_count, by)
        )

    async def stream_metadata(self, stream_id: StreamId) -> StreamMetadata | None:
        """As :meth:`StoreLifecycle.stream_metadata`."""
        return await self._runtime.run(  # type: ignore[no-any-return]
            ops.stream_metadata(self._core.engine, stream_id)
        )

    async def tombstones(
        self, *, after: str | None = None, limit: int = 100
    ) -> list[StreamMetadata]:
        """As :meth:`StoreLifecycle.tombstones`."""
        return await self._runtime.run(  # type: ignore[no-any-return]
            self._core.engine.tombstones(after=after, limit=limit)
        )

    async def scavenge(
        self,
        *,
        batch_size: int = ops.DEFAULT_SCAVENGE_BATCH,
        max_batches: int | None = None,
        pause: float = 0.0,
        leave_to_writers: float = 0.0,
        progress: Progress | None = None,
        by: str | None = None,
    ) -> ScavengeReport:
        """As :meth:`StoreLifecycle.scavenge` (``progress`` may be ``async def``)."""
        return await self._runtime.run(  # type: ignore[no-any-return]
            ops.scavenge(
                self._core,
                batch_size=batch_size,
                max_batches=max_batches,
                pause=pause,
                progress=progress,
                by=by,
                leave_to_writers=leave_to_writers,
            )
        )
