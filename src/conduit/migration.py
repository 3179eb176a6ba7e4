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
  saved after each batch, and a run resumes from it unless told otherwise. A
  run that reaches the end of the log sets it back to 0, so that the next run
  (after new upcasters were registered, say) goes over the whole log again.
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

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from conduit import codec
from conduit.backends.base import EventRewrite
from conduit.errors import ConduitError, EventDecodeError, InvalidArgument, InvalidEvent
from conduit.events import Event
from conduit.upcasting import Upcasters, schema_version

if TYPE_CHECKING:
    from conduit.store import EventStore

__all__ = [
    "CHECKPOINT",
    "MAX_BATCH_SIZE",
    "MigrationChange",
    "MigrationReport",
    "Progress",
    "migrate_events",
]

CHECKPOINT = "conduit.migrate-events"
"""The name of the checkpoint that holds a migration's progress (a global-log position)."""

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
    """Rewrite the events the store's upcasters would change to today's shape.

    Walks the global log ``batch_size`` events at a time; each batch's
    rewrites are one transaction. See this module's docstring for how it
    resumes, and why running it twice (or after a crash) is safe.

    Args:
        store: a store opened with the upcasters (``types=``, a
            :class:`~conduit.TypeRegistry`); its engine is read and written.
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
    upcasters = None if store.types is None else store.types.upcasters
    if not upcasters:
        start = after or 0
        return MigrationReport(dry_run, start, start, 0, 0, has_upcasters=False)
    return _Migration(store, upcasters, batch_size, dry_run, progress).run(after, restart)


class _Migration:
    """One run: the walk, the counts and the checkpoint it keeps."""

    def __init__(
        self,
        store: EventStore,
        upcasters: Upcasters,
        batch_size: int,
        dry_run: bool,
        progress: Progress | None,
    ) -> None:
        self.backend = store.backend
        self.upcasters = upcasters
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.progress = progress
        self.counts: Counter[tuple[str, int, str, int]] = Counter()
        self.scanned = 0
        self.batches = 0

    def run(self, after: int | None, restart: bool) -> MigrationReport:
        saved = self.backend.load_checkpoint(CHECKPOINT)
        start = after if after is not None else 0 if restart else saved or 0
        position = start
        while True:
            page = self.backend.read_all(after=position, names=None, limit=self.batch_size)
            if not page:
                break
            rewrites, counts = self._batch(page)
            if rewrites and not self.dry_run:
                self.backend.rewrite_events(rewrites)
            self.counts.update(counts)
            self.scanned += len(page)
            self.batches += 1
            position = page[-1].position
            if not self.dry_run:
                saved = self._move_checkpoint(position, saved)
            if self.progress is not None:
                self.progress(self._report(start, position, complete=False))
            if len(page) < self.batch_size:
                break
        if not self.dry_run and saved:  # the end of the log: the next run starts over
            self._move_checkpoint(0, saved)
        return self._report(start, position, complete=True)

    def _batch(
        self, page: list[Event]
    ) -> tuple[list[EventRewrite], Counter[tuple[str, int, str, int]]]:
        """The rewrites of one page of the log, and their counts; raises before any write."""
        rewrites: list[EventRewrite] = []
        counts: Counter[tuple[str, int, str, int]] = Counter()
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
        return rewrites, counts

    def _move_checkpoint(self, position: int, expected: int | None) -> int:
        if not self.backend.save_checkpoint(CHECKPOINT, position, expected=expected):
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
