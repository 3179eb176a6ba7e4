"""The store's calls for entities: snapshots, loading and saving, and migrating
stored events to today's schema versions.

Mixins of :class:`~conduit.EventStore` and :class:`~conduit.AsyncEventStore`:
each call runs one operation of the store's core, blocking or awaited.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from conduit.core.effects import AsyncRuntime, SyncRuntime
from conduit.events import Event, StreamId

if TYPE_CHECKING:
    from conduit.aggregate import Aggregate
    from conduit.core.store_ops import StoreCore
    from conduit.migration import MigrationReport, Progress

__all__ = ["AsyncStoreEntities", "StoreEntities"]

T = TypeVar("T")


class StoreEntities:
    """``EventStore``'s calls for entities and their snapshots."""

    _core: StoreCore
    _runtime: SyncRuntime

    def save_snapshot(self, stream_id: StreamId, state: object, version: int) -> None:
        """Keep ``state`` (an entity) as its stream's snapshot at ``version``.

        The entity's attributes go through the typed codec (see
        :mod:`conduit.snapshots`); a newer snapshot of the same class is kept
        rather than replaced by an older one.

        Raises:
            InvalidEvent: a value in the state cannot be stored.
            ValueError: the state would not read back equal.
            BackendError: the engine failed.
        """
        self._runtime.run(self._core.save_snapshot(stream_id, state, version))

    def load(self, stream_id: StreamId, onto: type[T], *, use_snapshots: bool = True) -> T:
        """An entity rebuilt from its latest snapshot and the events after it.

        ``onto`` is the entity class (constructible without arguments). A
        snapshot taken under another ``snapshot_version`` of the class is
        ignored; one that cannot be decoded is ignored with a
        :class:`~conduit.snapshots.SnapshotWarning`. Events are applied as by
        :func:`conduit.replay` (for an :class:`~conduit.Aggregate`, its
        ``apply_<name>`` methods get the typed payloads). Under a snapshot
        policy (``snapshot_every``), a snapshot is taken when enough events
        were replayed. A stream with no events gives a new entity.

        Raises:
            EventDecodeError: an event does not fit its registered class.
            BackendError: the engine failed.
        """
        return self._runtime.run(self._core.load(stream_id, onto, use_snapshots))

    def save(self, entity: Aggregate) -> list[Event]:
        """Push the events an :class:`~conduit.Aggregate` recorded, atomically.

        Uses the version the entity was loaded (or last saved) at as the
        expected version, so that a concurrent save raises and writes nothing.

        Raises:
            WrongExpectedVersion: another save came first; reload and retry.
            InvalidEvent, BackendError: as :meth:`push_many`.
        """
        return self._runtime.run(self._core.save(entity))

    def migrate_events(
        self,
        *,
        batch_size: int = 500,
        dry_run: bool = False,
        after: int | None = None,
        restart: bool = False,
        progress: Progress | None = None,
    ) -> MigrationReport:
        """Rewrite stored events to today's schema versions with this store's upcasters.

        In batches of ``batch_size`` events, one transaction each, resuming
        where an interrupted run stopped (``restart``: from the beginning;
        ``after``: right after that position); ``dry_run`` writes nothing and
        reports what would change. See :func:`conduit.migration.migrate_events`.

        Raises:
            EventDecodeError: an upcaster failed on an event; its batch is not written.
            BackendError: the engine failed.
        """
        from conduit.migration import migration

        return self._runtime.run(
            migration(
                self._core,
                batch_size=batch_size,
                dry_run=dry_run,
                after=after,
                restart=restart,
                progress=progress,
            )
        )


class AsyncStoreEntities:
    """``AsyncEventStore``'s calls for entities and their snapshots; each behaves as its
    ``EventStore`` namesake (see :class:`StoreEntities`)."""

    _core: StoreCore
    _runtime: AsyncRuntime

    async def save_snapshot(self, stream_id: StreamId, state: object, version: int) -> None:
        """See :meth:`EventStore.save_snapshot`."""
        await self._runtime.run(self._core.save_snapshot(stream_id, state, version))

    async def load(self, stream_id: StreamId, onto: type[T], *, use_snapshots: bool = True) -> T:
        """See :meth:`EventStore.load`."""
        return await self._runtime.run(self._core.load(stream_id, onto, use_snapshots))

    async def save(self, entity: Aggregate) -> list[Event]:
        """See :meth:`EventStore.save`."""
        return await self._runtime.run(self._core.save(entity))

    async def migrate_events(
        self,
        *,
        batch_size: int = 500,
        dry_run: bool = False,
        after: int | None = None,
        restart: bool = False,
        progress: Progress | None = None,
    ) -> MigrationReport:
        """See :meth:`EventStore.migrate_events`."""
        from conduit.migration import migration

        return await self._runtime.run(
            migration(
                self._core,
                batch_size=batch_size,
                dry_run=dry_run,
                after=after,
                restart=restart,
                progress=progress,
            )
        )
