"""How many events a subscription has still to read: the ``behind`` of its status.

The engines count events after a position, by name (``count_after``), but not
by stream prefix (nor by partition, on engines without ``partitioned_reads``).
For a subscription with a stream prefix (or such a partition) the events after
its checkpoint are read and counted, at most :data:`SCAN_LIMIT` of them;
past that the count goes on by name only, so that a status never reads the
whole log. Counts are operations (:mod:`conduit.core.effects`) that look: they
never wait for the store's own last push to be readable.
"""

from __future__ import annotations

from typing import Any

from conduit.core.effects import Op
from conduit.subscriptions.runner import Filter, reads_partitions

__all__ = ["BEHIND_LIMIT", "SCAN_LIMIT", "count_after", "count_behind"]

BEHIND_LIMIT = 10_000
"""The most events a status counts behind a checkpoint: past that it says "at least
so many" (``SubscriptionStatus.capped``), so that a status never counts a whole log.
Counting 10,000 index entries takes a millisecond or two: the browser's overview
and ``conduit stats`` cost the same for a projection 10,000 or 10 million events
behind (at 100,000 the count was 5x the rest of the page on SQLite)."""

SCAN_LIMIT = 10_000
"""The most events read to count a stream-prefix subscription's lag exactly."""

_PAGE = 1_000


def count_behind(core: Any, checkpoint: int, filter: Filter) -> Op[tuple[int, bool]]:
    """The events after ``checkpoint`` that ``filter`` keeps, and whether the count
    stopped at :data:`BEHIND_LIMIT` (there are at least that many).

    Exact below the limit, except for a stream prefix more than
    :data:`SCAN_LIMIT` events behind: the events past the first
    :data:`SCAN_LIMIT` read are counted whatever their stream (an upper bound).
    ``core`` is the store's :class:`~conduit.core.store_ops.StoreCore`.
    """
    count = yield from _count(core, checkpoint, filter)
    if count > BEHIND_LIMIT:
        return BEHIND_LIMIT, True
    return count, False


def count_after(core: Any, checkpoint: int) -> Op[tuple[int, bool]]:
    """Every event after ``checkpoint``, counted up to :data:`BEHIND_LIMIT` (see
    :func:`count_behind`)."""
    return (yield from count_behind(core, checkpoint, Filter()))


def _count(core: Any, checkpoint: int, filter: Filter) -> Op[int]:
    engine = core.engine
    names, _ = core.log_filter(filter.names)
    if names is not None and not names:
        return 0
    limit = BEHIND_LIMIT + 1
    by_partition: dict[str, Any] = {}
    if filter.partition is not None and reads_partitions(engine):
        by_partition["partition"] = filter.partition
    if filter.stream_prefix is None and (filter.partition is None or by_partition):
        counted: int = yield from engine.count_after(
            checkpoint, names=names, limit=limit, wait=False, **by_partition
        )
        return counted
    counted = 0
    scanned = 0
    position = checkpoint
    while scanned < SCAN_LIMIT:
        size = min(_PAGE, SCAN_LIMIT - scanned)
        page = yield from engine.read_all(
            after=position, names=names, limit=size, wait=False, **by_partition
        )
        counted += sum(1 for event in page if filter.keeps(event))
        if len(page) < size:
            return counted
        scanned += len(page)
        position = page[-1].position
    rest: int = yield from engine.count_after(
        position, names=names, limit=limit, wait=False, **by_partition
    )
    return counted + rest
