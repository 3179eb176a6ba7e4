"""How many events a subscription has still to read: the ``behind`` of its status.

The engines count events after a position, by name (``count_after``), but not
by stream prefix. For a subscription with a stream prefix the events after
its checkpoint are read and counted, at most :data:`SCAN_LIMIT` of them;
past that the count goes on by name only, so that a status never reads the
whole log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit.subscriptions.runner import Filter

if TYPE_CHECKING:
    from conduit.store import EventStore

__all__ = ["BEHIND_LIMIT", "SCAN_LIMIT", "count_behind"]

BEHIND_LIMIT = 100_000
"""The most events a status counts behind a checkpoint: past that it says "at least
so many" (``SubscriptionStatus.capped``), so that a status never counts a whole log."""

SCAN_LIMIT = 10_000
"""The most events read to count a stream-prefix subscription's lag exactly."""

_PAGE = 1_000


def count_behind(store: EventStore, checkpoint: int, filter: Filter) -> tuple[int, bool]:
    """The events after ``checkpoint`` that ``filter`` keeps, and whether the count
    stopped at :data:`BEHIND_LIMIT` (there are at least that many).

    Exact below the limit, except for a stream prefix more than
    :data:`SCAN_LIMIT` events behind: the events past the first
    :data:`SCAN_LIMIT` read are counted whatever their stream (an upper bound).
    It looks, without waiting for this store's own last push to be readable.
    """
    count = _count(store, checkpoint, filter)
    if count > BEHIND_LIMIT:
        return BEHIND_LIMIT, True
    return count, False


def count_after(store: EventStore, checkpoint: int) -> tuple[int, bool]:
    """Every event after ``checkpoint``, counted up to :data:`BEHIND_LIMIT` (see
    :func:`count_behind`)."""
    return count_behind(store, checkpoint, Filter())


def _count(store: EventStore, checkpoint: int, filter: Filter) -> int:
    backend = store.backend
    names = _stored_names(store, filter.names)
    if names is not None and not names:
        return 0
    limit = BEHIND_LIMIT + 1
    if filter.stream_prefix is None:
        return backend.count_after(checkpoint, names=names, limit=limit, wait=False)
    counted = 0
    scanned = 0
    position = checkpoint
    while scanned < SCAN_LIMIT:
        size = min(_PAGE, SCAN_LIMIT - scanned)
        page = backend.read_all(after=position, names=names, limit=size, wait=False)
        counted += sum(1 for event in page if filter.keeps(event))
        if len(page) < size:
            return counted
        scanned += len(page)
        position = page[-1].position
    return counted + backend.count_after(position, names=names, limit=limit, wait=False)


def _stored_names(store: EventStore, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The names the events a subscription reads are stored under (upcasters rename)."""
    if names is None or store.types is None:
        return names
    return tuple(sorted(store.types.upcasters.stored_names(names)))
