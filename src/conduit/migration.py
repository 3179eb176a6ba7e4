"""Rewriting stored events to today's schema versions, once (``conduit migrate-events``).

Reading upcasts older events on the fly and never rewrites them (see
:mod:`conduit.upcasting`). For a store with many old events, or events read
often, :func:`migrate_events` pays that cost once: it walks the global log in
batches and rewrites each event the store's upcasters would change, in place.
A rewritten event keeps its id, stream, version, position and recorded time;
its name, data and metadata become what reading would give, with today's
``schema_version`` in its metadata.

- Each batch is rewritten in one transaction: all of its events or none. An
  upcaster that fails raises :class:`~conduit.errors.EventDecodeError`, which
  names the event, and nothing of its batch is written.
- Progress is kept in the store as a checkpoint named :data:`CHECKPOINT`,
  saved after each batch, and a run starts from it unless told otherwise
  (``restart``, ``after``): an interrupted run resumes where it stopped, and
  a run after a complete one looks only at the events pushed since.
- Beside it, :data:`FINGERPRINT` holds a fingerprint of the upcasters that
  run used (:func:`fingerprint`: each upcaster's name and versions, from and
  to). A run whose upcasters differ (one was added, say) starts over from
  the first event, so that new upcasters reach the events already looked at.
  Changing what an upcaster does without changing its versions does not show
  in the fingerprint: ``restart`` then goes over the whole log again.
- Snapshots built from events before their rewrite must not be used after
  it: each batch, once rewritten, leaves a marker on each stream it rewrote
  (a snapshot row of class :data:`REWRITTEN`, in the engine's snapshot
  table), and :meth:`~conduit.EventStore.load` ignores a snapshot taken
  before its stream's marker (:func:`snapshot_outdated`), replaying the
  events instead (and taking a new snapshot, under a snapshot policy).
- Rewriting is idempotent: an event already at its current version is left
  alone. A crash between a batch's rewrite and its checkpoint is harmless:
  the next run goes over that batch again and finds nothing left to change.
- A dry run reads the same events and reports the same counts, and writes
  nothing: no event, no checkpoint.

The walk reads the engine's stored events directly (not the store's typed,
upcast read path). Nothing here does I/O of its own: it goes through the
store's engine (:meth:`~conduit.backends.base.Backend.rewrite_events`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from conduit import codec
from conduit.backends.base import EventRewrite
from conduit.core.effects import Op
from conduit.errors import ConduitError, EventDecodeError, InvalidArgument, InvalidEvent
from conduit.events import Event, Snapshot, StreamKey, stream_key
from conduit.upcasting import Upcasters, schema_version

if TYPE_CHECKING:
    from conduit.store import EventStore

__all__ = [
    "CHECKPOINT",
    "FINGERPRINT",
    "MAX_BATCH_SIZE",
    "REWRITTEN",
    "MigrationChange",
    "MigrationReport",
    "Progress",
    "fingerprint",
    "migrate_events",
    "migration",
    "planned_start",
    "planned_start_op",
    "snapshot_outdated",
]

CHECKPOINT = "conduit.migrate-events"
"""The name of the checkpoint that holds a migration's progress (a global-log position)."""

FINGERPRINT = "conduit.migrate-events.upcasters"
"""The name of the checkpoint that holds the :func:`fingerprint` of the upcasters that
the run which moved :data:`CHECKPOINT` used."""

REWRITTEN = "conduit.rewritten"
"""The class name of the marker snapshot a migration leaves on each stream it rewrote:
its ``taken_at`` is when. No entity class has this name (theirs are module paths)."""

MAX_BATCH_SIZE = 100_000
"""The most events one batch may hold."""


@dataclass(frozen=True, slots=True)
class MigrationChange:
    """``count`` events stored as ``name`` at schema ``version``, rewritten (or to be)
    as ``new_name`` at ``new_version``."""

    name: str
    version: int
    new_name: str
    new_version: int
    count: int


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What a migration did (or, for a dry run, would do).

    ``rewritten`` counts the events rewritten, or that a dry run would
    rewrite; ``changes`` breaks them down by stored name and version.
    ``complete`` is False only while a run is still going (as
    :func:`migrate_events` reports progress); ``has_upcasters`` is False for
    a store with no upcasters, where there is nothing to do.
    """

    dry_run: bool
    started_after: int
    """The position the run started after (0: the beginning of the log)."""
    last_position: int
    """The position of the last event looked at (``started_after`` if none)."""
    scanned: int
    rewritten: int
    batches: int = 0
    changes: tuple[MigrationChange, ...] = ()
    complete: bool = True
    has_upcasters: bool = True


Progress = Callable[[MigrationReport], None]
"""Called after each batch with the report so far (``complete`` False)."""


def migrate_events(
    store: EventStore,
    *,
    batch_size: int = 500,
    dry_run: bool = False,
    after: int | None = None,
    restart: bool = False,
    progress: Progress | None = None,
) -> MigrationReport:
    """:meth:`EventStore.migrate_events <conduit.EventStore.migrate_events>`, as a
    function of the store: see :func:`migration`."""
    return store.migrate_events(
        batch_size=batch_size, dry_run=dry_run, after=after, restart=restart, progress=progress
    )


def migration(
    core: Any,
    *,
    batch_size: int = 500,
    dry_run: bool = False,
    after: int | None = None,
    restart: bool = False,
    progress: Progress | None = None,
) -> Op[MigrationReport]:
    """Rewrite the events the store's upcasters would change to today's shape.

    Walks the global log ``batch_size`` events at a time; each batch's
    rewrites are one transaction. See this module's docstring for how it
    resumes, and why running it twice (or after a crash) is safe.

    An operation (:mod:`conduit.core.effects`): ``EventStore.migrate_events`` and
    ``AsyncEventStore.migrate_events`` run it.

    Args:
        core: the store's :class:`~conduit.core.store_ops.StoreCore`, opened with
            the upcasters (``types=``, a :class:`~conduit.TypeRegistry`); its
            engine is read and written.
        batch_size: events read, and rewritten at most, per transaction.
        dry_run: only count what would change; write nothing.
        after: start right after this position of the log, whatever the
            checkpoint says.
        restart: start at the beginning of the log, ignoring the checkpoint.
        progress: called after each batch with the report so far.

    Raises:
        EventDecodeError: an upcaster failed on an event (named); the
            batches before it stay rewritten, its own batch is not.
        InvalidArgument: a batch size or position out of range.
        ConduitError: another migration of the same store moved the
            checkpoint meanwhile.
        BackendError: the engine failed.
    """
    if type(batch_size) is not int or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InvalidArgument(
            f"batch_size must be an integer from 1 to {MAX_BATCH_SIZE}", field="batch_size"
        )
    if after is not None and (type(after) is not int or after < 0):
        raise InvalidArgument("after must be a position (an integer of 0 or more)", field="after")
    upcasters = None if core.types is None else core.types.upcasters
    if not upcasters:
        start = after or 0
        return MigrationReport(dry_run, start, start, 0, 0, has_upcasters=False)
    migration = _Migration(core.engine, upcasters, batch_size, dry_run, progress)
    return (yield from migration.run(after, restart))


def fingerprint(upcasters: Upcasters) -> int:
    """A number that changes when an upcaster is added or removed, or changes versions.

    Built from each upcaster's event name, version, new name and new version
    (not from its code); 63 bits, so that it fits a checkpoint.
    """
    digest = hashlib.sha256(orjson.dumps(upcasters.steps())).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def planned_start(store: EventStore, *, after: int | None = None, restart: bool = False) -> int:
    """Where a run would start: see :func:`planned_start_op`."""
    return store._runtime.run(planned_start_op(store._core, after=after, restart=restart))


def planned_start_op(core: Any, *, after: int | None = None, restart: bool = False) -> Op[int]:
    """The position a run of :func:`migrate_events` with these arguments starts after."""
    upcasters = None if core.types is None else core.types.upcasters
    if after is not None:
        return after
    if restart or not upcasters:
        return 0
    engine = core.engine
    if (yield from engine.load_checkpoint(FINGERPRINT)) != fingerprint(upcasters):
        return 0
    return (yield from engine.load_checkpoint(CHECKPOINT)) or 0


def snapshot_outdated(engine: Any, stream: StreamKey, snapshot: Snapshot) -> Op[bool]:
    """Whether a migration rewrote events of ``stream`` after ``snapshot`` was taken.

    Such a snapshot was built from events as they were before: it must not be
    used. One more read, made only when a snapshot was found.
    """
    marker: Snapshot | None = yield from engine.load_snapshot(stream, REWRITTEN)
    if marker is None:
        return False
    if marker.taken_at is None or snapshot.taken_at is None:
        return True
    return snapshot.taken_at <= marker.taken_at


def _mark_rewritten(engine: Any, streams: Iterable[StreamKey]) -> Op[None]:
    for stream in streams:
        yield from engine.save_snapshot(stream, Snapshot(REWRITTEN, 1, 1, "{}"))


class _Migration:
    """One run: the walk, the counts and the checkpoint it keeps."""

    def __init__(
        self,
        engine: Any,
        upcasters: Upcasters,
        batch_size: int,
        dry_run: bool,
        progress: Progress | None,
    ) -> None:
        self.engine = engine
        self.upcasters = upcasters
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.progress = progress
        self.counts: Counter[tuple[str, int, str, int]] = Counter()
        self.scanned = 0
        self.batches = 0

    def run(self, after: int | None, restart: bool) -> Op[MigrationReport]:
        engine = self.engine
        saved = yield from engine.load_checkpoint(CHECKPOINT)
        known = yield from engine.load_checkpoint(FINGERPRINT)
        current = fingerprint(self.upcasters)
        if after is not None:
            start = after
        elif restart or known != current:
            start = 0  # new upcasters must reach the events already looked at
        else:
            start = saved or 0
        if not self.dry_run and start == 0 and known != current:
            # The position first: a crash between the two must not leave the
            # new fingerprint beside the old run's position.
            if saved:
                saved = yield from self._move_checkpoint(0, saved)
            yield from self._record_fingerprint(current, known)
        position = start
        while True:
            page = yield from engine.read_all(after=position, names=None, limit=self.batch_size)
            if not page:
                break
            rewrites, counts, streams = self._batch(page)
            if rewrites and not self.dry_run:
                yield from engine.rewrite_events(rewrites)
                yield from _mark_rewritten(engine, streams)
            self.counts.update(counts)
            self.scanned += len(page)
            self.batches += 1
            position = page[-1].position
            if not self.dry_run:
                saved = yield from self._move_checkpoint(position, saved)
            if self.progress is not None:
                self.progress(self._report(start, position, complete=False))
            if len(page) < self.batch_size:
                break
        return self._report(start, position, complete=True)

    def _record_fingerprint(self, current: int, known: int | None) -> Op[None]:
        if not (yield from self.engine.save_checkpoint(FINGERPRINT, current, expected=known)):
            raise ConduitError(
                f"another run of migrate-events moved the checkpoint {FINGERPRINT!r} meanwhile; "
                "run one migration of a store at a time"
            )

    def _batch(
        self, page: list[Event]
    ) -> tuple[list[EventRewrite], Counter[tuple[str, int, str, int]], set[StreamKey]]:
        """The rewrites of one page of the log, their counts and their streams; raises
        before any write."""
        rewrites: list[EventRewrite] = []
        counts: Counter[tuple[str, int, str, int]] = Counter()
        streams: set[StreamKey] = set()
        for event in page:
            upcast = self.upcasters.upcast(event)  # EventDecodeError names the event
            if upcast is event:
                continue
            try:
                data = codec.encode(upcast.data, field="data")
                metadata = codec.encode(upcast.metadata, field="metadata")
            except InvalidEvent as exc:
                raise EventDecodeError(
                    event.id, event.name, "the upcasters", exc.field, str(exc)
                ) from exc
            rewrites.append(EventRewrite(event.id, upcast.name, data, metadata))
            counts[(event.name, schema_version(event), upcast.name, schema_version(upcast))] += 1
            streams.add(stream_key(event.stream_id))
        return rewrites, counts, streams

    def _move_checkpoint(self, position: int, expected: int | None) -> Op[int]:
        if not (yield from self.engine.save_checkpoint(CHECKPOINT, position, expected=expected)):
            raise ConduitError(
                f"another run of migrate-events moved the checkpoint {CHECKPOINT!r} meanwhile; "
                "run one migration of a store at a time"
            )
        return position

    def _report(self, start: int, position: int, *, complete: bool) -> MigrationReport:
        changes = tuple(
            MigrationChange(name, version, new_name, new_version, count)
            for (name, version, new_name, new_version), count in sorted(self.counts.items())
        )
        return MigrationReport(
            dry_run=self.dry_run,
            started_after=start,
            last_position=position,
            scanned=self.scanned,
            rewritten=sum(self.counts.values()),
            batches=self.batches,
            changes=changes,
            complete=complete,
        )
